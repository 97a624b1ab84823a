//! The shape every service shares: what it needs to start, how it runs in
//! the background, and its deployment binary.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use anyhow::Context as _;
use clap::Parser as _;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use tokio_util::sync::CancellationToken;

use crate::config::{DatabaseConfig, PeerConfig, ServerConfig, Settings, TelemetryConfig};
use crate::server::RunningServer;

/// Everything a service gets from whoever starts it.
#[derive(Debug)]
pub struct ServiceContext {
    /// Connected as the service's own role, schema migrated.
    pub pool: PgPool,
    pub peers: PeerConfig,
    pub server: ServerConfig,
    /// Bound by the starter, so that peers can know the address first.
    pub listener: tokio::net::TcpListener,
    pub settings: Settings,
}

pub type StartFuture = Pin<Box<dyn Future<Output = anyhow::Result<RunningService>> + Send>>;

/// A service's identity and entry point.
pub struct ServiceSpec {
    /// Short name: `ingestion`, `health`, …
    pub name: &'static str,
    /// Its Postgres schema.
    pub schema: &'static str,
    pub migrations: &'static Migrator,
    /// Fully qualified gRPC service names it serves.
    pub grpc_services: &'static [&'static str],
    /// The scope each of its methods needs.
    pub access: &'static [(&'static str, crate::auth::Scope)],
    /// The scopes its own calls to the other services need.
    pub calls_with: &'static [crate::auth::Scope],
    pub default_port: u16,
    pub start: fn(ServiceContext) -> StartFuture,
}

/// A started service: its gRPC server and its background tasks.
pub struct RunningService {
    pub name: &'static str,
    pub server: RunningServer,
    background: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningService {
    pub fn new(name: &'static str, server: RunningServer) -> Self {
        Self {
            name,
            server,
            background: CancellationToken::new(),
            tasks: Vec::new(),
        }
    }

    /// Serves `routes` for the service of `spec` on the listener it was given.
    pub fn serve(
        spec: &ServiceSpec,
        listener: tokio::net::TcpListener,
        routes: tonic::service::Routes,
        config: ServerConfig,
    ) -> anyhow::Result<Self> {
        let access = crate::auth::Access {
            services: spec.grpc_services,
            rules: spec.access,
        };
        let server = RunningServer::start(listener, routes, access, config)?;
        Ok(Self::new(spec.name, server))
    }

    /// Runs `task` until the service stops; it gets the stop token.
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.push(tokio::spawn(task(self.background.clone())));
    }

    /// Listens for the wake-ups of `wakeups` until the service stops.
    pub fn listen(&mut self, wakeups: &crate::wake::Wakeups, pool: PgPool) {
        let wakeups = wakeups.clone();
        self.spawn(|stop| wakeups.listen(pool, stop));
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Aborts background work where it stands (a crash, for tests of
    /// durability), then stops the server.
    pub async fn kill(self) -> anyhow::Result<()> {
        for task in &self.tasks {
            task.abort();
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.background.cancel();
        self.server.stop().await
    }

    /// Stops background work, then drains the server.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.background.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        self.server.stop().await
    }
}

/// Command line (and environment) of a service's own binary.
#[derive(Debug, clap::Parser)]
struct BinaryCli {
    /// Address to listen on for gRPC (default 0.0.0.0 on the service's port).
    #[arg(long, env = "LISTEN_ADDR")]
    listen_addr: Option<SocketAddr>,
    #[command(flatten)]
    telemetry: TelemetryConfig,
    #[command(flatten)]
    server: ServerConfig,
    #[command(flatten)]
    peers: PeerConfig,
    #[command(flatten)]
    database: DatabaseConfig,
}

/// `main` of a service's deployment binary: connects to `DATABASE_URL`,
/// migrates the service's schema and serves until SIGTERM or Ctrl-C.
pub fn run_binary(spec: &'static ServiceSpec) -> anyhow::Result<()> {
    let cli = BinaryCli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let _telemetry = crate::telemetry::init(&cli.telemetry, &format!("tenure-{}", spec.name))?;
        if let Some(addr) = cli.server.metrics_addr {
            crate::server::install_metrics(addr)?;
        }
        let options = crate::db::options(cli.database.require_url()?)?;
        match &cli.database.database_migration_url {
            Some(owner) => {
                let owner = crate::db::options(owner).map_err(|_| {
                    anyhow::anyhow!("DATABASE_MIGRATION_URL is not a valid Postgres URL")
                })?;
                crate::db::migrate_as_owner(
                    owner,
                    options.get_username(),
                    spec.schema,
                    spec.migrations,
                )
                .await?;
            }
            None => {
                let pool = crate::db::connect(options.clone(), 1).await?;
                crate::db::migrate(&pool, spec.schema, spec.migrations).await?;
                pool.close().await;
            }
        }
        let pool = crate::db::connect(options, cli.database.database_max_connections).await?;
        let listen_addr = cli
            .listen_addr
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], spec.default_port)));
        let listener = tokio::net::TcpListener::bind(listen_addr)
            .await
            .with_context(|| format!("binding {listen_addr}"))?;
        let context = ServiceContext {
            pool,
            peers: cli.peers,
            server: cli.server,
            listener,
            settings: Settings::default(),
        };
        let service = (spec.start)(context)
            .await
            .with_context(|| format!("starting {}", spec.name))?;
        tracing::info!(service = spec.name, addr = %service.server.addr, "serving");
        crate::server::shutdown_signal().await;
        service.stop().await
    })
}

/// What one pass of a background loop found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pace {
    /// It did something, so there may be more: go again at once.
    Busy,
    /// Nothing to do: wait to be woken, or for the idle time.
    Idle,
    /// Nothing to do now; the next work falls due after this long (sooner
    /// if woken, and never later than the idle time).
    DueIn(std::time::Duration),
}

impl From<bool> for Pace {
    fn from(busy: bool) -> Self {
        if busy { Self::Busy } else { Self::Idle }
    }
}

/// Runs `work` until `cancel`: again at once while it reports it did
/// something, after `idle` (or sooner when `wake` is notified, or its work
/// falls due) when it found nothing, and with a doubling pause from 0.5 s
/// up to 30 s after a failure, which is logged under `what`. The loop of every
/// background worker.
pub async fn poll<F, Fut>(
    cancel: &CancellationToken,
    idle: std::time::Duration,
    wake: Option<&tokio::sync::Notify>,
    what: &str,
    mut work: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Pace>>,
{
    const FIRST_RETRY: std::time::Duration = std::time::Duration::from_millis(500);
    let mut failing = FIRST_RETRY / 2;
    loop {
        if cancel.is_cancelled() {
            return;
        }
        // Made before the work, so a notice sent while it runs is not lost.
        let notified = wake.map(tokio::sync::Notify::notified);
        let woken = async move {
            match notified {
                Some(notified) => notified.await,
                None => std::future::pending().await,
            }
        };
        let pause = match work().await {
            Ok(Pace::Busy) => {
                failing = FIRST_RETRY / 2;
                continue;
            }
            Ok(Pace::Idle) => {
                failing = FIRST_RETRY / 2;
                idle
            }
            Ok(Pace::DueIn(due)) => {
                failing = FIRST_RETRY / 2;
                due.min(idle)
            }
            Err(error) => {
                tracing::warn!(error = %format!("{error:#}"), "{what} failed");
                failing = (failing * 2).min(std::time::Duration::from_secs(30));
                failing
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            () = woken => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}
