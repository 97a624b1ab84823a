//! Runs and their steps as the APIs read them, dead-lettered steps
//! retried, and an account's playbook timeline.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::states::{RunState, StepState};

#[derive(sqlx::FromRow)]
pub struct RunRow {
    pub run_id: Uuid,
    pub playbook: String,
    pub version: i32,
    pub account_id: String,
    pub state: RunState,
    pub trigger_kind: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
pub struct StepRow {
    pub run_id: Uuid,
    pub seq: i32,
    pub step_id: String,
    pub step_type: String,
    pub state: StepState,
    pub due_at: DateTime<Utc>,
    pub attempts: i32,
    pub last_error: String,
    pub result: String,
    pub finished_at: Option<DateTime<Utc>>,
}

/// An entry of an account's timeline: a trigger, a run started or ended,
/// a step finished or a task completed.
#[derive(sqlx::FromRow)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub run_id: Option<Uuid>,
    pub playbook: String,
    pub detail: String,
}

const SELECT_RUN: &str = "SELECT run_id, playbook, version, account_id, state, trigger_kind, started_at, ended_at FROM playbooks.runs";
const SELECT_STEP: &str = "SELECT run_id, seq, step_id, step_type, state, due_at, attempts, last_error, result, finished_at FROM playbooks.steps";

/// Which runs to list; an empty text or `None` is any.
pub struct RunFilter<'a> {
    pub account_id: &'a str,
    pub playbook: &'a str,
    pub state: Option<RunState>,
}

/// Runs of `filter` in id order after `after`, at most `limit`.
pub async fn list(
    pool: &PgPool,
    filter: &RunFilter<'_>,
    after: Option<Uuid>,
    limit: i64,
) -> sqlx::Result<Vec<RunRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_RUN} WHERE ($1 = '' OR account_id = $1) AND ($2 = '' OR playbook = $2) \
           AND ($3::int2 IS NULL OR state = $3) AND ($4::uuid IS NULL OR run_id > $4) \
         ORDER BY run_id LIMIT $5"
    )))
    .bind(filter.account_id)
    .bind(filter.playbook)
    .bind(filter.state)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The runs of `ids` that exist, in id order.
pub async fn by_ids(db: impl sqlx::PgExecutor<'_>, ids: &[Uuid]) -> sqlx::Result<Vec<RunRow>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_RUN} WHERE run_id = ANY($1) ORDER BY run_id"
    )))
    .bind(ids)
    .fetch_all(db)
    .await
}

/// The steps of each of `run_ids`, in order.
pub async fn steps_of(
    pool: &PgPool,
    run_ids: &[Uuid],
) -> sqlx::Result<HashMap<Uuid, Vec<StepRow>>> {
    let steps: Vec<StepRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_STEP} WHERE run_id = ANY($1) ORDER BY run_id, seq"
    )))
    .bind(run_ids)
    .fetch_all(pool)
    .await?;
    let mut by_run: HashMap<Uuid, Vec<StepRow>> = HashMap::new();
    for step in steps {
        by_run.entry(step.run_id).or_default().push(step);
    }
    Ok(by_run)
}

/// Whether `account_id` has a run of `playbook` that has not ended.
pub async fn is_open(pool: &PgPool, playbook: &str, account_id: &str) -> sqlx::Result<bool> {
    // The states as constants, so that the index of open runs serves.
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT EXISTS (SELECT 1 FROM playbooks.runs \
         WHERE playbook = $1 AND account_id = $2 AND state IN ({active}, {stalled}))",
        active = RunState::Active,
        stalled = RunState::Stalled,
    )))
    .bind(playbook)
    .bind(account_id)
    .fetch_one(pool)
    .await
}

