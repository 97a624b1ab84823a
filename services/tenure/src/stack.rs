//! The whole Tenure stack in one process: a throwaway Postgres (or
//! `DATABASE_URL`), one role and schema per service, the four services, and
//! the API keys they and their local operator call with.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context as _;
use sqlx::postgres::PgConnectOptions;
use tenure_platform::auth::{Credentials, Scope, Secret};
use tenure_platform::config::{PeerConfig, ServerConfig};
use tenure_platform::pg::{DataDir, PgCluster, Tuning};
use tenure_platform::service::{RunningService, ServiceContext, ServiceSpec};

/// The four services, in start order.
pub static SERVICES: [&ServiceSpec; 4] = [
    &tenure_ingestion::SPEC,
    &tenure_health::SPEC,
    &tenure_renewals::SPEC,
    &tenure_playbooks::SPEC,
];

/// How to run the stack.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Administrative URL of an existing database; `None` starts a cluster.
    pub database_url: Option<String>,
    /// Where the stack's own cluster keeps its data; `None` for a temporary directory.
    pub data_dir: Option<PathBuf>,
    /// Address the services listen on.
    pub bind_ip: IpAddr,
    /// Use each service's default port; otherwise any free port.
    pub default_ports: bool,
    pub server: ServerConfig,
    pub max_connections: u32,
    /// Settings for the services over the environment (`PLAYBOOKS_SMTP_URL`, …).
    pub settings: std::collections::BTreeMap<String, String>,
    /// The keys file, when `server.auth` names none; `None` for a temporary one.
    pub keys_file: Option<PathBuf>,
    /// Load `pg_stat_statements` in the stack's own cluster (benchmarks'
    /// profiles); an existing database is used as it is.
    pub statement_statistics: bool,
    /// `shared_buffers` of the stack's own cluster in MiB; the server's
    /// default when `None`.
    pub shared_buffers_mb: Option<u32>,
}

impl StackOptions {
    /// Random ports on loopback, a temporary cluster unless `DATABASE_URL` is set.
    pub fn for_tests(database_url: Option<String>) -> Self {
        Self {
            database_url,
            data_dir: None,
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            default_ports: false,
            server: ServerConfig::default(),
            max_connections: 5,
            settings: Default::default(),
            keys_file: None,
            statement_statistics: false,
            shared_buffers_mb: None,
        }
    }
}

/// A running stack; [`Stack::stop`] shuts it down in order.
pub struct Stack {
    pub services: Vec<RunningService>,
    pub peers: PeerConfig,
    /// Administrative URL of the database the services use.
    pub database_url: String,
    /// The key of the stack's operator: every scope but `internal`.
    pub operator_key: Secret,
    /// Each service's own key, with the scopes its calls need.
    service_keys: std::collections::BTreeMap<&'static str, Secret>,
    options: StackOptions,
    cluster: Option<PgCluster>,
    _keys_dir: Option<tempfile::TempDir>,
}

/// The keys a stack makes for itself are named with this prefix and
/// replaced at each start.
const STACK_KEY: &str = "tenure-stack:";

/// Scopes of the stack's operator key: all that a person or job may hold.
pub const OPERATOR_SCOPES: [Scope; 6] = [
    Scope::Ingest,
    Scope::Read,
    Scope::Contacts,
    Scope::Analytics,
    Scope::PlaybooksAdmin,
    Scope::Erase,
];

/// Replaces the stack's own keys in `path` with new ones: one per service
/// with the scopes its calls need, and the operator's, none rate-limited.
pub fn stack_keys(
    path: &std::path::Path,
) -> anyhow::Result<(std::collections::BTreeMap<&'static str, Secret>, Secret)> {
    use tenure_platform::auth::keys;
    let mut stored = keys::read(path)?;
    stored.retain(|k| !k.name.starts_with(STACK_KEY));
    let mut services = std::collections::BTreeMap::new();
    for spec in SERVICES {
        let (key, secret) = keys::generate(
            &format!("{STACK_KEY}{}", spec.name),
            spec.calls_with,
            Some(0),
        );
        stored.push(key);
        services.insert(spec.name, secret);
    }
    let (operator, operator_key) =
        keys::generate(&format!("{STACK_KEY}operator"), &OPERATOR_SCOPES, Some(0));
    stored.push(operator);
    keys::write(path, &stored)?;
    Ok((services, operator_key))
}

