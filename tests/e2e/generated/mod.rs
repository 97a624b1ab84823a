//! A generated customer base, loaded through the public APIs: every row is
//! accepted, nothing is applied twice, and what Tenure learns from it is
//! held against the generator's truth.

use chrono::Datelike;
mod independent;
mod prospects;
mod signals;

use std::collections::HashMap;
use tenure::generate::Config;
use tenure::import::BASE_FILES;
use tenure::import::{Kind, Summary};
use tenure_platform::time::to_date;
use tenure_proto::health::v1 as hpb;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::renewals::v1 as rpb;
use tenure_tests::TestStack;

/// A base ending yesterday, so nothing in it lies in the services' future.
pub(super) fn config(accounts: usize, seed: u64) -> Config {
    Config {
        accounts,
        years: 3,
        seed,
        as_of: tenure::generate::yesterday(),
    }
}

pub(super) async fn load(
    app: &TestStack,
    config: &Config,
) -> (tempfile::TempDir, HashMap<Kind, Summary>) {
    let dir = tempfile::tempdir().unwrap();
    let counts = tenure::generate::write(config, dir.path()).unwrap();
    let summaries: HashMap<Kind, Summary> =
        tenure::import::base(&app.stack.operator_peers(), dir.path(), false)
            .await
            .unwrap()
            .into_iter()
            .collect();
    for (kind, _) in BASE_FILES {
        let summary = &summaries[&kind];
        assert_eq!(summary.rows, counts[&kind], "{kind:?}");
        assert_eq!(
            (summary.accepted, summary.rejected),
            (summary.rows, 0),
            "{kind:?}: every generated row is accepted"
        );
    }
    (dir, summaries)
}

