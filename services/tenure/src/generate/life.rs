//! One account's commercial life: spells of paying (a first one from signup,
//! another after a reactivation), year-long epochs in which the hidden
//! drivers appear, terms that renew, expand, contract, cancel mid-term or
//! lapse, and the renewal outcomes a CSM would record for yearly terms.

use chrono::{DateTime, Days, Months, NaiveDate, Utc};
use rand::Rng as _;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, Normal};
use serde_json::json;

use super::config::Config;
use super::out::{Files, day, time};
use super::plan::Plan;
use super::truth::{DRIVERS, Driver, ONBOARDING};
use crate::import::Kind;

/// A year of a spell and the drivers that appeared in it, with the day each
/// became visible in the data.
#[derive(Clone, Debug)]
pub(super) struct Epoch {
    pub(super) start: NaiveDate,
    pub(super) end: NaiveDate,
    pub(super) drivers: [Option<NaiveDate>; DRIVERS.len()],
    /// What moves churn beyond the drivers and the data never shows.
    pub(super) noise: f64,
    /// A sponsor leaving and a successor arriving, with no risk to the
    /// renewal (ordinary turnover).
    pub(super) turnover: Option<NaiveDate>,
}

impl Epoch {
    pub(super) fn has(&self, driver: Driver, on: NaiveDate) -> bool {
        self.drivers[driver as usize].is_some_and(|d| d <= on)
    }

    /// Whether this is the first year of an account whose onboarding
    /// stalled.
    pub(super) fn stalled(&self, plan: &Plan) -> bool {
        plan.stalled_onboarding && self.start == plan.signup
    }

    /// The true yearly churn probability of a renewal decided on `on`.
    pub(super) fn churn_probability(&self, plan: &Plan, on: NaiveDate) -> f64 {
        let mut log_odds = plan.tier.base_log_odds() + self.noise;
        if self.stalled(plan) {
            log_odds += ONBOARDING.log_odds;
        }
        for driver in DRIVERS {
            if self.has(driver.driver, on) {
                log_odds += driver.log_odds;
            }
        }
        1.0 / (1.0 + (-log_odds).exp())
    }
}

/// One stored state of a subscription.
#[derive(Clone, Debug)]
pub(super) struct Version {
    pub(super) subscription_id: String,
    pub(super) status: &'static str,
    pub(super) term_start: NaiveDate,
    pub(super) term_end: NaiveDate,
    pub(super) arr_minor: i64,
    pub(super) seats: u32,
    pub(super) updated_at: DateTime<Utc>,
}

/// A yearly renewal, decided or still open on the as-of date.
#[derive(Clone, Debug)]
pub(super) struct Decision {
    pub(super) subscription_id: String,
    pub(super) term_end: NaiveDate,
    pub(super) probability: f64,
    pub(super) drivers: Vec<&'static str>,
    /// `None` while open.
    pub(super) outcome: Option<Outcome>,
}

#[derive(Clone, Debug)]
pub(super) struct Outcome {
    pub(super) decided_on: NaiveDate,
    pub(super) previous_arr: i64,
    pub(super) new_arr: i64,
    pub(super) reason: &'static str,
}

/// A time the account paid: from `start` to `end` (exclusive; `None` while
/// it still pays on the as-of date).
#[derive(Clone, Debug)]
pub(super) struct Spell {
    pub(super) start: NaiveDate,
    pub(super) end: Option<NaiveDate>,
    pub(super) epochs: Vec<Epoch>,
    /// Seats bought, by the day they changed.
    pub(super) seats: Vec<(NaiveDate, u32)>,
}

#[derive(Clone, Debug, Default)]
pub(super) struct Life {
    pub(super) versions: Vec<Version>,
    pub(super) decisions: Vec<Decision>,
    pub(super) spells: Vec<Spell>,
}

impl Life {
    /// The epoch a day falls in.
    pub(super) fn epoch_on(&self, on: NaiveDate) -> Option<&Epoch> {
        self.spells
            .iter()
            .flat_map(|s| &s.epochs)
            .find(|e| e.start <= on && on < e.end)
    }
}

pub(super) fn at(on: NaiveDate, hour: u32) -> DateTime<Utc> {
    on.and_hms_opt(hour.min(23), 0, 0)
        .unwrap_or_default()
        .and_utc()
}

fn round_price(arr_minor: f64) -> i64 {
    ((arr_minor / 1200.0).round() as i64).max(1) * 1200
}

fn draw_epoch(rng: &mut ChaCha8Rng, start: NaiveDate) -> Epoch {
    let mut drivers = [None; DRIVERS.len()];
    for (slot, driver) in drivers.iter_mut().zip(DRIVERS) {
        if rng.random_bool(driver.share) {
            let (from, to) = driver.appears;
            *slot = Some(start + Days::new(rng.random_range(from..=to)));
        }
    }
    let noise = Normal::new(0.0, 0.5).map_or(0.0, |n| n.sample(rng));
    let turnover = rng
        .random_bool(0.06)
        .then(|| start + Days::new(rng.random_range(30..=300)));
    Epoch {
        start,
        end: start + Days::new(365),
        drivers,
        noise,
        turnover,
    }
}

