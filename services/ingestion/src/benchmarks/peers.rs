//! Where an account's measures stand among its peers': the measures an
//! account has on a day, and a value's percentile, median and quartiles
//! among the peers' values. Pure: no database, no wire types.

use chrono::NaiveDate;

use crate::kinds::Direction;
use crate::signals::Inputs;
use crate::stats::quantile;

/// One measure of one account on a day.
#[derive(Clone, Debug, PartialEq)]
pub struct Measure {
    pub name: String,
    pub unit: String,
    pub higher_is_better: bool,
    pub value: f64,
}

/// The usage measures every account has.
pub const ACTIVE_USERS: &str = "active users (30 days)";
pub const EVENTS: &str = "events (30 days)";
pub const FEATURES: &str = "features used (30 days)";

/// The measures of `inputs` on `day`: each success metric's latest value
/// on or before it (by name; the first of two metrics with one name), then
/// the usage of the 30 days up to it.
pub fn measures(inputs: &Inputs, day: NaiveDate) -> Vec<Measure> {
    let mut measures: Vec<Measure> = Vec::new();
    for metric in &inputs.metrics {
        if measures.iter().any(|m| m.name == metric.name) {
            continue;
        }
        let latest = metric.values.iter().rev().find(|(on, _)| *on <= day);
        if let Some((_, value)) = latest {
            measures.push(Measure {
                name: metric.name.clone(),
                unit: metric.unit.clone(),
                higher_is_better: metric.direction == Direction::HigherIsBetter,
                value: *value,
            });
        }
    }
    let usage = &inputs.usage;
    for (name, unit, value) in [
        (ACTIVE_USERS, "users", usage.active_users_30d as f64),
        (EVENTS, "events", usage.events_30d as f64),
        (FEATURES, "features", usage.features_used_30d.len() as f64),
    ] {
        measures.push(Measure {
            name: name.to_owned(),
            unit: unit.to_owned(),
            higher_is_better: true,
            value,
        });
    }
    measures
}

/// Where a value stands among its peers' values.
#[derive(Clone, Debug, PartialEq)]
pub struct Standing {
    pub peer_count: usize,
    /// Percent of the peers the value does better than, ties counting half.
    pub percentile: f64,
    pub median: f64,
    /// Where the best quarter of the peers begins (by direction).
    pub top_quartile: f64,
    /// Where the worst quarter begins.
    pub bottom_quartile: f64,
}

/// `value` among `peers` (any order; not finite values are left out);
/// `None` when no peer has a value.
pub fn standing(value: f64, peers: &[f64], higher_is_better: bool) -> Option<Standing> {
    let mut sorted: Vec<f64> = peers.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let below = sorted.iter().filter(|p| **p < value).count() as f64;
    let equal = sorted.iter().filter(|p| **p == value).count() as f64;
    let above = sorted.len() as f64 - below - equal;
    let worse = if higher_is_better { below } else { above };
    let n = sorted.len() as f64;
    let (low, high) = (quantile(&sorted, 0.25), quantile(&sorted, 0.75));
    let (top, bottom) = if higher_is_better {
        (high, low)
    } else {
        (low, high)
    };
    Some(Standing {
        peer_count: sorted.len(),
        percentile: (worse + equal / 2.0) / n * 100.0,
        median: quantile(&sorted, 0.5),
        top_quartile: top,
        bottom_quartile: bottom,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_standing_follows_the_direction_and_counts_ties_half() {
        let peers = [10.0, 20.0, 30.0, 40.0, f64::NAN];
        let up = standing(30.0, &peers, true).unwrap();
        assert_eq!(up.peer_count, 4);
        // Better than 10 and 20, tied with 30: 2.5 of 4.
        assert_eq!(up.percentile, 62.5);
        assert_eq!(
            (up.median, up.top_quartile, up.bottom_quartile),
            (25.0, 32.5, 17.5)
        );
        // Lower is better (a sales cycle in days): better than 40 only.
        let down = standing(30.0, &peers, false).unwrap();
        assert_eq!(down.percentile, 37.5);
        assert_eq!((down.top_quartile, down.bottom_quartile), (17.5, 32.5));
        assert_eq!(standing(1.0, &[], true), None);
    }
}
