//! The gRPC edge of playbooks: each call validated into plans, ids and
//! filters, handed to the store or the engine, and answered. Playbooks
//! here; runs, dry runs and the account timeline in [`runs`]; tasks in
//! [`tasks`]; dead letters in [`dead_letters`].

mod dead_letters;
mod runs;
mod tasks;

use sqlx::PgPool;
use tenure_platform::input::Id;
use tenure_platform::{ApiError, ApiResult, Violations, idempotency, paging, time};
use tenure_proto::common::v1::Band;
use tenure_proto::playbooks::v1::{self as pb, playbooks_service_server::PlaybooksService};
use tonic::{Request, Response, Status};

use crate::store::triggers::{self, TriggerEvent};
use crate::store::versions::{self as store, NewVersion, PlaybookVersion};
use crate::{SCHEMA, definition};

const MAX_DEFINITION_BYTES: usize = 256 * 1024;

pub struct PlaybooksApi {
    pub(crate) pool: PgPool,
    pub(crate) engine: crate::engine::Engine,
}

impl PlaybooksApi {
    pub fn new(pool: PgPool, engine: crate::engine::Engine) -> Self {
        Self { pool, engine }
    }

    async fn create_playbook(
        &self,
        request: pb::CreatePlaybookRequest,
    ) -> ApiResult<pb::CreatePlaybookResponse> {
        const METHOD: &str = "CreatePlaybook";
        let mut violations = Violations::default();
        let Some(format) = definition::Format::from_code(request.format) else {
            return Err(ApiError::invalid("format", "must be JSON or YAML"));
        };
        if request.definition.len() > MAX_DEFINITION_BYTES {
            return Err(ApiError::invalid(
                "definition",
                format!("must be at most {MAX_DEFINITION_BYTES} bytes"),
            ));
        }
        let compiled = crate::plan::compile_document(
            &request.definition,
            format,
            "definition",
            &mut violations,
        );
        violations.into_result()?;
        let (parsed, plan) =
            compiled.ok_or_else(|| anyhow::anyhow!("a valid definition did not compile"))?;
        self.engine
            .check_webhooks(&plan)
            .map_err(ApiError::FailedPrecondition)?;

        idempotency::once(&self.pool, SCHEMA, METHOD, &request, async |tx| {
            let stored = store::insert_next_version(
                &mut *tx,
                &NewVersion {
                    name: &parsed.name,
                    title: &parsed.title,
                    definition: &request.definition,
                    format: format as i16,
                    step_count: parsed.steps.len() as i32,
                },
            )
            .await?;
            Ok(pb::CreatePlaybookResponse {
                playbook: Some(playbook_to_proto(stored)),
            })
        })
        .await
    }

    async fn list_playbooks(
        &self,
        request: pb::ListPlaybooksRequest,
    ) -> ApiResult<pb::ListPlaybooksResponse> {
        let size = paging::page_size(request.page_size)?;
        let after: Option<String> = paging::decode_token(&request.page_token)?;
        let mut rows =
            store::list_latest(&self.pool, after.as_deref(), i64::from(size) + 1).await?;
        let next_page_token = paging::finish_page(&mut rows, size, |r| r.name.clone());
        Ok(pb::ListPlaybooksResponse {
            playbooks: rows.into_iter().map(playbook_to_proto).collect(),
            next_page_token,
        })
    }
}

