//! Source records that may start playbooks, as account events: a new NPS
//! response, a new external signal, a sponsor or champion change.

use std::any::Any;
use std::collections::BTreeMap;

use tenure_platform::time::to_timestamp;
use tenure_proto::common::v1::AccountEventKind;
use tenure_proto::playbooks::v1::AccountEvent;

use crate::changes::RelationshipChange;
use crate::kinds::{Role, SignalRecord, SurveyKind, SurveyRecord};
use crate::records::Record;

/// The event a newly stored record stands for, if any.
pub fn account_event<R: Record>(record: &R) -> Option<AccountEvent> {
    let record: &dyn Any = record;
    if let Some(survey) = record.downcast_ref::<SurveyRecord>() {
        if survey.kind != SurveyKind::Nps {
            return None;
        }
        return Some(event(
            AccountEventKind::NpsResponse,
            survey.account_id.clone(),
            survey.responded_at,
            BTreeMap::from([
                ("score".to_owned(), survey.score.to_string()),
                ("contact_id".to_owned(), survey.contact_id.clone()),
            ]),
        ));
    }
    if let Some(signal) = record.downcast_ref::<SignalRecord>() {
        let signal_type = serde_json::to_value(signal.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        return Some(event(
            AccountEventKind::ExternalSignal,
            signal.account_id.clone(),
            signal.occurred_at,
            BTreeMap::from([
                ("signal_type".to_owned(), signal_type),
                ("source".to_owned(), signal.source.clone()),
            ]),
        ));
    }
    None
}

/// A sponsor or champion change as an event.
pub fn relationship_event(change: &RelationshipChange) -> AccountEvent {
    let kind = match change.role {
        Role::Sponsor => AccountEventKind::SponsorChanged,
        _ => AccountEventKind::ChampionChanged,
    };
    event(
        kind,
        change.account_id.clone(),
        change.occurred_at,
        BTreeMap::from([
            ("contact_id".to_owned(), change.contact_id.clone()),
            ("change".to_owned(), change.change.to_owned()),
        ]),
    )
}

/// An event of `kind`, named both ways (the enum, and the word older
/// receivers read).
fn event(
    kind: AccountEventKind,
    account_id: String,
    occurred_at: chrono::DateTime<chrono::Utc>,
    attributes: BTreeMap<String, String>,
) -> AccountEvent {
    AccountEvent {
        account_id,
        kind: kind.word().unwrap_or_default(),
        occurred_at: Some(to_timestamp(occurred_at)),
        attributes,
        event_kind: kind as i32,
    }
}
