//! The gRPC edge of health.

use sqlx::PgPool;
use tenure_platform::client::TracedChannel;
use tenure_platform::{ApiError, ApiResult, Violations, idempotency, time};
use tenure_proto::health::v1::{self as pb, health_service_server::HealthService};
use tenure_proto::ingestion::v1::GetAccountRequest;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tonic::{Request, Response, Status};

use crate::scoring::Scorer;
use crate::{SCHEMA, cards, queue, store};

const MAX_ID: usize = 128;
const MAX_ACCOUNTS_PER_NOTICE: usize = 100_000;

pub struct HealthApi {
    pool: PgPool,
    ingestion: IngestionServiceClient<TracedChannel>,
    scorer: Scorer,
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
    ) -> Self {
        Self {
            pool,
            ingestion,
            scorer,
            trainer,
            rollup,
        }
    }

    async fn notify_accounts_changed(
        &self,
        request: pb::NotifyAccountsChangedRequest,
    ) -> ApiResult<pb::NotifyAccountsChangedResponse> {
        const METHOD: &str = "NotifyAccountsChanged";
        let mut violations = Violations::default();
        violations.check(
            !request.account_ids.is_empty(),
            "account_ids",
            "must not be empty",
        );
        violations.check(
            request.account_ids.len() <= MAX_ACCOUNTS_PER_NOTICE,
            "account_ids",
            format!("must hold at most {MAX_ACCOUNTS_PER_NOTICE} ids"),
        );
        for (i, id) in request.account_ids.iter().enumerate() {
            violations.require_text(id, format!("account_ids[{i}]"), MAX_ID);
        }
        let earliest = match &request.earliest_event_time {
            Some(t) => time::timestamp(Some(t), "earliest_event_time", &mut violations),
            None => None,
        };
        violations.into_result()?;

        let mut tx = self.pool.begin().await?;
        if let Some(previous) =
            idempotency::claim(&mut tx, SCHEMA, METHOD, &request.request_id, &request).await?
        {
            return Ok(previous);
        }
        let marked = queue::mark(&mut tx, &request.account_ids, earliest).await?;
        let response = pb::NotifyAccountsChangedResponse {
            marked_count: marked as i32,
        };
        idempotency::complete(&mut tx, SCHEMA, METHOD, &request.request_id, &response).await?;
        tx.commit().await?;
        Ok(response)
    }

    async fn get_account_health(
        &self,
        request: pb::GetAccountHealthRequest,
    ) -> ApiResult<pb::GetAccountHealthResponse> {
        let mut violations = Violations::default();
        violations.require_text(&request.account_id, "account_id", MAX_ID);
        violations.into_result()?;
        let account = self
            .ingestion
            .clone()
            .get_account(GetAccountRequest {
                account_id: request.account_id.clone(),
            })
            .await
            .map_err(|status| {
                ApiError::from_upstream(status, &format!("account {}", request.account_id))
            })?
            .into_inner()
            .account
            .ok_or_else(|| anyhow::anyhow!("ingestion answered without an account"))?;
        let pending_since = queue::pending_since(&self.pool, &account.account_id).await?;
        Ok(pb::GetAccountHealthResponse {
            account_id: account.account_id,
            account_name: account.name,
            segment: account.segment,
            rescore_pending: pending_since.is_some(),
            last_changed_at: pending_since.map(time::to_timestamp),
        })
    }
}

impl HealthApi {
    async fn create_scorecard(
        &self,
        request: pb::CreateScorecardRequest,
    ) -> ApiResult<pb::CreateScorecardResponse> {
        const METHOD: &str = "CreateScorecard";
        let (name, def) = cards::from_proto(request.scorecard.as_ref())?;
        let mut tx = self.pool.begin().await?;
        if let Some(previous) =
            idempotency::claim(&mut tx, SCHEMA, METHOD, &request.request_id, &request).await?
        {
            return Ok(previous);
        }
        let stored = store::insert_scorecard(&mut tx, &name, &def).await?;
        let response = pb::CreateScorecardResponse {
            scorecard: Some(cards::to_proto(&stored)),
        };
        idempotency::complete(&mut tx, SCHEMA, METHOD, &request.request_id, &response).await?;
        tx.commit().await?;
        Ok(response)
    }

