//! Churn models: training, reading, predicting and backtesting scorecards.

use super::*;

impl HealthApi {
    pub(super) async fn train_churn_model(
        &self,
        request: pb::TrainChurnModelRequest,
    ) -> ApiResult<pb::TrainChurnModelResponse> {
        const METHOD: &str = "TrainChurnModel";
        let mut violations = Violations::default();
        violations.check(
            (0..=3650).contains(&request.horizon_days),
            "horizon_days",
            "must be 0-3650 (0: 90)",
        );
        violations.check(
            request.l2.is_finite() && request.l2 >= 0.0,
            "l2",
            "must be a finite number, not negative",
        );
        let as_of = request
            .as_of
            .as_ref()
            .and_then(|d| time::date(Some(d), "as_of", &mut violations));
        violations.into_result()?;
        let horizon = if request.horizon_days == 0 {
            90
        } else {
            request.horizon_days
        };
        let l2 = if request.l2 == 0.0 { 0.01 } else { request.l2 };
        idempotency::once(
            &self.pool,
            SCHEMA,
            METHOD,
            &request,
            // The model row commits with the key: a retry finds the run
            // it started, never starts a second one.
            async |tx| {
                let model = self.trainer.start(tx, horizon, l2, as_of).await?;
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
            model: Some(self.trainer.get(model_id).await?),
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
        self.trainer.backtest(&card, horizon).await
    }

    pub(super) async fn predict_churn(
        &self,
        request: pb::PredictChurnRequest,
    ) -> ApiResult<pb::PredictChurnResponse> {
        let mut violations = Violations::default();
        violations.require_text(&request.account_id, "account_id", MAX_ID);
        let as_of = request
            .as_of
            .as_ref()
            .and_then(|d| time::date(Some(d), "as_of", &mut violations));
        let model_id = match request.model_id.as_str() {
            "" => None,
            id => {
                let parsed = uuid::Uuid::parse_str(id).ok();
                violations.check(parsed.is_some(), "model_id", "is not a model id");
                parsed
            }
        };
        violations.into_result()?;
        self.trainer
            .predict(&request.account_id, as_of, model_id)
            .await
    }
}
