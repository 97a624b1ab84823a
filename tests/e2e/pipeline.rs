//! The renewal pipeline, retention metrics, forecasts and cohorts, fed by
//! real subscription changes through ingestion.

use std::time::Duration;

use chrono::{NaiveDate, Utc};
use tenure_proto::common::v1::DateRange;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::renewals::v1 as pb;
use tenure_tests::{TestStack, eventually, violated_fields};

use crate::fixtures::{date, subscription, ts, usd};

fn day(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn at(text: &str) -> chrono::DateTime<Utc> {
    format!("{text}T12:00:00Z").parse().unwrap()
}

fn range(start: NaiveDate, end: NaiveDate) -> Option<DateRange> {
    Some(DateRange {
        start: date(start),
        end: date(end),
    })
}

async fn accounts(app: &mut TestStack, ids: &[&str], segment: &str) {
    let accounts = ids
        .iter()
        .map(|id| ipb::Account {
            account_id: (*id).into(),
            name: format!("{id} Inc"),
            segment: segment.into(),
            owner: "dana".into(),
            updated_at: ts(at("2020-01-01")),
            ..Default::default()
        })
        .collect();
    app.ingestion
        .batch_upsert_accounts(ipb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
        })
        .await
        .unwrap();
}

async fn subscriptions(app: &mut TestStack, subscriptions: Vec<ipb::Subscription>) {
    app.ingestion
        .batch_upsert_subscriptions(ipb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions,
        })
        .await
        .unwrap();
}

