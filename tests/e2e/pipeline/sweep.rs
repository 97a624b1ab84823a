//! The pipeline follows subscriptions; the sweep tells playbooks once per threshold.

use super::*;

#[tokio::test]
async fn pipeline_follows_subscriptions_and_the_sweep_emits_once_per_threshold() {
    let mut app = TestStack::spawn().await;
    let today = Utc::now().date_naive();
    accounts(&mut app, &["acme"], "enterprise").await;
    let start = today - chrono::Days::new(320);
    let end = today + chrono::Days::new(45);
    subscriptions(
        &mut app,
        vec![subscription(
            "acme-1",
            "acme",
            10,
            12_000,
            start,
            end,
            Utc::now() - chrono::Duration::days(300),
        )],
    )
    .await;
    synced(&app).await;
    let open = pipeline(&app, false).await;
    assert_eq!(open.len(), 1, "{open:?}");
    let o = &open[0];
    assert_eq!(
        (
            o.account_name.as_str(),
            o.segment.as_str(),
            o.owner.as_str()
        ),
        ("acme Inc", "enterprise", "dana")
    );
    assert_eq!(o.days_to_renewal, 45);
    assert_eq!(o.arr, usd(12_000));
    // No history at all: the base rate, smoothed, is one half.
    assert_eq!(o.renewal_probability, 0.5);
    assert_eq!(o.probability_source, pb::ProbabilitySource::BaseRate as i32);
    assert_eq!(o.category, pb::ForecastCategory::AtRisk as i32);
    assert_eq!(o.expected_arr, usd(6_000));

    // 45 days out crosses 120, 90 and 60: one event (60), then none again.
    let sweep = |as_of: NaiveDate| {
        let mut renewals = app.renewals.clone();
        async move {
            renewals
                .run_renewal_sweep(pb::RunRenewalSweepRequest { as_of: date(as_of) })
                .await
                .unwrap()
                .into_inner()
                .emitted_count
        }
    };
    assert_eq!(sweep(today).await, 1);
    assert_eq!(sweep(today).await, 0);
    assert_eq!(
        sweep(today + chrono::Days::new(10)).await,
        0,
        "35 days out: still 60"
    );
    assert_eq!(
        sweep(today + chrono::Days::new(20)).await,
        1,
        "25 days out: 30"
    );
    assert_eq!(sweep(today + chrono::Days::new(21)).await, 0);
    let db = app.db().await;
    let thresholds = eventually(Duration::from_secs(10), || {
        let db = db.clone();
        async move {
            let rows: Vec<i64> = sqlx::query_scalar(
                "SELECT (payload->>'threshold_days')::int8 FROM playbooks.trigger_events \
                 WHERE kind = 'renewal_approaching' ORDER BY id",
            )
            .fetch_all(&db)
            .await
            .ok()?;
            (rows.len() == 2).then_some(rows)
        }
    })
    .await
    .expect("two events reached playbooks");
    assert_eq!(thresholds, [60, 30]);

    // The customer renews at a higher ARR: the old term is renewed, the new one open.
    let mut renewed = subscription(
        "acme-1",
        "acme",
        12,
        15_000,
        end,
        end + chrono::Days::new(365),
        Utc::now(),
    );
    renewed.seats = 12;
    subscriptions(&mut app, vec![renewed]).await;
    synced(&app).await;
    let all = pipeline(&app, true).await;
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].state, pb::OpportunityState::Renewed as i32);
    assert_eq!(
        all[0].expected_arr,
        usd(15_000),
        "renewed at the new term's ARR"
    );
    assert_eq!(all[1].state, pb::OpportunityState::Open as i32);
    assert_eq!(all[1].arr, usd(15_000));
    assert_eq!(pipeline(&app, false).await.len(), 1);
}
