//! The run and timeline APIs of playbooks (tasks and dead letters have
//! their own modules); storage is [`crate::store::runs`].

use serde_json::Value;
use tenure_platform::input::Id;
use tenure_platform::{ApiError, ApiResult, Violations, idempotency, paging, time};
use tenure_proto::common::v1::AccountEventKind;
use tenure_proto::playbooks::v1 as pb;
use uuid::Uuid;

use crate::SCHEMA;
use crate::grpc::PlaybooksApi;
use crate::plan::{Action, Plan};
use crate::store::runs::{self, RunFilter, RunRow, StepRow};
use crate::store::states::{RunState, StepState};
use crate::store::triggers::TriggerEvent;
use crate::store::versions;

pub(crate) const MAX_ID: usize = 128;

fn run_to_proto(row: RunRow, steps: Vec<pb::StepExecution>) -> pb::Run {
    pb::Run {
        run_id: row.run_id.to_string(),
        playbook: row.playbook,
        version: row.version,
        account_id: row.account_id,
        state: run_state_to_proto(row.state) as i32,
        trigger: row.trigger_kind,
        start_time: Some(time::to_timestamp(row.started_at)),
        end_time: row.ended_at.map(time::to_timestamp),
        steps,
    }
}

pub(crate) fn step_to_proto(row: StepRow) -> pb::StepExecution {
    pb::StepExecution {
        seq: row.seq,
        step_id: row.step_id,
        step_type: row.step_type,
        state: step_state_to_proto(row.state) as i32,
        due_time: Some(time::to_timestamp(row.due_at)),
        attempts: row.attempts,
        last_error: row.last_error,
        result: row.result,
        finish_time: row.finished_at.map(time::to_timestamp),
    }
}

fn run_state_to_proto(state: RunState) -> pb::RunState {
    match state {
        RunState::Active => pb::RunState::Active,
        RunState::Completed => pb::RunState::Completed,
        RunState::Exited => pb::RunState::Exited,
        RunState::Stalled => pb::RunState::Stalled,
    }
}

/// A run state a caller named; `None` when unspecified.
fn run_state_from_proto(state: pb::RunState) -> Option<RunState> {
    match state {
        pb::RunState::Unspecified => None,
        pb::RunState::Active => Some(RunState::Active),
        pb::RunState::Completed => Some(RunState::Completed),
        pb::RunState::Exited => Some(RunState::Exited),
        pb::RunState::Stalled => Some(RunState::Stalled),
    }
}

fn step_state_to_proto(state: StepState) -> pb::StepState {
    match state {
        StepState::Pending => pb::StepState::Pending,
        StepState::Done => pb::StepState::Done,
        StepState::Dead => pb::StepState::Dead,
    }
}

pub(crate) fn parse_uuid(text: &str, field: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| ApiError::invalid(field, "must be an id this service issued"))
}

/// The path a run would take through `plan` on today's facts.
fn dry_path(plan: &Plan, current: &crate::facts::Current) -> Vec<String> {
    let mut path = Vec::new();
    let mut step = plan.first();
    while let Some(s) = step {
        if path.len() >= 50 {
            break;
        }
        path.push(s.id.clone());
        let next = match &s.action {
            Action::End => None,
            Action::Branch(condition) => {
                if current.holds(condition) {
                    s.then.as_deref()
                } else {
                    s.otherwise.as_deref()
                }
            }
            _ => s.next.as_deref(),
        };
        step = next.and_then(|id| plan.step(id));
    }
    path
}

