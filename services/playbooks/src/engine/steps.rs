//! The rows of runs and steps the engine writes.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::plan::PlanStep;
use crate::store::states::{RunState, StepState};

/// Inserts the first step of each of `run_ids`, due at `due`.
pub(super) async fn insert_first_steps(
    tx: &mut PgConnection,
    run_ids: &[Uuid],
    step: &PlanStep,
    due: DateTime<Utc>,
) -> sqlx::Result<()> {
    if run_ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO playbooks.steps (run_id, seq, step_id, step_type, state, due_at) \
         SELECT run_id, 1, $2, $3, $5, $4 FROM UNNEST($1::uuid[]) AS u(run_id)",
    )
    .bind(run_ids)
    .bind(&step.id)
    .bind(step.type_name())
    .bind(due)
    .bind(StepState::Pending)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Ends step `seq` of run `run_id`, taken up at `picked_at`, in `state`,
/// with its result or error.
pub(super) async fn finish_step(
    tx: &mut PgConnection,
    (run_id, seq): (Uuid, i32),
    picked_at: DateTime<Utc>,
    state: StepState,
    result: &str,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE playbooks.steps SET state = $3, result = $4, last_error = $5, attempts = attempts + 1, \
           finished_at = now(), picked_at = $6 WHERE run_id = $1 AND seq = $2",
    )
    .bind(run_id)
    .bind(seq)
    .bind(state)
    .bind(result)
    .bind(error)
    .bind(picked_at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// A step to look at again later (a wait), its attempts reset.
pub(super) async fn rearm(
    tx: &mut PgConnection,
    (run_id, seq): (Uuid, i32),
    picked_at: DateTime<Utc>,
    at: DateTime<Utc>,
    deadline: Option<DateTime<Utc>>,
    result: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE playbooks.steps SET due_at = $3, deadline = $4, result = $5, attempts = 0, \
           last_error = '', started_at = COALESCE(started_at, now()), picked_at = $6 \
         WHERE run_id = $1 AND seq = $2",
    )
    .bind(run_id)
    .bind(seq)
    .bind(at)
    .bind(deadline)
    .bind(result)
    .bind(picked_at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// The changes a batch of steps makes to steps and runs, applied with one
/// statement each.
#[derive(Default)]
pub(super) struct Changes {
    /// (run, seq, taken up at, state, result) of steps finished.
    pub(super) finished: Vec<(Uuid, i32, DateTime<Utc>, StepState, String)>,
    /// (run, seq, step id, step type) of steps due now.
    pub(super) inserted: Vec<(Uuid, i32, String, String)>,
    /// (run, state) of runs ended.
    pub(super) ended: Vec<(Uuid, RunState)>,
}

impl Changes {
    pub(super) async fn apply(mut self, tx: &mut PgConnection) -> sqlx::Result<()> {
        // Rows in one order, whoever writes them, so that writers never
        // wait on each other in a cycle.
        self.finished.sort_by_key(|f| (f.0, f.1));
        self.inserted.sort_by_key(|i| (i.0, i.1));
        self.ended.sort_by_key(|e| e.0);
        if !self.finished.is_empty() {
            let mut picked = Vec::with_capacity(self.finished.len());
            let (runs, seqs, states, results) = unzip4(
                self.finished
                    .into_iter()
                    .map(|(run, seq, at, state, result)| {
                        picked.push(at);
                        (run, seq, state as i16, result)
                    })
                    .collect(),
            );
            sqlx::query(
                "UPDATE playbooks.steps s SET state = u.state, result = u.result, last_error = '', \
                   attempts = s.attempts + 1, finished_at = now(), picked_at = u.picked_at \
                 FROM UNNEST($1::uuid[], $2::int4[], $3::int2[], $4::text[], $5::timestamptz[]) \
                   AS u(run_id, seq, state, result, picked_at) \
                 WHERE s.run_id = u.run_id AND s.seq = u.seq",
            )
            .bind(runs)
            .bind(seqs)
            .bind(states)
            .bind(results)
            .bind(picked)
            .execute(&mut *tx)
            .await?;
        }
        if !self.inserted.is_empty() {
            let (runs, seqs, ids, types) = unzip4(self.inserted);
            sqlx::query(
                "INSERT INTO playbooks.steps (run_id, seq, step_id, step_type, state, due_at) \
                 SELECT run_id, seq, step_id, step_type, $6, $5 \
                 FROM UNNEST($1::uuid[], $2::int4[], $3::text[], $4::text[]) \
                   AS u(run_id, seq, step_id, step_type)",
            )
            .bind(runs)
            .bind(seqs)
            .bind(ids)
            .bind(types)
            .bind(Utc::now())
            .bind(StepState::Pending)
            .execute(&mut *tx)
            .await?;
        }
        if !self.ended.is_empty() {
            let (runs, states): (Vec<Uuid>, Vec<i16>) = self
                .ended
                .into_iter()
                .map(|(run, state)| (run, state as i16))
                .unzip();
            sqlx::query(
                "UPDATE playbooks.runs r SET state = u.state, ended_at = now() \
                 FROM UNNEST($1::uuid[], $2::int2[]) AS u(run_id, state) WHERE r.run_id = u.run_id",
            )
            .bind(runs)
            .bind(states)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
    }
}

fn unzip4<A, B, C, D>(rows: Vec<(A, B, C, D)>) -> (Vec<A>, Vec<B>, Vec<C>, Vec<D>) {
    let mut out = (
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
        Vec::with_capacity(rows.len()),
    );
    for (a, b, c, d) in rows {
        out.0.push(a);
        out.1.push(b);
        out.2.push(c);
        out.3.push(d);
    }
    out
}
