//! Reads: accounts, contacts, subscription history, timelines and signals.

use super::*;

impl IngestionApi {
    pub(super) async fn get_account(
        &self,
        request: pb::GetAccountRequest,
    ) -> ApiResult<pb::GetAccountResponse> {
        let mut violations = Violations::default();
        violations.parse::<Id, _>("account_id", &request.account_id);
        violations.into_result()?;
        let record = accounts::get(&self.pool, &request.account_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("account {}", request.account_id)))?;
        Ok(pb::GetAccountResponse {
            account: Some(account_to_proto(record)),
        })
    }

    pub(super) async fn batch_get_accounts(
        &self,
        request: pb::BatchGetAccountsRequest,
    ) -> ApiResult<pb::BatchGetAccountsResponse> {
        let mut violations = Violations::default();
        let ids = account_batch(request.account_ids, &mut violations);
        violations.into_result()?;
        let records = accounts::get_many(&self.pool, &ids).await?;
        let missing_account_ids =
            tenure_platform::batch::missing(&ids, records.iter().map(|r| r.account_id.as_str()));
        Ok(pb::BatchGetAccountsResponse {
            accounts: records.into_iter().map(account_to_proto).collect(),
            missing_account_ids,
        })
    }

    pub(super) async fn list_contacts(
        &self,
        request: pb::ListContactsRequest,
    ) -> ApiResult<pb::ListContactsResponse> {
        let mut violations = Violations::default();
        violations.parse::<Id, _>("account_id", &request.account_id);
        let role = match pb::ContactRole::try_from(request.role) {
            Ok(pb::ContactRole::Unspecified) => None,
            Ok(pb::ContactRole::EconomicSponsor) => Some(crate::kinds::Role::Sponsor),
            Ok(pb::ContactRole::Champion) => Some(crate::kinds::Role::Champion),
            Ok(pb::ContactRole::Admin) => Some(crate::kinds::Role::Admin),
            Ok(pb::ContactRole::User) => Some(crate::kinds::Role::User),
            Err(_) => {
                violations.add("role", "is not a known contact role");
                None
            }
        };
        violations.into_result()?;
        let size = paging::page_size(request.page_size)?;
        let after: Option<String> = paging::decode_token(&request.page_token)?;
        let contacts: Vec<crate::kinds::ContactRecord> = records::as_of(
            &self.pool,
            &request.account_id,
            Utc::now() + Duration::days(1),
        )
        .await?;
        let mut page: Vec<pb::Contact> = contacts
            .into_iter()
            .filter(|c| role.is_none_or(|role| c.acts_as(role)))
            .map(convert::contact_to_proto)
            .filter(|c| after.as_ref().is_none_or(|after| &c.contact_id > after))
            .collect();
        page.sort_by(|a, b| a.contact_id.cmp(&b.contact_id));
        page.truncate(size as usize + 1);
        let mut next_page_token = paging::finish_page(&mut page, size, |c| c.contact_id.clone());
        if paging::fit_bytes(&mut page, paging::MAX_PAGE_BYTES) {
            next_page_token = page
                .last()
                .map(|c| paging::encode_token(&c.contact_id))
                .unwrap_or_default();
        }
        Ok(pb::ListContactsResponse {
            contacts: page,
            next_page_token,
        })
    }

    pub(super) async fn get_subscription_history(
        &self,
        request: pb::GetSubscriptionHistoryRequest,
    ) -> ApiResult<pb::GetSubscriptionHistoryResponse> {
        let mut violations = Violations::default();
        let ids = tenure_platform::batch::ids(
            request.subscription_ids,
            "subscription_ids",
            MAX_ID,
            &mut violations,
        );
        violations.into_result()?;
        let versions: Vec<crate::kinds::SubscriptionRecord> =
            records::versions(&self.pool, &ids).await?;
        let mut account_ids: Vec<String> = versions.iter().map(|v| v.account_id.clone()).collect();
        account_ids.sort();
        account_ids.dedup();
        let accounts = accounts::get_many(&self.pool, &account_ids).await?;
        let mut subscriptions: Vec<pb::SubscriptionHistory> = Vec::new();
        for version in versions {
            if subscriptions.last().map(|s| s.subscription_id.as_str())
                != Some(version.subscription_id.as_str())
            {
                subscriptions.push(pb::SubscriptionHistory {
                    subscription_id: version.subscription_id.clone(),
                    versions: Vec::new(),
                });
            }
            if let Some(history) = subscriptions.last_mut() {
                history
                    .versions
                    .push(convert::subscription_to_proto(version));
            }
        }
        Ok(pb::GetSubscriptionHistoryResponse {
            subscriptions,
            accounts: accounts.into_iter().map(account_to_proto).collect(),
        })
    }

    pub(super) async fn list_accounts(
        &self,
        request: pb::ListAccountsRequest,
    ) -> ApiResult<pb::ListAccountsResponse> {
        let size = paging::page_size(request.page_size)?;
        let after: Option<String> = paging::decode_token(&request.page_token)?;
        let mut violations = Violations::default();
        let lifecycle_stage = match request.lifecycle_stage {
            0 => None,
            value => {
                violations.check(
                    pb::LifecycleStage::try_from(value).is_ok(),
                    "lifecycle_stage",
                    "is not a known stage",
                );
                Some(value as i16)
            }
        };
        violations.limit_text(&request.segment, "segment", MAX_LABEL);
        violations.limit_text(&request.owner, "owner", MAX_NAME);
        violations.into_result()?;
        let filter = AccountFilter {
            segment: non_empty(request.segment),
            owner: non_empty(request.owner),
            lifecycle_stage,
        };
        let mut rows =
            accounts::list(&self.pool, &filter, after.as_deref(), i64::from(size) + 1).await?;
        let mut next_page_token = paging::finish_page(&mut rows, size, |r| r.account_id.clone());
        let mut accounts: Vec<pb::Account> = rows.into_iter().map(account_to_proto).collect();
        if paging::fit_bytes(&mut accounts, paging::MAX_PAGE_BYTES) {
            next_page_token = accounts
                .last()
                .map(|a| paging::encode_token(&a.account_id))
                .unwrap_or_default();
        }
        Ok(pb::ListAccountsResponse {
            accounts,
            next_page_token,
        })
    }

    pub(super) async fn list_account_timeline(
        &self,
        request: pb::ListAccountTimelineRequest,
    ) -> ApiResult<pb::ListAccountTimelineResponse> {
        let size = paging::page_size(request.page_size)?;
        let after: Option<(chrono::DateTime<Utc>, String, String)> =
            paging::decode_token(&request.page_token)?;
        self.require_account(&request.account_id).await?;
        let mut rows = timeline::page(
            &self.pool,
            &request.account_id,
            after.as_ref(),
            i64::from(size) + 1,
        )
        .await?;
        let next_page_token = paging::finish_page(&mut rows, size, |e| {
            (e.occurred_at, e.kind.clone(), e.record_id.clone())
        });
        Ok(pb::ListAccountTimelineResponse {
            entries: rows
                .into_iter()
                .map(|e| pb::TimelineEntry {
                    occurred_at: Some(time::to_timestamp(e.occurred_at)),
                    kind: e.kind,
                    record_id: e.record_id,
                    summary: e.summary,
                })
                .collect(),
            next_page_token,
        })
    }

    pub(super) async fn require_account(&self, account_id: &str) -> ApiResult<()> {
        let mut violations = Violations::default();
        violations.parse::<Id, _>("account_id", account_id);
        violations.into_result()?;
        if accounts::get(&self.pool, account_id).await?.is_none() {
            return Err(ApiError::NotFound(format!("account {account_id}")));
        }
        Ok(())
    }

    pub(super) async fn get_account_signals(
        &self,
        request: pb::GetAccountSignalsRequest,
    ) -> ApiResult<pb::GetAccountSignalsResponse> {
        let mut violations = Violations::default();
        violations.parse::<Id, _>("account_id", &request.account_id);
        let as_of = as_of_date(request.as_of.as_ref(), &mut violations);
        violations.into_result()?;
        let inputs = inputs_of(&self.pool, &request.account_id, as_of).await?;
        Ok(pb::GetAccountSignalsResponse {
            signals: Some(signals::compute(&inputs, as_of)),
        })
    }
}

