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
    db: impl sqlx::PgExecutor<'_>,
    segment: &str,
) -> sqlx::Result<Option<StoredScorecard>> {
    sqlx::query_as(
        "SELECT name, version, definition, create_time FROM health.scorecards \
         WHERE segment = $1 OR segment = '' \
         ORDER BY (segment = $1) DESC, create_time DESC, version DESC LIMIT 1",
    )
    .bind(segment)
    .fetch_optional(db)
    .await
}

pub async fn any_scorecard(pool: &PgPool) -> sqlx::Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM health.scorecards)")
        .fetch_one(pool)
        .await
}

/// What lists filter and sort scored accounts by.
#[derive(Clone, Debug, Default, sqlx::FromRow)]
pub struct AccountFacts {
    pub segment: String,
    pub owner: String,
    pub parent_account_id: String,
    pub currency: String,
    pub arr_minor: i64,
}

/// Stores accounts' scores and each one's snapshot of its day, in two
/// statements for the whole batch; storing the same day again replaces it.
pub async fn save_scores(
    tx: &mut PgConnection,
    scored: &[(AccountHealth, NaiveDate, AccountFacts)],
) -> sqlx::Result<()> {
    if scored.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&(AccountHealth, NaiveDate, AccountFacts)) -> String| -> Vec<String> {
        scored.iter().map(f).collect()
    };
    let ids = column(|(h, _, _)| h.account_id.clone());
    let scores: Vec<f64> = scored.iter().map(|(h, _, _)| h.score).collect();
    let bands: Vec<i16> = scored.iter().map(|(h, _, _)| h.band as i16).collect();
    let names = column(|(h, _, _)| h.scorecard_name.clone());
    let versions: Vec<i32> = scored.iter().map(|(h, _, _)| h.scorecard_version).collect();
    let days: Vec<NaiveDate> = scored.iter().map(|(_, d, _)| *d).collect();
    let details: Vec<Vec<u8>> = scored.iter().map(|(h, _, _)| h.encode_to_vec()).collect();
    let arr: Vec<i64> = scored.iter().map(|(_, _, f)| f.arr_minor).collect();
    sqlx::query(
        "INSERT INTO health.scores (account_id, score, band, scorecard_name, scorecard_version, as_of, detail, \
           compute_time, segment, owner, currency, arr_minor, parent_account_id) \
         SELECT i.account_id, i.score, i.band, i.scorecard_name, i.scorecard_version, i.as_of, i.detail, \
           now(), i.segment, i.owner, i.currency, i.arr_minor, i.parent_account_id \
         FROM UNNEST($1::text[], $2::float8[], $3::int2[], $4::text[], $5::int4[], $6::date[], $7::bytea[], \
                     $8::text[], $9::text[], $10::text[], $11::int8[], $12::text[]) \
           AS i(account_id, score, band, scorecard_name, scorecard_version, as_of, detail, \
                segment, owner, currency, arr_minor, parent_account_id) \
         ON CONFLICT (account_id) DO UPDATE SET score = EXCLUDED.score, band = EXCLUDED.band, \
           scorecard_name = EXCLUDED.scorecard_name, scorecard_version = EXCLUDED.scorecard_version, \
           as_of = EXCLUDED.as_of, detail = EXCLUDED.detail, compute_time = now(), segment = EXCLUDED.segment, \
           owner = EXCLUDED.owner, currency = EXCLUDED.currency, arr_minor = EXCLUDED.arr_minor, \
           parent_account_id = EXCLUDED.parent_account_id",
    )
    .bind(&ids)
    .bind(&scores)
    .bind(&bands)
    .bind(&names)
    .bind(&versions)
    .bind(&days)
    .bind(&details)
    .bind(column(|(_, _, f)| f.segment.clone()))
    .bind(column(|(_, _, f)| f.owner.clone()))
    .bind(column(|(_, _, f)| f.currency.clone()))
    .bind(&arr)
    .bind(column(|(_, _, f)| f.parent_account_id.clone()))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO health.score_history (account_id, day, score, band, scorecard_name, scorecard_version) \
         SELECT * FROM UNNEST($1::text[], $2::date[], $3::float8[], $4::int2[], $5::text[], $6::int4[]) \
         ON CONFLICT (account_id, day) DO UPDATE SET score = EXCLUDED.score, band = EXCLUDED.band, \
           scorecard_name = EXCLUDED.scorecard_name, scorecard_version = EXCLUDED.scorecard_version",
    )
    .bind(&ids)
    .bind(&days)
    .bind(&scores)
    .bind(&bands)
    .bind(&names)
    .bind(&versions)
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

