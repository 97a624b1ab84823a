//! Watchers of health changes and their cursors.

use super::*;

#[tokio::test]
async fn watchers_follow_changes_and_resume_from_their_cursor() {
    let mut app = TestStack::spawn().await;
    one_account_scored_on_p1(&mut app, "w1", "W1").await;
    let watch = |cursor: String| hpb::WatchHealthChangesRequest {
        segment: "enterprise".into(),
        owner: String::new(),
        cursor,
    };
    let mut stream = app
        .health
        .watch_health_changes(watch(String::new()))
        .await
        .unwrap()
        .into_inner();
    let other_segment = app
        .health
        .watch_health_changes(hpb::WatchHealthChangesRequest {
            segment: "smb".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let recompute = hpb::RecomputeHealthRequest {
        account_ids: vec!["w1".into()],
        all_accounts: false,
    };
    app.health
        .recompute_health(recompute.clone())
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.account_id.as_str(), first.score, first.previous_score),
        ("w1", 100.0, None)
    );
    drop(stream);

    // While nobody watches, the account gets worse.
    app.ingestion
        .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
            request_id: String::new(),
            tickets: vec![ticket(
                "wt",
                "w1",
                pb::TicketPriority::P1,
                pb::TicketCategory::Defect,
                days_ago(1),
                None,
            )],
        })
        .await
        .unwrap();
    app.health.recompute_health(recompute).await.unwrap();
    let mut resumed = app
        .health
        .watch_health_changes(watch(first.cursor.clone()))
        .await
        .unwrap()
        .into_inner();
    let missed = tokio::time::timeout(Duration::from_secs(10), resumed.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(missed.previous_score, Some(100.0));
    assert_eq!(
        (missed.previous_band(), missed.band()),
        (
            tenure_proto::common::v1::Band::Green,
            tenure_proto::common::v1::Band::Yellow
        )
    );
    // Open watches would hold the drain at shutdown for its grace period.
    drop((other_segment, resumed));
    let bad = app
        .health
        .watch_health_changes(watch("not-a-cursor".into()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["cursor"]);
    app.stop().await;
}
