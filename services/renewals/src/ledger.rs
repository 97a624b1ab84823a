//! Recurring revenue over time, from the versions of subscriptions: how much
//! each account paid on any day, and the movements (new, expansion,
//! reactivation, contraction, churn) that explain the change between two
//! days. Integer minor units throughout, so every movement adds up exactly.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

/// A subscription's state as the source reported it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i16)]
pub enum Status {
    Trial = 1,
    Active = 2,
    Canceled = 3,
    Expired = 4,
}

impl Status {
    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            1 => Some(Self::Trial),
            2 => Some(Self::Active),
            3 => Some(Self::Canceled),
            4 => Some(Self::Expired),
            _ => None,
        }
    }

    /// Still heading for a renewal (paying or trialling).
    pub fn is_live(self) -> bool {
        matches!(self, Self::Trial | Self::Active)
    }
}

/// One version of a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub subscription_id: String,
    pub account_id: String,
    pub updated_at: DateTime<Utc>,
    pub status: Status,
    pub term_start: NaiveDate,
    pub term_end: NaiveDate,
    pub currency: String,
    pub arr_minor: i64,
}

/// The versions of one subscription, in source order, each with the day it
/// took effect.
#[derive(Clone, Debug, Default)]
pub struct Subscription {
    versions: Vec<(NaiveDate, Version)>,
}

impl Subscription {
    /// `versions` in any order. A version takes effect on the day the source
    /// changed it, except one that opens a new term (the first version, or a
    /// renewal whose term starts at or after the previous term's end): that
    /// one takes effect when its term starts, so a backfilled term counts
    /// from its start and an early-booked renewal leaves the running term
    /// paying until it ends.
    pub fn new(mut versions: Vec<Version>) -> Self {
        versions.sort_by_key(|v| v.updated_at);
        let mut dated = Vec::with_capacity(versions.len());
        let mut previous_end: Option<NaiveDate> = None;
        for version in versions {
            let changed_on = version.updated_at.date_naive();
            let opens_term = previous_end.is_none_or(|end| version.term_start >= end);
            let effective = if opens_term {
                version.term_start
            } else {
                changed_on
            };
            previous_end = Some(version.term_end);
            dated.push((effective, version));
        }
        // The latest-changed version wins among those in effect on a day.
        Self { versions: dated }
    }

    /// The version in force on `day`, if any took effect by then.
    pub fn version_on(&self, day: NaiveDate) -> Option<&Version> {
        self.versions
            .iter()
            .rev()
            .find(|(effective, _)| *effective <= day)
            .map(|(_, v)| v)
    }

    /// Annual recurring revenue on `day`: an active subscription inside its
    /// term pays its ARR; trials, cancelled, expired and lapsed ones pay none.
    pub fn arr_on(&self, day: NaiveDate) -> i64 {
        match self.version_on(day) {
            Some(v) if v.status == Status::Active && v.term_start <= day && day < v.term_end => {
                v.arr_minor
            }
            _ => 0,
        }
    }

    /// Whether it paid anything on any day before `day`.
    pub fn paid_before(&self, day: NaiveDate) -> bool {
        self.versions.iter().any(|(effective, v)| {
            v.status == Status::Active && v.arr_minor > 0 && *effective < day && v.term_start < day
        })
    }

    /// The days its versions took effect, and the ends of their terms.
    pub fn change_days(&self) -> impl Iterator<Item = NaiveDate> + '_ {
        self.versions
            .iter()
            .flat_map(|(effective, v)| [*effective, v.term_end])
    }

    pub fn latest(&self) -> Option<&Version> {
        self.versions.last().map(|(_, v)| v)
    }

    /// First day it paid, if it ever did.
    pub fn first_paid_on(&self) -> Option<NaiveDate> {
        self.versions
            .iter()
            .filter(|(_, v)| v.status == Status::Active && v.arr_minor > 0)
            .map(|(effective, v)| (*effective).max(v.term_start))
            .min()
    }
}

/// The subscriptions of each account.
#[derive(Clone, Debug, Default)]
pub struct Book {
    pub accounts: BTreeMap<String, Vec<Subscription>>,
}

impl Book {
    /// Groups versions by account and subscription.
    pub fn from_versions(versions: impl IntoIterator<Item = Version>) -> Self {
        let mut by_subscription: BTreeMap<(String, String), Vec<Version>> = BTreeMap::new();
        for version in versions {
            by_subscription
                .entry((version.account_id.clone(), version.subscription_id.clone()))
                .or_default()
                .push(version);
        }
        let mut accounts: BTreeMap<String, Vec<Subscription>> = BTreeMap::new();
        for ((account, _), versions) in by_subscription {
            accounts
                .entry(account)
                .or_default()
                .push(Subscription::new(versions));
        }
        Self { accounts }
    }