impl PlaybooksApi {
    async fn runs_with_steps(&self, rows: Vec<RunRow>) -> ApiResult<Vec<pb::Run>> {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.run_id).collect();
        let mut steps = runs::steps_of(&self.pool, &ids).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let steps = steps.remove(&r.run_id).unwrap_or_default();
                run_to_proto(r, steps.into_iter().map(step_to_proto).collect())
            })
            .collect())
    }

    pub(crate) async fn run(&self, run_id: Uuid) -> ApiResult<pb::Run> {
        let rows = runs::by_ids(&self.pool, &[run_id]).await?;
        if rows.is_empty() {
            return Err(ApiError::NotFound(format!("run {run_id}")));
        }
        self.runs_with_steps(rows)
            .await?
            .pop()
            .ok_or_else(|| anyhow::anyhow!("a run vanished").into())
    }

    pub(crate) async fn notify_account_events(
        &self,
        request: pb::NotifyAccountEventsRequest,
    ) -> ApiResult<pb::NotifyAccountEventsResponse> {
        const METHOD: &str = "NotifyAccountEvents";
        let mut violations = Violations::default();
        violations.check(!request.events.is_empty(), "events", "must not be empty");
        let mut rows = Vec::with_capacity(request.events.len());
        for (i, event) in request.events.iter().enumerate() {
            let path = format!("events[{i}]");
            violations.parse::<Id, _>(&format!("{path}.account_id"), &event.account_id);
            // The enum wins; older senders spell the kind as a word.
            let (kind, field) = match event.event_kind {
                0 => (AccountEventKind::from_word(&event.kind), "kind"),
                code => (
                    AccountEventKind::try_from(code)
                        .ok()
                        .filter(|k| *k != AccountEventKind::Unspecified),
                    "event_kind",
                ),
            };
            let kind = kind.and_then(AccountEventKind::word);
            if kind.is_none() {
                let words: Vec<String> = AccountEventKind::all().filter_map(|k| k.word()).collect();
                violations.add(
                    format!("{path}.{field}"),
                    format!("must be one of {}", words.join(", ")),
                );
            }
            let occurred_at = time::timestamp(
                event.occurred_at.as_ref(),
                &format!("{path}.occurred_at"),
                &mut violations,
            );
            for (key, value) in &event.attributes {
                violations.check(
                    key.len() <= 64 && value.len() <= 1000,
                    format!("{path}.attributes[{key}]"),
                    "keys are at most 64 and values 1000 characters",
                );
            }
            if let (Some(kind), Some(occurred_at)) = (kind, occurred_at) {
                let payload: serde_json::Map<String, Value> = event
                    .attributes
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                rows.push(TriggerEvent {
                    kind,
                    account_id: event.account_id.clone(),
                    payload: Value::Object(payload),
                    occurred_at,
                });
            }
        }
        violations.into_result()?;
        self.record_triggers(METHOD, &request, "ingestion", &rows, |n| {
            pb::NotifyAccountEventsResponse { recorded_count: n }
        })
        .await
    }

    async fn plan_from(&self, name: &str, definition: &str, format: i32) -> ApiResult<(Plan, i32)> {
        if !definition.is_empty() {
            let format = crate::definition::Format::from_code(format)
                .ok_or_else(|| ApiError::invalid("format", "must be JSON or YAML"))?;
            let mut violations = Violations::default();
            let compiled =
                crate::plan::compile_document(definition, format, "definition", &mut violations);
            violations.into_result()?;
            let (_, plan) =
                compiled.ok_or_else(|| anyhow::anyhow!("a valid definition did not compile"))?;
            return Ok((plan, 0));
        }
        let stored = versions::latest(&self.pool, name)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("playbook {name}")))?;
        let plan = self.engine.plan(&stored.name, stored.version).await?;
        Ok(((*plan).clone(), stored.version))
    }

    pub(crate) async fn dry_run_playbook(
        &self,
        request: pb::DryRunPlaybookRequest,
    ) -> ApiResult<pb::DryRunPlaybookResponse> {
        let mut violations = Violations::default();
        violations.check(
            request.name.is_empty() != request.definition.is_empty(),
            "name",
            "give either a playbook name or a definition",
        );
        violations.check(
            request.account_ids.len() <= 500,
            "account_ids",
            "must hold at most 500 ids",
        );
        let mut ids: Vec<String> = violations
            .parse_each::<Id>("account_ids", &request.account_ids)
            .into_iter()
            .map(Id::into_string)
            .collect();
        violations.into_result()?;
        let (plan, _) = self
            .plan_from(&request.name, &request.definition, request.format)
            .await?;
        if ids.is_empty() {
            let page = self
                .engine
                .peers()
                .ingestion
                .clone()
                .list_accounts(tenure_proto::ingestion::v1::ListAccountsRequest {
                    page_size: 500,
                    ..Default::default()
                })
                .await
                .map_err(|s| ApiError::from_upstream(s, "accounts"))?
                .into_inner();
            ids = page.accounts.into_iter().map(|a| a.account_id).collect();
        }
        let peers = self.engine.peers();
        let conditions: Vec<&crate::plan::Condition> = plan
            .steps
            .iter()
            .filter_map(|s| match &s.action {
                Action::Branch(c) => Some(c),
                _ => None,
            })
            .collect();
        let mut accounts = Vec::new();
        for account_id in ids {
            let mut entry = pb::DryRunAccount {
                account_id: account_id.clone(),
                ..Default::default()
            };
            let account = peers
                .account_for(&account_id, &plan.audience)
                .await
                .map_err(|s| ApiError::from_upstream(s, "account"))?;
            let Some(account) = account else {
                entry.reason = "ingestion does not know the account".to_owned();
                accounts.push(entry);
                continue;
            };
            if let Some(reason) = account.outside(&plan.audience) {
                entry.reason = reason;
                accounts.push(entry);
                continue;
            }
            let active = runs::is_open(&self.pool, &plan.name, &account_id).await?;
            if active {
                entry.reason = "a run of this playbook is already active".to_owned();
                accounts.push(entry);
                continue;
            }
            let current = peers.current(&account_id, &conditions).await?;
            entry.would_enter = true;
            entry.path = dry_path(&plan, &current);
            accounts.push(entry);
        }
        Ok(pb::DryRunPlaybookResponse { accounts })
    }

    pub(crate) async fn start_runs(
        &self,
        request: pb::StartRunsRequest,
    ) -> ApiResult<pb::StartRunsResponse> {
        const METHOD: &str = "StartRuns";
        let mut violations = Violations::default();
        let playbook: Option<Id> = violations.parse("playbook", &request.playbook);
        violations.check(
            (1..=10_000).contains(&request.account_ids.len()),
            "account_ids",
            "must hold 1 to 10000 ids",
        );
        let account_ids: Vec<Id> = violations.parse_each("account_ids", &request.account_ids);
        violations.into_result()?;
        let playbook =
            playbook.ok_or_else(|| anyhow::anyhow!("a valid playbook name is missing"))?;
        let stored = versions::latest(&self.pool, playbook.as_str())
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("playbook {playbook}")))?;
        let plan = self.engine.plan(&stored.name, stored.version).await?;
        // Facts are read before the transaction: no remote call holds it open.
        let accounts = self
            .engine
            .peers()
            .accounts_for(&account_ids, &plan.audience)
            .await
            .map_err(|s| ApiError::from_upstream(s, "accounts"))?;
        let response = idempotency::once(&self.pool, SCHEMA, METHOD, &request, async |tx| {
            let trace_context = serde_json::to_value(tenure_platform::trace::capture_context(
                &tracing::Span::current(),
            ))
            .unwrap_or_default();
            let mut skipped = Vec::new();
            let mut eligible = Vec::with_capacity(accounts.len());
            for (account_id, account) in accounts {
                let Some(account) = account else {
                    skipped.push(pb::DryRunAccount {
                        account_id,
                        reason: "ingestion does not know the account".to_owned(),
                        ..Default::default()
                    });
                    continue;
                };
                if let Some(reason) = account.outside(&plan.audience) {
                    skipped.push(pb::DryRunAccount {
                        account_id,
                        reason,
                        ..Default::default()
                    });
                    continue;
                }
                eligible.push(account);
            }
            let start = crate::engine::Start {
                trigger: "manual",
                event_id: None,
                payload: &serde_json::json!({}),
                trace_context: &trace_context,
            };
            let answers = self
                .engine
                .start_runs(&mut *tx, (&plan, stored.version), &eligible, &start)
                .await?;
            let mut started = Vec::new();
            for (account, answer) in eligible.into_iter().zip(answers) {
                match answer {
                    Ok(run_id) => started.push(run_id),
                    Err(reason) => skipped.push(pb::DryRunAccount {
                        account_id: account.id,
                        reason,
                        ..Default::default()
                    }),
                }
            }
            let rows = runs::by_ids(&mut *tx, &started).await?;
            let runs = rows
                .into_iter()
                .map(|r| run_to_proto(r, Vec::new()))
                .collect();
            Ok(pb::StartRunsResponse { runs, skipped })
        })
        .await?;
        self.engine.wakeup.notify_waiters();
        Ok(response)
    }

    pub(crate) async fn get_run(
        &self,
        request: pb::GetRunRequest,
    ) -> ApiResult<pb::GetRunResponse> {
        let run_id = parse_uuid(&request.run_id, "run_id")?;
        Ok(pb::GetRunResponse {
            run: Some(self.run(run_id).await?),
        })
    }

    pub(crate) async fn list_runs(
        &self,
        request: pb::ListRunsRequest,
    ) -> ApiResult<pb::ListRunsResponse> {
        let size = paging::page_size(request.page_size)?;
        let after: Option<Uuid> = paging::decode_token(&request.page_token)?;
        let mut violations = Violations::default();
        violations.limit_text(&request.account_id, "account_id", MAX_ID);
        violations.limit_text(&request.playbook, "playbook", MAX_ID);
        let state = match pb::RunState::try_from(request.state) {
            Ok(state) => run_state_from_proto(state),
            Err(_) => {
                violations.add("state", "is not a known run state");
                None
            }
        };
        violations.into_result()?;
        let filter = RunFilter {
            account_id: &request.account_id,
            playbook: &request.playbook,
            state,
        };
        let mut rows = runs::list(&self.pool, &filter, after, i64::from(size) + 1).await?;
        let next_page_token = paging::finish_page(&mut rows, size, |r| r.run_id);
        Ok(pb::ListRunsResponse {
            runs: self.runs_with_steps(rows).await?,
            next_page_token,
        })
    }

    pub(crate) async fn get_account_timeline(
        &self,
        request: pb::GetAccountTimelineRequest,
    ) -> ApiResult<pb::GetAccountTimelineResponse> {
        let mut violations = Violations::default();
        violations.parse::<Id, _>("account_id", &request.account_id);
        violations.check(
            (0..=1000).contains(&request.limit),
            "limit",
            "must be between 0 and 1000",
        );
        violations.into_result()?;
        let limit = if request.limit == 0 {
            200
        } else {
            i64::from(request.limit)
        };
        let entries = runs::timeline(&self.pool, &request.account_id, limit).await?;
        Ok(pb::GetAccountTimelineResponse {
            entries: entries
                .into_iter()
                .map(|e| pb::TimelineEntry {
                    time: Some(time::to_timestamp(e.at)),
                    kind: e.kind,
                    run_id: e.run_id.map(|id| id.to_string()).unwrap_or_default(),
                    playbook: e.playbook,
                    detail: e.detail,
                })
                .collect(),
        })
    }
}
