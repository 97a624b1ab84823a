//! Where the database's time goes during a benchmark step, from Postgres'
//! own statement statistics (`pg_stat_statements`, loaded when the stack's
//! cluster was started with `StackOptions::statement_statistics`).

use std::time::Duration;

/// Statement statistics of one database; a no-op when the extension is not
/// loaded (a bench run against an existing `DATABASE_URL`).
pub struct Statements {
    db: sqlx::PgPool,
    loaded: bool,
    /// Each server process's CPU ticks at the last reset.
    ticks_at_reset: std::sync::Mutex<std::collections::HashMap<i32, u64>>,
}

impl Statements {
    /// Creates the extension in `db`'s database when the server loaded it.
    pub async fn new(db: &sqlx::PgPool) -> Self {
        let preloaded: String =
            sqlx::query_scalar("SELECT current_setting('shared_preload_libraries')")
                .fetch_one(db)
                .await
                .unwrap_or_default();
        let loaded = preloaded.contains("pg_stat_statements")
            && sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .execute(db)
                .await
                .is_ok();
        Self {
            db: db.clone(),
            loaded,
            ticks_at_reset: Default::default(),
        }
    }

    /// Forgets what was counted so far: the next report covers what runs
    /// after this.
    pub async fn reset(&self) {
        let ticks = self.server_ticks().await;
        *self
            .ticks_at_reset
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = ticks;
        if self.loaded {
            let _ = sqlx::query("SELECT pg_stat_statements_reset()")
                .execute(&self.db)
                .await;
        }
    }

    /// What ran since the last reset, by execution time, most first
    /// (empty when the extension is not loaded).
    pub async fn snapshot(&self) -> Profile {
        // The CPU of the server's processes since the reset: those alive
        // at the snapshot, each from its count at the reset (or from zero
        // when it started since); a process that ended in between is lost.
        let before = self
            .ticks_at_reset
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let used: u64 = self
            .server_ticks()
            .await
            .into_iter()
            .map(|(pid, now)| now.saturating_sub(before.get(&pid).copied().unwrap_or(0)))
            .sum();
        let server_cpu = Some(ticks_to_duration(used)).filter(|_| !before.is_empty());
        if !self.loaded {
            return Profile {
                server_cpu,
                ..Profile::default()
            };
        }
        let statements = sqlx::query_as(
            "SELECT regexp_replace(query, '\\s+', ' ', 'g'), calls, total_exec_time, rows \
             FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             ORDER BY total_exec_time DESC",
        )
        .fetch_all(&self.db)
        .await
        .unwrap_or_default();
        Profile {
            statements,
            server_cpu,
        }
    }

    /// CPU ticks of each of the database server's processes (backends and
    /// background workers), read from `/proc`.
    async fn server_ticks(&self) -> std::collections::HashMap<i32, u64> {
        // Only a cluster the bench started (the one that loads the
        // statistics) is known to run here.
        if !self.loaded {
            return Default::default();
        }
        let pids: Vec<i32> = sqlx::query_scalar("SELECT pid FROM pg_stat_activity")
            .fetch_all(&self.db)
            .await
            .unwrap_or_default();
        pids.into_iter()
            .filter_map(|pid| Some((pid, stat_ticks(&format!("/proc/{pid}/stat"))?)))
            .collect()
    }
}

/// Statements with their calls, execution time (ms) and rows.
#[derive(Debug, Default)]
pub struct Profile {
    statements: Vec<(String, i64, f64, i64)>,
    /// The database server's processes' CPU in the step, when known.
    server_cpu: Option<Duration>,
}

impl Profile {
    /// Prints the `top` statements, each with its share of `wall` (the
    /// step's wall-clock time), and the database's time in all against it.
    /// `cpu` is the CPU time the services used in the step.
    pub fn print(&self, step: &str, wall: Duration, cpu: Duration, top: usize) {
        println!(
            "  {step}: the services' CPU {:.2} s = {:.0} % of the wall time {:.2} s",
            cpu.as_secs_f64(),
            cpu.as_secs_f64() / wall.as_secs_f64() * 100.0,
            wall.as_secs_f64()
        );
        if let Some(server) = self.server_cpu {
            println!(
                "  {step}: the database server's CPU {:.2} s = {:.0} % of the wall time",
                server.as_secs_f64(),
                server.as_secs_f64() / wall.as_secs_f64() * 100.0
            );
        }
        if self.statements.is_empty() {
            return;
        }
        let wall_ms = wall.as_secs_f64() * 1000.0;
        let total: f64 = self.statements.iter().map(|r| r.2).sum();
        println!(
            "  {step}: the database busy {:.2} s = {:.0} % of the wall time ({} statements); the top {top}:",
            total / 1000.0,
            total / wall_ms * 100.0,
            self.statements.len()
        );
        for (query, calls, time, returned) in self.statements.iter().take(top) {
            let text: String = query.chars().take(110).collect();
            println!(
                "    {:>7.2} s {:>4.0} % {calls:>7} calls {returned:>9} rows  {text}",
                time / 1000.0,
                time / wall_ms * 100.0
            );
        }
    }
}

/// CPU time this process (the bench and the stack it runs in-process) has
/// used so far, user and system, from `/proc/self/stat`; zero where that
/// cannot be read.
pub fn process_cpu() -> Duration {
    ticks_to_duration(stat_ticks("/proc/self/stat").unwrap_or(0))
}

/// User and system CPU ticks of the process whose `stat` file is `path`.
fn stat_ticks(path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// The kernel reports in USER_HZ ticks, 100 a second on Linux.
fn ticks_to_duration(ticks: u64) -> Duration {
    Duration::from_millis(ticks * 10)
}
