//! Trigger events as notices bring them, recorded for the matcher.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;

/// An event to record: what happened to which account, when, and its
/// attributes.
pub struct TriggerEvent {
    pub kind: String,
    pub account_id: String,
    pub payload: Value,
    pub occurred_at: DateTime<Utc>,
}

/// Records `events` from `source` with one statement, in the order given,
/// each carrying the trace of the notice that brought it.
pub async fn record(
    tx: &mut PgConnection,
    source: &str,
    events: &[TriggerEvent],
    trace_context: &Value,
) -> sqlx::Result<()> {
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let accounts: Vec<&str> = events.iter().map(|e| e.account_id.as_str()).collect();
    let payloads: Vec<&Value> = events.iter().map(|e| &e.payload).collect();
    let times: Vec<DateTime<Utc>> = events.iter().map(|e| e.occurred_at).collect();
    sqlx::query(
        "INSERT INTO playbooks.trigger_events (source, kind, account_id, payload, occurred_at, \
           trace_context) \
         SELECT $1, e.kind, e.account_id, e.payload, e.occurred_at, $6 \
         FROM unnest($2::text[], $3::text[], $4::jsonb[], $5::timestamptz[]) \
           WITH ORDINALITY AS e(kind, account_id, payload, occurred_at, n) ORDER BY e.n",
    )
    .bind(source)
    .bind(&kinds)
    .bind(&accounts)
    .bind(&payloads)
    .bind(&times)
    .bind(trace_context)
    .execute(tx)
    .await?;
    Ok(())
}
