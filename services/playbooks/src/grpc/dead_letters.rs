//! Dead letters of playbooks: steps that failed their last attempt, listed
//! and retried.

use tenure_platform::{ApiError, ApiResult, paging};
use tenure_proto::playbooks::v1 as pb;
use uuid::Uuid;

use super::runs::{parse_uuid, step_to_proto};
use crate::grpc::PlaybooksApi;
use crate::store::runs;

impl PlaybooksApi {
    pub(crate) async fn list_dead_letters(
        &self,
        request: pb::ListDeadLettersRequest,
    ) -> ApiResult<pb::ListDeadLettersResponse> {
        let size = paging::page_size(request.page_size)?;
        let after: Option<(Uuid, i32)> = paging::decode_token(&request.page_token)?;
        let mut rows = runs::dead_steps(&self.pool, after, i64::from(size) + 1).await?;
        let next_page_token = paging::finish_page(&mut rows, size, |(s, _, _)| (s.run_id, s.seq));
        Ok(pb::ListDeadLettersResponse {
            dead_letters: rows
                .into_iter()
                .map(|(step, playbook, account_id)| pb::DeadLetter {
                    run_id: step.run_id.to_string(),
                    playbook,
                    account_id,
                    step: Some(step_to_proto(step)),
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
        if !runs::retry_dead_step(&self.pool, run_id, request.seq).await? {
            return Err(ApiError::FailedPrecondition(format!(
                "step {} of run {run_id} is not dead-lettered",
                request.seq
            )));
        }
        self.engine.wakeup.notify_waiters();
        Ok(pb::RetryStepResponse {
            run: Some(self.run(run_id).await?),
        })
    }
}