    async fn get_scorecard(
        &self,
        request: pb::GetScorecardRequest,
    ) -> ApiResult<pb::GetScorecardResponse> {
        let mut violations = Violations::default();
        violations.require_text(&request.name, "name", MAX_ID);
        violations.check(request.version >= 0, "version", "must not be negative");
        violations.into_result()?;
        let version = (request.version > 0).then_some(request.version);
        let stored = store::scorecard(&self.pool, &request.name, version)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("scorecard {}", request.name)))?;
        Ok(pb::GetScorecardResponse {
            scorecard: Some(cards::to_proto(&stored)),
        })
    }

    async fn list_scorecards(
        &self,
        request: pb::ListScorecardsRequest,
    ) -> ApiResult<pb::ListScorecardsResponse> {
        let size = tenure_platform::paging::page_size(request.page_size)?;
        let after: Option<String> = tenure_platform::paging::decode_token(&request.page_token)?;
        let mut rows =
            store::list_latest(&self.pool, after.as_deref(), i64::from(size) + 1).await?;
        let next_page_token =
            tenure_platform::paging::finish_page(&mut rows, size, |r| r.name.clone());
        Ok(pb::ListScorecardsResponse {
            scorecards: rows.iter().map(cards::to_proto).collect(),
            next_page_token,
        })
    }

    async fn recompute_health(
        &self,
        request: pb::RecomputeHealthRequest,
    ) -> ApiResult<pb::RecomputeHealthResponse> {
        let mut violations = Violations::default();
        if request.all_accounts {
            violations.check(
                request.account_ids.is_empty(),
                "account_ids",
                "must be empty with all_accounts",
            );
        } else {
            violations.check(
                !request.account_ids.is_empty(),
                "account_ids",
                "must not be empty",
            );
        }
        violations.check(
            request.account_ids.len() <= 10_000,
            "account_ids",
            "must hold at most 10000 ids",
        );
        for (i, id) in request.account_ids.iter().enumerate() {
            violations.require_text(id, format!("account_ids[{i}]"), MAX_ID);
        }
        violations.into_result()?;
        if request.all_accounts {
            let scored = self
                .scorer
                .recompute_all(&mut self.ingestion.clone())
                .await?;
            return Ok(pb::RecomputeHealthResponse {
                healths: Vec::new(),
                scored_count: scored as i32,
            });
        }
        let healths = self.scorer.recompute(request.account_ids).await?;
        Ok(pb::RecomputeHealthResponse {
            scored_count: healths.len() as i32,
            healths,
        })
    }

    async fn record_assessment(
        &self,
        request: pb::RecordAssessmentRequest,
    ) -> ApiResult<pb::RecordAssessmentResponse> {
        const METHOD: &str = "RecordAssessment";
        let mut violations = Violations::default();
        violations.require_text(&request.account_id, "account_id", MAX_ID);
        violations.check(
            (0.0..=100.0).contains(&request.score),
            "score",
            "must lie in 0-100",
        );
        violations.limit_text(&request.note, "note", 4000);
        violations.limit_text(&request.assessed_by, "assessed_by", MAX_ID);
        let expires_on = time::date(request.expires_on.as_ref(), "expires_on", &mut violations);
        if let Some(day) = expires_on {
            violations.check(
                day >= chrono::Utc::now().date_naive(),
                "expires_on",
                "must not be in the past",
            );
        }
        violations.into_result()?;
        let expires_on = expires_on.ok_or_else(|| anyhow::anyhow!("validated date missing"))?;
        let mut tx = self.pool.begin().await?;
        if let Some(previous) =
            idempotency::claim(&mut tx, SCHEMA, METHOD, &request.request_id, &request).await?
        {
            return Ok(previous);
        }
        let id = store::insert_assessment(
            &mut tx,
            &request.account_id,
            request.score,
            &request.note,
            &request.assessed_by,
            expires_on,
        )
        .await?;
        // The scorer picks the account up and rescores it with the assessment.
        queue::mark(&mut tx, std::slice::from_ref(&request.account_id), None).await?;
        let response = pb::RecordAssessmentResponse {
            assessment_id: id.to_string(),
        };
        idempotency::complete(&mut tx, SCHEMA, METHOD, &request.request_id, &response).await?;
        tx.commit().await?;
        Ok(response)
    }

    async fn get_health(&self, request: pb::GetHealthRequest) -> ApiResult<pb::GetHealthResponse> {
        let mut violations = Violations::default();
        violations.require_text(&request.account_id, "account_id", MAX_ID);
        violations.into_result()?;
        let mut health = store::latest_score(&self.pool, &request.account_id)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!("a score for account {}", request.account_id))
            })?;
        let as_of = health
            .as_of
            .as_ref()
            .and_then(|d| time::date(Some(d), "as_of", &mut Violations::default()))
            .unwrap_or_else(|| chrono::Utc::now().date_naive());
        let [change_7d, change_30d, change_90d] =
            store::trend(&self.pool, &health.account_id, as_of, health.score).await?;
        health.trend = Some(pb::Trend {
            change_7d,
            change_30d,
            change_90d,
        });
        let method = self.rollup;
        if let Some((score, child_count)) =
            store::rollup(&self.pool, &health.account_id, method).await?
        {
            let bands = store::scorecard(
                &self.pool,
                &health.scorecard_name,
                Some(health.scorecard_version),
            )
            .await?
            .map(|card| card.definition.0.bands)
            .unwrap_or_default();
            health.rollup = Some(pb::ParentRollup {
                score,
                band: crate::scoring::band_to_proto(bands.band(score)) as i32,
                child_count: child_count as i32,
                method: method.name().to_owned(),
            });
        }
        Ok(pb::GetHealthResponse {
            health: Some(health),
        })
    }

    async fn get_health_history(
        &self,
        request: pb::GetHealthHistoryRequest,
    ) -> ApiResult<pb::GetHealthHistoryResponse> {
        let size = tenure_platform::paging::page_size(request.page_size)?;
        let after: Option<chrono::NaiveDate> =
            tenure_platform::paging::decode_token(&request.page_token)?;
        let mut violations = Violations::default();
        violations.require_text(&request.account_id, "account_id", MAX_ID);
        let (from, before) = match &request.range {
            Some(range) => (
                range
                    .start
                    .as_ref()
                    .and_then(|d| time::date(Some(d), "range.start", &mut violations)),
                range
                    .end
                    .as_ref()
                    .and_then(|d| time::date(Some(d), "range.end", &mut violations)),
            ),
            None => (None, None),
        };
        violations.into_result()?;
        let mut rows = store::history(
            &self.pool,
            &request.account_id,
            from,
            before,
            after,
            i64::from(size) + 1,
        )
        .await?;
        let next_page_token = tenure_platform::paging::finish_page(&mut rows, size, |s| s.day);
        Ok(pb::GetHealthHistoryResponse {
            snapshots: rows
                .into_iter()
                .map(|s| pb::HealthSnapshot {
                    day: Some(time::to_date(s.day)),
                    score: s.score,
                    band: i32::from(s.band),
                    scorecard_name: s.scorecard_name,
                    scorecard_version: s.scorecard_version,
                })
                .collect(),
            next_page_token,
        })
    }
}

