//! Any bytes, read the ways usage events reach Tenure: as a `StreamEvents`
//! chunk (the codec's NUL check, protobuf decoding, then each event's
//! validation) and as an import file in JSON Lines and in CSV. Nothing may
//! panic, and an event the import reader produces is one ingestion can
//! judge.

#![no_main]

use std::io::Write as _;

use libfuzzer_sys::fuzz_target;
use prost::Message as _;
use tenure_proto::ingestion::v1 as pb;

fn validate(events: &[pb::UsageEvent]) {
    let mut violations = tenure_platform::Violations::default();
    let mut checker = tenure_ingestion::convert::Checker {
        violations: &mut violations,
        future_tolerance: chrono::Duration::minutes(5),
        max_event_age: chrono::Duration::days(3650),
        max_properties: 16 * 1024,
    };
    for (i, event) in events.iter().enumerate() {
        let _ = tenure_ingestion::events::event(&mut checker, event, &format!("events[{i}]"));
    }
}

fuzz_target!(|data: &[u8]| {
    let chunk = "tenure.ingestion.v1.StreamEventsRequest";
    if tenure_proto::codec::nul_in(chunk, data).is_none()
        && let Ok(request) = pb::StreamEventsRequest::decode(data)
    {
        validate(&request.events);
    }
    for suffix in [".jsonl", ".csv"] {
        let Ok(mut file) = tempfile::Builder::new().suffix(suffix).tempfile() else {
            return;
        };
        if file.write_all(data).is_err() {
            return;
        }
        if let Ok(events) = tenure::import::read_events(file.path(), 1000) {
            validate(&events);
        }
    }
});
