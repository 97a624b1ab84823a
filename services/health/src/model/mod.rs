//! Learned leading indicators: a regularised logistic regression of churn
//! on account signals, with the figures that say how far to trust it.
//!
//! Pure and deterministic: training data in, model and report out. Numbers
//! are standardised (mean 0, variance 1 on the training data), a signal's
//! absence is a feature of its own (`<signal>:missing`) and the value is
//! then imputed at the mean, categories are one-hot encoded
//! (`<signal>=<value>`). The L2-penalised mean log loss is convex; argmin's
//! L-BFGS minimises it until the gradient's norm is under a stated
//! tolerance, and the fit reports whether it got there ([`fit`]). How far
//! to trust it: cross-validation grouped by account, AUC, Brier score and
//! each feature's lift ([`evaluate`]).

mod evaluate;
mod fit;

pub use evaluate::{auc, brier, cross_validate, renewal_rate_pct, univariate_lift};
pub use fit::{Convergence, FitOptions};

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One account's signals at the horizon before its renewal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Example {
    pub numbers: BTreeMap<String, f64>,
    pub categories: BTreeMap<String, String>,
    /// True when the account churned.
    pub churned: bool,
    /// Examples of one group (an account) stay in one cross-validation fold.
    pub group: String,
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

pub(crate) fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

impl Model {
    pub fn fit(examples: &[Example], options: FitOptions) -> Self {
        Self::fit_reporting(examples, options).0
    }

    /// Fits and says how the fit ended.
    pub fn fit_reporting(examples: &[Example], options: FitOptions) -> (Self, Convergence) {
        let encoding = Encoding::fit(examples);
        let x: Vec<Vec<f64>> = examples
            .iter()
            .map(|e| encoding.encode(&e.numbers, &e.categories))
            .collect();
        let y: Vec<f64> = examples
            .iter()
            .map(|e| if e.churned { 1.0 } else { 0.0 })
            .collect();
        let (intercept, coefficients, convergence) = fit::fit_weights(&x, &y, options);
        let model = Self {
            encoding,
            intercept,
            coefficients,
        };
        (model, convergence)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn generated(n: usize) -> Vec<Example> {
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
                    group: format!("{}", uniform()),
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

    /// A fixed pseudo-random draw per example, independent of the others.
    pub(crate) fn uniform_from(i: usize) -> f64 {
        let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 29;
        (x % 1_000_000) as f64 / 1_000_000.0
    }
}
