//! One rule for a term nobody closed: after the grace period it has lapsed
//! and is lost, in the pipeline, its summary and the renewal rate alike.

use super::*;

#[tokio::test]
async fn a_lapsed_term_is_lost_not_open() {
    let mut app = TestStack::spawn().await;
    accounts(&mut app, &["old", "live"], "lapse").await;
    subscriptions(
        &mut app,
        vec![
            subscription(
                "old-1",
                "old",
                5,
                90_000,
                day("2020-01-01"),
                day("2021-01-01"),
                at("2020-01-01"),
            ),
            subscription(
                "live-1",
                "live",
                5,
                40_000,
                day("2024-01-01"),
                day("2099-01-01"),
                at("2024-01-01"),
            ),
        ],
    )
    .await;
    synced(&app).await;

    let open = pipeline(&app, false).await;
    let ids: Vec<&str> = open.iter().map(|o| o.subscription_id.as_str()).collect();
    assert_eq!(
        ids,
        ["live-1"],
        "a term that ended in 2021 is not an open renewal"
    );
    let all = pipeline(&app, true).await;
    let old = all.iter().find(|o| o.subscription_id == "old-1").unwrap();
    assert_eq!(old.state, pb::OpportunityState::Lost as i32);
    assert_eq!(old.category, pb::ForecastCategory::Lost as i32);
    assert!(old.lapsed && old.renewal_probability == 0.0);
    assert_eq!(old.expected_arr, usd(0));

    let summary = app
        .renewals
        .summarize_renewal_pipeline(pb::SummarizeRenewalPipelineRequest {
            segment: "lapse".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let lost = summary
        .categories
        .iter()
        .find(|c| c.category == pb::ForecastCategory::Lost as i32)
        .expect("the lapsed term is under lost");
    assert_eq!((lost.count, lost.arr.clone()), (1, usd(90_000)));
    let open_arr: i64 = summary
        .categories
        .iter()
        .filter(|c| c.category != pb::ForecastCategory::Lost as i32)
        .map(|c| c.arr.clone().unwrap().amount_minor)
        .sum();
    assert_eq!(open_arr, 40_000, "only the live term is open ARR");

    // The renewal rate of 2021 says the same: one contract due, lost.
    let metrics = app
        .renewals
        .get_retention_metrics(pb::GetRetentionMetricsRequest {
            period: range(day("2020-06-01"), day("2021-06-01")),
            segment: "lapse".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((metrics.contracts_due, metrics.contracts_churned), (1, 1));
}
