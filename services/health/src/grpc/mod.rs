//! The gRPC edge of health: the service trait maps each call to a method
//! of [`HealthApi`], grouped by capability: notices from ingestion
//! ([`notices`]), scorecards and scores ([`scores`]), lists and the
//! distribution ([`lists`]), churn models ([`models`]), maturity models
//! ([`maturity`]).

mod lists;
mod maturity;
mod models;
mod notices;
mod prospects;
mod scores;

use sqlx::PgPool;
use tenure_platform::client::TracedChannel;
use tenure_platform::input::{self, Id, Window};
use tenure_platform::wake::Wakeups;
use tenure_platform::{ApiError, ApiResult, Violations, idempotency, time};
use tenure_proto::health::v1::{self as pb, health_service_server::HealthService};
use tenure_proto::ingestion::v1::GetAccountRequest;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tonic::{Request, Response, Status};

use crate::scoring::Scorer;
use crate::{SCHEMA, cards, queue, store};

const MAX_ID: usize = 128;
const MAX_ACCOUNTS_PER_NOTICE: usize = 100_000;

/// The account ids of a batch call, checked (into `violations`), sorted
/// and each once.
fn account_batch(ids: Vec<String>, violations: &mut Violations) -> Vec<String> {
    tenure_platform::batch::ids(ids, "account_ids", MAX_ID, violations)
}

pub struct HealthApi {
    pool: PgPool,
    ingestion: IngestionServiceClient<TracedChannel>,
    scorer: Scorer,
    wakeups: Wakeups,
    trainer: crate::training::Trainer,
    rollup: store::Rollup,
}

impl HealthApi {
    pub fn new(
        pool: PgPool,
        ingestion: IngestionServiceClient<TracedChannel>,
        scorer: Scorer,
        trainer: crate::training::Trainer,
        rollup: store::Rollup,
        wakeups: Wakeups,
    ) -> Self {
        Self {
            pool,
            ingestion,
            scorer,
            trainer,
            rollup,
            wakeups,
        }
    }
}

