//! Coverage models and the book they are applied to, in renewals' schema.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};

use super::model::{Customer, Model, Tier};
use crate::ledger::Book;
use crate::pipeline;

type ModelRow = (
    i32,
    String,
    f64,
    sqlx::types::Json<Vec<Tier>>,
    DateTime<Utc>,
);

fn from_row((version, currency, csm_hours_per_month, tiers, created): ModelRow) -> Model {
    Model {
        version,
        currency,
        tiers: tiers.0,
        csm_hours_per_month,
        created,
    }
}

/// Stores `model` as the next version, in the caller's transaction.
pub(super) async fn insert(
    tx: &mut PgConnection,
    currency: &str,
    tiers: &[Tier],
    csm_hours_per_month: f64,
) -> sqlx::Result<Model> {
    // Versions are numbered one after another: writers take turns.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('renewals.coverage_models', 0))")
        .execute(&mut *tx)
        .await?;
    let row: ModelRow = sqlx::query_as(
        "INSERT INTO renewals.coverage_models (version, currency, csm_hours_per_month, tiers) \
         SELECT coalesce(max(version), 0) + 1, $1, $2, $3 FROM renewals.coverage_models \
         RETURNING version, currency, csm_hours_per_month, tiers, create_time",
    )
    .bind(currency)
    .bind(csm_hours_per_month)
    .bind(sqlx::types::Json(tiers))
    .fetch_one(&mut *tx)
    .await?;
    Ok(from_row(row))
}

/// A version of the model, or the latest when `version` is `None`.
pub(super) async fn get(pool: &PgPool, version: Option<i32>) -> sqlx::Result<Option<Model>> {
    let row: Option<ModelRow> = sqlx::query_as(
        "SELECT version, currency, csm_hours_per_month, tiers, create_time \
         FROM renewals.coverage_models WHERE $1::int4 IS NULL OR version = $1 \
         ORDER BY version DESC LIMIT 1",
    )
    .bind(version)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(from_row))
}

/// The customers on `as_of` by the subscriptions recorded by the end of
/// that day: those with ARR in `currency` (with their ARR in it), in
/// account id order, and how many paid only in other currencies. Name,
/// segment and owner are the account's as last reported.
pub(super) async fn customers(
    pool: &PgPool,
    currency: &str,
    as_of: NaiveDate,
) -> sqlx::Result<(Vec<Customer>, i64)> {
    let versions = pipeline::versions_recorded_by(pool, as_of, None).await?;
    let mut arr: HashMap<&str, (i64, i64)> = HashMap::new();
    let book = Book::from_versions(versions);
    for (account_id, subscriptions) in &book.accounts {
        let entry = arr.entry(account_id.as_str()).or_default();
        for subscription in subscriptions {
            let paid = subscription.arr_on(as_of);
            let in_currency = subscription
                .version_on(as_of)
                .is_some_and(|v| v.currency == currency);
            if in_currency {
                entry.0 += paid;
            } else {
                entry.1 += paid;
            }
        }
    }
    let ids: Vec<String> = arr
        .iter()
        .filter(|(_, (arr, _))| *arr > 0)
        .map(|(id, _)| (*id).to_owned())
        .collect();
    let other_currency = arr
        .values()
        .filter(|(in_it, other)| *in_it <= 0 && *other > 0)
        .count();
    let accounts: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT b.account_id, coalesce(a.name, ''), coalesce(a.segment, ''), coalesce(a.owner, '') \
         FROM unnest($1::text[]) AS b(account_id) \
         LEFT JOIN renewals.accounts a USING (account_id) ORDER BY b.account_id",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await?;
    let customers = accounts
        .into_iter()
        .map(|(account_id, name, segment, owner)| Customer {
            arr_minor: arr.get(account_id.as_str()).map_or(0, |a| a.0),
            account_id,
            name,
            segment,
            owner,
        })
        .collect();
    Ok((customers, other_currency as i64))
}
