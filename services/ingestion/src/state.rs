//! What every call to ingestion shares: its pool, its limits and the caches
//! of known accounts and event partitions. The gRPC edge ([`crate::grpc`])
//! serves it; writes ([`crate::writes`]) and streams ([`crate::stream`])
//! are its methods.

use std::sync::Arc;

use sqlx::PgPool;

use crate::events::EventStore;
use crate::limits::Limits;
use crate::records::KnownAccounts;

/// The ingestion API; cheap to clone.
#[derive(Clone)]
pub struct IngestionApi {
    pub(crate) pool: PgPool,
    pub(crate) limits: Arc<Limits>,
    pub(crate) events: Arc<EventStore>,
    pub(crate) accounts: Arc<KnownAccounts>,
}

impl IngestionApi {
    pub fn new(pool: PgPool, limits: Limits) -> Self {
        Self {
            pool,
            limits: Arc::new(limits),
            events: Arc::new(EventStore::default()),
            accounts: Arc::new(KnownAccounts::default()),
        }
    }
}
