//! Storage of maturity model versions and of each account's held level.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};

use super::model::{Held, MaturityDef};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredModel {
    pub name: String,
    pub version: i32,
    pub definition: Json<MaturityDef>,
    pub create_time: DateTime<Utc>,
}

const COLUMNS: &str = "name, version, definition, create_time";

/// Stores the next version of model `name`; creates of one name serialise.
pub async fn insert(
    tx: &mut PgConnection,
    name: &str,
    def: &MaturityDef,
) -> sqlx::Result<StoredModel> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('health.maturity_models:' || $1, 0))",
    )
    .bind(name)
    .execute(&mut *tx)
    .await?;
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO health.maturity_models (name, version, definition) \
         SELECT $1, coalesce(max(version), 0) + 1, $2 FROM health.maturity_models WHERE name = $1 \
         RETURNING {COLUMNS}"
    )))
    .bind(name)
    .bind(Json(def))
    .fetch_one(&mut *tx)
    .await
}

/// A version of `name`; the latest when `version` is `None`.
pub async fn get(
    pool: &PgPool,
    name: &str,
    version: Option<i32>,
) -> sqlx::Result<Option<StoredModel>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM health.maturity_models \
         WHERE name = $1 AND ($2::int4 IS NULL OR version = $2) ORDER BY version DESC LIMIT 1"
    )))
    .bind(name)
    .bind(version)
    .fetch_optional(pool)
    .await
}

/// The latest version of every model, by name, after `after` (all of them
/// when `limit` is `None`).
pub async fn list_latest(
    db: impl sqlx::PgExecutor<'_>,
    after: Option<&str>,
    limit: Option<i64>,
) -> sqlx::Result<Vec<StoredModel>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT DISTINCT ON (name) {COLUMNS} FROM health.maturity_models \
         WHERE ($1::text IS NULL OR name > $1) ORDER BY name, version DESC LIMIT $2"
    )))
    .bind(after)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// The held levels of `account_ids` on every model, by (model, account).
pub async fn held_many(
    tx: &mut PgConnection,
    account_ids: &[String],
) -> sqlx::Result<HashMap<(String, String), Held>> {
    let rows: Vec<(String, String, i32, i16, NaiveDate, bool)> = sqlx::query_as(
        "SELECT model_name, account_id, model_version, level, since, stuck_notified \
         FROM health.maturity_levels WHERE account_id = ANY($1)",
    )
    .bind(account_ids)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(model, account, model_version, level, since, stuck_notified)| {
                let held = Held {
                    model_version,
                    level: u8::try_from(level).unwrap_or(0),
                    since,
                    stuck_notified,
                };
                ((model, account), held)
            },
        )
        .collect())
}

/// Stores held levels, by (model, account), in one statement.
pub async fn save_held(
    tx: &mut PgConnection,
    rows: &[((String, String), Held)],
) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let (mut models, mut accounts, mut versions, mut levels, mut sinces, mut stuck) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for ((model, account), held) in rows {
        models.push(model.as_str());
        accounts.push(account.as_str());
        versions.push(held.model_version);
        levels.push(i16::from(held.level));
        sinces.push(held.since);
        stuck.push(held.stuck_notified);
    }
    sqlx::query(
        "INSERT INTO health.maturity_levels \
           (model_name, account_id, model_version, level, since, stuck_notified) \
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::int2[], $5::date[], $6::bool[]) \
         ON CONFLICT (model_name, account_id) DO UPDATE SET \
           model_version = EXCLUDED.model_version, level = EXCLUDED.level, since = EXCLUDED.since, \
           stuck_notified = EXCLUDED.stuck_notified, updated_at = now()",
    )
    .bind(&models)
    .bind(&accounts)
    .bind(&versions)
    .bind(&levels)
    .bind(&sinces)
    .bind(&stuck)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
