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

/// A segment's rate leans on the base's as if it had this many outcomes
/// at the base rate more: one renewal in a new segment moves it little, a
/// hundred outcomes carry their own rate.
pub const SEGMENT_PRIOR_OUTCOMES: f64 = 10.0;

impl Tally {
    /// Laplace-smoothed renewal rate, so one outcome never gives 0 or 1
    /// (for the whole base, which has nothing wider to lean on).
    pub fn rate(&self) -> f64 {
        (self.renewed as f64 + 1.0) / (self.decided as f64 + 2.0)
    }

    /// The rate shrunk toward `prior` by [`SEGMENT_PRIOR_OUTCOMES`] (the
    /// posterior mean under a Beta prior centred on the base rate).
    pub fn rate_toward(&self, prior: f64) -> f64 {
        (self.renewed as f64 + SEGMENT_PRIOR_OUTCOMES * prior)
            / (self.decided as f64 + SEGMENT_PRIOR_OUTCOMES)
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
            Some(tally) if tally.decided > 0 => {
                (tally.rate_toward(self.base.rate()), Source::SegmentRate)
            }
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

/// How a forecast's interval was computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Interval {
    /// The exact distribution of the ARR sum of independent renewals (the
    /// Poisson-binomial, by dynamic programming over ARR in steps of at
    /// most 1/4096 of the open ARR).
    #[default]
    PoissonBinomial,
    /// The normal approximation, for windows too large for the exact sum
    /// to be cheap (where it is also accurate).
    Normal,
}

impl Interval {
    pub fn name(self) -> &'static str {
        match self {
            Self::PoissonBinomial => "poisson_binomial",
            Self::Normal => "normal",
        }
    }
}

/// Cells of the distribution when ARR has no common step that keeps it small.
const CELLS: i64 = 4096;
/// The most cells used at the ARR's own common step (then exact).
const EXACT_CELLS: i64 = 65_536;
/// The sum is used while renewals × cells stays under this.
const EXACT_BUDGET: usize = 40_000_000;

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The 5th and 95th percentiles of Σ arr_i · B_i with B_i ~ Bernoulli(p_i)
/// independent, by dynamic programming over ARR in its greatest common
/// step (exact) when that needs at most [`EXACT_CELLS`] cells, else on a
/// grid of [`CELLS`] steps; `None` when that would not be cheap.
fn poisson_binomial_interval(open: &[(i64, f64)]) -> Option<(i64, i64)> {
    let total: i64 = open.iter().map(|(arr, _)| (*arr).max(0)).sum();
    if total == 0 {
        return Some((0, 0));
    }
    let common = open.iter().fold(0, |g, (arr, _)| gcd(g, (*arr).max(0)));
    let step = if total / common <= EXACT_CELLS {
        common
    } else {
        (total + CELLS - 1) / CELLS
    };
    let cells = (total / step + open.len() as i64 + 1) as usize;
    if open.len().saturating_mul(cells) > EXACT_BUDGET {
        return None;
    }
    let mut mass = vec![0.0_f64; cells];
    mass[0] = 1.0;
    let mut reach = 0;
    for &(arr, p) in open {
        let k = ((arr.max(0) + step / 2) / step) as usize;
        let p = p.clamp(0.0, 1.0);
        reach = (reach + k).min(cells - 1);
        for j in (0..=reach).rev() {
            let from = if j >= k { mass[j - k] } else { 0.0 };
            mass[j] = mass[j] * (1.0 - p) + from * p;
        }
    }
    let quantile = |q: f64| {
        let mut cumulative = 0.0;
        for (j, m) in mass.iter().enumerate() {
            cumulative += m;
            if cumulative >= q - 1e-12 {
                return j as i64 * step;
            }
        }
        (cells as i64 - 1) * step
    };
    Some((quantile(0.05), quantile(0.95)))
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
    /// 90 % interval of renewed ARR (open renewals as independent draws),
    /// and how it was computed.
    pub low_minor: i64,
    pub high_minor: i64,
    pub interval: Interval,
    pub expected_renewals: f64,
    /// Expected ARR kept without expansion, and with it, over ARR up.
    pub expected_grr: f64,
    pub expected_nrr: f64,
}

