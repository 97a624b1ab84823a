//! Maturity models (pure): levels defined by behaviours on an account's
//! signals, an account's level from its signal values, and how a held level
//! moves from one scoring to the next.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use tenure_platform::Violations;

/// A model has 3 to 7 levels (five, give or take two).
pub const LEVELS: std::ops::RangeInclusive<usize> = 3..=7;
const MAX_BEHAVIOURS: usize = 100;
const MAX_TEXT: usize = 128;
const MAX_DESCRIPTION: usize = 2000;
const MAX_EXPECTED_DAYS: u32 = 3650;

/// A measurable behaviour: a signal with data within the bounds given.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct BehaviourDef {
    pub name: String,
    pub signal: String,
    pub at_least: Option<f64>,
    pub at_most: Option<f64>,
}

impl BehaviourDef {
    /// Whether `value` shows the behaviour; no data never does.
    pub fn shown(&self, value: Option<f64>) -> bool {
        value.is_some_and(|v| {
            self.at_least.is_none_or(|low| v >= low) && self.at_most.is_none_or(|high| v <= high)
        })
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LevelDef {
    pub name: String,
    pub description: String,
    pub behaviours: Vec<BehaviourDef>,
    /// Days an account is expected to stay at the level; 0 for no
    /// expectation.
    pub expected_days: u32,
}

/// A model's content (its name and version are kept beside it).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MaturityDef {
    pub description: String,
    /// Lowest first; level `n` is `levels[n - 1]`.
    pub levels: Vec<LevelDef>,
}

/// How an account stands on one behaviour.
#[derive(Clone, Debug, PartialEq)]
pub struct BehaviourStanding {
    pub level: u8,
    pub name: String,
    pub signal: String,
    pub value: Option<f64>,
    pub shown: bool,
}

/// An account's level and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Standing {
    /// 0: below the first level.
    pub level: u8,
    pub behaviours: Vec<BehaviourStanding>,
    /// The next level's behaviours not shown yet; empty at the top.
    pub next_level_needs: Vec<String>,
}

impl MaturityDef {
    /// Checks the model; `known` says whether a signal name exists.
    /// Violations name fields under `path` (for example `model`).
    pub fn validate(&self, path: &str, known: impl Fn(&str) -> bool, v: &mut Violations) {
        v.limit_text(
            &self.description,
            format!("{path}.description"),
            MAX_DESCRIPTION,
        );
        v.check(
            LEVELS.contains(&self.levels.len()),
            format!("{path}.levels"),
            format!("must hold {} to {} levels", LEVELS.start(), LEVELS.end()),
        );
        let count: usize = self.levels.iter().map(|l| l.behaviours.len()).sum();
        v.check(
            count <= MAX_BEHAVIOURS,
            format!("{path}.levels"),
            format!("must hold at most {MAX_BEHAVIOURS} behaviours"),
        );
        let mut levels_seen = std::collections::HashSet::new();
        let mut behaviours_seen = std::collections::HashSet::new();
        for (i, level) in self.levels.iter().enumerate() {
            let at = format!("{path}.levels[{i}]");
            v.require_text(&level.name, format!("{at}.name"), MAX_TEXT);
            if !levels_seen.insert(level.name.as_str()) {
                v.add(format!("{at}.name"), "is used by a lower level");
            }
            v.limit_text(
                &level.description,
                format!("{at}.description"),
                MAX_DESCRIPTION,
            );
            v.check(
                level.expected_days <= MAX_EXPECTED_DAYS,
                format!("{at}.expected_days"),
                format!("must be 0-{MAX_EXPECTED_DAYS}"),
            );
            v.check(
                i == 0 || !level.behaviours.is_empty(),
                format!("{at}.behaviours"),
                "must hold at least one behaviour (only the first level may have none)",
            );
            for (j, behaviour) in level.behaviours.iter().enumerate() {
                let at = format!("{at}.behaviours[{j}]");
                v.require_text(&behaviour.name, format!("{at}.name"), MAX_TEXT);
                if !behaviours_seen.insert(behaviour.name.as_str()) {
                    v.add(format!("{at}.name"), "is used by an earlier behaviour");
                }
                v.check(
                    known(&behaviour.signal),
                    format!("{at}.signal"),
                    "names no known signal",
                );
                let finite = [behaviour.at_least, behaviour.at_most]
                    .into_iter()
                    .flatten()
                    .all(f64::is_finite);
                v.check(
                    behaviour.at_least.is_some() || behaviour.at_most.is_some(),
                    format!("{at}.at_least"),
                    "at_least or at_most is required",
                );
                v.check(
                    finite,
                    format!("{at}.at_least"),
                    "bounds must be finite numbers",
                );
                if let (Some(low), Some(high)) = (behaviour.at_least, behaviour.at_most) {
                    v.check(
                        low <= high,
                        format!("{at}.at_most"),
                        "must not be below at_least",
                    );
                }
            }
        }
    }

