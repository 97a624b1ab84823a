//! `tenure train`: starts churn-model training on the health service,
//! waits for it and prints the report.

use std::fmt::Write as _;
use std::time::Duration;

use chrono::NaiveDate;

use tenure_platform::auth::Credentials;
use tenure_platform::client::{TracedChannel, channel};
use tenure_proto::health::v1 as pb;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;

/// What to train: signals `horizon_days` before each renewal, the L2
/// strength, and (for backtests) only outcomes decided by `as_of`.
pub fn request(horizon_days: i32, l2: f64, as_of: Option<NaiveDate>) -> pb::TrainChurnModelRequest {
    pb::TrainChurnModelRequest {
        request_id: String::new(),
        horizon_days,
        l2,
        as_of: as_of.map(tenure_platform::time::to_date),
    }
}

/// Trains a model; with `wait`, polls until it is ready and returns the report.
pub async fn train(
    health_url: &str,
    credentials: &Credentials,
    request: pb::TrainChurnModelRequest,
    wait: bool,
) -> anyhow::Result<String> {
    let mut health = HealthServiceClient::new(channel(health_url, credentials)?);
    let model = if wait {
        train_and_wait(&mut health, request).await?
    } else {
        start(&mut health, request).await?
    };
    Ok(render(&model))
}

/// Starts training and waits until the model is ready or has failed.
pub async fn train_and_wait(
    health: &mut HealthServiceClient<TracedChannel>,
    request: pb::TrainChurnModelRequest,
) -> anyhow::Result<pb::ChurnModel> {
    let mut model = start(health, request).await?;
    while model.status() == pb::ModelStatus::Running {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let request = pb::GetChurnModelRequest {
            model_id: model.model_id.clone(),
        };
        model = health
            .get_churn_model(request)
            .await?
            .into_inner()
            .model
            .unwrap_or_default();
    }
    Ok(model)
}

async fn start(
    health: &mut HealthServiceClient<TracedChannel>,
    request: pb::TrainChurnModelRequest,
) -> anyhow::Result<pb::ChurnModel> {
    Ok(health
        .train_churn_model(request)
        .await?
        .into_inner()
        .model
        .unwrap_or_default())
}

/// The report of a model as a table.
pub fn render(model: &pb::ChurnModel) -> String {
    let mut out = String::new();
    let fit = if model.converged {
        format!("converged in {} iterations", model.iterations)
    } else {
        format!("NOT converged after {} iterations", model.iterations)
    };
    let _ = writeln!(
        out,
        "model {} {:?}: horizon {} days, {} outcomes ({} churned{}), L2 {}, {fit} (gradient norm < {:e})",
        model.model_id,
        model.status(),
        model.horizon_days,
        model.example_count,
        model.churn_count,
        model.as_of.as_ref().map_or(String::new(), |d| format!(
            ", decided by {:04}-{:02}-{:02}",
            d.year, d.month, d.day
        )),
        model.l2,
        model.tolerance,
    );
    if !model.error.is_empty() {
        let _ = writeln!(out, "error: {}", model.error);
    }
    if let (Some(auc), Some(brier)) = (model.cv_auc, model.cv_brier) {
        let _ = writeln!(
            out,
            "cross-validated (folds grouped by account) AUC {auc:.3}, Brier score {brier:.3}"
        );
    }
    if !model.signals.is_empty() {
        let _ = writeln!(
            out,
            "{:<36} {:>11} {:>10} {:>7} {:>9}",
            "SIGNAL", "COEFFICIENT", "ODDS RATIO", "LIFT", "WEIGHT %"
        );
    }
    for s in &model.signals {
        let lift = s
            .lift
            .map(|l| format!("{l:.2}"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            out,
            "{:<36} {:>11.3} {:>10.3} {:>7} {:>9.1}",
            s.feature, s.coefficient, s.odds_ratio, lift, s.suggested_weight
        );
    }
    out
}

/// Waits until a prospect-fit model is ready or has failed.
pub async fn wait_for_prospect_model(
    health: &mut HealthServiceClient<TracedChannel>,
    mut model: pb::ProspectModel,
) -> anyhow::Result<pb::ProspectModel> {
    while model.status() == pb::ModelStatus::Running {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let request = pb::GetProspectModelRequest {
            model_id: model.model_id.clone(),
        };
        model = health
            .get_prospect_model(request)
            .await?
            .into_inner()
            .model
            .unwrap_or_default();
    }
    Ok(model)
}
