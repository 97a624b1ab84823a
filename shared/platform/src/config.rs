//! Settings from environment variables (and the same names as flags), with
//! defaults that run on a laptop. A bad value fails start-up with a message
//! naming the variable.

use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::{AuthConfig, Credentials};

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logging and trace export.
#[derive(Clone, Debug, clap::Args)]
pub struct TelemetryConfig {
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
    /// OTLP/gRPC collector endpoint, e.g. http://otel-collector:4317. Unset: spans are not exported.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Which logs to write, as a tracing filter (e.g. `info,sqlx=warn`).
    /// Unset: info, with the libraries' chatter at warn.
    #[arg(long, env = "RUST_LOG")]
    pub log_filter: Option<String>,
}

/// gRPC server limits and shutdown.
#[derive(Clone, Debug, clap::Args)]
pub struct ServerConfig {
    /// Longest a call may run when the caller sets no shorter `grpc-timeout`.
    #[arg(long, env = "GRPC_REQUEST_TIMEOUT", value_parser = humantime::parse_duration, default_value = "30s")]
    pub request_timeout: Duration,
    /// Largest message accepted or sent, in bytes.
    #[arg(long, env = "GRPC_MAX_MESSAGE_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// How long in-flight calls may take to finish after SIGTERM or Ctrl-C.
    #[arg(long, env = "SHUTDOWN_GRACE", value_parser = humantime::parse_duration, default_value = "20s")]
    pub shutdown_grace: Duration,
    /// Address for Prometheus metrics (`/metrics`); unset: no metrics endpoint.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Who may call.
    #[command(flatten)]
    pub auth: AuthConfig,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(30),
            max_message_bytes: 16 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(20),
            metrics_addr: None,
            auth: AuthConfig::default(),
        }
    }
}

/// Where the other services are.
#[derive(Clone, Debug, clap::Args)]
pub struct PeerConfig {
    /// Ingestion service URL.
    #[arg(long, env = "INGESTION_URL", default_value = "http://127.0.0.1:50051")]
    pub ingestion_url: String,
    /// Health service URL.
    #[arg(long, env = "HEALTH_URL", default_value = "http://127.0.0.1:50052")]
    pub health_url: String,
    /// Renewals service URL.
    #[arg(long, env = "RENEWALS_URL", default_value = "http://127.0.0.1:50053")]
    pub renewals_url: String,
    /// Playbooks service URL.
    #[arg(long, env = "PLAYBOOKS_URL", default_value = "http://127.0.0.1:50054")]
    pub playbooks_url: String,
    /// The key this process calls them with.
    #[command(flatten)]
    pub credentials: Credentials,
    /// Deadline of a unary call to another service that sets none (result
    /// streams are bounded by their callers).
    #[arg(long, env = "PEER_CALL_TIMEOUT", value_parser = humantime::parse_duration, default_value = "10s")]
    pub call_timeout: Option<Duration>,
}

/// [`PeerConfig::call_timeout`]'s default.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

impl PeerConfig {
    /// A channel to `url` carrying this process's key, its unary calls
    /// bounded by `call_timeout`.
    pub fn channel(&self, url: &str) -> anyhow::Result<crate::client::TracedChannel> {
        crate::client::channel_with_deadline(url, &self.credentials, self.call_timeout)
    }
}

/// Database connection.
#[derive(Clone, Debug, clap::Args)]
pub struct DatabaseConfig {
    /// Postgres URL. The service creates its own schema in this database.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Postgres URL of the schema's owner, for migrations; the service then
    /// serves as `DATABASE_URL`'s role with rights to read and write only.
    /// Unset: `DATABASE_URL`'s role migrates and serves.
    #[arg(long, env = "DATABASE_MIGRATION_URL")]
    pub database_migration_url: Option<String>,
    /// Largest number of pooled connections.
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", default_value_t = 10)]
    pub database_max_connections: u32,
}

impl DatabaseConfig {
    /// The URL, or an error that says how to get one.
    pub fn require_url(&self) -> anyhow::Result<&str> {
        self.database_url.as_deref().ok_or_else(|| {
            anyhow::anyhow!(
                "DATABASE_URL is not set: point it at a Postgres database, \
                 or run the whole stack on a throwaway Postgres with `tenure up`"
            )
        })
    }
}

/// Default listen ports of the four services.
pub mod ports {
    pub const INGESTION: u16 = 50051;
    pub const HEALTH: u16 = 50052;
    pub const RENEWALS: u16 = 50053;
    pub const PLAYBOOKS: u16 = 50054;
    pub const METRICS: u16 = 9464;
}

/// Named settings of a service: explicit values given by whoever starts it
/// (a test, the dev stack), over the process environment.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub overrides: std::collections::BTreeMap<String, String>,
}

impl Settings {
    pub fn get(&self, name: &str) -> Option<String> {
        self.overrides
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }
}
