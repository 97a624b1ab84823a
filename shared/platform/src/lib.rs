//! What every Tenure service does the same way.
//!
//! - [`auth`]: who may call what: API keys, mesh identities, scopes per method.
//! - [`backoff`]: the one exponential backoff with jitter, for calls and for retried work.
//! - [`config`]: settings from environment variables and flags, with local defaults.
//! - [`telemetry`]: logs, traces and the OTLP exporter, set up once per process.
//! - [`trace`]: W3C trace context across gRPC calls and outbox rows, RPC spans and metrics.
//! - [`erase`]: an account's rows removed from a service's schema.
//! - [`db`]: pools, per-service schemas and roles, migrations.
//! - [`pg`]: a throwaway Postgres cluster for the dev stack and tests.
//! - [`server`]: gRPC bootstrap with health, reflection, metrics, timeouts and graceful shutdown.
//! - [`outbox`]: messages to other services, committed with the writes that cause them.
//! - [`idempotency`]: `request_id` handling for every write RPC.
//! - [`error`]: the one mapping from failures to `tonic::Status`.
//! - [`service`]: what a service needs to start, and its deployment binary.
//! - [`money`]: validated amounts in ISO 4217 minor units.
//! - [`retention`]: tables that would grow for ever keep rows for a stated time.
//! - [`paging`]: page sizes and opaque page tokens.
//! - [`wake`]: background loops woken by Postgres notices when work is written.

pub mod auth;
pub mod backoff;
pub mod batch;
pub mod client;
pub mod config;
pub mod db;
pub mod erase;
pub mod error;
pub mod idempotency;
pub mod input;
pub mod money;
pub mod outbox;
pub mod paging;
pub mod pg;
pub mod retention;
pub mod server;
pub mod service;
pub mod telemetry;
pub mod time;
pub mod trace;
pub mod wake;

pub use error::{ApiError, ApiResult, Violations};
