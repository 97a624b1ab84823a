//! Renewals' copy of ingestion's subscription history: what a refresh
//! stores, a statement per table for the whole batch.

use sqlx::PgConnection;
use tenure_proto::ingestion::v1 as ipb;

use crate::ledger::Version;
use crate::pipeline::{Term, VersionRow, readable, terms, versions_from_history};

/// Stores what ingestion returned: accounts, every subscription version,
/// and the subscriptions' opportunities rebuilt from all their versions.
pub async fn apply(
    tx: &mut PgConnection,
    response: &ipb::GetSubscriptionHistoryResponse,
) -> sqlx::Result<()> {
    // Set-based, a statement per table for the whole batch; rows in id
    // order, so concurrent refreshes lock them in the same order.
    let mut accounts: Vec<&ipb::Account> = response.accounts.iter().collect();
    accounts.sort_by(|a, b| a.account_id.cmp(&b.account_id));
    accounts.dedup_by(|a, b| a.account_id == b.account_id);
    let column = |field: fn(&ipb::Account) -> &str| -> Vec<&str> {
        accounts.iter().map(|a| field(a)).collect()
    };
    sqlx::query(
        "INSERT INTO renewals.accounts (account_id, name, segment, owner) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) \
         ON CONFLICT (account_id) DO UPDATE SET name = EXCLUDED.name, segment = EXCLUDED.segment, \
           owner = EXCLUDED.owner, refreshed_at = now()",
    )
    .bind(column(|a| &a.account_id))
    .bind(column(|a| &a.name))
    .bind(column(|a| &a.segment))
    .bind(column(|a| &a.owner))
    .execute(&mut *tx)
    .await?;

    let versions: Vec<Version> = response
        .subscriptions
        .iter()
        .flat_map(versions_from_history)
        .collect();
    sqlx::query(
        "INSERT INTO renewals.subscription_versions (subscription_id, updated_at, account_id, \
           status, term_start, term_end, currency, arr_minor) \
         SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::int2[], $5::date[], \
           $6::date[], $7::text[], $8::int8[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(
        versions
            .iter()
            .map(|v| v.subscription_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(versions.iter().map(|v| v.updated_at).collect::<Vec<_>>())
    .bind(
        versions
            .iter()
            .map(|v| v.account_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(versions.iter().map(|v| v.status as i16).collect::<Vec<_>>())
    .bind(versions.iter().map(|v| v.term_start).collect::<Vec<_>>())
    .bind(versions.iter().map(|v| v.term_end).collect::<Vec<_>>())
    .bind(
        versions
            .iter()
            .map(|v| v.currency.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(versions.iter().map(|v| v.arr_minor).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;

    // Each subscription's terms again, from every version it has now.
    let mut ids: Vec<&str> = response
        .subscriptions
        .iter()
        .map(|h| h.subscription_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let stored = load_versions(&mut *tx, &ids).await?;
    let terms: Vec<Term> = stored
        .chunk_by(|a, b| a.subscription_id == b.subscription_id)
        .flat_map(terms)
        .collect();
    sqlx::query("DELETE FROM renewals.opportunities WHERE subscription_id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO renewals.opportunities (subscription_id, term_end, account_id, term_start, \
           currency, arr_minor, state, next_arr_minor) \
         SELECT * FROM unnest($1::text[], $2::date[], $3::text[], $4::date[], $5::text[], \
           $6::int8[], $7::int2[], $8::int8[])",
    )
    .bind(
        terms
            .iter()
            .map(|t| t.subscription_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(terms.iter().map(|t| t.term_end).collect::<Vec<_>>())
    .bind(
        terms
            .iter()
            .map(|t| t.account_id.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(terms.iter().map(|t| t.term_start).collect::<Vec<_>>())
    .bind(
        terms
            .iter()
            .map(|t| t.currency.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(terms.iter().map(|t| t.arr_minor).collect::<Vec<_>>())
    .bind(terms.iter().map(|t| t.state).collect::<Vec<_>>())
    .bind(terms.iter().map(|t| t.next_arr_minor).collect::<Vec<_>>())
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Every version of the subscriptions, by subscription, oldest first.
async fn load_versions(
    tx: &mut PgConnection,
    subscription_ids: &[&str],
) -> sqlx::Result<Vec<Version>> {
    let rows: Vec<VersionRow> = sqlx::query_as(
        "SELECT subscription_id, updated_at, account_id, status, term_start, term_end, \
           currency::text AS currency, arr_minor \
         FROM renewals.subscription_versions WHERE subscription_id = ANY($1) \
         ORDER BY subscription_id, updated_at",
    )
    .bind(subscription_ids)
    .fetch_all(tx)
    .await?;
    Ok(readable(rows))
}
