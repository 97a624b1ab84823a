//! Due steps, claimed in batches under row locks (`FOR UPDATE SKIP
//! LOCKED`), executed, and their outcomes recorded in the same transaction.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use tenure_platform::trace::set_parent_from;
use tracing::Instrument as _;
use uuid::Uuid;

use super::Engine;
use super::steps::{Changes, finish_step, rearm};
use crate::plan::{Action, Condition, Plan, PlanStep, Wait};
use crate::store::states::{RunState, StepState};

/// What a step's execution came to.
#[derive(Clone)]
pub(super) enum Outcome {
    /// Done; go to the step named, or end the run.
    Next(Option<String>, String),
    /// Not done yet: look again at `due`.
    Rearm {
        due: DateTime<Utc>,
        deadline: Option<DateTime<Utc>>,
        result: String,
    },
    /// The exit criteria hold: the run ends early.
    Exit(String),
    /// Failed; retried with backoff, dead-lettered after the last attempt.
    Fail(String),
}

#[derive(sqlx::FromRow)]
pub(super) struct Due {
    pub(super) run_id: Uuid,
    pub(super) seq: i32,
    pub(super) step_id: String,
    pub(super) step_type: String,
    pub(super) attempts: i32,
    pub(super) armed: bool,
    pub(super) deadline: Option<DateTime<Utc>>,
    pub(super) due_at: DateTime<Utc>,
    /// When this execution took the step up.
    pub(super) picked_at: DateTime<Utc>,
    pub(super) playbook: String,
    pub(super) version: i32,
    pub(super) account_id: String,
    pub(super) facts: Value,
    pub(super) trace_context: Value,
}

/// The statement that claims up to `$1` due steps of active runs, with
/// each one's run, locking the steps until the claiming transaction ends.
/// Locked, not updated: the time a step was taken up is written with its
/// outcome, so a step leaves one dead row version, not two, in a table that
/// every claim scans. States as constants, so that the index of pending
/// steps serves. The run's state is tested as an expression, so that its
/// run is found by its key: tested as a column, it let the planner take the
/// partial index of active runs instead, and with statistics gathered while
/// no run was active (one active run estimated) it read that whole index
/// once per due step (a claim of 10,000 due steps took 27 s).
pub fn claim_statement() -> String {
    format!(
        "SELECT s.run_id, s.seq, s.step_id, s.step_type, s.attempts, \
           s.started_at IS NOT NULL AS armed, s.deadline, s.due_at, \
           clock_timestamp() AS picked_at, r.playbook, r.version, r.account_id, r.facts, \
           r.trace_context \
         FROM playbooks.steps s JOIN playbooks.runs r USING (run_id) \
         WHERE s.state = {pending} AND s.due_at <= now() AND r.state + 0 = {active} \
         ORDER BY s.due_at LIMIT $1 FOR UPDATE OF s SKIP LOCKED",
        pending = StepState::Pending,
        active = RunState::Active,
    )
}

