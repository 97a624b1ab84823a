//! The transactional outbox: a service records a message for another service
//! in the same transaction as the change that causes it ([`enqueue`]); the
//! [`Dispatcher`] delivers it over gRPC, retrying with exponential backoff
//! until the receiver acknowledges. Delivery is at least once and receivers
//! are idempotent on the message id, so the effect is exactly once.
//!
//! The trace context of the enqueuing span is stored with the row, so the
//! delivery (minutes or hours later) continues the same trace. Replicas share
//! the work through `FOR UPDATE SKIP LOCKED`.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use prost::Message;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::trace::{capture_context, set_parent_from};

/// Records `payload` for `topic` inside the caller's transaction and returns
/// its message id, which receivers use as their idempotency key.
pub async fn enqueue(
    tx: &mut PgConnection,
    schema: &str,
    topic: &str,
    payload: &impl Message,
) -> sqlx::Result<Uuid> {
    let message_id = Uuid::now_v7();
    let trace_context =
        serde_json::to_value(capture_context(&tracing::Span::current())).unwrap_or_default();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {schema}.outbox (message_id, topic, payload, trace_context) VALUES ($1, $2, $3, $4)"
    )))
    .bind(message_id)
    .bind(topic)
    .bind(payload.encode_to_vec())
    .bind(trace_context)
    .execute(tx)
    .await?;
    Ok(message_id)
}

/// One message handed to a [`Deliver`] implementation.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message_id: Uuid,
    pub topic: String,
    pub payload: Vec<u8>,
    /// Earlier failed attempts.
    pub attempts: i32,
}

impl Delivery {
    /// Decodes the payload as the message type of its topic.
    pub fn decode<M: Message + Default>(&self) -> Result<M, tonic::Status> {
        M::decode(self.payload.as_slice())
            .map_err(|e| tonic::Status::internal(format!("outbox payload does not decode: {e}")))
    }
}

/// Sends messages of a service's topics to their receivers.
pub trait Deliver: Send + Sync + 'static {
    /// Delivers one message; `Ok` means the receiver acknowledged it.
    fn deliver(
        &self,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send;
}

/// Dispatcher tuning.
#[derive(Clone, Debug)]
pub struct DispatchConfig {
    pub batch_size: i64,
    pub poll_interval: Duration,
    pub first_retry: Duration,
    pub max_retry: Duration,
    pub delivery_timeout: Duration,
    /// Delivered rows are removed after this long.
    pub retention: Duration,
    /// Topics whose rows are removed as soon as they are delivered (they
    /// name what was erased).
    pub forget_on_delivery: &'static [&'static str],
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            poll_interval: Duration::from_millis(200),
            first_retry: Duration::from_millis(500),
            max_retry: Duration::from_secs(300),
            delivery_timeout: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 24 * 3600),
            forget_on_delivery: &[],
        }
    }
}

/// Delivers a schema's outbox until cancelled.
pub struct Dispatcher<D> {
    pool: PgPool,
    schema: &'static str,
    deliver: D,
    config: DispatchConfig,
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    id: i64,
    message_id: Uuid,
    topic: String,
    payload: Vec<u8>,
    trace_context: serde_json::Value,
    attempts: i32,
}

impl<D: Deliver> Dispatcher<D> {
    pub fn new(pool: PgPool, schema: &'static str, deliver: D, config: DispatchConfig) -> Self {
        Self {
            pool,
            schema,
            deliver,
            config,
        }
    }