/// Each account's score before this computation, with the highest score
/// of the `window_days` before `as_of`, its row locked against concurrent
/// scorers; accounts scored for the first time are absent.
pub async fn before_many(
    tx: &mut PgConnection,
    account_ids: &[String],
    as_of: NaiveDate,
    window_days: i64,
) -> sqlx::Result<std::collections::HashMap<String, crate::changes::Before>> {
    // Row locks hold only accounts scored before: two scorers of an account
    // scored for the first time would each see no previous score and each
    // report a first change. A lock per account, taken in id order, makes
    // the second wait for the first and see its score.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('health.scores:' || id, 0)) \
         FROM (SELECT DISTINCT id FROM unnest($1::text[]) AS id ORDER BY id) AS ids",
    )
    .bind(account_ids)
    .execute(&mut *tx)
    .await?;
    let rows: Vec<(String, f64, i16, Option<f64>)> = sqlx::query_as(
        "SELECT s.account_id, s.score, s.band, (SELECT max(h.score) FROM health.score_history h \
            WHERE h.account_id = s.account_id AND h.day >= $2 - $3::int AND h.day < $2) \
         FROM health.scores s WHERE s.account_id = ANY($1) ORDER BY s.account_id FOR UPDATE",
    )
    .bind(account_ids)
    .bind(as_of)
    .bind(window_days as i32)
    .fetch_all(&mut *tx)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(account_id, score, band, peak)| {
            let before = crate::changes::Before {
                score,
                band: tenure_proto::common::v1::Band::try_from(i32::from(band)).unwrap_or_default(),
                peak: peak.map_or(score, |p| p.max(score)),
            };
            (account_id, before)
        })
        .collect())
}

/// Score change over 7, 30 and 90 days: `score` minus the latest snapshot
/// on or before that many days before `as_of`, and no older than twice
/// that (a 7-day trend never compares with a snapshot from months ago;
/// with none in reach the trend is unknown).
pub async fn trend(
    pool: &PgPool,
    account_id: &str,
    as_of: NaiveDate,
    score: f64,
) -> sqlx::Result<[Option<f64>; 3]> {
    let row: (Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT \
           (SELECT score FROM health.score_history WHERE account_id = $1 \
              AND day <= $2 - 7 AND day >= $2 - 14 ORDER BY day DESC LIMIT 1), \
           (SELECT score FROM health.score_history WHERE account_id = $1 \
              AND day <= $2 - 30 AND day >= $2 - 60 ORDER BY day DESC LIMIT 1), \
           (SELECT score FROM health.score_history WHERE account_id = $1 \
              AND day <= $2 - 90 AND day >= $2 - 180 ORDER BY day DESC LIMIT 1)",
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

/// One row of a health list.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Listed {
    pub account_id: String,
    pub score: f64,
    pub band: i16,
    pub segment: String,
    pub owner: String,
    pub currency: String,
    pub arr_minor: i64,
    pub arr_at_risk_minor: i64,
}

/// Filters of lists and the distribution; `None` matches anything.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub band: Option<i16>,
    pub segment: Option<String>,
    pub owner: Option<String>,
}

const LISTED: &str = "SELECT account_id, score, band, segment, owner, currency, arr_minor, \
     CASE WHEN band < 3 THEN arr_minor ELSE 0 END AS arr_at_risk_minor FROM health.scores \
     WHERE ($1::int2 IS NULL OR band = $1) AND ($2::text IS NULL OR segment = $2) AND ($3::text IS NULL OR owner = $3)";

/// Lowest scores first, after the cursor `(score, account_id)`.
pub async fn list_by_score(
    pool: &PgPool,
    filter: &ListFilter,
    after: Option<(f64, String)>,
    limit: i64,
) -> sqlx::Result<Vec<Listed>> {
    let (score, id) = after.unzip();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{LISTED} AND ($4::float8 IS NULL OR (score, account_id) > ($4, $5)) ORDER BY score, account_id LIMIT $6"
    )))
    .bind(filter.band)
    .bind(&filter.segment)
    .bind(&filter.owner)
    .bind(score)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Most ARR at risk first, after the cursor `(arr_at_risk_minor, account_id)`.
pub async fn list_by_arr_at_risk(
    pool: &PgPool,
    filter: &ListFilter,
    after: Option<(i64, String)>,
    limit: i64,
) -> sqlx::Result<Vec<Listed>> {
    let (risk, id) = after.unzip();
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM ({LISTED}) l WHERE ($4::int8 IS NULL OR (l.arr_at_risk_minor < $4) \
           OR (l.arr_at_risk_minor = $4 AND l.account_id > $5)) \
         ORDER BY l.arr_at_risk_minor DESC, l.account_id LIMIT $6"
    )))
    .bind(filter.band)
    .bind(&filter.segment)
    .bind(&filter.owner)
    .bind(risk)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The latest scores of `ids` (sorted), in id order; unscored ids are
