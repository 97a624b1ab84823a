//! Generated code for the Tenure APIs, and the codec every service and
//! client of them uses ([`codec`]).

pub mod codec;

/// A write that carries a `request_id`: retried with the same id, it is
/// applied once (see `tenure_platform::idempotency`).
pub trait Idempotent {
    fn request_id(&self) -> &str;
}

include!(concat!(env!("OUT_DIR"), "/idempotent.rs"));

/// Encoded `FileDescriptorSet` of every Tenure proto, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("tenure_descriptor");

/// [`FILE_DESCRIPTOR_SET`] decoded, once per process.
pub fn descriptors() -> &'static prost_types::FileDescriptorSet {
    use prost::Message as _;
    static SET: std::sync::OnceLock<prost_types::FileDescriptorSet> = std::sync::OnceLock::new();
    SET.get_or_init(|| {
        prost_types::FileDescriptorSet::decode(FILE_DESCRIPTOR_SET)
            .expect("the compiled descriptor set decodes")
    })
}

/// Whether the method at gRPC path `path`
/// (`/tenure.ingestion.v1.IngestionService/StreamEvents`) streams its
/// requests or its answers. Unknown paths do not.
pub fn is_streaming(path: &str) -> bool {
    static STREAMING: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    STREAMING
        .get_or_init(|| {
            let mut streaming = std::collections::HashSet::new();
            for file in &descriptors().file {
                for service in &file.service {
                    for method in &service.method {
                        if method.client_streaming() || method.server_streaming() {
                            streaming.insert(format!(
                                "/{}.{}/{}",
                                file.package(),
                                service.name(),
                                method.name()
                            ));
                        }
                    }
                }
            }
            streaming
        })
        .contains(path)
}

#[cfg(test)]
#[test]
fn tells_streams_from_unary_calls() {
    assert!(is_streaming(
        "/tenure.ingestion.v1.IngestionService/StreamEvents"
    ));
    assert!(is_streaming(
        "/tenure.ingestion.v1.IngestionService/StreamAccountSignals"
    ));
    assert!(!is_streaming(
        "/tenure.ingestion.v1.IngestionService/GetAccount"
    ));
    assert!(!is_streaming("/nothing/Here"));
}

pub mod common {
    pub mod v1 {
        tonic::include_proto!("tenure.common.v1");

        impl Band {
            /// The band as documents and reports spell it ("red"); none
            /// when unspecified.
            pub fn word(self) -> Option<&'static str> {
                match self {
                    Self::Red => Some("red"),
                    Self::Yellow => Some("yellow"),
                    Self::Green => Some("green"),
                    Self::Unspecified => None,
                }
            }

            /// The band a word spells, if any.
            pub fn from_word(word: &str) -> Option<Self> {
                [Self::Red, Self::Yellow, Self::Green]
                    .into_iter()
                    .find(|band| band.word() == Some(word))
            }
        }

        impl AccountEventKind {
            const PREFIX: &'static str = "ACCOUNT_EVENT_KIND_";

            /// The kind as a playbook's trigger names it: its name in lower
            /// case without the prefix ("sponsor_changed"); none when
            /// unspecified.
            pub fn word(self) -> Option<String> {
                (self != Self::Unspecified).then(|| {
                    self.as_str_name()
                        .trim_start_matches(Self::PREFIX)
                        .to_lowercase()
                })
            }

            /// The kind a word names, if any.
            pub fn from_word(word: &str) -> Option<Self> {
                if word.is_empty() || word.bytes().any(|b| b.is_ascii_uppercase()) {
                    return None;
                }
                Self::from_str_name(&format!("{}{}", Self::PREFIX, word.to_uppercase()))
                    .filter(|kind| *kind != Self::Unspecified)
            }

            /// Every kind there is, in the order of their numbers.
            pub fn all() -> impl Iterator<Item = Self> {
                (1..).map_while(|code| Self::try_from(code).ok())
            }
        }

        #[cfg(test)]
        #[test]
        fn event_kinds_spell_as_words_and_back() {
            let words: Vec<String> = AccountEventKind::all().filter_map(|k| k.word()).collect();
            assert_eq!(words.len(), 8);
            assert_eq!(words[0], "sponsor_changed");
            for kind in AccountEventKind::all() {
                assert_eq!(
                    AccountEventKind::from_word(&kind.word().unwrap()),
                    Some(kind)
                );
            }
            for word in ["", "unspecified", "SPONSOR_CHANGED", "sponsor changed"] {
                assert_eq!(AccountEventKind::from_word(word), None, "{word}");
            }
        }

        #[cfg(test)]
        #[test]
        fn bands_spell_as_words_and_back() {
            for band in [Band::Red, Band::Yellow, Band::Green] {
                assert_eq!(Band::from_word(band.word().unwrap()), Some(band));
            }
            assert_eq!(Band::Unspecified.word(), None);
            assert_eq!(Band::from_word("purple"), None);
            assert_eq!(Band::from_word(""), None);
        }
    }
}

pub mod ingestion {
    pub mod v1 {
        tonic::include_proto!("tenure.ingestion.v1");
    }
}

pub mod health {
    pub mod v1 {
        tonic::include_proto!("tenure.health.v1");
    }
}

pub mod renewals {
    pub mod v1 {
        tonic::include_proto!("tenure.renewals.v1");
    }
}

pub mod playbooks {
    pub mod v1 {
        tonic::include_proto!("tenure.playbooks.v1");
    }
}
