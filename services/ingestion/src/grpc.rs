//! The gRPC edge of ingestion: validates requests into domain values, runs
//! each write in one transaction with its outbox messages, and answers.

use std::pin::Pin;
use std::sync::Arc;

use chrono::{Duration, NaiveDate, Utc};
use sqlx::PgPool;
use sqlx::types::Json;
use tenure_platform::{ApiError, ApiResult, Violations, paging, time};
use tenure_proto::ingestion::v1::{self as pb, ingestion_service_server::IngestionService};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use crate::accounts::{self, AccountFilter, AccountRecord};
use crate::convert::{self, Checker, MAX_ID, MAX_LABEL, MAX_NAME, attribute_to_proto};
use crate::events::EventStore;
use crate::records::KnownAccounts;
use crate::writes::{Changes, parse_batch, require_accounts, summary};
use crate::{changes, records, signals, timeline};

/// Size limits, from the environment.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most items in one batch call or stream chunk (`INGESTION_MAX_BATCH_ITEMS`).
    pub max_batch_items: usize,
    /// How far in the future a source timestamp may be (`INGESTION_FUTURE_TOLERANCE`).
    pub future_tolerance: Duration,
    /// Largest JSON of an item's free properties (`INGESTION_MAX_PROPERTIES_BYTES`).
    pub max_properties_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch_items: 5000,
            future_tolerance: Duration::minutes(5),
            max_properties_bytes: 16 * 1024,
        }
    }
}

impl Limits {
    pub fn from_env() -> anyhow::Result<Self> {
        let mut limits = Self::default();
        if let Ok(value) = std::env::var("INGESTION_MAX_BATCH_ITEMS") {
            limits.max_batch_items = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                anyhow::anyhow!("INGESTION_MAX_BATCH_ITEMS={value:?} is not a positive count")
            })?;
        }
        if let Ok(value) = std::env::var("INGESTION_MAX_PROPERTIES_BYTES") {
            limits.max_properties_bytes = value.parse().map_err(|_| {
                anyhow::anyhow!("INGESTION_MAX_PROPERTIES_BYTES={value:?} is not a byte count")
            })?;
        }
        if let Ok(value) = std::env::var("INGESTION_FUTURE_TOLERANCE") {
            limits.future_tolerance = humantime::parse_duration(&value)
                .ok()
                .and_then(|d| Duration::from_std(d).ok())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "INGESTION_FUTURE_TOLERANCE={value:?} is not a duration like 5m"
                    )
                })?;
        }
        Ok(limits)
    }

    pub fn checker<'a>(&self, violations: &'a mut Violations) -> Checker<'a> {
        Checker {
            violations,
            future_tolerance: self.future_tolerance,
            max_properties: self.max_properties_bytes,
        }
    }
}

/// The ingestion API; cheap to clone.
#[derive(Clone)]
pub struct IngestionApi {
    pub(crate) pool: PgPool,
    pub(crate) limits: Arc<Limits>,
    pub(crate) events: Arc<EventStore>,
    pub(crate) accounts: Arc<KnownAccounts>,
}

impl IngestionApi {
    pub fn new(pool: PgPool, limits: Limits) -> Self {
        Self {
            pool,
            limits: Arc::new(limits),
            events: Arc::new(EventStore::default()),
            accounts: Arc::new(KnownAccounts::default()),
        }
    }

