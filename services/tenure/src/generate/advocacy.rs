//! Advocacy: what healthy customers do for the vendor. A year of a spell in
//! which no churn driver appeared brings a reference 150 days in, and, for
//! enterprise accounts from their second year, a case study 200 days in;
//! every sixth account was referred by the nearest account before it that
//! was a customer a month before it started. Nothing here draws from a
//! random stream, so adding advocacy changed no other file of a base.

use chrono::{Days, NaiveDate};
use serde_json::json;

use super::config::Config;
use super::life::{Life, at};
use super::out::{Files, time};
use super::plan::{Plan, Tier};
use crate::import::Kind;

/// A spell as a customer: its first day and the day it ended, if it did.
type Spell = (NaiveDate, Option<NaiveDate>);

/// Every account written so far with its spells, to find who referred a
/// later one.
#[derive(Default)]
pub(super) struct Customers {
    seen: Vec<(String, Vec<Spell>)>,
}

/// How far back a referrer is looked for.
const REFERRERS: usize = 50;

impl Customers {
    /// The nearest account before this one that was a customer on `day`.
    fn referrer_on(&self, day: NaiveDate) -> Option<&str> {
        self.seen
            .iter()
            .rev()
            .take(REFERRERS)
            .find(|(_, spells)| {
                spells
                    .iter()
                    .any(|(start, end)| *start <= day && end.is_none_or(|e| day < e))
            })
            .map(|(id, _)| id.as_str())
    }
}

pub(super) fn write(
    files: &mut Files,
    config: &Config,
    plan: &Plan,
    life: &Life,
    customers: &mut Customers,
) -> anyhow::Result<()> {
    let mut row = |id: String, account: &str, kind: &str, on: NaiveDate, referred: &str| {
        if on > config.as_of {
            return Ok(());
        }
        files.row(
            Kind::Advocacy,
            &json!({
                "activity_id": id,
                "account_id": account,
                "kind": kind,
                "occurred_at": time(at(on, 15)),
                "referred_account_id": referred,
                "updated_at": time(at(on, 16)),
            }),
        )
    };
    for (n, spell) in life.spells.iter().enumerate() {
        for (year, epoch) in spell.epochs.iter().enumerate() {
            if epoch.drivers.iter().any(Option::is_some) {
                continue;
            }
            let within = |days| {
                let on = epoch.start + Days::new(days);
                (on < epoch.end && spell.end.is_none_or(|e| on < e)).then_some(on)
            };
            if let Some(on) = within(150) {
                row(
                    format!("{}-s{n}-y{year}-reference", plan.id),
                    &plan.id,
                    "reference",
                    on,
                    "",
                )?;
            }
            if plan.tier == Tier::Enterprise
                && year > 0
                && let Some(on) = within(200)
            {
                row(
                    format!("{}-s{n}-y{year}-case", plan.id),
                    &plan.id,
                    "case_study",
                    on,
                    "",
                )?;
            }
        }
    }
    if let Some(first) = life.spells.first()
        && plan.index % 6 == 5
        && let Some(day) = first.start.checked_sub_days(Days::new(30))
        && let Some(referrer) = customers.referrer_on(day)
    {
        let referrer = referrer.to_owned();
        row(
            format!("{referrer}-referred-{}", plan.id),
            &referrer,
            "referral",
            day,
            &plan.id,
        )?;
    }
    customers.seen.push((
        plan.id.clone(),
        life.spells.iter().map(|s| (s.start, s.end)).collect(),
    ));
    Ok(())
}
