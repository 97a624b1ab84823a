//! Trigger events, once each, matched against the latest playbooks; a run
//! started per matching account unless one is active or cooling down.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::Engine;
use super::steps::insert_first_steps;
use crate::facts::Account;
use crate::plan::Plan;
use crate::store::states::{RunState, StepState};

/// What starts a run: the trigger's kind, the trigger event (if any), its
/// payload and the trace it came in.
pub struct Start<'a> {
    pub trigger: &'a str,
    pub event_id: Option<i64>,
    pub payload: &'a Value,
    pub trace_context: &'a Value,
}

impl Engine {
    /// Starts a run of `plan` for `account` unless one is active or the
    /// playbook's cooldown has not passed. Returns the run id if started,
    /// or why not.
    pub async fn start_run(
        &self,
        tx: &mut PgConnection,
        (plan, version): (&Plan, i32),
        account: &Account,
        start: &Start<'_>,
    ) -> anyhow::Result<Result<Uuid, String>> {
        let mut started = self
            .start_runs(tx, (plan, version), std::slice::from_ref(account), start)
            .await?;
        Ok(started
            .pop()
            .unwrap_or_else(|| Err("not started".to_owned())))
    }

    /// [`Engine::start_run`] for many accounts at once, with three
    /// statements whatever their number (a start of thousands of runs
    /// holds its transaction for milliseconds, so the executors' finished
    /// steps can be cleaned up behind it). One answer per account, in
    /// order; an account given twice starts one run.
    pub async fn start_runs(
        &self,
        tx: &mut PgConnection,
        (plan, version): (&Plan, i32),
        accounts: &[Account],
        start: &Start<'_>,
    ) -> anyhow::Result<Vec<Result<Uuid, String>>> {
        let Some(first) = plan.first() else {
            return Ok(vec![
                Err("the playbook has no steps".to_owned());
                accounts.len()
            ]);
        };
        let ids: Vec<&str> = accounts.iter().map(|a| a.id.as_str()).collect();
        let recent: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT account_id, max(started_at) FROM playbooks.runs \
             WHERE playbook = $1 AND account_id = ANY($2) GROUP BY account_id",
        )
        .bind(&plan.name)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        let recent: std::collections::HashMap<String, DateTime<Utc>> = recent.into_iter().collect();
        let now = Utc::now();
        let cooling = |account: &Account| {
            recent
                .get(&account.id)
                .is_some_and(|at| *at + plan.cooldown > now)
        };
        let (mut run_ids, mut run_accounts, mut facts) = (Vec::new(), Vec::new(), Vec::new());
        let mut proposed: Vec<Option<Uuid>> = Vec::with_capacity(accounts.len());
        for account in accounts {
            if cooling(account) {
                proposed.push(None);
                continue;
            }
            let run_id = Uuid::now_v7();
            proposed.push(Some(run_id));
            run_ids.push(run_id);
            run_accounts.push(account.id.as_str());
            facts.push(json!({
                "account": account.facts(),
                "trigger": start.payload,
                "playbook": {"name": plan.name, "title": plan.title},
                "run": {"id": run_id.to_string()},
            }));
        }
        // The conflict names the index of open runs by its predicate; a run
        // already open (or one this statement opened for the same account)
        // leaves the row out.
        let inserted: Vec<Uuid> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "INSERT INTO playbooks.runs (run_id, playbook, version, account_id, state, trigger_kind, \
               trigger_event_id, facts, trace_context) \
             SELECT u.run_id, $4, $5, u.account_id, {active}, $6, $7, u.facts, $8 \
             FROM UNNEST($1::uuid[], $2::text[], $3::jsonb[]) WITH ORDINALITY AS u(run_id, account_id, facts, n) \
             ORDER BY u.n \
             ON CONFLICT (playbook, account_id) WHERE state IN ({active}, {stalled}) DO NOTHING \
             RETURNING run_id",
            active = RunState::Active,
            stalled = RunState::Stalled,
        )))
        .bind(&run_ids)
        .bind(&run_accounts)
        .bind(&facts)
        .bind(&plan.name)
        .bind(version)
        .bind(start.trigger)
        .bind(start.event_id)
        .bind(start.trace_context)
        .fetch_all(&mut *tx)
        .await?;
        let inserted: std::collections::HashSet<Uuid> = inserted.into_iter().collect();
        let firsts: Vec<Uuid> = run_ids
            .iter()
            .filter(|id| inserted.contains(id))
            .copied()
            .collect();
        insert_first_steps(tx, &firsts, first, now).await?;
        if !firsts.is_empty() {
            self.wakeup.notify_waiters();
        }
        Ok(proposed
            .into_iter()
            .map(|run_id| match run_id {
                None => Err("the playbook's cooldown has not passed".to_owned()),
                Some(id) if inserted.contains(&id) => Ok(id),
                Some(_) => Err("a run of this playbook is already active".to_owned()),
            })
            .collect())
    }

    /// Matches received trigger events against the playbooks, once each.
    pub async fn match_events(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let events: Vec<(i64, String, String, Value, Value)> = sqlx::query_as(
            "SELECT id, kind, account_id, payload, trace_context FROM playbooks.trigger_events \
             WHERE matched_at IS NULL ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED",
        )
        .fetch_all(&mut *tx)
        .await?;
        if events.is_empty() {
            return Ok(0);
        }
        let plans = self.latest_plans_on(&mut tx).await?;
        for (id, kind, account_id, payload, trace_context) in &events {
            let matching: Vec<&(i32, Arc<Plan>)> = plans
                .iter()
                .filter(|(_, p)| p.trigger.kind() == kind && p.trigger.matches(payload))
                .collect();
            if matching.is_empty() {
                continue;
            }
            let Some(mut account) = self.peers.account(account_id).await? else {
                continue;
            };
            if matching.iter().any(|(_, p)| {
                p.audience.arr_min_minor.is_some() || p.audience.arr_max_minor.is_some()
            }) {
                account.arr_minor = self
                    .peers
                    .signals(account_id)
                    .await?
                    .and_then(|s| s.arr)
                    .map(|m| m.amount_minor);
            }
            for (version, plan) in matching {
                if account.outside(&plan.audience).is_some() {
                    continue;
                }
                let started = self
                    .start_run(
                        &mut tx,
                        (plan, *version),
                        &account,
                        &Start {
                            trigger: kind,
                            event_id: Some(*id),
                            payload,
                            trace_context,
                        },
                    )
                    .await?;
                if let Ok(run_id) = started {
                    tracing::info!(%run_id, playbook = %plan.name, account_id, "run started");
                }
            }
        }
        let ids: Vec<i64> = events.iter().map(|e| e.0).collect();
        sqlx::query("UPDATE playbooks.trigger_events SET matched_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        // Something happened to these accounts: runs waiting on a condition
        // look again now rather than at their next poll.
        let accounts: Vec<&str> = events.iter().map(|e| e.2.as_str()).collect();
        sqlx::query(
            "UPDATE playbooks.steps s SET due_at = now() FROM playbooks.runs r \
             WHERE r.run_id = s.run_id AND r.account_id = ANY($1) AND r.state = $2 \
               AND s.state = $3 AND s.step_type = 'wait' AND s.deadline IS NOT NULL AND s.due_at > now()",
        )
        .bind(&accounts)
        .bind(RunState::Active)
        .bind(StepState::Pending)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // Those steps are due now; executors resting until later wake.
        self.wakeup.notify_waiters();
        Ok(events.len())
    }
}
