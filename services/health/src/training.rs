//! Training churn models in the background and serving their predictions.
//!
//! Examples are past renewal outcomes from renewals, each with the
//! account's signals from ingestion as they were `horizon_days` before its
//! term end: ingestion answers as of that day, so nothing from after it can
//! leak into training.

use std::collections::HashMap;

use chrono::{Days, NaiveDate, Utc};
use prost::Message as _;
use sqlx::PgPool;
use sqlx::types::Json;
use tenure_platform::client::TracedChannel;
use tenure_platform::{ApiError, ApiResult, time};
use tenure_proto::health::v1 as pb;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::ingestion::v1::{AccountSignals, GetAccountSignalsRequest};
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;
use tenure_proto::renewals::v1::{ListRenewalOutcomesRequest, OutcomeKind};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::model::{self, Example, FitOptions, Model};
use crate::signals;

/// Fewest examples worth fitting.
const MIN_EXAMPLES: usize = 10;

#[derive(Clone)]
pub struct Trainer {
    pool: PgPool,
    ingestion: IngestionServiceClient<TracedChannel>,
    renewals: RenewalsServiceClient<TracedChannel>,
}

impl Trainer {
    pub fn new(
        pool: PgPool,
        ingestion: IngestionServiceClient<TracedChannel>,
        renewals: RenewalsServiceClient<TracedChannel>,
    ) -> Self {
        Self {
            pool,
            ingestion,
            renewals,
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

    /// Records a RUNNING model in the caller's transaction and trains it in
    /// the background, on every outcome or on those decided by `as_of`,
    /// once that transaction has committed the model (never, if it rolls
    /// back).
    pub async fn start(
        &self,
        tx: &mut sqlx::PgConnection,
        horizon_days: i32,
        l2: f64,
        as_of: Option<NaiveDate>,
    ) -> ApiResult<pb::ChurnModel> {
        let model_id = Uuid::now_v7();
        let created: chrono::DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO health.churn_models (model_id, status, horizon_days, l2, as_of) \
             VALUES ($1, $2, $3, $4, $5) RETURNING create_time",
        )
        .bind(model_id)
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
                let outcome = trainer.train(model_id, horizon_days, l2, as_of).await;
                if let Err(error) = trainer.finish(model_id, outcome).await {
                    tracing::error!(%model_id, error = %error, "storing a trained model failed");
                }
            }
            .instrument(tracing::info_span!("train_churn_model", %model_id)),
        );
        Ok(pb::ChurnModel {
            model_id: model_id.to_string(),
            status: pb::ModelStatus::Running as i32,
            horizon_days,
            l2,
            create_time: Some(time::to_timestamp(created)),
            as_of: as_of.map(time::to_date),
            ..Default::default()
        })
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

    /// Past outcomes with the account's signals at the horizon: (account,
    /// term end, example).
    async fn examples(
        &self,
        horizon_days: i32,
        as_of: Option<NaiveDate>,
    ) -> anyhow::Result<Vec<(String, NaiveDate, Example)>> {
        let mut examples = Vec::new();
        let mut page_token = String::new();
        let today = Utc::now().date_naive();
        let known_on = as_of.map_or(today, |d| d.min(today));
        // Outcomes decided by the as-of day, when there is one.
        let decided = as_of.map(|day| tenure_proto::common::v1::DateRange {
            start: None,
            end: day.succ_opt().map(time::to_date),
        });
        loop {
            let page = self
                .renewals
                .clone()
                .list_renewal_outcomes(ListRenewalOutcomesRequest {
                    page_size: 1000,
                    page_token,
                    decided,
                    ..Default::default()
                })
                .await?
                .into_inner();
            let mut wanted = Vec::with_capacity(page.outcomes.len());
            for outcome in page.outcomes {
                let Some(term_end) = outcome.term_end_date.as_ref().and_then(time::from_date)
                else {
                    continue;
                };
                let Some(as_of) = term_end
                    .checked_sub_days(Days::new(horizon_days as u64))
                    .filter(|d| *d <= known_on)
                else {
                    continue;
                };
                wanted.push((outcome, term_end, as_of));
            }
            let mut fetched = self
                .signals_at(
                    wanted
                        .iter()
                        .map(|(o, _, day)| (o.account_id.clone(), *day)),
                )
                .await?;
            for (outcome, term_end, as_of) in wanted {
                // Missing: the account was not known at the horizon.
                let Some(signals) = fetched.remove(&(outcome.account_id.clone(), as_of)) else {
                    continue;
                };
                let example = Example {
                    numbers: signals::values(&signals),
                    categories: signals::categories(&signals),
                    churned: outcome.kind() == OutcomeKind::Churned,
                    group: outcome.account_id.clone(),
                };
                examples.push((outcome.account_id.clone(), term_end, example));
            }
            if page.next_page_token.is_empty() {
                return Ok(examples);
            }
            page_token = page.next_page_token;
        }
    }

