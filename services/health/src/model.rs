//! Learned leading indicators: a regularised logistic regression of churn
//! on account signals, with the figures that say how far to trust it.
//!
//! Pure and deterministic: training data in, model and report out. Numbers
//! are standardised (mean 0, variance 1 on the training data), a signal's
//! absence is a feature of its own (`<signal>:missing`) and the value is
//! then imputed at the mean, categories are one-hot encoded
//! (`<signal>=<value>`). The optimiser is full-batch gradient descent on the
//! L2-penalised log loss, which is convex, so it needs no tuning beyond a
//! fixed step and iteration count.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One account's signals at the horizon before its renewal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Example {
    pub numbers: BTreeMap<String, f64>,
    pub categories: BTreeMap<String, String>,
    /// True when the account churned.
    pub churned: bool,
}

/// How signals become model inputs, fixed at training time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Encoding {
    /// Numeric signals with their training mean and standard deviation.
    pub numbers: Vec<(String, f64, f64)>,
    /// Numeric signals missing somewhere in training: they get an indicator.
    pub missing_indicators: Vec<String>,
    /// (signal, category) pairs seen in training.
    pub categories: Vec<(String, String)>,
}

impl Encoding {
    pub fn fit(examples: &[Example]) -> Self {
        let names: BTreeSet<&String> = examples.iter().flat_map(|e| e.numbers.keys()).collect();
        let mut numbers = Vec::new();
        let mut missing_indicators = Vec::new();
        for name in names {
            let values: Vec<f64> = examples
                .iter()
                .filter_map(|e| e.numbers.get(name).copied())
                .collect();
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            let variance =
                values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
            let sd = variance.sqrt();
            if values.len() < examples.len() {
                missing_indicators.push(name.clone());
            }
            // A constant signal carries nothing to learn from.
            if sd > 1e-12 {
                numbers.push((name.clone(), mean, sd));
            }
        }
        let categories: BTreeSet<(String, String)> = examples
            .iter()
            .flat_map(|e| e.categories.iter().map(|(k, v)| (k.clone(), v.clone())))
            .collect();
        Self {
            numbers,
            missing_indicators,
            categories: categories.into_iter().collect(),
        }
    }

    /// Names of the model's inputs, in order.
    pub fn feature_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.numbers.iter().map(|(n, _, _)| n.clone()).collect();
        names.extend(
            self.missing_indicators
                .iter()
                .map(|n| format!("{n}:missing")),
        );
        names.extend(self.categories.iter().map(|(k, v)| format!("{k}={v}")));
        names
    }

    pub fn encode(
        &self,
        numbers: &BTreeMap<String, f64>,
        categories: &BTreeMap<String, String>,
    ) -> Vec<f64> {
        let mut x: Vec<f64> = self
            .numbers
            .iter()
            .map(|(name, mean, sd)| numbers.get(name).map_or(0.0, |v| (v - mean) / sd))
            .collect();
        x.extend(
            self.missing_indicators
                .iter()
                .map(|n| if numbers.contains_key(n) { 0.0 } else { 1.0 }),
        );
        x.extend(self.categories.iter().map(|(k, v)| {
            if categories.get(k) == Some(v) {
                1.0
            } else {
                0.0
            }
        }));
        x
    }
}

/// A fitted model: intercept and one coefficient per encoded feature.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub encoding: Encoding,
    pub intercept: f64,
    pub coefficients: Vec<f64>,
}

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// Settings of a fit.
#[derive(Clone, Copy, Debug)]
pub struct FitOptions {
    /// L2 penalty on the coefficients (not the intercept).
    pub l2: f64,
    pub iterations: usize,
    pub step: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            l2: 0.01,
            iterations: 2_000,
            step: 0.5,
        }
    }
}

