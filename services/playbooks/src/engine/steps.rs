//! The rows of runs and steps, and their states as stored.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::plan::PlanStep;

/// Step and run states as stored.
pub const PENDING: i16 = 1;
pub const DONE: i16 = 2;
pub const DEAD: i16 = 3;
pub const ACTIVE: i16 = 1;
pub const COMPLETED: i16 = 2;
pub const EXITED: i16 = 3;
pub const STALLED: i16 = 4;

pub async fn insert_step(
    tx: &mut PgConnection,
    run_id: Uuid,
    seq: i32,
    step: &PlanStep,
    due: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO playbooks.steps (run_id, seq, step_id, step_type, state, due_at) VALUES ($1, $2, $3, $4, 1, $5)",
    )
    .bind(run_id)
    .bind(seq)
    .bind(&step.id)
    .bind(step.type_name())
    .bind(due)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Ends step `seq` of run `run_id` in `state`, with its result or error.
pub(super) async fn finish_step(
    tx: &mut PgConnection,
    (run_id, seq): (Uuid, i32),
    state: i16,
    result: &str,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE playbooks.steps SET state = $3, result = $4, last_error = $5, attempts = attempts + 1, \
           finished_at = now() WHERE run_id = $1 AND seq = $2",
    )
    .bind(run_id)
    .bind(seq)
    .bind(state)
    .bind(result)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub(super) async fn end_run(tx: &mut PgConnection, run_id: Uuid, state: i16) -> sqlx::Result<()> {
    sqlx::query("UPDATE playbooks.runs SET state = $2, ended_at = now() WHERE run_id = $1")
        .bind(run_id)
        .bind(state)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
