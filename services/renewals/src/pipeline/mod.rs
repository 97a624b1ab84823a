//! The renewal pipeline: subscription versions and accounts copied from
//! ingestion, one opportunity per subscription term derived from them, the
//! health each account last had, and the read model every list, metric and
//! forecast starts from.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::PgPool;
use tenure_platform::time;
use tenure_proto::ingestion::v1 as ipb;

use crate::ledger::{Status, Version};

mod opportunities;

pub use opportunities::{Feed, OpportunityFilter, OpportunityRow, Pages};

/// Opportunity states (the API's `OpportunityState` values).
pub const OPEN: i16 = 1;
pub const RENEWED: i16 = 2;
pub const LOST: i16 = 3;

/// Converts ingestion's subscription versions; skips ones it cannot read.
pub fn versions_from_history(history: &ipb::SubscriptionHistory) -> Vec<Version> {
    history
        .versions
        .iter()
        .filter_map(|s| {
            let mut ignored = tenure_platform::Violations::default();
            let status = match ipb::SubscriptionStatus::try_from(s.status).ok()? {
                ipb::SubscriptionStatus::Trial => Status::Trial,
                ipb::SubscriptionStatus::Active => Status::Active,
                ipb::SubscriptionStatus::Canceled => Status::Canceled,
                ipb::SubscriptionStatus::Expired => Status::Expired,
                ipb::SubscriptionStatus::Unspecified => return None,
            };
            let arr = s.arr.as_ref()?;
            Some(Version {
                subscription_id: s.subscription_id.clone(),
                account_id: s.account_id.clone(),
                updated_at: time::timestamp(s.updated_at.as_ref(), "", &mut ignored)?,
                status,
                term_start: time::date(s.term_start.as_ref(), "", &mut ignored)?,
                term_end: time::date(s.term_end.as_ref(), "", &mut ignored)?,
                currency: arr.currency_code.clone(),
                arr_minor: arr.amount_minor,
            })
        })
        .collect()
}

/// One opportunity derived from a subscription's versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub subscription_id: String,
    pub account_id: String,
    pub term_start: NaiveDate,
    pub term_end: NaiveDate,
    pub currency: String,
    pub arr_minor: i64,
    pub state: i16,
    pub next_arr_minor: Option<i64>,
}

/// The terms of one subscription, each at its latest version. As in the
/// ledger, a version opens a new term when it starts at or after the
/// current term's end; any other version (a new ARR or status, a corrected
/// end date) updates the current term. A term followed by a later one
/// renewed; a term whose latest version is cancelled or expired is lost;
/// the rest are open.
pub fn terms(versions: &[Version]) -> Vec<Term> {
    let mut sorted: Vec<&Version> = versions.iter().collect();
    sorted.sort_by_key(|v| v.updated_at);
    let mut latest: Vec<&Version> = Vec::new();
    for version in sorted {
        match latest.last_mut() {
            Some(current) if version.term_start < current.term_end => *current = version,
            _ => latest.push(version),
        }
    }
    // Opportunities are keyed by term end: of terms sharing one, the later wins.
    let mut by_end: BTreeMap<NaiveDate, usize> = BTreeMap::new();
    for (i, v) in latest.iter().enumerate() {
        by_end.insert(v.term_end, i);
    }
    latest
        .iter()
        .enumerate()
        .filter(|(i, v)| by_end.get(&v.term_end) == Some(i))
        .map(|(i, v)| {
            let v = *v;
            let next = latest.get(i + 1);
            let (state, next_arr_minor) = match next {
                Some(next) => (RENEWED, Some(next.arr_minor)),
                None if !v.status.is_live() => (LOST, None),
                None => (OPEN, None),
            };
            Term {
                subscription_id: v.subscription_id.clone(),
                account_id: v.account_id.clone(),
                term_start: v.term_start,
                term_end: v.term_end,
                currency: v.currency.clone(),
                arr_minor: v.arr_minor,
                state,
                next_arr_minor,
            }
        })
        .collect()
}

#[derive(sqlx::FromRow)]
pub(crate) struct VersionRow {
    subscription_id: String,
    updated_at: DateTime<Utc>,
    account_id: String,
    status: i16,
    term_start: NaiveDate,
    term_end: NaiveDate,
    currency: String,
    arr_minor: i64,
}

