//! Scorecards: scoring accounts and explaining each measure.

use super::*;

#[tokio::test]
async fn scorecards_score_accounts_and_explain_each_measure() {
    let mut app = TestStack::spawn().await;
    let mut smb = account("small", "Small Co", 400);
    smb.segment = "smb".into();
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![account("big", "Big Co", 400), smb],
        })
        .await
        .unwrap();
    let (start, end) = (today_minus(100), today_minus(100) + chrono::Days::new(365));
    app.ingestion
        .batch_upsert_subscriptions(pb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: vec![subscription(
                "s-big",
                "big",
                10,
                100_000 * 100,
                start,
                end,
                days_ago(100),
            )],
        })
        .await
        .unwrap();
    let events = (0..5)
        .map(|i| {
            event(
                &format!("e{i}"),
                "big",
                &format!("u{i}"),
                "reports",
                days_ago(2),
            )
        })
        .collect();
    app.ingestion
        .ingest_events(pb::IngestEventsRequest { events })
        .await
        .unwrap();

    let invalid = card(
        "Bad Name",
        "",
        vec![group(
            "Adoption",
            vec![linear("util", "no_such_signal", -1.0, 20.0, 20.0)],
        )],
    );
    let status = app.health.create_scorecard(invalid).await.unwrap_err();
    assert_eq!(
        violated_fields(&status),
        [
            "scorecard.name",
            "scorecard.groups[0].measures[0].signal",
            "scorecard.groups[0].measures[0].weight",
            "scorecard.groups[0].measures[0].linear"
        ]
    );

    let default = card(
        "default",
        "",
        vec![
            group(
                "Adoption",
                vec![linear(
                    "utilization",
                    "license_utilization_pct",
                    2.0,
                    20.0,
                    80.0,
                )],
            ),
            group(
                "Sentiment",
                vec![linear("nps", "latest_nps", 1.0, 0.0, 10.0)],
            ),
        ],
    );
    let created = app
        .health
        .create_scorecard(default)
        .await
        .unwrap()
        .into_inner()
        .scorecard
        .unwrap();
    assert_eq!(created.version, 1);
    let smb_card = card(
        "smb",
        "smb",
        vec![group(
            "Support",
            vec![linear("p1", "open_tickets_p1", 1.0, 3.0, 0.0)],
        )],
    );
    app.health.create_scorecard(smb_card).await.unwrap();

    let healths = app
        .health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: vec!["big".into(), "small".into()],
            all_accounts: false,
        })
        .await
        .unwrap()
        .into_inner()
        .healths;
    let big = healths.iter().find(|h| h.account_id == "big").unwrap();
    assert_eq!(
        (big.scorecard_name.as_str(), big.scorecard_version),
        ("default", 1)
    );
    // 5 of 10 seats active: utilization 50 %, halfway from 20 to 80; NPS missing.
    assert!((big.score - 50.0).abs() < 1e-9, "{}", big.score);
    assert_eq!(big.band(), tenure_proto::common::v1::Band::Yellow);
    let nps = big.measures.iter().find(|m| m.name == "nps").unwrap();
    assert!(nps.missing && nps.raw_value.is_none() && nps.effective_weight == 0.0);
    let utilization = big
        .measures
        .iter()
        .find(|m| m.name == "utilization")
        .unwrap();
    assert_eq!(
        (utilization.raw_value, utilization.effective_weight),
        (Some(50.0), 1.0)
    );
    let small = healths.iter().find(|h| h.account_id == "small").unwrap();
    assert_eq!(small.scorecard_name, "smb", "the segment's own scorecard");
    assert_eq!(
        (small.score, small.band()),
        (100.0, tenure_proto::common::v1::Band::Green)
    );

    let stored = app
        .health
        .get_health(hpb::GetHealthRequest {
            account_id: "big".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.health.unwrap().score, big.score);

    // Changes reported by ingestion are scored in the background.
    app.ingestion
        .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
            request_id: String::new(),
            tickets: vec![ticket(
                "t1",
                "small",
                pb::TicketPriority::P1,
                pb::TicketCategory::Defect,
                days_ago(1),
                None,
            )],
        })
        .await
        .unwrap();
    let mut health = app.health.clone();
    let rescored = eventually(Duration::from_secs(15), || {
        let mut health = health.clone();
        async move {
            let answer = health
                .get_health(hpb::GetHealthRequest {
                    account_id: "small".into(),
                })
                .await
                .ok()?;
            let score = answer.into_inner().health?.score;
            (score < 100.0).then_some(score)
        }
    })
    .await;
    assert_eq!(
        rescored.map(f64::round),
        Some(67.0),
        "one open P1 of three tolerated"
    );
    let missing = health
        .get_health(hpb::GetHealthRequest {
            account_id: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    app.stop().await;
}
