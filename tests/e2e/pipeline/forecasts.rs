//! Forecasts, the forecast stream and jobs, and backtests.

use super::*;

#[tokio::test]
async fn forecasts_stream_jobs_and_backtests() {
    let mut app = TestStack::spawn().await;
    let today = Utc::now().date_naive();
    // History of the segment: 8 outcomes, 6 renewed, decided 90 days ago on
    // terms that ended 100 days ago. The base rate is 7/10 (Laplace); the
    // segment's leans on it as if with ten outcomes more: (6 + 7) / 18.
    let past_end = today - chrono::Days::new(100);
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
                // Term ends out of the ids' order (7 and 40 are coprime:
                // each day once), so that rows kept in id order are not in
                // term-end order.
                today + chrono::Days::new(10 + (i as u64 * 7) % 40),
                Utc::now() - chrono::Duration::days(290),
            )
        })
        .collect();
    subscriptions(&mut app, past).await;
    subscriptions(&mut app, open).await;
    for i in 0..8 {
        let mut request = outcome(i, i < 6, past_end);
        if let Some(o) = request.outcome.as_mut() {
            o.account_id = format!("past-{i}");
            o.decided_on = date(today - chrono::Days::new(90));
        }
        app.renewals.record_renewal_outcome(request).await.unwrap();
    }
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
    let p = 13.0 / 18.0;
    let expected: i64 = (1..=40)
        .map(|i| (1_000.0 * f64::from(i) * p).round() as i64)
        .sum();
    assert_eq!(minor(totals.expected_arr), expected);
    assert_eq!(minor(totals.best_case), arr_up);
    assert_eq!(minor(totals.worst_case), 0);
    let (low, high) = (minor(totals.interval_low), minor(totals.interval_high));
    assert!(low < expected && expected < high, "{low} {high}");
    assert_eq!(totals.interval_method, "poisson_binomial");
    assert!((totals.expected_renewal_count - 40.0 * p).abs() < 1e-9);

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
    let key = |r: &pb::RenewalOpportunity| {
        let day = r.term_end_date.unwrap();
        ((day.year, day.month, day.day), r.subscription_id.clone())
    };
    assert!(
        streamed.windows(2).all(|w| key(&w[0]) < key(&w[1])),
        "in term-end order"
    );

    // A window larger than a page is read in ordered pages: the same rows
    // in the same order as a window read in one statement and sorted.
    let db = app.db().await;
    let filter = tenure_renewals::pipeline::OpportunityFilter {
        term_end_from: Some(today),
        term_end_before: Some(today + chrono::Days::new(90)),
        ..Default::default()
    };
    let read = |page_rows: i64| {
        let (db, filter) = (db.clone(), filter.clone());
        async move {
            let mut feed = tenure_renewals::pipeline::Feed::read_in_pages(&db, &filter, page_rows);
            let total = feed.total().await;
            let mut rows = Vec::new();
            while let Some(batch) = feed.next().await.unwrap() {
                rows.extend(batch.into_iter().map(|r| (r.term_end, r.subscription_id)));
            }
            (total, rows)
        }
    };
    let (whole, paged) = (read(1_000).await, read(3).await);
    assert_eq!(whole.0, Some(40));
    assert_eq!(whole, paged);
    assert_eq!(
        whole.1.iter().map(|(_, id)| id.clone()).collect::<Vec<_>>(),
        streamed
            .iter()
            .map(|r| r.subscription_id.clone())
            .collect::<Vec<_>>()
    );
    assert!(
        streamed
            .iter()
            .all(|r| (r.renewal_probability - p).abs() < 1e-12)
    );

    // The command-line form writes the same rows for a nightly job.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("forecast.csv");
    let written = tenure::forecast::run(
        &mut app.renewals.clone(),
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

    // What forecasts learn from history is kept between requests until the
    // history changes: two churns recorded now (accounts of another segment,
    // so only the base rate moves: 7/12) show in the very next forecast.
    let gone: Vec<(String, String, NaiveDate)> = (8..10)
        .map(|i| (format!("hist-{i}-sub"), format!("gone-{i}"), past_end))
        .collect();
    past_terms(&mut app, "enterprise", &gone).await;
    for i in 8..10 {
        let mut request = outcome(i, false, past_end);
        if let Some(o) = request.outcome.as_mut() {
            o.account_id = format!("gone-{i}");
            o.decided_on = date(today - chrono::Days::new(90));
        }
        app.renewals.record_renewal_outcome(request).await.unwrap();
    }
    let moved = (6.0 + 10.0 * 7.0 / 12.0) / 18.0;
    let again = app
        .renewals
        .forecast_renewals(pb::ForecastRenewalsRequest {
            window,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .totals
        .unwrap();
    assert!(
        (again.expected_renewal_count - 40.0 * moved).abs() < 1e-9,
        "{} against {}",
        again.expected_renewal_count,
        40.0 * moved
    );
}

/// Twenty past renewals the model gave even odds 90 days out; by the time
/// their outcomes came in it had (too late) grown sure they would renew.
/// Half renewed. Calibration must pair each outcome with what the forecast
/// saw at the horizon (well calibrated: no shift), not with the model's
/// view at decision time (which would drag every open renewal down).
#[tokio::test]
async fn calibration_pairs_are_taken_at_the_forecast_horizon() {
    let mut app = TestStack::spawn().await;
    let today = Utc::now().date_naive();
    let past_end = today - chrono::Days::new(30);
    let mut ids: Vec<String> = (0..20).map(|i| format!("cal-{i:02}")).collect();
    ids.push("cal-open".into());
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    accounts(&mut app, &refs, "cal").await;
    let mut terms: Vec<ipb::Subscription> = ids[..20]
        .iter()
        .map(|id| {
            let start = past_end - chrono::Days::new(365);
            subscription(
                &format!("{id}-sub"),
                id,
                1,
                1_000,
                start,
                past_end,
                Utc::now() - chrono::Duration::days(400),
            )
        })
        .collect();
    terms.push(subscription(
        "cal-open-sub",
        "cal-open",
        1,
        1_000,
        // A year's term like the past ones: the model's probability as is.
        today - chrono::Days::new(305),
        today + chrono::Days::new(60),
        Utc::now() - chrono::Duration::days(300),
    ));
    subscriptions(&mut app, terms).await;
    synced(&app).await;
    let db = app.db().await;
    // Churn probabilities as health's model would have synced them.
    let churn = |p: f64, pattern: &'static str| {
        let db = db.clone();
        async move {
            sqlx::query(
                "UPDATE renewals.accounts SET churn_probability = $1 WHERE account_id LIKE $2",
            )
            .bind(p)
            .bind(pattern)
            .execute(&db)
            .await
            .unwrap();
        }
    };
    // Ninety days before the past terms ended: even odds.
    churn(0.5, "cal-%").await;
    app.renewals
        .run_renewal_sweep(pb::RunRenewalSweepRequest {
            as_of: date(past_end - chrono::Days::new(60)),
        })
        .await
        .unwrap();
    // At decision time the model was sure of the past ones; the open one
    // is at 80 % now.
    churn(0.01, "cal-0%").await;
    churn(0.01, "cal-1%").await;
    churn(0.2, "cal-open").await;
    for i in 0..20 {
        let mut request = outcome(i, i < 10, past_end);
        if let Some(o) = request.outcome.as_mut() {
            o.account_id = format!("cal-{i:02}");
            o.subscription_id = format!("cal-{i:02}-sub");
            o.decided_on = date(today - chrono::Days::new(25));
        }
        app.renewals.record_renewal_outcome(request).await.unwrap();
    }
    let forecast = app
        .renewals
        .forecast_renewals(pb::ForecastRenewalsRequest {
            window: range(today, today + chrono::Days::new(90)),
            segment: "cal".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(forecast.calibration_outcomes, 20);
    let open = pipeline(&app, false).await;
    let renewal = open.iter().find(|o| o.account_id == "cal-open").unwrap();
    assert_eq!(
        renewal.probability_source,
        pb::ProbabilitySource::Model as i32
    );
    assert!(
        (renewal.renewal_probability - 0.8).abs() < 1e-6,
        "calibrated on what the forecast saw: {}",
        renewal.renewal_probability
    );
}

/// A backtest as of 60 days ago sees the pipeline of that day: not a term
/// booked later, not an expansion booked later, not a renewal decided
/// later, and each account in the segment it had then.
#[tokio::test]
async fn a_backtest_sees_only_what_was_known_then() {
    let mut app = TestStack::spawn().await;
    let today = Utc::now().date_naive();
    let ago = |days: u64| today - chrono::Days::new(days);
    let booked = |days: i64| Utc::now() - chrono::Duration::days(days);
    accounts(&mut app, &["b-old", "b-grow", "b-new"], "bt").await;
    subscriptions(
        &mut app,
        vec![
            subscription("b-old-1", "b-old", 1, 1_000, ago(435), ago(70), booked(435)),
            subscription(
                "b-grow-1",
                "b-grow",
                1,
                1_000,
                ago(395),
                ago(30),
                booked(395),
            ),
        ],
    )
    .await;
    // After the as-of day: B-grow triples and moves segment, B-old's
    // renewal is booked late, a new customer signs, and B-grow renews.
    subscriptions(
        &mut app,
        vec![
            subscription(
                "b-grow-1",
                "b-grow",
                3,
                3_000,
                ago(395),
                ago(30),
                booked(50),
            ),
            subscription(
                "b-old-1",
                "b-old",
                1,
                1_000,
                ago(70),
                ago(0) + chrono::Days::new(295),
                booked(50),
            ),
            subscription("b-new-1", "b-new", 1, 5_000, ago(40), ago(20), booked(40)),
            subscription(
                "b-grow-1",
                "b-grow",
                3,
                3_000,
                ago(30),
                ago(0) + chrono::Days::new(335),
                booked(31),
            ),
        ],
    )
    .await;
    app.ingestion
        .batch_upsert_accounts(ipb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![ipb::Account {
                account_id: "b-grow".into(),
                name: "b-grow Inc".into(),
                segment: "moved".into(),
                owner: "dana".into(),
                updated_at: ts(booked(50)),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    synced(&app).await;

    let backtest = app
        .renewals
        .backtest_forecast(pb::BacktestForecastRequest {
            window: range(ago(90), today),
            as_of: date(ago(60)),
            segment: "bt".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let forecast = backtest.forecast.unwrap();
    let minor = |money: Option<tenure_proto::common::v1::Money>| money.unwrap().amount_minor;
    assert_eq!(
        forecast.renewal_count, 2,
        "B-new signed after the as-of day"
    );
    assert_eq!(
        minor(forecast.arr_up),
        2_000,
        "B-grow at the ARR it had then"
    );
    assert_eq!(
        minor(forecast.worst_case),
        0,
        "B-old's renewal was not known then"
    );
    assert_eq!(
        minor(forecast.expected_arr),
        1_000,
        "both open at even odds"
    );
    assert_eq!(backtest.actual_renewed_count, 2);
    assert_eq!(minor(backtest.actual_renewed_arr), 4_000);
    assert_eq!(backtest.model_predictions, 0);
}