fn summary(row: store::Listed) -> pb::AccountHealthSummary {
    let money = |minor| tenure_proto::common::v1::Money {
        currency_code: row.currency.clone(),
        amount_minor: minor,
    };
    pb::AccountHealthSummary {
        account_id: row.account_id.clone(),
        score: row.score,
        band: i32::from(row.band),
        segment: row.segment.clone(),
        owner: row.owner.clone(),
        arr: Some(money(row.arr_minor)),
        arr_at_risk: Some(money(row.arr_at_risk_minor)),
    }
}

fn list_filter(
    band: i32,
    segment: String,
    owner: String,
    violations: &mut Violations,
) -> store::ListFilter {
    let band = match pb::Band::try_from(band) {
        Ok(pb::Band::Unspecified) => None,
        Ok(band) => Some(band as i16),
        Err(_) => {
            violations.add("band", "is not a known band");
            None
        }
    };
    violations.limit_text(&segment, "segment", MAX_ID);
    violations.limit_text(&owner, "owner", MAX_ID);
    store::ListFilter {
        band,
        segment: (!segment.is_empty()).then_some(segment),
        owner: (!owner.is_empty()).then_some(owner),
    }
}

impl HealthApi {
    async fn list_account_health(
        &self,
        request: pb::ListAccountHealthRequest,
    ) -> ApiResult<pb::ListAccountHealthResponse> {
        use tenure_platform::paging::{decode_token, finish_page, page_size};
        let size = page_size(request.page_size)?;
        let mut violations = Violations::default();
        let filter = list_filter(
            request.band,
            request.segment,
            request.owner,
            &mut violations,
        );
        let sort = pb::HealthSort::try_from(request.sort).unwrap_or_default();
        violations.into_result()?;
        let limit = i64::from(size) + 1;
        let (rows, next_page_token) = if sort == pb::HealthSort::ArrAtRiskDescending {
            let after: Option<(i64, String)> = decode_token(&request.page_token)?;
            let mut rows = store::list_by_arr_at_risk(&self.pool, &filter, after, limit).await?;
            let token = finish_page(&mut rows, size, |r| {
                (r.arr_at_risk_minor, r.account_id.clone())
            });
            (rows, token)
        } else {
            let after: Option<(f64, String)> = decode_token(&request.page_token)?;
            let mut rows = store::list_by_score(&self.pool, &filter, after, limit).await?;
            let token = finish_page(&mut rows, size, |r| (r.score, r.account_id.clone()));
            (rows, token)
        };
        Ok(pb::ListAccountHealthResponse {
            accounts: rows.into_iter().map(summary).collect(),
            next_page_token,
        })
    }

