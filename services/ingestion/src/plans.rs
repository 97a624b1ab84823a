//! Success plans' progress (pure): each objective's baseline on the plan's
//! start day, its value on the day asked about (or on its due day once
//! past), the trend of its last 90 days projected to the due day, and its
//! status; and the plan's share of objectives met or on track.

use std::collections::BTreeSet;

use chrono::{Days, NaiveDate};

use crate::kinds::{Direction, Measure, MetricRecord, ObjectiveDef, PlanRecord, UsageMeasure};

/// How far back the trend looks, and how often a usage measure is read in it.
const TREND_DAYS: u64 = 90;
const TREND_STEP: u64 = 14;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    NotStarted,
    Met,
    OnTrack,
    AtRisk,
    Missed,
    NoData,
}

/// An objective's measure on the days that matter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Values {
    pub baseline: Option<f64>,
    /// On the evaluation day: the day asked about, or the due day once past.
    pub value: Option<f64>,
    /// (day, value) in the trend's window, oldest first.
    pub trend: Vec<(NaiveDate, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub higher_is_better: bool,
    pub baseline: Option<f64>,
    pub value: Option<f64>,
    pub attainment_pct: Option<f64>,
    pub projected: Option<f64>,
}

/// The day an objective is judged on as of `as_of`.
pub fn evaluation_day(objective: &ObjectiveDef, as_of: NaiveDate) -> NaiveDate {
    as_of.min(objective.due_on)
}

/// The days of the trend's window: every `TREND_STEP` days back from the
/// evaluation day, over the last `TREND_DAYS`, none before the start.
fn trend_days(start_on: NaiveDate, day: NaiveDate) -> Vec<NaiveDate> {
    let mut days: Vec<NaiveDate> = (0..=TREND_DAYS / TREND_STEP)
        .filter_map(|k| day.checked_sub_days(Days::new(k * TREND_STEP)))
        .filter(|d| *d >= start_on)
        .collect();
    days.reverse();
    days
}

/// The days a plan's usage objectives must be read at as of `as_of`.
pub fn usage_days(plan: &PlanRecord, as_of: NaiveDate) -> BTreeSet<NaiveDate> {
    let mut days = BTreeSet::new();
    if as_of < plan.start_on {
        return days;
    }
    for objective in &plan.objectives {
        if let Measure::Usage(_) = objective.measure {
            let day = evaluation_day(objective, as_of);
            days.insert(plan.start_on);
            days.extend(trend_days(plan.start_on, day));
        }
    }
    days
}

/// The days a plan's usage objectives must be read at as of `as_of` to
/// judge their status alone (not their baselines or projections when the
/// status does not need them): the due day of one past due; for one not
/// due yet whose value on `as_of` (`on_as_of`) falls short of its target,
/// the start and the trend's days. What the batch of signals reads.
pub fn status_days(
    plan: &PlanRecord,
    as_of: NaiveDate,
    on_as_of: impl Fn(UsageMeasure) -> f64,
) -> BTreeSet<NaiveDate> {
    let mut days = BTreeSet::new();
    if as_of < plan.start_on {
        return days;
    }
    for objective in &plan.objectives {
        let Measure::Usage(measure) = objective.measure else {
            continue;
        };
        if objective.due_on < as_of {
            days.insert(objective.due_on);
        } else if on_as_of(measure) < objective.target {
            days.insert(plan.start_on);
            days.extend(trend_days(plan.start_on, as_of));
        }
    }
    days
}

/// A metric's latest value on or before `day`.
fn metric_value_on(metric: &MetricRecord, day: NaiveDate) -> Option<f64> {
    metric
        .values
        .iter()
        .rev()
        .find(|(measured, _)| *measured <= day)
        .map(|(_, value)| *value)
}