    /// Runs until `cancel` fires; failures of the database are logged and retried.
    pub async fn run(self, cancel: CancellationToken) {
        let mut last_purge = std::time::Instant::now();
        loop {
            let delivered = match self.dispatch_once().await {
                Ok(n) => n,
                Err(error) => {
                    tracing::warn!(schema = self.schema, error = %format!("{error:#}"), "outbox dispatch failed");
                    0
                }
            };
            if last_purge.elapsed() > Duration::from_secs(3600) {
                last_purge = std::time::Instant::now();
                if let Err(error) = self.purge_delivered().await {
                    tracing::warn!(schema = self.schema, error = %error, "outbox purge failed");
                }
            }
            // A full batch means more may be waiting: go again at once.
            if delivered < self.config.batch_size as usize {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(self.config.poll_interval) => {}
                }
            } else if cancel.is_cancelled() {
                return;
            }
        }
    }

    /// Attempts every message that is due once; returns how many were delivered.
    pub async fn dispatch_once(&self) -> anyhow::Result<usize> {
        let schema = self.schema;
        let mut tx = self.pool.begin().await?;
        let rows: Vec<PendingRow> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT id, message_id, topic, payload, trace_context, attempts FROM {schema}.outbox \
             WHERE delivered_at IS NULL AND next_attempt_at <= now() \
             ORDER BY next_attempt_at, id LIMIT $1 FOR UPDATE SKIP LOCKED"
        )))
        .bind(self.config.batch_size)
        .fetch_all(&mut *tx)
        .await?;
        let mut delivered = 0;
        for row in rows {
            let delivery = Delivery {
                message_id: row.message_id,
                topic: row.topic,
                payload: row.payload,
                attempts: row.attempts,
            };
            let span = tracing::info_span!(
                "outbox.deliver",
                outbox.schema = schema,
                outbox.topic = %delivery.topic,
                outbox.message_id = %delivery.message_id,
                outbox.attempt = delivery.attempts + 1,
            );
            let carrier: HashMap<String, String> =
                serde_json::from_value(row.trace_context).unwrap_or_default();
            set_parent_from(&span, &carrier);
            let outcome = tokio::time::timeout(
                self.config.delivery_timeout,
                self.deliver.deliver(&delivery),
            )
            .instrument(span.clone())
            .await
            .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("delivery timed out")));
            let labels = [
                ("schema", schema.to_owned()),
                ("topic", delivery.topic.clone()),
            ];
            match outcome {
                Ok(()) => {
                    delivered += 1;
                    metrics::counter!("outbox_delivered_total", &labels).increment(1);
                    let statement = if self
                        .config
                        .forget_on_delivery
                        .contains(&delivery.topic.as_str())
                    {
                        format!("DELETE FROM {schema}.outbox WHERE id = $1")
                    } else {
                        format!(
                            "UPDATE {schema}.outbox SET delivered_at = now(), attempts = attempts + 1, \
                             last_error = NULL WHERE id = $1"
                        )
                    };
                    sqlx::query(AssertSqlSafe(statement))
                        .bind(row.id)
                        .execute(&mut *tx)
                        .await?;
                }
                Err(status) => {
                    metrics::counter!("outbox_delivery_failures_total", &labels).increment(1);
                    let delay = retry_delay(&self.config, delivery.attempts);
                    span.in_scope(|| {
                        tracing::warn!(
                            code = ?status.code(),
                            message = status.message(),
                            retry_in_ms = delay.as_millis() as u64,
                            "outbox delivery failed"
                        )
                    });
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE {schema}.outbox SET attempts = attempts + 1, last_error = $2, \
                         next_attempt_at = now() + $3 * interval '1 millisecond' WHERE id = $1"
                    )))
                    .bind(row.id)
                    .bind(format!("{:?}: {}", status.code(), status.message()))
                    .bind(delay.as_millis() as i64)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(delivered)
    }

    async fn purge_delivered(&self) -> sqlx::Result<u64> {
        let schema = self.schema;
        let result = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {schema}.outbox WHERE delivered_at < now() - $1 * interval '1 second'"
        )))
        .bind(self.config.retention.as_secs() as i64)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected())
    }
}

/// Exponential backoff with a cap and jitter (between half and the full step),
/// so that a recovering receiver is not hit by every sender at once.
fn retry_delay(config: &DispatchConfig, attempts: i32) -> Duration {
    let exponent = attempts.clamp(0, 30) as u32;
    let step = config
        .first_retry
        .saturating_mul(2u32.saturating_pow(exponent))
        .min(config.max_retry);
    let jitter: f64 = rand::random_range(0.5..=1.0);
    step.mul_f64(jitter)
}

/// Messages not yet delivered, for readiness checks and tests.
pub async fn pending_count(pool: &PgPool, schema: &str) -> sqlx::Result<i64> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT count(*) FROM {schema}.outbox WHERE delivered_at IS NULL"
    )))
    .fetch_one(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_grows_and_is_capped() {
        let config = DispatchConfig::default();
        let first = retry_delay(&config, 0);
        assert!(first >= config.first_retry / 2 && first <= config.first_retry);
        let fourth = retry_delay(&config, 3);
        assert!(fourth >= config.first_retry * 4 && fourth <= config.first_retry * 8);
        assert!(retry_delay(&config, 1000) <= config.max_retry);
    }
}