pub fn totals(lines: &[Line]) -> Totals {
    let mut t = Totals::default();
    let mut variance = 0.0;
    let mut kept = 0_i64;
    let mut open = Vec::new();
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
                open.push((line.arr_minor, p));
            }
        }
    }
    if let Some((low, high)) = poisson_binomial_interval(&open) {
        t.interval = Interval::PoissonBinomial;
        t.low_minor = t.worst_case_minor + low;
        t.high_minor = t.worst_case_minor + high;
    } else {
        t.interval = Interval::Normal;
        let spread = Z_90 * variance.sqrt();
        t.low_minor = ((t.expected_minor as f64 - spread).round() as i64).max(t.worst_case_minor);
        t.high_minor = ((t.expected_minor as f64 + spread).round() as i64).min(
            t.best_case_minor
                .max(t.expected_minor)
                .max(t.worst_case_minor),
        );
    }
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
            open(400, 0.7),
        ];
        let t = totals(&lines);
        assert_eq!(t.arr_up_minor, 2900);
        assert_eq!(t.expected_minor, 900 + 500 + 600 + 280);
        assert_eq!(t.commit_minor, 600 + 1000);
        assert_eq!(t.best_case_minor, 600 + 2400);
        assert_eq!(t.worst_case_minor, 600);
        // The open sum is 0, 400, 1000, 1400, 2000 or 2400 with chances
        // .015, .035, .15, .35, .135, .315: its 5th percentile is 400 and
        // its 95th 2400, on top of the 600 decided.
        assert_eq!(t.interval, Interval::PoissonBinomial);
        assert_eq!((t.low_minor, t.high_minor), (1000, 3000));
        assert!((t.expected_nrr - 2280.0 / 2900.0).abs() < 1e-12);
        assert!((t.expected_grr - 2180.0 / 2900.0).abs() < 1e-12);
    }

    /// Three large deals at 90 %: the normal approximation says 185k to
    /// 355k (capped at 300k), amounts no outcome can produce; the exact
    /// distribution says two or three of them renew.
    #[test]
    fn a_few_large_deals_get_the_exact_interval() {
        let t = totals(&[open(100_000, 0.9), open(100_000, 0.9), open(100_000, 0.9)]);
        assert_eq!((t.low_minor, t.high_minor), (200_000, 300_000));
        assert_eq!(t.interval.name(), "poisson_binomial");
        // Many small renewals: the exact sum would not be cheap, and the
        // normal approximation is accurate there.
        let many: Vec<Line> = (0..20_000).map(|i| open(1_000 + i % 7, 0.8)).collect();
        let t = totals(&many);
        assert_eq!(t.interval, Interval::Normal);
        assert!(t.low_minor < t.expected_minor && t.expected_minor < t.high_minor);
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
        // Base 6 of 8: 0.7 smoothed; the segment leans on it.
        let (smb, source) = rates.for_segment("smb");
        assert!((smb - (6.0 + 10.0 * 0.7) / 18.0).abs() < 1e-12 && source == Source::SegmentRate);
        assert_eq!(rates.for_segment("enterprise"), (0.7, Source::BaseRate));
        // One renewal in a new segment of a base renewing 80 %: close to
        // the base, not pulled toward a coin flip (Laplace said 2/3).
        let mut rates = Rates::default();
        for i in 0..98 {
            rates.add("mid", i < 78);
        }
        rates.add("new", true);
        let (new, _) = rates.for_segment("new");
        let base = rates.base.rate();
        assert!((new - (1.0 + 10.0 * base) / 11.0).abs() < 1e-12, "{new}");
        assert!(
            (new - base).abs() < 0.02 && new > 0.75,
            "{new} against {base}"
        );
        let table = calibration_table(&[(0.05, false), (0.95, true), (0.91, false)]);
        assert_eq!(table.len(), 2);
        assert!((table[1].actual_rate - 0.5).abs() < 1e-12);
    }
}
