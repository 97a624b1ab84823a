//! What training asks of the other services about the past, behind a small
//! trait: renewal outcomes and first terms from renewals, signals as of
//! past days from ingestion. [`GrpcPasts`] asks them over gRPC; the tests
//! of the training jobs answer from memory.

use std::collections::HashMap;

use chrono::NaiveDate;
use tenure_platform::client::TracedChannel;
use tenure_platform::time;
use tenure_proto::common::v1::DateRange;
use tenure_proto::ingestion::v1::AccountSignals;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;
use tenure_proto::renewals::v1::{
    FirstTerm, ListRenewalOutcomesRequest, OutcomeKind, StreamFirstTermsRequest,
};

use crate::signals;

/// A decided renewal: the account, the end of the term it decided, and
/// whether the customer churned.
#[derive(Clone, Debug, PartialEq)]
pub struct PastOutcome {
    pub account_id: String,
    pub term_end: NaiveDate,
    pub churned: bool,
}

/// The past as the other services know it.
#[tonic::async_trait]
pub trait Pasts: Send + Sync {
    /// A page of the renewal outcomes decided by `decided_by` (all when
    /// `None`), after `page_token`; the next page's token, empty at the end.
    async fn outcomes(
        &self,
        decided_by: Option<NaiveDate>,
        page_token: String,
    ) -> anyhow::Result<(Vec<PastOutcome>, String)>;

    /// The signals of each (account, day) asked for; an account the day
    /// did not know (not yet created, or erased) is left out.
    async fn signals_at(
        &self,
        pairs: Vec<(String, NaiveDate)>,
    ) -> anyhow::Result<HashMap<(String, NaiveDate), AccountSignals>>;

    /// Every customer's first term decided by `as_of` (all when `None`),
    /// and whether it still paid `look_days` after its first paid day.
    async fn first_terms(
        &self,
        as_of: Option<NaiveDate>,
        look_days: i32,
    ) -> anyhow::Result<Vec<FirstTerm>>;
}

/// The past asked of renewals and ingestion over gRPC.
#[derive(Clone)]
pub struct GrpcPasts {
    pub ingestion: IngestionServiceClient<TracedChannel>,
    pub renewals: RenewalsServiceClient<TracedChannel>,
}

#[tonic::async_trait]
impl Pasts for GrpcPasts {
    async fn outcomes(
        &self,
        decided_by: Option<NaiveDate>,
        page_token: String,
    ) -> anyhow::Result<(Vec<PastOutcome>, String)> {
        let decided = decided_by.map(|day| DateRange {
            start: None,
            end: day.succ_opt().map(time::to_date),
        });
        let page = self
            .renewals
            .clone()
            .list_renewal_outcomes(ListRenewalOutcomesRequest {
                page_size: 1000,
                page_token,
                decided,
                ..Default::default()
            })
            .await?
            .into_inner();
        let outcomes = page
            .outcomes
            .into_iter()
            .filter_map(|outcome| {
                let term_end = outcome.term_end_date.as_ref().and_then(time::from_date)?;
                Some(PastOutcome {
                    churned: outcome.kind() == OutcomeKind::Churned,
                    account_id: outcome.account_id,
                    term_end,
                })
            })
            .collect();
        Ok((outcomes, page.next_page_token))
    }

    async fn signals_at(
        &self,
        pairs: Vec<(String, NaiveDate)>,
    ) -> anyhow::Result<HashMap<(String, NaiveDate), AccountSignals>> {
        let mut request = signals::at_days(&pairs);
        request.skip_unknown = true;
        let mut stream = signals::SignalStream::open(&self.ingestion, request).await?;
        let mut found = HashMap::with_capacity(pairs.len());
        while let Some(s) = stream.next().await? {
            if let Some(day) = s.as_of.as_ref().and_then(time::from_date) {
                found.insert((s.account_id.clone(), day), s);
            }
        }
        Ok(found)
    }

    async fn first_terms(
        &self,
        as_of: Option<NaiveDate>,
        look_days: i32,
    ) -> anyhow::Result<Vec<FirstTerm>> {
        let mut stream = self
            .renewals
            .clone()
            .stream_first_terms(StreamFirstTermsRequest {
                as_of: as_of.map(time::to_date),
                look_days,
                segment: String::new(),
            })
            .await?
            .into_inner();
        let mut terms = Vec::new();
        while let Some(message) = stream.message().await? {
            terms.extend(message.terms);
        }
        Ok(terms)
    }
}

/// The past from memory, for the tests of the training jobs: outcomes in
/// pages of two, the signals of the (account, day) pairs it knows, first
/// terms, and every pair it was asked for.
#[cfg(test)]
pub(crate) mod remembered {
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    pub(crate) struct Remembered {
        pub(crate) outcomes: Vec<PastOutcome>,
        pub(crate) signals: HashMap<(String, NaiveDate), AccountSignals>,
        pub(crate) first_terms: Vec<FirstTerm>,
        pub(crate) asked: Mutex<Vec<(String, NaiveDate)>>,
    }

    pub(crate) fn day(text: &str) -> NaiveDate {
        text.parse().expect("a day")
    }

    /// Signals of `account` on `on` with `active_users_30d` users.
    pub(crate) fn signals(account: &str, on: &str, active_users_30d: i32) -> AccountSignals {
        AccountSignals {
            account_id: account.to_owned(),
            as_of: Some(time::to_date(day(on))),
            active_users_30d,
            ..Default::default()
        }
    }

    impl Remembered {
        pub(crate) fn knows(mut self, signals: AccountSignals) -> Self {
            let on = signals
                .as_of
                .as_ref()
                .and_then(time::from_date)
                .expect("a day");
            self.signals
                .insert((signals.account_id.clone(), on), signals);
            self
        }

        pub(crate) fn asked(&self) -> Vec<(String, NaiveDate)> {
            let mut asked = self.asked.lock().expect("not poisoned").clone();
            asked.sort();
            asked
        }
    }

    #[tonic::async_trait]
    impl Pasts for Remembered {
        async fn outcomes(
            &self,
            decided_by: Option<NaiveDate>,
            page_token: String,
        ) -> anyhow::Result<(Vec<PastOutcome>, String)> {
            let decided: Vec<&PastOutcome> = self
                .outcomes
                .iter()
                .filter(|o| decided_by.is_none_or(|day| o.term_end <= day))
                .collect();
            let start: usize = if page_token.is_empty() {
                0
            } else {
                page_token.parse()?
            };
            let page = decided
                .iter()
                .skip(start)
                .take(2)
                .map(|o| (*o).clone())
                .collect();
            let next = if start + 2 < decided.len() {
                (start + 2).to_string()
            } else {
                String::new()
            };
            Ok((page, next))
        }

        async fn signals_at(
            &self,
            pairs: Vec<(String, NaiveDate)>,
        ) -> anyhow::Result<HashMap<(String, NaiveDate), AccountSignals>> {
            self.asked
                .lock()
                .expect("not poisoned")
                .extend(pairs.iter().cloned());
            Ok(pairs
                .into_iter()
                .filter_map(|pair| Some((pair.clone(), self.signals.get(&pair)?.clone())))
                .collect())
        }

        async fn first_terms(
            &self,
            _as_of: Option<NaiveDate>,
            _look_days: i32,
        ) -> anyhow::Result<Vec<FirstTerm>> {
            Ok(self.first_terms.clone())
        }
    }
}
