//! Trigger events, once each, matched against the latest playbooks; a run
//! started per matching account unless one is active or cooling down.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgConnection;
use uuid::Uuid;

use super::Engine;
use super::steps::{RunState, StepState, insert_step};
use crate::facts::Account;
use crate::plan::Plan;

impl Engine {
    /// Starts a run of `plan` for `account` unless one is active or the
    /// playbook's cooldown has not passed. Returns the run id if started.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_run(
        &self,
        tx: &mut PgConnection,
        plan: &Plan,
        version: i32,
        account: &Account,
        trigger: &str,
        event_id: Option<i64>,
        payload: &Value,
        trace_context: &Value,
    ) -> anyhow::Result<Result<Uuid, String>> {
        let recent: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT max(started_at) FROM playbooks.runs WHERE playbook = $1 AND account_id = $2",
        )
        .bind(&plan.name)
        .bind(&account.id)
        .fetch_one(&mut *tx)
        .await?;
        if recent.is_some_and(|at| at + plan.cooldown > Utc::now()) {
            return Ok(Err("the playbook's cooldown has not passed".to_owned()));
        }
        let run_id = Uuid::now_v7();
        let facts = json!({
            "account": account.facts(),
            "trigger": payload,
            "playbook": {"name": plan.name, "title": plan.title},
            "run": {"id": run_id.to_string()},
        });
        // The conflict names the index of open runs by its predicate.
        let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO playbooks.runs (run_id, playbook, version, account_id, state, trigger_kind, \
               trigger_event_id, facts, trace_context) VALUES ($1, $2, $3, $4, {active}, $5, $6, $7, $8) \
             ON CONFLICT (playbook, account_id) WHERE state IN ({active}, {stalled}) DO NOTHING",
            active = RunState::Active,
            stalled = RunState::Stalled,
        )))
        .bind(run_id)
        .bind(&plan.name)
        .bind(version)
        .bind(&account.id)
        .bind(trigger)
        .bind(event_id)
        .bind(&facts)
        .bind(trace_context)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(Err("a run of this playbook is already active".to_owned()));
        }
        let Some(first) = plan.first() else {
            return Ok(Err("the playbook has no steps".to_owned()));
        };
        insert_step(tx, run_id, 1, first, Utc::now()).await?;
        self.wakeup.notify_waiters();
        Ok(Ok(run_id))
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
                        plan,
                        *version,
                        &account,
                        kind,
                        Some(*id),
                        payload,
                        trace_context,
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
