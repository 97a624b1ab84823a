//! A throwaway Postgres cluster from the local server binaries (`initdb`,
//! `pg_ctl`), for the dev stack and for tests when `DATABASE_URL` is unset.
//!
//! The cluster listens on 127.0.0.1 on a free port with trust authentication
//! and no Unix socket. Run as root, it runs the server as the `postgres`
//! system user (initdb refuses root). A detached watchdog stops it (and
//! removes a temporary data directory) once the owning process is gone, even
//! when that process is killed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

const MISSING_BINARIES: &str = "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH \
     or under /usr/lib/postgresql/*/bin: install them with `apt-get install postgresql` \
     (Debian/Ubuntu), point PG_BIN_DIR at their directory, or set DATABASE_URL to an existing database";

/// Where the cluster keeps its data.
pub enum DataDir {
    /// A new temporary directory, removed when the cluster stops.
    Temporary,
    /// A directory kept across runs (created and initialised when missing).
    Persistent(PathBuf),
}

/// Server settings for the cluster.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    pub max_connections: u32,
    /// Skip fsync: for tests, whose data is thrown away anyway.
    pub unsafe_fast: bool,
    /// Load `pg_stat_statements`, so that a benchmark can show where the
    /// database's time goes.
    pub statement_statistics: bool,
    /// `shared_buffers` in MiB, as a production server would size it (a
    /// quarter of the memory); the server's small default when `None`.
    pub shared_buffers_mb: Option<u32>,
}

impl Default for Tuning {
    fn default() -> Self {
        Self {
            max_connections: 100,
            unsafe_fast: false,
            statement_statistics: false,
            shared_buffers_mb: None,
        }
    }
}

/// A running cluster; stopped when dropped.
pub struct PgCluster {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    run_as: Option<String>,
    _temp: Option<tempfile::TempDir>,
    running: bool,
    tuning: Tuning,
}

