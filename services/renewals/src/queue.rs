//! Subscriptions changed in ingestion that the renewal pipeline must refresh,
//! each with the trace context of the notice that marked it last.

use sqlx::PgConnection;

/// Marks subscriptions; returns how many were not marked before.
pub async fn mark(tx: &mut PgConnection, subscription_ids: &[String]) -> sqlx::Result<u64> {
    let mut sorted = subscription_ids.to_vec();
    sorted.sort();
    sorted.dedup();
    let context = tenure_platform::trace::stored_context();
    let newly_marked: i64 = sqlx::query_scalar(
        "WITH marked AS ( \
           INSERT INTO renewals.subscription_queue AS q (subscription_id, trace_context) \
           SELECT unnest($1::text[]), $2 \
           ON CONFLICT (subscription_id) DO UPDATE SET last_marked_at = now(), \
             trace_context = EXCLUDED.trace_context \
           RETURNING (xmax = 0) AS inserted \
         ) SELECT count(*) FILTER (WHERE inserted) FROM marked",
    )
    .bind(&sorted)
    .bind(context)
    .fetch_one(&mut *tx)
    .await?;
    Ok(newly_marked as u64)
}