    /// The signals of each (account, day) wanted, in one stream of pairs
    /// (ingestion reads them in batches whatever their days); when one of
    /// the accounts is unknown (the stream ends with NOT_FOUND), one call
    /// each, leaving the unknown out.
    async fn signals_at(
        &self,
        wanted: impl Iterator<Item = (String, NaiveDate)>,
    ) -> anyhow::Result<HashMap<(String, NaiveDate), AccountSignals>> {
        let pairs: Vec<(String, NaiveDate)> = wanted.collect();
        let request = signals::at_days(&pairs);
        let streamed: Result<Vec<AccountSignals>, tonic::Status> = async {
            let mut stream = self
                .ingestion
                .clone()
                .stream_account_signals(request)
                .await?
                .into_inner();
            let mut streamed = Vec::with_capacity(pairs.len());
            while let Some(message) = stream.message().await? {
                streamed.extend(message.signals);
            }
            Ok(streamed)
        }
        .await;
        let signals = match streamed {
            Ok(signals) => signals,
            Err(status) if status.code() == tonic::Code::NotFound => {
                let mut signals = Vec::with_capacity(pairs.len());
                for (account_id, day) in pairs {
                    let request = GetAccountSignalsRequest {
                        account_id,
                        as_of: Some(time::to_date(day)),
                    };
                    match self.ingestion.clone().get_account_signals(request).await {
                        Ok(answer) => signals.extend(answer.into_inner().signals),
                        Err(status) if status.code() == tonic::Code::NotFound => {}
                        Err(status) => return Err(status.into()),
                    }
                }
                signals
            }
            Err(status) => return Err(status.into()),
        };
        Ok(signals
            .into_iter()
            .filter_map(|s| {
                let day = s.as_of.as_ref().and_then(time::from_date)?;
                Some(((s.account_id.clone(), day), s))
            })
            .collect())
    }