/// The signals' inputs of an account as of a day, or NOT_FOUND.
pub(crate) async fn inputs_of(
    pool: &sqlx::PgPool,
    account_id: &str,
    as_of: NaiveDate,
) -> ApiResult<signals::Inputs> {
    signals::load(pool, account_id, as_of)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("account {account_id} as of {as_of}")))
}

/// The `as_of` of a signals request: today when unset, never in the future.
pub(crate) fn as_of_date(
    value: Option<&tenure_proto::common::v1::Date>,
    violations: &mut Violations,
) -> NaiveDate {
    let today = Utc::now().date_naive();
    match value {
        None => today,
        Some(_) => past_day(value, "as_of", violations).unwrap_or(today),
    }
}

/// A batch of 1 to 1,000 account ids, each a valid id: sorted, each once.
pub(super) fn account_batch(ids: Vec<String>, violations: &mut Violations) -> Vec<String> {
    tenure_platform::batch::ids(ids, "account_ids", MAX_ID, violations)
}

/// A required day of a signals request, never in the future.
pub(crate) fn past_day(
    value: Option<&tenure_proto::common::v1::Date>,
    field: &str,
    violations: &mut Violations,
) -> Option<NaiveDate> {
    let day = time::date(value, field, violations)?;
    if day > Utc::now().date_naive() {
        violations.add(field, "must not be in the future");
        return None;
    }
    Some(day)
}

pub(super) fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

pub(super) fn account_to_proto(record: AccountRecord) -> pb::Account {
    pb::Account {
        account_id: record.account_id,
        name: record.name,
        segment: record.segment,
        industry: record.industry,
        owner: record.owner,
        parent_account_id: record.parent_account_id.unwrap_or_default(),
        lifecycle_stage: i32::from(record.lifecycle_stage),
        updated_at: Some(time::to_timestamp(record.source_updated_at)),
        attributes: record
            .attributes
            .0
            .iter()
            .map(|(k, v)| (k.clone(), attribute_to_proto(v)))
            .collect(),
    }
}
