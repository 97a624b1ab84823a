//! Accounts: storage with newest-source-time-wins upserts and a version
//! history for as-of reads.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use crate::convert::Attributes;
use crate::records::version_rounds;

/// An account as its source describes it.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct AccountRecord {
    pub account_id: String,
    pub name: String,
    pub segment: String,
    pub industry: String,
    pub owner: String,
    pub parent_account_id: Option<String>,
    /// The `LifecycleStage` enum value of the API (0 when the source gave none).
    pub lifecycle_stage: i16,
    pub source_updated_at: DateTime<Utc>,
    pub attributes: Json<Attributes>,
}

/// What a batch upsert did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UpsertOutcome {
    /// Accounts created or changed, in id order.
    pub applied: Vec<String>,
    /// Items not applied because the stored record is as new or newer.
    pub stale: usize,
}

/// Applies a batch inside the caller's transaction. Every dated version in
/// the batch is applied, oldest first; against storage, only a strictly
/// newer `source_updated_at` overwrites. Each applied change is kept as a
/// version.
pub async fn upsert(
    tx: &mut PgConnection,
    records: Vec<AccountRecord>,
) -> sqlx::Result<UpsertOutcome> {
    let submitted = records.len();
    let mut applied = Vec::with_capacity(submitted);
    for round in version_rounds(records, |r| r.account_id.clone(), |r| r.source_updated_at) {
        applied.extend(upsert_round(tx, round).await?);
    }
    applied.sort();
    let stale = submitted - applied.len();
    Ok(UpsertOutcome { applied, stale })
}

/// Applies at most one version per account; returns the accounts applied.
async fn upsert_round(
    tx: &mut PgConnection,
    batch: Vec<AccountRecord>,
) -> sqlx::Result<Vec<String>> {
    let mut columns = Columns::with_capacity(batch.len());
    for record in batch {
        columns.push(record);
    }
    sqlx::query_scalar(
        "WITH input AS ( \
           SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], \
                                $6::text[], $7::int2[], $8::timestamptz[], $9::jsonb[]) \
             AS t(account_id, name, segment, industry, owner, parent_account_id, lifecycle_stage, \
                  source_updated_at, attributes) \
         ), upserted AS ( \
           INSERT INTO ingestion.accounts AS a \
             (account_id, name, segment, industry, owner, parent_account_id, lifecycle_stage, \
              source_updated_at, attributes) \
           SELECT * FROM input \
           ON CONFLICT (account_id) DO UPDATE SET \
             name = EXCLUDED.name, segment = EXCLUDED.segment, industry = EXCLUDED.industry, \
             owner = EXCLUDED.owner, parent_account_id = EXCLUDED.parent_account_id, \
             lifecycle_stage = EXCLUDED.lifecycle_stage, source_updated_at = EXCLUDED.source_updated_at, \
             attributes = EXCLUDED.attributes, updated_at = now() \
           WHERE a.source_updated_at < EXCLUDED.source_updated_at \
           RETURNING a.* \
         ) \
         INSERT INTO ingestion.account_versions \
           (account_id, valid_from, name, segment, industry, owner, parent_account_id, lifecycle_stage, attributes) \
         SELECT account_id, source_updated_at, name, segment, industry, owner, parent_account_id, \
                lifecycle_stage, attributes \
         FROM upserted \
         ON CONFLICT (account_id, valid_from) DO NOTHING \
         RETURNING account_id",
    )
    .bind(&columns.account_id)
    .bind(&columns.name)
    .bind(&columns.segment)
    .bind(&columns.industry)
    .bind(&columns.owner)
    .bind(&columns.parent_account_id)
    .bind(&columns.lifecycle_stage)
    .bind(&columns.source_updated_at)
    .bind(&columns.attributes)
    .fetch_all(&mut *tx)
    .await
}

/// The batch as column arrays, for one `UNNEST` insert.
struct Columns {
    account_id: Vec<String>,
    name: Vec<String>,
    segment: Vec<String>,
    industry: Vec<String>,
    owner: Vec<String>,
    parent_account_id: Vec<Option<String>>,
    lifecycle_stage: Vec<i16>,
    source_updated_at: Vec<DateTime<Utc>>,
    attributes: Vec<Json<Attributes>>,
}

impl Columns {
    fn with_capacity(n: usize) -> Self {
        Self {
            account_id: Vec::with_capacity(n),
            name: Vec::with_capacity(n),
            segment: Vec::with_capacity(n),
            industry: Vec::with_capacity(n),
            owner: Vec::with_capacity(n),
            parent_account_id: Vec::with_capacity(n),
            lifecycle_stage: Vec::with_capacity(n),
            source_updated_at: Vec::with_capacity(n),
            attributes: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, record: AccountRecord) {
        self.account_id.push(record.account_id);
        self.name.push(record.name);
        self.segment.push(record.segment);
        self.industry.push(record.industry);
        self.owner.push(record.owner);
        self.parent_account_id.push(record.parent_account_id);
        self.lifecycle_stage.push(record.lifecycle_stage);
        self.source_updated_at.push(record.source_updated_at);
        self.attributes.push(record.attributes);
    }
}

const SELECT_ACCOUNT: &str = "SELECT account_id, name, segment, industry, owner, parent_account_id, \
     lifecycle_stage, source_updated_at, attributes FROM ingestion.accounts";

pub async fn get(pool: &PgPool, account_id: &str) -> sqlx::Result<Option<AccountRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_ACCOUNT} WHERE account_id = $1"
    )))
    .bind(account_id)
    .fetch_optional(pool)
    .await
}

/// The accounts of `account_ids` that exist, in id order.
pub async fn get_many(pool: &PgPool, account_ids: &[String]) -> sqlx::Result<Vec<AccountRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_ACCOUNT} WHERE account_id = ANY($1) ORDER BY account_id"
    )))
    .bind(account_ids)
    .fetch_all(pool)
    .await
}

/// Filters of a listing; `None` matches anything.
#[derive(Debug, Default, Clone)]
pub struct AccountFilter {
    pub segment: Option<String>,
    pub owner: Option<String>,
    pub lifecycle_stage: Option<i16>,
}

/// Accounts in id order after `after`, at most `limit`.
pub async fn list(
    pool: &PgPool,
    filter: &AccountFilter,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<AccountRecord>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{SELECT_ACCOUNT} \
         WHERE ($1::text IS NULL OR segment = $1) \
           AND ($2::text IS NULL OR owner = $2) \
           AND ($3::int2 IS NULL OR lifecycle_stage = $3) \
           AND ($4::text IS NULL OR account_id > $4) \
         ORDER BY account_id LIMIT $5"
    )))
    .bind(&filter.segment)
    .bind(&filter.owner)
    .bind(filter.lifecycle_stage)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}
