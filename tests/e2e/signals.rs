//! Account signals as of a date.

use tenure_proto::ingestion::v1 as pb;
use tenure_proto::ingestion::v1::{TicketCategory, TicketPriority};
use tenure_tests::TestStack;

use crate::fixtures::*;
use crate::ingestion::account;

async fn signals_as_of(app: &mut TestStack, account: &str, days_back: u64) -> pb::AccountSignals {
    app.ingestion
        .get_account_signals(pb::GetAccountSignalsRequest {
            account_id: account.into(),
            as_of: date(today_minus(days_back)),
        })
        .await
        .unwrap()
        .into_inner()
        .signals
        .unwrap()
}

#[tokio::test]
async fn signals_as_of_a_past_date_ignore_later_data() {
    let mut app = TestStack::spawn().await;
    let mut acme = account("acme", "Acme", 400);
    acme.attributes.insert(
        "plan_tier".into(),
        pb::AttributeValue {
            value: Some(pb::attribute_value::Value::Category("gold".into())),
        },
    );
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![acme],
        })
        .await
        .unwrap();
    let (start, end) = (today_minus(300), today_minus(300) + chrono::Days::new(365));
    app.ingestion
        .batch_upsert_subscriptions(pb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: vec![subscription(
                "sub-1",
                "acme",
                10,
                50_000 * 100,
                start,
                end,
                days_ago(300),
            )],
        })
        .await
        .unwrap();
    let events: Vec<_> = (0..6)
        .map(|i| {
            event(
                &format!("old-{i}"),
                "acme",
                &format!("u{i}"),
                "reports",
                days_ago(35 + i),
            )
        })
        .chain((0..3).map(|i| event(&format!("new-{i}"), "acme", "u0", "reports", days_ago(2))))
        .collect();
    app.ingestion
        .ingest_events(pb::IngestEventsRequest { events })
        .await
        .unwrap();
    app.ingestion
        .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
            request_id: String::new(),
            tickets: vec![
                ticket(
                    "t-old",
                    "acme",
                    TicketPriority::P1,
                    TicketCategory::Defect,
                    days_ago(40),
                    Some(days_ago(5)),
                ),
                ticket(
                    "t-new",
                    "acme",
                    TicketPriority::P1,
                    TicketCategory::Defect,
                    days_ago(3),
                    None,
                ),
            ],
        })
        .await
        .unwrap();

    let before = signals_as_of(&mut app, "acme", 30).await;
    assert_eq!(before.seats_purchased, 10);
    assert_eq!(before.active_users_30d, 6, "users of days 35-40 ago");
    assert_eq!(
        before.open_tickets_p1, 1,
        "t-old was still open then; t-new did not exist"
    );
    assert_eq!(before.days_since_last_activity, Some(5));
    assert_eq!(before.license_utilization_pct, Some(60.0));
    assert_eq!(
        before.attributes["plan_tier"].value,
        Some(pb::attribute_value::Value::Category("gold".into()))
    );

    // Data arriving later about later days leaves the past as it was.
    app.ingestion
        .batch_upsert_subscriptions(pb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: vec![subscription(
                "sub-1",
                "acme",
                80,
                90_000 * 100,
                start,
                end,
                days_ago(1),
            )],
        })
        .await
        .unwrap();
    app.ingestion
        .ingest_events(pb::IngestEventsRequest {
            events: vec![event("later", "acme", "u77", "api", days_ago(1))],
        })
        .await
        .unwrap();
    let again = signals_as_of(&mut app, "acme", 30).await;
    assert_eq!(again, before, "the past does not change with later data");

    let now = signals_as_of(&mut app, "acme", 0).await;
    assert_eq!(now.seats_purchased, 80);
    assert_eq!(now.open_tickets_p1, 1);
    assert_eq!(now.active_users_7d, 2);
    assert!(now.days_to_renewal.is_some());

    let mut stream = app
        .ingestion
        .stream_account_signals(pb::StreamAccountSignalsRequest {
            account_ids: vec![],
            as_of: date(today_minus(30)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let streamed = stream.message().await.unwrap().unwrap().signals.unwrap();
    assert_eq!(streamed, before);
    assert!(stream.message().await.unwrap().is_none());

    // An id given many times is computed and sent once.
    let mut repeated = app
        .ingestion
        .stream_account_signals(pb::StreamAccountSignalsRequest {
            account_ids: vec!["acme".to_owned(); 1000],
            as_of: date(today_minus(30)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut answers = 0;
    while repeated.message().await.unwrap().is_some() {
        answers += 1;
    }
    assert_eq!(answers, 1);

    // An account at days of its own: each pair once, in the order given,
    // each at its day.
    let pair = |days: u64| pb::AccountDay {
        account_id: "acme".into(),
        as_of: date(today_minus(days)),
    };
    let request = pb::StreamAccountSignalsRequest {
        at: vec![pair(30), pair(0), pair(30)],
        ..Default::default()
    };
    let answers = streamed_signals(&mut app, request, 3).await;
    assert_eq!(answers, [before.clone(), now.clone()]);

    // Pairs do not mix with a list and a day, and no pair is in the future.
    let mut tomorrow = pair(0);
    tomorrow.as_of = date(chrono::Utc::now().date_naive() + chrono::Days::new(1));
    let refused = app
        .ingestion
        .stream_account_signals(pb::StreamAccountSignalsRequest {
            account_ids: vec!["acme".into()],
            as_of: date(today_minus(1)),
            at: vec![pair(1), tomorrow, pb::AccountDay::default()],
            skip_unknown: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        tenure_tests::violated_fields(&refused),
        [
            "account_ids",
            "as_of",
            "at[1].as_of",
            "at[2].account_id",
            "at[2].as_of"
        ]
    );

    // An unknown account ends the stream with NOT_FOUND, unless the caller
    // asks to leave it out.
    let with_ghost = |skip_unknown| pb::StreamAccountSignalsRequest {
        account_ids: vec!["ghost".into(), "acme".into()],
        skip_unknown,
        ..Default::default()
    };
    let mut stream = app
        .ingestion
        .stream_account_signals(with_ghost(false))
        .await
        .unwrap()
        .into_inner();
    let ended = loop {
        match stream.message().await {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the stream ended without naming the unknown account"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), tonic::Code::NotFound, "{ended:?}");
    let known = streamed_signals(&mut app, with_ghost(true), 1).await;
    assert_eq!(known.len(), 1);
    assert_eq!(known[0].account_id, "acme");
    app.stop().await;
}
