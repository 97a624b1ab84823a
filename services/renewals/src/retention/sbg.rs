//! The shifted-beta-geometric model of contractual retention (Fader &
//! Hardie, "How to Project Customer Retention", 2007), fitted by maximum
//! likelihood on true renewal counts with customers still active censored,
//! and the discounted expected lifetime values of "Customer-Base Valuation
//! in a Contractual Setting" (2010): DEL for a customer at signing and
//! DERL for one who has already made some payments.

use argmin::core::{CostFunction, Executor, State as _, TerminationReason};
use argmin::solver::neldermead::NelderMead;

/// Parameters of the model: churn probabilities are Beta(alpha, beta)
/// across customers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sbg {
    pub alpha: f64,
    pub beta: f64,
}

/// Renewal counts of a group of customers, as observed: `lost[t - 1]` were
/// lost at renewal `t` (they never made it); `kept[t]` had made `t`
/// renewals and are still customers, observed no further.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Renewals {
    pub lost: Vec<u64>,
    pub kept: Vec<u64>,
}

impl Renewals {
    /// From survivor counts `n_0 >= n_1 >= … >= n_T`, all observed to T.
    pub fn from_survivors(survivors: &[u64]) -> Result<Self, FitError> {
        if survivors.len() < 3 {
            return Err(FitError::TooFewPeriods);
        }
        if survivors[0] == 0 {
            return Err(FitError::NoCustomers);
        }
        if survivors.windows(2).any(|w| w[1] > w[0]) {
            return Err(FitError::NotDecreasing);
        }
        let mut renewals = Self::default();
        for (t, pair) in survivors.windows(2).enumerate() {
            renewals.add_lost(t as u32 + 1, pair[0] - pair[1]);
        }
        renewals.add_kept(survivors.len() as u32 - 1, survivors[survivors.len() - 1]);
        Ok(renewals)
    }

    /// `n` customers lost at renewal `renewal` (1 for the first).
    pub fn add_lost(&mut self, renewal: u32, n: u64) {
        let i = renewal.max(1) as usize - 1;
        if self.lost.len() <= i {
            self.lost.resize(i + 1, 0);
        }
        self.lost[i] += n;
    }

    /// `n` customers still active after `renewals` renewals.
    pub fn add_kept(&mut self, renewals: u32, n: u64) {
        let i = renewals as usize;
        if self.kept.len() <= i {
            self.kept.resize(i + 1, 0);
        }
        self.kept[i] += n;
    }

    pub fn customers(&self) -> u64 {
        self.lost.iter().chain(&self.kept).sum()
    }

    /// The most renewals anyone was observed through.
    fn periods(&self) -> usize {
        self.lost.len().max(self.kept.len().saturating_sub(1))
    }
}

/// Why renewal counts cannot be fitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FitError {
    #[error("needs the cohort size and at least two renewals")]
    TooFewPeriods,
    #[error("survivors must not increase from one period to the next")]
    NotDecreasing,
    #[error("there are no customers to fit")]
    NoCustomers,
    /// Nobody was lost: the likelihood grows without bound as churn → 0.
    #[error(
        "no customer has been lost yet, so churn cannot be estimated (the model would say \
         nobody ever leaves)"
    )]
    NoChurn,
    /// Nobody ever renewed: every customer left at its first renewal.
    #[error("no customer has renewed yet, so retention cannot be estimated")]
    NoRenewals,
}

/// Where the fit ended when the likelihood is largest at the edge of the
/// parameter space: the figures are a limit, not an estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Boundary {
    /// α and β grow together: every customer churns at the same rate (a
    /// geometric model); only α / (α + β) is identified.
    SameChurnForAll,
    /// α or β at the edge of the search for another reason.
    Edge,
}

impl Boundary {
    pub fn reason(self) -> &'static str {
        match self {
            Self::SameChurnForAll => {
                "churn looks the same for every customer: alpha and beta are not identified, \
                 only the churn rate alpha / (alpha + beta)"
            }
            Self::Edge => "the likelihood is largest at the edge of the parameter search",
        }
    }
}