    /// The name of `level`; empty for level 0 and past the top.
    pub fn level_name(&self, level: u8) -> &str {
        usize::from(level)
            .checked_sub(1)
            .and_then(|i| self.levels.get(i))
            .map_or("", |l| l.name.as_str())
    }

    /// The days an account is expected to stay at `level`, if any.
    pub fn expected_days(&self, level: u8) -> Option<u32> {
        let days = usize::from(level)
            .checked_sub(1)
            .and_then(|i| self.levels.get(i))?
            .expected_days;
        (days > 0).then_some(days)
    }

    /// The level of an account with signal `values` (absent: no data): the
    /// highest whose behaviours, and every lower level's, it shows.
    pub fn assess(&self, values: &BTreeMap<String, f64>) -> Standing {
        let mut behaviours = Vec::new();
        let mut level = 0u8;
        let mut climbing = true;
        for (i, def) in self.levels.iter().enumerate() {
            let number = u8::try_from(i + 1).unwrap_or(u8::MAX);
            let mut all = true;
            for behaviour in &def.behaviours {
                let value = values.get(&behaviour.signal).copied();
                let shown = behaviour.shown(value);
                all &= shown;
                behaviours.push(BehaviourStanding {
                    level: number,
                    name: behaviour.name.clone(),
                    signal: behaviour.signal.clone(),
                    value,
                    shown,
                });
            }
            climbing &= all;
            if climbing {
                level = number;
            }
        }
        let next = level + 1;
        let next_level_needs = behaviours
            .iter()
            .filter(|b| b.level == next && !b.shown)
            .map(|b| b.name.clone())
            .collect();
        Standing {
            level,
            behaviours,
            next_level_needs,
        }
    }
}

/// Past renewals told by a model's levels and behaviours: how many stood
/// at each level (and showed each behaviour) at the horizon, and how many
/// of them renewed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Lessons {
    /// (level, examples, renewed), level 0 (none reached) first.
    pub levels: Vec<(u8, u32, u32)>,
    pub behaviours: Vec<BehaviourLesson>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct BehaviourLesson {
    pub level: u8,
    pub name: String,
    /// (examples, renewed) of those that showed it, and of the others.
    pub shown: (u32, u32),
    pub not_shown: (u32, u32),
}

impl MaturityDef {
    /// What `examples` (signal values at the horizon, renewed or not) say
    /// of each level and behaviour.
    pub fn lessons<'a>(
        &self,
        examples: impl IntoIterator<Item = (&'a BTreeMap<String, f64>, bool)>,
    ) -> Lessons {
        let mut levels = vec![(0u32, 0u32); self.levels.len() + 1];
        let mut behaviours: Vec<BehaviourLesson> = Vec::new();
        for (values, renewed) in examples {
            let standing = self.assess(values);
            let entry = &mut levels[usize::from(standing.level)];
            entry.0 += 1;
            entry.1 += u32::from(renewed);
            for (i, behaviour) in standing.behaviours.iter().enumerate() {
                if behaviours.len() <= i {
                    behaviours.push(BehaviourLesson {
                        level: behaviour.level,
                        name: behaviour.name.clone(),
                        ..BehaviourLesson::default()
                    });
                }
                let side = if behaviour.shown {
                    &mut behaviours[i].shown
                } else {
                    &mut behaviours[i].not_shown
                };
                side.0 += 1;
                side.1 += u32::from(renewed);
            }
        }
        Lessons {
            levels: levels
                .into_iter()
                .enumerate()
                .map(|(level, (n, renewed))| (u8::try_from(level).unwrap_or(u8::MAX), n, renewed))
                .collect(),
            behaviours,
        }
    }
}

