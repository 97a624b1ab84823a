//! The rescore queue: accounts whose data changed since they were scored,
//! each with the trace context of the notice that marked it last.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

/// Marks accounts as changed; returns how many were not marked before.
/// The earliest event time only ever moves back. A busy account already
/// marked within the last minute is left as it is, so a stream of notices
/// does not rewrite the same rows.
pub async fn mark(
    tx: &mut PgConnection,
    account_ids: &[String],
    earliest_event_time: Option<DateTime<Utc>>,
) -> sqlx::Result<u64> {
    let mut sorted = account_ids.to_vec();
    sorted.sort();
    sorted.dedup();
    let newly_marked: i64 = sqlx::query_scalar(
        "WITH marked AS ( \
           INSERT INTO health.rescore_queue AS q (account_id, earliest_event_time, trace_context) \
           SELECT unnest($1::text[]), $2, $3 \
           ON CONFLICT (account_id) DO UPDATE SET \
             last_marked_at = now(), trace_context = EXCLUDED.trace_context, \
             earliest_event_time = LEAST(q.earliest_event_time, EXCLUDED.earliest_event_time) \
           WHERE EXCLUDED.earliest_event_time < q.earliest_event_time \
              OR (q.earliest_event_time IS NULL AND EXCLUDED.earliest_event_time IS NOT NULL) \
              OR q.last_marked_at < now() - interval '1 minute' \
           RETURNING (xmax = 0) AS inserted \
         ) SELECT count(*) FILTER (WHERE inserted) FROM marked",
    )
    .bind(&sorted)
    .bind(earliest_event_time)
    .bind(tenure_platform::trace::stored_context())
    .fetch_one(&mut *tx)
    .await?;
    Ok(newly_marked as u64)
}

/// When an account was last marked, if it waits for rescoring.
pub async fn pending_since(pool: &PgPool, account_id: &str) -> sqlx::Result<Option<DateTime<Utc>>> {
    sqlx::query_scalar("SELECT last_marked_at FROM health.rescore_queue WHERE account_id = $1")
        .bind(account_id)
        .fetch_optional(pool)
        .await
}
