//! Each customer's first term and whether it renewed, read off the ledger:
//! what prospect fit learns from.

use std::pin::Pin;

use chrono::{Datelike as _, Days, NaiveDate};
use tenure_platform::{ApiResult, Violations, time};
use tenure_proto::renewals::v1 as pb;
use tokio_stream::Stream;

use super::observed;
use crate::forecasts::{day_or_today, filter_text};
use crate::ledger::{Book, Subscription};
use crate::pipeline;
use crate::state::RenewalsApi;
use crate::views::money;

/// First terms in one streamed message.
const BATCH: usize = 1000;

pub type FirstTermStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamFirstTermsResponse, tonic::Status>> + Send>>;

/// A customer's first term as the ledger knows it on the as-of day.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstTerm {
    pub first_paid_on: NaiveDate,
    /// The term bought on the first paid day, in months.
    pub term_months: u32,
    pub currency: String,
    pub starting_arr_minor: i64,
    /// The end of the term in force at the look day, or the day the
    /// customer stopped paying before it.
    pub decided_on: NaiveDate,
    pub renewed: bool,
    pub paying_at_look: bool,
}

/// Whole calendar months from `start` to `end`, at least one.
fn months(start: NaiveDate, end: NaiveDate) -> u32 {
    let count = (end.year() - start.year()) * 12 + end.month() as i32 - start.month() as i32;
    u32::try_from(count).unwrap_or(0).max(1)
}

/// The first term of a customer, decided by `as_of`: followed from its
/// first paid day to the end of the term in force `look_days` later (a
/// customer paying nothing then churned the day it stopped). `None` for an
/// account that never paid or whose term is still running.
pub fn first_term(
    subscriptions: &[Subscription],
    look_days: u32,
    as_of: NaiveDate,
) -> Option<FirstTerm> {
    let observed = observed(subscriptions, as_of)?;
    let start = observed.start;
    let bought = subscriptions
        .iter()
        .filter(|s| s.arr_on(start) > 0)
        .filter_map(|s| s.version_on(start))
        .min_by_key(|v| v.term_end)?;
    let look = start.checked_add_days(Days::new(u64::from(look_days)))?;
    let (decided_on, renewed, paying_at_look) = match observed.ended {
        Some(ended) if ended <= look => (ended, false, false),
        _ => {
            let term_end = subscriptions
                .iter()
                .filter(|s| s.arr_on(look) > 0)
                .filter_map(|s| s.version_on(look))
                .map(|v| v.term_end)
                .min()?;
            (
                term_end,
                Book::account_arr_on(subscriptions, term_end) > 0,
                true,
            )
        }
    };
    (decided_on <= as_of).then(|| FirstTerm {
        first_paid_on: start,
        term_months: months(bought.term_start, bought.term_end),
        currency: bought.currency.clone(),
        starting_arr_minor: Book::account_arr_on(subscriptions, start),
        decided_on,
        renewed,
        paying_at_look,
    })
}

