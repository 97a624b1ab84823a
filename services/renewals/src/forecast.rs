//! Probability-weighted renewal forecasts: each renewal's probability and
//! expected ARR, the window's totals with a confidence interval, and the
//! comparison of a past forecast with what happened.

use std::collections::BTreeMap;

/// z of a two-sided 90 % normal interval.
pub const Z_90: f64 = 1.644_853_626_951_472_2;

/// Forecast categories (the API's `ForecastCategory` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum Category {
    Commit = 1,
    Probable = 2,
    AtRisk = 3,
    Lost = 4,
}

impl Category {
    /// Lost once churned or cancelled; otherwise by probability.
    pub fn of(probability: f64, lost: bool) -> Self {
        if lost {
            Self::Lost
        } else if probability >= 0.85 {
            Self::Commit
        } else if probability >= 0.6 {
            Self::Probable
        } else {
            Self::AtRisk
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Commit => "commit",
            Self::Probable => "probable",
            Self::AtRisk => "at_risk",
            Self::Lost => "lost",
        }
    }
}

/// Where a renewal probability came from (the API's `ProbabilitySource`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Source {
    /// Health's churn model, calibrated against past outcomes.
    Model = 1,
    /// The segment's historical renewal rate.
    SegmentRate = 2,
    /// The whole base's historical renewal rate (segment had no history).
    BaseRate = 3,
    /// The outcome is known.
    Decided = 4,
}

/// Renewed and decided counts, for historical rates.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub renewed: u64,
    pub decided: u64,
}

impl Tally {
    /// Laplace-smoothed renewal rate, so one outcome never gives 0 or 1.
    pub fn rate(&self) -> f64 {
        (self.renewed as f64 + 1.0) / (self.decided as f64 + 2.0)
    }
}

/// Historical renewal rates per segment and for the whole base.
#[derive(Clone, Debug, Default)]
pub struct Rates {
    pub segments: BTreeMap<String, Tally>,
    pub base: Tally,
}

impl Rates {
    pub fn add(&mut self, segment: &str, renewed: bool) {
        for tally in [
            self.segments.entry(segment.to_owned()).or_default(),
            &mut self.base,
        ] {
            tally.decided += 1;
            tally.renewed += u64::from(renewed);
        }
    }

    pub fn for_segment(&self, segment: &str) -> (f64, Source) {
        match self.segments.get(segment) {
            Some(tally) if tally.decided > 0 => (tally.rate(), Source::SegmentRate),
            _ => (self.base.rate(), Source::BaseRate),
        }
    }
}

fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-6, 1.0 - 1e-6);
    (p / (1.0 - p)).ln()
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Calibration of model renewal probabilities against past outcomes: a
/// shift of the log-odds that makes the mean prediction over past outcomes
/// equal their actual renewal rate ("calibration in the large").
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Calibration {
    pub shift: f64,
    pub outcomes: usize,
}

impl Calibration {
    /// Fits the shift by bisection; no shift from fewer than ten outcomes.
    pub fn fit(pairs: &[(f64, bool)]) -> Self {
        if pairs.len() < 10 {
            return Self {
                shift: 0.0,
                outcomes: pairs.len(),
            };
        }
        let actual = pairs.iter().filter(|(_, renewed)| *renewed).count() as f64;
        let predicted = |shift: f64| {
            pairs
                .iter()
                .map(|(p, _)| sigmoid(logit(*p) + shift))
                .sum::<f64>()
        };
        let (mut low, mut high) = (-10.0, 10.0);
        for _ in 0..100 {
            let mid = (low + high) / 2.0;
            if predicted(mid) < actual {
                low = mid;
            } else {
                high = mid;
            }
        }
        Self {
            shift: (low + high) / 2.0,
            outcomes: pairs.len(),
        }
    }

    pub fn apply(&self, probability: f64) -> f64 {
        sigmoid(logit(probability) + self.shift)
    }
}

/// One renewal in a forecast.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// ARR up for renewal, minor units.
    pub arr_minor: i64,
    pub probability: f64,
    pub category: Category,
    /// For a decided renewal: the ARR it renewed at (0 when churned).
    pub decided_arr_minor: Option<i64>,
}

impl Line {
    /// Expected renewed ARR, rounded to the minor unit.
    pub fn expected_minor(&self) -> i64 {
        match self.decided_arr_minor {
            Some(actual) => actual,
            None => (self.arr_minor as f64 * self.probability).round() as i64,
        }
    }
}

/// A window's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub renewals: u64,
    pub arr_up_minor: i64,
    pub expected_minor: i64,
    /// Decided renewals plus the open ones in commit.
    pub commit_minor: i64,
    /// Decided renewals plus every open one not lost.
    pub best_case_minor: i64,
    /// Decided renewals only.
    pub worst_case_minor: i64,
    /// 90 % interval of renewed ARR (open renewals as independent draws).
    pub low_minor: i64,
    pub high_minor: i64,
    pub expected_renewals: f64,
    /// Expected ARR kept without expansion, and with it, over ARR up.
    pub expected_grr: f64,
    pub expected_nrr: f64,
}

