//! `tenure generate`: a deterministic, seeded customer base of a SaaS
//! company, written as the files `tenure import` loads.
//!
//! Accounts come in three touch tiers (tech-touch, mid-market, enterprise)
//! with their own ARR ranges, term lengths (most small accounts pay monthly)
//! and coverage; some enterprise accounts are children of a parent, some
//! accounts pay in euros. Each account's life is simulated from its signup
//! to the as-of date: terms renew, expand, contract, cancel mid-term, lapse
//! and come back after a gap; contacts take and leave the sponsor and
//! champion roles; users work in weekly, weekday-heavy sessions after an
//! onboarding ramp; tickets, NPS responses, invoices, external signals and
//! success-plan metrics accompany them.
//!
//! Churn is caused by a few hidden drivers ([`truth::DRIVERS`], and in an
//! account's first year [`truth::ONBOARDING`]) plus noise the data does not
//! show. Each driver leaves traces in the data before the
//! renewal it endangers, so a model that reads the signals can find them and
//! a blind one cannot. `truth.json` and `truth.jsonl` record the drivers,
//! their true log-odds and every renewal's true churn probability
//! ([`answers`]).
//!
//! The same configuration and seed always write the same bytes.

mod activity;
mod advocacy;
mod answers;
mod config;
mod life;
mod out;
mod plan;
pub mod truth;

use std::path::Path;

use anyhow::Context as _;
use chrono::NaiveDate;
use rand::SeedableRng as _;
use rand_chacha::ChaCha8Rng;

pub use config::Config;
pub use out::Counts;

/// The default as-of date: yesterday (UTC), so that nothing generated lies
/// in the future of the services that load it.
pub fn yesterday() -> NaiveDate {
    chrono::Utc::now().date_naive() - chrono::Days::new(1)
}

/// Writes a base into `dir` (created when missing) and returns how many
/// rows of each kind it wrote.
pub fn write(config: &Config, dir: &Path) -> anyhow::Result<Counts> {
    anyhow::ensure!(config.accounts > 0, "--accounts must be at least 1");
    anyhow::ensure!(
        (1..=10).contains(&config.years),
        "--years must be between 1 and 10"
    );
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = out::Files::create(dir)?;
    activity::write_features(&mut files, config)?;
    let mut master = ChaCha8Rng::seed_from_u64(config.seed);
    let plans = plan::plans(config, &mut master);
    let mut truth = answers::Truth::new(config);
    let mut customers = advocacy::Customers::default();
    for plan in &plans {
        // Each account draws from its own stream, so its history does not
        // depend on how many accounts came before it.
        let mut rng = ChaCha8Rng::seed_from_u64(
            config.seed ^ (plan.index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        let life = life::simulate(config, plan, &mut rng);
        life::write(&mut files, config, plan, &life)?;
        activity::write(&mut files, config, plan, &life, &mut rng)?;
        advocacy::write(&mut files, config, plan, &life, &mut customers)?;
        truth.record(plan, &life);
    }
    truth.write(dir, files.counts())?;
    files.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::Kind;

    fn base(seed: u64, dir: &Path) -> Counts {
        let config = Config {
            accounts: 60,
            years: 2,
            seed,
            as_of: NaiveDate::from_ymd_opt(2026, 6, 30).unwrap(),
        };
        write(&config, dir).unwrap()
    }

    fn read(dir: &Path, name: &str) -> String {
        std::fs::read_to_string(dir.join(name)).unwrap()
    }

    #[test]
    fn the_same_seed_writes_the_same_bytes() {
        let (a, b, c) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let counts = base(7, a.path());
        assert_eq!(base(7, b.path()), counts);
        base(8, c.path());
        for (_, name) in crate::import::BASE_FILES
            .iter()
            .chain([&(Kind::Events, "truth.jsonl")])
        {
            assert_eq!(read(a.path(), name), read(b.path(), name), "{name}");
        }
        assert_ne!(
            read(a.path(), "subscriptions.jsonl"),
            read(c.path(), "subscriptions.jsonl")
        );
        assert!(counts[&Kind::Accounts] >= 60);
        assert!(counts[&Kind::Events] > 1000, "{counts:?}");
    }

    #[test]
    fn nothing_is_dated_after_the_as_of_day() {
        let dir = tempfile::tempdir().unwrap();
        base(3, dir.path());
        let end = "2026-07-01";
        for (_, name) in crate::import::BASE_FILES {
            for line in read(dir.path(), name).lines() {
                let row: serde_json::Value = serde_json::from_str(line).unwrap();
                for field in [
                    "updated_at",
                    "occurred_at",
                    "opened_at",
                    "closed_at",
                    "responded_at",
                    "decided_on",
                    "paid_on",
                ] {
                    if let Some(text) = row[field].as_str() {
                        assert!(text < end, "{name}: {field} {text} after the as-of day");
                    }
                }
            }
        }
    }

    #[test]
    fn subscription_versions_of_each_subscription_move_forward_in_time() {
        let dir = tempfile::tempdir().unwrap();
        base(5, dir.path());
        let mut last: std::collections::HashMap<String, String> = Default::default();
        let mut statuses = std::collections::BTreeSet::new();
        for line in read(dir.path(), "subscriptions.jsonl").lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let id = row["subscription_id"].as_str().unwrap().to_owned();
            let at = row["updated_at"].as_str().unwrap().to_owned();
            statuses.insert(row["status"].as_str().unwrap().to_owned());
            if let Some(before) = last.insert(id.clone(), at.clone()) {
                assert!(before < at, "{id}: {before} then {at}");
            }
        }
        assert!(
            statuses.contains("canceled") && statuses.contains("active"),
            "{statuses:?}"
        );
    }
}