    async fn batch_upsert_accounts(
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

    async fn batch_upsert_contacts(
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

    async fn batch_upsert_subscriptions(
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

    async fn ingest_events(
        &self,
        request: pb::IngestEventsRequest,
    ) -> ApiResult<pb::IngestEventsResponse> {
        let events = parse_batch(
            &self.limits,
            &request.events,
            "events",
            crate::events::event,
        )?;
        self.events.ensure_partitions(&self.pool, &events).await?;
        let mut tx = self.pool.begin().await?;
        require_accounts(
            &self.accounts,
            &mut tx,
            "events",
            events.iter().map(|e| Some(e.account_id.as_str())),
        )
        .await?;
        let accepted = self.events.ingest(&mut tx, &events).await?;
        let mut changed = Changes::default();
        for (event, _) in events.iter().zip(&accepted).filter(|(_, new)| **new) {
            changed.account(&event.account_id, event.occurred_at);
        }
        crate::writes::enqueue_changes(&mut tx, changed).await?;
        tx.commit().await?;
        let accepted_count = accepted.iter().filter(|a| **a).count();
        Ok(pb::IngestEventsResponse {
            accepted_count: accepted_count as i32,
            duplicate_count: (events.len() - accepted_count) as i32,
        })
    }

    async fn get_account(
        &self,
        request: pb::GetAccountRequest,
    ) -> ApiResult<pb::GetAccountResponse> {
        let mut violations = Violations::default();
        violations.require_text(&request.account_id, "account_id", MAX_ID);
        violations.into_result()?;
        let record = accounts::get(&self.pool, &request.account_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("account {}", request.account_id)))?;
        Ok(pb::GetAccountResponse {
            account: Some(account_to_proto(record)),
        })
    }

    async fn list_contacts(
        &self,
        request: pb::ListContactsRequest,
    ) -> ApiResult<pb::ListContactsResponse> {
        let mut violations = Violations::default();
        violations.require_text(&request.account_id, "account_id", MAX_ID);
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
        let contacts: Vec<crate::kinds::ContactRecord> = records::as_of(
            &self.pool,
            &request.account_id,
            Utc::now() + Duration::days(1),
        )
        .await?;
        Ok(pb::ListContactsResponse {
            contacts: contacts
                .into_iter()
                .filter(|c| role.is_none_or(|role| c.acts_as(role)))
                .map(convert::contact_to_proto)
                .collect(),
        })
    }

    async fn get_subscription_history(
        &self,
        request: pb::GetSubscriptionHistoryRequest,
    ) -> ApiResult<pb::GetSubscriptionHistoryResponse> {
        const MAX_IDS: usize = 1000;
        let mut violations = Violations::default();
        violations.check(
            !request.subscription_ids.is_empty() && request.subscription_ids.len() <= MAX_IDS,
            "subscription_ids",
            "must hold between 1 and 1000 ids",
        );
        for (i, id) in request.subscription_ids.iter().enumerate() {
            violations.require_text(id, format!("subscription_ids[{i}]"), MAX_ID);
        }
        violations.into_result()?;
        let versions: Vec<crate::kinds::SubscriptionRecord> =
            records::versions(&self.pool, &request.subscription_ids).await?;
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

    async fn list_accounts(
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
        let next_page_token = paging::finish_page(&mut rows, size, |r| r.account_id.clone());
        Ok(pb::ListAccountsResponse {
            accounts: rows.into_iter().map(account_to_proto).collect(),
            next_page_token,
        })
    }

    async fn list_account_timeline(
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

    async fn require_account(&self, account_id: &str) -> ApiResult<()> {
        let mut violations = Violations::default();
        violations.require_text(account_id, "account_id", MAX_ID);
        violations.into_result()?;
        if accounts::get(&self.pool, account_id).await?.is_none() {
            return Err(ApiError::NotFound(format!("account {account_id}")));
        }
        Ok(())
    }

    async fn get_account_signals(
        &self,
        request: pb::GetAccountSignalsRequest,
    ) -> ApiResult<pb::GetAccountSignalsResponse> {
        let mut violations = Violations::default();
        violations.require_text(&request.account_id, "account_id", MAX_ID);
        let as_of = as_of_date(request.as_of.as_ref(), &mut violations);
        violations.into_result()?;
        let inputs = signals::load(&self.pool, &request.account_id, as_of)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!("account {} as of {as_of}", request.account_id))
            })?;
        Ok(pb::GetAccountSignalsResponse {
            signals: Some(signals::compute(&inputs, as_of)),
        })
    }
}

/// The `as_of` of a signals request: today when unset, never in the future.
fn as_of_date(
    value: Option<&tenure_proto::common::v1::Date>,
    violations: &mut Violations,
) -> NaiveDate {
    let today = Utc::now().date_naive();
    let Some(value) = value else { return today };
    match time::date(Some(value), "as_of", violations) {
        Some(day) if day > today => {
            violations.add("as_of", "must not be in the future");
            today
        }
        Some(day) => day,
        None => today,
    }
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// Validates one account of a batch; violations are named under `path`.
fn account_from_proto(
    c: &mut Checker<'_>,
    account: &pb::Account,
    path: &str,
) -> Option<AccountRecord> {
    let before = c.violations.len();
    c.violations
        .require_text(&account.account_id, format!("{path}.account_id"), MAX_ID);
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

fn account_to_proto(record: AccountRecord) -> pb::Account {
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

pub(crate) type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn respond<T>(result: ApiResult<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

#[tonic::async_trait]
impl IngestionService for IngestionApi {
    type StreamEventsStream = ResponseStream<pb::StreamEventsResponse>;
    type StreamAccountSignalsStream = ResponseStream<pb::StreamAccountSignalsResponse>;

    async fn batch_upsert_accounts(
        &self,
        request: Request<pb::BatchUpsertAccountsRequest>,
    ) -> Result<Response<pb::BatchUpsertAccountsResponse>, Status> {
        respond(self.batch_upsert_accounts(request.into_inner()).await)
    }

    async fn batch_upsert_contacts(
        &self,
        request: Request<pb::BatchUpsertContactsRequest>,
    ) -> Result<Response<pb::BatchUpsertContactsResponse>, Status> {
        respond(self.batch_upsert_contacts(request.into_inner()).await)
    }

    async fn batch_upsert_subscriptions(
        &self,
        request: Request<pb::BatchUpsertSubscriptionsRequest>,
    ) -> Result<Response<pb::BatchUpsertSubscriptionsResponse>, Status> {
        respond(self.batch_upsert_subscriptions(request.into_inner()).await)
    }

    async fn batch_upsert_features(
        &self,
        request: Request<pb::BatchUpsertFeaturesRequest>,
    ) -> Result<Response<pb::BatchUpsertFeaturesResponse>, Status> {
        let r = request.into_inner();
        respond(
            self.upsert_kind(
                "BatchUpsertFeatures",
                &r.request_id,
                &r,
                ("features", &r.features),
                convert::feature,
                |s| pb::BatchUpsertFeaturesResponse { summary: Some(s) },
            )
            .await,
        )
    }

    async fn batch_upsert_tickets(
        &self,
        request: Request<pb::BatchUpsertTicketsRequest>,
    ) -> Result<Response<pb::BatchUpsertTicketsResponse>, Status> {
        let r = request.into_inner();
        respond(
            self.upsert_kind(
                "BatchUpsertTickets",
                &r.request_id,
                &r,
                ("tickets", &r.tickets),
                convert::ticket,
                |s| pb::BatchUpsertTicketsResponse { summary: Some(s) },
            )
            .await,
        )
    }

    async fn batch_upsert_survey_responses(
        &self,
        request: Request<pb::BatchUpsertSurveyResponsesRequest>,
    ) -> Result<Response<pb::BatchUpsertSurveyResponsesResponse>, Status> {
        let r = request.into_inner();
        respond(
            self.upsert_kind(
                "BatchUpsertSurveyResponses",
                &r.request_id,
                &r,
                ("responses", &r.responses),
                convert::survey,
                |s| pb::BatchUpsertSurveyResponsesResponse { summary: Some(s) },
            )
            .await,
        )
    }

    async fn batch_upsert_invoices(
        &self,
        request: Request<pb::BatchUpsertInvoicesRequest>,
    ) -> Result<Response<pb::BatchUpsertInvoicesResponse>, Status> {
        let r = request.into_inner();
        respond(
            self.upsert_kind(
                "BatchUpsertInvoices",
                &r.request_id,
                &r,
                ("invoices", &r.invoices),
                convert::invoice,
                |s| pb::BatchUpsertInvoicesResponse { summary: Some(s) },
            )
            .await,
        )
    }

    async fn batch_upsert_external_signals(
        &self,
        request: Request<pb::BatchUpsertExternalSignalsRequest>,
    ) -> Result<Response<pb::BatchUpsertExternalSignalsResponse>, Status> {
        let r = request.into_inner();
        respond(
            self.upsert_kind(
                "BatchUpsertExternalSignals",
                &r.request_id,
                &r,
                ("signals", &r.signals),
                convert::external_signal,
                |s| pb::BatchUpsertExternalSignalsResponse { summary: Some(s) },
            )
            .await,
        )
    }

    async fn batch_upsert_success_metrics(
        &self,
        request: Request<pb::BatchUpsertSuccessMetricsRequest>,
    ) -> Result<Response<pb::BatchUpsertSuccessMetricsResponse>, Status> {
        let r = request.into_inner();
        respond(
            self.upsert_kind(
                "BatchUpsertSuccessMetrics",
                &r.request_id,
                &r,
                ("metrics", &r.metrics),
                convert::success_metric,
                |s| pb::BatchUpsertSuccessMetricsResponse { summary: Some(s) },
            )
            .await,
        )
    }

    async fn ingest_events(
        &self,
        request: Request<pb::IngestEventsRequest>,
    ) -> Result<Response<pb::IngestEventsResponse>, Status> {
        respond(self.ingest_events(request.into_inner()).await)
    }

    async fn stream_events(
        &self,
        request: Request<Streaming<pb::StreamEventsRequest>>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        Ok(Response::new(crate::stream::acknowledge_chunks(
            self.clone(),
            request.into_inner(),
        )))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        respond(self.get_account(request.into_inner()).await)
    }

    async fn list_contacts(
        &self,
        request: Request<pb::ListContactsRequest>,
    ) -> Result<Response<pb::ListContactsResponse>, Status> {
        respond(self.list_contacts(request.into_inner()).await)
    }

    async fn get_subscription_history(
        &self,
        request: Request<pb::GetSubscriptionHistoryRequest>,
    ) -> Result<Response<pb::GetSubscriptionHistoryResponse>, Status> {
        respond(self.get_subscription_history(request.into_inner()).await)
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        respond(self.list_accounts(request.into_inner()).await)
    }

    async fn list_account_timeline(
        &self,
        request: Request<pb::ListAccountTimelineRequest>,
    ) -> Result<Response<pb::ListAccountTimelineResponse>, Status> {
        respond(self.list_account_timeline(request.into_inner()).await)
    }

    async fn get_account_signals(
        &self,
        request: Request<pb::GetAccountSignalsRequest>,
    ) -> Result<Response<pb::GetAccountSignalsResponse>, Status> {
        respond(self.get_account_signals(request.into_inner()).await)
    }

    async fn stream_account_signals(
        &self,
        request: Request<pb::StreamAccountSignalsRequest>,
    ) -> Result<Response<Self::StreamAccountSignalsStream>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::default();
        let as_of = as_of_date(request.as_of.as_ref(), &mut violations);
        for (i, id) in request.account_ids.iter().enumerate() {
            violations.require_text(id, format!("account_ids[{i}]"), MAX_ID);
        }
        violations.into_result().map_err(Status::from)?;
        Ok(Response::new(crate::stream::signals(
            self.pool.clone(),
            request.account_ids,
            as_of,
        )))
    }
}