impl PlaybooksApi {
    async fn notify_health_changed(
        &self,
        request: pb::NotifyHealthChangedRequest,
    ) -> ApiResult<pb::NotifyHealthChangedResponse> {
        const METHOD: &str = "NotifyHealthChanged";
        let mut violations = Violations::default();
        violations.check(!request.changes.is_empty(), "changes", "must not be empty");
        let mut rows = Vec::with_capacity(request.changes.len());
        for (i, change) in request.changes.iter().enumerate() {
            let path = format!("changes[{i}]");
            violations.parse::<Id, _>(&format!("{path}.account_id"), &change.account_id);
            let kind = match pb::HealthChangeKind::try_from(change.kind) {
                Ok(pb::HealthChangeKind::BandChanged) => Some("health_band_changed"),
                Ok(pb::HealthChangeKind::ScoreDropped) => Some("score_dropped"),
                _ => None,
            };
            violations.check(
                kind.is_some(),
                format!("{path}.kind"),
                "must be BAND_CHANGED or SCORE_DROPPED",
            );
            // A change from nothing (an account's first score) has no previous one.
            for (field, score) in [
                ("previous_score", change.previous_score),
                ("score", change.score),
            ] {
                violations.check(
                    score.is_finite() && (0.0..=100.0).contains(&score),
                    format!("{path}.{field}"),
                    "must be a number from 0 to 100",
                );
            }
            // The enum wins; older senders spell the band as a word.
            let mut band_of = |word: &str, code: i32, fields: (&str, &str)| {
                let band = match code {
                    0 => Band::from_word(word),
                    code => Band::try_from(code)
                        .ok()
                        .filter(|b| *b != Band::Unspecified),
                };
                let field = if code == 0 { fields.0 } else { fields.1 };
                violations.check(
                    band.is_some(),
                    format!("{path}.{field}"),
                    "must be red, yellow or green",
                );
                band.and_then(Band::word)
            };
            let previous_band = band_of(
                &change.previous_band,
                change.from_band,
                ("previous_band", "from_band"),
            );
            let band = band_of(&change.band, change.to_band, ("band", "to_band"));
            let occurred_at = time::timestamp(
                change.occurred_at.as_ref(),
                &format!("{path}.occurred_at"),
                &mut violations,
            );
            if let (Some(kind), Some(occurred_at), Some(previous_band), Some(band)) =
                (kind, occurred_at, previous_band, band)
            {
                let payload = serde_json::json!({
                    "previous_score": change.previous_score,
                    "score": change.score,
                    "previous_band": previous_band,
                    "band": band,
                });
                rows.push(TriggerEvent {
                    kind: kind.to_owned(),
                    account_id: change.account_id.clone(),
                    payload,
                    occurred_at,
                });
            }
        }
        violations.into_result()?;
        self.record_triggers(METHOD, &request, "health", &rows, |n| {
            pb::NotifyHealthChangedResponse { recorded_count: n }
        })
        .await
    }

    async fn notify_renewal_approaching(
        &self,
        request: pb::NotifyRenewalApproachingRequest,
    ) -> ApiResult<pb::NotifyRenewalApproachingResponse> {
        const METHOD: &str = "NotifyRenewalApproaching";
        let mut violations = Violations::default();
        violations.check(
            !request.renewals.is_empty(),
            "renewals",
            "must not be empty",
        );
        let mut rows = Vec::with_capacity(request.renewals.len());
        for (i, renewal) in request.renewals.iter().enumerate() {
            let path = format!("renewals[{i}]");
            violations.parse::<Id, _>(&format!("{path}.account_id"), &renewal.account_id);
            violations.parse::<Id, _>(&format!("{path}.subscription_id"), &renewal.subscription_id);
            violations.check(
                renewal.threshold_days > 0,
                format!("{path}.threshold_days"),
                "must be positive",
            );
            violations.check(
                renewal.days_to_renewal >= 0,
                format!("{path}.days_to_renewal"),
                "must not be negative",
            );
            if let Some(arr) = &renewal.arr {
                tenure_platform::money::non_negative(
                    Some(arr),
                    &format!("{path}.arr"),
                    &mut violations,
                );
            }
            let term_end = time::date(
                renewal.term_end_date.as_ref(),
                &format!("{path}.term_end_date"),
                &mut violations,
            );
            if let Some(term_end) = term_end {
                let payload = serde_json::json!({
                    "subscription_id": renewal.subscription_id,
                    "term_end_date": term_end,
                    "days_to_renewal": renewal.days_to_renewal,
                    "threshold_days": renewal.threshold_days,
                    "arr_minor": renewal.arr.as_ref().map(|m| m.amount_minor),
                    "currency": renewal.arr.as_ref().map(|m| m.currency_code.clone()),
                });
                rows.push(TriggerEvent {
                    kind: "renewal_approaching".to_owned(),
                    account_id: renewal.account_id.clone(),
                    payload,
                    occurred_at: chrono::Utc::now(),
                });
            }
        }
        violations.into_result()?;
        self.record_triggers(METHOD, &request, "renewals", &rows, |n| {
            pb::NotifyRenewalApproachingResponse { recorded_count: n }
        })
        .await
    }

    /// Records events from `source` once per request id and answers with
    /// how many were recorded.
    pub(crate) async fn record_triggers<Req, Resp>(
        &self,
        method: &str,
        request: &Req,
        source: &str,
        rows: &[TriggerEvent],
        respond: impl FnOnce(i32) -> Resp,
    ) -> ApiResult<Resp>
    where
        Req: prost::Message + tenure_proto::Idempotent,
        Resp: prost::Message + Default,
    {
        let response = idempotency::once(&self.pool, SCHEMA, method, request, async |tx| {
            let trace_context = serde_json::to_value(tenure_platform::trace::capture_context(
                &tracing::Span::current(),
            ))
            .unwrap_or_default();
            // One statement for the whole notice, in the order given.
            triggers::record(tx, source, rows, &trace_context).await?;
            Ok(respond(rows.len() as i32))
        })
        .await?;
        Ok(response)
    }
}

