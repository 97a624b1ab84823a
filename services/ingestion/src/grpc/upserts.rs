//! Writes: batches of accounts, contacts and subscriptions, and events.

use super::*;

impl IngestionApi {
    pub(super) async fn batch_upsert_accounts(
        &self,
        request: pb::BatchUpsertAccountsRequest,
    ) -> ApiResult<pb::BatchUpsertAccountsResponse> {
        let records = parse_batch(
            &self.limits,
            &request.accounts,
            "accounts",
            account_from_proto,
        )?;
        let mut write = match self
            .begin("BatchUpsertAccounts", &request.request_id, &request)
            .await?
        {
            Ok(write) => write,
            Err(replay) => return Ok(replay),
        };
        let outcome = accounts::upsert(&mut write.tx, records).await?;
        let mut changes = Changes::default();
        for account in &request.accounts {
            if outcome.applied.binary_search(&account.account_id).is_ok() {
                let time = account
                    .updated_at
                    .as_ref()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, 0));
                changes.account(&account.account_id, time.unwrap_or_else(Utc::now));
            }
        }
        let summary = pb::UpsertSummary {
            applied_count: outcome.applied.len() as i32,
            stale_count: outcome.stale as i32,
        };
        self.finish(
            write,
            changes,
            pb::BatchUpsertAccountsResponse {
                summary: Some(summary),
            },
        )
        .await
    }

    pub(super) async fn batch_upsert_contacts(
        &self,
        request: pb::BatchUpsertContactsRequest,
    ) -> ApiResult<pb::BatchUpsertContactsResponse> {
        let records = parse_batch(
            &self.limits,
            &request.contacts,
            "contacts",
            convert::contact,
        )?;
        let mut write = match self
            .begin("BatchUpsertContacts", &request.request_id, &request)
            .await?
        {
            Ok(write) => write,
            Err(replay) => return Ok(replay),
        };
        require_accounts(
            &self.accounts,
            &mut write.tx,
            "contacts",
            records.iter().map(|r| Some(r.account_id.as_str())),
        )
        .await?;
        let accounts: Vec<String> = records.iter().map(|r| r.account_id.clone()).collect();
        let had_role = changes::roles_held(&mut write.tx, &accounts).await?;
        let upserted = records::upsert(&mut write.tx, records).await?;
        let relationship_changes = changes::relationship_changes(&upserted.applied, &had_role);
        changes::insert_relationship_changes(&mut write.tx, &relationship_changes).await?;
        let mut changed = Changes::default();
        changed.record(&upserted);
        changed.events.extend(
            relationship_changes
                .iter()
                .map(crate::triggers::relationship_event),
        );
        let response = pb::BatchUpsertContactsResponse {
            summary: Some(summary(&upserted)),
            relationship_change_count: relationship_changes.len() as i32,
        };
        self.finish(write, changed, response).await
    }

    pub(super) async fn batch_upsert_subscriptions(
        &self,
        request: pb::BatchUpsertSubscriptionsRequest,
    ) -> ApiResult<pb::BatchUpsertSubscriptionsResponse> {
        let records = parse_batch(
            &self.limits,
            &request.subscriptions,
            "subscriptions",
            convert::subscription,
        )?;
        let mut write = match self
            .begin("BatchUpsertSubscriptions", &request.request_id, &request)
            .await?
        {
            Ok(write) => write,
            Err(replay) => return Ok(replay),
        };
        require_accounts(
            &self.accounts,
            &mut write.tx,
            "subscriptions",
            records.iter().map(|r| Some(r.account_id.as_str())),
        )
        .await?;
        let upserted = records::upsert(&mut write.tx, records).await?;
        changes::insert_subscription_changes(&mut write.tx, &upserted.applied).await?;
        let mut changed = Changes::default();
        changed.record(&upserted);
        changed.subscriptions = upserted
            .applied
            .iter()
            .map(|a| a.new.subscription_id.clone())
            .collect();
        let response = pb::BatchUpsertSubscriptionsResponse {
            summary: Some(summary(&upserted)),
        };
        self.finish(write, changed, response).await
    }

    pub(super) async fn ingest_events(
        &self,
        request: pb::IngestEventsRequest,
    ) -> ApiResult<pb::IngestEventsResponse> {
        let events = parse_batch(
            &self.limits,
            &request.events,
            "events",
            crate::events::event,
        )?;
        let mut conn = self.pool.acquire().await?;
        require_accounts(
            &self.accounts,
            &mut conn,
            "events",
            events.iter().map(|e| Some(e.account_id.as_str())),
        )
        .await?;
        // Months are created only once every account is known.
        let accepted = self.store_events(&mut conn, &events).await?;
        let accepted_count = accepted.iter().filter(|a| **a).count();
        Ok(pb::IngestEventsResponse {
            accepted_count: accepted_count as i32,
            duplicate_count: (events.len() - accepted_count) as i32,
        })
    }
}

