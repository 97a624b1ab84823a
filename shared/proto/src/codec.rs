//! The codec of every Tenure service and client: prost's encoding, with two
//! rules at the edge. A message that does not decode is the caller's error
//! (INVALID_ARGUMENT, where tonic says INTERNAL), and no string anywhere in a
//! message (ids, names, page tokens, map keys, JSON properties held in a
//! `Struct`) may hold the NUL character, which Postgres cannot store: it is
//! refused once, here, with the field's path, before any handler sees it.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::OnceLock;

use prost::Message;
use prost::bytes::Buf as _;
use prost_types::field_descriptor_proto::{Label, Type};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::{Code, Status};
use tonic_prost::{ProstDecoder, ProstEncoder};
use tonic_types::{ErrorDetails, StatusExt as _};

/// prost's codec, refusing strings with NUL and naming undecodable
/// messages the caller's error.
#[derive(Debug, Clone)]
pub struct TenureCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for TenureCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

impl<T, U> Codec for TenureCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + prost::Name + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = TenureDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        TenureDecoder {
            inner: ProstDecoder::default(),
        }
    }
}

/// Decodes `U` with prost after looking for NUL in its strings.
#[derive(Debug)]
pub struct TenureDecoder<U> {
    inner: ProstDecoder<U>,
}

impl<U: Message + prost::Name + Default> Decoder for TenureDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        // Only what callers send is looked through: a server's answers come
        // from Postgres, which holds no NUL, and a client reading a stream
        // of a whole base would pay the scan on every row. RPC messages are
        // named `…Request` and `…Response` (buf lint holds them to it).
        // The whole message is one slice (tonic buffers it before decoding).
        if U::NAME.ends_with("Request")
            && buf.chunk().len() == buf.remaining()
            && let Some(field) = nul_in(&U::full_name(), buf.chunk())
        {
            return Err(nul_status(&field));
        }
        self.inner.decode(buf).map_err(|status| {
            if status.code() == Code::Internal {
                Status::invalid_argument(status.message().to_owned())
            } else {
                status
            }
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.inner.buffer_settings()
    }
}

/// The answer to a string holding NUL at `field`.
pub fn nul_status(field: &str) -> Status {
    let description = "must not contain the NUL character (U+0000)";
    Status::with_error_details(
        Code::InvalidArgument,
        format!("{field} {description}"),
        ErrorDetails::with_bad_request_violation(field, description),
    )
}

/// The path (`accounts[3].name`) of the first string of the encoded message
/// `bytes` of type `message` (full name) that holds NUL. `None` as well
/// when the bytes are malformed: decoding says so.
pub fn nul_in(message: &str, bytes: &[u8]) -> Option<String> {
    let index = Index::get();
    let &start = index.by_name.get(message)?;
    let mut path = String::new();
    match index.scan(start, bytes, &mut path, 0) {
        Scan::Nul => Some(path),
        Scan::Clean | Scan::Malformed => None,
    }
}

enum Scan {
    Clean,
    Nul,
    Malformed,
}

/// Deeper than prost decodes; such a message fails to decode anyway.
const MAX_DEPTH: u32 = 100;

#[derive(Debug)]
enum Kind {
    Text,
    Message(usize),
    Other,
}

#[derive(Debug)]
struct Field {
    number: u32,
    name: String,
    repeated: bool,
    kind: Kind,
}

/// Every message of [`crate::FILE_DESCRIPTOR_SET`] (imports included), with
/// the fields that can hold strings.
struct Index {
    by_name: HashMap<String, usize>,
    messages: Vec<Vec<Field>>,
}

