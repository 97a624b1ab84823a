//! Property-based tests of every write an operator can call: requests built
//! from the services' own descriptors, field by field from values callers
//! get wrong (empty and oversized text, NUL, extreme numbers, NaN, unknown
//! enum values, impossible dates, odd currencies), sent as raw protobuf.
//! Each is accepted or refused as the caller's error, with field detail;
//! none is INTERNAL, none brings a handler down, and a refused one writes
//! nothing.
//!
//! The request is drawn from a tape of choices that proptest generates and
//! shrinks, so a failure is reported as the smallest request that fails.

use std::collections::HashMap;

use proptest::prelude::*;
use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorSet};
use tenure_tests::TestStack;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Unary methods an operator may call that write, by gRPC path, with their
/// request type.
fn write_methods(set: &FileDescriptorSet) -> Vec<(String, String)> {
    const WRITES: [&str; 13] = [
        "Batch",
        "Create",
        "Record",
        "Upsert",
        "Ingest",
        "Start",
        "Complete",
        "Update",
        "Train",
        "Run",
        "Recompute",
        "Retry",
        "Cancel",
    ];
    let mut methods = Vec::new();
    for file in &set.file {
        for service in &file.service {
            for method in &service.method {
                let name = method.name();
                if method.client_streaming()
                    || method.server_streaming()
                    || !WRITES.iter().any(|w| name.starts_with(w))
                {
                    continue;
                }
                methods.push((
                    format!("/{}.{}/{}", file.package(), service.name(), name),
                    method.input_type().trim_start_matches('.').to_owned(),
                ));
            }
        }
    }
    methods
}

/// Every message of the descriptor set by full name.
fn messages(set: &FileDescriptorSet) -> HashMap<String, DescriptorProto> {
    fn collect(
        scope: &str,
        message: &DescriptorProto,
        into: &mut HashMap<String, DescriptorProto>,
    ) {
        let name = format!("{scope}.{}", message.name());
        for nested in &message.nested_type {
            collect(&name, nested, into);
        }
        into.insert(name, message.clone());
    }
    let mut all = HashMap::new();
    for file in &set.file {
        for message in &file.message_type {
            collect(file.package(), message, &mut all);
        }
    }
    all
}

/// Draws choices from a tape; past its end every choice is 0.
struct Tape<'a> {
    choices: &'a [u16],
    at: usize,
}

impl Tape<'_> {
    fn next(&mut self, range: usize) -> usize {
        let choice = self.choices.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        usize::from(choice) % range.max(1)
    }
}

const TEXTS: [&str; 14] = [
    "acme",
    "",
    "  ",
    "x",
    "s1",
    "USD",
    "usd",
    "2026-02-30",
    "red",
    "é☃",
    "a\0b",
    "-1",
    "{\"name\": \"x\"}",
    "onboarding",
];
const INTEGERS: [i64; 10] = [
    0,
    1,
    -1,
    7,
    100,
    13,
    i32::MAX as i64,
    i64::MAX,
    i64::MIN,
    10_001,
];
const FLOATS: [f64; 8] = [0.0, 1.5, -1.0, f64::NAN, f64::INFINITY, 1e308, 100.0, 0.5];

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn key(out: &mut Vec<u8>, field: &FieldDescriptorProto, wire: u64) {
    varint(out, (u64::from(field.number() as u32) << 3) | wire);
}

/// Encodes a message of type `name` drawn from `tape`.
fn draw(
    all: &HashMap<String, DescriptorProto>,
    name: &str,
    tape: &mut Tape<'_>,
    depth: u32,
) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(message) = all.get(name) else {
        return out;
    };
    for field in &message.field {
        // Most fields are set; some are left out; repeated ones get 0 to 3.
        let count = if field.label() == Label::Repeated {
            tape.next(4)
        } else {
            usize::from(tape.next(5) != 0)
        };
        for _ in 0..count {
            match field.r#type() {
                Type::String | Type::Bytes => {
                    let text = match tape.next(TEXTS.len() + 1) {
                        i if i < TEXTS.len() => TEXTS[i].to_owned(),
                        _ => "w".repeat(5_000),
                    };
                    key(&mut out, field, 2);
                    varint(&mut out, text.len() as u64);
                    out.extend_from_slice(text.as_bytes());
                }
                Type::Double => {
                    key(&mut out, field, 1);
                    out.extend_from_slice(&FLOATS[tape.next(FLOATS.len())].to_le_bytes());
                }
                Type::Float => {
                    key(&mut out, field, 5);
                    out.extend_from_slice(&(FLOATS[tape.next(FLOATS.len())] as f32).to_le_bytes());
                }
                Type::Bool => {
                    key(&mut out, field, 0);
                    varint(&mut out, tape.next(2) as u64);
                }
                Type::Enum => {
                    key(&mut out, field, 0);
                    varint(&mut out, [0, 1, 2, 3, 99, u64::MAX][tape.next(6)]);
                }
                Type::Message => {
                    if depth >= 4 {
                        continue;
                    }
                    let inner = draw(
                        all,
                        field.type_name().trim_start_matches('.'),
                        tape,
                        depth + 1,
                    );
                    key(&mut out, field, 2);
                    varint(&mut out, inner.len() as u64);
                    out.extend_from_slice(&inner);
                }
                Type::Fixed64 | Type::Sfixed64 => {
                    key(&mut out, field, 1);
                    out.extend_from_slice(&INTEGERS[tape.next(INTEGERS.len())].to_le_bytes());
                }
                Type::Fixed32 | Type::Sfixed32 => {
                    key(&mut out, field, 5);
                    out.extend_from_slice(
                        &(INTEGERS[tape.next(INTEGERS.len())] as i32).to_le_bytes(),
                    );
                }
                Type::Sint32 | Type::Sint64 => {
                    let value = INTEGERS[tape.next(INTEGERS.len())];
                    key(&mut out, field, 0);
                    varint(&mut out, ((value << 1) ^ (value >> 63)) as u64);
                }
                Type::Int32 | Type::Uint32 => {
                    // Wider values are truncated by the decoder, as on the wire.
                    key(&mut out, field, 0);
                    varint(
                        &mut out,
                        INTEGERS[tape.next(INTEGERS.len())] as i32 as i64 as u64,
                    );
                }
                _ => {
                    key(&mut out, field, 0);
                    varint(&mut out, INTEGERS[tape.next(INTEGERS.len())] as u64);
                }
            }
        }
    }
    out
}