/// A maximum-likelihood fit and how it ended.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SbgFit {
    pub model: Sbg,
    pub log_likelihood: f64,
    /// The simplex shrank below the tolerance before the iteration limit.
    pub converged: bool,
    pub iterations: u32,
    pub boundary: Option<Boundary>,
}

/// The search runs over log α and log β in this range.
const LOG_BOUNDS: (f64, f64) = (-9.0, 16.0);
/// Spread (standard deviation) of the negative log-likelihood across the
/// simplex, relative to its value at the start, that counts as converged.
pub const TOLERANCE: f64 = 1e-10;
const MAX_ITERATIONS: u64 = 5_000;
/// α + β beyond which the fit is reported as the geometric limit.
const SAME_CHURN_FOR_ALL: f64 = 1_000.0;

/// Fits the model to renewal counts, by Nelder–Mead over log-parameters.
pub fn fit(renewals: &Renewals) -> Result<SbgFit, FitError> {
    if renewals.customers() == 0 {
        return Err(FitError::NoCustomers);
    }
    if renewals.lost.iter().all(|n| *n == 0) {
        return Err(FitError::NoChurn);
    }
    let renewed: u64 =
        renewals.kept.iter().skip(1).sum::<u64>() + renewals.lost.iter().skip(1).sum::<u64>();
    if renewed == 0 {
        return Err(FitError::NoRenewals);
    }
    let (best, iterations, converged) = minimise(renewals);
    let model = Sbg {
        alpha: best[0].exp(),
        beta: best[1].exp(),
    };
    let near = |v: f64| v - LOG_BOUNDS.0 < 1.0 || LOG_BOUNDS.1 - v < 1.0;
    // With α + β this large the retention rate r(t) moves by under a tenth
    // of a point over ten periods: the data cannot tell the customers apart.
    let boundary = if model.alpha + model.beta >= SAME_CHURN_FOR_ALL {
        Some(Boundary::SameChurnForAll)
    } else if near(best[0]) || near(best[1]) {
        Some(Boundary::Edge)
    } else {
        None
    };
    Ok(SbgFit {
        model,
        log_likelihood: model.log_likelihood(renewals),
        converged,
        iterations,
        boundary,
    })
}

/// Fits survivor counts (the cohort's size first, then the customers left
/// after each renewal).
pub fn fit_survivors(survivors: &[u64]) -> Result<SbgFit, FitError> {
    fit(&Renewals::from_survivors(survivors)?)
}

/// The series Σ_k (b)_k / (c)_k · z^k = ₂F₁(1, b; c; z) for 0 < b < c and
/// 0 ≤ z < 1, summed until the remainder is provably below a relative
/// 1e-13: each term is at most `z` times the one before it, so what is
/// left after a term `t` is at most `t · z / (1 − z)`.
fn hypergeometric_1(b: f64, c: f64, z: f64) -> Option<f64> {
    const MAX_TERMS: u64 = 50_000_000;
    if !(0.0..1.0).contains(&z) || b <= 0.0 || c <= b {
        return None;
    }
    let (mut sum, mut term) = (0.0_f64, 1.0_f64);
    for k in 0..MAX_TERMS {
        sum += term;
        if term * z / (1.0 - z) <= 1e-13 * sum {
            return Some(sum);
        }
        let k = k as f64;
        term *= (b + k) / (c + k) * z;
    }
    None
}

/// Why a lifetime value has no finite figure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Growth at or above the discount rate: the expected sum has no limit.
    #[error("growth at or above the discount rate: the expected sum has no limit")]
    Diverges,
}

