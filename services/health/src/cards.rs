//! Scorecards at the gRPC edge: validation of submitted scorecards into the
//! domain form, and back.

use tenure_platform::{ApiError, ApiResult, Violations, time};
use tenure_proto::health::v1 as pb;

use crate::scorecard::{BandCuts, GroupDef, MeasureDef, Rule, ScorecardDef};
use crate::signals;
use crate::store::StoredScorecard;

const MAX_NAME: usize = 128;
const MAX_MEASURES: usize = 200;

pub(crate) fn is_slug(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Validates a submitted scorecard; returns its name and content.
pub fn from_proto(card: Option<&pb::Scorecard>) -> ApiResult<(String, ScorecardDef)> {
    let Some(card) = card else {
        return Err(ApiError::invalid("scorecard", "is required"));
    };
    let mut v = Violations::default();
    v.check(
        is_slug(&card.name),
        "scorecard.name",
        "must be 1-64 characters of a-z, 0-9, - and _",
    );
    v.limit_text(&card.segment, "scorecard.segment", MAX_NAME);
    let count: usize = card.groups.iter().map(|g| g.measures.len()).sum();
    v.check(
        count > 0,
        "scorecard.groups",
        "must hold at least one measure",
    );
    v.check(
        count <= MAX_MEASURES,
        "scorecard.groups",
        format!("must hold at most {MAX_MEASURES} measures"),
    );
    let mut seen = std::collections::HashSet::new();
    let mut groups = Vec::with_capacity(card.groups.len());
    for (g, group) in card.groups.iter().enumerate() {
        let path = format!("scorecard.groups[{g}]");
        v.require_text(&group.name, format!("{path}.name"), MAX_NAME);
        let mut measures = Vec::with_capacity(group.measures.len());
        for (m, measure) in group.measures.iter().enumerate() {
            let path = format!("{path}.measures[{m}]");
            v.require_text(&measure.name, format!("{path}.name"), MAX_NAME);
            if !seen.insert(measure.name.as_str()) {
                v.add(format!("{path}.name"), "is used by an earlier measure");
            }
            v.check(
                signals::is_known(&measure.signal),
                format!("{path}.signal"),
                "names no known signal",
            );
            v.check(
                measure.weight.is_finite() && measure.weight > 0.0,
                format!("{path}.weight"),
                "must be a positive number",
            );
            if let Some(rule) = rule_from_proto(measure.rule.as_ref(), &path, &mut v) {
                measures.push(MeasureDef {
                    name: measure.name.clone(),
                    signal: measure.signal.clone(),
                    weight: measure.weight,
                    rule,
                });
            }
        }
        groups.push(GroupDef {
            name: group.name.clone(),
            measures,
        });
    }
    let bands = match &card.bands {
        None => BandCuts::default(),
        Some(bands) => {
            let ordered = 0.0 <= bands.yellow_from
                && bands.yellow_from < bands.green_from
                && bands.green_from <= 100.0;
            v.check(
                ordered,
                "scorecard.bands",
                "must satisfy 0 <= yellow_from < green_from <= 100",
            );
            BandCuts {
                yellow_from: bands.yellow_from,
                green_from: bands.green_from,
            }
        }
    };
    v.into_result()?;
    Ok((
        card.name.clone(),
        ScorecardDef {
            segment: card.segment.clone(),
            groups,
            bands,
        },
    ))
}

fn rule_from_proto(
    rule: Option<&pb::measure::Rule>,
    path: &str,
    v: &mut Violations,
) -> Option<Rule> {
    match rule {
        None => {
            v.add(format!("{path}.rule"), "is required: thresholds or linear");
            None
        }
        Some(pb::measure::Rule::Linear(linear)) => {
            let ok =
                linear.worst.is_finite() && linear.best.is_finite() && linear.worst != linear.best;
            v.check(
                ok,
                format!("{path}.linear"),
                "worst and best must be different finite numbers",
            );
            ok.then_some(Rule::Linear {
                worst: linear.worst,
                best: linear.best,
            })
        }
        Some(pb::measure::Rule::Thresholds(thresholds)) => {
            let steps: Vec<(f64, f64)> = thresholds
                .steps
                .iter()
                .map(|s| (s.at_least, s.score))
                .collect();
            let ascending = steps.windows(2).all(|w| w[0].0 < w[1].0);
            let finite = steps.iter().all(|(a, _)| a.is_finite());
            let scores = steps.iter().all(|(_, s)| (0.0..=100.0).contains(s));
            v.check(
                !steps.is_empty(),
                format!("{path}.thresholds.steps"),
                "must not be empty",
            );
            v.check(
                ascending && finite,
                format!("{path}.thresholds.steps"),
                "at_least must be finite and strictly ascending",
            );
            v.check(
                scores,
                format!("{path}.thresholds.steps"),
                "scores must lie in 0-100",
            );
            (!steps.is_empty() && ascending && finite && scores).then_some(Rule::Thresholds(steps))
        }
    }
}

pub fn to_proto(stored: &StoredScorecard) -> pb::Scorecard {
    let def = &stored.definition.0;
    pb::Scorecard {
        name: stored.name.clone(),
        version: stored.version,
        segment: def.segment.clone(),
        groups: def
            .groups
            .iter()
            .map(|g| pb::MeasureGroup {
                name: g.name.clone(),
                measures: g
                    .measures
                    .iter()
                    .map(|m| pb::Measure {
                        name: m.name.clone(),
                        signal: m.signal.clone(),
                        weight: m.weight,
                        rule: Some(match &m.rule {
                            Rule::Linear { worst, best } => {
                                pb::measure::Rule::Linear(pb::LinearRule {
                                    worst: *worst,
                                    best: *best,
                                })
                            }
                            Rule::Thresholds(steps) => {
                                pb::measure::Rule::Thresholds(pb::ThresholdRule {
                                    steps: steps
                                        .iter()
                                        .map(|(at_least, score)| pb::threshold_rule::Step {
                                            at_least: *at_least,
                                            score: *score,
                                        })
                                        .collect(),
                                })
                            }
                        }),
                    })
                    .collect(),
            })
            .collect(),
        bands: Some(pb::Bands {
            yellow_from: def.bands.yellow_from,
            green_from: def.bands.green_from,
        }),
        create_time: Some(time::to_timestamp(stored.create_time)),
    }
}
