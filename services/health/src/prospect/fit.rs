//! Prospect fit's domain core: what past customers' first terms teach, and
//! how a prospect is judged by it. Pure: past customers in, a fit out; a
//! prospect in, its score out.
//!
//! Two regularised logistic models of churn at the first term end
//! ([`crate::model`]): the fit model reads only what is known before signing
//! ([`Firmographics`]); the indicator model reads the same plus the leading
//! indicators at the look day, for the customers still paying then.
//! Look-alike groups keep, per segment and industry, how many renewed and
//! the mean of each indicator at the look day, over all of them, those who
//! renewed and those who did not.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Example, FitOptions, Model};

/// Fewest past customers a look-alike group needs to be used, and fewest
/// of them that churned while paying at the look day (to compare with).
pub const MIN_LOOK_ALIKES: u32 = 30;
pub const MIN_CHURNED: u32 = 10;
/// Welch's t beyond which renewed and churned look-alikes differ on an
/// indicator (two-sided, about 5 % by chance on large groups).
const MIN_T: f64 = 1.96;
/// Gaps reported per prospect.
const MAX_GAPS: usize = 5;
/// Reasons reported per prospect.
const MAX_REASONS: usize = 5;

/// What is known of a company before it signs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Firmographics {
    pub segment: String,
    pub industry: String,
    pub seats: f64,
    /// Annual recurring revenue of the plan, in minor units (currencies are
    /// not converted).
    pub arr_minor: f64,
    pub term_months: f64,
    /// Account attributes by name (without the `attributes.` prefix).
    pub numbers: BTreeMap<String, f64>,
    pub categories: BTreeMap<String, String>,
}

impl Firmographics {
    /// The model inputs: sizes on a log scale, categories one-hot.
    pub fn features(&self) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
        let mut numbers = BTreeMap::from([
            ("ln_seats".to_owned(), self.seats.max(0.0).ln_1p()),
            ("ln_arr".to_owned(), self.arr_minor.max(0.0).ln_1p()),
            ("term_months".to_owned(), self.term_months),
        ]);
        numbers.extend(
            self.numbers
                .iter()
                .map(|(name, value)| (format!("attributes.{name}"), *value)),
        );
        let mut categories: BTreeMap<String, String> = self
            .categories
            .iter()
            .map(|(name, value)| (format!("attributes.{name}"), value.clone()))
            .collect();
        for (name, value) in [("segment", &self.segment), ("industry", &self.industry)] {
            if !value.is_empty() {
                categories.insert(name.to_owned(), value.clone());
            }
        }
        (numbers, categories)
    }
}

/// A past customer's first term.
#[derive(Clone, Debug, PartialEq)]
pub struct PastCustomer {
    pub account_id: String,
    pub firmographics: Firmographics,
    pub renewed: bool,
    /// Leading indicators at the look day; `None` when it paid nothing then.
    pub indicators: Option<BTreeMap<String, f64>>,
}

impl PastCustomer {
    fn example(&self, with_indicators: bool) -> Example {
        let (mut numbers, categories) = self.firmographics.features();
        if with_indicators {
            numbers.extend(
                self.indicators
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), *v)),
            );
        }
        Example {
            numbers,
            categories,
            churned: !self.renewed,
            group: self.account_id.clone(),
        }
    }
}

/// Sums, sums of squares and counts of each indicator over some customers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Means {
    pub sums: BTreeMap<String, (f64, f64, u32)>,
}

impl Means {
    fn add(&mut self, indicators: &BTreeMap<String, f64>) {
        for (name, value) in indicators {
            let entry = self.sums.entry(name.clone()).or_default();
            entry.0 += value;
            entry.1 += value * value;
            entry.2 += 1;
        }
    }

    pub fn mean(&self, name: &str) -> Option<f64> {
        self.sums
            .get(name)
            .filter(|(_, _, n)| *n > 0)
            .map(|(sum, _, n)| sum / f64::from(*n))
    }

    /// Mean, sample variance and count, with two values or more.
    fn spread(&self, name: &str) -> Option<(f64, f64, f64)> {
        let (sum, squares, n) = *self.sums.get(name)?;
        let n = f64::from(n);
        (n >= 2.0).then(|| {
            let mean = sum / n;
            (mean, ((squares - n * mean * mean) / (n - 1.0)).max(0.0), n)
        })
    }

    fn means(&self) -> BTreeMap<String, f64> {
        self.sums
            .keys()
            .filter_map(|name| Some((name.clone(), self.mean(name)?)))
            .collect()
    }
}

