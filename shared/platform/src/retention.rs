//! Bounded growth: tables that would otherwise grow for ever keep rows for
//! a stated time, and a background job of each service deletes what is
//! older, a bounded batch per statement so that no lock is held long.

use std::time::Duration;

use sqlx::{AssertSqlSafe, PgPool};
use tokio_util::sync::CancellationToken;

/// Rows of `table` (schema-qualified) older than `keep` by `column` go.
#[derive(Clone, Debug)]
pub struct Rule {
    pub table: &'static str,
    pub column: &'static str,
    /// Extra condition a row must meet to go (e.g. "it was matched").
    pub only: Option<&'static str>,
    pub keep: Duration,
}

impl Rule {
    pub fn new(table: &'static str, column: &'static str, keep: Duration) -> Self {
        Self {
            table,
            column,
            only: None,
            keep,
        }
    }

    pub fn only(mut self, condition: &'static str) -> Self {
        self.only = Some(condition);
        self
    }
}

/// Rows deleted per statement.
const BATCH: i64 = 10_000;

/// Applies `rules` once; returns the rows deleted.
pub async fn enforce(pool: &PgPool, rules: &[Rule]) -> sqlx::Result<u64> {
    let mut deleted = 0;
    for rule in rules {
        let (table, column) = (rule.table, rule.column);
        let only = rule.only.map(|c| format!(" AND {c}")).unwrap_or_default();
        loop {
            let gone = sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} \
                 WHERE {column} < now() - $1 * interval '1 second'{only} LIMIT $2))"
            )))
            .bind(rule.keep.as_secs() as i64)
            .bind(BATCH)
            .execute(pool)
            .await?
            .rows_affected();
            deleted += gone;
            metrics::counter!("retention_deleted_rows_total", "table" => table).increment(gone);
            if gone < BATCH as u64 {
                break;
            }
        }
    }
    Ok(deleted)
}

/// Enforces `rules` every `every` until cancelled.
pub async fn run(pool: PgPool, rules: Vec<Rule>, every: Duration, cancel: CancellationToken) {
    loop {
        match enforce(&pool, &rules).await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "retention: old rows deleted"),
            Err(error) => tracing::warn!(error = %error, "retention failed"),
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

/// A retention setting: `name` from `settings` as a duration, or `default`;
/// never below `floor`.
pub fn setting(
    settings: &crate::config::Settings,
    name: &str,
    default: &str,
    floor: Duration,
) -> anyhow::Result<Duration> {
    let text = settings.get(name).unwrap_or_else(|| default.to_owned());
    let keep =
        humantime::parse_duration(&text).map_err(|e| anyhow::anyhow!("{name}={text:?}: {e}"))?;
    anyhow::ensure!(
        keep >= floor,
        "{name}={text:?} is shorter than the least it may be ({})",
        humantime::format_duration(floor)
    );
    Ok(keep)
}

/// Runs a service's retention in the background: its idempotency keys
/// (`IDEMPOTENCY_RETENTION`, 7 days, at least a day: a retry after that
/// is applied as a new request) and its own `rules`, every
/// `RETENTION_INTERVAL` (1 hour).
pub fn start(
    service: &mut crate::service::RunningService,
    pool: PgPool,
    settings: &crate::config::Settings,
    idempotency_keys: &'static str,
    mut rules: Vec<Rule>,
) -> anyhow::Result<()> {
    let keys = setting(
        settings,
        "IDEMPOTENCY_RETENTION",
        "7d",
        Duration::from_secs(24 * 3600),
    )?;
    rules.push(Rule::new(idempotency_keys, "created_at", keys));
    let every = setting(
        settings,
        "RETENTION_INTERVAL",
        "1h",
        Duration::from_millis(10),
    )?;
    service.spawn(move |stop| run(pool, rules, every, stop));
    Ok(())
}