/// An account's level as tracked between scorings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub model_version: i32,
    pub level: u8,
    pub since: NaiveDate,
    pub stuck_notified: bool,
}

/// What playbooks hear of a scoring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Notice {
    Changed { previous: u8, level: u8 },
    Stuck { level: u8, days: i64 },
}

/// The held level after scoring an account at `level` on `today` with
/// version `version` of `def`, and what playbooks should hear of it. The
/// first scoring of an account, and a new version of the model, set the
/// level without a notice: neither is the customer's doing.
pub fn advance(
    def: &MaturityDef,
    version: i32,
    held: Option<Held>,
    level: u8,
    today: NaiveDate,
) -> (Held, Option<Notice>) {
    let fresh = Held {
        model_version: version,
        level,
        since: today,
        stuck_notified: false,
    };
    let Some(held) = held else {
        return (fresh, None);
    };
    if held.level != level {
        let notice = (held.model_version == version).then_some(Notice::Changed {
            previous: held.level,
            level,
        });
        return (fresh, notice);
    }
    let held = Held {
        model_version: version,
        ..held
    };
    let days = (today - held.since).num_days();
    match def.expected_days(level) {
        Some(expected) if !held.stuck_notified && days >= i64::from(expected) => (
            Held {
                stuck_notified: true,
                ..held
            },
            Some(Notice::Stuck { level, days }),
        ),
        _ => (held, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn behaviour(
        name: &str,
        signal: &str,
        at_least: Option<f64>,
        at_most: Option<f64>,
    ) -> BehaviourDef {
        BehaviourDef {
            name: name.into(),
            signal: signal.into(),
            at_least,
            at_most,
        }
    }

    fn level(name: &str, behaviours: Vec<BehaviourDef>, expected_days: u32) -> LevelDef {
        LevelDef {
            name: name.into(),
            description: String::new(),
            behaviours,
            expected_days,
        }
    }

    fn model() -> MaturityDef {
        MaturityDef {
            description: String::new(),
            levels: vec![
                level("onboarding", vec![], 30),
                level(
                    "adopting",
                    vec![behaviour("logs-in", "active_users_30d", Some(1.0), None)],
                    60,
                ),
                level(
                    "expanding",
                    vec![
                        behaviour("advanced", "advanced_features_used_30d", Some(3.0), None),
                        behaviour("calm", "open_tickets_p1", None, Some(0.0)),
                    ],
                    0,
                ),
            ],
        }
    }

    fn values(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn lessons_count_renewals_per_level_and_behaviour() {
        let m = model();
        let top = values(&[
            ("active_users_30d", 4.0),
            ("advanced_features_used_30d", 3.0),
            ("open_tickets_p1", 0.0),
        ]);
        let idle = values(&[("active_users_30d", 0.0)]);
        let lessons = m.lessons([(&top, true), (&top, true), (&idle, false), (&idle, true)]);
        assert_eq!(
            lessons.levels,
            vec![(0, 0, 0), (1, 2, 1), (2, 0, 0), (3, 2, 2)]
        );
        let logs_in = &lessons.behaviours[0];
        assert_eq!(
            (
                logs_in.name.as_str(),
                logs_in.level,
                logs_in.shown,
                logs_in.not_shown
            ),
            ("logs-in", 2, (2, 2), (2, 1))
        );
        assert_eq!(lessons.behaviours.len(), 3);
    }

    #[test]
    fn the_level_is_the_highest_with_every_lower_level_shown() {
        let m = model();
        let top = m.assess(&values(&[
            ("active_users_30d", 4.0),
            ("advanced_features_used_30d", 3.0),
            ("open_tickets_p1", 0.0),
        ]));
        assert_eq!((top.level, top.next_level_needs.len()), (3, 0));
        let stalled = m.assess(&values(&[
            ("active_users_30d", 4.0),
            ("advanced_features_used_30d", 5.0),
            ("open_tickets_p1", 1.0),
        ]));
        assert_eq!(stalled.level, 2);
        assert_eq!(stalled.next_level_needs, vec!["calm".to_owned()]);
        // Level 3's behaviours without level 2's do not count.
        let skipped = m.assess(&values(&[
            ("active_users_30d", 0.0),
            ("advanced_features_used_30d", 5.0),
            ("open_tickets_p1", 0.0),
        ]));
        assert_eq!(
            (skipped.level, skipped.next_level_needs.clone()),
            (1, vec!["logs-in".to_owned()])
        );
        // No data shows no behaviour.
        let empty = m.assess(&BTreeMap::new());
        assert_eq!(empty.level, 1);
        assert!(
            empty
                .behaviours
                .iter()
                .all(|b| !b.shown && b.value.is_none())
        );
        assert_eq!(m.level_name(0), "");
        assert_eq!(m.level_name(3), "expanding");
    }

    #[test]
    fn held_levels_notice_changes_and_one_stuck_stay() {
        let m = model();
        let day = |d: u32| NaiveDate::from_ymd_opt(2025, 1, d).unwrap();
        let (first, notice) = advance(&m, 1, None, 1, day(1));
        assert_eq!((first.since, notice), (day(1), None));
        let (same, notice) = advance(&m, 1, Some(first), 1, day(20));
        assert_eq!((same, notice), (first, None));
        let (up, notice) = advance(&m, 1, Some(same), 2, day(21));
        assert_eq!(
            notice,
            Some(Notice::Changed {
                previous: 1,
                level: 2
            })
        );
        assert_eq!(up.since, day(21));
        // Level 1 expects 30 days; level 2 expects 60.
        let (stuck, notice) = advance(&m, 1, Some(first), 1, day(31));
        assert_eq!(notice, Some(Notice::Stuck { level: 1, days: 30 }));
        assert!(stuck.stuck_notified);
        let (_, again) = advance(&m, 1, Some(stuck), 1, day(31));
        assert_eq!(again, None, "one notice per stay");
        // A new version moves the level silently.
        let (moved, notice) = advance(&m, 2, Some(up), 3, day(22));
        assert_eq!((moved.level, moved.model_version, notice), (3, 2, None));
        // Level 3 expects nothing.
        let (_, notice) = advance(&m, 2, Some(moved), 3, day(31) + chrono::Days::new(400));
        assert_eq!(notice, None);
    }

    #[test]
    fn validation_names_each_bad_field() {
        let mut bad = model();
        bad.levels[1].behaviours.clear();
        bad.levels[2].behaviours[0].at_least = None;
        bad.levels[2].behaviours[1].name = "calm".into();
        bad.levels[2].behaviours[1].signal = "no_such".into();
        bad.levels.push(level(
            "onboarding",
            vec![behaviour("calm", "latest_nps", Some(9.0), Some(1.0))],
            0,
        ));
        let mut v = Violations::default();
        bad.validate("model", |s| s != "no_such", &mut v);
        let fields: Vec<String> = v.iter().map(|(f, _)| f.to_owned()).collect();
        for field in [
            "model.levels[1].behaviours",
            "model.levels[2].behaviours[0].at_least",
            "model.levels[2].behaviours[1].signal",
            "model.levels[3].name",
            "model.levels[3].behaviours[0].name",
            "model.levels[3].behaviours[0].at_most",
        ] {
            assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
        }
        let mut v = Violations::default();
        model().validate("model", |_| true, &mut v);
        assert!(v.is_empty());
        let mut short = model();
        short.levels.truncate(2);
        let mut v = Violations::default();
        short.validate("model", |_| true, &mut v);
        assert!(v.iter().any(|(f, _)| f == "model.levels"));
    }
}