/// Fits weights to encoded rows `x` with labels `y` (1 = churned).
fn fit_weights(x: &[Vec<f64>], y: &[f64], options: FitOptions) -> (f64, Vec<f64>) {
    let n = x.len().max(1) as f64;
    let width = x.first().map_or(0, Vec::len);
    let (mut intercept, mut weights) = (0.0, vec![0.0; width]);
    for _ in 0..options.iterations {
        let mut grad_intercept = 0.0;
        let mut grad = vec![0.0; width];
        for (row, label) in x.iter().zip(y) {
            let z = intercept + row.iter().zip(&weights).map(|(a, b)| a * b).sum::<f64>();
            let error = sigmoid(z) - label;
            grad_intercept += error;
            for (g, v) in grad.iter_mut().zip(row) {
                *g += error * v;
            }
        }
        intercept -= options.step * grad_intercept / n;
        for (w, g) in weights.iter_mut().zip(&grad) {
            *w -= options.step * (g / n + options.l2 * *w);
        }
    }
    (intercept, weights)
}

impl Model {
    pub fn fit(examples: &[Example], options: FitOptions) -> Self {
        let encoding = Encoding::fit(examples);
        let x: Vec<Vec<f64>> = examples
            .iter()
            .map(|e| encoding.encode(&e.numbers, &e.categories))
            .collect();
        let y: Vec<f64> = examples
            .iter()
            .map(|e| if e.churned { 1.0 } else { 0.0 })
            .collect();
        let (intercept, coefficients) = fit_weights(&x, &y, options);
        Self {
            encoding,
            intercept,
            coefficients,
        }
    }

    /// Churn probability, with each feature's contribution to the log-odds.
    pub fn predict(
        &self,
        numbers: &BTreeMap<String, f64>,
        categories: &BTreeMap<String, String>,
    ) -> (f64, Vec<(String, f64)>) {
        let x = self.encoding.encode(numbers, categories);
        let contributions: Vec<(String, f64)> = self
            .encoding
            .feature_names()
            .into_iter()
            .zip(x.iter().zip(&self.coefficients).map(|(v, w)| v * w))
            .collect();
        let z = self.intercept + contributions.iter().map(|(_, c)| c).sum::<f64>();
        (sigmoid(z), contributions)
    }
}

/// Area under the ROC curve: the chance a random churner scores above a
/// random renewer (ties count half). `None` without both classes.
pub fn auc(scores: &[f64], churned: &[bool]) -> Option<f64> {
    let positives: Vec<f64> = scores
        .iter()
        .zip(churned)
        .filter(|(_, c)| **c)
        .map(|(s, _)| *s)
        .collect();
    let negatives: Vec<f64> = scores
        .iter()
        .zip(churned)
        .filter(|(_, c)| !**c)
        .map(|(s, _)| *s)
        .collect();
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let mut wins = 0.0;
    for p in &positives {
        for q in &negatives {
            wins += if p > q {
                1.0
            } else if p == q {
                0.5
            } else {
                0.0
            };
        }
    }
    Some(wins / (positives.len() * negatives.len()) as f64)
}

/// Mean squared error of probabilities against outcomes.
pub fn brier(probabilities: &[f64], churned: &[bool]) -> f64 {
    let n = probabilities.len().max(1) as f64;
    probabilities
        .iter()
        .zip(churned)
        .map(|(p, c)| (p - if *c { 1.0 } else { 0.0 }).powi(2))
        .sum::<f64>()
        / n
}

/// Out-of-fold predictions of a `folds`-fold cross-validation (fold `i`
/// holds every `folds`-th example from `i`), for AUC and Brier score.
pub fn cross_validate(examples: &[Example], folds: usize, options: FitOptions) -> Vec<f64> {
    let folds = folds.clamp(2, examples.len().max(2));
    let mut predictions = vec![0.0; examples.len()];
    for fold in 0..folds {
        let train: Vec<Example> = examples
            .iter()
            .enumerate()
            .filter(|(i, _)| i % folds != fold)
            .map(|(_, e)| e.clone())
            .collect();
        let model = Model::fit(&train, options);
        for (i, example) in examples
            .iter()
            .enumerate()
            .filter(|(i, _)| i % folds == fold)
        {
            predictions[i] = model.predict(&example.numbers, &example.categories).0;
        }
    }
    predictions
}