impl Sbg {
    /// P(T = t) for t = 1..=n: the share lost at each renewal.
    pub fn churn_probabilities(&self, n: usize) -> Vec<f64> {
        let mut p = Vec::with_capacity(n);
        for t in 1..=n {
            let value = if t == 1 {
                self.alpha / (self.alpha + self.beta)
            } else {
                let tf = t as f64;
                p[t - 2] * (self.beta + tf - 2.0) / (self.alpha + self.beta + tf - 1.0)
            };
            p.push(value);
        }
        p
    }

    /// S(t) for t = 0..=n: the share still a customer after t renewals.
    pub fn survival(&self, n: usize) -> Vec<f64> {
        let mut s = vec![1.0];
        let mut retained = 1.0;
        for t in 1..=n {
            let tf = t as f64;
            retained *= (self.beta + tf - 1.0) / (self.alpha + self.beta + tf - 1.0);
            s.push(retained);
        }
        s
    }

    /// Σ lost_t · ln P(T = t) + Σ kept_t · ln S(t).
    pub fn log_likelihood(&self, renewals: &Renewals) -> f64 {
        let periods = renewals.periods();
        let p = self.churn_probabilities(periods);
        let s = self.survival(periods);
        let lost = renewals
            .lost
            .iter()
            .zip(&p)
            .filter(|(n, _)| **n > 0)
            .map(|(n, p)| *n as f64 * p.ln());
        let kept = renewals
            .kept
            .iter()
            .zip(&s)
            .filter(|(n, _)| **n > 0)
            .map(|(n, s)| *n as f64 * s.ln());
        lost.chain(kept).sum()
    }

    /// DEL: the discounted expected lifetime of a customer at signing, in
    /// payments, its first payment included: ₂F₁(1, β; α + β; 1/(1 + d)).
    pub fn del(&self, discount: f64) -> Result<f64, ValueError> {
        self.del_growing(discount, 0.0)
    }

    /// DERL(n): the discounted expected residual lifetime, in payments, of a
    /// customer who has made `n` payments (n ≥ 1), valued just before its
    /// next renewal decision, that renewal's payment (if made) undiscounted:
    /// (β + n − 1)/(α + β + n − 1) · ₂F₁(1, β + n; α + β + n; 1/(1 + d)).
    pub fn derl(&self, payments: u32, discount: f64) -> Result<f64, ValueError> {
        self.derl_growing(payments, discount, 0.0)
    }

    /// DEL with payments growing by `growth` a period: the series's
    /// argument becomes (1 + g)/(1 + d), which must stay below one.
    pub fn del_growing(&self, discount: f64, growth: f64) -> Result<f64, ValueError> {
        hypergeometric_1(self.beta, self.alpha + self.beta, ratio(discount, growth)?)
            .ok_or(ValueError::Diverges)
    }

    /// DERL(n) with payments growing by `growth` a period from today's.
    pub fn derl_growing(
        &self,
        payments: u32,
        discount: f64,
        growth: f64,
    ) -> Result<f64, ValueError> {
        let n = f64::from(payments.max(1));
        let (a, b) = (self.alpha, self.beta);
        let series = hypergeometric_1(b + n, a + b + n, ratio(discount, growth)?)
            .ok_or(ValueError::Diverges)?;
        Ok((b + n - 1.0) / (a + b + n - 1.0) * series)
    }
}

fn ratio(discount: f64, growth: f64) -> Result<f64, ValueError> {
    let z = (1.0 + growth) / (1.0 + discount);
    if z.is_finite() && (0.0..1.0).contains(&z) {
        Ok(z)
    } else {
        Err(ValueError::Diverges)
    }
}

/// The fit's objective: the negative log-likelihood of the renewals at
/// (log α, log β), infinite outside [`LOG_BOUNDS`] or where it is not finite.
struct NegativeLogLikelihood<'a>(&'a Renewals);

