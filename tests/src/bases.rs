//! Generated customer bases for the benches, the same shapes as the demo's
//! (`tenure::generate`), loaded through the public APIs like any import.
//!
//! Loading 100,000 accounts (tens of millions of rows) takes many minutes,
//! so a base is loaded once into a cluster of its own under
//! `target/bench-bases/<accounts>-<seed>/` and later runs start the stack on
//! that cluster again (migrating it if the schemas moved on). Delete the
//! directory to load afresh. With `DATABASE_URL` set the base is loaded
//! into a new database each run instead.

use std::path::{Path, PathBuf};
use std::time::Instant;

use tenure::generate::Config;
use tenure::stack::StackOptions;

use crate::TestStack;

/// A started stack over a loaded base.
pub struct Base {
    pub app: TestStack,
    pub config: Config,
    /// Whether this run loaded it (false: an earlier run did).
    pub loaded_now: bool,
}

/// The marker a finished load leaves, holding the base's as-of date.
const LOADED: &str = "loaded";

fn cache_dir(accounts: usize, seed: u64) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target
        .join("bench-bases")
        .join(format!("{accounts}-{seed}"))
}

/// A stack over a generated base of `accounts` (three years, `seed`),
/// loaded now or by an earlier run; `adjust` sets the stack's options.
pub async fn generated(
    accounts: usize,
    seed: u64,
    adjust: impl FnOnce(&mut StackOptions),
) -> anyhow::Result<Base> {
    let external = std::env::var("DATABASE_URL").ok();
    let dir = cache_dir(accounts, seed);
    let marker = dir.join(LOADED);
    let mut options = match &external {
        Some(_) => {
            StackOptions::for_tests(Some(tenure_platform::pg::testing::fresh_database().await?))
        }
        None => {
            if !marker.exists() {
                // A load that did not finish is started again from scratch.
                let _ = std::fs::remove_dir_all(&dir);
            }
            let mut options = StackOptions::for_tests(None);
            options.data_dir = Some(dir.join("cluster"));
            options
        }
    };
    options.max_connections = 12;
    // Sized as a production server would be: a quarter of the memory for
    // the server's own cache (at most 8 GiB), so that a bench measures
    // Tenure's reads, not a small default cache's misses.
    options.shared_buffers_mb = memory_mib().map(|mib| (mib / 4).min(8192));
    adjust(&mut options);
    let app = TestStack::start(options).await;
    if external.is_none()
        && let Ok(text) = std::fs::read_to_string(&marker)
    {
        let as_of = text.trim().parse()?;
        eprintln!(
            "base: {accounts} accounts (seed {seed}, as of {as_of}) from {}",
            dir.display()
        );
        return Ok(Base {
            app,
            config: Config {
                accounts,
                years: 3,
                seed,
                as_of,
            },
            loaded_now: false,
        });
    }
    let config = Config {
        accounts,
        years: 3,
        seed,
        as_of: tenure::generate::yesterday(),
    };
    let files = tempfile::tempdir_in(std::env::temp_dir())?;
    let started = Instant::now();
    let counts = tenure::generate::write(&config, files.path())?;
    let rows: u64 = counts.values().sum();
    eprintln!(
        "base: generated {accounts} accounts, {rows} rows in {:.0} s; loading them through the APIs",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    for (kind, summary) in
        tenure::import::base(&app.stack.operator_peers(), files.path(), progress).await?
    {
        anyhow::ensure!(
            summary.rejected == 0,
            "{kind:?}: {} generated rows were refused",
            summary.rejected
        );
    }
    let took = started.elapsed().as_secs_f64();
    eprintln!(
        "base: loaded {rows} rows in {took:.0} s ({:.0} rows/s)",
        rows as f64 / took
    );
    // A base that has lived a while has statistics and a visibility map
    // (autovacuum keeps both); one loaded a minute ago has neither, and
    // its first plans would be a bulk load's, not a service's.
    let started = Instant::now();
    let db = app.db().await;
    sqlx::query("VACUUM ANALYZE").execute(&db).await?;
    db.close().await;
    eprintln!(
        "base: vacuumed and analyzed in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    if external.is_none() {
        std::fs::write(&marker, config.as_of.to_string())?;
    }
    Ok(Base {
        app,
        config,
        loaded_now: true,
    })
}

impl Base {
    /// Waits until the work the load set off is done: ingestion's notices
    /// delivered, renewals' subscription queue empty, and health's rescore
    /// queue too once there is a scorecard to score with (without one,
    /// health keeps the accounts queued), so that a measurement runs on a
    /// quiet stack.
    pub async fn settle(&self) -> anyhow::Result<()> {
        let db = self.app.db().await;
        let started = Instant::now();
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT (SELECT count(*) FROM ingestion.outbox WHERE delivered_at IS NULL AND dead_at IS NULL) \
                      + (SELECT count(*) FROM health.rescore_queue \
                         WHERE EXISTS (SELECT 1 FROM health.scorecards)) \
                      + (SELECT count(*) FROM renewals.subscription_queue)",
            )
            .fetch_one(&db)
            .await?;
            if waiting == 0 && idle_for(&db, std::time::Duration::from_secs(3)).await? {
                break;
            }
            if started.elapsed().as_secs() % 30 == 0 {
                eprintln!("base: waiting for {waiting} queued changes to be worked off");
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
        db.close().await;
        Ok(())
    }
}

/// This machine's memory in MiB, from `/proc/meminfo`.
fn memory_mib() -> Option<u32> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = info
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    u32::try_from(kib / 1024).ok()
}

/// Whether no other session runs a statement during `span` (a daily pass a
/// service starts on its own is not in any queue), sampled ten times.
async fn idle_for(db: &sqlx::PgPool, span: std::time::Duration) -> anyhow::Result<bool> {
    for _ in 0..10 {
        let busy: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )
        .fetch_one(db)
        .await?;
        if busy > 0 {
            return Ok(false);
        }
        tokio::time::sleep(span / 10).await;
    }
    Ok(true)
}

/// Creates the scorecard the benches score a base with: six measures over
/// usage, support, the renewal date and surveys, each rising linearly from
/// its worst value to its best. The same name each run: a later run over a
/// kept base finds it there already.
pub async fn create_bench_scorecard(app: &mut TestStack) {
    let request = tenure_proto::health::v1::CreateScorecardRequest {
        request_id: String::new(),
        scorecard: Some(bench_scorecard()),
    };
    let _ = app.health.create_scorecard(request).await;
}

/// The scorecard [`create_bench_scorecard`] creates.
pub fn bench_scorecard() -> tenure_proto::health::v1::Scorecard {
    use tenure_proto::health::v1 as hpb;
    let linear = |signal: &str, worst: f64, best: f64| hpb::Measure {
        name: signal.into(),
        signal: signal.into(),
        weight: 1.0,
        rule: Some(hpb::measure::Rule::Linear(hpb::LinearRule { worst, best })),
    };
    hpb::Scorecard {
        name: "default".into(),
        groups: vec![hpb::MeasureGroup {
            name: "All".into(),
            measures: vec![
                linear("license_utilization_pct", 20.0, 80.0),
                linear("active_users_30d", 0.0, 20.0),
                linear("open_tickets_p1", 3.0, 0.0),
                linear("open_tickets_p2", 5.0, 0.0),
                linear("days_to_renewal", 0.0, 180.0),
                linear("latest_nps", 0.0, 10.0),
            ],
        }],
        ..Default::default()
    }
}
