//! Delivering the outbox: one loop per topic claims a batch with a lease in
//! a short transaction, delivers it with no transaction open and no row
//! locked, and marks each message by the lease it was claimed with. A
//! dispatcher that dies leaves its lease to expire; another then takes the
//! batch again (receivers are idempotent on the message id). A message that
//! keeps failing is retried with backoff and, after the last attempt, set
//! aside as a dead letter, counted and logged, never blocking the rest.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use sqlx::{AssertSqlSafe, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use super::{Deliver, Delivery, DispatchConfig, OUTBOX_CHANNEL};
use crate::service::Pace;
use crate::trace::set_parent_from;
use crate::wake::Wakeups;

/// Delivers a schema's outbox until cancelled.
pub struct Dispatcher<D> {
    pool: PgPool,
    schema: &'static str,
    deliver: Arc<D>,
    config: DispatchConfig,
    wakeups: Wakeups,
}

#[derive(sqlx::FromRow)]
struct Claimed {
    id: i64,
    message_id: Uuid,
    topic: String,
    payload: Vec<u8>,
    trace_context: serde_json::Value,
    attempts: i32,
}

impl<D: Deliver> Dispatcher<D> {
    /// A dispatcher of `schema`'s outbox, woken by the `outbox` channel of
    /// `wakeups` when a message is written.
    pub fn new(
        pool: PgPool,
        schema: &'static str,
        deliver: D,
        config: DispatchConfig,
        wakeups: &Wakeups,
    ) -> Self {
        Self {
            pool,
            schema,
            deliver: Arc::new(deliver),
            config,
            wakeups: wakeups.clone(),
        }
    }