impl CostFunction for NegativeLogLikelihood<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, x: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        if x.len() != 2 || x.iter().any(|v| !(LOG_BOUNDS.0..=LOG_BOUNDS.1).contains(v)) {
            return Ok(f64::INFINITY);
        }
        let ll = Sbg {
            alpha: x[0].exp(),
            beta: x[1].exp(),
        }
        .log_likelihood(self.0);
        Ok(if ll.is_finite() { -ll } else { f64::INFINITY })
    }
}

/// Minimises the negative log-likelihood by Nelder–Mead from α = β = 1
/// (argmin's solver, a unit simplex in log space). Returns the best point,
/// the iterations taken and whether the simplex converged: the spread of
/// its values under [`TOLERANCE`] relative to the start's.
fn minimise(renewals: &Renewals) -> ([f64; 2], u32, bool) {
    let start = vec![0.0, 0.0];
    let problem = NegativeLogLikelihood(renewals);
    let scale = problem.cost(&start).map_or(1.0, |c| 1.0 + c.abs());
    let run = || -> Result<_, argmin::core::Error> {
        let solver = NelderMead::new(vec![start.clone(), vec![1.0, 0.0], vec![0.0, 1.0]])
            .with_sd_tolerance(TOLERANCE * scale)?;
        Executor::new(NegativeLogLikelihood(renewals), solver)
            .configure(|state| state.max_iters(MAX_ITERATIONS))
            .run()
    };
    match run() {
        Ok(result) => {
            let state = result.state();
            let best = state.get_best_param().cloned().unwrap_or(start);
            let converged = matches!(
                state.get_termination_reason(),
                Some(TerminationReason::SolverConverged)
            );
            let iterations = u32::try_from(state.get_iter()).unwrap_or(u32::MAX);
            ([best[0], best[1]], iterations, converged)
        }
        Err(_) => ([0.0, 0.0], 0, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGULAR: [u64; 8] = [1000, 631, 468, 382, 326, 289, 262, 241];
    const HIGH_END: [u64; 8] = [1000, 869, 743, 653, 593, 551, 517, 491];

    /// Fader & Hardie (2007): α, β and the log-likelihood of both cohorts,
    /// and the survivors they project for years 8 to 12.
    #[test]
    fn reproduces_the_published_cohorts() {
        for (survivors, alpha, beta, ll, projected) in [
            (
                REGULAR,
                0.704,
                1.182,
                -1680.27,
                [220.1, 204.4, 191.2, 179.9, 170.0],
            ),
            (
                HIGH_END,
                0.668,
                3.806,
                -1611.16,
                [460.4, 435.8, 414.2, 395.1, 378.0],
            ),
        ] {
            let fit = fit_survivors(&survivors).unwrap();
            assert!(fit.converged && fit.boundary.is_none(), "{fit:?}");
            assert!((fit.model.alpha - alpha).abs() < 0.001, "{fit:?}");
            assert!((fit.model.beta - beta).abs() < 0.005, "{fit:?}");
            assert!((fit.log_likelihood - ll).abs() < 0.01, "{fit:?}");
            let s = fit.model.survival(12);
            for (year, expected) in (8..=12).zip(projected) {
                let n = 1000.0 * s[year];
                assert!((n - expected).abs() < 0.5, "year {year}: {n} vs {expected}");
            }
        }
    }

    /// Fader & Hardie (2010) at d = 0.10, and the identity between them.
    #[test]
    fn del_and_derl_match_the_published_values() {
        for (model, del, derl1, derl2) in [
            (
                Sbg {
                    alpha: 0.7041,
                    beta: 1.1820,
                },
                3.695,
                2.964,
                4.103,
            ),
            (
                Sbg {
                    alpha: 0.6681,
                    beta: 3.8061,
                },
                5.922,
                5.414,
                5.901,
            ),
        ] {
            let d = 0.10;
            assert!((model.del(d).unwrap() - del).abs() < 0.001);
            assert!((model.derl(1, d).unwrap() - derl1).abs() < 0.001);
            assert!((model.derl(2, d).unwrap() - derl2).abs() < 0.001);
            let identity = 1.0 + model.derl(1, d).unwrap() / (1.0 + d);
            assert!((model.del(d).unwrap() - identity).abs() < 1e-9);
        }
        // A small discount rate is summed to the end, not cut off.
        let regular = Sbg {
            alpha: 0.7041,
            beta: 1.1820,
        };
        assert!((regular.del(0.001).unwrap() - 21.3286).abs() < 0.001);
    }

    /// With α 0.704 the sum of payments growing as fast as the discount
    /// has no limit: refused, not summed to a cap.
    #[test]
    fn growth_at_the_discount_rate_diverges() {
        let regular = Sbg {
            alpha: 0.7041,
            beta: 1.1820,
        };
        assert_eq!(
            regular.derl_growing(5, 0.10, 0.10),
            Err(ValueError::Diverges)
        );
        assert_eq!(
            regular.derl_growing(5, 0.10, 0.12),
            Err(ValueError::Diverges)
        );
        let slower = regular.derl_growing(5, 0.10, 0.05).unwrap();
        let flat = regular.derl(5, 0.10).unwrap();
        assert!(slower > flat && slower < 25.0, "{slower} vs {flat}");
    }

    #[test]
    fn constant_churn_values_as_a_geometric_series() {
        // Churn a fixed 20 %: DERL = Σ 0.8^k / 1.1^(k−1) from k = 1,
        // 0.8 / (1 − 0.8/1.1) = 2.9333.
        let model = Sbg {
            alpha: 2e6,
            beta: 8e6,
        };
        assert!((model.derl(3, 0.10).unwrap() - 2.9333).abs() < 0.001);
    }

    #[test]
    fn recovers_parameters_of_data_it_generated() {
        let truth = Sbg {
            alpha: 1.3,
            beta: 4.2,
        };
        let survivors: Vec<u64> = truth
            .survival(10)
            .iter()
            .map(|s| (s * 1_000_000.0).round() as u64)
            .collect();
        let fit = fit_survivors(&survivors).unwrap();
        assert!((fit.model.alpha - 1.3).abs() < 0.02, "{fit:?}");
        assert!((fit.model.beta - 4.2).abs() < 0.06, "{fit:?}");
        assert_eq!(fit_survivors(&[10, 12, 5]), Err(FitError::NotDecreasing));
        assert_eq!(fit_survivors(&[10, 8]), Err(FitError::TooFewPeriods));
    }

    /// Customers still active count only for the renewals they were seen
    /// through: the regular cohort plus 500 later starters observed through
    /// three renewals (with the same retention) fits the regular model.
    #[test]
    fn censored_customers_count_only_what_was_observed() {
        let mut renewals = Renewals::from_survivors(&REGULAR).unwrap();
        let later = [500, 316, 234, 191];
        for (t, pair) in later.windows(2).enumerate() {
            renewals.add_lost(t as u32 + 1, pair[0] - pair[1]);
        }
        renewals.add_kept(3, 191);
        assert_eq!(renewals.customers(), 1500);
        let both = fit(&renewals).unwrap();
        assert!((both.model.alpha - 0.704).abs() < 0.02, "{both:?}");
        assert!((both.model.beta - 1.182).abs() < 0.05, "{both:?}");
    }

    #[test]
    fn edge_cases_are_refused_or_flagged() {
        assert_eq!(fit_survivors(&[100, 100, 100]), Err(FitError::NoChurn));
        assert_eq!(fit_survivors(&[100, 0, 0]), Err(FitError::NoRenewals));
        // The same 20 % lost every year: homogeneous, α and β unbounded.
        let fit = fit_survivors(&[100_000, 80_000, 64_000, 51_200, 40_960]).unwrap();
        assert_eq!(fit.boundary, Some(Boundary::SameChurnForAll), "{fit:?}");
        let churn = fit.model.alpha / (fit.model.alpha + fit.model.beta);
        assert!((churn - 0.2).abs() < 1e-4, "{fit:?}");
    }
}