/// Whether two groups' means of `name` differ beyond chance: Welch's t of
/// at least [`MIN_T`] (means that differ with no spread at all count too).
fn differ(a: &Means, b: &Means, name: &str) -> bool {
    let (Some((mean_a, var_a, n_a)), Some((mean_b, var_b, n_b))) = (a.spread(name), b.spread(name))
    else {
        return false;
    };
    let error = (var_a / n_a + var_b / n_b).sqrt();
    if error == 0.0 {
        return mean_a != mean_b;
    }
    ((mean_a - mean_b) / error).abs() >= MIN_T
}

/// Past customers alike in segment and industry (`None`: any).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub segment: Option<String>,
    pub industry: Option<String>,
    pub customers: u32,
    pub renewed: u32,
    /// Those that churned while paying at the look day.
    pub churned_at_look_count: u32,
    /// Indicators at the look day of those paying then, and of those of
    /// them who renewed or did not.
    pub at_look: Means,
    pub renewed_at_look: Means,
    pub churned_at_look: Means,
}

impl Group {
    fn add(&mut self, customer: &PastCustomer) {
        self.customers += 1;
        if customer.renewed {
            self.renewed += 1;
        }
        if let Some(indicators) = &customer.indicators {
            self.at_look.add(indicators);
            if customer.renewed {
                self.renewed_at_look.add(indicators);
            } else {
                self.churned_at_look_count += 1;
                self.churned_at_look.add(indicators);
            }
        }
    }

    /// E.g. "segment=mid-market, industry=retail", or "every customer".
    pub fn describe(&self) -> String {
        let parts: Vec<String> = [("segment", &self.segment), ("industry", &self.industry)]
            .into_iter()
            .filter_map(|(name, value)| Some(format!("{name}={}", value.as_ref()?)))
            .collect();
        if parts.is_empty() {
            "every customer".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// What was learned, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProspectFit {
    pub fit: Model,
    pub indicators: Model,
    /// By (segment, industry); segment-wide groups have no industry, the
    /// last group has neither.
    pub groups: Vec<Group>,
}

/// How far to trust a model: cross-validated predictions beside the truth.
#[derive(Clone, Debug, Default)]
pub struct Validation {
    pub examples: Vec<Example>,
    pub predictions: Vec<f64>,
    pub converged: bool,
}

/// A leading indicator on which renewed look-alikes stood apart.
#[derive(Clone, Debug, PartialEq)]
pub struct Gap {
    pub signal: String,
    pub look_alike_value: f64,
    pub renewed_value: f64,
    pub churned_value: f64,
    /// The indicator model's renewal probability with the indicator at the
    /// renewed look-alikes' mean, and at the churned ones', the others at
    /// the look-alikes' means.
    pub renewal_probability_if_reached: f64,
    pub renewal_probability_if_missed: f64,
}

impl Gap {
    /// What the indicator is worth: the swing between the two levels.
    pub fn swing(&self) -> f64 {
        self.renewal_probability_if_reached - self.renewal_probability_if_missed
    }
}

/// A prospect judged.
#[derive(Clone, Debug, PartialEq)]
pub struct Score {
    pub renewal_probability: f64,
    /// (feature, contribution to the log-odds of churn), largest first.
    pub reasons: Vec<(String, f64)>,
    pub look_alikes: String,
    pub look_alike_count: u32,
    pub look_alike_renewal_rate_pct: Option<f64>,
    pub renewal_probability_at_look: f64,
    pub gaps: Vec<Gap>,
    pub renewal_probability_if_gaps_closed: f64,
}

/// Why nothing can be learned.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LearnError {
    #[error(
        "prospect fit needs at least {needed} first terms with both renewals and churns{what}; found {found} with {churns} churns"
    )]
    TooFew {
        needed: usize,
        found: usize,
        churns: usize,
        what: &'static str,
    },
}

fn enough(examples: &[Example], needed: usize, what: &'static str) -> Result<(), LearnError> {
    let churns = examples.iter().filter(|e| e.churned).count();
    if examples.len() >= needed && churns > 0 && churns < examples.len() {
        Ok(())
    } else {
        Err(LearnError::TooFew {
            needed,
            found: examples.len(),
            churns,
            what,
        })
    }
}