/// What an erasure request names.
enum Erasure {
    Contact,
    Account,
}

impl IngestionApi {
    pub(super) async fn erase_contact(
        &self,
        request: pb::EraseContactRequest,
    ) -> ApiResult<pb::EraseContactResponse> {
        let erased = self
            .erase(Erasure::Contact, &request, &request.contact_id)
            .await?;
        Ok(pb::EraseContactResponse {
            pseudonym: erased.pseudonym,
            rows_changed: erased.rows_changed,
        })
    }

    pub(super) async fn erase_account(
        &self,
        request: pb::EraseAccountRequest,
    ) -> ApiResult<pb::EraseAccountResponse> {
        let erased = self
            .erase(Erasure::Account, &request, &request.account_id)
            .await?;
        Ok(pb::EraseAccountResponse {
            rows_changed: erased.rows_changed,
        })
    }

    /// Erases a contact or an account once per `request_id` (a retry gets
    /// the first answer back).
    async fn erase<Req: prost::Message + tenure_proto::Idempotent>(
        &self,
        what: Erasure,
        request: &Req,
        id: &str,
    ) -> ApiResult<crate::erase::Erased> {
        let (method, field, noun) = match what {
            Erasure::Contact => ("EraseContact", "contact_id", "contact"),
            Erasure::Account => ("EraseAccount", "account_id", "account"),
        };
        let mut violations = Violations::default();
        violations.parse::<Id, _>(field, id);
        violations.into_result()?;
        // Both answers are stored in the contact's shape: an account's has
        // no pseudonym.
        let stored = tenure_platform::idempotency::once(
            &self.pool,
            crate::SCHEMA,
            method,
            request,
            async |tx| {
                let erased = match what {
                    Erasure::Contact => crate::erase::contact(tx, id).await?,
                    Erasure::Account => crate::erase::account(tx, id).await?,
                }
                .ok_or_else(|| ApiError::NotFound(format!("{noun} {id}")))?;
                tracing::info!(rows = erased.rows_changed, "{noun} erased");
                Ok(pb::EraseContactResponse {
                    pseudonym: erased.pseudonym,
                    rows_changed: erased.rows_changed,
                })
            },
        )
        .await?;
        Ok(crate::erase::Erased {
            pseudonym: stored.pseudonym,
            rows_changed: stored.rows_changed,
        })
    }
}

/// Validates one account of a batch; violations are named under `path`.
pub(super) fn account_from_proto(
    c: &mut Checker<'_>,
    account: &pb::Account,
    path: &str,
) -> Option<AccountRecord> {
    let before = c.violations.len();
    c.violations
        .parse::<Id, _>(&format!("{path}.account_id"), &account.account_id);
    c.violations
        .require_text(&account.name, format!("{path}.name"), MAX_NAME);
    c.violations
        .limit_text(&account.segment, format!("{path}.segment"), MAX_LABEL);
    c.violations
        .limit_text(&account.industry, format!("{path}.industry"), MAX_LABEL);
    c.violations
        .limit_text(&account.owner, format!("{path}.owner"), MAX_NAME);
    c.violations.limit_text(
        &account.parent_account_id,
        format!("{path}.parent_account_id"),
        MAX_ID,
    );
    c.violations.check(
        account.parent_account_id.is_empty() || account.parent_account_id != account.account_id,
        format!("{path}.parent_account_id"),
        "must not be the account itself",
    );
    c.violations.check(
        pb::LifecycleStage::try_from(account.lifecycle_stage).is_ok(),
        format!("{path}.lifecycle_stage"),
        "is not a known stage",
    );
    let updated_at = time::past_timestamp(
        account.updated_at.as_ref(),
        &format!("{path}.updated_at"),
        c.future_tolerance,
        c.violations,
    );
    let attributes = c.attributes(&account.attributes, path);
    if c.violations.len() > before {
        return None;
    }
    Some(AccountRecord {
        account_id: account.account_id.clone(),
        name: account.name.clone(),
        segment: account.segment.clone(),
        industry: account.industry.clone(),
        owner: account.owner.clone(),
        parent_account_id: non_empty(account.parent_account_id.clone()),
        lifecycle_stage: account.lifecycle_stage as i16,
        source_updated_at: updated_at?,
        attributes: Json(attributes),
    })
}
