//! The hidden causes of churn, and the side files that record them:
//! `truth.json` (the drivers, their log-odds, the base rates) and
//! `truth.jsonl` (every yearly renewal with the drivers present, its true
//! churn probability and what happened), so tests can hold what Tenure
//! learns against the truth.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde_json::json;

use super::Config;
use super::life::Life;
use super::out::{Counts, day};
use super::plan::{Plan, Tier};

/// A hidden driver of churn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    FallingAdvancedAdoption,
    LostSponsor,
    UnresolvedP1Defects,
    LateInvoices,
}

/// A driver, how often it strikes and how the data shows it.
#[derive(Clone, Copy, Debug)]
pub struct DriverSpec {
    pub driver: Driver,
    pub name: &'static str,
    /// Chance it appears in a given year of an account's life.
    pub share: f64,
    /// Days after the year's start within which it appears: early enough to
    /// be visible in the signals 90 days before the renewal it endangers.
    pub appears: (u64, u64),
    /// What it adds to the log-odds of churn at the renewal.
    pub log_odds: f64,
    /// The account signals it shows in.
    pub signals: &'static [&'static str],
}

pub const DRIVERS: [DriverSpec; 4] = [
    DriverSpec {
        driver: Driver::FallingAdvancedAdoption,
        name: "falling_advanced_adoption",
        share: 0.15,
        appears: (30, 200),
        log_odds: 1.8,
        signals: &[
            "advanced_features_used_30d",
            "usage_trend_pct",
            "active_users_30d",
        ],
    },
    DriverSpec {
        driver: Driver::LostSponsor,
        name: "lost_sponsor",
        share: 0.10,
        appears: (190, 265),
        log_odds: 1.6,
        signals: &["sponsor_changed_90d"],
    },
    DriverSpec {
        driver: Driver::UnresolvedP1Defects,
        name: "unresolved_p1_defects",
        share: 0.10,
        appears: (60, 250),
        log_odds: 1.2,
        signals: &["open_tickets_p1", "defect_share_pct"],
    },
    DriverSpec {
        driver: Driver::LateInvoices,
        name: "late_invoices",
        share: 0.12,
        appears: (30, 150),
        log_odds: 1.0,
        signals: &["max_days_overdue", "overdue_amounts"],
    },
];

/// The first-year driver: an onboarding that stalled. Few of the account's
/// users ever take up the product in its first half year, none of them its
/// advanced features, and its first renewal is at risk. It strikes a share
/// of accounts chosen by a hash of the seed and the account rather than
/// from a random stream, so adding it changed no account it spared.
pub struct OnboardingSpec {
    pub name: &'static str,
    pub share: f64,
    /// Days from the first paid day that usage stays low.
    pub stalled_days: u64,
    /// What it adds to the log-odds of churn in the first year.
    pub log_odds: f64,
    pub signals: &'static [&'static str],
}

pub const ONBOARDING: OnboardingSpec = OnboardingSpec {
    name: "stalled_onboarding",
    share: 0.2,
    stalled_days: 180,
    log_odds: 1.4,
    signals: &[
        "active_users_30d",
        "license_utilization_pct",
        "advanced_features_used_30d",
    ],
};

/// Whether account `index` of a base seeded `seed` stalled in onboarding.
pub(super) fn stalled(seed: u64, index: usize) -> bool {
    let mut x = seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED_0B0A_4D16_0001;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 32;
    (x % 1_000_000) as f64 / 1_000_000.0 < ONBOARDING.share
}

/// Collects every yearly renewal's truth as accounts are simulated.
pub(super) struct Truth {
    config: Config,
    rows: Vec<serde_json::Value>,
}

impl Truth {
    pub(super) fn new(config: &Config) -> Self {
        Self {
            config: config.clone(),
            rows: Vec::new(),
        }
    }

    pub(super) fn record(&mut self, plan: &Plan, life: &Life) {
        for decision in &life.decisions {
            self.rows.push(json!({
                "account_id": plan.id,
                "segment": plan.tier.segment(),
                "subscription_id": decision.subscription_id,
                "term_end": day(decision.term_end),
                "churn_probability": decision.probability,
                "drivers": decision.drivers,
                "decided": decision.outcome.is_some(),
                "churned": decision.outcome.as_ref().map(|o| o.new_arr == 0),
            }));
        }
    }

    pub(super) fn write(&self, dir: &Path, counts: &Counts) -> anyhow::Result<()> {
        let path = dir.join("truth.jsonl");
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        for row in &self.rows {
            serde_json::to_writer(&mut out, row)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        let tiers = [Tier::TechTouch, Tier::MidMarket, Tier::Enterprise];
        let summary = json!({
            "seed": self.config.seed,
            "accounts": self.config.accounts,
            "years": self.config.years,
            "as_of": day(self.config.as_of),
            "base_log_odds": tiers
                .iter()
                .map(|t| (t.segment().to_owned(), json!(t.base_log_odds())))
                .collect::<serde_json::Map<_, _>>(),
            "noise_sd": 0.5,
            "drivers": DRIVERS.iter().map(|d| json!({
                "name": d.name,
                "yearly_share": d.share,
                "log_odds": d.log_odds,
                "signals": d.signals,
            })).chain([json!({
                "name": ONBOARDING.name,
                "first_year_share": ONBOARDING.share,
                "log_odds": ONBOARDING.log_odds,
                "signals": ONBOARDING.signals,
            })]).collect::<Vec<_>>(),
            "rows": counts
                .iter()
                .map(|(kind, n)| (format!("{kind:?}").to_lowercase(), json!(n)))
                .collect::<serde_json::Map<_, _>>(),
        });
        let path = dir.join("truth.json");
        std::fs::write(&path, serde_json::to_string_pretty(&summary)? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }
}
