//! Churn models: training, reading, predicting and backtesting scorecards.

use super::*;
use crate::training;

/// A training request's settings, defaults applied: its days (0: 90,
/// else within the range), its L2 penalty (0: 0.01) and its as-of day.
pub(super) fn training_settings(
    (field, days, range): (&str, i32, std::ops::RangeInclusive<i32>),
    l2: f64,
    as_of: Option<&tenure_proto::common::v1::Date>,
) -> ApiResult<(i32, f64, Option<chrono::NaiveDate>)> {
    let mut violations = Violations::default();
    violations.check(
        days == 0 || range.contains(&days),
        field,
        format!("must be {}-{} (0: 90)", range.start(), range.end()),
    );
    violations.check(
        l2.is_finite() && l2 >= 0.0,
        "l2",
        "must be a finite number, not negative",
    );
    let as_of = as_of.and_then(|d| time::date(Some(d), "as_of", &mut violations));
    violations.into_result()?;
    let days = if days == 0 { 90 } else { days };
    let l2 = if l2 == 0.0 { 0.01 } else { l2 };
    Ok((days, l2, as_of))
}

impl HealthApi {
    pub(super) async fn train_churn_model(
        &self,
        request: pb::TrainChurnModelRequest,
    ) -> ApiResult<pb::TrainChurnModelResponse> {
        const METHOD: &str = "TrainChurnModel";
        let (horizon, l2, as_of) = training_settings(
            ("horizon_days", request.horizon_days, 1..=3650),
            request.l2,
            request.as_of.as_ref(),
        )?;
        idempotency::once(
            &self.pool,
            SCHEMA,
            METHOD,
            &request,
            // The model row commits with the key: a retry finds the run
            // it started, never starts a second one.
            async |tx| {
                let model = training::churn::start(&self.trainer, tx, horizon, l2, as_of).await?;
                Ok(pb::TrainChurnModelResponse { model: Some(model) })
            },
        )
        .await
    }

    pub(super) async fn get_churn_model(
        &self,
        request: pb::GetChurnModelRequest,
    ) -> ApiResult<pb::GetChurnModelResponse> {
        let model_id = match request.model_id.as_str() {
            "" => None,
            id => Some(
                uuid::Uuid::parse_str(id)
                    .map_err(|_| ApiError::invalid("model_id", "is not a model id"))?,
            ),
        };
        Ok(pb::GetChurnModelResponse {
            model: Some(training::churn::get(&self.trainer, model_id).await?),
        })
    }

    pub(super) async fn backtest_scorecard(
        &self,
        request: pb::BacktestScorecardRequest,
    ) -> ApiResult<pb::BacktestScorecardResponse> {
        let mut violations = Violations::default();
        violations.require_text(&request.name, "name", MAX_ID);
        violations.check(request.version >= 0, "version", "must not be negative");
        violations.check(
            (0..=3650).contains(&request.horizon_days),
            "horizon_days",
            "must be 0-3650 (0: 90)",
        );
        violations.into_result()?;
        let version = (request.version > 0).then_some(request.version);
        let card = store::scorecard(&self.pool, &request.name, version)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("scorecard {}", request.name)))?;
        let horizon = if request.horizon_days == 0 {
            90
        } else {
            request.horizon_days
        };
        training::churn::backtest(&self.trainer, &card, horizon).await
    }

    pub(super) async fn predict_churn(
        &self,
        request: pb::PredictChurnRequest,
    ) -> ApiResult<pb::PredictChurnResponse> {
        let mut violations = Violations::default();
        violations.parse::<Id, _>("account_id", &request.account_id);
        let (as_of, model_id) = prediction_settings(request.as_of, &request.model_id, violations)?;
        let mut predicted = training::churn::predict(
            &self.trainer,
            std::slice::from_ref(&request.account_id),
            as_of,
            model_id,
        )
        .await?;
        let prediction = predicted
            .predictions
            .pop()
            .ok_or_else(|| ApiError::NotFound(format!("account {}", request.account_id)))?;
        Ok(pb::PredictChurnResponse {
            model_id: predicted.model_id,
            churn_probability: prediction.churn_probability,
            top_signals: prediction.top_signals,
        })
    }

    pub(super) async fn batch_predict_churn(
        &self,
        request: pb::BatchPredictChurnRequest,
    ) -> ApiResult<pb::BatchPredictChurnResponse> {
        let mut violations = Violations::default();
        let ids = account_batch(request.account_ids, &mut violations);
        let (as_of, model_id) = prediction_settings(request.as_of, &request.model_id, violations)?;
        training::churn::predict(&self.trainer, &ids, as_of, model_id).await
    }
}

/// The day and model of a prediction request (today's signals and the
/// latest ready model when unset).
fn prediction_settings(
    as_of: Option<tenure_proto::common::v1::Date>,
    model_id: &str,
    mut violations: Violations,
) -> ApiResult<(Option<chrono::NaiveDate>, Option<uuid::Uuid>)> {
    let as_of = as_of
        .as_ref()
        .and_then(|d| time::date(Some(d), "as_of", &mut violations));
    let model_id = match model_id {
        "" => None,
        id => {
            let parsed = uuid::Uuid::parse_str(id).ok();
            violations.check(parsed.is_some(), "model_id", "is not a model id");
            parsed
        }
    };
    violations.into_result()?;
    Ok((as_of, model_id))
}
