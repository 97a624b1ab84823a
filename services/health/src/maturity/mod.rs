//! Maturity models: [`model`] holds the levels and their behaviours (pure),
//! [`store`] the model versions and each account's held level, and
//! [`Tracking`] moves held levels as accounts are scored and tells
//! playbooks of changes and of accounts stuck at a level.

pub mod model;
pub mod store;

use std::collections::BTreeMap;

use chrono::NaiveDate;
use tenure_platform::time;
use tenure_proto::common::v1::AccountEventKind;
use tenure_proto::playbooks::v1 as playbooks;

use model::Notice;
use store::StoredModel;

/// Playbooks hear of level changes and stuck accounts as account events.
pub const TOPIC_ACCOUNT_EVENTS: &str = "playbooks.account_events";

/// Held levels moved by one recompute: the models read once, the events
/// gathered for one notice.
#[derive(Default)]
pub struct Tracking {
    models: Option<Vec<StoredModel>>,
    events: Vec<playbooks::AccountEvent>,
}

impl Tracking {
    /// Moves the held level of each account (its id and signal values, as
    /// scorecards read them) on every model, as scored on `today`.
    pub async fn track(
        &mut self,
        tx: &mut sqlx::PgConnection,
        accounts: &[(String, BTreeMap<String, f64>)],
        today: NaiveDate,
    ) -> sqlx::Result<()> {
        if self.models.is_none() {
            self.models = Some(store::list_latest(&mut *tx, None, None).await?);
        }
        let models = self.models.as_deref().unwrap_or_default();
        if models.is_empty() || accounts.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = accounts.iter().map(|(id, _)| id.clone()).collect();
        let mut held = store::held_many(tx, &ids).await?;
        let mut saves = Vec::with_capacity(accounts.len() * models.len());
        for model in models {
            let def = &model.definition.0;
            for (account_id, values) in accounts {
                let key = (model.name.clone(), account_id.clone());
                let level = def.assess(values).level;
                let (next, notice) =
                    model::advance(def, model.version, held.remove(&key), level, today);
                if let Some(notice) = notice {
                    self.events.push(event(model, account_id, notice));
                }
                saves.push((key, next));
            }
        }
        store::save_held(tx, &saves).await
    }

    /// Queues the gathered events for playbooks in the caller's transaction.
    pub async fn enqueue(self, tx: &mut sqlx::PgConnection) -> tenure_platform::ApiResult<()> {
        if self.events.is_empty() {
            return Ok(());
        }
        let notice = playbooks::NotifyAccountEventsRequest {
            request_id: String::new(),
            events: self.events,
        };
        tenure_platform::outbox::enqueue(tx, crate::SCHEMA, TOPIC_ACCOUNT_EVENTS, &notice).await?;
        Ok(())
    }
}

fn event(model: &StoredModel, account_id: &str, notice: Notice) -> playbooks::AccountEvent {
    let def = &model.definition.0;
    let (kind, level, extra) = match notice {
        Notice::Changed { previous, level } => (
            AccountEventKind::MaturityLevelChanged,
            level,
            ("previous_level", previous.to_string()),
        ),
        Notice::Stuck { level, days } => (
            AccountEventKind::MaturityLevelStuck,
            level,
            ("days_at_level", days.to_string()),
        ),
    };
    let attributes = [
        ("model", model.name.clone()),
        ("level", level.to_string()),
        ("level_name", def.level_name(level).to_owned()),
        (extra.0, extra.1),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    playbooks::AccountEvent {
        account_id: account_id.to_owned(),
        kind: kind.word().unwrap_or_default(),
        occurred_at: Some(time::to_timestamp(chrono::Utc::now())),
        attributes,
        event_kind: kind as i32,
    }
}