/// The values of `objective` of `plan` as of `as_of`: from the account's
/// `metrics`, or from `usage_at` (a usage measure on a day).
pub fn values(
    plan: &PlanRecord,
    objective: &ObjectiveDef,
    as_of: NaiveDate,
    metrics: &[MetricRecord],
    usage_at: &dyn Fn(UsageMeasure, NaiveDate) -> Option<f64>,
) -> (Values, bool) {
    let day = evaluation_day(objective, as_of);
    match &objective.measure {
        Measure::Metric(id) => {
            let Some(metric) = metrics.iter().find(|m| m.metric_id == *id) else {
                return (Values::default(), true);
            };
            let since = day
                .checked_sub_days(Days::new(TREND_DAYS))
                .unwrap_or(day)
                .max(plan.start_on);
            let trend = metric
                .values
                .iter()
                .filter(|(measured, _)| *measured >= since && *measured <= day)
                .copied()
                .collect();
            let values = Values {
                baseline: metric_value_on(metric, plan.start_on).or(Some(metric.baseline)),
                value: metric_value_on(metric, day),
                trend,
            };
            (values, metric.direction == Direction::HigherIsBetter)
        }
        Measure::Usage(measure) => {
            let trend = trend_days(plan.start_on, day)
                .into_iter()
                .filter_map(|d| Some((d, usage_at(*measure, d)?)))
                .collect();
            let values = Values {
                baseline: usage_at(*measure, plan.start_on),
                value: usage_at(*measure, day),
                trend,
            };
            (values, true)
        }
    }
}

/// The least-squares line through `points`, evaluated on `day`; `None`
/// without two distinct days.
fn projected(points: &[(NaiveDate, f64)], day: NaiveDate) -> Option<f64> {
    let first = points.first()?.0;
    let xs: Vec<f64> = points
        .iter()
        .map(|(d, _)| (*d - first).num_days() as f64)
        .collect();
    let n = points.len() as f64;
    let mean_x = xs.iter().sum::<f64>() / n;
    let mean_y = points.iter().map(|(_, y)| y).sum::<f64>() / n;
    let sxx: f64 = xs.iter().map(|x| (x - mean_x).powi(2)).sum();
    if sxx == 0.0 {
        return None;
    }
    let sxy: f64 = xs
        .iter()
        .zip(points)
        .map(|(x, (_, y))| (x - mean_x) * (y - mean_y))
        .sum();
    let slope = sxy / sxx;
    let x = (day - first).num_days() as f64;
    Some(mean_y + slope * (x - mean_x))
}

/// An objective's status as of `as_of`, from its values.
pub fn assess(
    objective: &ObjectiveDef,
    start_on: NaiveDate,
    as_of: NaiveDate,
    higher_is_better: bool,
    values: Values,
) -> Outcome {
    let target = objective.target;
    let reached = |v: f64| {
        if higher_is_better {
            v >= target
        } else {
            v <= target
        }
    };
    let projected = projected(&values.trend, objective.due_on);
    let attainment_pct = match (values.baseline, values.value) {
        (Some(baseline), Some(value)) if baseline != target => {
            Some((value - baseline) / (target - baseline) * 100.0)
        }
        _ => None,
    };
    let status = match values.value {
        _ if as_of < start_on => Status::NotStarted,
        None => Status::NoData,
        Some(value) if reached(value) => Status::Met,
        Some(_) if objective.due_on <= as_of => Status::Missed,
        Some(_) => {
            let on_track = match projected {
                Some(p) => reached(p),
                // No trend yet: on pace when the way gone is at least the
                // share of the time gone.
                None => {
                    let total = (objective.due_on - start_on).num_days().max(1) as f64;
                    let gone = (as_of - start_on).num_days() as f64 / total * 100.0;
                    attainment_pct.is_some_and(|a| a >= gone)
                }
            };
            if on_track {
                Status::OnTrack
            } else {
                Status::AtRisk
            }
        }
    };
    Outcome {
        status,
        higher_is_better,
        baseline: values.baseline,
        value: values.value,
        attainment_pct,
        projected,
    }
}

