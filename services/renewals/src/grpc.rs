//! The gRPC edge of renewals.

use tenure_platform::db::{codes, sqlstate};
use tenure_platform::input::{Id, Window};
use tenure_platform::{ApiError, ApiResult, Violations, idempotency, money, paging, time};
use tenure_proto::common::v1::Money;
use tenure_proto::renewals::v1::{self as pb, renewals_service_server::RenewalsService};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::SCHEMA;
use crate::outcomes::{self, Kind, NewOutcome, OutcomeFilter, OutcomeRow};
use crate::state::RenewalsApi;

const MAX_NOTE: usize = 4000;
/// Outcomes in one batch.
const MAX_BATCH: usize = 1000;

impl RenewalsApi {
    async fn run_renewal_sweep(
        &self,
        request: pb::RunRenewalSweepRequest,
    ) -> ApiResult<pb::RunRenewalSweepResponse> {
        let mut violations = Violations::default();
        let as_of =
            crate::forecasts::day_or_today(request.as_of.as_ref(), "as_of", &mut violations);
        violations.into_result()?;
        let emitted = crate::sweep::run(&self.pool, as_of, &self.thresholds).await?;
        Ok(pb::RunRenewalSweepResponse {
            emitted_count: emitted as i32,
        })
    }

    async fn record_renewal_outcome(
        &self,
        request: pb::RecordRenewalOutcomeRequest,
    ) -> ApiResult<pb::RecordRenewalOutcomeResponse> {
        const METHOD: &str = "RecordRenewalOutcome";
        let mut violations = Violations::default();
        let outcome = new_outcome_from_proto(request.outcome.as_ref(), "outcome", &mut violations);
        violations.into_result()?;
        let Some(outcome) = outcome else {
            return Err(anyhow::anyhow!("a validated outcome lacks a value").into());
        };
        let mut violations = Violations::default();
        let outcomes = std::slice::from_ref(&outcome);
        crate::terms::check(
            &self.pool,
            &self.ingestion,
            outcomes,
            |_| "outcome".into(),
            &mut violations,
        )
        .await?;
        violations.into_result()?;
        idempotency::once(&self.pool, SCHEMA, METHOD, &request, async |tx| {
            let row = match outcomes::insert(&mut *tx, &outcome).await {
                Ok(row) => row,
                Err(e) if sqlstate(&e).as_deref() == Some(codes::UNIQUE_VIOLATION) => {
                    return Err(ApiError::AlreadyExists(format!(
                        "an outcome is already recorded for subscription {} ending {}",
                        outcome.subscription_id, outcome.term_end_date
                    )));
                }
                Err(e) => return Err(e.into()),
            };
            Ok(pb::RecordRenewalOutcomeResponse {
                outcome: Some(outcome_to_proto(row)),
            })
        })
        .await
    }

    async fn batch_record_renewal_outcomes(
        &self,
        request: pb::BatchRecordRenewalOutcomesRequest,
    ) -> ApiResult<pb::BatchRecordRenewalOutcomesResponse> {
        const METHOD: &str = "BatchRecordRenewalOutcomes";
        let mut violations = Violations::default();
        violations.check(
            (1..=MAX_BATCH).contains(&request.outcomes.len()),
            "outcomes",
            format!("must hold 1 to {MAX_BATCH} outcomes"),
        );
        let outcomes: Vec<NewOutcome> = request
            .outcomes
            .iter()
            .enumerate()
            .filter_map(|(i, o)| {
                new_outcome_from_proto(Some(o), &format!("outcomes[{i}]"), &mut violations)
            })
            .collect();
        violations.into_result()?;
        let mut violations = Violations::default();
        let field = |i| format!("outcomes[{i}]");
        crate::terms::check(
            &self.pool,
            &self.ingestion,
            &outcomes,
            field,
            &mut violations,
        )
        .await?;
        violations.into_result()?;
        idempotency::once(&self.pool, SCHEMA, METHOD, &request, async |tx| {
            let recorded = outcomes::insert_new(&mut *tx, &outcomes).await?;
            Ok(pb::BatchRecordRenewalOutcomesResponse {
                recorded_count: recorded as i32,
                unchanged_count: (outcomes.len() as u64 - recorded) as i32,
            })
        })
        .await
    }

