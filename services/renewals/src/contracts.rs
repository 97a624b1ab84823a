//! Contracts due in a period and how they ended: recorded outcomes first,
//! otherwise what the subscription did (a later term renewed it, a
//! cancellation or expiry lost it). The source of the contract renewal rate
//! and of the historical renewal rates forecasts fall back on.

use chrono::NaiveDate;
use sqlx::PgPool;

use crate::forecast::{Calibration, Rates};

/// Days after a term's end before an unrenewed, undecided contract counts
/// as lost (late paperwork is common; silence for a month is not).
pub const GRACE_DAYS: u32 = 30;

/// One contract due, and how it ended if known.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct Due {
    pub segment: Option<String>,
    /// `Some(true)` renewed (fully or partly), `Some(false)` churned.
    pub renewed: Option<bool>,
}

/// Which contracts to count.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scope<'a> {
    pub segment: Option<&'a str>,
    /// Each currency's book on its own.
    pub currency: Option<&'a str>,
}

/// Contracts whose term ended in `[from, before)`, with how they ended as
/// known at the end of `known_on`: an outcome decided by then; else, once
/// the term has ended, a later term recorded by then (renewed) or a
/// cancellation recorded by then (lost); else, [`GRACE_DAYS`] after its
/// end, lapsed (lost). Subscription versions recorded after `known_on`
/// count for nothing, so a past day's figures never see later decisions.
pub async fn due(
    pool: &PgPool,
    from: Option<NaiveDate>,
    before: NaiveDate,
    scope: Scope<'_>,
    known_on: NaiveDate,
) -> sqlx::Result<Vec<Due>> {
    sqlx::query_as(
        "SELECT a.segment, CASE \
             WHEN x.kind IS NOT NULL AND x.decided_on <= $4 THEN x.kind IN (1, 2) \
             WHEN o.term_end <= $4 AND EXISTS ( \
               SELECT 1 FROM renewals.subscription_versions v \
               WHERE v.subscription_id = o.subscription_id AND v.term_start >= o.term_end \
                 AND v.updated_at < $7) THEN true \
             WHEN o.term_end <= $4 AND o.state = 3 AND NOT EXISTS ( \
               SELECT 1 FROM renewals.subscription_versions v \
               WHERE v.subscription_id = o.subscription_id AND v.term_start < o.term_end \
                 AND v.updated_at >= $7) THEN false \
             WHEN o.term_end + $5 <= $4 THEN false \
           END AS renewed \
         FROM (SELECT * FROM renewals.opportunities \
               WHERE ($1::date IS NULL OR term_end >= $1) AND term_end < $2) o \
         FULL JOIN (SELECT * FROM renewals.outcomes \
               WHERE ($1::date IS NULL OR term_end_date >= $1) AND term_end_date < $2) x \
           ON x.subscription_id = o.subscription_id AND x.term_end_date = o.term_end \
         LEFT JOIN renewals.accounts a ON a.account_id = COALESCE(o.account_id, x.account_id) \
         WHERE ($3::text IS NULL OR a.segment = $3) \
           AND ($6::text IS NULL OR COALESCE(o.currency, x.currency) = $6)",
    )
    .bind(from)
    .bind(before)
    .bind(scope.segment)
    .bind(known_on)
    .bind(GRACE_DAYS as i32)
    .bind(scope.currency)
    .bind(crate::pipeline::end_of_day(known_on))
    .fetch_all(pool)
    .await
}

/// Renewal rates of every contract decided by `as_of`, by segment.
pub async fn rates(pool: &PgPool, as_of: NaiveDate) -> sqlx::Result<Rates> {
    let mut rates = Rates::default();
    for contract in due(
        pool,
        None,
        as_of + chrono::Days::new(1),
        Scope::default(),
        as_of,
    )
    .await?
    {
        if let Some(renewed) = contract.renewed {
            rates.add(contract.segment.as_deref().unwrap_or(""), renewed);
        }
    }
    Ok(rates)
}

/// Days before a term's end at which the forecast's view of it is kept for
/// calibration (the churn model's default training horizon).
pub const CALIBRATION_HORIZON_DAYS: i32 = 90;

/// Keeps, for each open term that has come within the calibration horizon
/// by `today` and has none yet, the renewal probability the model gives its
/// account now (of the accounts given, or of all). Run by the daily sweep and
/// whenever an account's churn probability changes.
pub async fn record_horizon_probabilities(
    pool: &PgPool,
    today: NaiveDate,
    account_ids: Option<&[String]>,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "UPDATE renewals.opportunities o \
         SET horizon_probability = 1 - a.churn_probability, horizon_day = $1 \
         FROM renewals.accounts a \
         WHERE a.account_id = o.account_id AND a.churn_probability IS NOT NULL \
           AND o.horizon_probability IS NULL AND o.state = 1 \
           AND o.term_end - $2 <= $1 AND o.term_end > $1 \
           AND ($3::text[] IS NULL OR o.account_id = ANY($3))",
    )
    .bind(today)
    .bind(CALIBRATION_HORIZON_DAYS)
    .bind(account_ids)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// The median length in days of the terms whose outcomes were decided by
/// `as_of`: the renewals a churn model learns from, so its probability is
/// one of churning at a renewal of about this length.
pub async fn outcome_term_days(pool: &PgPool, as_of: NaiveDate) -> sqlx::Result<Option<f64>> {
    sqlx::query_scalar(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY o.term_end - o.term_start) \
         FROM renewals.outcomes x \
         JOIN renewals.opportunities o \
           ON o.subscription_id = x.subscription_id AND o.term_end = x.term_end_date \
         WHERE x.decided_on <= $1 AND o.term_end > o.term_start",
    )
    .bind(as_of)
    .fetch_one(pool)
    .await
}

/// Calibration of model probabilities on outcomes decided by `as_of`, each
/// paired with the probability its term had at the calibration horizon.
pub async fn calibration(pool: &PgPool, as_of: NaiveDate) -> sqlx::Result<Calibration> {
    let pairs: Vec<(f64, bool)> = sqlx::query_as(
        "SELECT model_probability, kind IN (1, 2) FROM renewals.outcomes \
         WHERE model_probability IS NOT NULL AND decided_on <= $1",
    )
    .bind(as_of)
    .fetch_all(pool)
    .await?;
    Ok(Calibration::fit(&pairs))
}
