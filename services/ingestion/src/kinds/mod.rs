//! The kinds of source records ingestion keeps besides accounts, as plain
//! domain values (stored as JSON in the generic record store): people and
//! contracts here, what happens at an account in [`activity`], the value
//! journey in [`value`].

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};

use crate::records::Record;

/// Implements [`Record`] from the id field, whether the kind belongs to an
/// account, and (optionally) how its event time is found and the days
/// between which the signals can use a state ([`Record::useful_before`],
/// [`Record::useful_from`]).
macro_rules! record {
    ($type:ty, $kind:literal, $id:ident, $scope:ident) => {
        record!($type, $kind, $id, $scope, |r| r.updated_at);
    };
    ($type:ty, $kind:literal, $id:ident, $scope:ident, $event:expr) => {
        record!($type, $kind, $id, $scope, $event, |_| None, |_| None);
    };
    ($type:ty, $kind:literal, $id:ident, $scope:ident, $event:expr, $useful:expr, $from:expr) => {
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
            fn useful_before(&self) -> Option<NaiveDate> {
                let useful: fn(&$type) -> Option<NaiveDate> = $useful;
                useful(self)
            }
            fn useful_from(&self) -> Option<NaiveDate> {
                let from: fn(&$type) -> Option<NaiveDate> = $from;
                from(self)
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

/// The window of recent tickets and external signals the signals read, in
/// days up to a day's end (`signals::load`'s `since`).
pub const RECENT_DAYS: i64 = 90;

fn start_of(day: NaiveDate) -> DateTime<Utc> {
    day.and_time(NaiveTime::MIN).and_utc()
}

/// The day of an instant (UTC): what happened at it is before the end of
/// that day and of every later one.
fn day_of(instant: DateTime<Utc>) -> Option<NaiveDate> {
    Some(instant.date_naive())
}

mod activity;
mod value;

pub use activity::*;
pub use value::*;

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

impl SubscriptionRecord {
    /// Never in force from the end of its term; never at all unless active
    /// or trialling (then its start bounds it: it was not in force before).
    fn useful_before(&self) -> Option<NaiveDate> {
        Some(match self.status {
            SubscriptionStatus::Active | SubscriptionStatus::Trial => self.term_end,
            _ => self.term_start.min(self.term_end),
        })
    }
}

record!(
    SubscriptionRecord,
    "subscription",
    subscription_id,
    account,
    |r| r.updated_at,
    SubscriptionRecord::useful_before,
    |r| Some(r.term_start)
);

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn terms_are_in_force_before_their_bound_only() {
        let mut term = SubscriptionRecord {
            subscription_id: "s".into(),
            account_id: "a".into(),
            status: SubscriptionStatus::Active,
            term_start: day(2026, 1, 1),
            term_end: day(2027, 1, 1),
            currency: "USD".into(),
            arr_minor: 100,
            seats: 1,
            auto_renew: true,
            line_items: Vec::new(),
            updated_at: Utc::now(),
        };
        for status in [SubscriptionStatus::Active, SubscriptionStatus::Canceled] {
            term.status = status;
            let bound = Record::useful_before(&term).unwrap();
            assert!(
                bound.iter_days().take(800).all(|d| !term.in_force_on(d)),
                "{status:?}"
            );
        }
        term.status = SubscriptionStatus::Trial;
        assert!(term.in_force_on(day(2026, 12, 31)));
        let from = Record::useful_from(&term).unwrap();
        assert!(term.in_force_on(from));
        assert!(
            from.iter_days()
                .rev()
                .skip(1)
                .take(800)
                .all(|d| !term.in_force_on(d))
        );
    }
}
