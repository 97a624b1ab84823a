//! Learned models, trained in the background: churn models ([`churn`]) and
//! prospect fit ([`prospect`]). They share one table and one life
//! cycle: recorded RUNNING with the request that asked for them, trained
//! once that request's transaction commits, then READY or FAILED; a restart
//! fails those it interrupted. Examples read signals from ingestion as of
//! past days, so nothing from after them leaks into training.

pub mod churn;
pub mod pasts;
pub mod prospect;

use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use tenure_platform::client::TracedChannel;
use tenure_platform::{ApiError, ApiResult};
use tenure_proto::health::v1 as pb;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::model::{self, Example, Model};
use pasts::{GrpcPasts, Pasts};

/// Fewest examples worth fitting.
pub(crate) const MIN_EXAMPLES: usize = 10;

#[derive(Clone)]
pub struct Trainer {
    pub(crate) pool: PgPool,
    /// Signals of today's accounts, streamed for predictions.
    pub(crate) ingestion: IngestionServiceClient<TracedChannel>,
    /// The past that examples are made of.
    pub(crate) pasts: Arc<dyn Pasts>,
}

impl Trainer {
    pub fn new(
        pool: PgPool,
        ingestion: IngestionServiceClient<TracedChannel>,
        renewals: RenewalsServiceClient<TracedChannel>,
    ) -> Self {
        Self {
            pool,
            pasts: Arc::new(GrpcPasts {
                ingestion: ingestion.clone(),
                renewals,
            }),
            ingestion,
        }
    }

    /// Models left RUNNING by a process that stopped will never finish.
    pub async fn fail_interrupted(&self) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE health.churn_models SET status = $1, error = 'interrupted by a restart', finish_time = now() \
             WHERE status = $2",
        )
        .bind(pb::ModelStatus::Failed as i16)
        .bind(pb::ModelStatus::Running as i16)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a RUNNING model of `kind` in the caller's transaction and
    /// trains it in the background once that transaction has committed.
    /// `horizon_days` is the churn model's horizon, or prospect fit's look.
    pub async fn start_job(
        &self,
        tx: &mut sqlx::PgConnection,
        kind: ModelKind,
        horizon_days: i32,
        l2: f64,
        as_of: Option<NaiveDate>,
    ) -> ApiResult<(Uuid, chrono::DateTime<Utc>)> {
        let model_id = Uuid::now_v7();
        let created: chrono::DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO health.churn_models (model_id, kind, status, horizon_days, l2, as_of) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING create_time",
        )
        .bind(model_id)
        .bind(kind as i16)
        .bind(pb::ModelStatus::Running as i16)
        .bind(horizon_days)
        .bind(l2)
        .bind(as_of)
        .fetch_one(&mut *tx)
        .await?;
        let trainer = self.clone();
        tokio::spawn(
            async move {
                if !trainer.committed(model_id).await {
                    tracing::warn!(%model_id, "the model was not recorded; not trained");
                    return;
                }
                let outcome = match kind {
                    ModelKind::Churn => churn::train(&trainer, model_id, horizon_days, l2, as_of)
                        .await
                        .and_then(|(model, report)| Trained::new(&model, &report)),
                    ModelKind::Prospect => {
                        prospect::train(&trainer, model_id, horizon_days, l2, as_of)
                            .await
                            .and_then(|(model, report)| Trained::new(&model, &report))
                    }
                };
                if let Err(error) = trainer.finish(model_id, outcome).await {
                    tracing::error!(%model_id, error = %error, "storing a trained model failed");
                }
            }
            .instrument(tracing::info_span!("train_model", %model_id, kind = ?kind)),
        );
        Ok((model_id, created))
    }

    /// Whether the model's row has become visible: its transaction
    /// committed. Gives up after half a minute (rolled back, or gone).
    async fn committed(&self, model_id: Uuid) -> bool {
        for _ in 0..600 {
            let found: Result<Option<i32>, _> =
                sqlx::query_scalar("SELECT 1 FROM health.churn_models WHERE model_id = $1")
                    .bind(model_id)
                    .fetch_optional(&self.pool)
                    .await;
            if matches!(found, Ok(Some(_))) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        false
    }

    async fn finish(&self, model_id: Uuid, outcome: anyhow::Result<Trained>) -> sqlx::Result<()> {
        match outcome {
            Ok(trained) => {
                tracing::info!(%model_id, "model trained");
                sqlx::query(
                    "UPDATE health.churn_models SET status = $2, model = $3, report = $4, finish_time = now() \
                     WHERE model_id = $1",
                )
                .bind(model_id)
                .bind(pb::ModelStatus::Ready as i16)
                .bind(trained.model)
                .bind(trained.report)
                .execute(&self.pool)
                .await?;
            }
            Err(error) => {
                tracing::warn!(%model_id, error = %format!("{error:#}"), "model training failed");
                sqlx::query(
                    "UPDATE health.churn_models SET status = $2, error = $3, finish_time = now() WHERE model_id = $1",
                )
                .bind(model_id)
                .bind(pb::ModelStatus::Failed as i16)
                .bind(format!("{error:#}"))
                .execute(&self.pool)
                .await?;
            }
        }
        Ok(())
    }

    /// A model of `kind` by id, or the latest ready one, as stored.
    pub(crate) async fn stored(
        &self,
        kind: ModelKind,
        model_id: Option<Uuid>,
    ) -> ApiResult<StoredModel> {
        let row: Option<StoredModel> = sqlx::query_as(
            "SELECT model_id, status, horizon_days, l2, report, error, create_time, finish_time, as_of \
             FROM health.churn_models \
             WHERE kind = $3 AND (($1::uuid IS NULL AND status = $2) OR model_id = $1) \
             ORDER BY create_time DESC LIMIT 1",
        )
        .bind(model_id)
        .bind(pb::ModelStatus::Ready as i16)
        .bind(kind as i16)
        .fetch_optional(&self.pool)
        .await?;
        row.ok_or_else(|| ApiError::NotFound(format!("{} model", kind.name())))
    }

    /// The ready model of `kind` (by id, or the latest) with what it learned.
    pub(crate) async fn ready<T: serde::de::DeserializeOwned + Send + Unpin + 'static>(
        &self,
        kind: ModelKind,
        model_id: Option<Uuid>,
    ) -> ApiResult<(Uuid, T)> {
        let row: Option<(Uuid, Json<T>)> = sqlx::query_as(
            "SELECT model_id, model FROM health.churn_models \
             WHERE kind = $3 AND status = $1 AND ($2::uuid IS NULL OR model_id = $2) \
             ORDER BY create_time DESC LIMIT 1",
        )
        .bind(pb::ModelStatus::Ready as i16)
        .bind(model_id)
        .bind(kind as i16)
        .fetch_optional(&self.pool)
        .await?;
        let (model_id, Json(model)) = row.ok_or_else(|| match model_id {
            Some(id) => ApiError::NotFound(format!("ready {} model {id}", kind.name())),
            None => {
                ApiError::FailedPrecondition(format!("no {} model is trained yet", kind.name()))
            }
        })?;
        Ok((model_id, model))
    }
}

