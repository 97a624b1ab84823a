//! The task API of playbooks: tasks for people that runs create, listed
//! and completed (a completion can wake the run waiting on it). Storage is
//! [`crate::store::tasks`].

use chrono::NaiveDate;
use tenure_platform::{ApiError, ApiResult, Violations, paging, time};
use tenure_proto::playbooks::v1 as pb;
use uuid::Uuid;

use super::runs::{MAX_ID, parse_uuid};
use crate::grpc::PlaybooksApi;
use crate::store::states::TaskStatus;
use crate::store::tasks::{self, CompleteError, TaskFilter, TaskRow};

fn task_to_proto(row: TaskRow) -> pb::Task {
    pb::Task {
        task_id: row.task_id.to_string(),
        run_id: row.run_id.to_string(),
        account_id: row.account_id,
        assignee: row.assignee,
        title: row.title,
        body: row.body,
        priority: row.priority,
        due_date: Some(time::to_date(row.due_on)),
        status: status_to_proto(row.status) as i32,
        outcome: row.outcome,
        create_time: Some(time::to_timestamp(row.created_at)),
        complete_time: row.completed_at.map(time::to_timestamp),
    }
}

fn status_to_proto(status: TaskStatus) -> pb::TaskStatus {
    match status {
        TaskStatus::Open => pb::TaskStatus::Open,
        TaskStatus::Completed => pb::TaskStatus::Completed,
    }
}

/// A status a caller named; `None` when unspecified.
fn status_from_proto(status: pb::TaskStatus) -> Option<TaskStatus> {
    match status {
        pb::TaskStatus::Unspecified => None,
        pb::TaskStatus::Open => Some(TaskStatus::Open),
        pb::TaskStatus::Completed => Some(TaskStatus::Completed),
    }
}

impl From<CompleteError> for ApiError {
    fn from(error: CompleteError) -> Self {
        match error {
            CompleteError::NotFound(_) => ApiError::NotFound(error.to_string()),
            CompleteError::CompletedOtherwise(_) => ApiError::FailedPrecondition(error.to_string()),
            CompleteError::Database(e) => e.into(),
        }
    }
}

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
        let status = match pb::TaskStatus::try_from(request.status) {
            Ok(status) => status_from_proto(status),
            Err(_) => {
                violations.add("status", "is not a known task status");
                None
            }
        };
        let due_before = request
            .due_before
            .as_ref()
            .and_then(|d| time::date(Some(d), "due_before", &mut violations));
        violations.into_result()?;
        let filter = TaskFilter {
            assignee: &request.assignee,
            account_id: &request.account_id,
            status,
            due_before,
        };
        let mut rows = tasks::list(&self.pool, &filter, after, i64::from(size) + 1).await?;
        let next_page_token = paging::finish_page(&mut rows, size, |t| (t.due_on, t.task_id));
        Ok(pb::ListTasksResponse {
            tasks: rows.into_iter().map(task_to_proto).collect(),
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
        let task = tasks::complete(&self.pool, task_id, &request.outcome).await?;
        self.engine.wakeup.notify_waiters();
        Ok(pb::CompleteTaskResponse {
            task: Some(task_to_proto(task)),
        })
    }
}
