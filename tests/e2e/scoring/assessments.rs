//! CSM assessments and rescoring every account.

use super::*;

#[tokio::test]
async fn a_csm_assessment_counts_until_it_expires_and_all_accounts_rescore() {
    let mut app = TestStack::spawn().await;
    let accounts = ["c1", "c2"].iter().map(|id| account(id, id, 400)).collect();
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
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
    let all = app
        .health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: vec![],
            all_accounts: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((all.scored_count, all.healths.len()), (2, 0));

    let assessment = |score: f64| hpb::RecordAssessmentRequest {
        request_id: String::new(),
        account_id: "c1".into(),
        score,
        note: "exec sponsor disengaged".into(),
        assessed_by: "dana".into(),
        expires_on: date(today_minus(0) + chrono::Days::new(30)),
    };
    let bad = app
        .health
        .record_assessment(assessment(150.0))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["score"]);
    app.health
        .record_assessment(assessment(20.0))
        .await
        .unwrap();
    let health = app.health.clone();
    let assessed = eventually(Duration::from_secs(15), || {
        let mut health = health.clone();
        async move {
            let h = health
                .get_health(hpb::GetHealthRequest {
                    account_id: "c1".into(),
                })
                .await
                .ok()?
                .into_inner()
                .health?;
            let csm = h.measures.iter().find(|m| m.name == "csm")?.clone();
            (!csm.missing).then_some((h.score, csm.raw_value))
        }
    })
    .await;
    assert_eq!(
        assessed,
        Some((60.0, Some(20.0))),
        "the assessment (20) and no tickets (100), equally weighted"
    );

    // Once expired, the assessment is missing data again.
    let db = app.db().await;
    sqlx::query("UPDATE health.assessments SET expires_on = current_date - 1")
        .execute(&db)
        .await
        .unwrap();
    let rescored = app
        .health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: vec!["c1".into()],
            all_accounts: false,
        })
        .await
        .unwrap()
        .into_inner();
    let csm = rescored.healths[0]
        .measures
        .iter()
        .find(|m| m.name == "csm")
        .unwrap();
    assert!(csm.missing);
    assert_eq!(rescored.healths[0].score, 100.0);
    app.stop().await;
}