async fn pipeline(app: &TestStack, include_closed: bool) -> Vec<pb::RenewalOpportunity> {
    app.renewals
        .clone()
        .list_renewal_pipeline(pb::ListRenewalPipelineRequest {
            page_size: 1000,
            include_closed,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .opportunities
}

/// Waits until renewals has refreshed every queued subscription.
async fn synced(app: &TestStack) {
    let db = app.db().await;
    eventually(Duration::from_secs(20), || {
        let db = db.clone();
        async move {
            let queued: i64 =
                sqlx::query_scalar("SELECT count(*) FROM renewals.subscription_queue")
                    .fetch_one(&db)
                    .await
                    .ok()?;
            let outbox: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM ingestion.outbox WHERE delivered_at IS NULL",
            )
            .fetch_one(&db)
            .await
            .ok()?;
            (queued == 0 && outbox == 0).then_some(())
        }
    })
    .await
    .expect("renewals refreshed the changed subscriptions");
    // The refresh of the last batch may still be committing.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

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

fn outcome(i: usize, renewed: bool, term_end: NaiveDate) -> pb::RecordRenewalOutcomeRequest {
    let kind = if renewed {
        pb::OutcomeKind::Renewed
    } else {
        pb::OutcomeKind::Churned
    };
    pb::RecordRenewalOutcomeRequest {
        request_id: format!("outcome-{i}"),
        outcome: Some(pb::RenewalOutcome {
            account_id: format!("hist-{i}"),
            subscription_id: format!("hist-{i}-sub"),
            term_end_date: date(term_end),
            kind: kind as i32,
            previous_arr: usd(1_000),
            new_arr: usd(if renewed { 1_000 } else { 0 }),
            churn_reason: if renewed {
                0
            } else {
                pb::ChurnReason::Price as i32
            },
            decided_on: date(term_end),
            ..Default::default()
        }),
    }
}

/// The worked figures: 100 contracts due, 90 renewed: 90 %; recurring
/// revenue 100 at the start, +45 new, +5 expansion, -25 churn, -5
/// contraction: 120 at the end, 120 %.
#[tokio::test]
async fn retention_metrics_reproduce_the_worked_figures() {
    let mut app = TestStack::spawn().await;
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
    assert_eq!(c2024.kaplan_meier.len(), 1);
    let first = &c2024.kaplan_meier[0];
    assert_eq!((first.at_risk, first.churned, first.censored), (3, 1, 2));
    assert!((first.survival - 2.0 / 3.0).abs() < 1e-12);
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

#[tokio::test]
async fn forecasts_stream_jobs_and_backtests() {
    let mut app = TestStack::spawn().await;
    let today = Utc::now().date_naive();
    // History of the segment: 8 outcomes, 6 renewed (rate 7/10 smoothed),
    // decided 90 days ago on terms that ended 100 days ago.
    let past_end = today - chrono::Days::new(100);
    for i in 0..8 {
        let mut request = outcome(i, i < 6, past_end);
        if let Some(o) = request.outcome.as_mut() {
            o.account_id = format!("past-{i}");
            o.decided_on = date(today - chrono::Days::new(90));
        }
        app.renewals.record_renewal_outcome(request).await.unwrap();
    }
    let mut ids: Vec<String> = (0..8).map(|i| format!("past-{i}")).collect();
    ids.extend((0..40).map(|i| format!("open-{i:02}")));
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    accounts(&mut app, &refs, "smb").await;
    // Past subscriptions so the outcomes' accounts and terms are in the pipeline.
    let past: Vec<ipb::Subscription> = (0..8)
        .map(|i| {
            subscription(
                &format!("hist-{i}-sub"),
                &format!("past-{i}"),
                1,
                1_000,
                past_end - chrono::Days::new(365),
                past_end,
                Utc::now() - chrono::Duration::days(400),
            )
        })
        .collect();
    let open: Vec<ipb::Subscription> = (0..40)
        .map(|i| {
            subscription(
                &format!("open-{i:02}-sub"),
                &format!("open-{i:02}"),
                1,
                1_000 * (i + 1),
                today - chrono::Days::new(300),
                today + chrono::Days::new(10 + i as u64),
                Utc::now() - chrono::Duration::days(290),
            )
        })
        .collect();
    subscriptions(&mut app, past).await;
    subscriptions(&mut app, open).await;
    synced(&app).await;

    let window = range(today, today + chrono::Days::new(90));
    let forecast = app
        .renewals
        .forecast_renewals(pb::ForecastRenewalsRequest {
            window,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let totals = forecast.totals.unwrap();
    let arr_up: i64 = (1..=40).map(|i| 1_000 * i).sum();
    let minor = |money: Option<tenure_proto::common::v1::Money>| money.unwrap().amount_minor;
    assert_eq!(totals.renewal_count, 40);
    assert_eq!(minor(totals.arr_up), arr_up);
    assert_eq!(minor(totals.expected_arr), arr_up * 7 / 10);
    assert_eq!(minor(totals.best_case), arr_up);
    assert_eq!(minor(totals.worst_case), 0);
    let (low, high) = (minor(totals.interval_low), minor(totals.interval_high));
    assert!(
        low < arr_up * 7 / 10 && arr_up * 7 / 10 < high,
        "{low} {high}"
    );
    assert!((totals.expected_renewal_count - 28.0).abs() < 1e-9);

    // The stream: every row once, in chunks, the total on the first message.
    let mut stream = app
        .renewals
        .stream_forecast(pb::StreamForecastRequest {
            window,
            chunk_size: 7,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    let mut first_total = None;
    while let Some(message) = stream.message().await.unwrap() {
        first_total.get_or_insert(message.total_count);
        assert!(message.rows.len() <= 7);
        streamed.extend(message.rows);
    }
    assert_eq!(first_total, Some(40));
    assert_eq!(streamed.len(), 40);
    assert!(streamed.iter().all(|r| r.renewal_probability == 0.7));

    // The command-line form writes the same rows for a nightly job.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("forecast.csv");
    let written = tenure::forecast::run(
        &app.stack.peers.renewals_url,
        today,
        today + chrono::Days::new(90),
        "",
        tenure::forecast::Format::Csv,
        &csv,
        false,
    )
    .await
    .unwrap();
    assert_eq!(written, 40);
    let text = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 41);
    assert!(lines[0].starts_with("subscription_id,account_id,account_name"));
    assert!(
        lines[1].contains("PROBABILITY_SOURCE_SEGMENT_RATE"),
        "{}",
        lines[1]
    );

    // A cancelled stream: the caller drops it after one message; the
    // service carries on serving.
    let mut cancelled = app
        .renewals
        .stream_forecast(pb::StreamForecastRequest {
            window,
            chunk_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.message().await.unwrap().unwrap().rows.len(), 1);
    drop(cancelled);

    // The job form gives the same rows.
    let job = app
        .renewals
        .start_forecast_job(pb::StartForecastJobRequest {
            request_id: "nightly-1".into(),
            forecast: Some(pb::StreamForecastRequest {
                window,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    let done = eventually(Duration::from_secs(20), || {
        let mut renewals = app.renewals.clone();
        let job_id = job.job_id.clone();
        async move {
            let job = renewals
                .get_forecast_job(pb::GetForecastJobRequest { job_id })
                .await
                .ok()?
                .into_inner()
                .job?;
            (job.state == pb::JobState::Succeeded as i32).then_some(job)
        }
    })
    .await
    .expect("the job succeeds");
    assert_eq!((done.total_rows, done.done_rows), (40, 40));
    let mut rows = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .renewals
            .list_forecast_job_rows(pb::ListForecastJobRowsRequest {
                job_id: job.job_id.clone(),
                page_size: 15,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        rows.extend(page.rows);
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(rows, streamed);

    // Backtest the past window as of before its outcomes were decided: the
    // forecast knew no history (one half each); six of eight renewed.
    let backtest = app
        .renewals
        .backtest_forecast(pb::BacktestForecastRequest {
            window: range(
                past_end - chrono::Days::new(1),
                past_end + chrono::Days::new(1),
            ),
            as_of: date(today - chrono::Days::new(200)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(backtest.actual_renewed_count, 6);
    assert_eq!(minor(backtest.actual_renewed_arr), 6_000);
    assert_eq!(minor(backtest.arr_error), 4_000 - 6_000);
    assert!((backtest.count_error + 2.0).abs() < 1e-9);
    assert_eq!(backtest.calibration.len(), 1);
    assert_eq!(backtest.calibration[0].count, 8);
    assert_eq!(backtest.calibration[0].actual_rate, 0.75);

    // sBG on caller-supplied counts, and its validation.
    let fit = app
        .renewals
        .fit_retention_model(pb::FitRetentionModelRequest {
            survivors: vec![1000, 869, 743, 653, 593, 551, 517, 491],
            projection_periods: 3,
        })
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    assert!(
        (fit.alpha - 0.668).abs() < 0.01 && (fit.beta - 3.806).abs() < 0.05,
        "{fit:?}"
    );
    assert_eq!(fit.projected_survivors.len(), 11);
    let bad = app
        .renewals
        .fit_retention_model(pb::FitRetentionModelRequest {
            survivors: vec![100, 120, 90],
            projection_periods: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["survivors"]);

    let scenario = app
        .renewals
        .project_scenario(pb::ProjectScenarioRequest {
            customers: 100.0,
            revenue_per_customer: usd(1_200_000),
            new_customer_growth: 0.5,
            churn_rate: 0.2,
            years: 2,
            growth_target: 0.5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scenario.months.len(), 24);
    assert!((scenario.required_new_bookings - 0.7).abs() < 1e-12);
}

/// Twenty customers starting in January 2021 on yearly terms; survivors
/// after each renewal 20, 14, 11, 9, 8; the last eight renewed into 2027.
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

    let value = app
        .renewals
        .get_lifetime_value(pb::GetLifetimeValueRequest {
            scope: Some(pb::get_lifetime_value_request::Scope::Segment(
                "mid-market".into(),
            )),
            discount_rate: 0.1,
            currency_code: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(value.accounts.len(), 8, "the customers paying today");
    let minor = |m: Option<tenure_proto::common::v1::Money>| m.unwrap().amount_minor;
    let first = &value.accounts[0];
    assert_eq!((first.renewals, minor(first.arr.clone())), (5, 120_000));
    let residual = minor(first.residual_value.clone());
    assert!(residual > 120_000 && residual < 120_000 * 12, "{residual}");
    assert_eq!(first.expansion_rate, 0.0, "flat ARR");
    assert_eq!(minor(value.total_residual_value), residual * 8);
    let account = app
        .renewals
        .get_lifetime_value(pb::GetLifetimeValueRequest {
            scope: Some(pb::get_lifetime_value_request::Scope::AccountId(
                "c-00".into(),
            )),
            discount_rate: 0.1,
            currency_code: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(minor(account.accounts[0].residual_value.clone()), residual);
    let bad = app
        .renewals
        .get_lifetime_value(pb::GetLifetimeValueRequest {
            scope: None,
            discount_rate: 1.5,
            currency_code: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["discount_rate"]);
}
