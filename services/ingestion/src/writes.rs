//! The stages every write goes through: validate the batch, claim the
//! idempotency key, check the accounts it names, apply, and record what
//! changed in the outbox, all in one transaction.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use prost::Message;
use sqlx::{PgConnection, Postgres, Transaction};
use tenure_platform::{ApiError, ApiResult, Violations, idempotency, outbox};
use tenure_proto::health::v1::NotifyAccountsChangedRequest;
use tenure_proto::ingestion::v1::UpsertSummary;
use tenure_proto::playbooks::v1::{AccountEvent, NotifyAccountEventsRequest};
use tenure_proto::renewals::v1::NotifySubscriptionsChangedRequest;

use crate::SCHEMA;
use crate::convert::Checker;
use crate::events::EventRecord;
use crate::limits::Limits;
use crate::notify::{TOPIC_ACCOUNT_EVENTS, TOPIC_ACCOUNTS_CHANGED, TOPIC_SUBSCRIPTIONS_CHANGED};
use crate::records::{self, KnownAccounts, Record, Upserted};
use crate::state::IngestionApi;

/// A write in progress.
pub struct Write<'r> {
    pub tx: Transaction<'static, Postgres>,
    method: &'static str,
    request_id: &'r str,
}

/// What a write changed, for the services that react to it.
#[derive(Debug, Default)]
pub struct Changes {
    pub accounts: BTreeSet<String>,
    pub earliest_event: Option<DateTime<Utc>>,
    pub subscriptions: BTreeSet<String>,
    /// Events playbooks may start on (new NPS responses, external signals,
    /// sponsor and champion changes).
    pub events: Vec<AccountEvent>,
}

impl Changes {
    pub fn account(&mut self, account_id: &str, event_time: DateTime<Utc>) {
        self.accounts.insert(account_id.to_owned());
        self.earliest_event = Some(
            self.earliest_event
                .map_or(event_time, |t| t.min(event_time)),
        );
    }

    pub fn record<R: Record>(&mut self, upserted: &Upserted<R>) {
        for applied in &upserted.applied {
            let earliest = applied.old.as_ref().map_or(applied.new.event_time(), |o| {
                o.event_time().min(applied.new.event_time())
            });
            for account in [
                applied.new.account_id(),
                applied.old.as_ref().and_then(|o| o.account_id()),
            ]
            .into_iter()
            .flatten()
            {
                self.account(account, earliest);
            }
            if applied.old.is_none() {
                self.events
                    .extend(crate::triggers::account_event(&applied.new));
            }
        }
    }
}

pub fn summary<R>(upserted: &Upserted<R>) -> UpsertSummary {
    UpsertSummary {
        applied_count: upserted.applied.len() as i32,
        stale_count: upserted.stale as i32,
    }
}

/// Validates every item of a batch with `convert`; any problem rejects the batch.
pub fn parse_batch<P, R>(
    limits: &Limits,
    items: &[P],
    field: &str,
    convert: fn(&mut Checker<'_>, &P, &str) -> Option<R>,
) -> ApiResult<Vec<R>> {
    if items.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if items.len() > limits.max_batch_items {
        return Err(ApiError::invalid(
            field,
            format!("must hold at most {} items", limits.max_batch_items),
        ));
    }
    let mut violations = Violations::default();
    let mut checker = limits.checker(&mut violations);
    let records: Vec<R> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| convert(&mut checker, item, &format!("{field}[{i}]")))
        .collect();
    violations.into_result()?;
    Ok(records)
}

/// Names each item whose account does not exist.
pub async fn require_accounts<'a>(
    known: &KnownAccounts,
    tx: &mut PgConnection,
    field: &str,
    accounts: impl Iterator<Item = Option<&'a str>>,
) -> ApiResult<()> {
    let accounts: Vec<Option<&str>> = accounts.collect();
    let named: Vec<String> = accounts.iter().flatten().map(|s| s.to_string()).collect();
    if named.is_empty() {
        return Ok(());
    }
    let unknown = known.unknown(tx, &named).await?;
    let mut violations = Violations::default();
    for (i, account) in accounts.iter().enumerate() {
        if let Some(account) = account.filter(|a| unknown.contains(*a)) {
            violations.add(
                format!("{field}[{i}].account_id"),
                format!("names no known account: {account:?}"),
            );
        }
    }
    violations.into_result()
}

