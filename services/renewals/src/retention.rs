//! Retention models: the observed survival curve (Kaplan–Meier), the
//! shifted-beta-geometric model of contractual retention (Fader & Hardie,
//! "How to Project Customer Retention", 2007) fitted by maximum likelihood,
//! discounted expected residual lifetime value, and growth scenarios.

/// One customer's observed life, in whole periods since it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Life {
    /// Periods it renewed through (0: left at its first renewal).
    pub periods: u32,
    /// False when it is still a customer (censored at `periods`).
    pub churned: bool,
}

/// A Kaplan–Meier point: the share surviving past period `period`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SurvivalPoint {
    pub period: u32,
    pub at_risk: u32,
    pub churned: u32,
    pub censored: u32,
    pub survival: f64,
}

/// The Kaplan–Meier estimate, one point per period from 1 to the longest
/// observed life. A customer who renewed `p` times and then churned is lost
/// at renewal `p + 1`; one still active after `p` renewals is censored
/// after renewal `p` (not yet at risk of the next one).
pub fn kaplan_meier(lives: &[Life]) -> Vec<SurvivalPoint> {
    let last = |l: &Life| if l.churned { l.periods + 1 } else { l.periods };
    let longest = lives.iter().map(last).max().unwrap_or(0);
    let mut survival = 1.0;
    let mut points = Vec::new();
    for period in 1..=longest {
        // At risk at renewal `period`: everyone observed up to it.
        let at_risk = lives.iter().filter(|l| last(l) >= period).count() as u32;
        let churned = lives
            .iter()
            .filter(|l| l.churned && l.periods + 1 == period)
            .count() as u32;
        let censored = lives
            .iter()
            .filter(|l| !l.churned && l.periods == period)
            .count() as u32;
        if at_risk == 0 {
            break;
        }
        survival *= 1.0 - f64::from(churned) / f64::from(at_risk);
        points.push(SurvivalPoint {
            period,
            at_risk,
            churned,
            censored,
            survival,
        });
    }
    points
}

/// Parameters of the shifted-beta-geometric model: churn probabilities are
/// Beta(alpha, beta) across customers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sbg {
    pub alpha: f64,
    pub beta: f64,
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
        for (t, p) in self.churn_probabilities(n).into_iter().enumerate() {
            s.push(s[t] - p);
        }
        s
    }

    /// Log-likelihood of survivor counts `n_0 >= n_1 >= … >= n_T`.
    pub fn log_likelihood(&self, survivors: &[u64]) -> f64 {
        let periods = survivors.len().saturating_sub(1);
        let p = self.churn_probabilities(periods);
        let s = self.survival(periods);
        let mut ll = 0.0;
        for t in 1..=periods {
            let lost = survivors[t - 1].saturating_sub(survivors[t]);
            if lost > 0 {
                ll += lost as f64 * p[t - 1].ln();
            }
        }
        if periods > 0 && survivors[periods] > 0 {
            ll += survivors[periods] as f64 * s[periods].ln();
        }
        ll
    }

    /// Discounted expected residual value of a customer that has renewed
    /// `renewals` times and pays `value` a period now, growing by `growth`
    /// a period: sum over k >= 0 of value (1+g)^k S(n+k)/S(n) / (1+d)^k.
    pub fn residual_value(&self, renewals: u32, value: f64, discount: f64, growth: f64) -> f64 {
        const HORIZON: usize = 400;
        let n = renewals as usize;
        let s = self.survival(n + HORIZON);
        if s[n] <= 0.0 {
            return 0.0;
        }
        let mut total = 0.0;
        let mut factor = 1.0;
        for k in 0..HORIZON {
            let term = value * factor * s[n + k] / s[n];
            total += term;
            factor *= (1.0 + growth) / (1.0 + discount);
            if term.abs() < 1e-9 * total.abs().max(1.0) {
                break;
            }
        }
        total
    }
}

/// Why survivor counts cannot be fitted.
#[derive(Debug, PartialEq, Eq)]
pub enum FitError {
    TooFewPeriods,
    NotDecreasing,
    NoCustomers,
}

/// The maximum-likelihood fit of an sBG model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SbgFit {
    pub model: Sbg,
    pub log_likelihood: f64,
}

