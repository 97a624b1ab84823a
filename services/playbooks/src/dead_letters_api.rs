//! Dead letters of playbooks: steps that failed their last attempt, listed
//! and retried.

use tenure_platform::{ApiError, ApiResult, paging};
use tenure_proto::playbooks::v1 as pb;
use uuid::Uuid;

use crate::engine::{RunState, StepState};
use crate::grpc::PlaybooksApi;
use crate::runs_api::{SELECT_STEP, StepRow, parse_uuid};

impl PlaybooksApi {
    pub(crate) async fn list_dead_letters(
        &self,
        request: pb::ListDeadLettersRequest,
    ) -> ApiResult<pb::ListDeadLettersResponse> {
        let size = paging::page_size(request.page_size)?;
        let after: Option<(Uuid, i32)> = paging::decode_token(&request.page_token)?;
        let (after_run, after_seq) = after.unzip();
        let mut rows: Vec<(StepRow, String, String)> =
            // The state as a constant, so that the index of dead steps serves.
            sqlx::query_as::<_, StepRow>(sqlx::AssertSqlSafe(format!(
                "{SELECT_STEP} WHERE state = {dead} AND ($1::uuid IS NULL OR (run_id, seq) > ($1, $2)) \
             ORDER BY run_id, seq LIMIT $3",
                dead = StepState::Dead,
            )))
            .bind(after_run)
            .bind(after_seq)
            .bind(i64::from(size) + 1)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|s| (s, String::new(), String::new()))
            .collect();
        let next_page_token = paging::finish_page(&mut rows, size, |(s, _, _)| (s.run_id, s.seq));
        let ids: Vec<Uuid> = rows.iter().map(|(s, _, _)| s.run_id).collect();
        let runs: Vec<(Uuid, String, String)> = sqlx::query_as(
            "SELECT run_id, playbook, account_id FROM playbooks.runs WHERE run_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let runs: std::collections::HashMap<Uuid, (String, String)> =
            runs.into_iter().map(|(id, p, a)| (id, (p, a))).collect();
        Ok(pb::ListDeadLettersResponse {
            dead_letters: rows
                .into_iter()
                .map(|(step, _, _)| {
                    let (playbook, account_id) =
                        runs.get(&step.run_id).cloned().unwrap_or_default();
                    pb::DeadLetter {
                        run_id: step.run_id.to_string(),
                        playbook,
                        account_id,
                        step: Some(step.into_proto()),
                    }
                })
                .collect(),
            next_page_token,
        })
    }

    pub(crate) async fn retry_step(
        &self,
        request: pb::RetryStepRequest,
    ) -> ApiResult<pb::RetryStepResponse> {
        let run_id = parse_uuid(&request.run_id, "run_id")?;
        let mut tx = self.pool.begin().await?;
        let retried = sqlx::query(
            "UPDATE playbooks.steps SET state = $3, attempts = 0, due_at = now(), last_error = '', finished_at = NULL \
             WHERE run_id = $1 AND seq = $2 AND state = $4",
        )
        .bind(run_id)
        .bind(request.seq)
        .bind(StepState::Pending)
        .bind(StepState::Dead)
        .execute(&mut *tx)
        .await?;
        if retried.rows_affected() == 0 {
            return Err(ApiError::FailedPrecondition(format!(
                "step {} of run {run_id} is not dead-lettered",
                request.seq
            )));
        }
        sqlx::query("UPDATE playbooks.runs SET state = $2 WHERE run_id = $1 AND state = $3")
            .bind(run_id)
            .bind(RunState::Active)
            .bind(RunState::Stalled)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.engine.wakeup.notify_waiters();
        Ok(pb::RetryStepResponse {
            run: Some(self.run(run_id).await?),
        })
    }
}
