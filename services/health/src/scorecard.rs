//! Scorecards and the scoring of an account's signals: measures in groups,
//! each mapping a raw signal to 0-100 by a rule and weighted; measures
//! without data are left out and the others' weights renormalised.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a raw value becomes a 0-100 score.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// `(at_least, score)` steps in ascending `at_least`; below all: 0.
    Thresholds(Vec<(f64, f64)>),
    /// 0 at `worst`, 100 at `best`, linear between, clamped.
    Linear { worst: f64, best: f64 },
}

impl Rule {
    pub fn score(&self, value: f64) -> f64 {
        match self {
            Rule::Thresholds(steps) => steps
                .iter()
                .rev()
                .find(|(at_least, _)| value >= *at_least)
                .map_or(0.0, |(_, score)| *score),
            Rule::Linear { worst, best } => {
                ((value - worst) / (best - worst) * 100.0).clamp(0.0, 100.0)
            }
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MeasureDef {
    pub name: String,
    pub signal: String,
    pub weight: f64,
    pub rule: Rule,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct GroupDef {
    pub name: String,
    pub measures: Vec<MeasureDef>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct BandCuts {
    pub yellow_from: f64,
    pub green_from: f64,
}

impl Default for BandCuts {
    fn default() -> Self {
        Self {
            yellow_from: 40.0,
            green_from: 70.0,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Band {
    Red = 1,
    Yellow = 2,
    Green = 3,
}

impl BandCuts {
    pub fn band(&self, score: f64) -> Band {
        if score >= self.green_from {
            Band::Green
        } else if score >= self.yellow_from {
            Band::Yellow
        } else {
            Band::Red
        }
    }
}

/// A scorecard's content (its name and version are kept beside it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ScorecardDef {
    pub segment: String,
    pub groups: Vec<GroupDef>,
    pub bands: BandCuts,
}

#[derive(Clone, Debug, PartialEq)]
pub struct MeasureResult {
    pub group: String,
    pub name: String,
    pub signal: String,
    pub raw_value: Option<f64>,
    pub score: Option<f64>,
    pub weight: f64,
    pub effective_weight: f64,
    pub contribution: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupResult {
    pub name: String,
    pub score: Option<f64>,
    pub contribution: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub score: f64,
    pub band: Band,
    pub groups: Vec<GroupResult>,
    pub measures: Vec<MeasureResult>,
}

/// Scores `values` (signal name → raw value; absent means missing data).
/// `None` when every measure lacks data.
pub fn score(def: &ScorecardDef, values: &BTreeMap<String, f64>) -> Option<Scored> {
    let present_weight: f64 = def
        .groups
        .iter()
        .flat_map(|g| &g.measures)
        .filter(|m| values.contains_key(&m.signal))
        .map(|m| m.weight)
        .sum();
    if present_weight <= 0.0 {
        return None;
    }
    let mut measures = Vec::new();
    let mut groups = Vec::new();
    for group in &def.groups {
        let (mut weighted, mut weight, mut contribution) = (0.0, 0.0, 0.0);
        for measure in &group.measures {
            let raw = values.get(&measure.signal).copied();
            let score = raw.map(|v| measure.rule.score(v));
            let effective_weight = if score.is_some() {
                measure.weight / present_weight
            } else {
                0.0
            };
            let points = score.unwrap_or(0.0) * effective_weight;
            if let Some(s) = score {
                weighted += s * measure.weight;
                weight += measure.weight;
                contribution += points;
            }
            measures.push(MeasureResult {
                group: group.name.clone(),
                name: measure.name.clone(),
                signal: measure.signal.clone(),
                raw_value: raw,
                score,
                weight: measure.weight,
                effective_weight,
                contribution: points,
            });
        }
        groups.push(GroupResult {
            name: group.name.clone(),
            score: (weight > 0.0).then(|| weighted / weight),
            contribution,
        });
    }
    let total: f64 = measures.iter().map(|m| m.contribution).sum();
    Some(Scored {
        score: total,
        band: def.bands.band(total),
        groups,
        measures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measure(name: &str, signal: &str, weight: f64, rule: Rule) -> MeasureDef {
        MeasureDef {
            name: name.into(),
            signal: signal.into(),
            weight,
            rule,
        }
    }

    fn card() -> ScorecardDef {
        ScorecardDef {
            segment: String::new(),
            bands: BandCuts::default(),
            groups: vec![
                GroupDef {
                    name: "Adoption".into(),
                    measures: vec![
                        measure(
                            "utilization",
                            "license_utilization_pct",
                            2.0,
                            Rule::Linear {
                                worst: 20.0,
                                best: 80.0,
                            },
                        ),
                        measure(
                            "breadth",
                            "advanced_features_used_30d",
                            1.0,
                            Rule::Thresholds(vec![(1.0, 50.0), (3.0, 100.0)]),
                        ),
                    ],
                },
                GroupDef {
                    name: "Support".into(),
                    measures: vec![measure(
                        "p1",
                        "open_tickets_p1",
                        1.0,
                        Rule::Linear {
                            worst: 3.0,
                            best: 0.0,
                        },
                    )],
                },
            ],
        }
    }

    #[test]
    fn rules_map_values_to_scores() {
        assert_eq!(
            Rule::Linear {
                worst: 20.0,
                best: 80.0
            }
            .score(50.0),
            50.0
        );
        assert_eq!(
            Rule::Linear {
                worst: 20.0,
                best: 80.0
            }
            .score(99.0),
            100.0
        );
        assert_eq!(
            Rule::Linear {
                worst: 3.0,
                best: 0.0
            }
            .score(1.0)
            .round(),
            67.0
        );
        let steps = Rule::Thresholds(vec![(1.0, 50.0), (3.0, 100.0)]);
        assert_eq!(
            (steps.score(0.0), steps.score(2.0), steps.score(5.0)),
            (0.0, 50.0, 100.0)
        );
    }

    #[test]
    fn weights_renormalise_over_present_measures() {
        let values = BTreeMap::from([
            ("license_utilization_pct".to_owned(), 50.0),
            ("open_tickets_p1".to_owned(), 0.0),
        ]);
        let scored = score(&card(), &values).unwrap();
        // utilization 50 (weight 2/3) + p1 100 (weight 1/3); breadth missing.
        assert!((scored.score - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(scored.band, Band::Yellow);
        let breadth = scored
            .measures
            .iter()
            .find(|m| m.name == "breadth")
            .unwrap();
        assert_eq!(
            (
                breadth.score,
                breadth.effective_weight,
                breadth.contribution
            ),
            (None, 0.0, 0.0)
        );
        let weights: f64 = scored.measures.iter().map(|m| m.effective_weight).sum();
        assert!((weights - 1.0).abs() < 1e-9);
        assert_eq!(scored.groups[0].score, Some(50.0));
        assert!(score(&card(), &BTreeMap::new()).is_none());
    }
}
