//! Renewals: the renewal pipeline, outcomes, retention metrics, forecasts
//! and lifetime value.
//!
//! Pure arithmetic lives in [`ledger`] (recurring revenue and its
//! movements), [`forecast`] (probabilities, totals, calibration) and
//! [`retention`] (Kaplan–Meier, sBG, lifetime value, scenarios).
//! [`pipeline`] keeps subscriptions, accounts and opportunities, [`sync`]
//! keeps them current from ingestion and health, [`sweep`] announces
//! approaching renewals; [`grpc`], [`forecasts`] and [`reports`] are the edge.

pub mod contracts;
pub mod coverage;
pub mod forecast;
pub mod forecasts;
pub mod grpc;
pub mod history;
pub mod ledger;
pub mod notify;
pub mod outcomes;
pub mod pipeline;
pub mod queue;
pub mod reports;
pub mod retention;
pub mod state;
pub mod sweep;
pub mod sync;
pub mod terms;
pub mod views;

use tenure_platform::outbox::OUTBOX_CHANNEL;
use tenure_platform::service::{RunningService, ServiceContext, ServiceSpec, StartFuture};
use tenure_platform::wake::Wakeups;
use tenure_proto::renewals::v1::renewals_service_server::RenewalsServiceServer;

use tenure_platform::auth::Scope;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tonic::service::Routes;

/// The Postgres schema renewals owns.
pub const SCHEMA: &str = "renewals";

pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub const GRPC_SERVICES: &[&str] = &["tenure.renewals.v1.RenewalsService"];

/// The scope each method needs (see `tenure_platform::auth`).
pub const ACCESS: &[(&str, Scope)] = &[
    ("NotifyAccountErased", Scope::Internal),
    ("NotifySubscriptionsChanged", Scope::Internal),
    ("RecordRenewalOutcome", Scope::Ingest),
    ("BatchRecordRenewalOutcomes", Scope::Ingest),
    ("ListRenewalOutcomes", Scope::Read),
    ("StreamFirstTerms", Scope::Read),
    ("ListRenewalPipeline", Scope::Read),
    ("SummarizeRenewalPipeline", Scope::Read),
    ("GetRevenueLedger", Scope::Read),
    ("RunRenewalSweep", Scope::Analytics),
    ("GetRetentionMetrics", Scope::Analytics),
    ("ForecastRenewals", Scope::Analytics),
    ("BacktestForecast", Scope::Analytics),
    ("StreamForecast", Scope::Analytics),
    ("StartForecastJob", Scope::Analytics),
    ("GetForecastJob", Scope::Analytics),
    ("ListForecastJobRows", Scope::Analytics),
    ("GetCohortRetention", Scope::Analytics),
    ("FitRetentionModel", Scope::Analytics),
    ("GetLifetimeValue", Scope::Analytics),
    ("ProjectScenario", Scope::Analytics),
    ("PutCoverageModel", Scope::Analytics),
    ("GetCoverageModel", Scope::Read),
    ("GetCoverageReport", Scope::Analytics),
    ("GetValueReport", Scope::Analytics),
    ("ListAccountTiers", Scope::Analytics),
];

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "renewals",
    schema: SCHEMA,
    migrations: &MIGRATIONS,
    grpc_services: GRPC_SERVICES,
    access: ACCESS,
    calls_with: &[Scope::Read, Scope::Analytics, Scope::Internal],
    default_port: tenure_platform::config::ports::RENEWALS,
    start: |context| -> StartFuture { Box::pin(start(context)) },
};

/// Starts the gRPC server, the pipeline's syncer and sweep, the forecast
/// job runner and the outbox dispatcher.
pub async fn start(context: ServiceContext) -> anyhow::Result<RunningService> {
    let bytes = context.server.max_message_bytes;
    let thresholds = sweep::thresholds_from_settings(&context.settings)?;
    let wakeups = Wakeups::new(
        SCHEMA,
        &[
            OUTBOX_CHANNEL,
            sync::SUBSCRIPTIONS_CHANNEL,
            forecasts::JOBS_CHANNEL,
        ],
        &context.settings,
    )?;
    let jobs_wakeup = wakeups.channel(forecasts::JOBS_CHANNEL);
    let ingestion =
        IngestionServiceClient::new(context.peers.channel(&context.peers.ingestion_url)?);
    let health = HealthServiceClient::new(context.peers.channel(&context.peers.health_url)?);
    let api = RenewalsServiceServer::new(state::RenewalsApi::new(
        context.pool.clone(),
        jobs_wakeup.clone(),
        thresholds.clone(),
        ingestion.clone(),
        health.clone(),
    ))
    .max_decoding_message_size(bytes)
    .max_encoding_message_size(bytes);
    let syncer = sync::Syncer::new(
        context.pool.clone(),
        ingestion,
        health,
        thresholds,
        wakeups.clone(),
    );
    let dispatcher = notify::dispatcher(
        context.pool.clone(),
        &context.peers,
        &context.settings,
        &wakeups,
    )?;
    let mut service =
        RunningService::serve(&SPEC, context.listener, Routes::new(api), context.server)?;
    service.listen(&wakeups, context.pool.clone());
    service.spawn(|stop| syncer.run(stop));
    tenure_platform::retention::start(
        &mut service,
        context.pool.clone(),
        &context.settings,
        "renewals.idempotency_keys",
        Vec::new(),
    )?;
    service.spawn(|stop| dispatcher.run(stop));
    let pool = context.pool;
    let idle = wakeups.fallback;
    service.spawn(|stop| forecasts::run_jobs(pool, jobs_wakeup, idle, stop));
    Ok(service)
}
