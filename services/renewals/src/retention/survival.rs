//! The observed survival of customers in time (Kaplan–Meier), measured in
//! months since each customer first paid, with customers still paying
//! censored at the as-of day. Monthly and annual terms share one curve: a
//! customer who cancels in the middle of a term is lost on the day it
//! stopped paying, not at a renewal it never reached, and one still paying
//! stays at risk for as long as it has been observed.

use chrono::{Datelike, Months, NaiveDate};

/// One customer's observed life.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Life {
    /// Months from the first paid day to the day it stopped paying, or to
    /// the as-of day while it still pays.
    pub months: f64,
    /// False when it still pays (censored at `months`).
    pub churned: bool,
}

/// Calendar months from `start` to `day`: whole months plus the elapsed
/// share of the month after them, so a yearly term ends at exactly 12.0.
pub fn months_between(start: NaiveDate, day: NaiveDate) -> f64 {
    if day <= start {
        return 0.0;
    }
    let mut whole = (day.year() - start.year()) * 12 + day.month() as i32 - start.month() as i32;
    let at = |n: i32| start.checked_add_months(Months::new(n.max(0) as u32));
    while whole > 0 && at(whole).is_none_or(|d| d > day) {
        whole -= 1;
    }
    let (Some(from), Some(to)) = (at(whole), at(whole + 1)) else {
        return f64::from(whole);
    };
    let part = (day - from).num_days() as f64 / (to - from).num_days().max(1) as f64;
    f64::from(whole) + part
}

/// One step of the estimate, at a time where customers were lost.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Step {
    months: f64,
    survival: f64,
    /// Greenwood's sum of lost / (at risk × (at risk − lost)) so far.
    greenwood: f64,
}

/// The Kaplan–Meier estimate over exact times.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    lives: Vec<Life>,
    steps: Vec<Step>,
}

/// A Kaplan–Meier point: what happened in period `period` (months
/// `((period − 1)·length, period·length]`) and the share surviving past it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SurvivalPoint {
    pub period: u32,
    /// Customers observed into the period.
    pub at_risk: u32,
    pub churned: u32,
    /// Customers still paying whose observation ends in the period.
    pub censored: u32,
    pub survival: f64,
}

/// The median survival time with a 95 % interval, in months. A bound is
/// `None` when the curve (or the interval's edge) never reaches one half.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Median {
    pub months: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

/// Estimates survival from `lives`: at each time where customers were
/// lost, S ← S · (1 − lost / at risk). Losses at a time come before the
/// censoring at that same time (the usual convention).
pub fn kaplan_meier(lives: &[Life]) -> Curve {
    let mut lives: Vec<Life> = lives
        .iter()
        .filter(|l| l.months.is_finite())
        .map(|l| Life {
            months: l.months.max(0.0),
            churned: l.churned,
        })
        .collect();
    lives.sort_by(|a, b| a.months.total_cmp(&b.months));
    let mut steps = Vec::new();
    let (mut survival, mut greenwood) = (1.0_f64, 0.0_f64);
    let mut i = 0;
    while i < lives.len() {
        let at = lives[i].months;
        let at_risk = (lives.len() - i) as f64;
        let mut j = i;
        let mut lost = 0.0;
        while j < lives.len() && lives[j].months == at {
            if lives[j].churned {
                lost += 1.0;
            }
            j += 1;
        }
        if lost > 0.0 {
            survival *= 1.0 - lost / at_risk;
            if at_risk > lost {
                greenwood += lost / (at_risk * (at_risk - lost));
            }
            steps.push(Step {
                months: at,
                survival,
                greenwood,
            });
        }
        i = j;
    }
    Curve { lives, steps }
}

impl Curve {
    /// S(t): the share still paying `months` after starting.
    pub fn survival_at(&self, months: f64) -> f64 {
        self.steps
            .iter()
            .take_while(|s| s.months <= months)
            .last()
            .map_or(1.0, |s| s.survival)
    }

    /// One point per period of `length` months, from the first to the last
    /// period anyone was observed in.
    pub fn points(&self, length: u32) -> Vec<SurvivalPoint> {
        let length = f64::from(length.max(1));
        let period_of = |months: f64| ((months / length).ceil() as u32).max(1);
        let Some(last) = self.lives.last().map(|l| period_of(l.months)) else {
            return Vec::new();
        };
        (1..=last)
            .map(|period| {
                let (from, to) = (f64::from(period - 1) * length, f64::from(period) * length);
                let inside = |l: &&Life| period_of(l.months) == period;
                let count = |churned: bool| {
                    self.lives
                        .iter()
                        .filter(inside)
                        .filter(|l| l.churned == churned)
                        .count() as u32
                };
                SurvivalPoint {
                    period,
                    at_risk: self
                        .lives
                        .iter()
                        .filter(|l| l.months > from || (period == 1 && l.months >= 0.0))
                        .count() as u32,
                    churned: count(true),
                    censored: count(false),
                    survival: self.survival_at(to),
                }
            })
            .collect()
    }