/// Every objective of `plan` as of `as_of`.
pub fn progress(
    plan: &PlanRecord,
    as_of: NaiveDate,
    metrics: &[MetricRecord],
    usage_at: &dyn Fn(UsageMeasure, NaiveDate) -> Option<f64>,
) -> Vec<Outcome> {
    plan.objectives
        .iter()
        .map(|objective| {
            let (values, higher) = values(plan, objective, as_of, metrics, usage_at);
            assess(objective, plan.start_on, as_of, higher, values)
        })
        .collect()
}

/// Objectives met or on track, of those started with data; objectives met,
/// of those decided (met or missed); in percent.
pub fn shares<'a>(outcomes: impl IntoIterator<Item = &'a Outcome>) -> (Option<f64>, Option<f64>) {
    let (mut good, mut judged, mut met, mut decided) = (0u32, 0u32, 0u32, 0u32);
    for outcome in outcomes {
        match outcome.status {
            Status::NotStarted | Status::NoData => continue,
            Status::Met => (good, met, decided) = (good + 1, met + 1, decided + 1),
            Status::OnTrack => good += 1,
            Status::Missed => decided += 1,
            Status::AtRisk => {}
        }
        judged += 1;
    }
    let pct =
        |part: u32, whole: u32| (whole > 0).then(|| f64::from(part) * 100.0 / f64::from(whole));
    (pct(good, judged), pct(met, decided))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, d).unwrap()
    }

    fn objective(measure: Measure, target: f64, due_on: NaiveDate) -> ObjectiveDef {
        ObjectiveDef {
            objective_id: "o".into(),
            name: "o".into(),
            owner: String::new(),
            measure,
            target,
            due_on,
        }
    }

    fn plan(objectives: Vec<ObjectiveDef>) -> PlanRecord {
        PlanRecord {
            plan_id: "p".into(),
            account_id: "a".into(),
            name: "p".into(),
            owner: String::new(),
            start_on: day(1, 1),
            objectives,
            updated_at: chrono::Utc::now(),
        }
    }

    fn metric(values: Vec<(NaiveDate, f64)>) -> MetricRecord {
        MetricRecord {
            metric_id: "cycle".into(),
            account_id: "a".into(),
            name: "sales cycle".into(),
            unit: "days".into(),
            baseline: 90.0,
            target: 60.0,
            direction: Direction::LowerIsBetter,
            values,
            updated_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_metric_objective_is_judged_on_its_values() {
        let cycle = Measure::Metric("cycle".into());
        let p = plan(vec![objective(cycle, 60.0, day(7, 1))]);
        let no_usage = |_: UsageMeasure, _: NaiveDate| None;
        // Falling 10 days a month from 90: 60 by April, well before July.
        let falling = metric(vec![
            (day(1, 15), 85.0),
            (day(2, 15), 75.0),
            (day(3, 15), 65.0),
        ]);
        let [o] = progress(&p, day(3, 20), std::slice::from_ref(&falling), &no_usage)
            .try_into()
            .unwrap();
        assert_eq!(o.status, Status::OnTrack);
        // The metric had no value by the start: its own baseline counts.
        assert_eq!(o.baseline, Some(90.0));
        assert!((o.attainment_pct.unwrap() - 83.3).abs() < 0.1, "{o:?}");
        assert!(o.projected.unwrap() < 60.0 && !o.higher_is_better);
        // Flat at 80: short of 60 by July.
        let flat = metric(vec![(day(2, 1), 80.0), (day(3, 1), 80.0)]);
        assert_eq!(
            progress(&p, day(3, 20), std::slice::from_ref(&flat), &no_usage)[0].status,
            Status::AtRisk
        );
        // Past the due day, the value on it decides, whatever came later.
        let late = metric(vec![(day(6, 1), 70.0), (day(8, 1), 50.0)]);
        assert_eq!(
            progress(&p, day(9, 1), &[late], &no_usage)[0].status,
            Status::Missed
        );
        let reached = metric(vec![(day(6, 1), 58.0), (day(8, 1), 70.0)]);
        assert_eq!(
            progress(&p, day(9, 1), &[reached], &no_usage)[0].status,
            Status::Met
        );
        // Before the start, and without the metric.
        assert_eq!(
            progress(&p, day(1, 1).pred_opt().unwrap(), &[flat], &no_usage)[0].status,
            Status::NotStarted
        );
        assert_eq!(
            progress(&p, day(3, 20), &[], &no_usage)[0].status,
            Status::NoData
        );
    }

    #[test]
    fn a_usage_objective_is_read_on_its_days() {
        let users = Measure::Usage(UsageMeasure::ActiveUsers30d);
        let p = plan(vec![objective(users, 40.0, day(6, 30))]);
        let days = usage_days(&p, day(3, 1));
        assert!(days.contains(&day(1, 1)) && days.contains(&day(3, 1)));
        assert!(days.iter().all(|d| *d >= day(1, 1) && *d <= day(3, 1)));
        // Ten users at the start, five more every 14 days.
        let growing = |_: UsageMeasure, d: NaiveDate| {
            Some(10.0 + 5.0 * ((d - day(1, 1)).num_days() / 14) as f64)
        };
        let [o] = progress(&p, day(3, 1), &[], &growing).try_into().unwrap();
        assert_eq!(
            (o.baseline, o.status),
            (Some(10.0), Status::OnTrack),
            "{o:?}"
        );
        let stuck = |_: UsageMeasure, _: NaiveDate| Some(10.0);
        let [o] = progress(&p, day(3, 1), &[], &stuck).try_into().unwrap();
        assert_eq!(o.status, Status::AtRisk);
        assert_eq!(o.attainment_pct, Some(0.0));
    }

    #[test]
    fn the_days_a_status_needs_give_the_same_status() {
        let users = Measure::Usage(UsageMeasure::ActiveUsers30d);
        let p = plan(vec![
            objective(users.clone(), 40.0, day(6, 30)),
            objective(users, 12.0, day(2, 1)),
        ]);
        let growing = |_: UsageMeasure, d: NaiveDate| {
            Some(10.0 + 5.0 * ((d - day(1, 1)).num_days() / 14) as f64)
        };
        for as_of in [day(1, 20), day(3, 1), day(6, 1), day(8, 1)] {
            let on_as_of = |m| growing(m, as_of).unwrap();
            let needed = status_days(&p, as_of, on_as_of);
            assert!(needed.is_subset(&usage_days(&p, as_of).into_iter().chain([as_of]).collect()));
            let only_needed = |m: UsageMeasure, d: NaiveDate| {
                (d == as_of || needed.contains(&d))
                    .then(|| growing(m, d))
                    .flatten()
            };
            let full: Vec<Status> = progress(&p, as_of, &[], &growing)
                .iter()
                .map(|o| o.status)
                .collect();
            let lean: Vec<Status> = progress(&p, as_of, &[], &only_needed)
                .iter()
                .map(|o| o.status)
                .collect();
            assert_eq!(full, lean, "{as_of}");
        }
        // Past due, only the due day is read.
        assert_eq!(
            status_days(
                &plan(vec![objective(
                    Measure::Usage(UsageMeasure::Events30d),
                    5.0,
                    day(2, 1)
                )]),
                day(3, 1),
                |_| 0.0
            ),
            BTreeSet::from([day(2, 1)])
        );
    }

    #[test]
    fn shares_count_what_is_judged() {
        let outcome = |status| Outcome {
            status,
            higher_is_better: true,
            baseline: None,
            value: None,
            attainment_pct: None,
            projected: None,
        };
        let all = [
            outcome(Status::Met),
            outcome(Status::OnTrack),
            outcome(Status::AtRisk),
            outcome(Status::Missed),
            outcome(Status::NoData),
            outcome(Status::NotStarted),
        ];
        assert_eq!(shares(&all), (Some(50.0), Some(50.0)));
        assert_eq!(shares(&all[4..]), (None, None));
    }
}
