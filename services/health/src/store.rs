//! Storage of scorecard versions and of scores.

use chrono::{DateTime, NaiveDate, Utc};
use prost::Message as _;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool};
use tenure_proto::health::v1::AccountHealth;

use crate::scorecard::ScorecardDef;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct StoredScorecard {
    pub name: String,
    pub version: i32,
    pub definition: Json<ScorecardDef>,
    pub create_time: DateTime<Utc>,
}

/// Stores the next version of scorecard `name`; creates of one name serialise.
pub async fn insert_scorecard(
    tx: &mut PgConnection,
    name: &str,
    def: &ScorecardDef,
) -> sqlx::Result<StoredScorecard> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('health.scorecards:' || $1, 0))")
        .bind(name)
        .execute(&mut *tx)
        .await?;
    sqlx::query_as(
        "INSERT INTO health.scorecards (name, version, segment, definition) \
         SELECT $1, coalesce(max(version), 0) + 1, $2, $3 FROM health.scorecards WHERE name = $1 \
         RETURNING name, version, definition, create_time",
    )
    .bind(name)
    .bind(&def.segment)
    .bind(Json(def))
    .fetch_one(&mut *tx)
    .await
}

/// A version of `name`; the latest when `version` is `None`.
pub async fn scorecard(
    pool: &PgPool,
    name: &str,
    version: Option<i32>,
) -> sqlx::Result<Option<StoredScorecard>> {
    sqlx::query_as(
        "SELECT name, version, definition, create_time FROM health.scorecards \
         WHERE name = $1 AND ($2::int4 IS NULL OR version = $2) ORDER BY version DESC LIMIT 1",
    )
    .bind(name)
    .bind(version)
    .fetch_optional(pool)
    .await
}

/// The latest version of every scorecard, by name, after `after`.
pub async fn list_latest(
    pool: &PgPool,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<StoredScorecard>> {
    sqlx::query_as(
        "SELECT DISTINCT ON (name) name, version, definition, create_time FROM health.scorecards \
         WHERE ($1::text IS NULL OR name > $1) ORDER BY name, version DESC LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The scorecard for `segment`: the latest version of the most recently
/// changed scorecard of that segment, else of the default (empty) segment.
pub async fn scorecard_for_segment(
    pool: &PgPool,
    segment: &str,
) -> sqlx::Result<Option<StoredScorecard>> {
    sqlx::query_as(
        "SELECT name, version, definition, create_time FROM health.scorecards \
         WHERE segment = $1 OR segment = '' \
         ORDER BY (segment = $1) DESC, create_time DESC, version DESC LIMIT 1",
    )
    .bind(segment)
    .fetch_optional(pool)
    .await
}

pub async fn any_scorecard(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM health.scorecards)")
        .fetch_one(pool)
        .await
}

/// Stores an account's score and that day's snapshot; storing the same
/// result again changes nothing of substance.
pub async fn save_score(
    tx: &mut PgConnection,
    health: &AccountHealth,
    as_of: NaiveDate,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO health.scores (account_id, score, band, scorecard_name, scorecard_version, as_of, detail, compute_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, now()) \
         ON CONFLICT (account_id) DO UPDATE SET score = EXCLUDED.score, band = EXCLUDED.band, \
           scorecard_name = EXCLUDED.scorecard_name, scorecard_version = EXCLUDED.scorecard_version, \
           as_of = EXCLUDED.as_of, detail = EXCLUDED.detail, compute_time = now()",
    )
    .bind(&health.account_id)
    .bind(health.score)
    .bind(health.band as i16)
    .bind(&health.scorecard_name)
    .bind(health.scorecard_version)
    .bind(as_of)
    .bind(health.encode_to_vec())
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO health.score_history (account_id, day, score, band, scorecard_name, scorecard_version) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (account_id, day) DO UPDATE SET score = EXCLUDED.score, band = EXCLUDED.band, \
           scorecard_name = EXCLUDED.scorecard_name, scorecard_version = EXCLUDED.scorecard_version",
    )
    .bind(&health.account_id)
    .bind(as_of)
    .bind(health.score)
    .bind(health.band as i16)
    .bind(&health.scorecard_name)
    .bind(health.scorecard_version)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

pub async fn latest_score(pool: &PgPool, account_id: &str) -> sqlx::Result<Option<AccountHealth>> {
    let detail: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT detail FROM health.scores WHERE account_id = $1")
            .bind(account_id)
            .fetch_optional(pool)
            .await?;
    detail
        .map(|bytes| {
            AccountHealth::decode(bytes.as_slice()).map_err(|e| sqlx::Error::Decode(Box::new(e)))
        })
        .transpose()
}

/// The account's score before this computation, with the highest score of
/// the `window_days` before `as_of`; `None` for a first score.
pub async fn before(
    tx: &mut PgConnection,
    account_id: &str,
    as_of: NaiveDate,
    window_days: i64,
) -> sqlx::Result<Option<crate::changes::Before>> {
    let row: Option<(f64, i16, Option<f64>)> = sqlx::query_as(
        "SELECT s.score, s.band, (SELECT max(h.score) FROM health.score_history h \
            WHERE h.account_id = s.account_id AND h.day >= $2 - $3::int AND h.day < $2) \
         FROM health.scores s WHERE s.account_id = $1 FOR UPDATE",
    )
    .bind(account_id)
    .bind(as_of)
    .bind(window_days as i32)
    .fetch_optional(&mut *tx)
    .await?;
    Ok(row.map(|(score, band, peak)| crate::changes::Before {
        score,
        band: tenure_proto::health::v1::Band::try_from(i32::from(band)).unwrap_or_default(),
        peak: peak.map_or(score, |p| p.max(score)),
    }))
}

/// Score change over 7, 30 and 90 days: `score` minus the snapshot on or
/// before that many days before `as_of`.
pub async fn trend(
    pool: &PgPool,
    account_id: &str,
    as_of: NaiveDate,
    score: f64,
) -> sqlx::Result<[Option<f64>; 3]> {
    let row: (Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT \
           (SELECT score FROM health.score_history WHERE account_id = $1 AND day <= $2 - 7 ORDER BY day DESC LIMIT 1), \
           (SELECT score FROM health.score_history WHERE account_id = $1 AND day <= $2 - 30 ORDER BY day DESC LIMIT 1), \
           (SELECT score FROM health.score_history WHERE account_id = $1 AND day <= $2 - 90 ORDER BY day DESC LIMIT 1)",
    )
    .bind(account_id)
    .bind(as_of)
    .fetch_one(pool)
    .await?;
    Ok([row.0, row.1, row.2].map(|then| then.map(|then| score - then)))
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Snapshot {
    pub day: NaiveDate,
    pub score: f64,
    pub band: i16,
    pub scorecard_name: String,
    pub scorecard_version: i32,
}

/// Snapshots in `[from, before)` newest first, older than the cursor day.
pub async fn history(
    pool: &PgPool,
    account_id: &str,
    from: Option<NaiveDate>,
    before: Option<NaiveDate>,
    after: Option<NaiveDate>,
    limit: i64,
) -> sqlx::Result<Vec<Snapshot>> {
    sqlx::query_as(
        "SELECT day, score, band, scorecard_name, scorecard_version FROM health.score_history \
         WHERE account_id = $1 AND ($2::date IS NULL OR day >= $2) AND ($3::date IS NULL OR day < $3) \
           AND ($4::date IS NULL OR day < $4) \
         ORDER BY day DESC LIMIT $5",
    )
    .bind(account_id)
    .bind(from)
    .bind(before)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}
