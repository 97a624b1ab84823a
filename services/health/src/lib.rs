//! Health: scorecards, explainable scores, history and learned indicators.
//!
//! [`scorecard`] holds the scoring rules (pure), [`signals`] turns
//! ingestion's account signals into named values, [`scoring`] scores
//! accounts and keeps changed ones current (and their [`maturity`] levels),
//! [`store`] keeps scorecards and scores, [`queue`] the accounts ingestion
//! reported as changed; [`grpc`] and [`cards`] are the edge.

pub mod cards;
pub mod changes;
pub mod grpc;
pub mod maturity;
pub mod model;
pub mod notify;
pub mod prospect;
pub mod queue;
pub mod scorecard;
pub mod scoring;
pub mod signals;
pub mod store;
pub mod training;
pub mod watch;

use tenure_platform::auth::Scope;
use tenure_platform::retention::{self, Rule};

/// The shortest the change log may be kept (watchers resume within it).
const WEEK: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);
use tenure_platform::outbox::OUTBOX_CHANNEL;
use tenure_platform::service::{RunningService, ServiceContext, ServiceSpec, StartFuture};
use tenure_platform::wake::Wakeups;
use tenure_proto::health::v1::health_service_server::HealthServiceServer;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;
use tonic::service::Routes;

/// The Postgres schema health owns.
pub const SCHEMA: &str = "health";

pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub const GRPC_SERVICES: &[&str] = &["tenure.health.v1.HealthService"];

/// The scope each method needs (see `tenure_platform::auth`).
pub const ACCESS: &[(&str, Scope)] = &[
    ("NotifyAccountErased", Scope::Internal),
    ("NotifyAccountsChanged", Scope::Internal),
    ("RecordAssessment", Scope::Ingest),
    ("GetAccountHealth", Scope::Read),
    ("GetScorecard", Scope::Read),
    ("ListScorecards", Scope::Read),
    ("GetHealth", Scope::Read),
    ("BatchGetHealth", Scope::Read),
    ("GetHealthHistory", Scope::Read),
    ("ListAccountHealth", Scope::Read),
    ("GetHealthDistribution", Scope::Read),
    ("GetChurnModel", Scope::Read),
    ("WatchHealthChanges", Scope::Read),
    ("GetMaturityModel", Scope::Read),
    ("ListMaturityModels", Scope::Read),
    ("GetAccountMaturity", Scope::Read),
    ("GetMaturityHistory", Scope::Read),
    ("GetProspectModel", Scope::Read),
    ("CreateScorecard", Scope::Analytics),
    ("RecomputeHealth", Scope::Analytics),
    ("TrainChurnModel", Scope::Analytics),
    ("PredictChurn", Scope::Analytics),
    ("BatchPredictChurn", Scope::Analytics),
    ("BacktestScorecard", Scope::Analytics),
    ("CreateMaturityModel", Scope::Analytics),
    ("GetMaturityDistribution", Scope::Analytics),
    ("TrainProspectModel", Scope::Analytics),
    ("ScoreProspects", Scope::Analytics),
];

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "health",
    schema: SCHEMA,
    migrations: &MIGRATIONS,
    grpc_services: GRPC_SERVICES,
    access: ACCESS,
    calls_with: &[Scope::Read, Scope::Internal],
    default_port: tenure_platform::config::ports::HEALTH,
    start: |context| -> StartFuture { Box::pin(start(context)) },
};

/// Starts the gRPC server and the scorer of changed accounts.
pub async fn start(context: ServiceContext) -> anyhow::Result<RunningService> {
    let ingestion =
        IngestionServiceClient::new(context.peers.channel(&context.peers.ingestion_url)?);
    let bytes = context.server.max_message_bytes;
    let renewals = RenewalsServiceClient::new(context.peers.channel(&context.peers.renewals_url)?);
    let trainer = training::Trainer::new(context.pool.clone(), ingestion.clone(), renewals);
    trainer.fail_interrupted().await?;
    let rollup = store::Rollup::from_settings(&context.settings)?;
    let wakeups = Wakeups::new(
        SCHEMA,
        &[
            OUTBOX_CHANNEL,
            scoring::RESCORE_CHANNEL,
            watch::CHANGES_CHANNEL,
        ],
        &context.settings,
    )?;
    let scorer = scoring::Scorer::new(
        context.pool.clone(),
        ingestion.clone(),
        changes::DropRule::from_settings(&context.settings)?,
        wakeups.clone(),
    );
    let api = HealthServiceServer::new(grpc::HealthApi::new(
        context.pool.clone(),
        ingestion,
        scorer.clone(),
        trainer,
        rollup,
        wakeups.clone(),
    ))
    .max_decoding_message_size(bytes)
    .max_encoding_message_size(bytes);
    let mut service =
        RunningService::serve(&SPEC, context.listener, Routes::new(api), context.server)?;
    service.listen(&wakeups, context.pool.clone());
    service.spawn(|stop| scorer.run(stop));
    tenure_platform::retention::start(
        &mut service,
        context.pool.clone(),
        &context.settings,
        "health.idempotency_keys",
        vec![Rule::new(
            "health.change_log",
            "change_time",
            retention::setting(
                &context.settings,
                "HEALTH_CHANGE_LOG_RETENTION",
                "400d",
                WEEK,
            )?,
        )],
    )?;
    let dispatcher = notify::dispatcher(context.pool, &context.peers, &context.settings, &wakeups)?;
    service.spawn(|stop| dispatcher.run(stop));
    Ok(service)
}
