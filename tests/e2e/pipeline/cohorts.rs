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
            .map(|id| {
                // One customer grows half again every year.
                let arr = if id == "c-07" {
                    (120_000.0 * 1.5_f64.powi(year)).round() as i64
                } else {
                    120_000
                };
                subscription(&format!("{id}-sub"), id, 5, arr, start, end, booked)
            })
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
    assert_eq!(
        (first.renewals, first.payments, minor(first.arr.clone())),
        (5, 6, 120_000)
    );
    // DERL(6) summed here from the model's own alpha and beta: the payments
    // still to come, the next renewal's undiscounted, the current term's
    // (already invoiced) not counted again.
    let model = value.model.clone().unwrap();
    let d: f64 = 0.1;
    let survival = |t: u32| -> f64 {
        (1..=t)
            .map(|i| {
                (model.beta + f64::from(i) - 1.0) / (model.alpha + model.beta + f64::from(i) - 1.0)
            })
            .product()
    };
    let derl = |n: u32| -> f64 {
        (n..n + 3000)
            .map(|t| survival(t) / survival(n - 1) / (1.0 + d).powi((t - n) as i32))
            .sum()
    };
    assert!(
        (first.derl - derl(6)).abs() < 1e-6,
        "{} vs {}",
        first.derl,
        derl(6)
    );
    let residual = minor(first.residual_value.clone());
    assert_eq!(residual, (120_000.0 * derl(6)).round() as i64);
    let del: f64 = (0..3000)
        .map(|t| survival(t) / (1.0 + d).powi(t as i32))
        .sum();
    assert!((value.del - del).abs() < 1e-6, "{} vs {del}", value.del);
    assert!(
        (value.del - (1.0 + derl(1) / (1.0 + d))).abs() < 1e-6,
        "DEL = 1 + DERL(1)/(1+d)"
    );
    assert!(model.converged && model.boundary.is_empty(), "{model:?}");
    assert_eq!(first.expansion_rate, 0.0, "flat ARR");
    assert!(!first.expansion_capped);
    // The grower's 50 % a year counts at most half the discount rate: the
    // expected sum stays finite and expansion never outweighs time value.
    let grower = &value.accounts[7];
    assert!(grower.expansion_capped && (grower.expansion_rate - 0.05).abs() < 1e-12);
    let grower_flat = minor(grower.residual_value.clone());
    let grower_growing = minor(grower.residual_value_with_expansion.clone());
    assert!(
        grower_growing > grower_flat && grower_growing < grower_flat * 2,
        "{grower:?}"
    );
    assert_eq!(
        minor(value.total_residual_value),
        residual * 7 + grower_flat
    );
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

