//! Reading the inputs of account signals as they stood at a cutoff, for a
//! batch of accounts at once: one query per source for the whole batch
//! (the records of each kind, the account versions, relationship changes,
//! the usage rollups) and the feature catalog once, so a batch of hundreds
//! of accounts costs about a dozen round trips, not a dozen each. Of the
//! records, only those the signals can use are read: an invoice paid two
//! years ago or a ticket closed last spring never leaves the database.

use std::collections::HashMap;

use super::*;

/// The inputs of one account as they stood at the end of `as_of`; `None`
/// when the account is unknown.
pub async fn load(
    pool: &PgPool,
    account_id: &str,
    as_of: NaiveDate,
) -> sqlx::Result<Option<Inputs>> {
    let ids = [account_id.to_owned()];
    Ok(load_many(pool, &ids, as_of).await?.into_iter().next())
}

/// How the records of a batch are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// Only the records the signals can use, unchanged ones from their
    /// heads: what the service reads.
    Needed,
    /// Every record's state from its versions: the plain definition that
    /// the needed reading must give the same signals as.
    Every,
}

// What the signals use of each kind (see `compute`), as conditions over the
// stored JSON of the state chosen; each keeps all that `compute` reads.
/// Subscriptions in force on `p.day` (`SubscriptionRecord::in_force_on`).
const IN_FORCE: &str = "d.data->>'status' IN ('active', 'trial') \
    AND (d.data->>'term_start')::date <= p.day AND p.day < (d.data->>'term_end')::date";
/// Tickets open at the cutoff, or opened or closed in the 90-day window.
const OPEN_OR_RECENT: &str = "d.data->>'closed_at' IS NULL \
    OR (d.data->>'closed_at')::timestamptz >= p.since \
    OR (d.data->>'opened_at')::timestamptz >= p.since";
/// NPS responses before the cutoff.
const NPS_RESPONSES: &str =
    "d.data->>'kind' = 'nps' AND (d.data->>'responded_at')::timestamptz < p.cutoff";
/// Invoices overdue on `p.day` (`InvoiceRecord::days_overdue_on` above 0).
const OVERDUE: &str = "d.data->>'status' <> 'void' AND (d.data->>'issued_on')::date <= p.day \
    AND (d.data->>'due_on')::date < p.day \
    AND (d.data->>'paid_on' IS NULL OR (d.data->>'paid_on')::date > p.day)";
/// Active champions (`ContactRecord::acts_as`).
const ACTIVE_CHAMPIONS: &str = "(d.data->>'active')::boolean AND d.data->'roles' ? 'champion'";
/// External signals of the 90-day window.
const IN_WINDOW: &str = "(d.data->>'occurred_at')::timestamptz >= p.since \
    AND (d.data->>'occurred_at')::timestamptz < p.cutoff";

/// The records of kind `R` of a batch as they stood at `end`, as `reading`
/// says: with `Needed`, only those `condition` keeps (on `day`, window from
/// `since`).
async fn read<R: records::Record>(
    pool: &PgPool,
    reading: Reading,
    account_ids: &[String],
    end: DateTime<Utc>,
    condition: &'static str,
    day: NaiveDate,
) -> sqlx::Result<HashMap<String, Vec<R>>> {
    match reading {
        Reading::Every => records::as_of_many(pool, account_ids, end).await,
        Reading::Needed => {
            let needed = records::Needed {
                condition,
                day,
                since: end - chrono::Duration::days(90),
            };
            records::needed_as_of_many(pool, account_ids, end, needed).await
        }
    }
}

/// The inputs of each known account of `account_ids` as they stood at the
/// end of `as_of`, in the order given; unknown accounts are left out.
pub async fn load_many(
    pool: &PgPool,
    account_ids: &[String],
    as_of: NaiveDate,
) -> sqlx::Result<Vec<Inputs>> {
    load_many_reading(pool, account_ids, as_of, Reading::Needed).await
}

