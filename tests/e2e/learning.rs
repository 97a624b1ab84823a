//! The churn model learned from renewal outcomes over real services.

use std::time::Duration;

use tenure_platform::time::to_date;
use tenure_proto::health::v1 as hpb;
use tenure_proto::ingestion::v1 as pb;
use tenure_proto::renewals::v1 as rpb;
use tenure_tests::{TestStack, eventually, violated_fields};

use crate::fixtures::*;
use crate::ingestion::account;

const ACCOUNTS: usize = 40;

/// Even accounts churn and had open P1 tickets 100 days before their term
/// end; one renewer in ten had them too. Every churner also got a layoffs
/// signal 40 days before its term end, after a 90-day horizon's snapshot.
async fn generate(app: &mut TestStack) {
    let ids: Vec<String> = (0..ACCOUNTS).map(|i| format!("m{i:02}")).collect();
    let accounts = ids.iter().map(|id| account(id, id, 400)).collect();
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
        })
        .await
        .unwrap();
    let mut tickets = Vec::new();
    let mut signals = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let churns = i % 2 == 0;
        if churns || i % 10 == 1 {
            for t in 0..2 {
                tickets.push(ticket(
                    &format!("{id}-t{t}"),
                    id,
                    pb::TicketPriority::P1,
                    pb::TicketCategory::Defect,
                    days_ago(130),
                    Some(days_ago(30)),
                ));
            }
        }
        if churns {
            signals.push(pb::ExternalSignal {
                signal_id: format!("{id}-layoffs"),
                account_id: id.clone(),
                kind: pb::ExternalSignalKind::Layoffs as i32,
                occurred_at: ts(days_ago(50)),
                source: "news".into(),
                properties: None,
                updated_at: ts(days_ago(50)),
            });
        }
    }
    app.ingestion
        .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
            request_id: String::new(),
            tickets,
        })
        .await
        .unwrap();
    app.ingestion
        .batch_upsert_external_signals(pb::BatchUpsertExternalSignalsRequest {
            request_id: String::new(),
            signals,
        })
        .await
        .unwrap();
    let terms: Vec<(String, String, chrono::NaiveDate)> = ids
        .iter()
        .map(|id| (format!("{id}-sub"), id.clone(), today_minus(10)))
        .collect();
    past_terms_in(app, None, "USD", &terms).await;
    for (i, id) in ids.iter().enumerate() {
        let churns = i % 2 == 0;
        let outcome = rpb::RenewalOutcome {
            account_id: id.clone(),
            subscription_id: format!("{id}-sub"),
            term_end_date: Some(to_date(today_minus(10))),
            kind: if churns {
                rpb::OutcomeKind::Churned
            } else {
                rpb::OutcomeKind::Renewed
            } as i32,
            previous_arr: usd(10_000 * 100),
            new_arr: usd(if churns { 0 } else { 10_000 * 100 }),
            churn_reason: if churns {
                rpb::ChurnReason::Support
            } else {
                rpb::ChurnReason::Unspecified
            } as i32,
            decided_on: Some(to_date(today_minus(5))),
            ..Default::default()
        };
        app.renewals
            .record_renewal_outcome(rpb::RecordRenewalOutcomeRequest {
                request_id: String::new(),
                outcome: Some(outcome),
            })
            .await
            .unwrap();
    }
}