fn playbook_to_proto(row: PlaybookVersion) -> pb::Playbook {
    pb::Playbook {
        name: row.name,
        version: row.version,
        title: row.title,
        definition: row.definition,
        format: i32::from(row.format),
        step_count: row.step_count,
        create_time: Some(time::to_timestamp(row.create_time)),
    }
}

#[tonic::async_trait]
impl PlaybooksService for PlaybooksApi {
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

    async fn create_playbook(
        &self,
        request: Request<pb::CreatePlaybookRequest>,
    ) -> Result<Response<pb::CreatePlaybookResponse>, Status> {
        Ok(Response::new(
            self.create_playbook(request.into_inner()).await?,
        ))
    }

    async fn list_playbooks(
        &self,
        request: Request<pb::ListPlaybooksRequest>,
    ) -> Result<Response<pb::ListPlaybooksResponse>, Status> {
        Ok(Response::new(
            self.list_playbooks(request.into_inner()).await?,
        ))
    }

    async fn notify_renewal_approaching(
        &self,
        request: Request<pb::NotifyRenewalApproachingRequest>,
    ) -> Result<Response<pb::NotifyRenewalApproachingResponse>, Status> {
        Ok(Response::new(
            self.notify_renewal_approaching(request.into_inner())
                .await?,
        ))
    }

    async fn notify_health_changed(
        &self,
        request: Request<pb::NotifyHealthChangedRequest>,
    ) -> Result<Response<pb::NotifyHealthChangedResponse>, Status> {
        Ok(Response::new(
            self.notify_health_changed(request.into_inner()).await?,
        ))
    }

    async fn notify_account_events(
        &self,
        request: Request<pb::NotifyAccountEventsRequest>,
    ) -> Result<Response<pb::NotifyAccountEventsResponse>, Status> {
        Ok(Response::new(
            self.notify_account_events(request.into_inner()).await?,
        ))
    }

    async fn notify_contact_erased(
        &self,
        request: Request<pb::NotifyContactErasedRequest>,
    ) -> Result<Response<pb::NotifyContactErasedResponse>, Status> {
        Ok(Response::new(
            self.notify_contact_erased(request.into_inner()).await?,
        ))
    }

    async fn dry_run_playbook(
        &self,
        request: Request<pb::DryRunPlaybookRequest>,
    ) -> Result<Response<pb::DryRunPlaybookResponse>, Status> {
        Ok(Response::new(
            self.dry_run_playbook(request.into_inner()).await?,
        ))
    }

    async fn start_runs(
        &self,
        request: Request<pb::StartRunsRequest>,
    ) -> Result<Response<pb::StartRunsResponse>, Status> {
        Ok(Response::new(self.start_runs(request.into_inner()).await?))
    }

    async fn get_run(
        &self,
        request: Request<pb::GetRunRequest>,
    ) -> Result<Response<pb::GetRunResponse>, Status> {
        Ok(Response::new(self.get_run(request.into_inner()).await?))
    }

    async fn list_runs(
        &self,
        request: Request<pb::ListRunsRequest>,
    ) -> Result<Response<pb::ListRunsResponse>, Status> {
        Ok(Response::new(self.list_runs(request.into_inner()).await?))
    }

    async fn list_dead_letters(
        &self,
        request: Request<pb::ListDeadLettersRequest>,
    ) -> Result<Response<pb::ListDeadLettersResponse>, Status> {
        Ok(Response::new(
            self.list_dead_letters(request.into_inner()).await?,
        ))
    }

    async fn retry_step(
        &self,
        request: Request<pb::RetryStepRequest>,
    ) -> Result<Response<pb::RetryStepResponse>, Status> {
        Ok(Response::new(self.retry_step(request.into_inner()).await?))
    }

    async fn list_tasks(
        &self,
        request: Request<pb::ListTasksRequest>,
    ) -> Result<Response<pb::ListTasksResponse>, Status> {
        Ok(Response::new(self.list_tasks(request.into_inner()).await?))
    }

    async fn complete_task(
        &self,
        request: Request<pb::CompleteTaskRequest>,
    ) -> Result<Response<pb::CompleteTaskResponse>, Status> {
        Ok(Response::new(
            self.complete_task(request.into_inner()).await?,
        ))
    }

    async fn get_account_timeline(
        &self,
        request: Request<pb::GetAccountTimelineRequest>,
    ) -> Result<Response<pb::GetAccountTimelineResponse>, Status> {
        Ok(Response::new(
            self.get_account_timeline(request.into_inner()).await?,
        ))
    }
}
