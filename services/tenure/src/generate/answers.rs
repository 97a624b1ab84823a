//! The side files that record the truth of a base: `truth.json` (the
//! drivers, their log-odds, the base rates) and `truth.jsonl` (every yearly
//! renewal with the drivers present, its true churn probability and what
//! happened), so tests can hold what Tenure learns against the truth.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use serde_json::json;

use super::config::Config;
use super::life::Life;
use super::out::{Counts, day};
use super::plan::{Plan, Tier};
use super::truth::{DRIVERS, ONBOARDING};

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
