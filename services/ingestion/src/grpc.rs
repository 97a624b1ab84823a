//! The gRPC edge of ingestion: validates requests into domain values, runs
//! them in one transaction with their outbox messages, and answers.

use chrono::Duration;
use sqlx::PgPool;
use tenure_platform::{ApiError, ApiResult, Violations, idempotency, outbox, paging, time};
use tenure_proto::health::v1::NotifyAccountsChangedRequest;
use tenure_proto::ingestion::v1::{self as pb, ingestion_service_server::IngestionService};
use tonic::{Request, Response, Status};

use crate::SCHEMA;
use crate::accounts::{self, AccountFilter, AccountRecord};
use crate::notify::TOPIC_ACCOUNTS_CHANGED;

/// Size limits, from the environment.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Most items in one batch call (`INGESTION_MAX_BATCH_ITEMS`).
    pub max_batch_items: usize,
    /// How far in the future a source timestamp may be (`INGESTION_FUTURE_TOLERANCE`).
    pub future_tolerance: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_batch_items: 5000,
            future_tolerance: Duration::minutes(5),
        }
    }
}

impl Limits {
    pub fn from_env() -> anyhow::Result<Self> {
        let mut limits = Self::default();
        if let Ok(value) = std::env::var("INGESTION_MAX_BATCH_ITEMS") {
            limits.max_batch_items = value.parse().map_err(|_| {
                anyhow::anyhow!("INGESTION_MAX_BATCH_ITEMS={value:?} is not a count")
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
}

const MAX_ID: usize = 128;
const MAX_NAME: usize = 512;
const MAX_LABEL: usize = 128;

pub struct IngestionApi {
    pool: PgPool,
    limits: Limits,
}

impl IngestionApi {
    pub fn new(pool: PgPool, limits: Limits) -> Self {
        Self { pool, limits }
    }

    fn check_batch_size(&self, len: usize, field: &str) -> ApiResult<()> {
        if len == 0 {
            return Err(ApiError::invalid(field, "must not be empty"));
        }
        if len > self.limits.max_batch_items {
            return Err(ApiError::invalid(
                field,
                format!("must hold at most {} items", self.limits.max_batch_items),
            ));
        }
        Ok(())
    }

    async fn batch_upsert_accounts(
        &self,
        request: pb::BatchUpsertAccountsRequest,
    ) -> ApiResult<pb::BatchUpsertAccountsResponse> {
        const METHOD: &str = "BatchUpsertAccounts";
        self.check_batch_size(request.accounts.len(), "accounts")?;
        let mut violations = Violations::default();
        let records: Vec<AccountRecord> = request
            .accounts
            .iter()
            .enumerate()
            .filter_map(|(i, account)| {
                account_from_proto(
                    account,
                    &format!("accounts[{i}]"),
                    &self.limits,
                    &mut violations,
                )
            })
            .collect();
        violations.into_result()?;

        let mut tx = self.pool.begin().await?;
        if let Some(previous) =
            idempotency::claim(&mut tx, SCHEMA, METHOD, &request.request_id, &request).await?
        {
            return Ok(previous);
        }
        let outcome = accounts::upsert(&mut tx, records).await?;
        if !outcome.applied.is_empty() {
            let earliest = request
                .accounts
                .iter()
                .filter_map(|a| a.updated_at)
                .min_by_key(|t| (t.seconds, t.nanos));
            let notice = NotifyAccountsChangedRequest {
                request_id: String::new(),
                account_ids: outcome.applied.clone(),
                earliest_event_time: earliest,
            };
            outbox::enqueue(&mut tx, SCHEMA, TOPIC_ACCOUNTS_CHANGED, &notice).await?;
        }
        let response = pb::BatchUpsertAccountsResponse {
            applied_count: outcome.applied.len() as i32,
            stale_count: outcome.stale as i32,
        };
        idempotency::complete(&mut tx, SCHEMA, METHOD, &request.request_id, &response).await?;
        tx.commit().await?;
        Ok(response)
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
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// Validates one account of a batch; violations are named under `path`.
fn account_from_proto(
    account: &pb::Account,
    path: &str,
    limits: &Limits,
    violations: &mut Violations,
) -> Option<AccountRecord> {
    let before = violations.len();
    violations.require_text(&account.account_id, format!("{path}.account_id"), MAX_ID);
    violations.require_text(&account.name, format!("{path}.name"), MAX_NAME);
    violations.limit_text(&account.segment, format!("{path}.segment"), MAX_LABEL);
    violations.limit_text(&account.industry, format!("{path}.industry"), MAX_LABEL);
    violations.limit_text(&account.owner, format!("{path}.owner"), MAX_NAME);
    violations.limit_text(
        &account.parent_account_id,
        format!("{path}.parent_account_id"),
        MAX_ID,
    );
    violations.check(
        account.parent_account_id.is_empty() || account.parent_account_id != account.account_id,
        format!("{path}.parent_account_id"),
        "must not be the account itself",
    );
    violations.check(
        pb::LifecycleStage::try_from(account.lifecycle_stage).is_ok(),
        format!("{path}.lifecycle_stage"),
        "is not a known stage",
    );
    let updated_at = time::past_timestamp(
        account.updated_at.as_ref(),
        &format!("{path}.updated_at"),
        limits.future_tolerance,
        violations,
    );
    if violations.len() > before {
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
    }
}

#[tonic::async_trait]
impl IngestionService for IngestionApi {
    async fn batch_upsert_accounts(
        &self,
        request: Request<pb::BatchUpsertAccountsRequest>,
    ) -> Result<Response<pb::BatchUpsertAccountsResponse>, Status> {
        Ok(Response::new(
            self.batch_upsert_accounts(request.into_inner()).await?,
        ))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        Ok(Response::new(self.get_account(request.into_inner()).await?))
    }

    async fn list_accounts(
        &self,
        request: Request<pb::ListAccountsRequest>,
    ) -> Result<Response<pb::ListAccountsResponse>, Status> {
        Ok(Response::new(
            self.list_accounts(request.into_inner()).await?,
        ))
    }
}