/// Simulates the account from its signup to the end of `config.as_of`.
pub(super) fn simulate(config: &Config, plan: &Plan, rng: &mut ChaCha8Rng) -> Life {
    let mut life = Life::default();
    let mut start = plan.signup;
    let mut arr = plan.arr_minor;
    let mut seats = plan.seats;
    for spell_number in 1.. {
        let subscription_id = format!("{}-sub-{spell_number}", plan.id);
        let ended = simulate_spell(
            config,
            plan,
            rng,
            &mut life,
            &subscription_id,
            start,
            arr,
            seats,
        );
        let Some(ended) = ended else { break };
        // Some come back after a gap, a little smaller or larger.
        if !rng.random_bool(0.15) {
            break;
        }
        let back = ended + Days::new(rng.random_range(60..=240));
        if back > config.as_of {
            break;
        }
        start = back;
        arr = round_price(arr as f64 * rng.random_range(0.7..1.1));
        seats = ((f64::from(seats) * rng.random_range(0.7..1.1)).round() as u32).max(1);
    }
    life
}

/// One spell of paying; returns the day it ended, if it did.
#[allow(clippy::too_many_arguments)]
fn simulate_spell(
    config: &Config,
    plan: &Plan,
    rng: &mut ChaCha8Rng,
    life: &mut Life,
    subscription_id: &str,
    start: NaiveDate,
    mut arr: i64,
    mut seats: u32,
) -> Option<NaiveDate> {
    let as_of = config.as_of;
    let months = if plan.monthly { 1 } else { 12 };
    let mut spell = Spell {
        start,
        end: None,
        epochs: Vec::new(),
        seats: vec![(start, seats)],
    };
    let mut term_start = start;
    let mut term_end = start + Months::new(months);
    let mut booked = at(start, rng.random_range(8..18));
    let push = |life: &mut Life, status, term_start, term_end, arr, seats, updated_at| {
        life.versions.push(Version {
            subscription_id: subscription_id.to_owned(),
            status,
            term_start,
            term_end,
            arr_minor: arr,
            seats,
            updated_at,
        });
    };
    push(life, "active", term_start, term_end, arr, seats, booked);
    loop {
        let epoch_index = spell.epochs.len();
        if term_start >= start + Days::new(365 * epoch_index as u64) {
            let epoch_start = start + Days::new(365 * epoch_index as u64);
            spell.epochs.push(draw_epoch(rng, epoch_start));
        }
        let epoch = spell
            .epochs
            .last()
            .cloned()
            .unwrap_or_else(|| draw_epoch(rng, start));
        let probability = epoch.churn_probability(plan, term_end - Days::new(1));
        let troubled = DRIVERS.iter().any(|d| epoch.has(d.driver, term_end));
        // Yearly terms may change size mid-term.
        if !plan.monthly && !troubled && rng.random_bool(0.15) {
            let on = term_start + Days::new(rng.random_range(90..=300));
            if on <= as_of && on < term_end {
                arr = round_price(arr as f64 * rng.random_range(1.1..1.3));
                seats = ((f64::from(seats) * 1.2).round() as u32).max(seats + 1);
                spell.seats.push((on, seats));
                push(life, "active", term_start, term_end, arr, seats, at(on, 11));
            }
        }
        let decision_probability = if plan.monthly {
            1.0 - (1.0 - probability).powf(1.0 / 12.0)
        } else {
            probability
        };
        let churns = rng.random_bool(decision_probability.clamp(0.0, 1.0));
        let drivers: Vec<&'static str> = DRIVERS
            .iter()
            .filter(|d| epoch.has(d.driver, term_end))
            .map(|d| d.name)
            .chain(epoch.stalled(plan).then_some(ONBOARDING.name))
            .collect();
        let decided_on = if plan.monthly {
            term_end - Days::new(rng.random_range(1..=10))
        } else {
            term_end - Days::new(rng.random_range(0..=25))
        };
        if term_end > as_of || decided_on > as_of {
            if !plan.monthly {
                life.decisions.push(Decision {
                    subscription_id: subscription_id.to_owned(),
                    term_end,
                    probability,
                    drivers,
                    outcome: None,
                });
            }
            break;
        }
        if churns {
            // A quarter of yearly churners cancel mid-term; the rest let the
            // term run out. Monthly customers cancel before the next month.
            let mid_term = !plan.monthly && rng.random_bool(0.25);
            let (status, on) = if mid_term {
                ("canceled", term_end - Days::new(rng.random_range(30..=120)))
            } else if plan.monthly {
                ("canceled", decided_on)
            } else {
                ("expired", term_end)
            };
            let on = on.max(term_start);
            push(life, status, term_start, term_end, arr, seats, at(on, 9));
            if !plan.monthly {
                life.decisions.push(Decision {
                    subscription_id: subscription_id.to_owned(),
                    term_end,
                    probability,
                    drivers: drivers.clone(),
                    outcome: Some(Outcome {
                        decided_on: decided_on.min(on),
                        previous_arr: arr,
                        new_arr: 0,
                        reason: churn_reason(&drivers, rng),
                    }),
                });
            }
            let ended = if mid_term { on } else { term_end };
            spell.end = Some(ended);
            life.spells.push(spell);
            return Some(ended);
        }
        // Renewed: the size may change with it.
        let previous = arr;
        let ratio = if troubled && rng.random_bool(if plan.monthly { 0.03 } else { 0.25 }) {
            rng.random_range(0.6..0.9)
        } else if !troubled && rng.random_bool(if plan.monthly { 0.02 } else { 0.3 }) {
            rng.random_range(1.1..1.5)
        } else if !plan.monthly && rng.random_bool(0.2) {
            1.05
        } else {
            1.0
        };
        if ratio != 1.0 {
            arr = round_price(arr as f64 * ratio);
            seats = ((f64::from(seats) * ratio).round() as u32).max(1);
            spell.seats.push((term_end, seats));
        }
        if !plan.monthly {
            life.decisions.push(Decision {
                subscription_id: subscription_id.to_owned(),
                term_end,
                probability,
                drivers: drivers.clone(),
                outcome: Some(Outcome {
                    decided_on,
                    previous_arr: previous,
                    new_arr: arr,
                    reason: if arr < previous {
                        churn_reason(&drivers, rng)
                    } else {
                        ""
                    },
                }),
            });
        }
        term_start = term_end;
        term_end = term_start + Months::new(months);
        booked = if plan.monthly {
            at(term_start, 1)
        } else {
            at(decided_on, rng.random_range(8..18))
        };
        push(life, "active", term_start, term_end, arr, seats, booked);
    }
    life.spells.push(spell);
    None
}