/// What a learned model is for; models of every kind share one table and
/// one life cycle (running, then ready or failed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i16)]
pub enum ModelKind {
    Churn = 1,
    Prospect = 2,
}

impl ModelKind {
    fn name(self) -> &'static str {
        match self {
            ModelKind::Churn => "churn",
            ModelKind::Prospect => "prospect",
        }
    }
}

/// A trained model and its report, ready to store.
struct Trained {
    model: serde_json::Value,
    report: Vec<u8>,
}

impl Trained {
    fn new(model: &impl serde::Serialize, report: &impl prost::Message) -> anyhow::Result<Self> {
        Ok(Self {
            model: serde_json::to_value(model)?,
            report: report.encode_to_vec(),
        })
    }
}

/// A model's row, whatever its kind.
#[derive(sqlx::FromRow)]
pub(crate) struct StoredModel {
    pub(crate) model_id: Uuid,
    pub(crate) status: i16,
    pub(crate) horizon_days: i32,
    pub(crate) l2: f64,
    report: Option<Vec<u8>>,
    pub(crate) error: String,
    pub(crate) create_time: chrono::DateTime<Utc>,
    pub(crate) finish_time: Option<chrono::DateTime<Utc>>,
    pub(crate) as_of: Option<NaiveDate>,
}

impl StoredModel {
    /// The stored report; empty while running or after a failure.
    pub(crate) fn report<R: prost::Message + Default>(&self) -> ApiResult<R> {
        match &self.report {
            Some(bytes) => {
                Ok(R::decode(bytes.as_slice())
                    .map_err(|e| anyhow::anyhow!("stored report: {e}"))?)
            }
            None => Ok(R::default()),
        }
    }
}

/// What a model learned of each feature, largest coefficient first.
pub(crate) fn signal_weights(model: &Model, examples: &[Example]) -> Vec<pb::SignalWeight> {
    let lift = model::univariate_lift(model, examples);
    let names = model.encoding.feature_names();
    let numeric: usize = model.encoding.numbers.len();
    let magnitude: f64 = model.coefficients[..numeric].iter().map(|c| c.abs()).sum();
    let mut weights: Vec<pb::SignalWeight> = names
        .into_iter()
        .enumerate()
        .map(|(j, feature)| pb::SignalWeight {
            feature,
            coefficient: model.coefficients[j],
            odds_ratio: model.coefficients[j].exp(),
            lift: lift[j],
            suggested_weight: if j < numeric && magnitude > 0.0 {
                model.coefficients[j].abs() / magnitude * 100.0
            } else {
                0.0
            },
        })
        .collect();
    weights.sort_by(|a, b| b.coefficient.abs().total_cmp(&a.coefficient.abs()));
    weights
}