#[tokio::test]
async fn a_generated_base_loads_whole_and_once() {
    let app = TestStack::spawn().await;
    let config = config(120, 11);
    let (dir, _) = load(&app, &config).await;

    // Every subscription's versions arrive, each applied once.
    let text = std::fs::read_to_string(dir.path().join("subscriptions.jsonl")).unwrap();
    let mut versions: HashMap<String, usize> = HashMap::new();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        *versions
            .entry(row["subscription_id"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let (longest, count) = versions
        .iter()
        .max_by_key(|(id, n)| (**n, (*id).clone()))
        .unwrap();
    let history = app
        .ingestion
        .clone()
        .get_subscription_history(ipb::GetSubscriptionHistoryRequest {
            subscription_ids: vec![longest.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.subscriptions[0].versions.len(), *count, "{longest}");

    // A year's movements are the sum of its monthly ledger, and add up.
    crate::pipeline::synced(&app).await;
    let year_end =
        chrono::NaiveDate::from_ymd_opt(config.as_of.year(), config.as_of.month(), 1).unwrap();
    let year = Some(tenure_proto::common::v1::DateRange {
        start: Some(to_date(year_end - chrono::Months::new(12))),
        end: Some(to_date(year_end)),
    });
    let metrics = app
        .renewals
        .clone()
        .get_retention_metrics(rpb::GetRetentionMetricsRequest {
            period: year,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ledger = app
        .renewals
        .clone()
        .get_revenue_ledger(rpb::GetRevenueLedgerRequest {
            period: year,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let figures = |m: &rpb::RevenueMovements| -> [i64; 5] {
        [
            &m.new,
            &m.expansion,
            &m.reactivation,
            &m.contraction,
            &m.churn,
        ]
        .map(|money| money.as_ref().map_or(0, |x| x.amount_minor))
    };
    let period = metrics.movements.unwrap();
    let mut summed = [0_i64; 5];
    for month in &ledger.months {
        for (total, x) in summed.iter_mut().zip(figures(month.arr.as_ref().unwrap())) {
            *total += x;
        }
    }
    assert_eq!(figures(&period), summed, "the year against its months");
    // The same figures computed straight from the generated files.
    let start = year_end - chrono::Months::new(12);
    let expected = independent::Base::read(
        &std::fs::read_to_string(dir.path().join("subscriptions.jsonl")).unwrap(),
    )
    .figures(start, year_end);
    let amount_of = |m: &Option<tenure_proto::common::v1::Money>| m.as_ref().unwrap().amount_minor;
    let rate = |r: &Option<rpb::Rate>| {
        let r = r.as_ref().unwrap();
        (r.numerator, r.denominator)
    };
    assert_eq!(
        [amount_of(&period.start), amount_of(&period.end)],
        [expected.start, expected.end]
    );
    assert_eq!(
        figures(&period),
        [
            expected.new,
            expected.expansion,
            expected.reactivation,
            expected.contraction,
            expected.churn
        ]
    );
    assert_eq!(
        rate(&metrics.gross_revenue_retention),
        (expected.kept_capped, expected.start)
    );
    assert_eq!(
        rate(&metrics.net_revenue_retention),
        (expected.kept, expected.start)
    );
    assert_eq!(
        rate(&metrics.logo_retention),
        (expected.logos_kept, expected.logos_start)
    );
    assert!(
        summed[0] > 0 && summed[4] > 0,
        "a real year has new and churned revenue"
    );
    let [new, expansion, reactivation, contraction, churn] = summed;
    let amount = |m: &Option<tenure_proto::common::v1::Money>| m.as_ref().unwrap().amount_minor;
    assert_eq!(
        amount(&period.end),
        amount(&period.start) + new + expansion + reactivation - contraction - churn
    );

    // Loading it again changes nothing.
    let again = tenure::import::base(&app.stack.operator_peers(), dir.path(), false)
        .await
        .unwrap();
    for (kind, summary) in again {
        assert_eq!(
            (summary.accepted, summary.unchanged, summary.rejected),
            (0, summary.rows, 0),
            "{kind:?} applied twice"
        );
    }
    app.stop().await;
}

/// The churn model learns from the generated renewals: the signals through
/// which the generator's true drivers show rank above everything else it
/// reads, and it ranks renewals far better than chance.
#[tokio::test]
async fn the_churn_model_finds_the_true_drivers() {
    // Backtesting a scorecard over 1,500 accounts' past renewals reads the
    // signals as of each renewal: about half a minute in a debug build on
    // two cores, over the default 30 s request limit.
    let mut app = TestStack::spawn_with(|options| {
        options.server.request_timeout = std::time::Duration::from_secs(180);
    })
    .await;
    let config = config(1500, 5);
    let (dir, _) = load(&app, &config).await;
    let model =
        tenure::model::train_and_wait(&mut app.health, tenure::model::request(90, 0.01, None))
            .await
            .unwrap();
    assert_eq!(model.status(), hpb::ModelStatus::Ready, "{}", model.error);
    let report = tenure::model::render(&model);
    assert!(model.converged && model.iterations > 0, "{report}");
    // Signals as measured, not "no data" indicators, ranked by weight.
    let measured: Vec<&str> = model
        .signals
        .iter()
        .map(|s| s.feature.as_str())
        .filter(|f| !f.contains(':') && !f.contains('='))
        .collect();
    let top: Vec<&str> = measured.iter().take(4).copied().collect();
    for truth in [
        "advanced_features_used_30d",
        "sponsor_changed_90d",
        "max_days_overdue",
    ] {
        assert!(top.contains(&truth), "{truth} not among {top:?}:\n{report}");
    }
    let auc = model.cv_auc.unwrap_or_default();
    assert!(auc > 0.68, "AUC {auc}:\n{report}");

    // A blind scorecard (news signals, which the generator draws at random)
    // ranks past renewals no better than chance; the model does far better.
    let measure = hpb::Measure {
        name: "news".into(),
        signal: "risk_signals_90d".into(),
        weight: 1.0,
        rule: Some(hpb::measure::Rule::Linear(hpb::LinearRule {
            worst: 3.0,
            best: 0.0,
        })),
    };
    app.health
        .create_scorecard(hpb::CreateScorecardRequest {
            request_id: String::new(),
            scorecard: Some(hpb::Scorecard {
                name: "blind".into(),
                groups: vec![hpb::MeasureGroup {
                    name: "News".into(),
                    measures: vec![measure],
                }],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let blind = app
        .health
        .backtest_scorecard(hpb::BacktestScorecardRequest {
            name: "blind".into(),
            version: 0,
            horizon_days: 90,
        })
        .await
        .unwrap()
        .into_inner()
        .auc
        .unwrap_or(0.5);
    assert!(
        blind < 0.58 && auc > blind + 0.1,
        "blind scorecard AUC {blind} against the model's {auc}"
    );

    // The model as it could have been trained a year ago, backtested on the
    // half year that followed with only what was known then.
    let as_of = config.as_of - chrono::Days::new(365);
    let then = tenure::model::train_and_wait(
        &mut app.health,
        tenure::model::request(90, 0.01, Some(as_of)),
    )
    .await
    .unwrap();
    assert_eq!(then.status(), hpb::ModelStatus::Ready, "{}", then.error);
    assert!(
        then.example_count < model.example_count,
        "only outcomes decided by then"
    );
    let backtest = |model_id: &str| {
        let mut renewals = app.renewals.clone();
        let request = rpb::BacktestForecastRequest {
            window: Some(tenure_proto::common::v1::DateRange {
                start: Some(to_date(as_of)),
                end: Some(to_date(as_of + chrono::Days::new(182))),
            }),
            as_of: Some(to_date(as_of)),
            model_id: model_id.to_owned(),
            ..Default::default()
        };
        async move { renewals.backtest_forecast(request).await }
    };
    let result = backtest(&then.model_id).await.unwrap().into_inner();
    assert!(result.model_predictions > 50, "{result:?}");
    let decided: i64 = result.calibration.iter().map(|b| b.count).sum();
    assert!(decided > 50 && result.calibration.len() >= 3, "{result:?}");
    // Calibrated as it was then, the model's expected renewals land near
    // what happened.
    assert!(
        result.count_error.abs() < 0.1 * result.actual_renewed_count as f64,
        "{result:?}"
    );
    // A model that learned from later outcomes cannot be backtested.
    let leaky = backtest(&model.model_id).await.unwrap_err();
    assert_eq!(leaky.code(), tonic::Code::FailedPrecondition, "{leaky:?}");

    // Prospect fit learns from the same base's first terms.
    prospects::judged_by_first_terms(&mut app, &config, dir.path()).await;
    pipeline_shows_health_as_health_scored_it(&app).await;
    app.stop().await;
}

/// Renewals' copy of each account's health follows health's changes (a
/// thousand accounts a refresh): each open renewal shows its account's
/// latest score, its band both as the enum and as the word older callers
/// read.
async fn pipeline_shows_health_as_health_scored_it(app: &TestStack) {
    use tenure_proto::common::v1::Band;
    let mismatch = || async {
        let opportunities = app
            .renewals
            .clone()
            .list_renewal_pipeline(rpb::ListRenewalPipelineRequest {
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .opportunities;
        let mut ids: Vec<String> = opportunities.iter().map(|o| o.account_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let scores: HashMap<String, (f64, Band)> = app
            .health
            .clone()
            .batch_get_health(hpb::BatchGetHealthRequest { account_ids: ids })
            .await
            .unwrap()
            .into_inner()
            .scores
            .into_iter()
            .map(|s| (s.account_id.clone(), (s.score, s.band())))
            .collect();
        // Health may still be scoring the base it was just given.
        if scores.len() < 100 {
            return Some(format!(
                "{} of the pipeline's accounts scored",
                scores.len()
            ));
        }
        opportunities
            .into_iter()
            .find(|o| {
                let health = scores.get(&o.account_id).copied();
                let shown = (o.health_score, o.band());
                health.unwrap_or((0.0, Band::Unspecified)) != shown
                    || o.band().word().unwrap_or("") != o.health_band
            })
            .map(|o| format!("{o:?}"))
    };
    let current = tenure_tests::eventually(std::time::Duration::from_secs(60), || async {
        mismatch().await.is_none().then_some(())
    })
    .await;
    assert!(current.is_some(), "{:?}", mismatch().await);
}
