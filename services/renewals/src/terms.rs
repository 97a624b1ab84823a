//! Whether renewal outcomes name terms that were: each outcome's
//! subscription, its account and the end of one of its terms, as renewals'
//! copy of ingestion's history holds them or, for what the copy does not
//! hold yet, as ingestion (the system of record) holds them now.

use std::collections::{BTreeSet, HashMap};

use chrono::NaiveDate;
use sqlx::PgPool;
use tenure_platform::client::TracedChannel;
use tenure_platform::{ApiError, ApiResult, Violations};
use tenure_proto::ingestion::v1::GetSubscriptionHistoryRequest;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;

use crate::outcomes::NewOutcome;

/// Subscription ids per history call (ingestion's limit).
const PER_CALL: usize = 1000;

/// The (account, term end) pairs each subscription had.
type Terms = HashMap<String, BTreeSet<(String, NaiveDate)>>;

/// Adds a violation, under `field(i)`, for each outcome `i` whose
/// subscription, account or term end no subscription had.
pub async fn check(
    pool: &PgPool,
    ingestion: &IngestionServiceClient<TracedChannel>,
    outcomes: &[NewOutcome],
    field: impl Fn(usize) -> String,
    violations: &mut Violations,
) -> ApiResult<()> {
    let ids: Vec<String> = outcomes
        .iter()
        .map(|o| o.subscription_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut terms = local(pool, &ids).await?;
    let missing: Vec<String> = outcomes
        .iter()
        .filter(|o| !had(&terms, o))
        .map(|o| o.subscription_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for chunk in missing.chunks(PER_CALL) {
        terms.extend(upstream(ingestion, chunk).await?);
    }
    for (i, outcome) in outcomes.iter().enumerate() {
        if had(&terms, outcome) {
            continue;
        }
        let id = &outcome.subscription_id;
        match terms.get(id) {
            None => violations.add(
                format!("{}.subscription_id", field(i)),
                "is not a subscription ingestion knows",
            ),
            Some(known) if !known.iter().any(|(a, _)| *a == outcome.account_id) => violations.add(
                format!("{}.account_id", field(i)),
                format!("is not the account of subscription {id}"),
            ),
            Some(_) => violations.add(
                format!("{}.term_end_date", field(i)),
                format!("is not the end of any term of subscription {id}"),
            ),
        }
    }
    Ok(())
}

fn had(terms: &Terms, outcome: &NewOutcome) -> bool {
    terms
        .get(&outcome.subscription_id)
        .is_some_and(|known| known.contains(&(outcome.account_id.clone(), outcome.term_end_date)))
}

async fn local(pool: &PgPool, ids: &[String]) -> sqlx::Result<Terms> {
    let rows: Vec<(String, String, NaiveDate)> = sqlx::query_as(
        "SELECT DISTINCT subscription_id, account_id, term_end FROM renewals.subscription_versions \
         WHERE subscription_id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let mut terms = Terms::new();
    for (subscription, account, end) in rows {
        terms
            .entry(subscription)
            .or_default()
            .insert((account, end));
    }
    Ok(terms)
}

async fn upstream(
    ingestion: &IngestionServiceClient<TracedChannel>,
    ids: &[String],
) -> ApiResult<Terms> {
    let history = ingestion
        .clone()
        .get_subscription_history(GetSubscriptionHistoryRequest {
            subscription_ids: ids.to_vec(),
        })
        .await
        .map_err(|status| ApiError::from_upstream(status, "subscription history"))?
        .into_inner();
    let mut terms = Terms::new();
    for subscription in history.subscriptions {
        let known = terms.entry(subscription.subscription_id).or_default();
        for version in subscription.versions {
            let mut ignored = Violations::default();
            if let Some(end) =
                tenure_platform::time::date(version.term_end.as_ref(), "", &mut ignored)
            {
                known.insert((version.account_id, end));
            }
        }
    }
    Ok(terms)
}
