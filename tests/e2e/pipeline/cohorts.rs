//! Cohort retention, the retention model and lifetime value.

use super::*;

/// Twenty customers starting in January 2021 on yearly terms; survivors
/// after each renewal 20, 14, 11, 9, 8; the last eight renewed into 2027.
/// Everything is judged as of fixed days inside that history, so the test
/// reads the same whatever the calendar says.
#[tokio::test]
async fn cohorts_fit_the_retention_model_and_value_the_customers_left() {
    let mut app = TestStack::spawn().await;
    let ids: Vec<String> = (0..20).map(|i| format!("c-{i:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    accounts(&mut app, &refs, "mid-market").await;
    // Customer i renews through year `lasts[i]`.
    let survivors_after = [20, 14, 11, 9, 8, 8];
    for year in 0..6 {
        let start = NaiveDate::from_ymd_opt(2021 + year, 1, 1).unwrap();
        let end = NaiveDate::from_ymd_opt(2022 + year, 1, 1).unwrap();
        let booked = at(&format!("{}-12-20", 2020 + year));
        let terms: Vec<ipb::Subscription> = ids
            .iter()
            .take(survivors_after[year as usize])
            .map(|id| subscription(&format!("{id}-sub"), id, 5, 120_000, start, end, booked))
            .collect();
        subscriptions(&mut app, terms).await;
    }
    synced(&app).await;
    let cohorts = app
        .renewals
        .get_cohort_retention(pb::GetCohortRetentionRequest {
            period: pb::CohortPeriod::Year as i32,
            as_of: date(day("2025-06-01")),
            segment: "mid-market".into(),
            projection_periods: 3,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cohorts;
    assert_eq!(cohorts.len(), 1);
    let cohort = &cohorts[0];
    assert_eq!(cohort.survivors, [20, 14, 11, 9, 8]);
    let km: Vec<f64> = cohort.kaplan_meier.iter().map(|p| p.survival).collect();
    assert!(
        (km[0] - 0.7).abs() < 1e-12 && (km[3] - 0.4).abs() < 1e-12,
        "{km:?}"
    );
    let model = cohort
        .model
        .clone()
        .expect("four periods observed: a fitted model");
    assert_eq!(model.survival.len(), 4 + 3 + 1);
    assert!(model.alpha > 0.0 && model.beta > 0.0 && model.log_likelihood < 0.0);
    // The fit follows what it saw: within a customer of each count.
    for (t, n) in cohort.survivors.iter().enumerate() {
        assert!(
            (model.projected_survivors[t] - *n as f64).abs() < 1.5,
            "{t}: {model:?}"
        );
    }

    use pb::get_lifetime_value_request::Scope;
    let valued = async |scope: Scope| {
        app.renewals
            .clone()
            .get_lifetime_value(pb::GetLifetimeValueRequest {
                scope: Some(scope),
                discount_rate: 0.1,
                currency_code: String::new(),
                as_of: date(day("2026-06-01")),
            })
            .await
            .unwrap()
            .into_inner()
    };
    let value = valued(Scope::Segment("mid-market".into())).await;
    assert_eq!(
        value.accounts.len(),
        8,
        "the customers paying on 2026-06-01"
    );
    let minor = |m: Option<tenure_proto::common::v1::Money>| m.unwrap().amount_minor;
    let first = &value.accounts[0];
    assert_eq!((first.renewals, minor(first.arr.clone())), (5, 120_000));
    let residual = minor(first.residual_value.clone());
    assert!(residual > 120_000 && residual < 120_000 * 12, "{residual}");
    assert_eq!(first.expansion_rate, 0.0, "flat ARR");
    assert_eq!(minor(value.total_residual_value), residual * 8);
    let account = valued(Scope::AccountId("c-00".into())).await;
    assert_eq!(minor(account.accounts[0].residual_value.clone()), residual);
    let bad = app
        .renewals
        .get_lifetime_value(pb::GetLifetimeValueRequest {
            scope: None,
            discount_rate: 1.5,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["discount_rate"]);
}
