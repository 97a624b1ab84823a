//! Band changes and score drops reach playbooks once, with history and trend.

use super::*;

#[tokio::test]
async fn band_changes_and_drops_reach_playbooks_once_with_history_and_trend() {
    let mut app = TestStack::spawn().await;
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![account("acme", "Acme", 400)],
        })
        .await
        .unwrap();
    let support = card(
        "default",
        "",
        vec![group(
            "Support",
            vec![linear("p1", "open_tickets_p1", 1.0, 3.0, 0.0)],
        )],
    );
    app.health.create_scorecard(support).await.unwrap();
    let db = app.db().await;
    let events = || {
        let db = db.clone();
        async move {
            sqlx::query_as::<_, (String, serde_json::Value)>(
                "SELECT kind, payload FROM playbooks.trigger_events WHERE account_id = 'acme' ORDER BY id",
            )
            .fetch_all(&db)
            .await
            .unwrap()
        }
    };
    let recompute = async |app: &mut TestStack| {
        app.health
            .recompute_health(hpb::RecomputeHealthRequest {
                account_ids: vec!["acme".into()],
                all_accounts: false,
            })
            .await
            .unwrap()
            .into_inner()
            .healths[0]
            .clone()
    };
    let first = recompute(&mut app).await;
    assert_eq!(
        (first.score, first.band()),
        (100.0, tenure_proto::common::v1::Band::Green)
    );

    let p1 = |id: &str| {
        ticket(
            id,
            "acme",
            pb::TicketPriority::P1,
            pb::TicketCategory::Defect,
            days_ago(1),
            None,
        )
    };
    app.ingestion
        .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
            request_id: String::new(),
            tickets: vec![p1("t1")],
        })
        .await
        .unwrap();
    let second = recompute(&mut app).await;
    assert_eq!(second.band(), tenure_proto::common::v1::Band::Yellow);
    recompute(&mut app).await;

    let delivered = eventually(Duration::from_secs(15), || async {
        let found = events().await;
        (found.len() >= 2).then_some(found)
    })
    .await
    .expect("health changes reach playbooks");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let found = events().await;
    assert_eq!(
        found.len(),
        2,
        "one band change and one drop, however often rescored: {found:?}"
    );
    let kinds: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["health_band_changed", "score_dropped"]);
    assert_eq!(delivered[0].1["previous_band"], "green");
    assert_eq!(delivered[0].1["band"], "yellow");
    assert_eq!(delivered[1].1["previous_score"], 100.0);

    // A week ago the account stood at 90: the trend says how far it moved.
    sqlx::query(
        "INSERT INTO health.score_history (account_id, day, score, band, scorecard_name, scorecard_version) \
         VALUES ('acme', current_date - 7, 90, 3, 'default', 1)",
    )
    .execute(&db)
    .await
    .unwrap();
    let health = app
        .health
        .get_health(hpb::GetHealthRequest {
            account_id: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .health
        .unwrap();
    let trend = health.trend.unwrap();
    assert_eq!(
        trend.change_7d.map(f64::round),
        Some((second.score - 90.0).round())
    );
    assert_eq!(trend.change_90d, None);
    let history = app
        .health
        .get_health_history(hpb::GetHealthHistoryRequest {
            account_id: "acme".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.snapshots.len(), 1);
    assert_eq!(
        history.snapshots[0].score, second.score,
        "today's snapshot is the last score of today"
    );
    let older = app
        .health
        .get_health_history(hpb::GetHealthHistoryRequest {
            account_id: "acme".into(),
            page_size: 1,
            page_token: history.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(older.snapshots[0].score, 90.0);
    app.stop().await;
}
