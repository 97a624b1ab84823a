//! The renewal pipeline, retention metrics, forecasts and cohorts, fed by
//! real subscription changes through ingestion.

mod cohorts;
mod coverage;
mod following;
mod forecasts;
mod lapsed;
mod retention;
mod sweep;

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use tenure_proto::common::v1::DateRange;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::renewals::v1 as pb;
use tenure_tests::{TestStack, eventually, violated_fields};

use crate::fixtures::{date, past_terms, subscription, ts, usd};

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn at(text: &str) -> chrono::DateTime<Utc> {
    format!("{text}T12:00:00Z").parse().unwrap()
}

fn range(start: NaiveDate, end: NaiveDate) -> Option<DateRange> {
    Some(DateRange {
        start: date(start),
        end: date(end),
    })
}

async fn accounts(app: &mut TestStack, ids: &[&str], segment: &str) {
    let accounts = ids
        .iter()
        .map(|id| ipb::Account {
            account_id: (*id).into(),
            name: format!("{id} Inc"),
            segment: segment.into(),
            owner: "dana".into(),
            updated_at: ts(at("2020-01-01")),
            ..Default::default()
        })
        .collect();
    app.ingestion
        .batch_upsert_accounts(ipb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
        })
        .await
        .unwrap();
}

async fn subscriptions(app: &mut TestStack, subscriptions: Vec<ipb::Subscription>) {
    app.ingestion
        .batch_upsert_subscriptions(ipb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions,
        })
        .await
        .unwrap();
}

async fn pipeline(app: &TestStack, include_closed: bool) -> Vec<pb::RenewalOpportunity> {
    app.renewals
        .clone()
        .list_renewal_pipeline(pb::ListRenewalPipelineRequest {
            page_size: 1000,
            include_closed,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .opportunities
}

/// Waits until renewals has refreshed every queued subscription.
pub(crate) async fn synced(app: &TestStack) {
    let db = app.db().await;
    // What is still pending: queued subscriptions, and ingestion's
    // undelivered notices by topic (set-aside ones apart).
    let pending = || async {
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM renewals.subscription_queue")
            .fetch_one(&db)
            .await
            .unwrap_or(-1);
        let outbox: Vec<(String, bool, i64, Option<String>)> = sqlx::query_as(
            "SELECT topic, dead_at IS NOT NULL, count(*), max(last_error) \
             FROM ingestion.outbox WHERE delivered_at IS NULL GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .fetch_all(&db)
        .await
        .unwrap_or_default();
        (queued, outbox)
    };
    let done = eventually(Duration::from_secs(20), || async {
        let (queued, outbox) = pending().await;
        (queued == 0 && outbox.is_empty()).then_some(())
    })
    .await;
    assert!(
        done.is_some(),
        "renewals refreshed the changed subscriptions: still pending (queued, outbox) {:?}",
        pending().await
    );
    // The refresh of the last batch may still be committing.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

fn outcome(i: usize, renewed: bool, term_end: NaiveDate) -> pb::RecordRenewalOutcomeRequest {
    let kind = if renewed {
        pb::OutcomeKind::Renewed
    } else {
        pb::OutcomeKind::Churned
    };
    pb::RecordRenewalOutcomeRequest {
        request_id: format!("outcome-{i}"),
        outcome: Some(pb::RenewalOutcome {
            account_id: format!("hist-{i}"),
            subscription_id: format!("hist-{i}-sub"),
            term_end_date: date(term_end),
            kind: kind as i32,
            previous_arr: usd(1_000),
            new_arr: usd(if renewed { 1_000 } else { 0 }),
            churn_reason: if renewed {
                0
            } else {
                pb::ChurnReason::Price as i32
            },
            decided_on: date(term_end),
            ..Default::default()
        }),
    }
}