    pub fn account_arr_on(subscriptions: &[Subscription], day: NaiveDate) -> i64 {
        subscriptions.iter().map(|s| s.arr_on(day)).sum()
    }

    /// Total ARR on `day`.
    pub fn arr_on(&self, day: NaiveDate) -> i64 {
        self.accounts
            .values()
            .map(|subs| Self::account_arr_on(subs, day))
            .sum()
    }

    /// The movements between `start` and `end`, by account.
    pub fn movements(&self, start: NaiveDate, end: NaiveDate) -> Movements {
        let mut m = Movements::default();
        for subscriptions in self.accounts.values() {
            let before = Self::account_arr_on(subscriptions, start);
            let after = Self::account_arr_on(subscriptions, end);
            m.add(
                before,
                after,
                subscriptions.iter().any(|s| s.paid_before(start)),
            );
        }
        m
    }

    /// The movements of a period as METRICS.md defines them: per account
    /// and per calendar month (from the eve of `start` to the eve of each
    /// month's end, the last cut at `end`), then summed; start and end are
    /// the period's own. The netted-once figures of the whole period are
    /// kept for the retention of the accounts paying at its start.
    pub fn period(&self, start: NaiveDate, end: NaiveDate) -> Period {
        let mut cuts = vec![start];
        cuts.extend(
            month_starts(start, end)
                .into_iter()
                .filter_map(|m| m.checked_add_months(chrono::Months::new(1)))
                .filter(|m| *m > start && *m < end),
        );
        cuts.push(end);
        let mut flows = Movements::default();
        for pair in cuts.windows(2) {
            flows.add_flows(&self.movements(before(pair[0]), before(pair[1])));
        }
        let whole = self.movements(before(start), before(end));
        flows.start = whole.start;
        flows.end = whole.end;
        Period {
            flows,
            retention: whole,
        }
    }
}

/// Revenue "at the start" of a period is what was paid on its eve, and "at
/// the end" what was paid on its last day: a contract starting on the first
/// of a month is that month's new business, one ending on the first
/// (exclusive) is that month's churn.
pub fn before(day: NaiveDate) -> NaiveDate {
    day.pred_opt().unwrap_or(day)
}

/// A period's figures: movements summed month by month, and the period
/// netted once (for GRR, NRR and logo retention of the starting accounts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Period {
    pub flows: Movements,
    pub retention: Movements,
}

/// What moved recurring revenue between two days. `start + new + expansion
/// + reactivation - contraction - churn == end`, exactly.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Movements {
    pub start: i64,
    pub new: i64,
    pub expansion: i64,
    pub reactivation: i64,
    pub contraction: i64,
    pub churn: i64,
    pub end: i64,
    /// Accounts paying at the start, and of those still paying at the end.
    pub logos_start: i64,
    pub logos_retained: i64,
    pub logos_end: i64,
}

impl Movements {
    /// Adds one account that paid `before` and then `after`; `paid_earlier`
    /// tells a returning customer from a new one.
    pub fn add(&mut self, before: i64, after: i64, paid_earlier: bool) {
        // Money sums saturate rather than wrap: no book comes near i64, and
        // a saturated figure is visibly wrong where a wrapped one is not.
        let grow = |total: &mut i64, by: i64| *total = total.saturating_add(by);
        grow(&mut self.start, before);
        grow(&mut self.end, after);
        if before > 0 {
            self.logos_start += 1;
        }
        if after > 0 {
            self.logos_end += 1;
        }
        if before > 0 && after > 0 {
            self.logos_retained += 1;
        }
        match (before, after) {
            (0, 0) => {}
            (0, a) if paid_earlier => grow(&mut self.reactivation, a),
            (0, a) => grow(&mut self.new, a),
            (b, 0) => grow(&mut self.churn, b),
            (b, a) if a > b => grow(&mut self.expansion, a - b),
            (b, a) => grow(&mut self.contraction, b - a),
        }
    }

    /// Adds another stretch's flows (new, expansion, reactivation,
    /// contraction, churn) to these.
    pub fn add_flows(&mut self, other: &Movements) {
        for (total, by) in [
            (&mut self.new, other.new),
            (&mut self.expansion, other.expansion),
            (&mut self.reactivation, other.reactivation),
            (&mut self.contraction, other.contraction),
            (&mut self.churn, other.churn),
        ] {
            *total = total.saturating_add(by);
        }
    }

    /// (churn + contraction) / start.
    pub fn gross_mrr_churn(&self) -> Ratio {
        Ratio::new(self.churn.saturating_add(self.contraction), self.start)
    }