impl Engine {
    /// How long until the earliest waiting step of a running playbook falls
    /// due (zero when one is due now but held by another executor); `None`
    /// when no step waits.
    pub(super) async fn next_due(&self) -> sqlx::Result<Option<std::time::Duration>> {
        // States as constants, so that the index of pending steps serves
        // (and the run's state as an expression, see `claim_statement`).
        let seconds: Option<f64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT extract(epoch FROM min(s.due_at) - now())::float8 \
             FROM playbooks.steps s JOIN playbooks.runs r USING (run_id) \
             WHERE s.state = {pending} AND r.state + 0 = {active}",
            pending = StepState::Pending,
            active = RunState::Active,
        )))
        .fetch_one(&self.pool)
        .await?;
        Ok(seconds.map(|s| std::time::Duration::from_secs_f64(s.clamp(0.0, 86_400.0))))
    }

    /// Executes a batch of due steps (up to `PLAYBOOKS_CLAIM_BATCH`) in one
    /// transaction: each is locked until the batch commits, and all of a
    /// batch's effects commit together. Returns how many ran.
    pub async fn execute_batch(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let batch: Vec<Due> = sqlx::query_as(sqlx::AssertSqlSafe(claim_statement()))
            .bind(self.config.claim_batch)
            .fetch_all(&mut *tx)
            .await?;
        let count = batch.len();
        let now = Utc::now();
        for due in &batch {
            let late = (now - due.due_at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::histogram!("playbook_step_delay_seconds", "step_type" => due.step_type.clone())
                .record(late);
        }
        // What the batch reads from its own database is read here, on the
        // transaction's connection: an executor holding a connection never
        // waits for a second one from the pool.
        let run_ids: Vec<Uuid> = batch.iter().map(|due| due.run_id).collect();
        let outcomes = crate::facts::task_outcomes(&mut *tx, &run_ids).await?;
        let mut plans: HashMap<(String, i32), Result<Arc<Plan>, String>> = HashMap::new();
        for due in &batch {
            let key = (due.playbook.clone(), due.version);
            if let std::collections::hash_map::Entry::Vacant(slot) = plans.entry(key) {
                let plan = self
                    .plan_on(&mut tx, &due.playbook, due.version)
                    .await
                    .map_err(|error| format!("{error:#}"));
                slot.insert(plan);
            }
        }
        // Then, for the whole batch at once: exit criteria, and every
        // webhook called, so one slow endpoint does not hold up the others.
        let spans: Vec<tracing::Span> = batch.iter().map(step_span).collect();
        let prepared: Vec<Prepared> =
            futures::future::join_all(batch.iter().zip(&spans).map(|(due, span)| {
                let plan = plans[&(due.playbook.clone(), due.version)].clone();
                self.prepare(due, plan, outcomes.get(&due.run_id))
                    .instrument(span.clone())
            }))
            .await
            .into_iter()
            .map(|p| p.map_err(|error| format!("{error:#}")))
            .collect();
        // Then the outcomes are recorded inside the transaction that holds
        // the steps. Fast: the whole batch at once, one statement per kind
        // of change. Should any statement fail, that attempt is rolled back
        // (the steps stay locked) and the batch is recorded step by step,
        // each in a savepoint of its own, so only the failing step counts
        // a failed attempt. Emails are sent while their step is recorded,
        // so a batch holding one goes step by step from the start.
        let sends_email = batch.iter().any(|due| due.step_type == "email");
        if !sends_email {
            let mut attempt = sqlx::Connection::begin(&mut *tx).await?;
            match self
                .record_batch(&mut attempt, &batch, &spans, &prepared)
                .await
            {
                Ok(counts) => {
                    attempt.commit().await?;
                    tx.commit().await?;
                    for (due, result) in batch.iter().zip(counts) {
                        if let Some(result) = result {
                            Self::count(due, result);
                        }
                    }
                    return Ok(count);
                }
                Err(error) => {
                    attempt.rollback().await?;
                    tracing::warn!(
                        error = %format!("{error:#}"),
                        "recording a batch of steps at once failed; recording them one by one"
                    );
                }
            }
        }
        for ((due, span), prepared) in batch.iter().zip(spans).zip(prepared) {
            let done: anyhow::Result<()> = async {
                let (plan, early) = prepared.map_err(anyhow::Error::msg)?;
                let step = step_of(&plan, due).map_err(anyhow::Error::msg)?;
                let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
                let outcome = match early {
                    Some(outcome) => outcome,
                    None => self.execute(&mut savepoint, &plan, step, due).await,
                };
                if let Outcome::Fail(error) = outcome {
                    // What the step wrote goes (a failed statement leaves
                    // the savepoint unusable); the failure is recorded
                    // with its own cause below.
                    savepoint.rollback().await?;
                    anyhow::bail!(error);
                }
                self.record(&mut savepoint, &plan, due, outcome).await?;
                savepoint.commit().await?;
                Ok(())
            }
            .instrument(span)
            .await;
            if let Err(error) = done {
                self.fail_step(&mut tx, due, &format!("{error:#}")).await?;
            }
        }
        tx.commit().await?;
        Ok(count)
    }

    /// Executes and records a whole batch: steps finished, steps inserted
    /// and runs ended each with one statement. On an error the caller rolls
    /// back. Returns the result to count for each step (counted once the
    /// batch commits).
    async fn record_batch(
        &self,
        tx: &mut PgConnection,
        batch: &[Due],
        spans: &[tracing::Span],
        prepared: &[Prepared],
    ) -> anyhow::Result<Vec<Option<&'static str>>> {
        let mut changes = Changes::default();
        let mut counts = Vec::with_capacity(batch.len());
        for ((due, span), prepared) in batch.iter().zip(spans).zip(prepared) {
            let (plan, early) = match prepared {
                Ok(prepared) => prepared,
                Err(error) => {
                    counts.push(self.fail_step_uncounted(tx, due, error).await?);
                    continue;
                }
            };
            let step = match step_of(plan, due) {
                Ok(step) => step,
                Err(error) => {
                    counts.push(self.fail_step_uncounted(tx, due, &error).await?);
                    continue;
                }
            };
            let outcome = match early.clone() {
                Some(outcome) => outcome,
                None => {
                    self.execute(tx, plan, step, due)
                        .instrument(span.clone())
                        .await
                }
            };
            counts.push(
                self.changes_of(tx, plan, due, outcome, &mut changes)
                    .await?,
            );
        }
        changes.apply(tx).await?;
        Ok(counts)
    }

    /// What can be settled before the transaction's statements: the exit
    /// criteria and a webhook's call. `None`: execute in the transaction.
    async fn prepare(
        &self,
        due: &Due,
        plan: Result<Arc<Plan>, String>,
        outcomes: Option<&HashMap<String, String>>,
    ) -> anyhow::Result<(Arc<Plan>, Option<Outcome>)> {
        let plan = plan.map_err(anyhow::Error::msg)?;
        let Some(step) = plan.step(&due.step_id) else {
            return Ok((plan, None));
        };
        let early = match self.exit_criteria_met(&plan, step, due, outcomes).await {
            Ok(true) => Some(Outcome::Exit("exit criteria met".to_owned())),
            Err(error) => Some(Outcome::Fail(format!("{error:#}"))),
            Ok(false) => match &step.action {
                Action::Webhook { url } => {
                    Some(match self.call_webhook(&plan, step, due, url).await {
                        Ok(status) => Outcome::Next(step.next.clone(), status),
                        Err(error) => Outcome::Fail(format!("{error:#}")),
                    })
                }
                _ => None,
            },
        };
        Ok((plan, early))
    }

    async fn exit_criteria_met(
        &self,
        plan: &Plan,
        step: &PlanStep,
        due: &Due,
        outcomes: Option<&HashMap<String, String>>,
    ) -> anyhow::Result<bool> {
        let Some(exit) = &plan.exit_when else {
            return Ok(false);
        };
        if matches!(step.action, Action::End) {
            return Ok(false);
        }
        let mut current = self.peers.current(&due.account_id, &[exit]).await?;
        current.task_outcomes = outcomes.cloned().unwrap_or_default();
        Ok(current.holds(exit))
    }

    async fn execute(
        &self,
        tx: &mut PgConnection,
        plan: &Plan,
        step: &PlanStep,
        due: &Due,
    ) -> Outcome {
        let result = match &step.action {
            Action::End => Ok(Outcome::Next(None, "ended".to_owned())),
            Action::Task {
                assignee,
                title,
                body,
                due_in_days,
                priority,
            } => self
                .create_task(
                    tx,
                    due,
                    assignee,
                    &title.render(&due.facts),
                    &body.render(&due.facts),
                    *due_in_days,
                    priority,
                )
                .await
                .map(|created| Outcome::Next(step.next.clone(), created)),
            Action::Email {
                to_role,
                subject,
                body,
            } => self
                .send_email(
                    tx,
                    due,
                    to_role,
                    &subject.render(&due.facts),
                    &body.render(&due.facts),
                )
                .await
                .map(|sent| Outcome::Next(step.next.clone(), sent)),
            Action::Webhook { url } => self
                .call_webhook(plan, step, due, url)
                .await
                .map(|status| Outcome::Next(step.next.clone(), status)),
            Action::Wait(wait) => self.wait(tx, step, due, wait).await,
            Action::Branch(condition) => self.run_facts(tx, due, condition).await.map(|current| {
                if current.holds(condition) {
                    Outcome::Next(step.then.clone(), "then".to_owned())
                } else {
                    Outcome::Next(step.otherwise.clone(), "else".to_owned())
                }
            }),
        };
        result.unwrap_or_else(|error| Outcome::Fail(format!("{error:#}")))
    }

    /// What `condition` needs to be judged for the run of `due`: its
    /// account's facts from the peers and the run's task outcomes, read on
    /// the transaction's connection.
    async fn run_facts(
        &self,
        tx: &mut PgConnection,
        due: &Due,
        condition: &Condition,
    ) -> anyhow::Result<crate::facts::Current> {
        let mut current = self.peers.current(&due.account_id, &[condition]).await?;
        current.task_outcomes = crate::facts::task_outcomes(&mut *tx, &[due.run_id])
            .await?
            .remove(&due.run_id)
            .unwrap_or_default();
        Ok(current)
    }

    async fn wait(
        &self,
        tx: &mut PgConnection,
        step: &PlanStep,
        due: &Due,
        wait: &Wait,
    ) -> anyhow::Result<Outcome> {
        let now = Utc::now();
        Ok(match wait {
            Wait::For(duration) if !due.armed => Outcome::Rearm {
                due: now + chrono::Duration::from_std(*duration)?,
                deadline: None,
                result: "waiting".to_owned(),
            },
            Wait::Until(day) if !due.armed => Outcome::Rearm {
                due: day.and_time(chrono::NaiveTime::MIN).and_utc().max(now),
                deadline: None,
                result: "waiting".to_owned(),
            },
            Wait::For(_) | Wait::Until(_) => Outcome::Next(step.next.clone(), "waited".to_owned()),
            Wait::Condition { condition, timeout } => {
                let current = self.run_facts(tx, due, condition).await?;
                let deadline = match due.deadline {
                    Some(deadline) => deadline,
                    None => now + chrono::Duration::from_std(*timeout)?,
                };
                if current.holds(condition) {
                    Outcome::Next(step.next.clone(), "condition met".to_owned())
                } else if now >= deadline {
                    match &step.on_timeout {
                        Some(target) => Outcome::Next(Some(target.clone()), "timed out".to_owned()),
                        None => Outcome::Exit("timed out waiting".to_owned()),
                    }
                } else {
                    Outcome::Rearm {
                        due: (now + chrono::Duration::from_std(self.config.condition_poll)?)
                            .min(deadline),
                        deadline: Some(deadline),
                        result: "waiting for the condition".to_owned(),
                    }
                }
            }
        })
    }

    fn count(due: &Due, result: &'static str) {
        metrics::counter!(
            "playbook_steps_total",
            "playbook" => due.playbook.clone(),
            "step_type" => due.step_type.clone(),
            "result" => result,
        )
        .increment(1);
    }

    /// Records one step's outcome (the step-by-step path), counting it.
    async fn record(
        &self,
        tx: &mut PgConnection,
        plan: &Plan,
        due: &Due,
        outcome: Outcome,
    ) -> anyhow::Result<()> {
        let mut changes = Changes::default();
        let result = self
            .changes_of(tx, plan, due, outcome, &mut changes)
            .await?;
        changes.apply(tx).await?;
        if let Some(result) = result {
            Self::count(due, result);
        }
        Ok(())
    }

    /// What a step's outcome changes: steps finished, steps due next and
    /// runs ended go into `changes`; a wait looked at later or a failed
    /// attempt is written at once. Returns the result to count, if any.
    async fn changes_of(
        &self,
        tx: &mut PgConnection,
        plan: &Plan,
        due: &Due,
        outcome: Outcome,
        changes: &mut Changes,
    ) -> anyhow::Result<Option<&'static str>> {
        let finished = |result| (due.run_id, due.seq, due.picked_at, StepState::Done, result);
        Ok(match outcome {
            Outcome::Next(target, result) => {
                changes.finished.push(finished(result));
                match target.as_deref().and_then(|t| plan.step(t)) {
                    Some(next) => changes.inserted.push((
                        due.run_id,
                        due.seq + 1,
                        next.id.clone(),
                        next.type_name().to_owned(),
                    )),
                    None => changes.ended.push((due.run_id, RunState::Completed)),
                }
                Some("done")
            }
            Outcome::Exit(result) => {
                changes.finished.push(finished(result));
                changes.ended.push((due.run_id, RunState::Exited));
                Some("exited")
            }
            Outcome::Rearm {
                due: at,
                deadline,
                result,
            } => {
                let key = (due.run_id, due.seq);
                rearm(tx, key, due.picked_at, at, deadline, &result).await?;
                None
            }
            Outcome::Fail(error) => self.fail_step_uncounted(tx, due, &error).await?,
        })
    }

    /// A failed attempt: retried after a backoff, dead-lettered (and its run
    /// stalled) after the last attempt.
    async fn fail_step(&self, tx: &mut PgConnection, due: &Due, error: &str) -> anyhow::Result<()> {
        if let Some(result) = self.fail_step_uncounted(tx, due, error).await? {
            Self::count(due, result);
        }
        Ok(())
    }

    /// [`Self::fail_step`], returning the result to count instead of
    /// counting it.
    async fn fail_step_uncounted(
        &self,
        tx: &mut PgConnection,
        due: &Due,
        error: &str,
    ) -> anyhow::Result<Option<&'static str>> {
        let attempts = due.attempts + 1;
        tracing::warn!(run_id = %due.run_id, step = %due.step_id, attempts, %error, "playbook step failed");
        if attempts >= self.config.max_attempts {
            finish_step(
                tx,
                (due.run_id, due.seq),
                due.picked_at,
                StepState::Dead,
                "dead-lettered",
                error,
            )
            .await?;
            sqlx::query("UPDATE playbooks.runs SET state = $2 WHERE run_id = $1")
                .bind(due.run_id)
                .bind(RunState::Stalled)
                .execute(&mut *tx)
                .await?;
            Ok(Some("dead_lettered"))
        } else {
            let delay = tenure_platform::backoff::delay_after(
                self.config.retry_base,
                self.config.retry_cap,
                attempts,
            );
            sqlx::query(
                "UPDATE playbooks.steps SET attempts = $3, last_error = $4, due_at = now() + $5, \
                   picked_at = $6 WHERE run_id = $1 AND seq = $2",
            )
            .bind(due.run_id)
            .bind(due.seq)
            .bind(attempts)
            .bind(error)
            .bind(chrono::Duration::from_std(delay)?)
            .bind(due.picked_at)
            .execute(&mut *tx)
            .await?;
            Ok(Some("retried"))
        }
    }
}

/// The step of `plan` that `due` names (a plan's versions never change, so
/// a missing step is an error of the stored run).
fn step_of<'p>(plan: &'p Plan, due: &Due) -> Result<&'p PlanStep, String> {
    plan.step(&due.step_id).ok_or_else(|| {
        format!(
            "step {} is not in {} v{}",
            due.step_id, due.playbook, due.version
        )
    })
}

/// What `prepare` settled of a step, its error as text (a batch recorded
/// at once may fall back to being recorded step by step).
type Prepared = Result<(Arc<Plan>, Option<Outcome>), String>;

/// The span of one step's execution, in the trace of the event that
/// started its run.
fn step_span(due: &Due) -> tracing::Span {
    let span = tracing::info_span!(
        "playbook.step",
        playbook = %due.playbook,
        step = %due.step_id,
        run_id = %due.run_id,
        account_id = %due.account_id,
    );
    if let Ok(carrier) =
        serde_json::from_value::<HashMap<String, String>>(due.trace_context.clone())
    {
        set_parent_from(&span, &carrier);
    }
    span
}
