//! Retention metrics against METRICS.md's worked figures.

use super::*;

/// The worked figures: 100 contracts due, 90 renewed: 90 %; recurring
/// revenue 100 at the start, +45 new, +5 expansion, -25 churn, -5
/// contraction: 120 at the end, 120 %.
#[tokio::test]
async fn retention_metrics_reproduce_the_worked_figures() {
    let mut app = TestStack::spawn().await;
    past_terms(&mut app, "history", &history_terms(100, day("2023-06-30"))).await;
    for i in 0..100 {
        let request = outcome(i, i < 90, day("2023-06-30"));
        app.renewals.record_renewal_outcome(request).await.unwrap();
    }
    accounts(&mut app, &["a", "b", "c", "d"], "enterprise").await;
    let a_term = (day("2024-06-01"), day("2026-06-01"));
    let c_term = (day("2024-01-15"), day("2026-01-15"));
    subscriptions(
        &mut app,
        vec![
            subscription("a1", "a", 5, 50, a_term.0, a_term.1, at("2024-06-01")),
            subscription(
                "b1",
                "b",
                5,
                25,
                day("2024-03-01"),
                day("2025-03-01"),
                at("2024-03-01"),
            ),
            subscription("c1", "c", 5, 25, c_term.0, c_term.1, at("2024-01-15")),
            subscription(
                "d1",
                "d",
                5,
                45,
                day("2025-02-01"),
                day("2026-02-01"),
                at("2025-02-01"),
            ),
        ],
    )
    .await;
    subscriptions(
        &mut app,
        vec![
            subscription("a1", "a", 6, 55, a_term.0, a_term.1, at("2025-05-01")),
            subscription("c1", "c", 4, 20, c_term.0, c_term.1, at("2025-07-01")),
        ],
    )
    .await;
    synced(&app).await;

    let metrics = |start: &str, end: &str| {
        let mut renewals = app.renewals.clone();
        let period = range(day(start), day(end));
        async move {
            renewals
                .get_retention_metrics(pb::GetRetentionMetricsRequest {
                    period,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner()
        }
    };
    let contracts = metrics("2023-01-01", "2024-01-01").await;
    assert_eq!(
        (contracts.contracts_due, contracts.contracts_renewed),
        (100, 90)
    );
    assert_eq!(contracts.contract_renewal_rate.unwrap().percent, "90.00");

    let revenue = metrics("2025-01-01", "2026-01-01").await;
    let m = revenue.movements.unwrap();
    let minor = |money: Option<tenure_proto::common::v1::Money>| money.unwrap().amount_minor;
    assert_eq!(
        [
            minor(m.start),
            minor(m.new),
            minor(m.expansion),
            minor(m.churn),
            minor(m.contraction),
            minor(m.end)
        ],
        [100, 45, 5, 25, 5, 120]
    );
    assert_eq!(revenue.recurring_revenue_rate.unwrap().percent, "120.00");
    assert_eq!(revenue.gross_revenue_retention.unwrap().percent, "70.00");
    assert_eq!(revenue.net_revenue_retention.unwrap().percent, "75.00");
    assert_eq!(revenue.logo_retention.unwrap().percent, "66.67");
    assert_eq!(revenue.quick_ratio.unwrap().percent, "166.67");
    // B's term ended in the period and nothing followed it: one contract
    // due, lost.
    assert_eq!((revenue.contracts_due, revenue.contracts_churned), (1, 1));

    let ledger = app
        .renewals
        .get_revenue_ledger(pb::GetRevenueLedgerRequest {
            period: range(day("2025-01-01"), day("2026-01-01")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ledger.months.len(), 12);
    let month = |i: usize| ledger.months[i].arr.clone().unwrap();
    assert_eq!(minor(month(1).new), 45, "D started in February");
    assert_eq!(minor(month(2).churn), 25, "B lapsed on 1 March");
    assert_eq!(minor(month(4).expansion), 5, "A expanded in May");
    assert_eq!(minor(month(6).contraction), 5, "C contracted in July");
    assert_eq!(minor(month(0).start), 100);
    assert_eq!(minor(month(11).end), 120);
    assert_eq!(ledger.months[11].mrr_end, usd(10));

    // Cohorts by year as of 2026-01-01: 2024 holds A, B and C; B was lost
    // at its first renewal, A and C renewed once and are censored there.
    let cohorts = app
        .renewals
        .get_cohort_retention(pb::GetCohortRetentionRequest {
            period: pb::CohortPeriod::Year as i32,
            as_of: date(day("2026-01-01")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .cohorts;
    assert_eq!(cohorts.len(), 2);
    let c2024 = &cohorts[0];
    assert_eq!(c2024.start, date(day("2024-01-01")));
    assert_eq!(c2024.size, 3);
    // In time: B is lost at 12 months; A (19 months) and C (23.5) still
    // pay and are censored in the second year, not at a renewal.
    assert_eq!(c2024.kaplan_meier.len(), 2);
    let first = &c2024.kaplan_meier[0];
    assert_eq!((first.at_risk, first.churned, first.censored), (3, 1, 0));
    assert!((first.survival - 2.0 / 3.0).abs() < 1e-12);
    let second = &c2024.kaplan_meier[1];
    assert_eq!((second.at_risk, second.churned, second.censored), (2, 0, 2));
    assert_eq!(cohorts[1].size, 1);

    let bad = app
        .renewals
        .get_retention_metrics(pb::GetRetentionMetricsRequest {
            period: range(day("2026-01-01"), day("2025-01-01")),
            currency_code: "usd".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["period.end", "currency_code"]);
}

/// A year with a monthly customer that came in February and left in
/// September, an annual one that expanded, and one whose term ended late in
/// December with nothing decided yet; outcomes in dollars and one in euros.
#[tokio::test]
async fn a_period_sums_its_months_and_rates_only_decided_contracts() {
    let mut app = TestStack::spawn().await;
    accounts(&mut app, &["m", "x", "p"], "sums").await;
    let mut terms: Vec<ipb::Subscription> = (2..9)
        .map(|month| {
            let start = NaiveDate::from_ymd_opt(2025, month, 1).unwrap();
            let end = NaiveDate::from_ymd_opt(2025, month + 1, 1).unwrap();
            subscription(
                "m1",
                "m",
                1,
                120,
                start,
                end,
                start.and_hms_opt(9, 0, 0).unwrap().and_utc(),
            )
        })
        .collect();
    let x_term = (day("2024-06-01"), day("2026-06-01"));
    terms.push(subscription(
        "x1",
        "x",
        5,
        1_000,
        x_term.0,
        x_term.1,
        at("2024-06-01"),
    ));
    terms.push(subscription(
        "p1",
        "p",
        5,
        500,
        day("2024-12-20"),
        day("2025-12-20"),
        at("2024-12-20"),
    ));
    subscriptions(&mut app, terms).await;
    subscriptions(
        &mut app,
        vec![subscription(
            "x1",
            "x",
            6,
            1_200,
            x_term.0,
            x_term.1,
            at("2025-05-10"),
        )],
    )
    .await;
    let mut terms = history_terms(4, day("2025-06-30"));
    let euro_term = terms.split_off(3);
    past_terms(&mut app, "history", &terms).await;
    crate::fixtures::past_terms_in(&mut app, Some("history"), "EUR", &euro_term).await;
    for i in 0..3 {
        let request = outcome(i, i < 2, day("2025-06-30"));
        app.renewals.record_renewal_outcome(request).await.unwrap();
    }
    let mut euro = outcome(3, false, day("2025-06-30"));
    if let Some(o) = euro.outcome.as_mut() {
        for money in [&mut o.previous_arr, &mut o.new_arr] {
            money.as_mut().unwrap().currency_code = "EUR".into();
        }
    }
    app.renewals.record_renewal_outcome(euro).await.unwrap();
    synced(&app).await;

    let year = range(day("2025-01-01"), day("2026-01-01"));
    let metrics = app
        .renewals
        .get_retention_metrics(pb::GetRetentionMetricsRequest {
            period: year,
            as_of: date(day("2025-12-31")),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let minor = |money: Option<tenure_proto::common::v1::Money>| money.unwrap().amount_minor;
    let m = metrics.movements.clone().unwrap();
    assert_eq!(
        [
            minor(m.start.clone()),
            minor(m.new.clone()),
            minor(m.expansion.clone()),
            minor(m.churn.clone()),
            minor(m.contraction.clone()),
            minor(m.end.clone())
        ],
        [1_500, 120, 200, 620, 0, 1_200],
        "the monthly customer is new and churned within the year"
    );
    // Retention of the accounts paying on 1 January: X kept (capped at its
    // 1,000 for GRR), P gone.
    assert_eq!(metrics.gross_revenue_retention.unwrap().percent, "66.67");
    assert_eq!(metrics.net_revenue_retention.unwrap().percent, "80.00");
    assert_eq!(metrics.gross_mrr_churn.unwrap().percent, "41.33");
    assert_eq!(metrics.net_mrr_churn.unwrap().percent, "28.00");
    assert_eq!(metrics.quick_ratio.unwrap().percent, "51.61");
    // Contracts: the monthly terms renewed six times and lapsed once, two
    // dollar outcomes renewed and one churned; P's term is pending (inside
    // its grace) and stays out of the denominator; the euro outcome is
    // another book.
    assert_eq!(
        (
            metrics.contracts_due,
            metrics.contracts_renewed,
            metrics.contracts_churned,
            metrics.contracts_pending
        ),
        (11, 8, 2, 1)
    );
    let crr = metrics.contract_renewal_rate.unwrap();
    assert_eq!(
        (crr.numerator, crr.denominator, crr.percent.as_str()),
        (8, 10, "80.00")
    );

    // The period's movements are the sum of its monthly ledger.
    let ledger = app
        .renewals
        .get_revenue_ledger(pb::GetRevenueLedgerRequest {
            period: year,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let sum = |f: fn(&pb::RevenueMovements) -> Option<tenure_proto::common::v1::Money>| -> i64 {
        ledger
            .months
            .iter()
            .map(|l| minor(f(l.arr.as_ref().unwrap())))
            .sum()
    };
    assert_eq!(sum(|a| a.new.clone()), minor(m.new.clone()));
    assert_eq!(sum(|a| a.churn.clone()), minor(m.churn.clone()));
    assert_eq!(sum(|a| a.expansion.clone()), minor(m.expansion.clone()));
}

/// The terms `outcome(i, …, end)` names for `i` below `count`.
fn history_terms(count: usize, end: NaiveDate) -> Vec<(String, String, NaiveDate)> {
    (0..count)
        .map(|i| (format!("hist-{i}-sub"), format!("hist-{i}"), end))
        .collect()
}
