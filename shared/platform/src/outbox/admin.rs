//! What an operator needs of an outbox: what is waiting, what was set
//! aside as a dead letter and why, and sending dead letters again.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgPool};
use uuid::Uuid;

/// Messages not yet delivered nor set aside, for readiness checks and tests.
pub async fn pending_count(pool: &PgPool, schema: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.outbox WHERE delivered_at IS NULL AND dead_at IS NULL"
    )))
    .fetch_one(pool)
    .await
}

/// A message delivery gave up on.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: i64,
    pub message_id: Uuid,
    pub topic: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub dead_at: DateTime<Utc>,
}

/// The dead letters of `schema`'s outbox, oldest first.
pub async fn dead_letters(pool: &PgPool, schema: &str) -> sqlx::Result<Vec<DeadLetter>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT id, message_id, topic, attempts, last_error, created_at, dead_at \
         FROM {schema}.outbox WHERE dead_at IS NOT NULL ORDER BY dead_at, id"
    )))
    .fetch_all(pool)
    .await
}

/// Sends dead letters again from a first attempt: the one with `id`, or
/// every one when `None`. Returns how many.
pub async fn retry(pool: &PgPool, schema: &str, id: Option<i64>) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    let result = sqlx::query(AssertSqlSafe(format!(
        "UPDATE {schema}.outbox SET dead_at = NULL, attempts = 0, last_error = NULL, \
         next_attempt_at = now(), lease_until = NULL \
         WHERE dead_at IS NOT NULL AND ($1::bigint IS NULL OR id = $1)"
    )))
    .bind(id)
    .execute(&mut *tx)
    .await?;
    // Wake the dispatchers, as an insert would.
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(crate::wake::channel_name(schema, super::OUTBOX_CHANNEL))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(result.rows_affected())
}