impl IngestionApi {
    /// Opens the write's transaction and claims its idempotency key;
    /// `Err(response)` replays the answer to an earlier identical request.
    pub async fn begin<'r, Req: Message, Resp: Message + Default>(
        &self,
        method: &'static str,
        request_id: &'r str,
        request: &Req,
    ) -> ApiResult<Result<Write<'r>, Resp>> {
        let mut tx = self.pool.begin().await?;
        if let Some(previous) =
            idempotency::claim(&mut tx, SCHEMA, method, request_id, request).await?
        {
            return Ok(Err(previous));
        }
        Ok(Ok(Write {
            tx,
            method,
            request_id,
        }))
    }

    /// Records the outbox messages of `changes`, stores the response for
    /// retries, and commits.
    pub async fn finish<Resp: Message>(
        &self,
        write: Write<'_>,
        changes: Changes,
        response: Resp,
    ) -> ApiResult<Resp> {
        let Write {
            mut tx,
            method,
            request_id,
        } = write;
        enqueue_changes(&mut tx, changes).await?;
        idempotency::complete(&mut tx, SCHEMA, method, request_id, &response).await?;
        tx.commit().await?;
        Ok(response)
    }

    /// The whole write of a record kind with no side effects of its own.
    pub async fn upsert_kind<P, R: Record, Req: Message, Resp: Message + Default>(
        &self,
        method: &'static str,
        request_id: &str,
        request: &Req,
        (field, items): (&str, &[P]),
        convert: fn(&mut Checker<'_>, &P, &str) -> Option<R>,
        respond: fn(UpsertSummary) -> Resp,
    ) -> ApiResult<Resp> {
        let records = parse_batch(&self.limits, items, field, convert)?;
        let mut write = match self.begin(method, request_id, request).await? {
            Ok(write) => write,
            Err(replay) => return Ok(replay),
        };
        require_accounts(
            &self.accounts,
            &mut write.tx,
            field,
            records.iter().map(|r| r.account_id()),
        )
        .await?;
        let upserted = records::upsert(&mut write.tx, records).await?;
        let mut changes = Changes::default();
        changes.record(&upserted);
        self.finish(write, changes, respond(summary(&upserted)))
            .await
    }
}

impl IngestionApi {
    /// Stores events of known accounts once each (a repeated message id is
    /// a duplicate), their months created first, with the notices of the
    /// accounts they change in the same transaction; answers which were new.
    pub async fn store_events(
        &self,
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> ApiResult<Vec<bool>> {
        self.events.ensure_partitions(&mut *conn, events).await?;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        let accepted = self.events.ingest(&mut tx, events).await?;
        let mut changes = Changes::default();
        for (event, _) in events.iter().zip(&accepted).filter(|(_, new)| **new) {
            changes.account(&event.account_id, event.occurred_at);
        }
        enqueue_changes(&mut tx, changes).await?;
        tx.commit().await?;
        Ok(accepted)
    }
}

/// Records outbox messages for the services that react to `changes`.
pub async fn enqueue_changes(tx: &mut PgConnection, changes: Changes) -> ApiResult<()> {
    if !changes.accounts.is_empty() {
        let notice = NotifyAccountsChangedRequest {
            request_id: String::new(),
            account_ids: changes.accounts.into_iter().collect(),
            earliest_event_time: changes
                .earliest_event
                .map(tenure_platform::time::to_timestamp),
        };
        outbox::enqueue(&mut *tx, SCHEMA, TOPIC_ACCOUNTS_CHANGED, &notice).await?;
    }
    if !changes.events.is_empty() {
        let notice = NotifyAccountEventsRequest {
            request_id: String::new(),
            events: changes.events,
        };
        outbox::enqueue(&mut *tx, SCHEMA, TOPIC_ACCOUNT_EVENTS, &notice).await?;
    }
    if !changes.subscriptions.is_empty() {
        let notice = NotifySubscriptionsChangedRequest {
            request_id: String::new(),
            subscription_ids: changes.subscriptions.into_iter().collect(),
        };
        outbox::enqueue(&mut *tx, SCHEMA, TOPIC_SUBSCRIPTIONS_CHANGED, &notice).await?;
    }
    Ok(())
}
