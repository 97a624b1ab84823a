//! Renewal outcomes.

use tenure_platform::time::to_date;
use tenure_proto::common::v1::{DateRange, Money};
use tenure_proto::renewals::v1::{
    ChurnReason, ListRenewalOutcomesRequest, OutcomeKind, RecordRenewalOutcomeRequest,
    RenewalOutcome,
};
use tenure_tests::{TestStack, violated_fields};

use crate::fixtures::past_terms;

fn day(y: i32, m: u32, d: u32) -> Option<tenure_proto::common::v1::Date> {
    Some(to_date(chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap()))
}

fn usd(minor: i64) -> Option<Money> {
    Some(Money {
        currency_code: "USD".into(),
        amount_minor: minor,
    })
}

fn outcome(
    subscription: &str,
    kind: OutcomeKind,
    previous: i64,
    new: i64,
    reason: ChurnReason,
    month: u32,
) -> RenewalOutcome {
    RenewalOutcome {
        account_id: format!("acct-{subscription}"),
        subscription_id: subscription.to_owned(),
        term_end_date: day(2026, month, 28),
        kind: kind as i32,
        previous_arr: usd(previous),
        new_arr: usd(new),
        churn_reason: reason as i32,
        decided_on: day(2026, month, 20),
        ..Default::default()
    }
}

/// Terms for `outcome(subscription, …, month)` to name.
async fn terms(app: &mut TestStack, named: &[(&str, u32)]) {
    let terms: Vec<(String, String, chrono::NaiveDate)> = named
        .iter()
        .map(|(subscription, month)| {
            let end = chrono::NaiveDate::from_ymd_opt(2026, *month, 28).unwrap();
            (
                (*subscription).to_owned(),
                format!("acct-{subscription}"),
                end,
            )
        })
        .collect();
    past_terms(app, "smb", &terms).await;
}

fn record(request_id: &str, outcome: RenewalOutcome) -> RecordRenewalOutcomeRequest {
    RecordRenewalOutcomeRequest {
        request_id: request_id.to_owned(),
        outcome: Some(outcome),
    }
}

#[tokio::test]
async fn outcomes_are_recorded_once_and_listed_by_decision_date() {
    let mut app = TestStack::spawn().await;
    terms(&mut app, &[("s1", 3), ("c0", 5), ("c1", 7), ("c2", 9)]).await;
    let renewed = outcome(
        "s1",
        OutcomeKind::Renewed,
        10_000,
        12_000,
        ChurnReason::Unspecified,
        3,
    );
    let first = app
        .renewals
        .record_renewal_outcome(record("r-1", renewed.clone()))
        .await
        .unwrap()
        .into_inner();
    let retry = app
        .renewals
        .record_renewal_outcome(record("r-1", renewed.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, retry, "a retry returns the same outcome");

    let twice = app
        .renewals
        .record_renewal_outcome(record("r-2", renewed))
        .await
        .unwrap_err();
    assert_eq!(twice.code(), tonic::Code::AlreadyExists);

    for (i, month) in [5, 7, 9].into_iter().enumerate() {
        let churned = outcome(
            &format!("c{i}"),
            OutcomeKind::Churned,
            5_000,
            0,
            ChurnReason::Price,
            month,
        );
        app.renewals
            .record_renewal_outcome(record("", churned))
            .await
            .unwrap();
    }
    let listed = app
        .renewals
        .list_renewal_outcomes(ListRenewalOutcomesRequest {
            page_size: 2,
            decided: Some(DateRange {
                start: day(2026, 4, 1),
                end: day(2026, 12, 1),
            }),
            kind: OutcomeKind::Churned as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let subscriptions: Vec<_> = listed
        .outcomes
        .iter()
        .map(|o| o.subscription_id.as_str())
        .collect();
    assert_eq!(subscriptions, ["c2", "c1"], "newest decision first");
    let rest = app
        .renewals
        .list_renewal_outcomes(ListRenewalOutcomesRequest {
            page_size: 2,
            page_token: listed.next_page_token,
            decided: Some(DateRange {
                start: day(2026, 4, 1),
                end: day(2026, 12, 1),
            }),
            kind: OutcomeKind::Churned as i32,
            segment: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.outcomes.len(), 1);
    assert_eq!(rest.outcomes[0].subscription_id, "c0");
    assert!(rest.next_page_token.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn inconsistent_outcomes_name_each_field() {
    let mut app = TestStack::spawn().await;
    let mut bad = outcome(
        "s9",
        OutcomeKind::Churned,
        10_000,
        1_000,
        ChurnReason::Unspecified,
        3,
    );
    bad.previous_arr = Some(Money {
        currency_code: "usd".into(),
        amount_minor: -1,
    });
    bad.term_end_date = Some(tenure_proto::common::v1::Date {
        year: 2026,
        month: 2,
        day: 30,
    });
    let status = app
        .renewals
        .record_renewal_outcome(record("", bad))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        [
            "outcome.term_end_date",
            "outcome.previous_arr.currency_code",
            "outcome.previous_arr.amount_minor"
        ]
    );
    let churn_without_reason = outcome(
        "s9",
        OutcomeKind::Churned,
        10_000,
        1_000,
        ChurnReason::Unspecified,
        3,
    );
    let status = app
        .renewals
        .record_renewal_outcome(record("", churn_without_reason))
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["outcome.new_arr", "outcome.churn_reason"]
    );
    let status = app
        .renewals
        .record_renewal_outcome(RecordRenewalOutcomeRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["outcome"]);
    app.stop().await;
}

/// An outcome names a term that was: its subscription, that subscription's
/// account and the end of one of its terms, as ingestion knows them.
#[tokio::test]
async fn outcomes_name_terms_that_were() {
    let mut app = TestStack::spawn().await;
    terms(&mut app, &[("s1", 3)]).await;
    let renewed = |subscription: &str, month| {
        outcome(
            subscription,
            OutcomeKind::Renewed,
            10_000,
            10_000,
            ChurnReason::Unspecified,
            month,
        )
    };
    let mut elsewhere = renewed("s1", 3);
    elsewhere.account_id = "acct-other".into();
    for (wrong, field) in [
        (renewed("s404", 3), "outcome.subscription_id"),
        (renewed("s1", 4), "outcome.term_end_date"),
        (elsewhere, "outcome.account_id"),
    ] {
        let status = app
            .renewals
            .record_renewal_outcome(record("", wrong))
            .await
            .unwrap_err();
        assert_eq!(violated_fields(&status), [field]);
    }

    let status = app
        .renewals
        .batch_record_renewal_outcomes(
            tenure_proto::renewals::v1::BatchRecordRenewalOutcomesRequest {
                request_id: String::new(),
                outcomes: vec![renewed("s1", 3), renewed("s404", 3)],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["outcomes[1].subscription_id"]);
    let listed = app
        .renewals
        .list_renewal_outcomes(ListRenewalOutcomesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.outcomes.is_empty(),
        "nothing of the batch is written"
    );

    app.renewals
        .record_renewal_outcome(record("", renewed("s1", 3)))
        .await
        .expect("the term that was");
    app.stop().await;
}
