//! Streams realistic usage events over gRPC into ingestion and, in the same
//! run and on the same Postgres, loads the same rows with a plain COPY into
//! an identical table; prints both rates and their ratio.
//!
//! `cargo bench -p tenure-tests --bench ingest_events -- [EVENTS] [STREAMS]`
//! (defaults: 1,000,000 events over 2 concurrent streams of 2,000-event chunks).

use std::time::Instant;

use chrono::{Duration, Utc};
use sqlx::Connection as _;
use tenure_platform::time::to_timestamp;
use tenure_proto::ingestion::v1 as pb;
use tenure_tests::TestStack;

const ACCOUNTS: usize = 1_000;
const USERS_PER_ACCOUNT: usize = 25;
const FEATURES: [&str; 12] = [
    "dashboard.view",
    "report.run",
    "report.export",
    "api.call",
    "workflow.create",
    "workflow.run",
    "integration.sync",
    "user.invite",
    "search",
    "alert.create",
    "sso.login",
    "billing.view",
];
const CHUNK: usize = 2_000;

fn events(total: usize) -> Vec<pb::UsageEvent> {
    let now = Utc::now();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..total)
        .map(|i| {
            let account = (next() % ACCOUNTS as u64) as usize;
            let user = (next() % USERS_PER_ACCOUNT as u64) as usize;
            let feature = FEATURES[(next() % FEATURES.len() as u64) as usize];
            let seconds_ago = (next() % (90 * 24 * 3600)) as i64;
            let mut properties = prost_types::Struct::default();
            for (key, value) in [
                ("client", if i % 3 == 0 { "web" } else { "desktop" }),
                ("plan", "pro"),
            ] {
                properties.fields.insert(
                    key.to_owned(),
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::StringValue(value.to_owned())),
                    },
                );
            }
            pb::UsageEvent {
                message_id: format!("evt-{i:09}"),
                account_id: format!("acct-{account:05}"),
                user_id: format!("user-{account:05}-{user:02}"),
                event_name: feature.to_owned(),
                occurred_at: Some(to_timestamp(now - Duration::seconds(seconds_ago))),
                quantity: 1.0,
                properties: Some(properties),
            }
        })
        .collect()
}

async fn create_accounts(app: &mut TestStack) {
    let accounts: Vec<pb::Account> = (0..ACCOUNTS)
        .map(|i| pb::Account {
            account_id: format!("acct-{i:05}"),
            name: format!("Account {i}"),
            segment: ["enterprise", "mid-market", "smb"][i % 3].to_owned(),
            updated_at: Some(to_timestamp(Utc::now() - Duration::days(1))),
            ..Default::default()
        })
        .collect();
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
        })
        .await
        .expect("accounts");
}

async fn stream_all(
    app: &TestStack,
    events: Vec<pb::UsageEvent>,
    streams: usize,
) -> (usize, std::time::Duration) {
    let per_stream = events.len().div_ceil(streams);
    let mut parts: Vec<Vec<pb::UsageEvent>> = Vec::new();
    let mut rest = events;
    while !rest.is_empty() {
        let tail = rest.split_off(per_stream.min(rest.len()));
        parts.push(std::mem::replace(&mut rest, tail));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for part in parts {
        let mut client = app.ingestion.clone();
        tasks.push(tokio::spawn(async move {
            let chunks: Vec<pb::StreamEventsRequest> = part
                .chunks(CHUNK)
                .enumerate()
                .map(|(i, c)| pb::StreamEventsRequest {
                    chunk_id: i as i64,
                    events: c.to_vec(),
                })
                .collect();
            let mut acks = client
                .stream_events(tokio_stream::iter(chunks))
                .await
                .expect("stream")
                .into_inner();
            let mut accepted = 0usize;
            while let Some(ack) = acks.message().await.expect("ack") {
                assert_eq!(
                    ack.rejected_count,
                    0,
                    "{:?}",
                    ack.results.iter().find(|r| !r.reason.is_empty())
                );
                accepted += ack.accepted_count as usize;
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.expect("stream task");
    }
    (accepted, started.elapsed())
}

fn copy_text(events: &[pb::UsageEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 160);
    for e in events {
        let at = e.occurred_at.as_ref().expect("time");
        let at = chrono::DateTime::from_timestamp(at.seconds, at.nanos as u32).expect("time");
        let props = e
            .properties
            .as_ref()
            .map(tenure_ingestion::convert::struct_to_json)
            .unwrap_or_default();
        let line = format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            e.message_id,
            e.account_id,
            e.user_id,
            e.event_name,
            at.to_rfc3339(),
            e.quantity,
            props.to_string().replace('\\', "\\\\")
        );
        out.extend_from_slice(line.as_bytes());
    }
    out
}

async fn copy_all(database_url: &str, events: &[pb::UsageEvent]) -> (u64, std::time::Duration) {
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .expect("connect");
    sqlx::raw_sql(
        "CREATE SCHEMA IF NOT EXISTS bench; \
         CREATE TABLE bench.usage_events (LIKE ingestion.usage_events INCLUDING DEFAULTS) PARTITION BY RANGE (occurred_at); \
         CREATE INDEX ON bench.usage_events (account_id, occurred_at); \
         CREATE TABLE bench.usage_events_all PARTITION OF bench.usage_events DEFAULT;",
    )
    .execute(&mut conn)
    .await
    .expect("copy target");
    let data = copy_text(events);
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "COPY bench.usage_events (message_id, account_id, user_id, event_name, occurred_at, quantity, properties) FROM STDIN",
        )
        .await
        .expect("copy in");
    for piece in data.chunks(1 << 20) {
        copy.send(piece).await.expect("copy data");
    }
    let rows = copy.finish().await.expect("copy finish");
    (rows, started.elapsed())
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let total: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let streams: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2).max(1);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let mut app = TestStack::spawn().await;
        create_accounts(&mut app).await;
        eprintln!("generating {total} events");
        let events = events(total);

        let (copied, copy_time) = copy_all(&app.stack.database_url, &events).await;
        let (accepted, grpc_time) = stream_all(&app, events, streams).await;
        assert_eq!(accepted, total, "every event accepted once");
        assert_eq!(copied as usize, total);

        let copy_rate = total as f64 / copy_time.as_secs_f64();
        let grpc_rate = total as f64 / grpc_time.as_secs_f64();
        println!("events:            {total}");
        println!("plain COPY:        {:>10.0} events/s  ({:.2} s)", copy_rate, copy_time.as_secs_f64());
        println!(
            "gRPC StreamEvents: {:>10.0} events/s  ({:.2} s, {streams} streams, chunks of {CHUNK}; dedup, partitions, rollups, outbox)",
            grpc_rate,
            grpc_time.as_secs_f64()
        );
        println!("ratio gRPC/COPY:   {:.1} %", grpc_rate / copy_rate * 100.0);
        app.stop().await;
    });
}