    async fn list_renewal_outcomes(
        &self,
        request: pb::ListRenewalOutcomesRequest,
    ) -> ApiResult<pb::ListRenewalOutcomesResponse> {
        let size = paging::page_size(request.page_size)?;
        let after: Option<(chrono::NaiveDate, Uuid)> = paging::decode_token(&request.page_token)?;
        let mut violations = Violations::default();
        let decided: Option<Window> = violations.parse("decided", request.decided.as_ref());
        let Window {
            start: decided_from,
            end: decided_before,
        } = decided.unwrap_or_default();
        let kind = match request.kind {
            0 => None,
            code => {
                let kind = i16::try_from(code).ok().and_then(Kind::from_code);
                violations.check(kind.is_some(), "kind", "is not a known outcome kind");
                kind
            }
        };
        let segment = crate::forecasts::filter_text(&request.segment, "segment", &mut violations);
        violations.into_result()?;
        let filter = OutcomeFilter {
            decided_from,
            decided_before,
            kind,
            segment,
        };
        let mut rows = outcomes::list(&self.pool, &filter, after, i64::from(size) + 1).await?;
        let next_page_token =
            paging::finish_page(&mut rows, size, |r| (r.decided_on, r.outcome_id));
        Ok(pb::ListRenewalOutcomesResponse {
            outcomes: rows.into_iter().map(outcome_to_proto).collect(),
            next_page_token,
        })
    }
}

impl RenewalsApi {
    async fn notify_subscriptions_changed(
        &self,
        request: pb::NotifySubscriptionsChangedRequest,
    ) -> ApiResult<pb::NotifySubscriptionsChangedResponse> {
        const METHOD: &str = "NotifySubscriptionsChanged";
        let mut violations = Violations::default();
        violations.check(
            !request.subscription_ids.is_empty(),
            "subscription_ids",
            "must not be empty",
        );
        violations.parse_each::<Id>("subscription_ids", &request.subscription_ids);
        violations.into_result()?;
        idempotency::once(&self.pool, SCHEMA, METHOD, &request, async |tx| {
            let marked = crate::queue::mark(&mut *tx, &request.subscription_ids).await?;
            Ok(pb::NotifySubscriptionsChangedResponse {
                marked_count: marked as i32,
            })
        })
        .await
    }
}

/// Checks one outcome, recording violations under `field` (`outcome`,
/// `outcomes[3]`); `None` when it has any.
fn new_outcome_from_proto(
    outcome: Option<&pb::RenewalOutcome>,
    field: &str,
    violations: &mut Violations,
) -> Option<NewOutcome> {
    let Some(outcome) = outcome else {
        violations.add(field, "is required");
        return None;
    };
    let before = violations.len();
    let name = |part: &str| format!("{field}.{part}");
    violations.parse::<Id, _>(&name("account_id"), &outcome.account_id);
    violations.parse::<Id, _>(&name("subscription_id"), &outcome.subscription_id);
    violations.limit_text(&outcome.churn_note, name("churn_note"), MAX_NOTE);
    let term_end_date = time::date(
        outcome.term_end_date.as_ref(),
        &name("term_end_date"),
        violations,
    );
    let decided_on = time::date(outcome.decided_on.as_ref(), &name("decided_on"), violations);
    let kind = i16::try_from(outcome.kind).ok().and_then(Kind::from_code);
    violations.check(
        kind.is_some(),
        name("kind"),
        "must be RENEWED, PARTIALLY_RENEWED or CHURNED",
    );
    let churn_reason_known = pb::ChurnReason::try_from(outcome.churn_reason).is_ok();
    violations.check(
        churn_reason_known,
        name("churn_reason"),
        "is not a known churn reason",
    );
    let previous_arr = money::non_negative(
        outcome.previous_arr.as_ref(),
        &name("previous_arr"),
        violations,
    );
    let new_arr = money::non_negative(outcome.new_arr.as_ref(), &name("new_arr"), violations);
    let new_outcome = NewOutcome {
        account_id: outcome.account_id.clone(),
        subscription_id: outcome.subscription_id.clone(),
        term_end_date: term_end_date?,
        kind: kind?,
        previous_arr: previous_arr?,
        new_arr: new_arr?,
        churn_reason: outcome.churn_reason as i16,
        churn_note: outcome.churn_note.clone(),
        decided_on: decided_on?,
    };
    if violations.len() > before {
        return None;
    }
    for inconsistency in new_outcome.inconsistencies() {
        violations.add(name(inconsistency.field), inconsistency.reason);
    }
    (violations.len() == before).then_some(new_outcome)
}

