//! What every call to renewals shares: its pool, the sweep's thresholds,
//! its peers and what forecasts learned from history. The gRPC edge
//! ([`crate::grpc`]) serves it; forecasts, reports and coverage are its
//! methods, each in its own module.

use std::sync::Arc;

use sqlx::PgPool;
use tenure_platform::client::TracedChannel;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tokio::sync::Notify;

/// Renewals as its calls see it.
pub struct RenewalsApi {
    pub(crate) pool: PgPool,
    pub(crate) jobs_wakeup: Arc<Notify>,
    pub(crate) thresholds: Vec<u32>,
    /// Peers a backtest asks what was known as of its day.
    pub(crate) ingestion: IngestionServiceClient<TracedChannel>,
    pub(crate) health: HealthServiceClient<TracedChannel>,
    /// What forecasts learned from history, until it changes.
    pub(crate) history: crate::forecasts::history::HistoryCache,
}

impl RenewalsApi {
    pub fn new(
        pool: PgPool,
        jobs_wakeup: Arc<Notify>,
        thresholds: Vec<u32>,
        ingestion: IngestionServiceClient<TracedChannel>,
        health: HealthServiceClient<TracedChannel>,
    ) -> Self {
        Self {
            pool,
            jobs_wakeup,
            thresholds,
            ingestion,
            health,
            history: Default::default(),
        }
    }
}
