//! Fitting the model: the L2-penalised mean log loss minimised by L-BFGS
//! to a stated gradient tolerance.

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

use super::sigmoid;

/// Settings of a fit.
#[derive(Clone, Copy, Debug)]
pub struct FitOptions {
    /// L2 penalty on the coefficients (not the intercept), added to the mean
    /// log loss as `l2 / 2 · Σ w²`.
    pub l2: f64,
    pub max_iterations: u64,
    /// Converged when the gradient's Euclidean norm is under this.
    pub tolerance: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            l2: 0.01,
            max_iterations: 1_000,
            tolerance: 1e-6,
        }
    }
}

/// How a fit ended.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Convergence {
    pub converged: bool,
    pub iterations: u64,
}

/// The penalised mean log loss of encoded rows and its gradient; the
/// parameters are the intercept followed by the coefficients.
struct LogLoss<'a> {
    x: &'a [Vec<f64>],
    y: &'a [f64],
    l2: f64,
}

impl LogLoss<'_> {
    fn value_and_gradient(&self, p: &[f64]) -> (f64, Vec<f64>) {
        let n = self.x.len().max(1) as f64;
        let mut loss = 0.0;
        let mut gradient = vec![0.0; p.len()];
        for (row, label) in self.x.iter().zip(self.y) {
            let z = p[0] + row.iter().zip(&p[1..]).map(|(a, b)| a * b).sum::<f64>();
            // log(1 + e^z) − y·z, computed without overflow.
            loss += z.max(0.0) + (-z.abs()).exp().ln_1p() - label * z;
            let error = sigmoid(z) - label;
            gradient[0] += error;
            for (g, v) in gradient[1..].iter_mut().zip(row) {
                *g += error * v;
            }
        }
        let penalty: f64 = p[1..].iter().map(|w| w * w).sum::<f64>() * self.l2 / 2.0;
        for g in &mut gradient {
            *g /= n;
        }
        for (g, w) in gradient[1..].iter_mut().zip(&p[1..]) {
            *g += self.l2 * w;
        }
        (loss / n + penalty, gradient)
    }
}

impl CostFunction for LogLoss<'_> {
    type Param = Vec<f64>;
    type Output = f64;

    fn cost(&self, p: &Self::Param) -> Result<f64, argmin::core::Error> {
        Ok(self.value_and_gradient(p).0)
    }
}

impl Gradient for LogLoss<'_> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;

    fn gradient(&self, p: &Self::Param) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.value_and_gradient(p).1)
    }
}