async fn train(app: &mut TestStack, horizon_days: i32) -> hpb::ChurnModel {
    let started = app
        .health
        .train_churn_model(hpb::TrainChurnModelRequest {
            request_id: String::new(),
            horizon_days,
            l2: 0.0,
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    assert_eq!(started.status(), hpb::ModelStatus::Running);
    let health = app.health.clone();
    eventually(Duration::from_secs(60), || {
        let mut health = health.clone();
        let model_id = started.model_id.clone();
        async move {
            let model = health
                .get_churn_model(hpb::GetChurnModelRequest { model_id })
                .await
                .ok()?
                .into_inner()
                .model?;
            (model.status() != hpb::ModelStatus::Running).then_some(model)
        }
    })
    .await
    .expect("training finishes")
}

#[tokio::test]
async fn learns_the_hidden_driver_without_seeing_past_the_horizon() {
    let mut app = TestStack::spawn().await;
    generate(&mut app).await;
    // An outcome of an account ingestion never knew, due the same day as
    // the others (recorded before outcomes were checked against ingestion's
    // subscriptions, so written here behind the API): the signals of that
    // day are read together, and the unknown account is left out without
    // losing the rest.
    let db = app.db().await;
    sqlx::query(
        "INSERT INTO renewals.outcomes (outcome_id, account_id, subscription_id, term_end_date, \
           kind, currency, previous_arr_minor, new_arr_minor, churn_reason, churn_note, decided_on) \
         VALUES (gen_random_uuid(), 'ghost', 'ghost-sub', $1, $2, 'USD', 1000000, 0, $3, '', $4)",
    )
    .bind(today_minus(10))
    .bind(rpb::OutcomeKind::Churned as i16)
    .bind(rpb::ChurnReason::Support as i16)
    .bind(today_minus(5))
    .execute(&db)
    .await
    .unwrap();

    let model = train(&mut app, 90).await;
    assert_eq!(model.status(), hpb::ModelStatus::Ready, "{}", model.error);
    assert_eq!(
        (model.example_count, model.churn_count),
        (ACCOUNTS as i32, ACCOUNTS as i32 / 2)
    );
    let window = model.training_window.unwrap();
    assert_eq!(window.start, Some(to_date(today_minus(10))));
    assert_eq!(window.end, Some(to_date(today_minus(9))));
    assert_eq!(
        model.signals[0].feature, "open_tickets_p1",
        "{:?}",
        model.signals
    );
    assert!(model.signals[0].coefficient > 0.0 && model.signals[0].odds_ratio > 1.0);
    let auc = model.cv_auc.unwrap();
    println!(
        "cross-validated AUC {auc:.3}, Brier {:.3}",
        model.cv_brier.unwrap()
    );
    assert!(auc > 0.75, "cross-validated AUC {auc}");
    assert!(
        !model
            .signals
            .iter()
            .any(|s| s.feature == "risk_signals_90d" && s.coefficient != 0.0),
        "layoffs after the snapshot must not be seen: {:?}",
        model.signals
    );

    // With a 30-day horizon the layoffs happened before the snapshot, and count.
    let later = train(&mut app, 30).await;
    let risk = later
        .signals
        .iter()
        .find(|s| s.feature == "risk_signals_90d")
        .expect("risk signals learned");
    assert!(risk.coefficient > 0.0);

    let latest = app
        .health
        .get_churn_model(hpb::GetChurnModelRequest::default())
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    assert_eq!(latest.model_id, later.model_id, "the latest ready model");
    let prediction = app
        .health
        .predict_churn(hpb::PredictChurnRequest {
            account_id: "m00".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(prediction.model_id, later.model_id);
    assert!((0.0..=1.0).contains(&prediction.churn_probability));

    // Many accounts from one stream of signals: the same probabilities, in
    // id order, each once, and the ids ingestion does not know named.
    let batch = app
        .health
        .batch_predict_churn(hpb::BatchPredictChurnRequest {
            account_ids: vec!["m01".into(), "ghost-x".into(), "m00".into(), "m01".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(batch.model_id, later.model_id);
    let ids: Vec<&str> = batch
        .predictions
        .iter()
        .map(|p| p.account_id.as_str())
        .collect();
    assert_eq!(ids, ["m00", "m01"]);
    assert_eq!(
        batch.predictions[0].churn_probability,
        prediction.churn_probability
    );
    assert_eq!(batch.predictions[0].top_signals, prediction.top_signals);
    assert_eq!(batch.missing_account_ids, ["ghost-x"]);
    let unknown = app
        .health
        .predict_churn(hpb::PredictChurnRequest {
            account_id: "ghost-x".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    let refused = app
        .health
        .batch_predict_churn(hpb::BatchPredictChurnRequest {
            account_ids: vec!["m00".into(), String::new()],
            model_id: "not-a-model".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&refused),
        ["account_ids[1]", "model_id"],
        "{refused:?}"
    );

    let report = tenure::model::train(
        &app.stack.peers.health_url,
        &app.operator(),
        tenure::model::request(90, 0.01, None),
        true,
    )
    .await
    .unwrap();
    let first_signal = report.lines().nth(3).unwrap_or_default();
    assert!(first_signal.starts_with("open_tickets_p1"), "{report}");
    app.stop().await;
}

/// A scorecard of one risk signal: none of it is best, 3 or more worst.
fn single_measure(name: &str, signal: &str) -> hpb::CreateScorecardRequest {
    crate::fixtures::single_measure_scorecard(name, signal, 3.0, 0.0)
}

#[tokio::test]
async fn backtests_tell_a_useful_scorecard_from_a_blind_one() {
    let mut app = TestStack::spawn().await;
    generate(&mut app).await;
    app.health
        .create_scorecard(single_measure("support", "open_tickets_p1"))
        .await
        .unwrap();
    app.health
        .create_scorecard(single_measure("news", "risk_signals_90d"))
        .await
        .unwrap();
    let backtest = |name: &str| hpb::BacktestScorecardRequest {
        name: name.into(),
        version: 0,
        horizon_days: 90,
    };

    let support = app
        .health
        .backtest_scorecard(backtest("support"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(support.example_count, ACCOUNTS as i32);
    // 16 clean renewers rank above all 20 churners; 4 renewers tie with them.
    assert_eq!(support.auc, Some(0.9), "{support:?}");
    assert!(
        support.surprise_churns.is_empty(),
        "every churner was red at the horizon"
    );
    let green = support
        .bands
        .iter()
        .find(|b| b.band() == tenure_proto::common::v1::Band::Green)
        .unwrap();
    assert_eq!(green.renewal_rate_pct, Some(100.0));

    // Layoffs came after the snapshot: a scorecard of them saw nothing coming.
    let news = app
        .health
        .backtest_scorecard(backtest("news"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(news.auc, Some(0.5));
    assert_eq!(news.surprise_churns.len(), ACCOUNTS / 2);
    app.stop().await;
}