pub fn totals(lines: &[Line]) -> Totals {
    let mut t = Totals::default();
    let mut variance = 0.0;
    let mut kept = 0_i64;
    for line in lines {
        t.renewals += 1;
        t.arr_up_minor += line.arr_minor;
        let expected = line.expected_minor();
        t.expected_minor += expected;
        kept += expected.min(line.arr_minor);
        match line.decided_arr_minor {
            Some(actual) => {
                t.commit_minor += actual;
                t.best_case_minor += actual;
                t.worst_case_minor += actual;
                t.expected_renewals += if actual > 0 { 1.0 } else { 0.0 };
            }
            None => {
                if line.category == Category::Commit {
                    t.commit_minor += line.arr_minor;
                }
                if line.category != Category::Lost {
                    t.best_case_minor += line.arr_minor;
                }
                let p = line.probability;
                let arr = line.arr_minor as f64;
                variance += p * (1.0 - p) * arr * arr;
                t.expected_renewals += p;
            }
        }
    }
    let spread = Z_90 * variance.sqrt();
    t.low_minor = ((t.expected_minor as f64 - spread).round() as i64).max(t.worst_case_minor);
    t.high_minor = ((t.expected_minor as f64 + spread).round() as i64).min(
        t.best_case_minor
            .max(t.expected_minor)
            .max(t.worst_case_minor),
    );
    if t.arr_up_minor > 0 {
        t.expected_grr = kept as f64 / t.arr_up_minor as f64;
        t.expected_nrr = t.expected_minor as f64 / t.arr_up_minor as f64;
    }
    t
}

/// One row of a calibration table: predictions in `[low, high)`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Bucket {
    pub low: f64,
    pub high: f64,
    pub count: u64,
    pub mean_predicted: f64,
    pub actual_rate: f64,
}

/// Ten buckets of predicted probability with the renewal rate observed.
pub fn calibration_table(pairs: &[(f64, bool)]) -> Vec<Bucket> {
    let mut buckets: Vec<Bucket> = (0..10)
        .map(|i| Bucket {
            low: f64::from(i) / 10.0,
            high: f64::from(i + 1) / 10.0,
            ..Default::default()
        })
        .collect();
    let mut renewed = [0_u64; 10];
    for (p, outcome) in pairs {
        let index = ((p * 10.0).floor() as usize).min(9);
        buckets[index].count += 1;
        buckets[index].mean_predicted += p;
        renewed[index] += u64::from(*outcome);
    }
    for (bucket, renewed) in buckets.iter_mut().zip(renewed) {
        if bucket.count > 0 {
            bucket.mean_predicted /= bucket.count as f64;
            bucket.actual_rate = renewed as f64 / bucket.count as f64;
        }
    }
    buckets.retain(|b| b.count > 0);
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(arr: i64, p: f64) -> Line {
        Line {
            arr_minor: arr,
            probability: p,
            category: Category::of(p, false),
            decided_arr_minor: None,
        }
    }

    #[test]
    fn totals_add_up_with_an_interval() {
        let lines = [
            open(1000, 0.9),
            open(1000, 0.5),
            Line {
                arr_minor: 500,
                probability: 1.0,
                category: Category::Commit,
                decided_arr_minor: Some(600),
            },
            Line {
                arr_minor: 400,
                probability: 0.7,
                category: Category::Lost,
                decided_arr_minor: None,
            },
        ];
        let t = totals(&lines);
        assert_eq!(t.arr_up_minor, 2900);
        assert_eq!(t.expected_minor, 900 + 500 + 600 + 280);
        assert_eq!(t.commit_minor, 600 + 1000);
        assert_eq!(t.best_case_minor, 600 + 2000);
        assert_eq!(t.worst_case_minor, 600);
        // sd = sqrt(.09e6 + .25e6 + .21*.16e6) = 611.23; 90 %: ± 1005.4.
        assert_eq!(t.low_minor, 2280 - 1005);
        assert_eq!(t.high_minor, 2600);
        assert!((t.expected_nrr - 2280.0 / 2900.0).abs() < 1e-12);
        assert!((t.expected_grr - 2180.0 / 2900.0).abs() < 1e-12);
    }

    #[test]
    fn calibration_moves_the_mean_to_the_actual_rate() {
        let pairs: Vec<(f64, bool)> = (0..100).map(|i| (0.9, i < 60)).collect();
        let calibration = Calibration::fit(&pairs);
        assert!((calibration.apply(0.9) - 0.6).abs() < 1e-6);
        assert_eq!(Calibration::fit(&pairs[..5]).shift, 0.0);
    }

    #[test]
    fn rates_fall_back_to_the_base() {
        let mut rates = Rates::default();
        for i in 0..8 {
            rates.add("smb", i < 6);
        }
        assert_eq!(rates.for_segment("smb"), (0.7, Source::SegmentRate));
        assert_eq!(rates.for_segment("enterprise"), (0.7, Source::BaseRate));
        let table = calibration_table(&[(0.05, false), (0.95, true), (0.91, false)]);
        assert_eq!(table.len(), 2);
        assert!((table[1].actual_rate - 0.5).abs() < 1e-12);
    }
}