/// Dead-lettered steps by run and number after `after`, at most `limit`,
/// each with its run's playbook and account.
pub async fn dead_steps(
    pool: &PgPool,
    after: Option<(Uuid, i32)>,
    limit: i64,
) -> sqlx::Result<Vec<(StepRow, String, String)>> {
    let (after_run, after_seq) = after.unzip();
    // The state as a constant, so that the index of dead steps serves.
    let steps: Vec<StepRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_STEP} WHERE state = {dead} AND ($1::uuid IS NULL OR (run_id, seq) > ($1, $2)) \
         ORDER BY run_id, seq LIMIT $3",
        dead = StepState::Dead,
    )))
    .bind(after_run)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let ids: Vec<Uuid> = steps.iter().map(|s| s.run_id).collect();
    let runs: HashMap<Uuid, (String, String)> = by_ids(pool, &ids)
        .await?
        .into_iter()
        .map(|r| (r.run_id, (r.playbook, r.account_id)))
        .collect();
    Ok(steps
        .into_iter()
        .map(|step| {
            let (playbook, account_id) = runs.get(&step.run_id).cloned().unwrap_or_default();
            (step, playbook, account_id)
        })
        .collect())
}

/// Makes dead step `seq` of `run_id` due again with fresh attempts and
/// resumes its stalled run, in one transaction; false when that step is
/// not dead.
pub async fn retry_dead_step(pool: &PgPool, run_id: Uuid, seq: i32) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let retried = sqlx::query(
        "UPDATE playbooks.steps SET state = $3, attempts = 0, due_at = now(), last_error = '', \
           finished_at = NULL WHERE run_id = $1 AND seq = $2 AND state = $4",
    )
    .bind(run_id)
    .bind(seq)
    .bind(StepState::Pending)
    .bind(StepState::Dead)
    .execute(&mut *tx)
    .await?;
    if retried.rows_affected() == 0 {
        return Ok(false);
    }
    sqlx::query("UPDATE playbooks.runs SET state = $2 WHERE run_id = $1 AND state = $3")
        .bind(run_id)
        .bind(RunState::Active)
        .bind(RunState::Stalled)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// The latest `limit` entries of `account_id`'s timeline, oldest first.
pub async fn timeline(
    pool: &PgPool,
    account_id: &str,
    limit: i64,
) -> sqlx::Result<Vec<TimelineEntry>> {
    let mut entries: Vec<TimelineEntry> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM ( \
           SELECT received_at AS at, 'trigger' AS kind, NULL::uuid AS run_id, '' AS playbook, \
                  kind || ' from ' || source AS detail FROM playbooks.trigger_events WHERE account_id = $1 \
           UNION ALL SELECT started_at, 'run.started', run_id, playbook, 'v' || version || ' on ' || trigger_kind \
                  FROM playbooks.runs WHERE account_id = $1 \
           UNION ALL SELECT ended_at, CASE state WHEN {completed} THEN 'run.completed' ELSE 'run.exited' END, run_id, \
                  playbook, '' FROM playbooks.runs WHERE account_id = $1 AND ended_at IS NOT NULL \
           UNION ALL SELECT s.finished_at, CASE s.state WHEN {dead} THEN 'step.dead' ELSE 'step.done' END, s.run_id, \
                  r.playbook, s.step_id || ': ' || s.result || CASE WHEN s.last_error <> '' THEN ' (' || s.last_error || ')' ELSE '' END \
                  FROM playbooks.steps s JOIN playbooks.runs r USING (run_id) \
                  WHERE r.account_id = $1 AND s.finished_at IS NOT NULL \
           UNION ALL SELECT t.completed_at, 'task.completed', t.run_id, r.playbook, t.title || ': ' || t.outcome \
                  FROM playbooks.tasks t JOIN playbooks.runs r USING (run_id) \
                  WHERE t.account_id = $1 AND t.completed_at IS NOT NULL \
         ) entries ORDER BY at DESC LIMIT $2",
        completed = RunState::Completed,
        dead = StepState::Dead,
    )))
    .bind(account_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    entries.reverse();
    Ok(entries)
}
