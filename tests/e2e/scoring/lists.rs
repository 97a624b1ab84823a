//! Lists and the distribution of scores: where risk lies.

use super::*;

#[tokio::test]
async fn lists_and_the_distribution_show_where_risk_lies() {
    let mut app = TestStack::spawn().await;
    let accounts = ["a0", "a1", "a2", "a3"]
        .iter()
        .map(|id| account(id, id, 400))
        .collect();
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
        })
        .await
        .unwrap();
    let (start, end) = (today_minus(100), today_minus(100) + chrono::Days::new(365));
    let subscriptions = (0..4)
        .map(|i| {
            subscription(
                &format!("s{i}"),
                &format!("a{i}"),
                10,
                (i + 1) * 10_000 * 100,
                start,
                end,
                days_ago(100),
            )
        })
        .collect();
    app.ingestion
        .batch_upsert_subscriptions(pb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions,
        })
        .await
        .unwrap();
    // Account aN has N open P1 tickets: scores 100, 67, 33, 0.
    let tickets = (0..4)
        .flat_map(|n| {
            (0..n).map(move |t| {
                ticket(
                    &format!("t{n}-{t}"),
                    &format!("a{n}"),
                    pb::TicketPriority::P1,
                    pb::TicketCategory::Defect,
                    days_ago(1),
                    None,
                )
            })
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
            account_ids: vec!["a0".into(), "a1".into(), "a2".into(), "a3".into()],
            all_accounts: false,
        })
        .await
        .unwrap();

    let first = app
        .health
        .list_account_health(hpb::ListAccountHealthRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = first
        .accounts
        .iter()
        .map(|a| a.account_id.as_str())
        .collect();
    assert_eq!(ids, ["a3", "a2"], "lowest score first");
    let rest = app
        .health
        .list_account_health(hpb::ListAccountHealthRequest {
            page_size: 2,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = rest
        .accounts
        .iter()
        .map(|a| a.account_id.as_str())
        .collect();
    assert_eq!(ids, ["a1", "a0"]);

    // Many accounts' latest scores at once: the scored ones in id order,
    // each once, the others named.
    let batch = app
        .health
        .batch_get_health(hpb::BatchGetHealthRequest {
            account_ids: vec!["a2".into(), "nobody".into(), "a0".into(), "a2".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let scores: Vec<(&str, f64, tenure_proto::common::v1::Band)> = batch
        .scores
        .iter()
        .map(|s| (s.account_id.as_str(), s.score.round(), s.band()))
        .collect();
    assert_eq!(
        scores,
        [
            ("a0", 100.0, tenure_proto::common::v1::Band::Green),
            ("a2", 33.0, tenure_proto::common::v1::Band::Red)
        ]
    );
    assert_eq!(batch.unscored_account_ids, ["nobody"]);
    for (ids, field) in [
        (vec![], "account_ids"),
        (vec![String::new()], "account_ids[0]"),
        (vec!["a0".to_owned(); 1001], "account_ids"),
    ] {
        let refused = app
            .health
            .batch_get_health(hpb::BatchGetHealthRequest { account_ids: ids })
            .await
            .unwrap_err();
        assert!(
            violated_fields(&refused).contains(&field.to_owned()),
            "{refused:?}"
        );
    }

    let by_risk = app
        .health
        .list_account_health(hpb::ListAccountHealthRequest {
            sort: hpb::HealthSort::ArrAtRiskDescending as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = by_risk
        .accounts
        .iter()
        .map(|a| a.account_id.as_str())
        .collect();
    assert_eq!(
        ids[..3],
        ["a3", "a2", "a1"],
        "the biggest ARR in red or yellow first"
    );
    assert_eq!(
        by_risk.accounts[0]
            .arr_at_risk
            .as_ref()
            .unwrap()
            .amount_minor,
        40_000 * 100
    );
    let reds = app
        .health
        .list_account_health(hpb::ListAccountHealthRequest {
            band: tenure_proto::common::v1::Band::Red as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reds.accounts.len(), 2);

    let distribution = app
        .health
        .get_health_distribution(hpb::GetHealthDistributionRequest {
            tail_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let counts: Vec<i32> = distribution.histogram.iter().map(|b| b.count).collect();
    assert_eq!(counts, [1, 0, 0, 1, 0, 0, 1, 0, 0, 1]);
    let bands: Vec<(i32, i32, i64)> = distribution
        .bands
        .iter()
        .map(|b| {
            (
                b.band,
                b.account_count,
                b.arr.iter().map(|m| m.amount_minor).sum(),
            )
        })
        .collect();
    assert_eq!(
        bands,
        [
            (tenure_proto::common::v1::Band::Red as i32, 2, 70_000 * 100),
            (
                tenure_proto::common::v1::Band::Yellow as i32,
                1,
                20_000 * 100
            ),
            (
                tenure_proto::common::v1::Band::Green as i32,
                1,
                10_000 * 100
            )
        ]
    );
    assert_eq!(distribution.at_risk[0].account_id, "a3");
    assert_eq!(distribution.advocates[0].account_id, "a0");
    app.stop().await;
}