    /// (churn + contraction − expansion − reactivation) / start.
    pub fn net_mrr_churn(&self) -> Ratio {
        Ratio::new(
            self.churn
                .saturating_add(self.contraction)
                .saturating_sub(self.expansion)
                .saturating_sub(self.reactivation),
            self.start,
        )
    }

    pub fn gross_retention(&self) -> Ratio {
        Ratio::new(self.start - self.contraction - self.churn, self.start)
    }

    /// Net revenue retention: the starting base with its expansion.
    pub fn net_retention(&self) -> Ratio {
        Ratio::new(
            self.start + self.expansion - self.contraction - self.churn,
            self.start,
        )
    }

    /// Recurring revenue at the end over the start.
    pub fn recurring_revenue_rate(&self) -> Ratio {
        Ratio::new(self.end, self.start)
    }

    pub fn logo_retention(&self) -> Ratio {
        Ratio::new(self.logos_retained, self.logos_start)
    }

    /// Revenue gained over revenue lost.
    pub fn quick_ratio(&self) -> Ratio {
        Ratio::new(
            self.new + self.expansion + self.reactivation,
            self.contraction + self.churn,
        )
    }
}

/// An exact ratio of two integers; `None` when the denominator is zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ratio {
    pub numerator: i64,
    pub denominator: i64,
}

impl Ratio {
    pub fn new(numerator: i64, denominator: i64) -> Self {
        Self {
            numerator,
            denominator,
        }
    }

    /// The ratio in percent, rounded half away from zero to `places`
    /// decimals, as exact decimal text ("90.00"); empty when undefined.
    pub fn percent_text(&self, places: u32) -> String {
        if self.denominator == 0 {
            return String::new();
        }
        let scale = 10_i128.pow(places);
        let numerator = i128::from(self.numerator) * 100 * scale;
        let denominator = i128::from(self.denominator);
        let (q, r) = (numerator / denominator, numerator % denominator);
        let rounded = if 2 * r.abs() >= denominator.abs() {
            q + numerator.signum() * denominator.signum()
        } else {
            q
        };
        let sign = if rounded < 0 { "-" } else { "" };
        let whole = rounded.abs() / scale;
        let frac = rounded.abs() % scale;
        if places == 0 {
            format!("{sign}{whole}")
        } else {
            format!("{sign}{whole}.{frac:0width$}", width = places as usize)
        }
    }

    pub fn value(&self) -> Option<f64> {
        (self.denominator != 0).then(|| self.numerator as f64 / self.denominator as f64)
    }
}

