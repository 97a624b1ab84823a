//! Health changes worth acting on: a band change, or a score drop of at
//! least the configured points within the configured window. Each is
//! reported once, when the score crosses it.

use tenure_proto::common::v1::Band;

/// When a drop counts (`HEALTH_DROP_POINTS`, `HEALTH_DROP_WINDOW_DAYS`).
#[derive(Clone, Copy, Debug)]
pub struct DropRule {
    pub points: f64,
    pub window_days: i64,
}

impl Default for DropRule {
    fn default() -> Self {
        Self {
            points: 15.0,
            window_days: 30,
        }
    }
}

impl DropRule {
    /// The service's `HEALTH_DROP_POINTS` and `HEALTH_DROP_WINDOW_DAYS`,
    /// read once at start-up.
    pub fn from_settings(settings: &tenure_platform::config::Settings) -> anyhow::Result<Self> {
        let mut rule = Self::default();
        if let Some(value) = settings.get("HEALTH_DROP_POINTS") {
            rule.points = value
                .parse()
                .ok()
                .filter(|p: &f64| p.is_finite() && *p > 0.0)
                .ok_or_else(|| {
                    anyhow::anyhow!("HEALTH_DROP_POINTS={value:?} is not a positive number")
                })?;
        }
        if let Some(value) = settings.get("HEALTH_DROP_WINDOW_DAYS") {
            rule.window_days = value.parse().ok().filter(|d: &i64| *d > 0).ok_or_else(|| {
                anyhow::anyhow!("HEALTH_DROP_WINDOW_DAYS={value:?} is not a positive count")
            })?;
        }
        Ok(rule)
    }
}

/// The account's score before this computation.
#[derive(Clone, Copy, Debug)]
pub struct Before {
    pub score: f64,
    pub band: Band,
    /// Highest score within the window before now (snapshots and the last score).
    pub peak: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Change {
    BandChanged { from: Band, to: Band },
    ScoreDropped { peak: f64, score: f64 },
}

/// The changes from `before` to the new `score` and `band`.
pub fn detect(before: Option<Before>, score: f64, band: Band, rule: DropRule) -> Vec<Change> {
    let Some(before) = before else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    if before.band != band {
        changes.push(Change::BandChanged {
            from: before.band,
            to: band,
        });
    }
    let already_dropped = before.peak - before.score >= rule.points;
    if before.peak - score >= rule.points && !already_dropped {
        changes.push(Change::ScoreDropped {
            peak: before.peak,
            score,
        });
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_drop_rule_comes_from_the_services_settings() {
        let settings = |pairs: &[(&str, &str)]| tenure_platform::config::Settings {
            overrides: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        let rule = DropRule::from_settings(&settings(&[
            ("HEALTH_DROP_POINTS", "5"),
            ("HEALTH_DROP_WINDOW_DAYS", "7"),
        ]))
        .unwrap();
        assert_eq!((rule.points, rule.window_days), (5.0, 7));
        assert!(DropRule::from_settings(&settings(&[("HEALTH_DROP_POINTS", "NaN")])).is_err());
        assert_eq!(
            crate::store::Rollup::from_settings(&settings(&[("HEALTH_PARENT_ROLLUP", "worst")]))
                .unwrap(),
            crate::store::Rollup::Worst
        );
        assert!(
            crate::store::Rollup::from_settings(&settings(&[("HEALTH_PARENT_ROLLUP", "best")]))
                .is_err()
        );
    }

    #[test]
    fn reports_each_change_once() {
        let rule = DropRule::default();
        assert!(
            detect(None, 30.0, Band::Red, rule).is_empty(),
            "a first score is no change"
        );
        let steady = Before {
            score: 80.0,
            band: Band::Green,
            peak: 80.0,
        };
        assert!(detect(Some(steady), 79.0, Band::Green, rule).is_empty());
        let fall = detect(Some(steady), 60.0, Band::Yellow, rule);
        assert_eq!(
            fall,
            [
                Change::BandChanged {
                    from: Band::Green,
                    to: Band::Yellow
                },
                Change::ScoreDropped {
                    peak: 80.0,
                    score: 60.0
                }
            ]
        );
        let after = Before {
            score: 60.0,
            band: Band::Yellow,
            peak: 80.0,
        };
        assert!(
            detect(Some(after), 58.0, Band::Yellow, rule).is_empty(),
            "the drop was reported already"
        );
    }
}
