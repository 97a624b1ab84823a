//! How far to trust a model: AUC, Brier score, grouped cross-validation
//! and each feature's lift.

use std::collections::{BTreeMap, BTreeSet};

use super::{Example, FitOptions, Model};

/// The share of `count` accounts that renewed, in percent; none of none.
pub fn renewal_rate_pct(count: u32, renewed: u32) -> Option<f64> {
    (count > 0).then(|| f64::from(renewed) / f64::from(count) * 100.0)
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

/// Out-of-fold predictions of a `folds`-fold cross-validation, for AUC and
/// Brier score. Folds are grouped: every example of a group (an account
/// with several renewals) is in the same fold, so the model is never
/// scored on an account it was trained on. Groups are dealt to folds in
/// their sorted order.
pub fn cross_validate(examples: &[Example], folds: usize, options: FitOptions) -> Vec<f64> {
    let groups: BTreeSet<&str> = examples.iter().map(|e| e.group.as_str()).collect();
    let folds = folds.clamp(2, groups.len().max(2));
    let fold_of: BTreeMap<&str, usize> = groups
        .into_iter()
        .enumerate()
        .map(|(i, g)| (g, i % folds))
        .collect();
    let fold = |e: &Example| fold_of[e.group.as_str()];
    let mut predictions = vec![0.0; examples.len()];
    for k in 0..folds {
        let train: Vec<Example> = examples.iter().filter(|e| fold(e) != k).cloned().collect();
        if train.is_empty() {
            continue;
        }
        let model = Model::fit(&train, options);
        for (i, example) in examples.iter().enumerate().filter(|(_, e)| fold(e) == k) {
            predictions[i] = model.predict(&example.numbers, &example.categories).0;
        }
    }
    predictions
}

/// Per feature: how much likelier churn is when it is high. An indicator
/// (only 0 and 1 seen) compares the churn rate when set with the rate when
/// not set; a number compares its top quarter of values with its bottom
/// quarter. `None` when a side is empty or the low side never churned.
pub fn univariate_lift(model: &Model, examples: &[Example]) -> Vec<Option<f64>> {
    let rows: Vec<Vec<f64>> = examples
        .iter()
        .map(|e| model.encoding.encode(&e.numbers, &e.categories))
        .collect();
    let rate = |side: &dyn Fn(f64) -> bool, j: usize| -> Option<f64> {
        let picked: Vec<bool> = rows
            .iter()
            .zip(examples)
            .filter(|(r, _)| side(r[j]))
            .map(|(_, e)| e.churned)
            .collect();
        (!picked.is_empty())
            .then(|| picked.iter().filter(|c| **c).count() as f64 / picked.len() as f64)
    };
    (0..model.coefficients.len())
        .map(|j| {
            let mut column: Vec<f64> = rows.iter().map(|r| r[j]).collect();
            column.sort_by(f64::total_cmp);
            let indicator = column.iter().all(|v| *v == 0.0 || *v == 1.0);
            let (high, low) = if indicator {
                (rate(&|v| v == 1.0, j)?, rate(&|v| v == 0.0, j)?)
            } else {
                let q1 = column[column.len() / 4];
                let q3 = column[column.len() * 3 / 4];
                if q1 < q3 {
                    (rate(&|v| v >= q3, j)?, rate(&|v| v <= q1, j)?)
                } else {
                    // Most values tied: above the tie against the tie.
                    (rate(&|v| v > q1, j)?, rate(&|v| v <= q1, j)?)
                }
            };
            (low > 0.0).then(|| high / low)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn a_renewal_rate_is_a_percentage_of_some() {
        assert_eq!(renewal_rate_pct(8, 6), Some(75.0));
        assert_eq!(renewal_rate_pct(3, 0), Some(0.0));
        assert_eq!(renewal_rate_pct(0, 0), None);
    }
    use crate::model::tests::uniform_from;

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

    /// Accounts renewing twice with the same signals and outcome, and a
    /// category naming the account: folds that split an account let the
    /// model recognise it; grouped folds must not.
    #[test]
    fn cross_validation_keeps_an_account_in_one_fold() {
        let examples: Vec<Example> = (0..400)
            .map(|i| {
                let account = i / 2;
                Example {
                    categories: BTreeMap::from([("id".to_owned(), account.to_string())]),
                    churned: uniform_from(account) < 0.3,
                    group: account.to_string(),
                    ..Default::default()
                }
            })
            .collect();
        let predictions = cross_validate(&examples, 5, FitOptions::default());
        let churned: Vec<bool> = examples.iter().map(|e| e.churned).collect();
        let auc = auc(&predictions, &churned).unwrap();
        assert!(
            auc < 0.65,
            "an account seen in training inflates AUC to {auc}"
        );
    }

    /// Month-to-month contracts in 70 % of the rows: churn 30 % with one,
    /// 10 % without, a lift of 3 (a median split cannot see it).
    #[test]
    fn lift_of_an_indicator_set_in_most_rows() {
        let examples: Vec<Example> = (0..1000)
            .map(|i| {
                let monthly = i < 700;
                let churned = if monthly { i % 10 < 3 } else { i % 10 < 1 };
                Example {
                    numbers: BTreeMap::from([("seats".to_owned(), (i % 97) as f64)]),
                    categories: BTreeMap::from([(
                        "contract".to_owned(),
                        if monthly { "monthly" } else { "annual" }.to_owned(),
                    )]),
                    churned,
                    group: i.to_string(),
                }
            })
            .collect();
        let model = Model::fit(&examples, FitOptions::default());
        let names = model.encoding.feature_names();
        let lift = univariate_lift(&model, &examples);
        let monthly = names.iter().position(|n| n == "contract=monthly").unwrap();
        assert!(
            (lift[monthly].unwrap() - 3.0).abs() < 1e-12,
            "{:?}",
            lift[monthly]
        );
        let annual = names.iter().position(|n| n == "contract=annual").unwrap();
        assert!((lift[annual].unwrap() - 1.0 / 3.0).abs() < 1e-12);
    }
}