/// The first day of each month from the month of `start` up to `end`.
pub fn month_starts(start: NaiveDate, end: NaiveDate) -> Vec<NaiveDate> {
    use chrono::Datelike;
    let mut months = Vec::new();
    let mut day = NaiveDate::from_ymd_opt(start.year(), start.month(), 1).unwrap_or(start);
    while day < end {
        months.push(day);
        day = match day.checked_add_months(chrono::Months::new(1)) {
            Some(next) => next,
            None => break,
        };
    }
    months
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn version(
        account: &str,
        sub: &str,
        changed: NaiveDate,
        term: (NaiveDate, NaiveDate),
        arr: i64,
    ) -> Version {
        Version {
            subscription_id: sub.into(),
            account_id: account.into(),
            updated_at: changed.and_hms_opt(12, 0, 0).unwrap().and_utc(),
            status: Status::Active,
            term_start: term.0,
            term_end: term.1,
            currency: "USD".into(),
            arr_minor: arr,
        }
    }

    /// The worked figures: 100 at the start, +45 new, +5 expansion, -25
    /// churn, -5 contraction: 120 at the end, a 120 % recurring revenue rate.
    #[test]
    fn worked_recurring_revenue_rate() {
        let a_term = (day(2024, 6, 1), day(2026, 6, 1));
        let c_term = (day(2024, 1, 15), day(2026, 1, 15));
        let book = Book::from_versions([
            version("a", "a1", day(2024, 6, 1), a_term, 50),
            version("a", "a1", day(2025, 5, 1), a_term, 55),
            version(
                "b",
                "b1",
                day(2024, 3, 1),
                (day(2024, 3, 1), day(2025, 3, 1)),
                25,
            ),
            version("c", "c1", day(2024, 1, 15), c_term, 25),
            version("c", "c1", day(2025, 7, 1), c_term, 20),
            version(
                "d",
                "d1",
                day(2025, 2, 1),
                (day(2025, 2, 1), day(2026, 2, 1)),
                45,
            ),
        ]);
        let m = book.movements(day(2025, 1, 1), day(2026, 1, 1));
        assert_eq!(
            (m.start, m.new, m.expansion, m.churn, m.contraction, m.end),
            (100, 45, 5, 25, 5, 120)
        );
        assert_eq!(m.recurring_revenue_rate().percent_text(2), "120.00");
        assert_eq!(m.gross_retention().percent_text(1), "70.0");
        assert_eq!(m.net_retention().percent_text(1), "75.0");
        assert_eq!(m.logo_retention().percent_text(2), "66.67");
        assert_eq!(m.quick_ratio().percent_text(0), "167");
    }

    /// A monthly customer new in February and gone in September is both a
    /// new and a churned account of the year, not absent from it; the
    /// year's movements are the sum of its months and still add up.
    #[test]
    fn a_period_sums_its_months() {
        let monthly: Vec<Version> = (2..9)
            .map(|m| {
                version(
                    "m",
                    "m1",
                    day(2025, m, 1),
                    (day(2025, m, 1), day(2025, m + 1, 1)),
                    120,
                )
            })
            .collect();
        let mut versions = monthly;
        versions.push(version(
            "a",
            "a1",
            day(2024, 6, 1),
            (day(2024, 6, 1), day(2026, 6, 1)),
            1000,
        ));
        versions.push(version(
            "a",
            "a1",
            day(2025, 5, 10),
            (day(2024, 6, 1), day(2026, 6, 1)),
            1200,
        ));
        let book = Book::from_versions(versions);
        let netted = book.movements(before(day(2025, 1, 1)), before(day(2026, 1, 1)));
        assert_eq!(
            (netted.new, netted.churn),
            (0, 0),
            "netted once, the account vanishes"
        );
        let year = book.period(day(2025, 1, 1), day(2026, 1, 1));
        let f = year.flows;
        assert_eq!(
            (f.start, f.new, f.churn, f.expansion, f.end),
            (1000, 120, 120, 200, 1200)
        );
        assert_eq!(
            f.end,
            f.start + f.new + f.reactivation + f.expansion - f.contraction - f.churn
        );
        let months: Vec<Movements> = month_starts(day(2025, 1, 1), day(2026, 1, 1))
            .into_iter()
            .map(|m| {
                book.period(m, m.checked_add_months(chrono::Months::new(1)).unwrap())
                    .flows
            })
            .collect();
        assert_eq!(months.iter().map(|m| m.new).sum::<i64>(), f.new);
        assert_eq!(months.iter().map(|m| m.churn).sum::<i64>(), f.churn);
        // Retention of the starting accounts is netted over the year.
        assert_eq!(year.retention.net_retention().percent_text(0), "120");
        assert_eq!(f.gross_mrr_churn().percent_text(0), "12");
        assert_eq!(f.net_mrr_churn().percent_text(0), "-8");
    }

    #[test]
    fn a_returning_customer_is_a_reactivation() {
        let book = Book::from_versions([
            version(
                "a",
                "a1",
                day(2023, 1, 1),
                (day(2023, 1, 1), day(2024, 1, 1)),
                10,
            ),
            version(
                "a",
                "a2",
                day(2025, 3, 1),
                (day(2025, 3, 1), day(2026, 3, 1)),
                12,
            ),
        ]);
        let m = book.movements(day(2025, 1, 1), day(2025, 12, 1));
        assert_eq!((m.new, m.reactivation, m.end), (0, 12, 12));
    }

    #[test]
    fn a_backfilled_term_counts_from_its_start_and_a_renewal_continues() {
        let first = version(
            "a",
            "a1",
            day(2025, 6, 1),
            (day(2024, 1, 1), day(2025, 1, 1)),
            10,
        );
        let mut renewed = version(
            "a",
            "a1",
            day(2025, 6, 2),
            (day(2025, 1, 1), day(2026, 1, 1)),
            14,
        );
        renewed.status = Status::Active;
        let sub = Subscription::new(vec![renewed, first]);
        assert_eq!(sub.arr_on(day(2024, 7, 1)), 10);
        assert_eq!(sub.arr_on(day(2025, 2, 1)), 14);
        assert_eq!(sub.arr_on(day(2026, 1, 1)), 0, "lapsed after its term");
        assert_eq!(sub.first_paid_on(), Some(day(2024, 1, 1)));
    }

    #[test]
    fn percent_text_rounds_half_away_from_zero() {
        assert_eq!(Ratio::new(90, 100).percent_text(2), "90.00");
        assert_eq!(Ratio::new(1, 3).percent_text(2), "33.33");
        assert_eq!(Ratio::new(2, 3).percent_text(2), "66.67");
        assert_eq!(Ratio::new(-1, 8).percent_text(1), "-12.5");
        assert_eq!(Ratio::new(1, 0).percent_text(2), "");
        assert_eq!(month_starts(day(2025, 1, 15), day(2025, 4, 1)).len(), 3);
    }
}
