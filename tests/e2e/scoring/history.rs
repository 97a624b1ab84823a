//! Late data rewrites the history it belongs to.

use super::*;

/// A P1 defect opened twelve days ago that arrives only now.
async fn late_p1(app: &mut TestStack, account: &str) {
    app.ingestion
        .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
            request_id: String::new(),
            tickets: vec![ticket(
                &format!("{account}-t"),
                account,
                pb::TicketPriority::P1,
                pb::TicketCategory::Defect,
                days_ago(12),
                None,
            )],
        })
        .await
        .unwrap();
}

/// The account's snapshot of ten days ago once it is no longer `was`.
async fn rewritten(db: &sqlx::PgPool, account: &str, was: f64) -> Option<f64> {
    eventually(Duration::from_secs(15), || async {
        let score: f64 = sqlx::query_scalar(
            "SELECT score FROM health.score_history WHERE account_id = $1 AND day = current_date - 10",
        )
        .bind(account)
        .fetch_one(db)
        .await
        .unwrap();
        (score != was).then_some(score)
    })
    .await
}

#[tokio::test]
async fn late_data_rewrites_the_history_it_belongs_to() {
    let mut app = TestStack::spawn().await;
    one_account_scored_on_p1(&mut app, "late", "Late").await;
    app.health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: vec!["late".into()],
            all_accounts: false,
        })
        .await
        .unwrap();
    let db = app.db().await;
    sqlx::query(
        "INSERT INTO health.score_history (account_id, day, score, band, scorecard_name, scorecard_version) \
         VALUES ('late', current_date - 10, 100, 3, 'default', 1), ('late', current_date - 20, 100, 3, 'default', 1)",
    )
    .execute(&db)
    .await
    .unwrap();

    late_p1(&mut app, "late").await;
    let rewritten = rewritten(&db, "late", 100.0).await;
    assert_eq!(
        rewritten.map(f64::round),
        Some(67.0),
        "the snapshot of ten days ago now sees the ticket"
    );
    let untouched: f64 = sqlx::query_scalar("SELECT score FROM health.score_history WHERE account_id = 'late' AND day = current_date - 20")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(untouched, 100.0, "days before the event stay as they were");
    app.stop().await;
}

/// An account a CSM judged at 20 a month ago: when a late P1 rewrites its
/// history, the rewritten days keep the assessment that was in force, so
/// the trend compares like with like; and a trend never reaches back to a
/// snapshot far older than its window.
#[tokio::test]
async fn late_rescoring_keeps_the_assessment_and_trends_look_back_only_so_far() {
    let mut app = TestStack::spawn().await;
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![account("judged", "Judged", 400)],
        })
        .await
        .unwrap();
    app.health
        .create_scorecard(card(
            "default",
            "",
            vec![group(
                "Relationship",
                vec![
                    linear("csm", "csm_assessment", 1.0, 0.0, 100.0),
                    linear("p1", "open_tickets_p1", 1.0, 3.0, 0.0),
                ],
            )],
        ))
        .await
        .unwrap();
    app.health
        .record_assessment(hpb::RecordAssessmentRequest {
            request_id: String::new(),
            account_id: "judged".into(),
            score: 20.0,
            note: "sponsor left".into(),
            assessed_by: "dana".into(),
            expires_on: date(today_minus(0) + chrono::Days::new(60)),
        })
        .await
        .unwrap();
    let db = app.db().await;
    sqlx::query("UPDATE health.assessments SET assessed_at = now() - interval '30 days'")
        .execute(&db)
        .await
        .unwrap();
    app.health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: vec!["judged".into()],
            all_accounts: false,
        })
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO health.score_history (account_id, day, score, band, scorecard_name, scorecard_version) \
         VALUES ('judged', current_date - 10, 60, 2, 'default', 1), \
                ('judged', current_date - 200, 90, 3, 'default', 1)",
    )
    .execute(&db)
    .await
    .unwrap();

    late_p1(&mut app, "judged").await;
    let rewritten = rewritten(&db, "judged", 60.0).await;
    // The assessment (20) and one P1 of three (66.7), equally weighted.
    assert_eq!(
        rewritten.map(|s| (s * 10.0).round() / 10.0),
        Some(43.3),
        "the rewritten day keeps the assessment in force then"
    );
    let health = eventually(Duration::from_secs(15), || {
        let mut health = app.health.clone();
        async move {
            let h = health
                .get_health(hpb::GetHealthRequest {
                    account_id: "judged".into(),
                })
                .await
                .ok()?
                .into_inner()
                .health?;
            ((h.score * 10.0).round() == 433.0).then_some(h)
        }
    })
    .await
    .expect("the current score sees the ticket and the assessment");
    let trend = health.trend.unwrap();
    assert_eq!(trend.change_7d.map(f64::round), Some(0.0), "like with like");
    assert_eq!(trend.change_30d, None, "no snapshot 30 to 60 days old");
    assert_eq!(
        trend.change_90d, None,
        "the snapshot of 200 days ago is beyond the 90-day trend's reach"
    );
    app.stop().await;
}