/// Fits weights to encoded rows `x` with labels `y` (1 = churned).
pub(super) fn fit_weights(
    x: &[Vec<f64>],
    y: &[f64],
    options: FitOptions,
) -> (f64, Vec<f64>, Convergence) {
    let width = x.first().map_or(0, Vec::len);
    let start = vec![0.0; width + 1];
    let problem = LogLoss {
        x,
        y,
        l2: options.l2,
    };
    let run = || -> Result<_, argmin::core::Error> {
        let line_search = MoreThuenteLineSearch::new();
        let solver = LBFGS::new(line_search, 10)
            .with_tolerance_grad(options.tolerance)?
            .with_tolerance_cost(0.0)?;
        Executor::new(problem, solver)
            .configure(|state| state.param(start.clone()).max_iters(options.max_iterations))
            .run()
    };
    match run() {
        Ok(result) => {
            let state = result.state();
            let best = state
                .get_best_param()
                .cloned()
                .unwrap_or_else(|| start.clone());
            let gradient_norm = LogLoss {
                x,
                y,
                l2: options.l2,
            }
            .value_and_gradient(&best)
            .1
            .iter()
            .map(|g| g * g)
            .sum::<f64>()
            .sqrt();
            let convergence = Convergence {
                converged: gradient_norm < options.tolerance
                    || matches!(
                        state.get_termination_reason(),
                        Some(TerminationReason::SolverConverged)
                    ),
                iterations: state.get_iter(),
            };
            (best[0], best[1..].to_vec(), convergence)
        }
        // A line search that cannot improve leaves the start: report it.
        Err(_) => (0.0, vec![0.0; width], Convergence::default()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::tests::uniform_from;
    use crate::model::{Example, Model};

    /// The exact maximum-likelihood fit of a small unpenalised logistic
    /// regression by Newton's method (3 parameters, solved directly).
    fn newton(rows: &[Vec<f64>], y: &[f64]) -> [f64; 3] {
        let mut p = [0.0; 3];
        for _ in 0..50 {
            let mut g = [0.0; 3];
            let mut h = [[0.0; 3]; 3];
            for (row, label) in rows.iter().zip(y) {
                let x = [1.0, row[0], row[1]];
                let q = sigmoid(x.iter().zip(&p).map(|(a, b)| a * b).sum());
                for i in 0..3 {
                    g[i] += (q - label) * x[i];
                    for j in 0..3 {
                        h[i][j] += q * (1.0 - q) * x[i] * x[j];
                    }
                }
            }
            // Solve h · step = g by elimination.
            let mut a = [[0.0; 4]; 3];
            for i in 0..3 {
                a[i][..3].copy_from_slice(&h[i]);
                a[i][3] = g[i];
            }
            for i in 0..3 {
                for k in i + 1..3 {
                    let (pivot, f) = (a[i], a[k][i] / a[i][i]);
                    for (x, p) in a[k][i..].iter_mut().zip(&pivot[i..]) {
                        *x -= f * p;
                    }
                }
            }
            let mut step = [0.0; 3];
            for i in (0..3).rev() {
                let rest: f64 = (i + 1..3).map(|j| a[i][j] * step[j]).sum();
                step[i] = (a[i][3] - rest) / a[i][i];
            }
            for i in 0..3 {
                p[i] -= step[i];
            }
        }
        p
    }

    /// Two nearly collinear signals (correlation 0.995): a fixed number of
    /// gradient steps stops far from the optimum along the narrow valley;
    /// the fit must reach the exact maximum-likelihood coefficients.
    #[test]
    fn fits_to_convergence_on_ill_conditioned_data() {
        let mut state: u64 = 7;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state % 1_000_000) as f64 + 0.5) / 1_000_000.0
        };
        let mut normal = move || {
            let (u, v) = (uniform(), uniform());
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        };
        let examples: Vec<Example> = (0..4000)
            .map(|i| {
                let a = normal();
                let b = 0.995 * a + (1.0 - 0.995_f64.powi(2)).sqrt() * normal();
                let z = -0.5 + 1.0 * a - 1.44 * b;
                let churned = uniform_from(i) < sigmoid(z);
                Example {
                    numbers: BTreeMap::from([("a".to_owned(), a), ("b".to_owned(), b)]),
                    churned,
                    group: i.to_string(),
                    ..Default::default()
                }
            })
            .collect();
        let options = FitOptions {
            l2: 0.0,
            ..FitOptions::default()
        };
        let (model, convergence) = Model::fit_reporting(&examples, options);
        assert!(
            convergence.converged && convergence.iterations > 0,
            "{convergence:?}"
        );
        let rows: Vec<Vec<f64>> = examples
            .iter()
            .map(|e| model.encoding.encode(&e.numbers, &e.categories))
            .collect();
        let y: Vec<f64> = examples
            .iter()
            .map(|e| f64::from(u8::from(e.churned)))
            .collect();
        let exact = newton(&rows, &y);
        assert!(
            (model.intercept - exact[0]).abs() < 1e-3,
            "{model:?} vs {exact:?}"
        );
        for j in 0..2 {
            assert!(
                (model.coefficients[j] - exact[j + 1]).abs() < 1e-3,
                "{:?} vs {exact:?}",
                model.coefficients
            );
        }
    }
}
