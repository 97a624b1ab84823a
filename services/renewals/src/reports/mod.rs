//! Retention reports: contract and revenue retention for a period and the
//! monthly ledger ([`metrics`]), cohort survival and the sBG model
//! ([`cohorts`]), lifetime value and growth scenarios ([`value`]), each
//! customer's first term ([`first_terms`]). Shared here: how a customer's
//! life is read off the ledger.

mod cohorts;
pub mod first_terms;
mod metrics;
mod value;

use chrono::{Months, NaiveDate};
use tenure_proto::renewals::v1 as pb;

use crate::ledger::{Book, Movements, Ratio, Subscription};
use crate::retention::{self, Life, Renewals};
use crate::views::money;

fn rate(ratio: Ratio) -> Option<pb::Rate> {
    Some(pb::Rate {
        numerator: ratio.numerator,
        denominator: ratio.denominator,
        percent: ratio.percent_text(2),
    })
}

fn movements_to_proto(currency: &str, m: &Movements) -> pb::RevenueMovements {
    let amount = |minor| Some(money(currency, minor));
    pb::RevenueMovements {
        start: amount(m.start),
        new: amount(m.new),
        expansion: amount(m.expansion),
        reactivation: amount(m.reactivation),
        contraction: amount(m.contraction),
        churn: amount(m.churn),
        end: amount(m.end),
    }
}

/// MRR of an ARR, rounded half away from zero to the minor unit.
fn mrr(arr_minor: i64) -> i64 {
    let (q, r) = (arr_minor / 12, arr_minor % 12);
    if 2 * r.abs() >= 12 {
        q + arr_minor.signum()
    } else {
        q
    }
}

/// Cohort periods in months.
fn period_months(period: i32) -> Option<u32> {
    match pb::CohortPeriod::try_from(period).ok()? {
        pb::CohortPeriod::Unspecified | pb::CohortPeriod::Year => Some(12),
        pb::CohortPeriod::Quarter => Some(3),
        pb::CohortPeriod::Month => Some(1),
    }
}

/// Whole periods of `months` from `start` to `day`.
fn whole_periods(start: NaiveDate, day: NaiveDate, months: u32) -> u32 {
    let mut n = 0;
    while let Some(next) = start.checked_add_months(Months::new(months * (n + 1))) {
        if next > day {
            break;
        }
        n += 1;
    }
    n
}

/// Periods of `months` begun from `start` before `day`.
fn periods_begun(start: NaiveDate, day: NaiveDate, months: u32) -> u32 {
    let mut n = 0;
    while let Some(begins) = start.checked_add_months(Months::new(months * n)) {
        if begins >= day {
            break;
        }
        n += 1;
    }
    n
}

/// One customer as the ledger saw it: when it first paid, and the first
/// day after that it paid nothing (if by the as-of day).
#[derive(Clone, Copy, Debug)]
struct Observed {
    start: NaiveDate,
    ended: Option<NaiveDate>,
}

impl Observed {
    /// Its life in time, censored at `as_of` while it still pays.
    fn in_time(&self, as_of: NaiveDate) -> Life {
        Life {
            months: retention::months_between(self.start, self.ended.unwrap_or(as_of)),
            churned: self.ended.is_some(),
        }
    }

    /// Its renewals in periods of `months`: one that stopped paying was
    /// lost at the renewal ending the period it stopped in (a cancellation
    /// mid-term never reaches that renewal); one still paying has made one
    /// renewal per whole period so far and is observed no further.
    fn add_to(&self, renewals: &mut Renewals, as_of: NaiveDate, months: u32) {
        match self.ended {
            Some(day) => renewals.add_lost(periods_begun(self.start, day, months).max(1), 1),
            None => renewals.add_kept(whole_periods(self.start, as_of, months), 1),
        }
    }

    /// Renewals made by `day` (whole periods; for one lost, those it made).
    fn renewals_by(&self, day: NaiveDate, months: u32) -> u32 {
        match self.ended {
            Some(end) if end <= day => periods_begun(self.start, end, months).saturating_sub(1),
            _ => whole_periods(self.start, day, months),
        }
    }
}

/// The start of the period of `months` containing `day` (calendar aligned).
fn period_start(day: NaiveDate, months: u32) -> NaiveDate {
    use chrono::Datelike;
    let month0 = day.month0() / months * months;
    NaiveDate::from_ymd_opt(day.year(), month0 + 1, 1).unwrap_or(day)
}

/// One customer's life as the ledger knows it on `as_of`.
fn observed(subscriptions: &[Subscription], as_of: NaiveDate) -> Option<Observed> {
    let start = subscriptions
        .iter()
        .filter_map(Subscription::first_paid_on)
        .min()?;
    // Revenue only changes on a term boundary or a version's change.
    let mut days: Vec<NaiveDate> = subscriptions
        .iter()
        .flat_map(Subscription::change_days)
        .collect();
    days.retain(|d| *d > start && *d <= as_of);
    days.sort_unstable();
    days.dedup();
    let ended = days
        .into_iter()
        .find(|d| Book::account_arr_on(subscriptions, *d) == 0);
    Some(Observed { start, ended })
}

fn model_to_proto(
    fit: &retention::SbgFit,
    size: f64,
    projection: usize,
    observed: usize,
) -> pb::SbgModel {
    let survival = fit.model.survival(observed + projection);
    pb::SbgModel {
        alpha: fit.model.alpha,
        beta: fit.model.beta,
        log_likelihood: fit.log_likelihood,
        projected_survivors: survival.iter().map(|s| s * size).collect(),
        survival,
        converged: fit.converged,
        iterations: fit.iterations as i32,
        boundary: fit
            .boundary
            .map(|b| b.reason().to_owned())
            .unwrap_or_default(),
    }
}
