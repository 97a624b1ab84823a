//! The value journey's records: success metrics, success plans and
//! advocacy.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::start_of;
use crate::records::Record;

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    HigherIsBetter,
    LowerIsBetter,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct MetricRecord {
    pub metric_id: String,
    pub account_id: String,
    pub name: String,
    pub unit: String,
    pub baseline: f64,
    pub target: f64,
    pub direction: Direction,
    /// Dated actual values, in date order.
    pub values: Vec<(NaiveDate, f64)>,
    pub updated_at: DateTime<Utc>,
}

impl MetricRecord {
    /// Progress from baseline to target of the latest value on or before
    /// `day`, in percent (100 = target reached; may exceed 100 or be negative).
    pub fn attainment_on(&self, day: NaiveDate) -> Option<f64> {
        let (_, latest) = self
            .values
            .iter()
            .rev()
            .find(|(measured, _)| *measured <= day)?;
        let span = self.target - self.baseline;
        if span == 0.0 {
            return None;
        }
        // The direction is carried by the sign of the span; it documents intent.
        Some((latest - self.baseline) / span * 100.0)
    }
}

record!(MetricRecord, "success_metric", metric_id, account, |r| r
    .values
    .first()
    .map(|(day, _)| start_of(*day))
    .unwrap_or(r.updated_at));

/// A usage measure of a success-plan objective.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum UsageMeasure {
    ActiveUsers30d,
    Events30d,
}

/// What an objective is measured by.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// A success metric of the plan's account, by id.
    Metric(String),
    Usage(UsageMeasure),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ObjectiveDef {
    pub objective_id: String,
    pub name: String,
    pub owner: String,
    pub measure: Measure,
    pub target: f64,
    pub due_on: NaiveDate,
}

/// A success plan: objectives measured from the start day to their due days.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PlanRecord {
    pub plan_id: String,
    pub account_id: String,
    pub name: String,
    pub owner: String,
    pub start_on: NaiveDate,
    pub objectives: Vec<ObjectiveDef>,
    pub updated_at: DateTime<Utc>,
}

record!(
    PlanRecord,
    "success_plan",
    plan_id,
    account,
    |r| start_of(r.start_on).min(r.updated_at),
    |_| None,
    |r| Some(r.start_on)
);

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum AdvocacyKind {
    Reference,
    CaseStudy,
    Review,
    Referral,
    FeedbackAdopted,
}

/// Something an account did for the vendor beyond paying.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct AdvocacyRecord {
    pub activity_id: String,
    pub account_id: String,
    pub kind: AdvocacyKind,
    pub occurred_at: DateTime<Utc>,
    pub contact_id: String,
    /// Referrals: the account the referral became.
    pub referred_account_id: Option<String>,
    pub note: String,
    pub updated_at: DateTime<Utc>,
}

record!(AdvocacyRecord, "advocacy", activity_id, account, |r| r
    .occurred_at);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::tests::day;

    #[test]
    fn attainment_runs_from_baseline_to_target_either_way() {
        let mut metric = MetricRecord {
            metric_id: "m".into(),
            account_id: "a".into(),
            name: "sales cycle".into(),
            unit: "days".into(),
            baseline: 90.0,
            target: 60.0,
            direction: Direction::LowerIsBetter,
            values: vec![(day(2026, 1, 1), 80.0), (day(2026, 3, 1), 66.0)],
            updated_at: Utc::now(),
        };
        assert_eq!(metric.attainment_on(day(2026, 2, 1)).unwrap().round(), 33.0);
        assert_eq!(metric.attainment_on(day(2026, 4, 1)).unwrap().round(), 80.0);
        assert!(metric.attainment_on(day(2025, 12, 1)).is_none());
        metric.target = 90.0;
        assert!(metric.attainment_on(day(2026, 4, 1)).is_none());
    }
}