impl PgCluster {
    /// Initialises (if needed) and starts a cluster.
    pub fn start(dir: DataDir, tuning: Tuning) -> anyhow::Result<Self> {
        let bin_dir = find_bin_dir()?;
        let run_as = if nix::unistd::geteuid().is_root() {
            Some("postgres".to_owned())
        } else {
            None
        };
        let (temp, root) = match dir {
            DataDir::Temporary => {
                let temp = tempfile::Builder::new().prefix("tenure-pg-").tempdir()?;
                let root = temp.path().to_path_buf();
                (Some(temp), root)
            }
            DataDir::Persistent(path) => {
                std::fs::create_dir_all(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                (None, std::fs::canonicalize(&path)?)
            }
        };
        if let Some(user) = &run_as {
            give_to(&root, user)?;
        }
        let data_dir = root.join("data");
        let mut cluster = Self {
            bin_dir,
            data_dir,
            port: 0,
            run_as,
            _temp: temp,
            running: false,
            tuning,
        };
        if !cluster.data_dir.join("PG_VERSION").exists() {
            cluster.initdb()?;
        }
        // A free port can be taken between probing and binding; try a few.
        let mut last_error = None;
        for _ in 0..3 {
            cluster.port = free_port()?;
            match cluster.pg_ctl_start(tuning) {
                Ok(()) => {
                    cluster.running = true;
                    cluster.spawn_watchdog(&root)?;
                    return Ok(cluster);
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("postgres did not start")))
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of the `postgres` database as the superuser `postgres`.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (fast shutdown); called on drop too.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let data_dir = self.data_dir.display().to_string();
        let status = self
            .command("pg_ctl", &["-D", &data_dir, "-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("warning: pg_ctl stop failed for {data_dir}");
        }
    }

    /// Stops the server as a crash would (immediate shutdown: no checkpoint,
    /// clients cut off), waits `down`, and starts it again on the same port;
    /// it recovers from its log. For tests of what survives.
    pub fn crash_and_restart(&mut self, down: std::time::Duration) -> anyhow::Result<()> {
        let data_dir = self.data_dir.display().to_string();
        let status = self
            .command(
                "pg_ctl",
                &["-D", &data_dir, "-m", "immediate", "-w", "stop"],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("running pg_ctl stop")?;
        if !status.success() {
            bail!("pg_ctl stop -m immediate failed for {data_dir}");
        }
        std::thread::sleep(down);
        self.pg_ctl_start(self.tuning)
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let data_dir = self.data_dir.display().to_string();
        let output = self
            .command(
                "initdb",
                &[
                    "-D",
                    &data_dir,
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-sync",
                    "--locale=C",
                ],
            )
            .output()
            .context("running initdb")?;
        if !output.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    fn pg_ctl_start(&self, tuning: Tuning) -> anyhow::Result<()> {
        let data_dir = self.data_dir.display().to_string();
        let log = self.data_dir.join("server.log").display().to_string();
        let mut server_options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections={}",
            self.port, tuning.max_connections
        );
        if tuning.unsafe_fast {
            server_options
                .push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        if tuning.statement_statistics {
            server_options.push_str(" -c shared_preload_libraries=pg_stat_statements");
        }
        if let Some(mb) = tuning.shared_buffers_mb {
            server_options.push_str(&format!(" -c shared_buffers={mb}MB"));
        }
        let output = self
            .command(
                "pg_ctl",
                &[
                    "-D",
                    &data_dir,
                    "-l",
                    &log,
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    &server_options,
                    "start",
                ],
            )
            .stdin(Stdio::null())
            .output()
            .context("running pg_ctl start")?;
        if !output.status.success() {
            let log_tail = std::fs::read_to_string(&log).unwrap_or_default();
            let log_tail: String = log_tail
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .join(" | ");
            bail!(
                "pg_ctl start failed: {} {}",
                String::from_utf8_lossy(&output.stderr).trim(),
                log_tail
            );
        }
        Ok(())
    }

    /// Stops the server once this process is gone, however it ended.
    fn spawn_watchdog(&self, root: &Path) -> anyhow::Result<()> {
        let pg_ctl = self.bin_dir.join("pg_ctl");
        let as_user = match &self.run_as {
            Some(user) => format!("runuser -u {user} -- "),
            None => String::new(),
        };
        let remove = if self._temp.is_some() {
            format!("rm -rf '{}'", root.display())
        } else {
            String::from("true")
        };
        // It stops the cluster only if it is still the one started here (on
        // this port): a persistent data directory may hold a newer cluster
        // by the time the watchdog notices its process is gone.
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             if [ \"$(sed -n 4p '{data}/postmaster.pid' 2>/dev/null)\" = '{port}' ]; then \
               {as_user}'{pg_ctl}' -D '{data}' -m immediate stop >/dev/null 2>&1; \
             fi; {remove}",
            pid = std::process::id(),
            pg_ctl = pg_ctl.display(),
            data = self.data_dir.display(),
            port = self.port,
        );
        use std::os::unix::process::CommandExt as _;
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("starting the postgres watchdog")?;
        Ok(())
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let program = self.bin_dir.join(program);
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program).args(args);
                command
            }
            None => {
                let mut command = Command::new(program);
                command.args(args);
                command
            }
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The directory holding `initdb` and `pg_ctl`.
pub fn find_bin_dir() -> anyhow::Result<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PG_BIN_DIR").map(PathBuf::from) {
        if has_both(&dir) {
            return Ok(dir);
        }
        bail!("PG_BIN_DIR={} holds no initdb and pg_ctl", dir.display());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if initdb.is_file() {
                // Debian links the binaries into PATH; pg_ctl sits beside the real file.
                let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
                if let Some(real_dir) = real.parent().filter(|d| has_both(d)) {
                    return Ok(real_dir.to_path_buf());
                }
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, dir)| dir)
        .ok_or_else(|| anyhow::anyhow!(MISSING_BINARIES))
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Makes `path` owned by `user`, so the server can write it, after making
/// sure the user can reach it at all.
fn give_to(path: &Path, user: &str) -> anyhow::Result<()> {
    let account = nix::unistd::User::from_name(user)?.ok_or_else(|| {
        anyhow::anyhow!(
            "running as root needs the `{user}` system user (the postgresql package creates it)"
        )
    })?;
    if let Some(blocking) = first_closed_ancestor(path, account.uid.as_raw(), account.gid.as_raw())
    {
        bail!(
            "the throwaway Postgres runs as the `{user}` user (initdb refuses root), which cannot \
             enter {}: choose a data directory it can reach (--data-dir or TENURE_DATA_DIR, \
             for example /var/tmp/tenure-pg), or set DATABASE_URL to a running server",
            blocking.display()
        );
    }
    for entry in walk(path)? {
        std::os::unix::fs::chown(
            &entry,
            Some(account.uid.as_raw()),
            Some(account.gid.as_raw()),
        )
        .with_context(|| format!("chown {}", entry.display()))?;
    }
    Ok(())
}

/// The first directory above `path` that a user `uid` of group `gid`
/// cannot pass through (no search permission for it), if any.
fn first_closed_ancestor(path: &Path, uid: u32, gid: u32) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    path.ancestors().skip(1).find_map(|dir| {
        let meta = std::fs::metadata(dir).ok()?;
        let mode = meta.mode();
        let open = if meta.uid() == uid {
            mode & 0o100 != 0
        } else if meta.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        (!open).then(|| dir.to_path_buf())
    })
}

fn walk(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = vec![path.to_path_buf()];
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            out.extend(walk(&entry?.path())?);
        }
    }
    Ok(out)
}

/// Isolated databases for tests: one cluster per test process (or
/// `DATABASE_URL` when set), one new database per call.
/// Takes from PUBLIC what a fresh cluster gives every role on its own
/// databases (CONNECT and TEMPORARY on `postgres` and `template1`), so that
/// a service's role reaches no database but the one it is granted.
pub async fn lock_down(admin_url: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    for database in ["postgres", "template1"] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "REVOKE CONNECT, TEMPORARY ON DATABASE {database} FROM PUBLIC"
        )))
        .execute(&mut conn)
        .await
        .with_context(|| format!("revoking PUBLIC's rights on {database}"))?;
    }
    conn.close().await.ok();
    Ok(())
}

