//! Ingestion: the system of record for raw customer data.
//!
//! Accounts live in [`accounts`], every other kind of source record in the
//! versioned store of [`records`] (kinds in [`kinds`], derived changes in
//! [`changes`]), usage in [`events`]. [`signals`] computes an account's
//! features as of a date (order statistics in [`stats`], shared with the
//! peer benchmarks) and [`timeline`] lists what happened to it.
//! [`grpc`], [`writes`] and [`stream`] are the gRPC edge ([`convert`]
//! validates protos into domain values); [`notify`] delivers the outbox.

pub mod accounts;
pub mod benchmarks;
pub mod changes;
pub mod convert;
pub mod erase;
pub mod events;
pub mod grpc;
pub mod kinds;
pub mod limits;
pub mod notify;
pub mod plans;
pub mod records;
pub mod signals;
pub mod state;
pub mod stats;
pub mod stream;
pub mod timeline;
pub mod triggers;
pub mod writes;

use tenure_platform::auth::Scope;
use tenure_platform::retention::{self, Rule};

/// The shortest retention a table may be given.
const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
use tenure_platform::outbox::OUTBOX_CHANNEL;
use tenure_platform::service::{RunningService, ServiceContext, ServiceSpec, StartFuture};
use tenure_platform::wake::Wakeups;
use tenure_proto::ingestion::v1::ingestion_service_server::IngestionServiceServer;
use tonic::service::Routes;

/// The Postgres schema ingestion owns.
pub const SCHEMA: &str = "ingestion";

pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub const GRPC_SERVICES: &[&str] = &["tenure.ingestion.v1.IngestionService"];

/// The scope each method needs (see `tenure_platform::auth`).
pub const ACCESS: &[(&str, Scope)] = &[
    ("BatchUpsertAccounts", Scope::Ingest),
    ("BatchUpsertContacts", Scope::Ingest),
    ("BatchUpsertSubscriptions", Scope::Ingest),
    ("BatchUpsertFeatures", Scope::Ingest),
    ("BatchUpsertTickets", Scope::Ingest),
    ("BatchUpsertSurveyResponses", Scope::Ingest),
    ("BatchUpsertInvoices", Scope::Ingest),
    ("BatchUpsertExternalSignals", Scope::Ingest),
    ("BatchUpsertSuccessMetrics", Scope::Ingest),
    ("BatchUpsertSuccessPlans", Scope::Ingest),
    ("BatchUpsertAdvocacyActivities", Scope::Ingest),
    ("IngestEvents", Scope::Ingest),
    ("StreamEvents", Scope::Ingest),
    ("GetAccount", Scope::Read),
    ("BatchGetAccounts", Scope::Read),
    ("ListAccounts", Scope::Read),
    ("ListAccountTimeline", Scope::Read),
    ("GetAccountSignals", Scope::Read),
    ("StreamAccountSignals", Scope::Read),
    ("GetPeerBenchmarks", Scope::Read),
    ("GetSuccessPlanProgress", Scope::Read),
    ("GetAdvocacySummaries", Scope::Read),
    ("GetAccountValues", Scope::Read),
    ("GetSubscriptionHistory", Scope::Read),
    ("ListContacts", Scope::Contacts),
    ("EraseContact", Scope::Erase),
    ("EraseAccount", Scope::Erase),
];

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "ingestion",
    schema: SCHEMA,
    migrations: &MIGRATIONS,
    grpc_services: GRPC_SERVICES,
    access: ACCESS,
    calls_with: &[Scope::Internal],
    default_port: tenure_platform::config::ports::INGESTION,
    start: |context| -> StartFuture { Box::pin(start(context)) },
};

/// How often the coming months' event partitions are checked.
const PARTITIONS_AHEAD_EVERY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Starts the gRPC server, the outbox dispatcher, the retention job and the
/// job that makes the coming months' event partitions.
pub async fn start(context: ServiceContext) -> anyhow::Result<RunningService> {
    let bytes = context.server.max_message_bytes;
    let api = IngestionServiceServer::new(state::IngestionApi::new(
        context.pool.clone(),
        limits::Limits::from_settings(&context.settings)?,
    ))
    .max_decoding_message_size(bytes)
    .max_encoding_message_size(bytes);
    let mut service =
        RunningService::serve(&SPEC, context.listener, Routes::new(api), context.server)?;
    tenure_platform::retention::start(
        &mut service,
        context.pool.clone(),
        &context.settings,
        "ingestion.idempotency_keys",
        vec![Rule::new(
            "ingestion.event_ids",
            "seen_at",
            retention::setting(&context.settings, "EVENT_DEDUP_WINDOW", "30d", DAY)?,
        )],
    )?;
    // The coming months' partitions exist before their first event.
    let pool = context.pool.clone();
    service.spawn(|stop| async move {
        tenure_platform::service::poll(
            &stop,
            PARTITIONS_AHEAD_EVERY,
            None,
            "partitions ahead",
            || {
                let pool = pool.clone();
                async move {
                    events::prepare_months(&pool, chrono::Utc::now().date_naive()).await?;
                    Ok(tenure_platform::service::Pace::Idle)
                }
            },
        )
        .await;
    });
    let wakeups = Wakeups::new(SCHEMA, &[OUTBOX_CHANNEL], &context.settings)?;
    service.listen(&wakeups, context.pool.clone());
    let dispatcher = notify::dispatcher(context.pool, &context.peers, &context.settings, &wakeups)?;
    service.spawn(|stop| dispatcher.run(stop));
    Ok(service)
}
