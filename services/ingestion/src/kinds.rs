//! The kinds of source records ingestion keeps besides accounts, as plain
//! domain values (stored as JSON in the generic record store).

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::records::Record;

/// Implements [`Record`] from the id field, whether the kind belongs to an
/// account, and (optionally) how its event time is found.
macro_rules! record {
    ($type:ty, $kind:literal, $id:ident, $scope:ident) => {
        record!($type, $kind, $id, $scope, |r| r.updated_at);
    };
    ($type:ty, $kind:literal, $id:ident, $scope:ident, $event:expr) => {
        impl Record for $type {
            const KIND: &'static str = $kind;
            fn record_id(&self) -> &str {
                &self.$id
            }
            record!(@account $scope);
            fn updated_at(&self) -> DateTime<Utc> {
                self.updated_at
            }
            fn event_time(&self) -> DateTime<Utc> {
                let event: fn(&$type) -> DateTime<Utc> = $event;
                event(self)
            }
        }
    };
    (@account account) => {
        fn account_id(&self) -> Option<&str> {
            Some(&self.account_id)
        }
    };
    (@account catalog) => {
        fn account_id(&self) -> Option<&str> {
            None
        }
    };
}

fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Sponsor,
    Champion,
    Admin,
    User,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ContactRecord {
    pub contact_id: String,
    pub account_id: String,
    pub email: String,
    pub name: String,
    pub title: String,
    pub roles: Vec<Role>,
    pub active: bool,
    pub updated_at: DateTime<Utc>,
}

impl ContactRecord {
    /// Whether the contact holds `role` and is still involved.
    pub fn acts_as(&self, role: Role) -> bool {
        self.active && self.roles.contains(&role)
    }
}

record!(ContactRecord, "contact", contact_id, account);

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Trial,
    Active,
    Canceled,
    Expired,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct LineItemRecord {
    pub product: String,
    pub plan: String,
    pub quantity: i32,
    pub arr_minor: i64,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SubscriptionRecord {
    pub subscription_id: String,
    pub account_id: String,
    pub status: SubscriptionStatus,
    pub term_start: NaiveDate,
    pub term_end: NaiveDate,
    pub currency: String,
    pub arr_minor: i64,
    pub seats: i32,
    pub auto_renew: bool,
    pub line_items: Vec<LineItemRecord>,
    pub updated_at: DateTime<Utc>,
}

impl SubscriptionRecord {
    /// Paying (or trialling) on `day`.
    pub fn in_force_on(&self, day: NaiveDate) -> bool {
        matches!(
            self.status,
            SubscriptionStatus::Active | SubscriptionStatus::Trial
        ) && self.term_start <= day
            && day < self.term_end
    }
}

record!(SubscriptionRecord, "subscription", subscription_id, account);

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FeatureTier {
    Basic,
    Advanced,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FeatureRecord {
    pub feature_name: String,
    pub display_name: String,
    pub tier: FeatureTier,
    pub updated_at: DateTime<Utc>,
}

record!(FeatureRecord, "feature", feature_name, catalog);

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TicketCategory {
    Defect,
    HowTo,
    FeatureRequest,
    Billing,
    Other,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TicketStatus {
    Open,
    Pending,
    Solved,
    Closed,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TicketRecord {
    pub ticket_id: String,
    pub account_id: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// 1 (most urgent) to 4.
    pub priority: u8,
    pub category: TicketCategory,
    pub status: TicketStatus,
    pub csat: Option<u8>,
    pub updated_at: DateTime<Utc>,
}

impl TicketRecord {
    /// Open at `instant`: opened before it and not closed by then.
    pub fn open_at(&self, instant: DateTime<Utc>) -> bool {
        self.opened_at < instant && self.closed_at.is_none_or(|closed| closed >= instant)
    }
}

record!(TicketRecord, "ticket", ticket_id, account, |r| r.opened_at);

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SurveyKind {
    Nps,
    Csat,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SurveyRecord {
    pub response_id: String,
    pub account_id: String,
    pub contact_id: String,
    pub kind: SurveyKind,
    pub score: i32,
    pub comment: String,
    pub responded_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

record!(SurveyRecord, "survey", response_id, account, |r| r
    .responded_at);

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Open,
    Paid,
    Void,
    Uncollectible,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct InvoiceRecord {
    pub invoice_id: String,
    pub account_id: String,
    pub currency: String,
    pub amount_minor: i64,
    pub issued_on: NaiveDate,
    pub due_on: NaiveDate,
    pub paid_on: Option<NaiveDate>,
    pub status: InvoiceStatus,
    pub updated_at: DateTime<Utc>,
}

impl InvoiceRecord {
    /// Days overdue on `day` (0 when not due, paid by then, or void).
    pub fn days_overdue_on(&self, day: NaiveDate) -> i64 {
        let unpaid = self.paid_on.is_none_or(|paid| paid > day);
        if self.status == InvoiceStatus::Void || !unpaid || self.issued_on > day {
            return 0;
        }
        (day - self.due_on).num_days().max(0)
    }
}

record!(InvoiceRecord, "invoice", invoice_id, account, |r| start_of(
    r.issued_on
));

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    FundingRound,
    Acquisition,
    Layoffs,
    KeyPersonChange,
    CompetitorEngagement,
    Other,
}

impl SignalKind {
    /// Signals that put the renewal at risk.
    pub fn is_risk(self) -> bool {
        matches!(
            self,
            Self::Acquisition | Self::Layoffs | Self::KeyPersonChange | Self::CompetitorEngagement
        )
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SignalRecord {
    pub signal_id: String,
    pub account_id: String,
    pub kind: SignalKind,
    pub occurred_at: DateTime<Utc>,
    pub source: String,
    pub properties: serde_json::Value,
    pub updated_at: DateTime<Utc>,
}

record!(SignalRecord, "external_signal", signal_id, account, |r| r
    .occurred_at);

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

record!(PlanRecord, "success_plan", plan_id, account, |r| start_of(
    r.start_on
)
.min(r.updated_at));

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

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn invoices_are_overdue_only_while_unpaid() {
        let invoice = InvoiceRecord {
            invoice_id: "i".into(),
            account_id: "a".into(),
            currency: "USD".into(),
            amount_minor: 100,
            issued_on: day(2026, 1, 1),
            due_on: day(2026, 1, 31),
            paid_on: Some(day(2026, 3, 1)),
            status: InvoiceStatus::Paid,
            updated_at: Utc::now(),
        };
        assert_eq!(invoice.days_overdue_on(day(2026, 1, 15)), 0);
        assert_eq!(
            invoice.days_overdue_on(day(2026, 2, 10)),
            10,
            "paid later than the as-of day"
        );
        assert_eq!(invoice.days_overdue_on(day(2026, 3, 2)), 0);
    }

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