/// Sends encoded bytes as they are; answers are read as bytes.
#[derive(Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, buf: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut as _;
        buf.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf as _;
        Ok(Some(buf.copy_to_bytes(buf.remaining()).to_vec()))
    }
}

/// Rows of the tables only requests write (not queues, outboxes, what
/// background work adds, or the notices services send one another after an
/// accepted write), for telling that a refused request wrote nothing.
const WRITTEN_BY_REQUESTS: &str = "SELECT (SELECT count(*) FROM ingestion.account_versions) \
     + (SELECT count(*) FROM ingestion.record_versions) + (SELECT count(*) FROM ingestion.event_ids) \
     + (SELECT count(*) FROM health.scorecards) + (SELECT count(*) FROM renewals.outcomes) \
     + (SELECT count(*) FROM playbooks.runs) \
     + (SELECT count(*) FROM ingestion.idempotency_keys WHERE method NOT LIKE 'Notify%') \
     + (SELECT count(*) FROM health.idempotency_keys WHERE method NOT LIKE 'Notify%') \
     + (SELECT count(*) FROM renewals.idempotency_keys WHERE method NOT LIKE 'Notify%') \
     + (SELECT count(*) FROM playbooks.idempotency_keys WHERE method NOT LIKE 'Notify%')";

#[test]
fn every_write_accepts_or_refuses_with_field_detail_and_writes_nothing_when_refused() {
    let set = FileDescriptorSet::decode(tenure_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
    let methods = write_methods(&set);
    let all = messages(&set);
    assert!(methods.len() >= 15, "write methods found: {methods:?}");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (app, db) = runtime.block_on(async {
        let mut app = TestStack::spawn().await;
        app.plain_accounts(&["acme".into()]).await;
        let db = app.db().await;
        (app, db)
    });
    let peers = app.stack.operator_peers();
    // Channels connect lazily, within the runtime.
    let _entered = runtime.enter();
    let answered: std::sync::Mutex<HashMap<String, std::collections::BTreeSet<String>>> =
        std::sync::Mutex::default();
    let config = ProptestConfig {
        cases: 600,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(method in 0..methods.len(), choices in prop::collection::vec(any::<u16>(), 0..160))| {
        let (path, input) = &methods[method];
        let bytes = draw(&all, input, &mut Tape { choices: &choices, at: 0 }, 0);
        let url = peers.playbooks_url.clone();
        let url = if path.contains("ingestion") {
            peers.ingestion_url.clone()
        } else if path.contains("health") {
            peers.health_url.clone()
        } else if path.contains("renewals") {
            peers.renewals_url.clone()
        } else {
            url
        };
        let channel = peers.channel(&url).expect("channel");
        let (before, answer, after) = runtime.block_on(async {
            let before: i64 = sqlx::query_scalar(WRITTEN_BY_REQUESTS).fetch_one(&db).await.expect("counts");
            let mut client = tonic::client::Grpc::new(channel);
            client.ready().await.expect("ready");
            let answer = client
                .unary(
                    tonic::Request::new(bytes.clone()),
                    path.parse().expect("path"),
                    Raw,
                )
                .await;
            let after: i64 = sqlx::query_scalar(WRITTEN_BY_REQUESTS).fetch_one(&db).await.expect("counts");
            (before, answer, after)
        });
        let code = answer.as_ref().map_or_else(tonic::Status::code, |_| tonic::Code::Ok);
        if let Ok(mut answered) = answered.lock() {
            answered.entry(path.clone()).or_default().insert(format!("{code:?}"));
        }
        if let Err(status) = &answer {
            if std::env::var_os("PROPERTIES_DUMP").is_some() && status.code() == tonic::Code::Internal {
                std::fs::write("/tmp/failing.bin", &bytes).ok();
            }
            prop_assert!(
                matches!(
                    status.code(),
                    tonic::Code::InvalidArgument
                        | tonic::Code::NotFound
                        | tonic::Code::AlreadyExists
                        | tonic::Code::FailedPrecondition
                ),
                "{path}: {status:?}"
            );
            if status.code() == tonic::Code::InvalidArgument {
                use tonic_types::StatusExt as _;
                let fields = status.get_details_bad_request().map(|b| b.field_violations.len());
                prop_assert!(fields.unwrap_or(0) > 0, "{path}: no field named: {status:?}");
                prop_assert_eq!(before, after, "{} wrote while refusing: {:?}", path, status);
            }
        }
    });
    eprintln!(
        "answers by method: {:?}",
        answered.lock().map(|a| a.clone())
    );
    runtime.block_on(app.stop());
}
