//! The transactional outbox: a service records a message for another service
//! in the same transaction as the change that causes it ([`enqueue`]); the
//! [`Dispatcher`] delivers it over gRPC, retrying with exponential backoff
//! until the receiver acknowledges, and sets it aside as a dead letter
//! after the last attempt ([`admin`] lists and retries those). Delivery is
//! at least once and receivers are idempotent on the message id, so the
//! effect is exactly once.
//!
//! The trace context of the enqueuing span is stored with the row, so the
//! delivery (minutes or hours later) continues the same trace.

pub mod admin;
mod dispatch;

pub use admin::pending_count;
pub use dispatch::Dispatcher;

use std::future::Future;
use std::time::Duration;

use prost::Message;
use sqlx::{AssertSqlSafe, PgConnection};
use uuid::Uuid;

use crate::trace::capture_context;

/// The wake-up channel every outbox insert notifies (platform migration 3).
pub const OUTBOX_CHANNEL: &str = "outbox";

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
    /// Every topic the service enqueues; each is delivered by a loop of its
    /// own, so a slow receiver holds up only its own topic.
    fn topics(&self) -> &'static [&'static str];

    /// Delivers one message; `Ok` means the receiver acknowledged it.
    fn deliver(
        &self,
        delivery: &Delivery,
    ) -> impl Future<Output = Result<(), tonic::Status>> + Send;
}

/// Dispatcher tuning.
#[derive(Clone, Debug)]
pub struct DispatchConfig {
    /// Messages of a topic claimed at once (and delivered one after another).
    pub batch_size: i64,
    pub first_retry: Duration,
    pub max_retry: Duration,
    pub delivery_timeout: Duration,
    /// Delivered rows are removed after this long.
    pub retention: Duration,
    /// Topics whose rows are removed as soon as they are delivered (they
    /// name what was erased).
    pub forget_on_delivery: &'static [&'static str],
    /// Attempts before a message is set aside as a dead letter (`OUTBOX_MAX_ATTEMPTS`).
    pub max_attempts: i32,
}

impl DispatchConfig {
    /// The defaults, with `OUTBOX_MAX_ATTEMPTS`, `OUTBOX_FIRST_RETRY` and
    /// `OUTBOX_MAX_RETRY` from the service's settings.
    pub fn from_settings(settings: &crate::config::Settings) -> anyhow::Result<Self> {
        let mut config = Self::default();
        if let Some(value) = settings.get("OUTBOX_MAX_ATTEMPTS") {
            config.max_attempts = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                anyhow::anyhow!("OUTBOX_MAX_ATTEMPTS={value:?} is not a positive count")
            })?;
        }
        for (name, field) in [
            ("OUTBOX_FIRST_RETRY", &mut config.first_retry),
            ("OUTBOX_MAX_RETRY", &mut config.max_retry),
        ] {
            if let Some(value) = settings.get(name) {
                *field = humantime::parse_duration(&value)
                    .map_err(|e| anyhow::anyhow!("{name}={value:?}: {e}"))?;
            }
        }
        Ok(config)
    }

    /// How long a claimed batch is a dispatcher's before another may take
    /// it: every delivery of the batch timing out, and then some.
    fn lease(&self) -> Duration {
        self.delivery_timeout * self.batch_size.max(1) as u32 + Duration::from_secs(30)
    }
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            batch_size: 20,
            first_retry: Duration::from_millis(500),
            max_retry: Duration::from_secs(300),
            delivery_timeout: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 24 * 3600),
            forget_on_delivery: &[],
            // About four hours at the default backoff (capped at 5 minutes).
            max_attempts: 50,
        }
    }
}