/// [`load_many`], reading the records as `reading` says.
pub async fn load_many_reading(
    pool: &PgPool,
    account_ids: &[String],
    as_of: NaiveDate,
    reading: Reading,
) -> sqlx::Result<Vec<Inputs>> {
    let end = cutoff(as_of);
    type AccountRow = (
        String,
        String,
        String,
        Option<String>,
        sqlx::types::Json<Attributes>,
    );
    let accounts: Vec<AccountRow> = sqlx::query_as(
        "SELECT DISTINCT ON (account_id) account_id, segment, owner, parent_account_id, attributes \
         FROM ingestion.account_versions JOIN unnest($1::text[]) AS b(account_id) USING (account_id) \
         ORDER BY account_id, (valid_from < $2) DESC, \
                  CASE WHEN valid_from < $2 THEN valid_from END DESC, valid_from ASC",
    )
    .bind(account_ids)
    .bind(end)
    .fetch_all(pool)
    .await?;
    if accounts.is_empty() {
        return Ok(Vec::new());
    }
    let changes: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT account_id, role, change FROM ingestion.relationship_changes \
         WHERE account_id = ANY($1) AND occurred_at >= $2 AND occurred_at < $3 \
         ORDER BY account_id, occurred_at",
    )
    .bind(account_ids)
    .bind(end - chrono::Duration::days(90))
    .bind(end)
    .fetch_all(pool)
    .await?;
    let mut relationship_changes: HashMap<String, Vec<(Role, String)>> = HashMap::new();
    for (account_id, role, change) in changes {
        let role = if role == "sponsor" {
            Role::Sponsor
        } else {
            Role::Champion
        };
        relationship_changes
            .entry(account_id)
            .or_default()
            .push((role, change));
    }
    let year_before = end - chrono::Duration::days(365);
    // One query per source, one after another: a batch holds one
    // connection at a time, whatever the pool's size.
    let (ids, r) = (account_ids, reading);
    let mut subscriptions = read(pool, r, ids, end, IN_FORCE, as_of).await?;
    let day_year_before = as_of - chrono::Duration::days(365);
    let mut subscriptions_year_before =
        read(pool, r, ids, year_before, IN_FORCE, day_year_before).await?;
    let mut tickets = read(pool, r, ids, end, OPEN_OR_RECENT, as_of).await?;
    let mut surveys = read(pool, r, ids, end, NPS_RESPONSES, as_of).await?;
    let mut invoices = read(pool, r, ids, end, OVERDUE, as_of).await?;
    let mut contacts = read(pool, r, ids, end, ACTIVE_CHAMPIONS, as_of).await?;
    let mut external_signals = read(pool, r, ids, end, IN_WINDOW, as_of).await?;
    let mut metrics = read(pool, r, ids, end, "true", as_of).await?;
    let features: Vec<FeatureRecord> = records::catalog_as_of(pool, end).await?;
    let mut usage = usage_many(pool, account_ids, as_of).await?;

    let mut by_id: HashMap<String, Inputs> = accounts
        .into_iter()
        .map(|(account_id, segment, owner, parent, attributes)| {
            let inputs = Inputs {
                subscriptions: subscriptions.remove(&account_id).unwrap_or_default(),
                subscriptions_year_before: subscriptions_year_before
                    .remove(&account_id)
                    .unwrap_or_default(),
                tickets: tickets.remove(&account_id).unwrap_or_default(),
                surveys: surveys.remove(&account_id).unwrap_or_default(),
                invoices: invoices.remove(&account_id).unwrap_or_default(),
                contacts: contacts.remove(&account_id).unwrap_or_default(),
                external_signals: external_signals.remove(&account_id).unwrap_or_default(),
                metrics: metrics.remove(&account_id).unwrap_or_default(),
                features: features.clone(),
                relationship_changes_90d: relationship_changes
                    .remove(&account_id)
                    .unwrap_or_default(),
                usage: usage.remove(&account_id).unwrap_or_default(),
                segment,
                owner,
                parent_account_id: parent.unwrap_or_default(),
                attributes: attributes.0,
                account_id: account_id.clone(),
            };
            (account_id, inputs)
        })
        .collect();
    Ok(account_ids
        .iter()
        .filter_map(|id| by_id.remove(id))
        .collect())
}

/// Usage figures of each account from the daily rollups, three grouped
/// queries for the whole batch.
async fn usage_many(
    pool: &PgPool,
    account_ids: &[String],
    as_of: NaiveDate,
) -> sqlx::Result<HashMap<String, Usage>> {
    let mut usage: HashMap<String, Usage> = HashMap::new();
    let users: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT account_id, count(DISTINCT user_id) FILTER (WHERE day > $2 - 7), \
           count(DISTINCT user_id) \
         FROM ingestion.usage_daily_users JOIN unnest($1::text[]) AS b(account_id) USING (account_id) \
         WHERE day > $2 - 30 AND day <= $2 GROUP BY account_id",
    )
    .bind(account_ids)
    .bind(as_of)
    .fetch_all(pool)
    .await?;
    for (account_id, users_7d, users_30d) in users {
        let entry = usage.entry(account_id).or_default();
        entry.active_users_7d = users_7d;
        entry.active_users_30d = users_30d;
    }
    let features: Vec<(String, i64, i64, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT account_id, \
           coalesce(sum(events) FILTER (WHERE day > $2 - 30), 0)::int8, \
           coalesce(sum(events) FILTER (WHERE day <= $2 - 30), 0)::int8, \
           array_agg(DISTINCT feature) FILTER (WHERE day > $2 - 30) \
         FROM ingestion.usage_daily_features JOIN unnest($1::text[]) AS b(account_id) USING (account_id) \
         WHERE day > $2 - 60 AND day <= $2 GROUP BY account_id",
    )
    .bind(account_ids)
    .bind(as_of)
    .fetch_all(pool)
    .await?;
    for (account_id, events_30d, events_prior_30d, used) in features {
        let entry = usage.entry(account_id).or_default();
        entry.events_30d = events_30d;
        entry.events_prior_30d = events_prior_30d;
        entry.features_used_30d = used.unwrap_or_default();
    }
    // The last active day may lie far back: one index probe per account.
    let last: Vec<(String, Option<NaiveDate>)> = sqlx::query_as(
        "SELECT a.account_id, (SELECT max(day) FROM ingestion.usage_daily_features f \
                               WHERE f.account_id = a.account_id AND f.day <= $2) \
         FROM unnest($1::text[]) AS a(account_id)",
    )
    .bind(account_ids)
    .bind(as_of)
    .fetch_all(pool)
    .await?;
    for (account_id, day) in last {
        if day.is_some() {
            usage.entry(account_id).or_default().last_active_day = day;
        }
    }
    Ok(usage)
}