pub mod testing {
    use std::sync::OnceLock;

    use sqlx::{AssertSqlSafe, Connection as _, Executor as _, PgConnection};

    use super::{DataDir, PgCluster, Tuning};

    static CLUSTER: OnceLock<Result<String, String>> = OnceLock::new();

    /// Administrative URL of the test server.
    pub fn server_url() -> anyhow::Result<String> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Ok(url);
        }
        CLUSTER
            .get_or_init(|| {
                let tuning = Tuning {
                    max_connections: 400,
                    unsafe_fast: true,
                    ..Tuning::default()
                };
                PgCluster::start(DataDir::Temporary, tuning)
                    .map(|cluster| {
                        let url = cluster.admin_url();
                        // Lives as long as the test process; the watchdog stops it.
                        std::mem::forget(cluster);
                        url
                    })
                    .map_err(|e| format!("{e:#}"))
            })
            .clone()
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// Creates an empty database and returns its administrative URL.
    pub async fn fresh_database() -> anyhow::Result<String> {
        let server = server_url()?;
        if std::env::var_os("DATABASE_URL").is_none() {
            static LOCKED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
            LOCKED.get_or_try_init(|| super::lock_down(&server)).await?;
        }
        let mut conn = PgConnection::connect(&server).await?;
        let name = format!("tenure_test_{}", uuid::Uuid::new_v4().simple());
        conn.execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        conn.close().await.ok();
        Ok(url_with_database(&server, &name))
    }

    fn url_with_database(url: &str, database: &str) -> String {
        let (base, query) = match url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (url, String::new()),
        };
        let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
        let base = match base[scheme_end..].find('/') {
            Some(slash) => &base[..scheme_end + slash],
            None => base,
        };
        format!("{base}/{database}{query}")
    }

    #[cfg(test)]
    mod tests {
        use super::url_with_database;

        #[test]
        fn replaces_the_database_in_urls() {
            assert_eq!(
                url_with_database("postgres://u@h:5/db", "t"),
                "postgres://u@h:5/t"
            );
            assert_eq!(
                url_with_database("postgres://u@h:5", "t"),
                "postgres://u@h:5/t"
            );
            assert_eq!(
                url_with_database("postgres://u@h/db?sslmode=disable", "t"),
                "postgres://u@h/t?sslmode=disable"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_directory_closed_to_the_server_user_is_named() {
        let outer = tempfile::tempdir().unwrap();
        let inner = outer.path().join("pg");
        std::fs::create_dir(&inner).unwrap();
        // A user that owns nothing here, like `postgres` under root's home.
        let (nobody, nogroup) = (65534, 65534);
        std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(
            first_closed_ancestor(&inner, nobody, nogroup).as_deref(),
            Some(outer.path())
        );
        std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        assert_eq!(first_closed_ancestor(&inner, nobody, nogroup), None);
    }
}
