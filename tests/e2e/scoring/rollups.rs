//! Parents roll up their children by ARR.

use super::*;

#[tokio::test]
async fn parents_roll_up_their_children_by_arr() {
    let mut app = TestStack::spawn().await;
    let mut children: Vec<pb::Account> = ["kid-a", "kid-b"]
        .iter()
        .map(|id| account(id, id, 400))
        .collect();
    for child in &mut children {
        child.parent_account_id = "group".into();
    }
    let mut accounts = vec![account("group", "Group", 400)];
    accounts.extend(children);
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
        })
        .await
        .unwrap();
    let (start, end) = (today_minus(100), today_minus(100) + chrono::Days::new(365));
    app.ingestion
        .batch_upsert_subscriptions(pb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: vec![
                subscription("sa", "kid-a", 10, 30_000 * 100, start, end, days_ago(100)),
                subscription("sb", "kid-b", 10, 10_000 * 100, start, end, days_ago(100)),
            ],
        })
        .await
        .unwrap();
    let tickets = (0..3)
        .map(|t| {
            ticket(
                &format!("b{t}"),
                "kid-b",
                pb::TicketPriority::P1,
                pb::TicketCategory::Defect,
                days_ago(1),
                None,
            )
        })
        .collect();
    app.ingestion
        .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
            request_id: String::new(),
            tickets,
        })
        .await
        .unwrap();
    p1_scorecard(&mut app).await;
    app.health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: vec!["group".into(), "kid-a".into(), "kid-b".into()],
            all_accounts: false,
        })
        .await
        .unwrap();
    let group = app
        .health
        .get_health(hpb::GetHealthRequest {
            account_id: "group".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .health
        .unwrap();
    let rollup = group.rollup.unwrap();
    // kid-a scores 100 on 30k ARR, kid-b 0 on 10k: 75, green.
    assert_eq!(
        (rollup.score, rollup.child_count, rollup.band()),
        (75.0, 2, tenure_proto::common::v1::Band::Green)
    );
    assert_eq!(rollup.method, "arr_weighted");
    let kid = app
        .health
        .get_health(hpb::GetHealthRequest {
            account_id: "kid-a".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .health
        .unwrap();
    assert!(kid.rollup.is_none());
    app.stop().await;
}