impl VersionRow {
    fn into_version(self) -> Option<Version> {
        Some(Version {
            subscription_id: self.subscription_id,
            account_id: self.account_id,
            updated_at: self.updated_at,
            status: Status::from_code(self.status)?,
            term_start: self.term_start,
            term_end: self.term_end,
            currency: self.currency,
            arr_minor: self.arr_minor,
        })
    }
}

/// The versions of rows that can be read (a status code unknown to this
/// build is left out).
pub(crate) fn readable(rows: Vec<VersionRow>) -> Vec<Version> {
    rows.into_iter()
        .filter_map(VersionRow::into_version)
        .collect()
}

/// The first instant after `day` (UTC): what was recorded by the end of a
/// day is what has `updated_at` before it.
pub fn end_of_day(day: NaiveDate) -> DateTime<Utc> {
    day.succ_opt()
        .unwrap_or(day)
        .and_time(chrono::NaiveTime::MIN)
        .and_utc()
}

/// Every subscription version (in `currency`, if given) of accounts in `segment`.
pub async fn versions_in(
    pool: &PgPool,
    segment: Option<&str>,
    currency: Option<&str>,
) -> sqlx::Result<Vec<Version>> {
    let rows: Vec<VersionRow> = sqlx::query_as(
        "SELECT v.subscription_id, v.updated_at, v.account_id, v.status, v.term_start, v.term_end, \
           v.currency::text AS currency, v.arr_minor \
         FROM renewals.subscription_versions v \
         LEFT JOIN renewals.accounts a USING (account_id) \
         WHERE ($1::text IS NULL OR v.currency = $1) AND ($2::text IS NULL OR a.segment = $2)",
    )
    .bind(currency)
    .bind(segment)
    .fetch_all(pool)
    .await?;
    Ok(readable(rows))
}

/// Every subscription version recorded by the end of `as_of` (of the
/// accounts of `segment`, when given).
pub async fn versions_recorded_by(
    pool: &PgPool,
    as_of: NaiveDate,
    segment: Option<&str>,
) -> sqlx::Result<Vec<Version>> {
    let rows: Vec<VersionRow> = sqlx::query_as(
        "SELECT v.subscription_id, v.updated_at, v.account_id, v.status, v.term_start, v.term_end, \
           v.currency::text AS currency, v.arr_minor \
         FROM renewals.subscription_versions v \
         WHERE v.updated_at < $1 AND ($2::text IS NULL OR EXISTS (SELECT 1 FROM renewals.accounts a \
           WHERE a.account_id = v.account_id AND a.segment = $2))",
    )
    .bind(end_of_day(as_of))
    .bind(segment)
    .fetch_all(pool)
    .await?;
    Ok(readable(rows))
}

/// The versions recorded by the end of `as_of` (in `currency`) of every
/// subscription that by then had a term ending in `[from, before)`: what
/// the pipeline of that window could be built from on that day.
pub async fn versions_known_by(
    pool: &PgPool,
    from: Option<NaiveDate>,
    before: Option<NaiveDate>,
    currency: &str,
    as_of: NaiveDate,
) -> sqlx::Result<Vec<Version>> {
    let rows: Vec<VersionRow> = sqlx::query_as(
        "SELECT v.subscription_id, v.updated_at, v.account_id, v.status, v.term_start, v.term_end, \
           v.currency::text AS currency, v.arr_minor \
         FROM renewals.subscription_versions v \
         WHERE v.updated_at < $3 AND v.currency = $4 AND v.subscription_id IN ( \
           SELECT subscription_id FROM renewals.subscription_versions \
           WHERE updated_at < $3 AND ($1::date IS NULL OR term_end >= $1) \
             AND ($2::date IS NULL OR term_end < $2))",
    )
    .bind(from)
    .bind(before)
    .bind(end_of_day(as_of))
    .bind(currency)
    .fetch_all(pool)
    .await?;
    Ok(readable(rows))
}

/// An account's health as health scored it last.
pub struct AccountHealth {
    pub account_id: String,
    pub score: f64,
    pub band: String,
}