    /// The first time the curve is at or below one half, with the interval
    /// of the times where the pointwise 95 % band (Greenwood's variance on
    /// the log(−log S) scale) crosses one half.
    pub fn median(&self) -> Median {
        const Z: f64 = 1.959_963_984_540_054;
        let first =
            |f: &dyn Fn(&Step) -> f64| self.steps.iter().find(|s| f(s) <= 0.5).map(|s| s.months);
        let band = |s: &Step, sign: f64| {
            if s.survival <= 0.0 {
                // No band where everyone is gone: the edge is undefined.
                return f64::NAN;
            }
            if s.survival >= 1.0 {
                return 1.0;
            }
            let log = s.survival.ln();
            let se = s.greenwood.sqrt() / log.abs();
            s.survival.powf((sign * Z * se).exp())
        };
        Median {
            months: first(&|s| s.survival),
            // The band's lower edge reaches one half first: the lower bound.
            lower: first(&|s| band(s, 1.0)),
            upper: first(&|s| band(s, -1.0)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> NaiveDate {
        text.parse().unwrap()
    }

    fn lives(spec: &[(f64, bool, usize)]) -> Vec<Life> {
        spec.iter()
            .flat_map(|&(months, churned, n)| std::iter::repeat_n(Life { months, churned }, n))
            .collect()
    }

    #[test]
    fn months_follow_the_calendar() {
        assert_eq!(months_between(day("2024-01-01"), day("2025-01-01")), 12.0);
        assert_eq!(months_between(day("2024-01-31"), day("2024-02-29")), 1.0);
        assert_eq!(
            months_between(day("2024-03-01"), day("2024-03-16")),
            15.0 / 31.0
        );
        assert_eq!(months_between(day("2024-03-01"), day("2024-02-01")), 0.0);
    }

    /// 100 customers on yearly terms observed 18 months: 30 lapse at the
    /// first renewal, 5 cancel in the middle of year two, 65 still pay.
    /// Counting the cancellers as lost at a renewal nobody else reached
    /// made S(2) zero; in time they are lost among 70 still at risk.
    #[test]
    fn mid_term_churn_is_lost_among_everyone_still_observed() {
        let curve = kaplan_meier(&lives(&[
            (12.0, true, 30),
            (16.0, true, 5),
            (18.0, false, 65),
        ]));
        let points = curve.points(12);
        assert_eq!(points.len(), 2);
        assert_eq!(
            (points[0].at_risk, points[0].churned, points[0].censored),
            (100, 30, 0)
        );
        assert!((points[0].survival - 0.7).abs() < 1e-12);
        assert_eq!(
            (points[1].at_risk, points[1].churned, points[1].censored),
            (70, 5, 65)
        );
        assert!((points[1].survival - 0.65).abs() < 1e-12, "{points:?}");
    }

    #[test]
    fn monthly_and_annual_terms_share_one_curve() {
        // Monthly customers lost at 1, 2 and 3 months; annual ones at 12.
        let curve = kaplan_meier(&lives(&[
            (1.0, true, 1),
            (2.0, true, 1),
            (3.0, true, 1),
            (12.0, true, 2),
            (24.0, false, 5),
        ]));
        assert!((curve.survival_at(3.0) - 0.7).abs() < 1e-12);
        assert!((curve.survival_at(12.0) - 0.5).abs() < 1e-12);
        let months: Vec<f64> = curve.points(1).iter().map(|p| p.survival).collect();
        assert_eq!(months.len(), 24);
        assert!((months[2] - 0.7).abs() < 1e-12 && (months[11] - 0.5).abs() < 1e-12);
    }

    /// Ten lives, losses at 1..=10 months except two censored: S falls to
    /// 0.467 at 6 months; the band's lower edge is 0.473 at 1 month, its
    /// upper edge 0.509 at 9 months and undefined at 10 (S = 0).
    #[test]
    fn the_median_and_its_interval() {
        let mut data: Vec<Life> = (1..=10)
            .map(|m| Life {
                months: f64::from(m),
                churned: true,
            })
            .collect();
        data[3].churned = false;
        data[7].churned = false;
        let median = kaplan_meier(&data).median();
        assert_eq!(median.months, Some(6.0));
        assert_eq!(median.lower, Some(1.0));
        assert_eq!(median.upper, None);
        // One loss in ten: no median, and an interval open at the top.
        let none = kaplan_meier(&lives(&[(3.0, true, 1), (12.0, false, 9)])).median();
        assert_eq!(
            none,
            Median {
                months: None,
                lower: Some(3.0),
                upper: None
            }
        );
    }
}