    fn clone_handle(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            schema: self.schema,
            deliver: self.deliver.clone(),
            config: self.config.clone(),
            wakeups: self.wakeups.clone(),
        }
    }

    /// Runs a loop per topic and the purge of old deliveries until `cancel`
    /// fires; failures of the database are logged and retried.
    pub async fn run(self, cancel: CancellationToken) {
        let mut loops = tokio::task::JoinSet::new();
        for topic in self.deliver.topics() {
            let dispatcher = self.clone_handle();
            let cancel = cancel.clone();
            loops.spawn(async move { dispatcher.run_topic(topic, cancel).await });
        }
        let purger = self.clone_handle();
        loops.spawn(async move {
            loop {
                if let Err(error) = purger.purge_delivered().await {
                    tracing::warn!(schema = purger.schema, error = %error, "outbox purge failed");
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_secs(3600)) => {}
                }
            }
        });
        while loops.join_next().await.is_some() {}
    }

    async fn run_topic(&self, topic: &'static str, cancel: CancellationToken) {
        let wake = self.wakeups.channel(OUTBOX_CHANNEL);
        crate::service::poll(
            &cancel,
            self.wakeups.fallback,
            Some(&wake),
            "outbox dispatch",
            || async move {
                let claimed = self.dispatch_topic(topic).await?;
                // A full batch means more may be waiting: go again at once.
                if claimed >= self.config.batch_size as usize {
                    return Ok(Pace::Busy);
                }
                Ok(match self.next_due(topic).await? {
                    Some(due) => Pace::DueIn(due),
                    None => Pace::Idle,
                })
            },
        )
        .await;
    }

    /// How long until the next message of `topic` may be attempted (a retry
    /// waiting out its backoff, a batch under another dispatcher's lease);
    /// `None` when nothing is waiting.
    async fn next_due(&self, topic: &str) -> sqlx::Result<Option<Duration>> {
        let schema = self.schema;
        let seconds: Option<f64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT extract(epoch FROM min(greatest(next_attempt_at, coalesce(lease_until, next_attempt_at))) - now())::float8 \
             FROM {schema}.outbox WHERE topic = $1 AND delivered_at IS NULL AND dead_at IS NULL"
        )))
        .bind(topic)
        .fetch_one(&self.pool)
        .await?;
        Ok(seconds.map(|s| Duration::from_secs_f64(s.clamp(0.0, 86_400.0))))
    }

    /// Delivers what is due of every topic once; returns how many were delivered.
    pub async fn dispatch_once(&self) -> anyhow::Result<usize> {
        let mut delivered = 0;
        for topic in self.deliver.topics() {
            delivered += self.dispatch_topic(topic).await?;
        }
        Ok(delivered)
    }

    /// Claims a batch of `topic`, delivers it and marks each message;
    /// returns how many were claimed.
    async fn dispatch_topic(&self, topic: &str) -> anyhow::Result<usize> {
        let schema = self.schema;
        let lease = Uuid::new_v4();
        let mut batch: Vec<Claimed> = sqlx::query_as(AssertSqlSafe(format!(
            "UPDATE {schema}.outbox o SET lease_until = now() + $3 * interval '1 millisecond', lease_token = $4 \
             FROM (SELECT id FROM {schema}.outbox \
                   WHERE topic = $1 AND delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= now() \
                     AND (lease_until IS NULL OR lease_until < now()) \
                   ORDER BY next_attempt_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) due \
             WHERE o.id = due.id \
             RETURNING o.id, o.message_id, o.topic, o.payload, o.trace_context, o.attempts"
        )))
        .bind(topic)
        .bind(self.config.batch_size)
        .bind(self.config.lease().as_millis() as i64)
        .bind(lease)
        .fetch_all(&self.pool)
        .await?;
        batch.sort_by_key(|m| m.id);
        let claimed = batch.len();
        for message in batch {
            self.deliver_one(message, lease).await?;
        }
        Ok(claimed)
    }

    async fn deliver_one(&self, message: Claimed, lease: Uuid) -> anyhow::Result<()> {
        let schema = self.schema;
        let delivery = Delivery {
            message_id: message.message_id,
            topic: message.topic,
            payload: message.payload,
            attempts: message.attempts,
        };
        let span = tracing::info_span!(
            "outbox.deliver",
            outbox.schema = schema,
            outbox.topic = %delivery.topic,
            outbox.message_id = %delivery.message_id,
            outbox.attempt = delivery.attempts + 1,
        );
        let carrier: HashMap<String, String> =
            serde_json::from_value(message.trace_context).unwrap_or_default();
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
                metrics::counter!("outbox_delivered_total", &labels).increment(1);
                let forget = self
                    .config
                    .forget_on_delivery
                    .contains(&delivery.topic.as_str());
                let statement = if forget {
                    format!("DELETE FROM {schema}.outbox WHERE id = $1 AND lease_token = $2")
                } else {
                    format!(
                        "UPDATE {schema}.outbox SET delivered_at = now(), attempts = attempts + 1, \
                         last_error = NULL, lease_until = NULL WHERE id = $1 AND lease_token = $2"
                    )
                };
                sqlx::query(AssertSqlSafe(statement))
                    .bind(message.id)
                    .bind(lease)
                    .execute(&self.pool)
                    .await?;
            }
            Err(status) => {
                let error = format!("{:?}: {}", status.code(), status.message());
                let attempts = delivery.attempts + 1;
                if attempts >= self.config.max_attempts {
                    metrics::counter!("outbox_dead_lettered_total", &labels).increment(1);
                    span.in_scope(|| {
                        tracing::error!(attempts, error = %error, "outbox message dead-lettered after its last attempt")
                    });
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE {schema}.outbox SET attempts = $3, last_error = $4, dead_at = now(), \
                         lease_until = NULL WHERE id = $1 AND lease_token = $2"
                    )))
                    .bind(message.id)
                    .bind(lease)
                    .bind(attempts)
                    .bind(&error)
                    .execute(&self.pool)
                    .await?;
                } else {
                    metrics::counter!("outbox_delivery_failures_total", &labels).increment(1);
                    let delay = crate::backoff::delay_after(
                        self.config.first_retry,
                        self.config.max_retry,
                        delivery.attempts,
                    );
                    span.in_scope(|| {
                        tracing::warn!(
                            code = ?status.code(),
                            message = status.message(),
                            retry_in_ms = delay.as_millis() as u64,
                            "outbox delivery failed"
                        )
                    });
                    sqlx::query(AssertSqlSafe(format!(
                        "UPDATE {schema}.outbox SET attempts = $3, last_error = $4, lease_until = NULL, \
                         next_attempt_at = now() + $5 * interval '1 millisecond' \
                         WHERE id = $1 AND lease_token = $2"
                    )))
                    .bind(message.id)
                    .bind(lease)
                    .bind(attempts)
                    .bind(&error)
                    .bind(delay.as_millis() as i64)
                    .execute(&self.pool)
                    .await?;
                }
            }
        }
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_outlasts_a_batch_of_timeouts() {
        let config = DispatchConfig::default();
        assert!(config.lease() > config.delivery_timeout * config.batch_size as u32);
    }
}
