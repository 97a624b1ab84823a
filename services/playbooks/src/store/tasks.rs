//! Tasks for people that runs create: listed, and completed once.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::states::{StepState, TaskStatus};

#[derive(sqlx::FromRow)]
pub struct TaskRow {
    pub task_id: Uuid,
    pub run_id: Uuid,
    pub account_id: String,
    pub assignee: String,
    pub title: String,
    pub body: String,
    pub priority: String,
    pub due_on: NaiveDate,
    pub status: TaskStatus,
    pub outcome: String,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

const SELECT_TASK: &str = "SELECT task_id, run_id, account_id, assignee, title, body, priority, due_on, status, outcome, created_at, completed_at FROM playbooks.tasks";

/// Which tasks to list; an empty text or `None` is any.
pub struct TaskFilter<'a> {
    pub assignee: &'a str,
    pub account_id: &'a str,
    pub status: Option<TaskStatus>,
    pub due_before: Option<NaiveDate>,
}

/// Tasks of `filter` by due day and id, after `after`, at most `limit`.
pub async fn list(
    pool: &PgPool,
    filter: &TaskFilter<'_>,
    after: Option<(NaiveDate, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<TaskRow>> {
    let (after_due, after_id) = after.unzip();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_TASK} WHERE ($1 = '' OR assignee = $1) AND ($2::int2 IS NULL OR status = $2) \
           AND ($3::date IS NULL OR due_on < $3) AND ($4 = '' OR account_id = $4) \
           AND ($5::date IS NULL OR (due_on, task_id) > ($5, $6)) \
         ORDER BY due_on, task_id LIMIT $7"
    )))
    .bind(filter.assignee)
    .bind(filter.status)
    .bind(filter.due_before)
    .bind(filter.account_id)
    .bind(after_due)
    .bind(after_id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Why a task could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    #[error("task {0}")]
    NotFound(Uuid),
    #[error("task {0} is already completed with another outcome")]
    CompletedOtherwise(Uuid),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Completes an open task with `outcome`, and makes the waits of its run
/// look again now (a branch may wait on it). Completing a completed task
/// with the same outcome is a retry and answers the task as it is.
pub async fn complete(
    pool: &PgPool,
    task_id: Uuid,
    outcome: &str,
) -> Result<TaskRow, CompleteError> {
    let mut tx = pool.begin().await?;
    let done: Option<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH done AS (UPDATE playbooks.tasks SET status = {completed}, outcome = $2, \
           completed_at = now() WHERE task_id = $1 AND status = {open} RETURNING *) \
         SELECT task_id, run_id, account_id, assignee, title, body, priority, due_on, status, \
           outcome, created_at, completed_at FROM done",
        completed = TaskStatus::Completed,
        open = TaskStatus::Open,
    )))
    .bind(task_id)
    .bind(outcome)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = done else {
        let existing: Option<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT_TASK} WHERE task_id = $1"
        )))
        .bind(task_id)
        .fetch_optional(&mut *tx)
        .await?;
        return match existing {
            None => Err(CompleteError::NotFound(task_id)),
            Some(task) if task.outcome == outcome => Ok(task),
            Some(_) => Err(CompleteError::CompletedOtherwise(task_id)),
        };
    };
    sqlx::query(
        "UPDATE playbooks.steps SET due_at = now() WHERE run_id = $1 AND state = $2 \
           AND step_type = 'wait' AND deadline IS NOT NULL",
    )
    .bind(row.run_id)
    .bind(StepState::Pending)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(row)
}
