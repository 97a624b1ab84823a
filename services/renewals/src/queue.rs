//! Subscriptions changed in ingestion that the renewal pipeline must refresh.

use sqlx::PgConnection;

/// Marks subscriptions; returns how many were not marked before.
pub async fn mark(tx: &mut PgConnection, subscription_ids: &[String]) -> sqlx::Result<u64> {
    let mut sorted = subscription_ids.to_vec();
    sorted.sort();
    sorted.dedup();
    let newly_marked: i64 = sqlx::query_scalar(
        "WITH marked AS ( \
           INSERT INTO renewals.subscription_queue AS q (subscription_id) SELECT unnest($1::text[]) \
           ON CONFLICT (subscription_id) DO UPDATE SET last_marked_at = now() \
           RETURNING (xmax = 0) AS inserted \
         ) SELECT count(*) FILTER (WHERE inserted) FROM marked",
    )
    .bind(&sorted)
    .fetch_one(&mut *tx)
    .await?;
    Ok(newly_marked as u64)
}
