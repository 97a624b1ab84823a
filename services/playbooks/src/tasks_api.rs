//! The task API of playbooks: tasks for people that runs create, listed
//! and completed (a completion can wake the run waiting on it).

use chrono::{DateTime, NaiveDate, Utc};
use tenure_platform::{ApiError, ApiResult, Violations, paging, time};
use tenure_proto::playbooks::v1 as pb;
use uuid::Uuid;

use crate::grpc::PlaybooksApi;
use crate::runs_api::{MAX_ID, parse_uuid};

#[derive(sqlx::FromRow)]
struct TaskRow {
    task_id: Uuid,
    run_id: Uuid,
    account_id: String,
    assignee: String,
    title: String,
    body: String,
    priority: String,
    due_on: NaiveDate,
    status: i16,
    outcome: String,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
}

impl TaskRow {
    fn into_proto(self) -> pb::Task {
        pb::Task {
            task_id: self.task_id.to_string(),
            run_id: self.run_id.to_string(),
            account_id: self.account_id,
            assignee: self.assignee,
            title: self.title,
            body: self.body,
            priority: self.priority,
            due_date: Some(time::to_date(self.due_on)),
            status: i32::from(self.status),
            outcome: self.outcome,
            create_time: Some(time::to_timestamp(self.created_at)),
            complete_time: self.completed_at.map(time::to_timestamp),
        }
    }
}

const SELECT_TASK: &str = "SELECT task_id, run_id, account_id, assignee, title, body, priority, due_on, status, outcome, created_at, completed_at FROM playbooks.tasks";

impl PlaybooksApi {
    pub(crate) async fn list_tasks(
        &self,
        request: pb::ListTasksRequest,
    ) -> ApiResult<pb::ListTasksResponse> {
        let size = paging::page_size(request.page_size)?;
        let after: Option<(NaiveDate, Uuid)> = paging::decode_token(&request.page_token)?;
        let mut violations = Violations::default();
        violations.limit_text(&request.assignee, "assignee", MAX_ID);
        violations.limit_text(&request.account_id, "account_id", MAX_ID);
        violations.check(
            pb::TaskStatus::try_from(request.status).is_ok(),
            "status",
            "is not a known task status",
        );
        let due_before = request
            .due_before
            .as_ref()
            .and_then(|d| time::date(Some(d), "due_before", &mut violations));
        violations.into_result()?;
        let (after_due, after_id) = after.unzip();
        let mut rows: Vec<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "{SELECT_TASK} WHERE ($1 = '' OR assignee = $1) AND ($2 = 0 OR status = $2) \
               AND ($3::date IS NULL OR due_on < $3) AND ($4 = '' OR account_id = $4) \
               AND ($5::date IS NULL OR (due_on, task_id) > ($5, $6)) \
             ORDER BY due_on, task_id LIMIT $7"
        )))
        .bind(&request.assignee)
        .bind(request.status as i16)
        .bind(due_before)
        .bind(&request.account_id)
        .bind(after_due)
        .bind(after_id)
        .bind(i64::from(size) + 1)
        .fetch_all(&self.pool)
        .await?;
        let next_page_token = paging::finish_page(&mut rows, size, |t| (t.due_on, t.task_id));
        Ok(pb::ListTasksResponse {
            tasks: rows.into_iter().map(TaskRow::into_proto).collect(),
            next_page_token,
        })
    }

    pub(crate) async fn complete_task(
        &self,
        request: pb::CompleteTaskRequest,
    ) -> ApiResult<pb::CompleteTaskResponse> {
        let task_id = parse_uuid(&request.task_id, "task_id")?;
        let mut violations = Violations::default();
        violations.check(
            (1..=64).contains(&request.outcome.len()),
            "outcome",
            "must be 1-64 characters",
        );
        violations.into_result()?;
        let mut tx = self.pool.begin().await?;
        let row: Option<TaskRow> = sqlx::query_as(
            "WITH done AS (UPDATE playbooks.tasks SET status = 2, outcome = $2, completed_at = now() \
               WHERE task_id = $1 AND status = 1 RETURNING *) \
             SELECT task_id, run_id, account_id, assignee, title, body, priority, due_on, status, outcome, \
               created_at, completed_at FROM done",
        )
        .bind(task_id)
        .bind(&request.outcome)
        .fetch_optional(&mut *tx)
        .await?;
        let row = match row {
            Some(row) => row,
            None => {
                let existing: Option<TaskRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "{SELECT_TASK} WHERE task_id = $1"
                )))
                .bind(task_id)
                .fetch_optional(&mut *tx)
                .await?;
                return match existing {
                    None => Err(ApiError::NotFound(format!("task {task_id}"))),
                    // Completing again with the same outcome is a retry.
                    Some(t) if t.outcome == request.outcome => Ok(pb::CompleteTaskResponse {
                        task: Some(t.into_proto()),
                    }),
                    Some(_) => Err(ApiError::FailedPrecondition(format!(
                        "task {task_id} is already completed with another outcome"
                    ))),
                };
            }
        };
        // A run waiting on a condition looks again now.
        sqlx::query(
            "UPDATE playbooks.steps SET due_at = now() WHERE run_id = $1 AND state = $2 AND step_type = 'wait' \
               AND deadline IS NOT NULL",
        )
        .bind(row.run_id)
        .bind(crate::engine::StepState::Pending)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.engine.wakeup.notify_waiters();
        Ok(pb::CompleteTaskResponse {
            task: Some(row.into_proto()),
        })
    }
}
