//! Ingestion's record kinds: contacts and relationship changes,
//! subscriptions and contract changes, the other kinds, the timeline.

use std::time::Duration;

use tenure_proto::ingestion::v1 as pb;
use tenure_proto::ingestion::v1::{ContactRole, TicketCategory, TicketPriority};
use tenure_tests::{TestStack, eventually, violated_fields};

use crate::fixtures::*;
use crate::ingestion::account;

async fn with_account(id: &str) -> TestStack {
    let mut app = TestStack::spawn().await;
    let request = pb::BatchUpsertAccountsRequest {
        request_id: String::new(),
        accounts: vec![account(id, id, 400)],
    };
    app.ingestion
        .batch_upsert_accounts(request)
        .await
        .expect("account");
    app
}

async fn upsert_contacts(
    app: &mut TestStack,
    contacts: Vec<pb::Contact>,
) -> Result<pb::BatchUpsertContactsResponse, tonic::Status> {
    let request = pb::BatchUpsertContactsRequest {
        request_id: String::new(),
        contacts,
    };
    app.ingestion
        .batch_upsert_contacts(request)
        .await
        .map(|r| r.into_inner())
}

#[tokio::test]
async fn a_new_sponsor_is_recorded_as_a_relationship_change() {
    let mut app = with_account("acme").await;
    let first = upsert_contacts(
        &mut app,
        vec![contact(
            "ann",
            "acme",
            &[ContactRole::EconomicSponsor],
            true,
            days_ago(200),
        )],
    )
    .await
    .unwrap();
    assert_eq!(
        first.relationship_change_count, 0,
        "the first sponsor starts the relationship"
    );

    let changed = upsert_contacts(
        &mut app,
        vec![
            contact(
                "ann",
                "acme",
                &[ContactRole::EconomicSponsor],
                false,
                days_ago(20),
            ),
            contact(
                "bob",
                "acme",
                &[ContactRole::EconomicSponsor, ContactRole::Champion],
                true,
                days_ago(20),
            ),
        ],
    )
    .await
    .unwrap();
    assert_eq!(
        changed.relationship_change_count, 2,
        "ann departed, bob arrived"
    );

    let signals = app
        .ingestion
        .get_account_signals(pb::GetAccountSignalsRequest {
            account_id: "acme".into(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner()
        .signals
        .unwrap();
    assert!(signals.sponsor_changed_90d);
    assert_eq!(signals.active_champions, 1);

    let timeline = app
        .ingestion
        .list_account_timeline(pb::ListAccountTimelineRequest {
            account_id: "acme".into(),
            page_size: 2,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut kinds: Vec<&str> = timeline.entries.iter().map(|e| e.kind.as_str()).collect();
    kinds.sort();
    assert_eq!(kinds, ["contact.sponsor_added", "contact.sponsor_departed"]);
    assert!(!timeline.next_page_token.is_empty());

    let unknown = upsert_contacts(
        &mut app,
        vec![contact("cat", "nobody", &[], true, days_ago(1))],
    )
    .await
    .unwrap_err();
    assert_eq!(violated_fields(&unknown), ["contacts[0].account_id"]);
    app.stop().await;
}

#[tokio::test]
async fn subscription_changes_are_dated_and_reach_renewals() {
    let mut app = with_account("acme").await;
    let (start, end) = (today_minus(100), today_minus(100) + chrono::Days::new(365));
    let mut upsert = async |subscription: pb::Subscription| {
        let request = pb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: vec![subscription],
        };
        app.ingestion
            .batch_upsert_subscriptions(request)
            .await
            .unwrap()
            .into_inner()
            .summary
            .unwrap()
    };
    upsert(subscription(
        "sub-1",
        "acme",
        50,
        120_000 * 100,
        start,
        end,
        days_ago(100),
    ))
    .await;
    upsert(subscription(
        "sub-1",
        "acme",
        60,
        150_000 * 100,
        start,
        end,
        days_ago(10),
    ))
    .await;
    let stale = upsert(subscription(
        "sub-1",
        "acme",
        10,
        100,
        start,
        end,
        days_ago(50),
    ))
    .await;
    assert_eq!(
        (stale.applied_count, stale.stale_count),
        (0, 1),
        "an older update is ignored"
    );

    let db = app.db().await;
    let kinds: Vec<String> =
        sqlx::query_scalar("SELECT kind FROM ingestion.subscription_changes WHERE subscription_id = 'sub-1' ORDER BY occurred_at")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(kinds, ["new", "expansion"]);

    // Renewals' copy holds the newest version once the outbox notice has
    // been delivered and the queued subscription refreshed (the queue row
    // itself lives only until the refresh commits, a few milliseconds).
    let learned = eventually(Duration::from_secs(10), || async {
        let arr: Option<i64> = sqlx::query_scalar(
            "SELECT arr_minor FROM renewals.subscription_versions \
             WHERE subscription_id = 'sub-1' ORDER BY updated_at DESC LIMIT 1",
        )
        .fetch_optional(&db)
        .await
        .unwrap();
        (arr == Some(150_000 * 100)).then_some(())
    })
    .await;
    assert!(
        learned.is_some(),
        "renewals learns of the subscription through the outbox"
    );

    let bad = pb::BatchUpsertSubscriptionsRequest {
        request_id: String::new(),
        subscriptions: vec![pb::Subscription {
            arr: Some(tenure_proto::common::v1::Money {
                currency_code: "EURO".into(),
                amount_minor: 5,
            }),
            seats: -1,
            term_end: date(start),
            ..subscription("sub-2", "acme", 1, 1, start, end, days_ago(1))
        }],
    };
    let status = app
        .ingestion
        .batch_upsert_subscriptions(bad)
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        [
            "subscriptions[0].term_end",
            "subscriptions[0].arr.currency_code",
            "subscriptions[0].seats"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn every_other_kind_is_upserted_and_a_bad_batch_writes_nothing() {
    let mut app = with_account("acme").await;
    let features = pb::BatchUpsertFeaturesRequest {
        request_id: "features-1".into(),
        features: vec![
            pb::Feature {
                feature_name: "reports".into(),
                display_name: "Reports".into(),
                tier: pb::FeatureTier::Basic as i32,
                updated_at: ts(days_ago(300)),
            },
            pb::Feature {
                feature_name: "api".into(),
                display_name: "API".into(),
                tier: pb::FeatureTier::Advanced as i32,
                updated_at: ts(days_ago(300)),
            },
        ],
    };
    let summary = app
        .ingestion
        .batch_upsert_features(features)
        .await
        .unwrap()
        .into_inner()
        .summary
        .unwrap();
    assert_eq!(summary.applied_count, 2);

    let invoices = pb::BatchUpsertInvoicesRequest {
        request_id: String::new(),
        invoices: vec![pb::Invoice {
            invoice_id: "inv-1".into(),
            account_id: "acme".into(),
            amount: usd(10_000 * 100),
            issued_on: date(today_minus(60)),
            due_on: date(today_minus(30)),
            paid_on: None,
            status: pb::InvoiceStatus::Open as i32,
            updated_at: ts(days_ago(60)),
        }],
    };
    app.ingestion.batch_upsert_invoices(invoices).await.unwrap();

    let signals = pb::BatchUpsertExternalSignalsRequest {
        request_id: String::new(),
        signals: vec![pb::ExternalSignal {
            signal_id: "sig-1".into(),
            account_id: "acme".into(),
            kind: pb::ExternalSignalKind::Layoffs as i32,
            occurred_at: ts(days_ago(5)),
            source: "news".into(),
            properties: None,
            updated_at: ts(days_ago(5)),
        }],
    };
    app.ingestion
        .batch_upsert_external_signals(signals)
        .await
        .unwrap();

    let metrics = pb::BatchUpsertSuccessMetricsRequest {
        request_id: String::new(),
        metrics: vec![pb::SuccessMetric {
            metric_id: "m-1".into(),
            account_id: "acme".into(),
            name: "sales cycle length".into(),
            unit: "days".into(),
            baseline: 90.0,
            target: 60.0,
            direction: pb::MetricDirection::LowerIsBetter as i32,
            values: vec![pb::MetricValue {
                measured_on: date(today_minus(10)),
                value: 75.0,
            }],
            updated_at: ts(days_ago(10)),
        }],
    };
    app.ingestion
        .batch_upsert_success_metrics(metrics)
        .await
        .unwrap();

    let surveys = pb::BatchUpsertSurveyResponsesRequest {
        request_id: String::new(),
        responses: vec![
            nps("r-1", "acme", 9, days_ago(120)),
            nps("r-2", "acme", 4, days_ago(3)),
        ],
    };
    app.ingestion
        .batch_upsert_survey_responses(surveys)
        .await
        .unwrap();

    let good = ticket(
        "t-1",
        "acme",
        TicketPriority::P1,
        TicketCategory::Defect,
        days_ago(4),
        None,
    );
    let mut closed_before_opened = ticket(
        "t-2",
        "acme",
        TicketPriority::P2,
        TicketCategory::HowTo,
        days_ago(4),
        Some(days_ago(6)),
    );
    closed_before_opened.csat = 9;
    let mut no_priority = ticket(
        "t-3",
        "acme",
        TicketPriority::P3,
        TicketCategory::Billing,
        days_ago(2),
        None,
    );
    no_priority.priority = 0;
    let bad = pb::BatchUpsertTicketsRequest {
        request_id: String::new(),
        tickets: vec![good.clone(), closed_before_opened, no_priority],
    };
    let status = app.ingestion.batch_upsert_tickets(bad).await.unwrap_err();
    assert_eq!(
        violated_fields(&status),
        [
            "tickets[1].closed_at",
            "tickets[1].csat",
            "tickets[2].priority"
        ]
    );

    let signals = app
        .ingestion
        .get_account_signals(pb::GetAccountSignalsRequest {
            account_id: "acme".into(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner()
        .signals
        .unwrap();
    assert_eq!(
        signals.open_tickets_p1, 0,
        "nothing of the rejected batch was written"
    );
    assert_eq!(
        (signals.latest_nps, signals.nps_change),
        (Some(4), Some(-5))
    );
    assert_eq!(signals.max_days_overdue, 30);
    assert_eq!(signals.overdue_amounts, vec![usd(10_000 * 100).unwrap()]);
    assert_eq!(signals.risk_signals_90d, 1);
    assert_eq!(
        signals.success_plan_attainment_pct.map(f64::round),
        Some(50.0)
    );

    let good = pb::BatchUpsertTicketsRequest {
        request_id: String::new(),
        tickets: vec![good],
    };
    app.ingestion.batch_upsert_tickets(good).await.unwrap();
    let timeline = app
        .ingestion
        .list_account_timeline(pb::ListAccountTimelineRequest {
            account_id: "acme".into(),
            page_size: 100,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let kinds: Vec<&str> = timeline.entries.iter().map(|e| e.kind.as_str()).collect();
    for kind in [
        "ticket.opened",
        "survey.nps",
        "invoice.issued",
        "signal.layoffs",
        "account.updated",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    app.stop().await;
}

/// A source replaying a subscription's history sends every dated version in
/// one batch, in any order: each is applied, oldest first, and each change
/// is recorded against the version before it.
#[tokio::test]
async fn one_batch_carries_a_subscription_history() {
    let mut app = with_account("acme").await;
    let start = today_minus(400);
    let first_end = start + chrono::Days::new(365);
    let second_end = first_end + chrono::Days::new(365);
    let expanded_at = days_ago(200);
    let history = vec![
        // Renewed for a second year, at the expanded price.
        subscription(
            "sub-h",
            "acme",
            60,
            150_000,
            first_end,
            second_end,
            days_ago(40),
        ),
        // Signed.
        subscription(
            "sub-h",
            "acme",
            50,
            120_000,
            start,
            first_end,
            days_ago(400),
        ),
        // Expanded mid-term.
        subscription("sub-h", "acme", 60, 150_000, start, first_end, expanded_at),
        // The same version again: applied once.
        subscription("sub-h", "acme", 60, 150_000, start, first_end, expanded_at),
    ];
    let summary = app
        .ingestion
        .batch_upsert_subscriptions(pb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: history,
        })
        .await
        .unwrap()
        .into_inner()
        .summary
        .unwrap();
    assert_eq!((summary.applied_count, summary.stale_count), (3, 1));
    let db = app.db().await;
    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT kind FROM ingestion.subscription_changes WHERE subscription_id = 'sub-h' \
         ORDER BY occurred_at",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(kinds, ["new", "expansion", "renewal"]);
    let history = app
        .ingestion
        .get_subscription_history(pb::GetSubscriptionHistoryRequest {
            subscription_ids: vec!["sub-h".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.subscriptions[0].versions.len(), 3, "{history:?}");
    app.stop().await;
}

#[tokio::test]
async fn amounts_beyond_any_contract_are_refused_before_they_can_wrap_a_sum() {
    let mut app = with_account("acme").await;
    let start = today_minus(30);
    let end = start + chrono::Days::new(365);
    let mut huge = subscription("s-huge", "acme", 10, 1, start, end, days_ago(1));
    huge.arr = usd(i64::MAX);
    let refused = app
        .ingestion
        .batch_upsert_subscriptions(pb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: vec![huge],
        })
        .await
        .unwrap_err();
    assert!(
        violated_fields(&refused).contains(&"subscriptions[0].arr.amount_minor".to_owned()),
        "{refused:?}"
    );
    app.stop().await;
}
