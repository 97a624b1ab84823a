//! Renewal outcomes: what each subscription term's renewal came to. Health
//! learns from these, so they are exact and written once.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};
use tenure_platform::money::Amount;
use uuid::Uuid;

/// How a renewal ended (the API's `OutcomeKind` values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i16)]
pub enum Kind {
    Renewed = 1,
    PartiallyRenewed = 2,
    Churned = 3,
}

impl Kind {
    pub fn from_code(code: i16) -> Option<Self> {
        match code {
            1 => Some(Self::Renewed),
            2 => Some(Self::PartiallyRenewed),
            3 => Some(Self::Churned),
            _ => None,
        }
    }
}

/// Why a recorded outcome is inconsistent, by field.
#[derive(Debug, PartialEq, Eq)]
pub struct Inconsistency {
    pub field: &'static str,
    pub reason: &'static str,
}

/// An outcome to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOutcome {
    pub account_id: String,
    pub subscription_id: String,
    pub term_end_date: NaiveDate,
    pub kind: Kind,
    pub previous_arr: Amount,
    pub new_arr: Amount,
    /// The API's `ChurnReason` value; 0 when none.
    pub churn_reason: i16,
    pub churn_note: String,
    pub decided_on: NaiveDate,
}

impl NewOutcome {
    /// The rules that tie kind, amounts and reason together.
    pub fn inconsistencies(&self) -> Vec<Inconsistency> {
        let mut found = Vec::new();
        let mut flag = |field, reason| found.push(Inconsistency { field, reason });
        if self.previous_arr.currency != self.new_arr.currency {
            flag("new_arr.currency_code", "must match previous_arr");
        }
        let (previous, new) = (self.previous_arr.minor, self.new_arr.minor);
        match self.kind {
            Kind::Renewed => {
                if new == 0 {
                    flag("new_arr", "must be positive for a renewal");
                }
                if self.churn_reason != 0 {
                    flag("churn_reason", "must be unset for a full renewal");
                }
            }
            Kind::PartiallyRenewed => {
                if new == 0 || new >= previous {
                    flag(
                        "new_arr",
                        "must be above zero and below previous_arr for a partial renewal",
                    );
                }
                if self.churn_reason == 0 {
                    flag("churn_reason", "is required when revenue was lost");
                }
            }
            Kind::Churned => {
                if new != 0 {
                    flag("new_arr", "must be zero for a churn");
                }
                if self.churn_reason == 0 {
                    flag("churn_reason", "is required when revenue was lost");
                }
            }
        }
        if self.decided_on > self.term_end_date + chrono::Days::new(366) {
            flag(
                "decided_on",
                "must be within a year after the term end date",
            );
        }
        found
    }
}

/// A stored outcome.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct OutcomeRow {
    pub outcome_id: Uuid,
    pub account_id: String,
    pub subscription_id: String,
    pub term_end_date: NaiveDate,
    pub kind: i16,
    pub currency: String,
    pub previous_arr_minor: i64,
    pub new_arr_minor: i64,
    pub churn_reason: i16,
    pub churn_note: String,
    pub decided_on: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    /// The model's renewal probability for the term when it came within
    /// the calibration horizon (see `contracts::CALIBRATION_HORIZON_DAYS`).
    pub model_probability: Option<f64>,
}

/// Inserts outcomes, leaving any term that already has one as it is;
/// returns how many were written.
pub async fn insert_new(tx: &mut PgConnection, outcomes: &[NewOutcome]) -> sqlx::Result<u64> {
    let column = |f: fn(&NewOutcome) -> String| outcomes.iter().map(f).collect::<Vec<_>>();
    let ids: Vec<Uuid> = outcomes.iter().map(|_| Uuid::now_v7()).collect();
    let term_ends: Vec<NaiveDate> = outcomes.iter().map(|o| o.term_end_date).collect();
    let kinds: Vec<i16> = outcomes.iter().map(|o| o.kind as i16).collect();
    let previous: Vec<i64> = outcomes.iter().map(|o| o.previous_arr.minor).collect();
    let new: Vec<i64> = outcomes.iter().map(|o| o.new_arr.minor).collect();
    let reasons: Vec<i16> = outcomes.iter().map(|o| o.churn_reason).collect();
    let decided: Vec<NaiveDate> = outcomes.iter().map(|o| o.decided_on).collect();
    let written = sqlx::query(
        "INSERT INTO renewals.outcomes (outcome_id, account_id, subscription_id, term_end_date, kind, \
           currency, previous_arr_minor, new_arr_minor, churn_reason, churn_note, decided_on, \
           model_probability) \
         SELECT i.*, o.horizon_probability \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::date[], $5::int2[], $6::text[], \
                     $7::int8[], $8::int8[], $9::int2[], $10::text[], $11::date[]) \
           AS i(outcome_id, account_id, subscription_id, term_end_date, kind, currency, \
                previous_arr_minor, new_arr_minor, churn_reason, churn_note, decided_on) \
         LEFT JOIN renewals.opportunities o \
           ON o.subscription_id = i.subscription_id AND o.term_end = i.term_end_date \
         ORDER BY i.subscription_id, i.term_end_date \
         ON CONFLICT (subscription_id, term_end_date) DO NOTHING",
    )
    .bind(&ids)
    .bind(column(|o| o.account_id.clone()))
    .bind(column(|o| o.subscription_id.clone()))
    .bind(&term_ends)
    .bind(&kinds)
    .bind(column(|o| o.previous_arr.currency_code().to_owned()))
    .bind(&previous)
    .bind(&new)
    .bind(&reasons)
    .bind(column(|o| o.churn_note.clone()))
    .bind(&decided)
    .execute(tx)
    .await?;
    Ok(written.rows_affected())
}