impl ProspectFit {
    /// Learns both models and the look-alike groups, with the
    /// cross-validation of each model (fit, indicators).
    pub fn learn(
        customers: &[PastCustomer],
        options: FitOptions,
        min_examples: usize,
    ) -> Result<(Self, Validation, Validation), LearnError> {
        let fit_examples: Vec<Example> = customers.iter().map(|c| c.example(false)).collect();
        enough(&fit_examples, min_examples, "")?;
        let indicator_examples: Vec<Example> = customers
            .iter()
            .filter(|c| c.indicators.is_some())
            .map(|c| c.example(true))
            .collect();
        enough(
            &indicator_examples,
            min_examples,
            " still paying at the look day",
        )?;
        let (fit, fit_convergence) = Model::fit_reporting(&fit_examples, options);
        let (indicators, indicator_convergence) =
            Model::fit_reporting(&indicator_examples, options);
        let fit_validation = Validation {
            predictions: crate::model::cross_validate(&fit_examples, 5, options),
            examples: fit_examples,
            converged: fit_convergence.converged,
        };
        let indicator_validation = Validation {
            predictions: crate::model::cross_validate(&indicator_examples, 5, options),
            examples: indicator_examples,
            converged: indicator_convergence.converged,
        };
        let mut groups: BTreeMap<(Option<String>, Option<String>), Group> = BTreeMap::new();
        for customer in customers {
            let segment = customer.firmographics.segment.clone();
            let industry = customer.firmographics.industry.clone();
            for key in [
                (Some(segment.clone()), Some(industry)),
                (Some(segment), None),
                (None, None),
            ] {
                groups
                    .entry(key.clone())
                    .or_insert_with(|| Group {
                        segment: key.0,
                        industry: key.1,
                        ..Group::default()
                    })
                    .add(customer);
            }
        }
        let fit = Self {
            fit,
            indicators,
            groups: groups.into_values().collect(),
        };
        Ok((fit, fit_validation, indicator_validation))
    }

    /// The look-alikes of a prospect: its segment and industry, else its
    /// segment, else every customer; a group is used once it holds
    /// [`MIN_LOOK_ALIKES`] customers, [`MIN_CHURNED`] of them churned while
    /// paying at the look day.
    pub fn look_alikes(&self, prospect: &Firmographics) -> Option<&Group> {
        let find = |segment: Option<&str>, industry: Option<&str>| {
            self.groups.iter().find(|g| {
                g.segment.as_deref() == segment
                    && g.industry.as_deref() == industry
                    && g.customers >= MIN_LOOK_ALIKES
                    && g.churned_at_look_count >= MIN_CHURNED
            })
        };
        find(Some(&prospect.segment), Some(&prospect.industry))
            .or_else(|| find(Some(&prospect.segment), None))
            .or_else(|| self.groups.iter().find(|g| g.segment.is_none()))
    }

    fn renewal_at(
        &self,
        numbers: &BTreeMap<String, f64>,
        categories: &BTreeMap<String, String>,
    ) -> f64 {
        1.0 - self.indicators.predict(numbers, categories).0
    }

