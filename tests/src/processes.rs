//! The four services as processes of their own (this package's
//! `tenure-service` binary), over one database: for tests that SIGKILL a
//! service and start it again, and for load tests that read each service's
//! memory. A process never shares anything with the test but its database,
//! its ports and its keys file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tenure_platform::auth::{Credentials, Secret};
use tenure_platform::config::PeerConfig;

/// The services, by name, as child processes.
pub struct Processes {
    binary: PathBuf,
    pub database_url: String,
    /// Services whose schema lives elsewhere than `database_url`.
    databases: BTreeMap<&'static str, String>,
    dir: tempfile::TempDir,
    service_keys: BTreeMap<&'static str, Secret>,
    pub operator_key: Secret,
    ports: BTreeMap<&'static str, u16>,
    children: BTreeMap<&'static str, Child>,
    settings: Vec<(String, String)>,
}

impl Processes {
    /// Prepares the services over `database_url`, run from `binary` (the
    /// test's `env!("CARGO_BIN_EXE_tenure-service")`), with `settings` as
    /// environment variables: ports chosen, keys written, none started.
    pub fn new(
        binary: &str,
        database_url: String,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("tenure-procs-").tempdir()?;
        let (service_keys, operator_key) =
            tenure::stack::stack_keys(&dir.path().join("api-keys.jsonl"))?;
        let mut ports = BTreeMap::new();
        for spec in tenure::stack::SERVICES {
            let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
            ports.insert(spec.name, probe.local_addr()?.port());
        }
        Ok(Self {
            binary: PathBuf::from(binary),
            database_url,
            databases: BTreeMap::new(),
            dir,
            service_keys,
            operator_key,
            ports,
            children: BTreeMap::new(),
            settings: settings
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        })
    }

    /// Gives service `name` a database of its own at `url` (a cluster of
    /// its own, say) instead of the shared one.
    pub fn with_database(mut self, name: &'static str, url: String) -> Self {
        self.databases.insert(name, url);
        self
    }

    /// The database service `name` uses.
    pub fn database_of(&self, name: &str) -> &str {
        self.databases.get(name).unwrap_or(&self.database_url)
    }

    /// Starts `name` and waits until it reports serving.
    pub async fn start(&mut self, name: &'static str) -> anyhow::Result<()> {
        anyhow::ensure!(!self.children.contains_key(name), "{name} is running");
        let port = *self
            .ports
            .get(name)
            .with_context(|| format!("no service {name}"))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(name))?;
        let mut command = Command::new(&self.binary);
        command
            .env("TENURE_SERVICE", name)
            .env("DATABASE_URL", self.database_of(name))
            .env("DATABASE_MAX_CONNECTIONS", "8")
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env(
                "TENURE_API_KEYS_FILE",
                self.dir.path().join("api-keys.jsonl"),
            )
            .env("RUST_LOG", "warn")
            .env("RUST_LIB_BACKTRACE", "0")
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("METRICS_ADDR")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        for spec in tenure::stack::SERVICES {
            let variable = format!("{}_URL", spec.name.to_uppercase());
            command.env(variable, self.url(spec.name));
        }
        if let Some(key) = self.service_keys.get(name) {
            command.env("TENURE_API_KEY", key.expose());
        }
        for (variable, value) in &self.settings {
            command.env(variable, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.children.insert(name, child);
        self.wait_serving(name).await
    }

    /// Sends SIGKILL to `name` (no shutdown of any kind); [`Self::kill`]
    /// reaps it.
    pub fn sigkill(&self, name: &str) {
        if let Some(pid) = self.pid(name) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }

    /// Kills `name` with SIGKILL (no shutdown of any kind) and reaps it.
    pub fn kill(&mut self, name: &str) -> anyhow::Result<()> {
        let mut child = self
            .children
            .remove(name)
            .with_context(|| format!("{name} is not running"))?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// `http://127.0.0.1:PORT` of `name`, the same across restarts.
    pub fn url(&self, name: &str) -> String {
        format!(
            "http://127.0.0.1:{}",
            self.ports.get(name).copied().unwrap_or(0)
        )
    }

    /// Where the services are, with the operator's key and no deadline.
    pub fn operator_peers(&self) -> PeerConfig {
        PeerConfig {
            ingestion_url: self.url("ingestion"),
            health_url: self.url("health"),
            renewals_url: self.url("renewals"),
            playbooks_url: self.url("playbooks"),
            credentials: Credentials::key(self.operator_key.clone()),
            call_timeout: None,
        }
    }

    /// The process id of running `name`.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children.get(name).map(Child::id)
    }

    /// The resident memory of running `name` now, in KiB (`VmRSS`).
    pub fn rss_kib(&self, name: &str) -> Option<u64> {
        self.memory_kib(name, "VmRSS:")
    }

    /// The largest resident memory of running `name` so far, in KiB
    /// (`VmHWM`).
    pub fn peak_rss_kib(&self, name: &str) -> Option<u64> {
        self.memory_kib(name, "VmHWM:")
    }

    fn memory_kib(&self, name: &str, field: &str) -> Option<u64> {
        memory_kib(self.pid(name)?, field)
    }

    /// The last `lines` lines `name` logged, for failure messages.
    pub fn log_tail(&self, name: &str, lines: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(name)).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    async fn wait_serving(&mut self, name: &str) -> anyhow::Result<()> {
        use tonic_health::pb::health_client::HealthClient;
        let url = self.url(name);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.children.get_mut(name)
                && let Some(status) = child.try_wait()?
            {
                self.children.remove(name);
                anyhow::bail!(
                    "{name} exited with {status} while starting:\n{}",
                    self.log_tail(name, 20)
                );
            }
            if let Ok(channel) = tonic::transport::Endpoint::from_shared(url.clone())?
                .connect_timeout(Duration::from_millis(500))
                .connect()
                .await
            {
                let answer = HealthClient::new(channel)
                    .check(tonic_health::pb::HealthCheckRequest::default())
                    .await;
                if answer.is_ok_and(|a| a.into_inner().status == 1) {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= deadline {
                anyhow::bail!("{name} did not start in 60 s:\n{}", self.log_tail(name, 20));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for child in self.children.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A memory figure of process `pid` in KiB: `VmRSS:` (resident now) or
/// `VmHWM:` (the peak since start, or since [`reset_peak_rss`]).
pub fn memory_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Starts this process's peak resident memory (`VmHWM`) again from what is
/// resident now.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A throwaway Postgres cluster of the caller's own (not the tests' shared
/// one, which must never be stopped) with an empty database `tenure`, and
/// that database's URL. Durable: fsync on, as in production.
pub async fn own_cluster() -> anyhow::Result<(tenure_platform::pg::PgCluster, String)> {
    use sqlx::Connection as _;
    let tuning = tenure_platform::pg::Tuning {
        max_connections: 60,
        ..tenure_platform::pg::Tuning::default()
    };
    let cluster = tokio::task::spawn_blocking(move || {
        tenure_platform::pg::PgCluster::start(tenure_platform::pg::DataDir::Temporary, tuning)
    })
    .await??;
    let mut admin = sqlx::PgConnection::connect(&cluster.admin_url()).await?;
    sqlx::query("CREATE DATABASE tenure")
        .execute(&mut admin)
        .await?;
    admin.close().await?;
    let url = format!("postgres://postgres@127.0.0.1:{}/tenure", cluster.port());
    Ok((cluster, url))
}