/// Per feature: how much likelier churn is when the feature is high (above
/// its median; for indicators, set) than overall. `None` when undefined.
pub fn univariate_lift(model: &Model, examples: &[Example]) -> Vec<Option<f64>> {
    let base = examples.iter().filter(|e| e.churned).count() as f64 / examples.len().max(1) as f64;
    let rows: Vec<Vec<f64>> = examples
        .iter()
        .map(|e| model.encoding.encode(&e.numbers, &e.categories))
        .collect();
    (0..model.coefficients.len())
        .map(|j| {
            let mut column: Vec<f64> = rows.iter().map(|r| r[j]).collect();
            column.sort_by(f64::total_cmp);
            let median = column[column.len() / 2];
            let high: Vec<bool> = rows
                .iter()
                .zip(examples)
                .filter(|(r, _)| r[j] > median || (r[j] == 1.0 && median == 0.0))
                .map(|(_, e)| e.churned)
                .collect();
            if high.is_empty() || base == 0.0 {
                return None;
            }
            Some(high.iter().filter(|c| **c).count() as f64 / high.len() as f64 / base)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Churn driven by two hidden signals; the rest is noise.
    fn generated(n: usize) -> Vec<Example> {
        let mut state: u64 = 42;
        let mut uniform = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1_000_000) as f64 / 1_000_000.0
        };
        (0..n)
            .map(|_| {
                let p1_tickets = (uniform() * 4.0).floor();
                let utilization = uniform() * 100.0;
                let noise = uniform() * 50.0;
                let z = -1.0 + 1.2 * p1_tickets - 0.05 * (utilization - 50.0);
                let churned = uniform() < sigmoid(z);
                let mut numbers = BTreeMap::from([
                    ("open_tickets_p1".to_owned(), p1_tickets),
                    ("license_utilization_pct".to_owned(), utilization),
                    ("noise".to_owned(), noise),
                ]);
                if uniform() < 0.2 {
                    numbers.remove("noise");
                }
                let tier = if uniform() < 0.5 { "gold" } else { "silver" };
                Example {
                    numbers,
                    categories: BTreeMap::from([("tier".to_owned(), tier.to_owned())]),
                    churned,
                }
            })
            .collect()
    }

    #[test]
    fn finds_the_hidden_drivers_and_separates_churners() {
        let examples = generated(800);
        let model = Model::fit(&examples, FitOptions::default());
        let names = model.encoding.feature_names();
        let mut ranked: Vec<(&String, f64)> = names
            .iter()
            .zip(model.coefficients.iter().map(|c| c.abs()))
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: BTreeSet<&str> = ranked[..2].iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            top,
            BTreeSet::from(["license_utilization_pct", "open_tickets_p1"])
        );
        let p1 = names.iter().position(|n| n == "open_tickets_p1").unwrap();
        assert!(model.coefficients[p1] > 0.0, "more P1 tickets, more churn");

        let predictions = cross_validate(&examples, 5, FitOptions::default());
        let churned: Vec<bool> = examples.iter().map(|e| e.churned).collect();
        let auc = auc(&predictions, &churned).unwrap();
        assert!(auc > 0.8, "cross-validated AUC {auc}");
        assert!(brier(&predictions, &churned) < 0.2);
        let lift = univariate_lift(&model, &examples);
        assert!(lift[p1].unwrap() > 1.2);
    }

    #[test]
    fn encodes_missing_values_and_categories_explicitly() {
        let examples = generated(50);
        let encoding = Encoding::fit(&examples);
        let names = encoding.feature_names();
        assert!(names.contains(&"noise:missing".to_owned()));
        assert!(names.contains(&"tier=gold".to_owned()));
        let x = encoding.encode(&BTreeMap::new(), &BTreeMap::new());
        let missing = names.iter().position(|n| n == "noise:missing").unwrap();
        assert_eq!(x[missing], 1.0);
        assert_eq!(x[0], 0.0, "a missing number is imputed at the mean");
    }

    #[test]
    fn auc_and_brier_on_known_figures() {
        assert_eq!(
            auc(&[0.9, 0.8, 0.3, 0.1], &[true, true, false, false]),
            Some(1.0)
        );
        assert_eq!(auc(&[0.1, 0.9], &[true, false]), Some(0.0));
        assert_eq!(auc(&[0.5, 0.5], &[true, false]), Some(0.5));
        assert_eq!(auc(&[0.5], &[true]), None);
        assert!((brier(&[1.0, 0.0, 0.5], &[true, false, true]) - 0.25 / 3.0).abs() < 1e-12);
    }
}