    pub fn score(&self, prospect: &Firmographics) -> Score {
        let (numbers, categories) = prospect.features();
        let (churn, contributions) = self.fit.predict(&numbers, &categories);
        let mut reasons: Vec<(String, f64)> = contributions
            .into_iter()
            .filter(|(_, c)| c.abs() > 1e-9)
            .collect();
        reasons.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        reasons.truncate(MAX_REASONS);

        let group = self.look_alikes(prospect);
        let typical = group.map(|g| g.at_look.means()).unwrap_or_default();
        let mut at_look = numbers.clone();
        at_look.extend(typical.iter().map(|(k, v)| (k.clone(), *v)));
        let base = self.renewal_at(&at_look, &categories);
        let mut gaps: Vec<Gap> = Vec::new();
        if let Some(group) = group {
            let at = |signal: &str, value: f64| {
                let mut values = at_look.clone();
                values.insert(signal.to_owned(), value);
                self.renewal_at(&values, &categories)
            };
            for (signal, look_alike_value) in &typical {
                let (Some(renewed_value), Some(churned_value)) = (
                    group.renewed_at_look.mean(signal),
                    group.churned_at_look.mean(signal),
                ) else {
                    continue;
                };
                let gap = Gap {
                    signal: signal.clone(),
                    look_alike_value: *look_alike_value,
                    renewed_value,
                    churned_value,
                    renewal_probability_if_reached: at(signal, renewed_value),
                    renewal_probability_if_missed: at(signal, churned_value),
                };
                // A gap is named when renewed and churned look-alikes
                // differ beyond chance and the model bears it out (by a
                // tenth of a point or more).
                let real = differ(&group.renewed_at_look, &group.churned_at_look, signal);
                if real && gap.swing() >= 0.001 {
                    gaps.push(gap);
                }
            }
        }
        gaps.sort_by(|a, b| {
            b.swing()
                .total_cmp(&a.swing())
                .then_with(|| a.signal.cmp(&b.signal))
        });
        gaps.truncate(MAX_GAPS);
        let mut closed = at_look.clone();
        closed.extend(gaps.iter().map(|g| (g.signal.clone(), g.renewed_value)));
        Score {
            renewal_probability: 1.0 - churn,
            reasons,
            look_alikes: group.map_or_else(|| "no customer".to_owned(), Group::describe),
            look_alike_count: group.map_or(0, |g| g.customers),
            look_alike_renewal_rate_pct: group
                .and_then(|g| crate::model::renewal_rate_pct(g.customers, g.renewed)),
            renewal_probability_at_look: base,
            renewal_probability_if_gaps_closed: self.renewal_at(&closed, &categories),
            gaps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::sigmoid;
    use crate::model::tests::uniform_from;

    /// Enterprise customers renew more; so do those using advanced features
    /// at the look day; industry and a noise indicator mean nothing.
    fn customers(n: usize) -> Vec<PastCustomer> {
        (0..n)
            .map(|i| {
                let u = |k: usize| uniform_from(i * 7 + k);
                let enterprise = u(0) < 0.4;
                let advanced = (u(1) * 6.0).floor();
                let z = if enterprise { -2.5 } else { -0.8 } - 0.45 * (advanced - 3.0);
                let renewed = u(2) >= sigmoid(z);
                let paying = u(3) < 0.9;
                PastCustomer {
                    account_id: format!("a{i}"),
                    firmographics: Firmographics {
                        segment: if enterprise { "enterprise" } else { "smb" }.into(),
                        industry: ["retail", "media"][i % 2].into(),
                        seats: if enterprise { 50.0 } else { 5.0 } + u(4) * 10.0,
                        arr_minor: 1_000_000.0 * (1.0 + u(5)),
                        term_months: 12.0,
                        ..Firmographics::default()
                    },
                    renewed: renewed && paying,
                    indicators: paying.then(|| {
                        BTreeMap::from([
                            ("advanced_features_used_30d".to_owned(), advanced),
                            ("noise".to_owned(), u(6) * 10.0),
                        ])
                    }),
                }
            })
            .collect()
    }

    #[test]
    fn learns_who_renews_and_names_the_gap_that_matters() {
        let past = customers(1200);
        let (fit, fit_cv, indicator_cv) =
            ProspectFit::learn(&past, FitOptions::default(), 10).unwrap();
        let churned: Vec<bool> = indicator_cv.examples.iter().map(|e| e.churned).collect();
        let auc = crate::model::auc(&indicator_cv.predictions, &churned).unwrap();
        assert!(auc > 0.65, "indicator AUC {auc}");
        assert!(fit_cv.converged && indicator_cv.converged);

        let prospect = |segment: &str, seats: f64| Firmographics {
            segment: segment.into(),
            industry: "retail".into(),
            seats,
            arr_minor: 1_500_000.0,
            term_months: 12.0,
            ..Firmographics::default()
        };
        let big = fit.score(&prospect("enterprise", 55.0));
        let small = fit.score(&prospect("smb", 8.0));
        assert!(
            big.renewal_probability > small.renewal_probability + 0.1,
            "{big:?} against {small:?}"
        );
        assert_eq!(small.look_alikes, "segment=smb, industry=retail");
        assert!(small.look_alike_count >= MIN_LOOK_ALIKES);
        let rate = small.look_alike_renewal_rate_pct.unwrap();
        assert!((30.0..90.0).contains(&rate), "{rate}");
        // The gap is advanced adoption: renewed look-alikes used more.
        let gap = &small.gaps[0];
        assert_eq!(gap.signal, "advanced_features_used_30d", "{small:?}");
        assert!(
            small.gaps.iter().all(|g| g.signal != "noise"),
            "noise is no gap: {small:?}"
        );
        assert!(gap.renewed_value > gap.look_alike_value);
        assert!(gap.churned_value < gap.look_alike_value);
        assert!(gap.renewal_probability_if_reached > small.renewal_probability_at_look);
        assert!(gap.renewal_probability_if_missed < small.renewal_probability_at_look);
        assert!(small.renewal_probability_if_gaps_closed >= gap.renewal_probability_if_reached);
        assert!(small.reasons.len() <= MAX_REASONS && !small.reasons.is_empty());

        // An unknown segment is compared with every customer.
        let stranger = fit.score(&prospect("public-sector", 10.0));
        assert_eq!(stranger.look_alikes, "every customer");
        assert_eq!(stranger.look_alike_count, 1200);
    }

    #[test]
    fn refuses_to_learn_from_too_little() {
        let past = customers(5);
        assert!(matches!(
            ProspectFit::learn(&past, FitOptions::default(), 10),
            Err(LearnError::TooFew { found: 5, .. })
        ));
    }

    #[test]
    fn firmographics_become_named_features() {
        let (numbers, categories) = Firmographics {
            segment: "smb".into(),
            seats: 4.0,
            numbers: BTreeMap::from([("employees".into(), 40.0)]),
            categories: BTreeMap::from([("use_case".into(), "analytics".into())]),
            ..Firmographics::default()
        }
        .features();
        assert_eq!(numbers["ln_seats"], 5.0_f64.ln());
        assert_eq!(numbers["attributes.employees"], 40.0);
        assert_eq!(categories["attributes.use_case"], "analytics");
        assert_eq!(categories["segment"], "smb");
        assert!(!categories.contains_key("industry"), "empty is unknown");
    }
}