/// Fits the sBG model to survivor counts (the cohort's size first, then the
/// customers left after each renewal), by Nelder–Mead over log-parameters.
pub fn fit_sbg(survivors: &[u64]) -> Result<SbgFit, FitError> {
    if survivors.len() < 3 {
        return Err(FitError::TooFewPeriods);
    }
    if survivors[0] == 0 {
        return Err(FitError::NoCustomers);
    }
    if survivors.windows(2).any(|w| w[1] > w[0]) {
        return Err(FitError::NotDecreasing);
    }
    let objective = |x: [f64; 2]| {
        let model = Sbg {
            alpha: x[0].exp(),
            beta: x[1].exp(),
        };
        let ll = model.log_likelihood(survivors);
        if ll.is_finite() { -ll } else { f64::MAX }
    };
    let best = nelder_mead(objective, [0.0, 0.0], 1.0, 2000);
    let model = Sbg {
        alpha: best[0].exp(),
        beta: best[1].exp(),
    };
    Ok(SbgFit {
        model,
        log_likelihood: model.log_likelihood(survivors),
    })
}

/// Minimises `f` over two dimensions from `start` (a small, fixed
/// Nelder–Mead: reflection, expansion, contraction, shrink).
fn nelder_mead(
    f: impl Fn([f64; 2]) -> f64,
    start: [f64; 2],
    step: f64,
    iterations: usize,
) -> [f64; 2] {
    let mut simplex = [
        start,
        [start[0] + step, start[1]],
        [start[0], start[1] + step],
    ];
    let mut values = simplex.map(&f);
    for _ in 0..iterations {
        let mut order = [0, 1, 2];
        order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
        let (best, mid, worst) = (order[0], order[1], order[2]);
        if (values[worst] - values[best]).abs() < 1e-12 * (1.0 + values[best].abs()) {
            break;
        }
        let centroid = [
            (simplex[best][0] + simplex[mid][0]) / 2.0,
            (simplex[best][1] + simplex[mid][1]) / 2.0,
        ];
        let along = |t: f64| {
            [
                centroid[0] + t * (simplex[worst][0] - centroid[0]),
                centroid[1] + t * (simplex[worst][1] - centroid[1]),
            ]
        };
        let reflected = along(-1.0);
        let fr = f(reflected);
        if fr < values[best] {
            let expanded = along(-2.0);
            let fe = f(expanded);
            (simplex[worst], values[worst]) = if fe < fr {
                (expanded, fe)
            } else {
                (reflected, fr)
            };
        } else if fr < values[mid] {
            (simplex[worst], values[worst]) = (reflected, fr);
        } else {
            let contracted = if fr < values[worst] {
                along(-0.5)
            } else {
                along(0.5)
            };
            let fc = f(contracted);
            if fc < values[worst].min(fr) {
                (simplex[worst], values[worst]) = (contracted, fc);
            } else {
                for i in [mid, worst] {
                    simplex[i] = [
                        (simplex[i][0] + simplex[best][0]) / 2.0,
                        (simplex[i][1] + simplex[best][1]) / 2.0,
                    ];
                    values[i] = f(simplex[i]);
                }
            }
        }
    }
    let mut best = 0;
    for i in 1..3 {
        if values[i] < values[best] {
            best = i;
        }
    }
    simplex[best]
}

/// A growth plan to project.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scenario {
    pub customers: f64,
    /// Annual recurring revenue per customer.
    pub revenue_per_customer: f64,
    /// New customers a year, as a share of the starting customer count.
    pub new_customer_growth: f64,
    /// Share of customers lost a year.
    pub churn_rate: f64,
    /// Growth of a kept customer's revenue a year.
    pub expansion_rate: f64,
    pub years: u32,
}

/// One projected month.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProjectedMonth {
    pub month: u32,
    pub customers: f64,
    /// Monthly recurring revenue with churn, and as if nobody churned.
    pub mrr: f64,
    pub mrr_without_churn: f64,
}

impl Scenario {
    /// Month by month: annual rates compounded monthly, new customers
    /// arriving evenly through the year.
    pub fn project(&self) -> Vec<ProjectedMonth> {
        let monthly_churn = 1.0 - (1.0 - self.churn_rate).powf(1.0 / 12.0);
        let monthly_expansion = (1.0 + self.expansion_rate).powf(1.0 / 12.0);
        let arrivals = self.customers * self.new_customer_growth / 12.0;
        let (mut kept, mut all) = (self.customers, self.customers);
        let mut revenue = self.revenue_per_customer / 12.0;
        let mut months = Vec::new();
        for month in 1..=self.years * 12 {
            kept = kept * (1.0 - monthly_churn) + arrivals;
            all += arrivals;
            revenue *= monthly_expansion;
            months.push(ProjectedMonth {
                month,
                customers: kept,
                mrr: kept * revenue,
                mrr_without_churn: all * revenue,
            });
        }
        months
    }
}