    async fn get_health_distribution(
        &self,
        request: pb::GetHealthDistributionRequest,
    ) -> ApiResult<pb::GetHealthDistributionResponse> {
        let mut violations = Violations::default();
        let filter = list_filter(0, request.segment, request.owner, &mut violations);
        violations.check(
            (0..=100).contains(&request.tail_size),
            "tail_size",
            "must be 0-100",
        );
        violations.into_result()?;
        let tail = if request.tail_size == 0 {
            10
        } else {
            i64::from(request.tail_size)
        };
        let rows = store::distribution(&self.pool, &filter).await?;
        let mut histogram: Vec<pb::HistogramBucket> = (0..10)
            .map(|i| pb::HistogramBucket {
                lower: f64::from(i) * 10.0,
                upper: f64::from(i + 1) * 10.0,
                count: 0,
            })
            .collect();
        let mut bands: std::collections::BTreeMap<
            i16,
            (i32, std::collections::BTreeMap<String, i64>),
        > = std::collections::BTreeMap::new();
        for (score, band, currency, arr) in rows {
            let bucket = ((score / 10.0).floor().clamp(0.0, 9.0)) as usize;
            histogram[bucket].count += 1;
            let entry = bands.entry(band).or_default();
            entry.0 += 1;
            if !currency.is_empty() {
                *entry.1.entry(currency).or_default() += arr;
            }
        }
        let at_risk = store::list_by_score(&self.pool, &filter, None, tail).await?;
        let advocates = store::top(&self.pool, &filter, tail).await?;
        Ok(pb::GetHealthDistributionResponse {
            histogram,
            bands: bands
                .into_iter()
                .map(|(band, (count, arr))| pb::BandTotal {
                    band: i32::from(band),
                    account_count: count,
                    arr: arr
                        .into_iter()
                        .map(
                            |(currency_code, amount_minor)| tenure_proto::common::v1::Money {
                                currency_code,
                                amount_minor,
                            },
                        )
                        .collect(),
                })
                .collect(),
            at_risk: at_risk.into_iter().map(summary).collect(),
            advocates: advocates.into_iter().map(summary).collect(),
        })
    }
}

impl HealthApi {
    async fn train_churn_model(
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
        violations.into_result()?;
        let horizon = if request.horizon_days == 0 {
            90
        } else {
            request.horizon_days
        };
        let l2 = if request.l2 == 0.0 { 0.01 } else { request.l2 };
        let mut tx = self.pool.begin().await?;
        if let Some(previous) =
            idempotency::claim(&mut tx, SCHEMA, METHOD, &request.request_id, &request).await?
        {
            return Ok(previous);
        }
        let model = self.trainer.start(horizon, l2).await?;
        let response = pb::TrainChurnModelResponse { model: Some(model) };
        idempotency::complete(&mut tx, SCHEMA, METHOD, &request.request_id, &response).await?;
        tx.commit().await?;
        Ok(response)
    }

    async fn get_churn_model(
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

    async fn backtest_scorecard(
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

    async fn predict_churn(
        &self,
        request: pb::PredictChurnRequest,
    ) -> ApiResult<pb::PredictChurnResponse> {
        let mut violations = Violations::default();
        violations.require_text(&request.account_id, "account_id", MAX_ID);
        violations.into_result()?;
        self.trainer.predict(&request.account_id).await
    }
}

#[tonic::async_trait]
impl HealthService for HealthApi {
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
            crate::watch::watch(self.pool.clone(), request).await?,
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
}