/// An account's churn probability by one model.
pub struct AccountChurn {
    pub account_id: String,
    pub probability: f64,
    pub model_id: String,
}

/// Records accounts' health and churn predictions in one statement; an
/// account named in only one of them keeps what it had of the other.
pub async fn set_health(
    pool: &PgPool,
    health: &[AccountHealth],
    churn: &[AccountChurn],
) -> sqlx::Result<()> {
    if health.is_empty() && churn.is_empty() {
        return Ok(());
    }
    let health_ids: Vec<&str> = health.iter().map(|h| h.account_id.as_str()).collect();
    let scores: Vec<f64> = health.iter().map(|h| h.score).collect();
    let bands: Vec<&str> = health.iter().map(|h| h.band.as_str()).collect();
    let churn_ids: Vec<&str> = churn.iter().map(|c| c.account_id.as_str()).collect();
    let probabilities: Vec<f64> = churn.iter().map(|c| c.probability).collect();
    let models: Vec<&str> = churn.iter().map(|c| c.model_id.as_str()).collect();
    sqlx::query(
        "WITH h AS (SELECT * FROM unnest($1::text[], $2::float8[], $3::text[]) \
                      AS h(account_id, score, band)), \
              c AS (SELECT * FROM unnest($4::text[], $5::float8[], $6::text[]) \
                      AS c(account_id, probability, model_id)) \
         INSERT INTO renewals.accounts (account_id, health_score, health_band, churn_probability, \
           churn_model_id, health_synced_at) \
         SELECT COALESCE(h.account_id, c.account_id), h.score, h.band, c.probability, \
           c.model_id, now() \
         FROM h FULL JOIN c ON c.account_id = h.account_id \
         ORDER BY 1 \
         ON CONFLICT (account_id) DO UPDATE SET \
           health_score = COALESCE(EXCLUDED.health_score, renewals.accounts.health_score), \
           health_band = COALESCE(EXCLUDED.health_band, renewals.accounts.health_band), \
           churn_probability = COALESCE(EXCLUDED.churn_probability, renewals.accounts.churn_probability), \
           churn_model_id = COALESCE(EXCLUDED.churn_model_id, renewals.accounts.churn_model_id), \
           health_synced_at = now()",
    )
    .bind(&health_ids)
    .bind(&scores)
    .bind(&bands)
    .bind(&churn_ids)
    .bind(&probabilities)
    .bind(&models)
    .execute(pool)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version of a yearly term ending on `end`.
    fn v(changed: &str, status: Status, end: &str, arr: i64) -> Version {
        let term_end: NaiveDate = end.parse().unwrap();
        Version {
            subscription_id: "s".into(),
            account_id: "a".into(),
            updated_at: format!("{changed}T00:00:00Z").parse().unwrap(),
            status,
            term_start: term_end - chrono::Months::new(12),
            term_end: end.parse().unwrap(),
            currency: "USD".into(),
            arr_minor: arr,
        }
    }

    #[test]
    fn terms_follow_the_versions() {
        let versions = [
            v("2024-01-01", Status::Active, "2025-01-01", 100),
            v("2024-06-01", Status::Active, "2025-01-01", 120),
            v("2024-12-20", Status::Active, "2026-01-01", 130),
            v("2025-11-01", Status::Canceled, "2026-01-01", 130),
        ];
        let terms = terms(&versions);
        assert_eq!(terms.len(), 2);
        assert_eq!((terms[0].arr_minor, terms[0].state), (120, RENEWED));
        assert_eq!(terms[0].next_arr_minor, Some(130));
        assert_eq!(terms[1].state, LOST);
        let open = super::terms(&versions[..3]);
        assert_eq!(open[1].state, OPEN);
    }

    #[test]
    fn a_corrected_end_date_is_the_same_term() {
        let mut corrected = v("2024-02-01", Status::Active, "2025-01-01", 100);
        corrected.term_end = "2025-01-31".parse().unwrap();
        let terms = terms(&[
            v("2024-01-01", Status::Active, "2025-01-01", 100),
            corrected,
        ]);
        assert_eq!(terms.len(), 1);
        assert_eq!(
            (terms[0].term_end.to_string().as_str(), terms[0].state),
            ("2025-01-31", OPEN)
        );
    }
}