impl Stack {
    pub async fn start(mut options: StackOptions) -> anyhow::Result<Self> {
        let mut keys_dir = None;
        let keys_file = match (&options.server.auth.api_keys_file, &options.keys_file) {
            (Some(path), _) | (None, Some(path)) => path.clone(),
            (None, None) => {
                let dir = tempfile::tempdir()?;
                let path = dir.path().join("api-keys.jsonl");
                keys_dir = Some(dir);
                path
            }
        };
        let (service_keys, operator_key) = stack_keys(&keys_file)
            .with_context(|| format!("writing the stack's keys to {}", keys_file.display()))?;
        options.server.auth.api_keys_file = Some(keys_file);
        // Webhook deliveries are signed; a local stack makes up its own key
        // unless one is given (an empty one turns webhooks off).
        if tenure_platform::config::Settings::default()
            .get("PLAYBOOKS_WEBHOOK_SECRET")
            .is_none()
        {
            options
                .settings
                .entry("PLAYBOOKS_WEBHOOK_SECRET".to_owned())
                .or_insert_with(|| {
                    format!(
                        "{:032x}{:032x}",
                        rand::random::<u128>(),
                        rand::random::<u128>()
                    )
                });
        }

        let (cluster, database_url) = match &options.database_url {
            Some(url) => (None, url.clone()),
            None => {
                let dir = match &options.data_dir {
                    Some(path) => DataDir::Persistent(path.clone()),
                    None => DataDir::Temporary,
                };
                let tuning = Tuning {
                    max_connections: 200,
                    unsafe_fast: false,
                    statement_statistics: options.statement_statistics,
                    shared_buffers_mb: options.shared_buffers_mb,
                };
                let cluster =
                    tokio::task::spawn_blocking(move || PgCluster::start(dir, tuning)).await??;
                tenure_platform::pg::lock_down(&cluster.admin_url()).await?;
                let url = ensure_database(&cluster.admin_url(), "tenure").await?;
                (Some(cluster), url)
            }
        };
        let mut listeners = Vec::with_capacity(SERVICES.len());
        for spec in SERVICES {
            let port = if options.default_ports {
                spec.default_port
            } else {
                0
            };
            let addr = SocketAddr::new(options.bind_ip, port);
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {} on {addr}", spec.name))?;
            listeners.push(listener);
        }
        let url = |i: usize| -> anyhow::Result<String> {
            let addr = listeners[i].local_addr()?;
            let host = if addr.ip().is_unspecified() {
                IpAddr::from([127, 0, 0, 1])
            } else {
                addr.ip()
            };
            Ok(format!("http://{}", SocketAddr::new(host, addr.port())))
        };
        let peers = PeerConfig {
            ingestion_url: url(0)?,
            health_url: url(1)?,
            renewals_url: url(2)?,
            playbooks_url: url(3)?,
            credentials: Credentials::default(),
            call_timeout: Some(tenure_platform::config::DEFAULT_CALL_TIMEOUT),
        };

        let mut stack = Self {
            services: Vec::new(),
            peers,
            database_url,
            operator_key,
            service_keys,
            options,
            cluster,
            _keys_dir: keys_dir,
        };
        for (spec, listener) in SERVICES.iter().zip(listeners) {
            let service = stack.start_service(spec, listener).await?;
            stack.services.push(service);
        }
        Ok(stack)
    }

    async fn start_service(
        &self,
        spec: &ServiceSpec,
        listener: tokio::net::TcpListener,
    ) -> anyhow::Result<RunningService> {
        let admin = tenure_platform::db::options(&self.database_url)?;
        let pool = prepare_pool(&admin, spec, self.options.max_connections).await?;
        let context = ServiceContext {
            pool,
            peers: self.service_peers(spec.name),
            server: self.options.server.clone(),
            listener,
            settings: tenure_platform::config::Settings {
                overrides: self.options.settings.clone(),
            },
        };
        (spec.start)(context)
            .await
            .with_context(|| format!("starting {}", spec.name))
    }

