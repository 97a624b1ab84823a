//! Renewals: the renewal pipeline, outcomes, retention metrics, forecasts
//! and lifetime value.
//!
//! [`outcomes`] holds the domain rules and storage of renewal outcomes;
//! [`grpc`] is the edge.

pub mod grpc;
pub mod outcomes;
pub mod queue;

use tenure_platform::service::{RunningService, ServiceContext, ServiceSpec, StartFuture};
use tenure_proto::renewals::v1::renewals_service_server::RenewalsServiceServer;
use tonic::service::Routes;

/// The Postgres schema renewals owns.
pub const SCHEMA: &str = "renewals";

pub static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub const GRPC_SERVICES: &[&str] = &["tenure.renewals.v1.RenewalsService"];

pub static SPEC: ServiceSpec = ServiceSpec {
    name: "renewals",
    schema: SCHEMA,
    migrations: &MIGRATIONS,
    grpc_services: GRPC_SERVICES,
    default_port: tenure_platform::config::ports::RENEWALS,
    start: |context| -> StartFuture { Box::pin(start(context)) },
};

/// Starts the gRPC server.
pub async fn start(context: ServiceContext) -> anyhow::Result<RunningService> {
    let bytes = context.server.max_message_bytes;
    let api = RenewalsServiceServer::new(grpc::RenewalsApi::new(context.pool.clone()))
        .max_decoding_message_size(bytes)
        .max_encoding_message_size(bytes);
    let service = RunningService::serve(&SPEC, context.listener, Routes::new(api), context.server)?;
    Ok(service)
}