/// What a CSM records as the reason revenue was lost.
fn churn_reason(drivers: &[&'static str], rng: &mut ChaCha8Rng) -> &'static str {
    match drivers.first() {
        Some(&"lost_sponsor") => "lost_sponsor",
        Some(&"unresolved_p1_defects") => "support",
        Some(&"falling_advanced_adoption") => "product_gap",
        Some(&"late_invoices") => "budget_cut",
        Some(&"stalled_onboarding") => "product_gap",
        _ => ["price", "competitor", "other", "business_closed"][rng.random_range(0..4)],
    }
}

/// Writes the account, its subscription versions and its outcomes.
pub(super) fn write(
    files: &mut Files,
    config: &Config,
    plan: &Plan,
    life: &Life,
) -> anyhow::Result<()> {
    let account = |stage: &str, on: NaiveDate| {
        json!({
            "account_id": plan.id,
            "name": plan.name,
            "segment": plan.tier.segment(),
            "industry": plan.industry,
            "owner": plan.owner,
            "parent_account_id": plan.parent.clone().unwrap_or_default(),
            "lifecycle_stage": stage,
            "updated_at": time(at(on, 0)),
            "attributes": { "employees": plan.employees, "billing": if plan.monthly { "monthly" } else { "annual" } },
        })
    };
    files.row(Kind::Accounts, &account("onboarding", plan.signup))?;
    let adopted = plan.signup + Days::new(90);
    let ended = life.spells.last().and_then(|s| s.end);
    if adopted <= config.as_of && ended.is_none_or(|e| adopted < e) {
        files.row(Kind::Accounts, &account("adopting", adopted))?;
    }
    if let Some(ended) = ended.filter(|e| *e <= config.as_of) {
        files.row(
            Kind::Accounts,
            &account("churned", ended.max(plan.signup + Days::new(1))),
        )?;
    }
    for version in &life.versions {
        let arr = json!(version.arr_minor);
        files.row(
            Kind::Subscriptions,
            &json!({
                "subscription_id": version.subscription_id,
                "account_id": plan.id,
                "status": version.status,
                "term_start": day(version.term_start),
                "term_end": day(version.term_end),
                "arr_minor": arr,
                "currency": plan.currency,
                "seats": version.seats,
                "auto_renew": plan.monthly,
                "updated_at": time(version.updated_at),
            }),
        )?;
    }
    for decision in &life.decisions {
        let Some(outcome) = &decision.outcome else {
            continue;
        };
        let kind = if outcome.new_arr == 0 {
            "churned"
        } else if outcome.new_arr < outcome.previous_arr {
            "partially_renewed"
        } else {
            "renewed"
        };
        files.row(
            Kind::Outcomes,
            &json!({
                "account_id": plan.id,
                "subscription_id": decision.subscription_id,
                "term_end_date": day(decision.term_end),
                "kind": kind,
                "previous_arr_minor": outcome.previous_arr,
                "new_arr_minor": outcome.new_arr,
                "currency": plan.currency,
                "churn_reason": outcome.reason,
                "decided_on": day(outcome.decided_on),
            }),
        )?;
    }
    Ok(())
}