/// left out.
pub async fn listed(pool: &PgPool, ids: &[String]) -> sqlx::Result<Vec<Listed>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{LISTED} AND account_id = ANY($4) ORDER BY account_id"
    )))
    .bind(None::<i16>)
    .bind(None::<String>)
    .bind(None::<String>)
    .bind(ids)
    .fetch_all(pool)
    .await
}

/// Score, band, currency and ARR of every account matching `filter`.
pub async fn distribution(
    pool: &PgPool,
    filter: &ListFilter,
) -> sqlx::Result<Vec<(f64, i16, String, i64)>> {
    sqlx::query_as(
        "SELECT score, band, currency, arr_minor FROM health.scores \
         WHERE ($1::text IS NULL OR segment = $1) AND ($2::text IS NULL OR owner = $2)",
    )
    .bind(&filter.segment)
    .bind(&filter.owner)
    .fetch_all(pool)
    .await
}

/// The highest scores matching `filter`.
pub async fn top(pool: &PgPool, filter: &ListFilter, limit: i64) -> sqlx::Result<Vec<Listed>> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "{LISTED} ORDER BY score DESC, account_id LIMIT $4"
    )))
    .bind(filter.band)
    .bind(&filter.segment)
    .bind(&filter.owner)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Replaces one day's snapshot (late data recomputing the past).
pub async fn save_snapshot(
    tx: &mut PgConnection,
    account_id: &str,
    day: NaiveDate,
    score: f64,
    band: i16,
    card: &StoredScorecard,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE health.score_history SET score = $3, band = $4, scorecard_name = $5, scorecard_version = $6 \
         WHERE account_id = $1 AND day = $2",
    )
    .bind(account_id)
    .bind(day)
    .bind(score)
    .bind(band)
    .bind(&card.name)
    .bind(card.version)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// How a parent's children combine (`HEALTH_PARENT_ROLLUP`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rollup {
    ArrWeighted,
    Worst,
}

impl Rollup {
    /// The service's `HEALTH_PARENT_ROLLUP`, read once at start-up.
    pub fn from_settings(settings: &tenure_platform::config::Settings) -> anyhow::Result<Self> {
        match settings.get("HEALTH_PARENT_ROLLUP").as_deref() {
            None | Some("arr_weighted") => Ok(Self::ArrWeighted),
            Some("worst") => Ok(Self::Worst),
            Some(other) => {
                anyhow::bail!("HEALTH_PARENT_ROLLUP={other:?} is neither arr_weighted nor worst")
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::ArrWeighted => "arr_weighted",
            Self::Worst => "worst",
        }
    }
}

/// The children's combined score and their count, if the account has scored children.
pub async fn rollup(
    pool: &PgPool,
    parent_account_id: &str,
    method: Rollup,
) -> sqlx::Result<Option<(f64, i64)>> {
    let row: (Option<f64>, Option<f64>, Option<f64>, i64) = sqlx::query_as(
        "SELECT sum(score * arr_minor::float8) / nullif(sum(arr_minor::float8), 0), avg(score), min(score), count(*) \
         FROM health.scores WHERE parent_account_id = $1",
    )
    .bind(parent_account_id)
    .fetch_one(pool)
    .await?;
    let (weighted, mean, worst, count) = row;
    if count == 0 {
        return Ok(None);
    }
    let score = match method {
        // Children without ARR weigh equally.
        Rollup::ArrWeighted => weighted.or(mean),
        Rollup::Worst => worst,
    };
    Ok(score.map(|s| (s, count)))
}

/// The latest assessment of each of `account_ids` made by `as_of` and not
/// expired then.
pub async fn assessments(
    db: impl sqlx::PgExecutor<'_>,
    account_ids: &[String],
    as_of: NaiveDate,
) -> sqlx::Result<std::collections::HashMap<String, f64>> {
    let rows: Vec<(String, f64)> = sqlx::query_as(
        "SELECT DISTINCT ON (account_id) account_id, score FROM health.assessments \
         WHERE account_id = ANY($1) AND assessed_at::date <= $2 AND expires_on >= $2 \
         ORDER BY account_id, assessed_at DESC",
    )
    .bind(account_ids)
    .bind(as_of)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().collect())
}

pub async fn insert_assessment(
    tx: &mut PgConnection,
    account_id: &str,
    score: f64,
    note: &str,
    assessed_by: &str,
    expires_on: NaiveDate,
) -> sqlx::Result<uuid::Uuid> {
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO health.assessments (assessment_id, account_id, score, note, assessed_by, expires_on) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(account_id)
    .bind(score)
    .bind(note)
    .bind(assessed_by)
    .bind(expires_on)
    .execute(&mut *tx)
    .await?;
    Ok(id)
}