impl RenewalsApi {
    pub(crate) async fn stream_first_terms(
        &self,
        request: pb::StreamFirstTermsRequest,
    ) -> ApiResult<FirstTermStream> {
        let mut violations = Violations::default();
        violations.check(
            request.look_days == 0 || (30..=365).contains(&request.look_days),
            "look_days",
            "must be 30-365 (0: 90)",
        );
        let segment = filter_text(&request.segment, "segment", &mut violations);
        let as_of = day_or_today(request.as_of.as_ref(), "as_of", &mut violations);
        violations.into_result()?;
        let look_days = if request.look_days == 0 {
            90
        } else {
            request.look_days.unsigned_abs()
        };
        let book = Book::from_versions(
            pipeline::versions_recorded_by(&self.pool, as_of, segment.as_deref()).await?,
        );
        let terms: Vec<pb::FirstTerm> = book
            .accounts
            .iter()
            .filter_map(|(account_id, subscriptions)| {
                let term = first_term(subscriptions, look_days, as_of)?;
                Some(pb::FirstTerm {
                    account_id: account_id.clone(),
                    first_paid_on: Some(time::to_date(term.first_paid_on)),
                    term_months: i32::try_from(term.term_months).unwrap_or(i32::MAX),
                    starting_arr: Some(money(&term.currency, term.starting_arr_minor)),
                    decided_on: Some(time::to_date(term.decided_on)),
                    renewed: term.renewed,
                    paying_at_look: term.paying_at_look,
                })
            })
            .collect();
        let messages: Vec<Result<pb::StreamFirstTermsResponse, tonic::Status>> = terms
            .chunks(BATCH)
            .map(|chunk| {
                Ok(pb::StreamFirstTermsResponse {
                    terms: chunk.to_vec(),
                })
            })
            .collect();
        Ok(Box::pin(tokio_stream::iter(messages)))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::ledger::{Status, Version};

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn at(on: NaiveDate) -> DateTime<Utc> {
        on.and_hms_opt(9, 0, 0).unwrap().and_utc()
    }

    fn version(
        id: &str,
        changed: NaiveDate,
        status: Status,
        term: (NaiveDate, NaiveDate),
        arr: i64,
    ) -> Version {
        Version {
            subscription_id: id.into(),
            account_id: "acme".into(),
            updated_at: at(changed),
            status,
            term_start: term.0,
            term_end: term.1,
            currency: "USD".into(),
            arr_minor: arr,
        }
    }

    #[test]
    fn an_annual_term_is_followed_to_its_end() {
        let year = (day(2024, 1, 1), day(2025, 1, 1));
        let next = (day(2025, 1, 1), day(2026, 1, 1));
        let renewed = Subscription::new(vec![
            version("s", day(2024, 1, 1), Status::Active, year, 12_000),
            version("s", day(2024, 12, 10), Status::Active, next, 13_200),
        ]);
        let term = first_term(std::slice::from_ref(&renewed), 90, day(2025, 6, 1)).unwrap();
        assert_eq!(
            term,
            FirstTerm {
                first_paid_on: day(2024, 1, 1),
                term_months: 12,
                currency: "USD".into(),
                starting_arr_minor: 12_000,
                decided_on: day(2025, 1, 1),
                renewed: true,
                paying_at_look: true,
            }
        );
        // Undecided until the term ends.
        assert_eq!(first_term(&[renewed], 90, day(2024, 12, 31)), None);

        let expired = Subscription::new(vec![
            version("s", day(2024, 1, 1), Status::Active, year, 12_000),
            version("s", day(2025, 1, 1), Status::Expired, year, 12_000),
        ]);
        let term = first_term(&[expired], 90, day(2025, 6, 1)).unwrap();
        assert!(!term.renewed && term.paying_at_look);
    }

    #[test]
    fn a_monthly_term_is_followed_past_the_look_and_early_churn_counts() {
        let month = |m: u32| (day(2024, m, 1), day(2024, m + 1, 1));
        let mut versions = vec![version(
            "m",
            day(2024, 1, 1),
            Status::Active,
            month(1),
            1_200,
        )];
        for m in 2..=6 {
            versions.push(version(
                "m",
                day(2024, m, 1),
                Status::Active,
                month(m),
                1_200,
            ));
        }
        let term = first_term(&[Subscription::new(versions)], 90, day(2024, 12, 1)).unwrap();
        assert_eq!(term.term_months, 1);
        // The look is 2024-03-31: the term in force ends on 2024-04-01.
        assert_eq!((term.decided_on, term.renewed), (day(2024, 4, 1), true));

        let cancelled = Subscription::new(vec![
            version("m", day(2024, 1, 1), Status::Active, month(1), 1_200),
            version("m", day(2024, 2, 1), Status::Active, month(2), 1_200),
            version("m", day(2024, 2, 20), Status::Canceled, month(2), 1_200),
        ]);
        let term = first_term(&[cancelled], 90, day(2024, 12, 1)).unwrap();
        assert_eq!(
            (term.decided_on, term.renewed, term.paying_at_look),
            (day(2024, 2, 20), false, false)
        );
        assert_eq!(first_term(&[], 90, day(2024, 12, 1)), None);
    }
}