    async fn train(
        &self,
        model_id: Uuid,
        horizon_days: i32,
        l2: f64,
        as_of: Option<NaiveDate>,
    ) -> anyhow::Result<(Model, pb::ChurnModel)> {
        let started = std::time::Instant::now();
        let gathered = self.examples(horizon_days, as_of).await?;
        let gather_seconds = started.elapsed().as_secs_f64();
        let first = gathered.iter().map(|(_, d, _)| *d).min();
        let last = gathered.iter().map(|(_, d, _)| *d).max();
        let window = first
            .zip(last)
            .map(|(first, last)| tenure_proto::common::v1::DateRange {
                start: Some(time::to_date(first)),
                end: last.succ_opt().map(time::to_date),
            });
        let examples: Vec<Example> = gathered.into_iter().map(|(_, _, e)| e).collect();
        let churns = examples.iter().filter(|e| e.churned).count();
        anyhow::ensure!(
            examples.len() >= MIN_EXAMPLES && churns > 0 && churns < examples.len(),
            "training needs at least {MIN_EXAMPLES} outcomes with both renewals and churns; found {} with {churns} churns",
            examples.len()
        );
        let options = FitOptions {
            l2,
            ..FitOptions::default()
        };
        let fitting = examples.clone();
        let started = std::time::Instant::now();
        let ((model, convergence), predictions) = tokio::task::spawn_blocking(move || {
            (
                Model::fit_reporting(&fitting, options),
                model::cross_validate(&fitting, 5, options),
            )
        })
        .await?;
        let fit_seconds = started.elapsed().as_secs_f64();
        let churned: Vec<bool> = examples.iter().map(|e| e.churned).collect();
        let lift = model::univariate_lift(&model, &examples);
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
        let report = pb::ChurnModel {
            model_id: model_id.to_string(),
            status: pb::ModelStatus::Ready as i32,
            horizon_days,
            l2,
            example_count: examples.len() as i32,
            churn_count: churns as i32,
            cv_auc: model::auc(&predictions, &churned),
            cv_brier: Some(model::brier(&predictions, &churned)),
            signals: weights,
            training_window: window,
            converged: convergence.converged,
            iterations: i32::try_from(convergence.iterations).unwrap_or(i32::MAX),
            tolerance: options.tolerance,
            as_of: as_of.map(time::to_date),
            gather_seconds,
            fit_seconds,
            ..Default::default()
        };
        Ok((model, report))
    }