/// New bookings needed in a year, as a share of last year's recurring
/// revenue, to grow by `growth_target` while losing `churn_rate` and gaining
/// `expansion_rate` from the base: 50 % growth at 20 % churn needs 70 %.
pub fn required_new_bookings(growth_target: f64, churn_rate: f64, expansion_rate: f64) -> f64 {
    growth_target + churn_rate - expansion_rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kaplan_meier_handles_censoring() {
        // Five customers: churned after 0, 1 and 2 renewals; two still
        // active after 1 and 3.
        let lives = [
            Life {
                periods: 0,
                churned: true,
            },
            Life {
                periods: 1,
                churned: true,
            },
            Life {
                periods: 2,
                churned: true,
            },
            Life {
                periods: 1,
                churned: false,
            },
            Life {
                periods: 3,
                churned: false,
            },
        ];
        let km = kaplan_meier(&lives);
        assert_eq!(km[0].at_risk, 5);
        assert!((km[0].survival - 0.8).abs() < 1e-12);
        assert_eq!(km[0].censored, 1, "the one active after a renewal");
        // Renewal 2: three at risk (one was censored after 1), one lost.
        assert_eq!(km[1].at_risk, 3);
        assert!((km[1].survival - 0.8 * 2.0 / 3.0).abs() < 1e-12);
        // Renewal 3: two at risk, one lost; the other is censored there.
        assert_eq!((km[2].at_risk, km[2].censored), (2, 1));
        assert!((km[2].survival - 0.8 / 3.0).abs() < 1e-12);
        assert_eq!(km.len(), 3);
    }

    /// Fader & Hardie's "high end" cohort: alpha 0.668, beta 3.806.
    #[test]
    fn fits_the_published_example() {
        let survivors = [1000, 869, 743, 653, 593, 551, 517, 491];
        let fit = fit_sbg(&survivors).unwrap();
        assert!((fit.model.alpha - 0.668).abs() < 0.01, "{fit:?}");
        assert!((fit.model.beta - 3.806).abs() < 0.05, "{fit:?}");
        let regular = fit_sbg(&[1000, 631, 468, 382, 326, 289, 262, 241]).unwrap();
        assert!((regular.model.alpha - 0.704).abs() < 0.01, "{regular:?}");
        assert!((regular.model.beta - 1.182).abs() < 0.02, "{regular:?}");
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
        let fit = fit_sbg(&survivors).unwrap();
        assert!((fit.model.alpha - 1.3).abs() < 0.02, "{fit:?}");
        assert!((fit.model.beta - 4.2).abs() < 0.06, "{fit:?}");
        assert_eq!(fit_sbg(&[10, 12, 5]), Err(FitError::NotDecreasing));
        assert_eq!(fit_sbg(&[10, 8]), Err(FitError::TooFewPeriods));
    }

    #[test]
    fn residual_value_of_a_constant_retention() {
        // A huge alpha and beta make churn a fixed 20 %: the residual value
        // of 100 a period at 10 % discount is 100 / (1 - 0.8/1.1) = 366.67.
        let model = Sbg {
            alpha: 2e6,
            beta: 8e6,
        };
        let value = model.residual_value(3, 100.0, 0.10, 0.0);
        assert!((value - 366.666).abs() < 0.5, "{value}");
        let growing = model.residual_value(3, 100.0, 0.10, 0.05);
        assert!(growing > value);
    }

    #[test]
    fn growth_needs_bookings_for_churn_and_growth() {
        assert!((required_new_bookings(0.5, 0.2, 0.0) - 0.7).abs() < 1e-12);
        let scenario = Scenario {
            customers: 100.0,
            revenue_per_customer: 12_000.0,
            new_customer_growth: 0.5,
            churn_rate: 0.2,
            expansion_rate: 0.0,
            years: 1,
        };
        let months = scenario.project();
        assert_eq!(months.len(), 12);
        let last = months[11];
        assert!((last.mrr_without_churn - 150.0 * 1000.0).abs() < 1e-6);
        assert!(last.mrr < last.mrr_without_churn);
        assert!(last.customers > 100.0 && last.customers < 150.0);
    }
}