fn outcome_to_proto(row: OutcomeRow) -> pb::RenewalOutcome {
    let money = |minor| Money {
        currency_code: row.currency.clone(),
        amount_minor: minor,
    };
    pb::RenewalOutcome {
        outcome_id: row.outcome_id.to_string(),
        account_id: row.account_id.clone(),
        subscription_id: row.subscription_id.clone(),
        term_end_date: Some(time::to_date(row.term_end_date)),
        kind: i32::from(row.kind),
        previous_arr: Some(money(row.previous_arr_minor)),
        new_arr: Some(money(row.new_arr_minor)),
        churn_reason: i32::from(row.churn_reason),
        churn_note: row.churn_note.clone(),
        decided_on: Some(time::to_date(row.decided_on)),
        recorded_at: Some(time::to_timestamp(row.recorded_at)),
    }
}

#[tonic::async_trait]
impl RenewalsService for RenewalsApi {
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
                &[
                    "DELETE FROM renewals.subscription_queue WHERE subscription_id IN (SELECT subscription_id FROM renewals.subscription_versions WHERE account_id = $1)",
                    "DELETE FROM renewals.reminders WHERE subscription_id IN (SELECT subscription_id FROM renewals.subscription_versions WHERE account_id = $1)",
                    "DELETE FROM renewals.forecast_job_rows WHERE position(convert_to($1, 'UTF8') IN row) > 0",
                ],
                |rows_changed| pb::NotifyAccountErasedResponse { rows_changed },
            )
            .await?,
        ))
    }

    async fn record_renewal_outcome(
        &self,
        request: Request<pb::RecordRenewalOutcomeRequest>,
    ) -> Result<Response<pb::RecordRenewalOutcomeResponse>, Status> {
        Ok(Response::new(
            self.record_renewal_outcome(request.into_inner()).await?,
        ))
    }

    async fn batch_record_renewal_outcomes(
        &self,
        request: Request<pb::BatchRecordRenewalOutcomesRequest>,
    ) -> Result<Response<pb::BatchRecordRenewalOutcomesResponse>, Status> {
        Ok(Response::new(
            self.batch_record_renewal_outcomes(request.into_inner())
                .await?,
        ))
    }

    async fn list_renewal_outcomes(
        &self,
        request: Request<pb::ListRenewalOutcomesRequest>,
    ) -> Result<Response<pb::ListRenewalOutcomesResponse>, Status> {
        Ok(Response::new(
            self.list_renewal_outcomes(request.into_inner()).await?,
        ))
    }

    async fn notify_subscriptions_changed(
        &self,
        request: Request<pb::NotifySubscriptionsChangedRequest>,
    ) -> Result<Response<pb::NotifySubscriptionsChangedResponse>, Status> {
        Ok(Response::new(
            self.notify_subscriptions_changed(request.into_inner())
                .await?,
        ))
    }

    async fn list_renewal_pipeline(
        &self,
        request: Request<pb::ListRenewalPipelineRequest>,
    ) -> Result<Response<pb::ListRenewalPipelineResponse>, Status> {
        Ok(Response::new(
            self.list_renewal_pipeline(request.into_inner()).await?,
        ))
    }

    async fn summarize_renewal_pipeline(
        &self,
        request: Request<pb::SummarizeRenewalPipelineRequest>,
    ) -> Result<Response<pb::SummarizeRenewalPipelineResponse>, Status> {
        Ok(Response::new(
            self.summarize_renewal_pipeline(request.into_inner())
                .await?,
        ))
    }

    async fn run_renewal_sweep(
        &self,
        request: Request<pb::RunRenewalSweepRequest>,
    ) -> Result<Response<pb::RunRenewalSweepResponse>, Status> {
        Ok(Response::new(
            self.run_renewal_sweep(request.into_inner()).await?,
        ))
    }

    async fn get_retention_metrics(
        &self,
        request: Request<pb::GetRetentionMetricsRequest>,
    ) -> Result<Response<pb::GetRetentionMetricsResponse>, Status> {
        Ok(Response::new(
            self.get_retention_metrics(request.into_inner()).await?,
        ))
    }

    async fn get_revenue_ledger(
        &self,
        request: Request<pb::GetRevenueLedgerRequest>,
    ) -> Result<Response<pb::GetRevenueLedgerResponse>, Status> {
        Ok(Response::new(
            self.get_revenue_ledger(request.into_inner()).await?,
        ))
    }

    async fn forecast_renewals(
        &self,
        request: Request<pb::ForecastRenewalsRequest>,
    ) -> Result<Response<pb::ForecastRenewalsResponse>, Status> {
        Ok(Response::new(
            self.forecast_renewals(request.into_inner()).await?,
        ))
    }

    async fn backtest_forecast(
        &self,
        request: Request<pb::BacktestForecastRequest>,
    ) -> Result<Response<pb::BacktestForecastResponse>, Status> {
        Ok(Response::new(
            self.backtest_forecast(request.into_inner()).await?,
        ))
    }

    async fn start_forecast_job(
        &self,
        request: Request<pb::StartForecastJobRequest>,
    ) -> Result<Response<pb::StartForecastJobResponse>, Status> {
        Ok(Response::new(
            self.start_forecast_job(request.into_inner()).await?,
        ))
    }

    async fn get_forecast_job(
        &self,
        request: Request<pb::GetForecastJobRequest>,
    ) -> Result<Response<pb::GetForecastJobResponse>, Status> {
        Ok(Response::new(
            self.get_forecast_job(request.into_inner()).await?,
        ))
    }

    async fn list_forecast_job_rows(
        &self,
        request: Request<pb::ListForecastJobRowsRequest>,
    ) -> Result<Response<pb::ListForecastJobRowsResponse>, Status> {
        Ok(Response::new(
            self.list_forecast_job_rows(request.into_inner()).await?,
        ))
    }

    async fn get_cohort_retention(
        &self,
        request: Request<pb::GetCohortRetentionRequest>,
    ) -> Result<Response<pb::GetCohortRetentionResponse>, Status> {
        Ok(Response::new(
            self.get_cohort_retention(request.into_inner()).await?,
        ))
    }

    async fn fit_retention_model(
        &self,
        request: Request<pb::FitRetentionModelRequest>,
    ) -> Result<Response<pb::FitRetentionModelResponse>, Status> {
        Ok(Response::new(
            self.fit_retention_model(request.into_inner()).await?,
        ))
    }

    async fn get_value_report(
        &self,
        request: Request<pb::GetValueReportRequest>,
    ) -> Result<Response<pb::GetValueReportResponse>, Status> {
        Ok(Response::new(
            self.get_value_report(request.into_inner()).await?,
        ))
    }

    async fn get_lifetime_value(
        &self,
        request: Request<pb::GetLifetimeValueRequest>,
    ) -> Result<Response<pb::GetLifetimeValueResponse>, Status> {
        Ok(Response::new(
            self.get_lifetime_value(request.into_inner()).await?,
        ))
    }

    async fn project_scenario(
        &self,
        request: Request<pb::ProjectScenarioRequest>,
    ) -> Result<Response<pb::ProjectScenarioResponse>, Status> {
        Ok(Response::new(
            self.project_scenario(request.into_inner()).await?,
        ))
    }

    type StreamForecastStream = crate::forecasts::ForecastStream;

    type StreamFirstTermsStream = crate::reports::first_terms::FirstTermStream;

    async fn stream_first_terms(
        &self,
        request: Request<pb::StreamFirstTermsRequest>,
    ) -> Result<Response<Self::StreamFirstTermsStream>, Status> {
        Ok(Response::new(
            self.stream_first_terms(request.into_inner()).await?,
        ))
    }

    async fn stream_forecast(
        &self,
        request: Request<pb::StreamForecastRequest>,
    ) -> Result<Response<Self::StreamForecastStream>, Status> {
        Ok(Response::new(
            self.stream_forecast(request.into_inner()).await?,
        ))
    }

    async fn put_coverage_model(
        &self,
        request: Request<pb::PutCoverageModelRequest>,
    ) -> Result<Response<pb::PutCoverageModelResponse>, Status> {
        Ok(Response::new(
            self.put_coverage_model(request.into_inner()).await?,
        ))
    }

    async fn get_coverage_model(
        &self,
        request: Request<pb::GetCoverageModelRequest>,
    ) -> Result<Response<pb::GetCoverageModelResponse>, Status> {
        Ok(Response::new(
            self.get_coverage_model(request.into_inner()).await?,
        ))
    }

    async fn get_coverage_report(
        &self,
        request: Request<pb::GetCoverageReportRequest>,
    ) -> Result<Response<pb::GetCoverageReportResponse>, Status> {
        Ok(Response::new(
            self.get_coverage_report(request.into_inner()).await?,
        ))
    }

    async fn list_account_tiers(
        &self,
        request: Request<pb::ListAccountTiersRequest>,
    ) -> Result<Response<pb::ListAccountTiersResponse>, Status> {
        Ok(Response::new(
            self.list_account_tiers(request.into_inner()).await?,
        ))
    }
}
