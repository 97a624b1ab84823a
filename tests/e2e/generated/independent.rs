//! Retention computed straight from the generated subscription files,
//! without Tenure's ledger: what the API's figures must equal.

use std::collections::BTreeMap;

use chrono::{DateTime, Days, Months, NaiveDate, Utc};

/// One subscription version as the generator wrote it.
struct Version {
    effective: NaiveDate,
    active: bool,
    term_start: NaiveDate,
    term_end: NaiveDate,
    arr: i64,
}

/// Every account's USD subscription versions, by subscription.
pub(super) struct Base {
    accounts: BTreeMap<String, BTreeMap<String, Vec<Version>>>,
}

/// Movements summed by month, and the starting accounts' retention.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Figures {
    pub start: i64,
    pub end: i64,
    pub new: i64,
    pub expansion: i64,
    pub reactivation: i64,
    pub contraction: i64,
    pub churn: i64,
    /// Revenue at the end of accounts paying at the start, each capped at
    /// its start (GRR numerator) and not (NRR numerator).
    pub kept_capped: i64,
    pub kept: i64,
    pub logos_start: i64,
    pub logos_kept: i64,
}

impl Base {
    pub(super) fn read(jsonl: &str) -> Self {
        let mut accounts: BTreeMap<String, BTreeMap<String, Vec<Version>>> = BTreeMap::new();
        for line in jsonl.lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            if row["currency"] != "USD" {
                continue;
            }
            let day = |field: &str| row[field].as_str().unwrap().parse::<NaiveDate>().unwrap();
            let updated: DateTime<Utc> = row["updated_at"].as_str().unwrap().parse().unwrap();
            let term_start = day("term_start");
            // A change applies from the day it was made, but never before
            // the term it belongs to starts (a renewal booked early).
            let version = Version {
                effective: updated.date_naive().max(term_start),
                active: row["status"] == "active",
                term_start,
                term_end: day("term_end"),
                arr: row["arr_minor"].as_i64().unwrap(),
            };
            accounts
                .entry(row["account_id"].as_str().unwrap().to_owned())
                .or_default()
                .entry(row["subscription_id"].as_str().unwrap().to_owned())
                .or_default()
                .push(version);
        }
        Self { accounts }
    }

    /// An account's ARR on `day`: per subscription, the last version in
    /// effect by then, if active and its term covers the day.
    fn arr(subscriptions: &BTreeMap<String, Vec<Version>>, day: NaiveDate) -> i64 {
        subscriptions
            .values()
            .filter_map(|versions| versions.iter().rev().find(|v| v.effective <= day))
            .filter(|v| v.active && v.term_start <= day && day < v.term_end)
            .map(|v| v.arr)
            .sum()
    }

    fn paid_before(subscriptions: &BTreeMap<String, Vec<Version>>, day: NaiveDate) -> bool {
        subscriptions
            .values()
            .flatten()
            .any(|v| v.active && v.arr > 0 && v.effective < day && v.term_start < day)
    }

    /// The figures of `[start, end)`, months starting on the first.
    pub(super) fn figures(&self, start: NaiveDate, end: NaiveDate) -> Figures {
        let eve = |d: NaiveDate| d.pred_opt().unwrap();
        let mut f = Figures::default();
        let mut month = start;
        while month < end {
            let next = (month + Months::new(1)).min(end);
            for subscriptions in self.accounts.values() {
                let (before, after) = (
                    Self::arr(subscriptions, eve(month)),
                    Self::arr(subscriptions, eve(next)),
                );
                match (before, after) {
                    (0, 0) => {}
                    (0, a) if Self::paid_before(subscriptions, eve(month)) => f.reactivation += a,
                    (0, a) => f.new += a,
                    (b, 0) => f.churn += b,
                    (b, a) if a > b => f.expansion += a - b,
                    (b, a) => f.contraction += b - a,
                }
            }
            month = next;
        }
        for subscriptions in self.accounts.values() {
            let (before, after) = (
                Self::arr(subscriptions, eve(start)),
                Self::arr(subscriptions, eve(end)),
            );
            f.start += before;
            f.end += after;
            if before > 0 {
                f.logos_start += 1;
                f.kept += after;
                f.kept_capped += after.min(before);
                f.logos_kept += i64::from(after > 0);
            }
        }
        f
    }

    /// Each account's first term, decided by `as_of`: followed from its
    /// first paid day to the end of the term running `look` days later, or
    /// churned the first day before that it paid nothing. (renewed, paying
    /// at the look day) by account.
    pub(super) fn first_terms(
        &self,
        look: u64,
        as_of: NaiveDate,
    ) -> BTreeMap<String, (bool, bool)> {
        let mut terms = BTreeMap::new();
        for (account, subscriptions) in &self.accounts {
            let Some(first) = subscriptions
                .values()
                .flatten()
                .filter(|v| v.active && v.arr > 0)
                .map(|v| v.effective)
                .min()
            else {
                continue;
            };
            let look_day = first + Days::new(look);
            let stopped = first
                .iter_days()
                .take_while(|d| *d <= look_day)
                .find(|d| Self::arr(subscriptions, *d) == 0);
            let (decided, renewed, paying) = match stopped {
                Some(day) => (day, false, false),
                None => {
                    let end = subscriptions
                        .values()
                        .filter_map(|versions| {
                            versions.iter().rev().find(|v| v.effective <= look_day)
                        })
                        .filter(|v| v.active && v.term_start <= look_day && look_day < v.term_end)
                        .map(|v| v.term_end)
                        .min()
                        .unwrap();
                    (end, Self::arr(subscriptions, end) > 0, true)
                }
            };
            if decided <= as_of {
                terms.insert(account.clone(), (renewed, paying));
            }
        }
        terms
    }
}