impl Index {
    fn get() -> &'static Index {
        static INDEX: OnceLock<Index> = OnceLock::new();
        INDEX.get_or_init(|| {
            let mut found = Vec::new();
            for file in &crate::descriptors().file {
                let package = file.package();
                for message in &file.message_type {
                    collect(package, message, &mut found);
                }
            }
            let by_name: HashMap<String, usize> = found
                .iter()
                .enumerate()
                .map(|(i, (name, _))| (name.clone(), i))
                .collect();
            let messages = found
                .iter()
                .map(|(_, message)| {
                    message
                        .field
                        .iter()
                        .map(|f| Field {
                            number: u32::try_from(f.number()).unwrap_or(0),
                            name: f.name().to_owned(),
                            repeated: f.label() == Label::Repeated,
                            kind: match f.r#type() {
                                Type::String => Kind::Text,
                                Type::Message => by_name
                                    .get(f.type_name().trim_start_matches('.'))
                                    .map_or(Kind::Other, |&i| Kind::Message(i)),
                                _ => Kind::Other,
                            },
                        })
                        .collect()
                })
                .collect();
            Index { by_name, messages }
        })
    }

    fn scan(&self, message: usize, mut bytes: &[u8], path: &mut String, depth: u32) -> Scan {
        if depth > MAX_DEPTH {
            return Scan::Malformed;
        }
        let fields = &self.messages[message];
        let mut seen: Vec<(u32, usize)> = Vec::new();
        while !bytes.is_empty() {
            let Some(key) = varint(&mut bytes) else {
                return Scan::Malformed;
            };
            let payload = match key & 7 {
                0 => match varint(&mut bytes) {
                    Some(_) => continue,
                    None => return Scan::Malformed,
                },
                1 | 5 => {
                    let width = if key & 7 == 1 { 8 } else { 4 };
                    if bytes.len() < width {
                        return Scan::Malformed;
                    }
                    bytes = &bytes[width..];
                    continue;
                }
                2 => {
                    let Some(len) = varint(&mut bytes).and_then(|l| usize::try_from(l).ok()) else {
                        return Scan::Malformed;
                    };
                    if bytes.len() < len {
                        return Scan::Malformed;
                    }
                    let (payload, rest) = bytes.split_at(len);
                    bytes = rest;
                    payload
                }
                _ => return Scan::Malformed,
            };
            let number = u32::try_from(key >> 3).unwrap_or(0);
            let Some(field) = fields.iter().find(|f| f.number == number) else {
                continue;
            };
            if matches!(field.kind, Kind::Other) {
                continue;
            }
            let occurrence = match seen.iter_mut().find(|(n, _)| *n == number) {
                Some((_, count)) => {
                    *count += 1;
                    *count
                }
                None => {
                    seen.push((number, 0));
                    0
                }
            };
            let mark = path.len();
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&field.name);
            if field.repeated {
                path.push_str(&format!("[{occurrence}]"));
            }
            let found = match field.kind {
                Kind::Text if payload.contains(&0) => Scan::Nul,
                Kind::Message(inner) => self.scan(inner, payload, path, depth + 1),
                _ => Scan::Clean,
            };
            if !matches!(found, Scan::Clean) {
                return found;
            }
            path.truncate(mark);
        }
        Scan::Clean
    }
}

fn collect<'a>(
    scope: &str,
    message: &'a prost_types::DescriptorProto,
    found: &mut Vec<(String, &'a prost_types::DescriptorProto)>,
) {
    let name = if scope.is_empty() {
        message.name().to_owned()
    } else {
        format!("{scope}.{}", message.name())
    };
    for nested in &message.nested_type {
        collect(&name, nested, found);
    }
    found.push((name, message));
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingestion::v1 as ipb;
    use prost::Name as _;

    fn nul_of<M: Message + prost::Name>(message: &M) -> Option<String> {
        nul_in(&M::full_name(), &message.encode_to_vec())
    }

    #[test]
    fn finds_nul_anywhere_and_names_the_field() {
        let clean = ipb::BatchUpsertAccountsRequest {
            request_id: "r".into(),
            accounts: vec![ipb::Account {
                account_id: "a".into(),
                name: "Acme".into(),
                ..Default::default()
            }],
        };
        assert_eq!(nul_of(&clean), None);

        let mut bad = clean.clone();
        bad.accounts.push(ipb::Account {
            account_id: "b".into(),
            name: "Ac\0me".into(),
            ..Default::default()
        });
        assert_eq!(nul_of(&bad).as_deref(), Some("accounts[1].name"));

        let mut key = clean.clone();
        key.accounts[0].attributes.insert(
            "ti\0er".into(),
            ipb::AttributeValue {
                value: Some(ipb::attribute_value::Value::Category("gold".into())),
            },
        );
        assert_eq!(
            nul_of(&key).as_deref(),
            Some("accounts[0].attributes[0].key")
        );
        let mut value = clean;
        value.accounts[0].attributes.insert(
            "tier".into(),
            ipb::AttributeValue {
                value: Some(ipb::attribute_value::Value::Category("go\0ld".into())),
            },
        );
        assert_eq!(
            nul_of(&value).as_deref(),
            Some("accounts[0].attributes[0].value.category")
        );
    }

    #[test]
    fn looks_inside_json_properties() {
        use prost_types::value::Kind as V;
        let nested = prost_types::Struct {
            fields: [(
                "plan".to_owned(),
                prost_types::Value {
                    kind: Some(V::ListValue(prost_types::ListValue {
                        values: vec![prost_types::Value {
                            kind: Some(V::StringValue("pro\0".into())),
                        }],
                    })),
                },
            )]
            .into(),
        };
        let request = ipb::StreamEventsRequest {
            events: vec![ipb::UsageEvent {
                message_id: "e".into(),
                properties: Some(nested),
                ..Default::default()
            }],
            ..Default::default()
        };
        let found = nul_of(&request).expect("found");
        assert!(
            found.starts_with("events[0].properties.fields[0].value"),
            "{found}"
        );
    }

    #[test]
    fn malformed_bytes_are_left_to_the_decoder() {
        let name = ipb::BatchUpsertAccountsRequest::full_name();
        assert_eq!(nul_in(&name, &[0x12, 0x05, 0x0a]), None);
        assert_eq!(nul_in(&name, &[0xff; 12]), None);
        // Deeper nesting than the decoder accepts is not walked to the end.
        let mut deep = prost_types::Value::default();
        for _ in 0..200 {
            deep = prost_types::Value {
                kind: Some(prost_types::value::Kind::ListValue(
                    prost_types::ListValue { values: vec![deep] },
                )),
            };
        }
        assert_eq!(nul_in("google.protobuf.Value", &deep.encode_to_vec()), None);
    }
}