/// Inserts an outcome; a second outcome for the same term is a unique violation.
pub async fn insert(tx: &mut PgConnection, outcome: &NewOutcome) -> sqlx::Result<OutcomeRow> {
    sqlx::query_as(
        "INSERT INTO renewals.outcomes (outcome_id, account_id, subscription_id, term_end_date, kind, \
           currency, previous_arr_minor, new_arr_minor, churn_reason, churn_note, decided_on, \
           model_probability) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
           (SELECT horizon_probability FROM renewals.opportunities \
            WHERE subscription_id = $3 AND term_end = $4)) \
         RETURNING *",
    )
    .bind(Uuid::now_v7())
    .bind(&outcome.account_id)
    .bind(&outcome.subscription_id)
    .bind(outcome.term_end_date)
    .bind(outcome.kind as i16)
    .bind(outcome.previous_arr.currency_code())
    .bind(outcome.previous_arr.minor)
    .bind(outcome.new_arr.minor)
    .bind(outcome.churn_reason)
    .bind(&outcome.churn_note)
    .bind(outcome.decided_on)
    .fetch_one(tx)
    .await
}

/// Filters of a listing.
#[derive(Debug, Default, Clone)]
pub struct OutcomeFilter {
    pub decided_from: Option<NaiveDate>,
    pub decided_before: Option<NaiveDate>,
    pub kind: Option<Kind>,
    pub segment: Option<String>,
}

/// Outcomes newest decision first, after the cursor `(decided_on, outcome_id)`.
pub async fn list(
    pool: &PgPool,
    filter: &OutcomeFilter,
    after: Option<(NaiveDate, Uuid)>,
    limit: i64,
) -> sqlx::Result<Vec<OutcomeRow>> {
    let (after_date, after_id) = after.unzip();
    sqlx::query_as(
        "SELECT o.* FROM renewals.outcomes o \
         WHERE ($1::date IS NULL OR decided_on >= $1) \
           AND ($2::date IS NULL OR decided_on < $2) \
           AND ($3::int2 IS NULL OR kind = $3) \
           AND ($4::date IS NULL OR (decided_on, outcome_id) < ($4, $5)) \
           AND ($7::text IS NULL OR EXISTS (SELECT 1 FROM renewals.accounts a \
                 WHERE a.account_id = o.account_id AND a.segment = $7)) \
         ORDER BY decided_on DESC, outcome_id DESC LIMIT $6",
    )
    .bind(filter.decided_from)
    .bind(filter.decided_before)
    .bind(filter.kind.map(|k| k as i16))
    .bind(after_date)
    .bind(after_id)
    .bind(limit)
    .bind(filter.segment.as_deref())
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usd(minor: i64) -> Amount {
        Amount {
            currency: *b"USD",
            minor,
        }
    }

    fn outcome(kind: Kind, previous: i64, new: i64, reason: i16) -> NewOutcome {
        let day = NaiveDate::from_ymd_opt(2026, 6, 30).unwrap();
        NewOutcome {
            account_id: "acme".into(),
            subscription_id: "sub-1".into(),
            term_end_date: day,
            kind,
            previous_arr: usd(previous),
            new_arr: usd(new),
            churn_reason: reason,
            churn_note: String::new(),
            decided_on: day,
        }
    }

    #[test]
    fn kinds_constrain_amounts_and_reasons() {
        assert!(
            outcome(Kind::Renewed, 100, 120, 0)
                .inconsistencies()
                .is_empty()
        );
        assert!(
            outcome(Kind::Churned, 100, 0, 2)
                .inconsistencies()
                .is_empty()
        );
        assert!(
            outcome(Kind::PartiallyRenewed, 100, 60, 6)
                .inconsistencies()
                .is_empty()
        );
        let fields = |o: NewOutcome| {
            o.inconsistencies()
                .into_iter()
                .map(|i| i.field)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            fields(outcome(Kind::Churned, 100, 10, 0)),
            ["new_arr", "churn_reason"]
        );
        assert_eq!(
            fields(outcome(Kind::PartiallyRenewed, 100, 100, 1)),
            ["new_arr"]
        );
        assert_eq!(
            fields(outcome(Kind::Renewed, 100, 0, 3)),
            ["new_arr", "churn_reason"]
        );
    }
}