/// 100 customers on yearly terms from 2024, observed on 2025-07-01: 30
/// lapsed at their first renewal, 5 cancelled in May of their second year,
/// 65 still pay. The cancellers are lost among the 70 still at risk, not
/// at a renewal nobody else has reached yet.
#[tokio::test]
async fn mid_term_churn_is_measured_in_time() {
    let mut app = TestStack::spawn().await;
    let ids: Vec<String> = (0..100).map(|i| format!("k-{i:02}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    accounts(&mut app, &refs, "km").await;
    let sub = |id: &String, start: &str, end: &str, booked: &str| {
        subscription(
            &format!("{id}-sub"),
            id,
            5,
            10_000,
            day(start),
            day(end),
            at(booked),
        )
    };
    let first: Vec<_> = ids
        .iter()
        .map(|id| sub(id, "2024-01-01", "2025-01-01", "2023-12-20"))
        .collect();
    subscriptions(&mut app, first).await;
    let renewed: Vec<_> = ids[30..]
        .iter()
        .map(|id| sub(id, "2025-01-01", "2026-01-01", "2024-12-20"))
        .collect();
    subscriptions(&mut app, renewed).await;
    let cancelled: Vec<_> = ids[30..35]
        .iter()
        .map(|id| ipb::Subscription {
            status: ipb::SubscriptionStatus::Canceled as i32,
            ..sub(id, "2025-01-01", "2026-01-01", "2025-05-01")
        })
        .collect();
    subscriptions(&mut app, cancelled).await;
    synced(&app).await;

    let cohorts = app
        .renewals
        .get_cohort_retention(pb::GetCohortRetentionRequest {
            period: pb::CohortPeriod::Year as i32,
            segment: "km".into(),
            as_of: date(day("2025-07-01")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cohorts;
    let cohort = &cohorts[0];
    assert_eq!(cohort.size, 100);
    let points: Vec<(i64, i64, i64)> = cohort
        .kaplan_meier
        .iter()
        .map(|p| (p.at_risk, p.churned, p.censored))
        .collect();
    assert_eq!(points, [(100, 30, 0), (70, 5, 65)]);
    assert!(
        (cohort.kaplan_meier[1].survival - 0.65).abs() < 1e-12,
        "{cohort:?}"
    );
    let median = cohort.median_survival.unwrap();
    assert_eq!(median.months, None, "most customers still pay");
    // The model is fitted on the true counts: 30 lost at renewal 1, 5 at
    // renewal 2, 65 still paying after one renewal.
    let model = cohort.model.clone().unwrap();
    let (a, b) = (model.alpha, model.beta);
    let (p1, p2) = (a / (a + b), a / (a + b) * b / (a + b + 1.0));
    let expected = 30.0 * p1.ln() + 5.0 * p2.ln() + 65.0 * (1.0 - p1).ln();
    assert!((model.log_likelihood - expected).abs() < 1e-6, "{model:?}");
}

/// Fader & Hardie (2007), through the API: both published cohorts' alpha,
/// beta, log-likelihood and projected survivors in years 8 to 12; and fits
/// that end at the edge say so instead of passing for estimates.
#[tokio::test]
async fn the_retention_model_reproduces_the_published_cohorts() {
    let app = TestStack::spawn().await;
    let fit = |survivors: &[i64]| {
        let mut renewals = app.renewals.clone();
        let survivors = survivors.to_vec();
        async move {
            renewals
                .fit_retention_model(pb::FitRetentionModelRequest {
                    survivors,
                    projection_periods: 5,
                })
                .await
        }
    };
    for (survivors, alpha, beta, ll, projected) in [
        (
            [1000, 631, 468, 382, 326, 289, 262, 241],
            0.704,
            1.182,
            -1680.27,
            [220.1, 204.4, 191.2, 179.9, 170.0],
        ),
        (
            [1000, 869, 743, 653, 593, 551, 517, 491],
            0.668,
            3.806,
            -1611.16,
            [460.4, 435.8, 414.2, 395.1, 378.0],
        ),
    ] {
        let model = fit(&survivors).await.unwrap().into_inner().model.unwrap();
        assert!((model.alpha - alpha).abs() < 0.001, "{model:?}");
        assert!((model.beta - beta).abs() < 0.005, "{model:?}");
        assert!((model.log_likelihood - ll).abs() < 0.01, "{model:?}");
        assert!(model.converged && model.boundary.is_empty());
        for (i, expected) in projected.iter().enumerate() {
            let n = model.projected_survivors[8 + i];
            assert!((n - expected).abs() < 0.5, "year {}: {n}", 8 + i);
        }
    }
    let same = fit(&[100_000, 80_000, 64_000, 51_200, 40_960])
        .await
        .unwrap()
        .into_inner();
    let model = same.model.unwrap();
    assert!(model.boundary.contains("not identified"), "{model:?}");
    let none_lost = fit(&[100, 100, 100]).await.unwrap_err();
    assert_eq!(none_lost.code(), tonic::Code::FailedPrecondition);
    assert!(
        none_lost.message().contains("no customer has been lost"),
        "{none_lost:?}"
    );
}
