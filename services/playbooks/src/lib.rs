//! Playbooks: declarative playbooks triggered by customer signals, run
//! durably.
//!
//! [`definition`] reads playbook documents (syntax only) and [`plan`]
//! compiles them into typed plans; [`engine`] matches trigger events,
//! schedules evaluated triggers and executes steps ([`engine::actions`]:
//! task, email, webhook); [`facts`] is what the other services say of an
//! account; [`store`] keeps versions, runs, tasks and trigger events;
//! [`grpc`] is the edge.

pub mod definition;
pub mod engine;
pub mod erase;
pub mod facts;
pub mod grpc;
pub mod plan;
pub mod signature;
pub mod store;

use tenure_platform::auth::Scope;
use tenure_platform::service::{RunningService, ServiceContext, ServiceSpec, StartFuture};
use tenure_platform::wake::Wakeups;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::playbooks::v1::playbooks_service_server::PlaybooksServiceServer;
use tonic::service::Routes;

/// The Postgres schema playbooks owns.
pub const SCHEMA: &str = "playbooks";

pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub const GRPC_SERVICES: &[&str] = &["tenure.playbooks.v1.PlaybooksService"];

/// The scope each method needs (see `tenure_platform::auth`).
pub const ACCESS: &[(&str, Scope)] = &[
    ("NotifyAccountErased", Scope::Internal),
    ("NotifyHealthChanged", Scope::Internal),
    ("NotifyRenewalApproaching", Scope::Internal),
    ("NotifyAccountEvents", Scope::Internal),
    ("NotifyContactErased", Scope::Internal),
    ("ListPlaybooks", Scope::Read),
    ("GetRun", Scope::Read),
    ("ListRuns", Scope::Read),
    ("ListDeadLetters", Scope::Read),
    ("ListTasks", Scope::Read),
    ("GetAccountTimeline", Scope::Read),
    ("CreatePlaybook", Scope::PlaybooksAdmin),
    ("DryRunPlaybook", Scope::PlaybooksAdmin),
    ("StartRuns", Scope::PlaybooksAdmin),
    ("RetryStep", Scope::PlaybooksAdmin),
    ("CompleteTask", Scope::PlaybooksAdmin),
];

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "playbooks",
    schema: SCHEMA,
    migrations: &MIGRATIONS,
    grpc_services: GRPC_SERVICES,
    access: ACCESS,
    calls_with: &[Scope::Read, Scope::Contacts],
    default_port: tenure_platform::config::ports::PLAYBOOKS,
    start: |context| -> StartFuture { Box::pin(start(context)) },
};

/// Starts the gRPC server and the run engine (step executors, trigger
/// matcher, evaluated triggers).
pub async fn start(context: ServiceContext) -> anyhow::Result<RunningService> {
    let bytes = context.server.max_message_bytes;
    let peers = facts::Peers {
        ingestion: IngestionServiceClient::new(
            context.peers.channel(&context.peers.ingestion_url)?,
        ),
        health: HealthServiceClient::new(context.peers.channel(&context.peers.health_url)?),
    };
    let wakeups = Wakeups::new(
        SCHEMA,
        &[engine::TRIGGERS_CHANNEL, engine::STEPS_CHANNEL],
        &context.settings,
    )?;
    let engine = engine::Engine::new(
        context.pool.clone(),
        peers,
        engine::Config::from_settings(&context.settings)?,
        &wakeups,
    )?;
    // Webhooks configured but nothing to sign them with: refuse to start
    // rather than send unsigned deliveries or fail every one.
    for (_, plan) in engine.latest_plans().await? {
        engine.check_webhooks(&plan).map_err(anyhow::Error::msg)?;
    }
    let api = PlaybooksServiceServer::new(grpc::PlaybooksApi::new(
        context.pool.clone(),
        engine.clone(),
    ))
    .max_decoding_message_size(bytes)
    .max_encoding_message_size(bytes);
    let mut service =
        RunningService::serve(&SPEC, context.listener, Routes::new(api), context.server)?;
    service.listen(&wakeups, context.pool.clone());
    service.spawn(|stop| engine.run(stop));
    let matched = tenure_platform::retention::setting(
        &context.settings,
        "PLAYBOOKS_TRIGGER_EVENT_RETENTION",
        "90d",
        std::time::Duration::from_secs(24 * 3600),
    )?;
    tenure_platform::retention::start(
        &mut service,
        context.pool.clone(),
        &context.settings,
        "playbooks.idempotency_keys",
        vec![
            tenure_platform::retention::Rule::new(
                "playbooks.trigger_events",
                "received_at",
                matched,
            )
            .only("matched_at IS NOT NULL"),
        ],
    )?;
    Ok(service)
}
