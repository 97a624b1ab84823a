//! The pipeline follows health's changes, and after a restart resumes
//! after the last change it took in.

use super::*;
use crate::fixtures::{days_ago, ticket, today_minus};
use tenure_proto::common::v1::Band;
use tenure_proto::health::v1 as hpb;

/// Acme's band as the pipeline shows it: the enum and the word.
async fn shown(app: &TestStack) -> Option<(Band, String)> {
    pipeline(app, false)
        .await
        .into_iter()
        .find(|o| o.account_id == "acme")
        .map(|o| (o.band(), o.health_band))
}

async fn recompute(app: &mut TestStack) -> Band {
    app.health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: vec!["acme".into()],
            all_accounts: false,
        })
        .await
        .unwrap()
        .into_inner()
        .healths[0]
        .band()
}

#[tokio::test]
async fn the_pipeline_follows_health_and_resumes_after_a_restart() {
    let mut app = TestStack::spawn().await;
    app.ingestion
        .batch_upsert_accounts(ipb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![crate::ingestion::account("acme", "Acme", 10)],
        })
        .await
        .unwrap();
    let start = today_minus(300);
    app.ingestion
        .batch_upsert_subscriptions(ipb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: vec![subscription(
                "s-acme",
                "acme",
                10,
                12_000 * 100,
                start,
                start + chrono::Days::new(365),
                days_ago(300),
            )],
        })
        .await
        .unwrap();
    synced(&app).await;
    crate::scoring::p1_scorecard(&mut app).await;
    assert_eq!(recompute(&mut app).await, Band::Green);
    let green = eventually(Duration::from_secs(20), || async {
        (shown(&app).await == Some((Band::Green, "green".into()))).then_some(())
    })
    .await;
    assert!(green.is_some(), "{:?}", shown(&app).await);

    // Health moves while renewals is away; back, it takes in what it missed.
    let addr = app.stack.stop_service("renewals").await.unwrap();
    let tickets = (0..3)
        .map(|i| {
            ticket(
                &format!("t{i}"),
                "acme",
                ipb::TicketPriority::P1,
                ipb::TicketCategory::Defect,
                days_ago(1),
                None,
            )
        })
        .collect();
    app.ingestion
        .batch_upsert_tickets(ipb::BatchUpsertTicketsRequest {
            request_id: String::new(),
            tickets,
        })
        .await
        .unwrap();
    assert_eq!(recompute(&mut app).await, Band::Red);
    let db = app.db().await;
    let last: i64 = sqlx::query_scalar("SELECT max(seq) FROM health.change_log")
        .fetch_one(&db)
        .await
        .unwrap();
    app.stack.restart_service("renewals", addr).await.unwrap();
    let caught_up = eventually(Duration::from_secs(20), || async {
        let cursor: Option<String> =
            sqlx::query_scalar("SELECT cursor FROM renewals.health_cursor")
                .fetch_optional(&db)
                .await
                .unwrap();
        let red = shown(&app).await == Some((Band::Red, "red".into()));
        (red && cursor == Some(last.to_string())).then_some(())
    })
    .await;
    assert!(caught_up.is_some(), "{:?}", shown(&app).await);
    app.stop().await;
}
