//! Notices of changed accounts from ingestion, and an account's health for peers.

use super::*;

impl HealthApi {
    pub(super) async fn notify_accounts_changed(
        &self,
        request: pb::NotifyAccountsChangedRequest,
    ) -> ApiResult<pb::NotifyAccountsChangedResponse> {
        const METHOD: &str = "NotifyAccountsChanged";
        let mut violations = Violations::default();
        violations.check(
            !request.account_ids.is_empty(),
            "account_ids",
            "must not be empty",
        );
        violations.check(
            request.account_ids.len() <= MAX_ACCOUNTS_PER_NOTICE,
            "account_ids",
            format!("must hold at most {MAX_ACCOUNTS_PER_NOTICE} ids"),
        );
        violations.parse_each::<Id>("account_ids", &request.account_ids);
        let earliest = match &request.earliest_event_time {
            Some(t) => time::timestamp(Some(t), "earliest_event_time", &mut violations),
            None => None,
        };
        violations.into_result()?;

        idempotency::once(&self.pool, SCHEMA, METHOD, &request, async |tx| {
            let marked = queue::mark(&mut *tx, &request.account_ids, earliest).await?;
            Ok(pb::NotifyAccountsChangedResponse {
                marked_count: marked as i32,
            })
        })
        .await
    }

    pub(super) async fn get_account_health(
        &self,
        request: pb::GetAccountHealthRequest,
    ) -> ApiResult<pb::GetAccountHealthResponse> {
        let account_id: Id = input::parse("account_id", &request.account_id)?;
        let account = self
            .ingestion
            .clone()
            .get_account(GetAccountRequest {
                account_id: account_id.to_string(),
            })
            .await
            .map_err(|status| ApiError::from_upstream(status, &format!("account {account_id}")))?
            .into_inner()
            .account
            .ok_or_else(|| anyhow::anyhow!("ingestion answered without an account"))?;
        let pending_since = queue::pending_since(&self.pool, &account.account_id).await?;
        Ok(pb::GetAccountHealthResponse {
            account_id: account.account_id,
            account_name: account.name,
            segment: account.segment,
            rescore_pending: pending_since.is_some(),
            last_changed_at: pending_since.map(time::to_timestamp),
        })
    }
}