    async fn finish(
        &self,
        model_id: Uuid,
        outcome: anyhow::Result<(Model, pb::ChurnModel)>,
    ) -> sqlx::Result<()> {
        match outcome {
            Ok((model, report)) => {
                tracing::info!(%model_id, examples = report.example_count, cv_auc = ?report.cv_auc, "churn model trained");
                sqlx::query(
                    "UPDATE health.churn_models SET status = $2, model = $3, report = $4, finish_time = now() \
                     WHERE model_id = $1",
                )
                .bind(model_id)
                .bind(pb::ModelStatus::Ready as i16)
                .bind(Json(&model))
                .bind(report.encode_to_vec())
                .execute(&self.pool)
                .await?;
            }
            Err(error) => {
                tracing::warn!(%model_id, error = %format!("{error:#}"), "churn model training failed");
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

    /// A model by id, or the latest ready one.
    pub async fn get(&self, model_id: Option<Uuid>) -> ApiResult<pb::ChurnModel> {
        type Row = (
            Uuid,
            i16,
            i32,
            f64,
            Option<Vec<u8>>,
            String,
            chrono::DateTime<Utc>,
            Option<chrono::DateTime<Utc>>,
            Option<NaiveDate>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT model_id, status, horizon_days, l2, report, error, create_time, finish_time, as_of \
             FROM health.churn_models \
             WHERE ($1::uuid IS NULL AND status = $2) OR model_id = $1 ORDER BY create_time DESC LIMIT 1",
        )
        .bind(model_id)
        .bind(pb::ModelStatus::Ready as i16)
        .fetch_optional(&self.pool)
        .await?;
        let (id, status, horizon_days, l2, report, error, created, finished, as_of) =
            row.ok_or_else(|| ApiError::NotFound("churn model".to_owned()))?;
        let mut model = match report {
            Some(bytes) => pb::ChurnModel::decode(bytes.as_slice())
                .map_err(|e| anyhow::anyhow!("stored report: {e}"))?,
            None => pb::ChurnModel::default(),
        };
        model.model_id = id.to_string();
        model.status = i32::from(status);
        model.horizon_days = horizon_days;
        model.l2 = l2;
        model.error = error;
        model.create_time = Some(time::to_timestamp(created));
        model.finish_time = finished.map(time::to_timestamp);
        model.as_of = as_of.map(time::to_date);
        Ok(model)
    }

    /// An account's churn probability from its signals as of `as_of` (now
    /// when unset), by one model or the latest ready one.
    pub async fn predict(
        &self,
        account_id: &str,
        as_of: Option<NaiveDate>,
        model_id: Option<Uuid>,
    ) -> ApiResult<pb::PredictChurnResponse> {
        let row: Option<(Uuid, Json<Model>)> = sqlx::query_as(
            "SELECT model_id, model FROM health.churn_models \
             WHERE status = $1 AND ($2::uuid IS NULL OR model_id = $2) \
             ORDER BY create_time DESC LIMIT 1",
        )
        .bind(pb::ModelStatus::Ready as i16)
        .bind(model_id)
        .fetch_optional(&self.pool)
        .await?;
        let (model_id, Json(model)) = row.ok_or_else(|| match model_id {
            Some(id) => ApiError::NotFound(format!("ready churn model {id}")),
            None => ApiError::FailedPrecondition("no churn model is trained yet".to_owned()),
        })?;
        let request = GetAccountSignalsRequest {
            account_id: account_id.to_owned(),
            as_of: as_of.map(time::to_date),
        };
        let signals = self
            .ingestion
            .clone()
            .get_account_signals(request)
            .await
            .map_err(|s| ApiError::from_upstream(s, &format!("account {account_id}")))?
            .into_inner()
            .signals
            .unwrap_or_default();
        let (probability, contributions) =
            model.predict(&signals::values(&signals), &signals::categories(&signals));
        let mut top: Vec<(String, f64)> = contributions
            .into_iter()
            .filter(|(_, c)| *c != 0.0)
            .collect();
        top.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
        top.truncate(5);
        Ok(pb::PredictChurnResponse {
            model_id: model_id.to_string(),
            churn_probability: probability,
            top_signals: top
                .into_iter()
                .map(|(feature, contribution)| pb::SignalContribution {
                    feature,
                    contribution,
                })
                .collect(),
        })
    }

    /// Scores past accounts at the horizon with one scorecard version.
    pub async fn backtest(
        &self,
        card: &crate::store::StoredScorecard,
        horizon_days: i32,
    ) -> ApiResult<pb::BacktestScorecardResponse> {
        let examples = self
            .examples(horizon_days, None)
            .await
            .map_err(|e| anyhow::anyhow!("gathering outcomes: {e:#}"))?;
        let mut scores = Vec::new();
        let mut renewed = Vec::new();
        let mut bands: std::collections::BTreeMap<i32, (i32, i32)> =
            std::collections::BTreeMap::new();
        let mut surprises = Vec::new();
        for (account_id, term_end, example) in &examples {
            let Some(scored) = crate::scorecard::score(&card.definition.0, &example.numbers) else {
                continue;
            };
            let band = crate::scoring::band_to_proto(scored.band);
            let entry = bands.entry(band as i32).or_default();
            entry.0 += 1;
            if !example.churned {
                entry.1 += 1;
            }
            if example.churned && band == pb::Band::Green {
                surprises.push(pb::SurpriseChurn {
                    account_id: account_id.clone(),
                    score: scored.score,
                    term_end_date: Some(time::to_date(*term_end)),
                });
            }
            scores.push(scored.score);
            renewed.push(!example.churned);
        }
        Ok(pb::BacktestScorecardResponse {
            name: card.name.clone(),
            version: card.version,
            horizon_days,
            example_count: scores.len() as i32,
            auc: model::auc(&scores, &renewed),
            bands: [pb::Band::Red, pb::Band::Yellow, pb::Band::Green]
                .into_iter()
                .map(|band| {
                    let (count, renewed) = bands.get(&(band as i32)).copied().unwrap_or_default();
                    pb::BandOutcomes {
                        band: band as i32,
                        account_count: count,
                        renewed_count: renewed,
                        renewal_rate_pct: (count > 0)
                            .then(|| f64::from(renewed) / f64::from(count) * 100.0),
                    }
                })
                .collect(),
            surprise_churns: surprises,
        })
    }
}