    /// Stops one service (as an outage would), keeping its address.
    pub async fn stop_service(&mut self, name: &str) -> anyhow::Result<SocketAddr> {
        let index = self
            .services
            .iter()
            .position(|s| s.name == name)
            .with_context(|| format!("{name} is not running"))?;
        let service = self.services.remove(index);
        let addr = service.server.addr;
        service.stop().await?;
        Ok(addr)
    }

    /// Kills one service as a crash would: its background work is aborted
    /// mid-flight (open transactions roll back), then its server stops.
    pub async fn kill_service(&mut self, name: &str) -> anyhow::Result<SocketAddr> {
        let index = self
            .services
            .iter()
            .position(|s| s.name == name)
            .with_context(|| format!("{name} is not running"))?;
        let service = self.services.remove(index);
        let addr = service.server.addr;
        service.kill().await?;
        Ok(addr)
    }

    /// Starts another replica of a running service on a free port, sharing
    /// its database; the caller stops it.
    pub async fn start_replica(&self, name: &str) -> anyhow::Result<RunningService> {
        let spec = SERVICES
            .iter()
            .find(|s| s.name == name)
            .with_context(|| format!("no service named {name}"))?;
        let listener = tokio::net::TcpListener::bind((self.options.bind_ip, 0)).await?;
        self.start_service(spec, listener).await
    }

    /// Starts a stopped service again on `addr`.
    pub async fn restart_service(&mut self, name: &str, addr: SocketAddr) -> anyhow::Result<()> {
        let spec = SERVICES
            .iter()
            .find(|s| s.name == name)
            .with_context(|| format!("no service named {name}"))?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let service = self.start_service(spec, listener).await?;
        self.services.push(service);
        Ok(())
    }

    /// A setting the services were started with, over the environment.
    pub fn setting(&self, name: &str) -> Option<String> {
        tenure_platform::config::Settings {
            overrides: self.options.settings.clone(),
        }
        .get(name)
    }

    /// Changes a setting for the services started from now on.
    pub fn set_setting(&mut self, name: &str, value: &str) {
        self.options
            .settings
            .insert(name.to_owned(), value.to_owned());
    }

    /// The keys file the services read.
    pub fn keys_file(&self) -> Option<&std::path::Path> {
        self.options.server.auth.api_keys_file.as_deref()
    }

    /// Where the services are, with the key of the service `name`.
    pub fn service_peers(&self, name: &str) -> PeerConfig {
        PeerConfig {
            credentials: Credentials {
                api_key: self.service_keys.get(name).cloned(),
            },
            ..self.peers.clone()
        }
    }

    /// Where the services are, with the operator's key: for clients, whose
    /// calls have no deadline but the one each sets.
    pub fn operator_peers(&self) -> PeerConfig {
        PeerConfig {
            credentials: Credentials::key(self.operator_key.clone()),
            call_timeout: None,
            ..self.peers.clone()
        }
    }

    /// URL of a service by name.
    pub fn url(&self, name: &str) -> Option<String> {
        self.services
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.url())
    }

    /// Stops every service (draining calls), then the stack's own Postgres.
    pub async fn stop(self) -> anyhow::Result<()> {
        for service in self.services.into_iter().rev() {
            service.stop().await?;
        }
        if let Some(mut cluster) = self.cluster {
            tokio::task::spawn_blocking(move || cluster.stop()).await?;
        }
        Ok(())
    }
}

async fn prepare_pool(
    admin: &PgConnectOptions,
    spec: &ServiceSpec,
    max_connections: u32,
) -> anyhow::Result<sqlx::PgPool> {
    tenure_platform::db::prepare_service_pool(admin, spec.schema, spec.migrations, max_connections)
        .await
        .with_context(|| format!("preparing the {} database", spec.name))
}

/// Creates database `name` on the server of `admin_url` if missing; returns its URL.
async fn ensure_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await?;
    if !exists {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await?;
    }
    let base = admin_url
        .rsplit_once('/')
        .map(|(base, _)| base)
        .unwrap_or(admin_url);
    Ok(format!("{base}/{name}"))
}
