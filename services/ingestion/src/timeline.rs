//! An account's timeline: every dated thing that happened to it, newest first.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Entry {
    pub occurred_at: DateTime<Utc>,
    pub kind: String,
    pub record_id: String,
    pub summary: String,
}

/// Entries older than the cursor `(occurred_at, kind, record_id)`, at most `limit`.
pub async fn page(
    pool: &PgPool,
    account_id: &str,
    after: Option<&(DateTime<Utc>, String, String)>,
    limit: i64,
) -> sqlx::Result<Vec<Entry>> {
    let (at, kind, record) = match after {
        Some((at, kind, record)) => (Some(*at), Some(kind.as_str()), Some(record.as_str())),
        None => (None, None, None),
    };
    sqlx::query_as(
        "WITH heads AS (SELECT kind, record_id, data FROM ingestion.record_heads WHERE account_id = $1), \
         entries AS ( \
           SELECT valid_from AS occurred_at, 'account.updated' AS kind, account_id AS record_id, name AS summary \
             FROM ingestion.account_versions WHERE account_id = $1 \
           UNION ALL \
           SELECT occurred_at, 'subscription.' || kind, subscription_id, \
                  format('ARR %s -> %s (minor units, %s)', previous_arr_minor, new_arr_minor, currency) \
             FROM ingestion.subscription_changes WHERE account_id = $1 \
           UNION ALL \
           SELECT occurred_at, 'contact.' || role || '_' || change, contact_id, '' \
             FROM ingestion.relationship_changes WHERE account_id = $1 \
           UNION ALL \
           SELECT (data->>'opened_at')::timestamptz, 'ticket.opened', record_id, \
                  format('P%s %s', data->>'priority', data->>'category') FROM heads WHERE kind = 'ticket' \
           UNION ALL \
           SELECT (data->>'closed_at')::timestamptz, 'ticket.closed', record_id, data->>'status' \
             FROM heads WHERE kind = 'ticket' AND data->>'closed_at' IS NOT NULL \
           UNION ALL \
           SELECT (data->>'responded_at')::timestamptz, 'survey.' || (data->>'kind'), record_id, \
                  format('score %s', data->>'score') FROM heads WHERE kind = 'survey' \
           UNION ALL \
           SELECT ((data->>'issued_on')::date)::timestamp AT TIME ZONE 'UTC', 'invoice.issued', record_id, \
                  format('%s %s (minor units)', data->>'amount_minor', data->>'currency') FROM heads WHERE kind = 'invoice' \
           UNION ALL \
           SELECT ((data->>'paid_on')::date)::timestamp AT TIME ZONE 'UTC', 'invoice.paid', record_id, '' \
             FROM heads WHERE kind = 'invoice' AND data->>'paid_on' IS NOT NULL \
           UNION ALL \
           SELECT (data->>'occurred_at')::timestamptz, 'signal.' || (data->>'kind'), record_id, data->>'source' \
             FROM heads WHERE kind = 'external_signal' \
         ) \
         SELECT occurred_at, kind, record_id, summary FROM entries \
         WHERE $2::timestamptz IS NULL OR (occurred_at, kind, record_id) < ($2, $3, $4) \
         ORDER BY occurred_at DESC, kind DESC, record_id DESC LIMIT $5",
    )
    .bind(account_id)
    .bind(at)
    .bind(kind)
    .bind(record)
    .bind(limit)
    .fetch_all(pool)
    .await
}