#[tonic::async_trait]
impl HealthService for HealthApi {
    async fn notify_account_erased(
        &self,
        request: Request<pb::NotifyAccountErasedRequest>,
    ) -> Result<Response<pb::NotifyAccountErasedResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(
            tenure_platform::erase::notify_account_erased(
                &self.pool,
                crate::SCHEMA,
                &request,
                &request.account_id,
                &[],
                |rows_changed| pb::NotifyAccountErasedResponse { rows_changed },
            )
            .await?,
        ))
    }

    async fn notify_accounts_changed(
        &self,
        request: Request<pb::NotifyAccountsChangedRequest>,
    ) -> Result<Response<pb::NotifyAccountsChangedResponse>, Status> {
        Ok(Response::new(
            self.notify_accounts_changed(request.into_inner()).await?,
        ))
    }

    async fn get_account_health(
        &self,
        request: Request<pb::GetAccountHealthRequest>,
    ) -> Result<Response<pb::GetAccountHealthResponse>, Status> {
        Ok(Response::new(
            self.get_account_health(request.into_inner()).await?,
        ))
    }

    async fn create_scorecard(
        &self,
        request: Request<pb::CreateScorecardRequest>,
    ) -> Result<Response<pb::CreateScorecardResponse>, Status> {
        Ok(Response::new(
            self.create_scorecard(request.into_inner()).await?,
        ))
    }

    async fn get_scorecard(
        &self,
        request: Request<pb::GetScorecardRequest>,
    ) -> Result<Response<pb::GetScorecardResponse>, Status> {
        Ok(Response::new(
            self.get_scorecard(request.into_inner()).await?,
        ))
    }

    async fn list_scorecards(
        &self,
        request: Request<pb::ListScorecardsRequest>,
    ) -> Result<Response<pb::ListScorecardsResponse>, Status> {
        Ok(Response::new(
            self.list_scorecards(request.into_inner()).await?,
        ))
    }

    async fn recompute_health(
        &self,
        request: Request<pb::RecomputeHealthRequest>,
    ) -> Result<Response<pb::RecomputeHealthResponse>, Status> {
        Ok(Response::new(
            self.recompute_health(request.into_inner()).await?,
        ))
    }

    async fn get_health(
        &self,
        request: Request<pb::GetHealthRequest>,
    ) -> Result<Response<pb::GetHealthResponse>, Status> {
        Ok(Response::new(self.get_health(request.into_inner()).await?))
    }

    async fn get_health_history(
        &self,
        request: Request<pb::GetHealthHistoryRequest>,
    ) -> Result<Response<pb::GetHealthHistoryResponse>, Status> {
        Ok(Response::new(
            self.get_health_history(request.into_inner()).await?,
        ))
    }

    async fn list_account_health(
        &self,
        request: Request<pb::ListAccountHealthRequest>,
    ) -> Result<Response<pb::ListAccountHealthResponse>, Status> {
        Ok(Response::new(
            self.list_account_health(request.into_inner()).await?,
        ))
    }

    async fn get_health_distribution(
        &self,
        request: Request<pb::GetHealthDistributionRequest>,
    ) -> Result<Response<pb::GetHealthDistributionResponse>, Status> {
        Ok(Response::new(
            self.get_health_distribution(request.into_inner()).await?,
        ))
    }

    async fn train_churn_model(
        &self,
        request: Request<pb::TrainChurnModelRequest>,
    ) -> Result<Response<pb::TrainChurnModelResponse>, Status> {
        Ok(Response::new(
            self.train_churn_model(request.into_inner()).await?,
        ))
    }

    async fn get_churn_model(
        &self,
        request: Request<pb::GetChurnModelRequest>,
    ) -> Result<Response<pb::GetChurnModelResponse>, Status> {
        Ok(Response::new(
            self.get_churn_model(request.into_inner()).await?,
        ))
    }

    async fn predict_churn(
        &self,
        request: Request<pb::PredictChurnRequest>,
    ) -> Result<Response<pb::PredictChurnResponse>, Status> {
        Ok(Response::new(
            self.predict_churn(request.into_inner()).await?,
        ))
    }

    async fn backtest_scorecard(
        &self,
        request: Request<pb::BacktestScorecardRequest>,
    ) -> Result<Response<pb::BacktestScorecardResponse>, Status> {
        Ok(Response::new(
            self.backtest_scorecard(request.into_inner()).await?,
        ))
    }

    type WatchHealthChangesStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::WatchHealthChangesResponse, Status>>;

    async fn watch_health_changes(
        &self,
        request: Request<pb::WatchHealthChangesRequest>,
    ) -> Result<Response<Self::WatchHealthChangesStream>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        violations.limit_text(&request.segment, "segment", MAX_ID);
        violations.limit_text(&request.owner, "owner", MAX_ID);
        violations.into_result()?;
        Ok(Response::new(
            crate::watch::watch(self.pool.clone(), &self.wakeups, request).await?,
        ))
    }

    async fn record_assessment(
        &self,
        request: Request<pb::RecordAssessmentRequest>,
    ) -> Result<Response<pb::RecordAssessmentResponse>, Status> {
        Ok(Response::new(
            self.record_assessment(request.into_inner()).await?,
        ))
    }

    async fn create_maturity_model(
        &self,
        request: Request<pb::CreateMaturityModelRequest>,
    ) -> Result<Response<pb::CreateMaturityModelResponse>, Status> {
        Ok(Response::new(
            self.create_maturity_model(request.into_inner()).await?,
        ))
    }

    async fn get_maturity_model(
        &self,
        request: Request<pb::GetMaturityModelRequest>,
    ) -> Result<Response<pb::GetMaturityModelResponse>, Status> {
        Ok(Response::new(
            self.get_maturity_model(request.into_inner()).await?,
        ))
    }

    async fn list_maturity_models(
        &self,
        request: Request<pb::ListMaturityModelsRequest>,
    ) -> Result<Response<pb::ListMaturityModelsResponse>, Status> {
        Ok(Response::new(
            self.list_maturity_models(request.into_inner()).await?,
        ))
    }

    async fn get_account_maturity(
        &self,
        request: Request<pb::GetAccountMaturityRequest>,
    ) -> Result<Response<pb::GetAccountMaturityResponse>, Status> {
        Ok(Response::new(
            self.get_account_maturity(request.into_inner()).await?,
        ))
    }

    async fn get_maturity_history(
        &self,
        request: Request<pb::GetMaturityHistoryRequest>,
    ) -> Result<Response<pb::GetMaturityHistoryResponse>, Status> {
        Ok(Response::new(
            self.get_maturity_history(request.into_inner()).await?,
        ))
    }

    async fn get_maturity_distribution(
        &self,
        request: Request<pb::GetMaturityDistributionRequest>,
    ) -> Result<Response<pb::GetMaturityDistributionResponse>, Status> {
        Ok(Response::new(
            self.get_maturity_distribution(request.into_inner()).await?,
        ))
    }

    async fn train_prospect_model(
        &self,
        request: Request<pb::TrainProspectModelRequest>,
    ) -> Result<Response<pb::TrainProspectModelResponse>, Status> {
        Ok(Response::new(
            self.train_prospect_model(request.into_inner()).await?,
        ))
    }

    async fn get_prospect_model(
        &self,
        request: Request<pb::GetProspectModelRequest>,
    ) -> Result<Response<pb::GetProspectModelResponse>, Status> {
        Ok(Response::new(
            self.get_prospect_model(request.into_inner()).await?,
        ))
    }

    async fn batch_get_health(
        &self,
        request: Request<pb::BatchGetHealthRequest>,
    ) -> Result<Response<pb::BatchGetHealthResponse>, Status> {
        Ok(Response::new(
            self.batch_get_health(request.into_inner()).await?,
        ))
    }

    async fn batch_predict_churn(
        &self,
        request: Request<pb::BatchPredictChurnRequest>,
    ) -> Result<Response<pb::BatchPredictChurnResponse>, Status> {
        Ok(Response::new(
            self.batch_predict_churn(request.into_inner()).await?,
        ))
    }

    async fn score_prospects(
        &self,
        request: Request<pb::ScoreProspectsRequest>,
    ) -> Result<Response<pb::ScoreProspectsResponse>, Status> {
        Ok(Response::new(
            self.score_prospects(request.into_inner()).await?,
        ))
    }
}
