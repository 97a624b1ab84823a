//! Usage events: deduplicated by message id, stored in monthly partitions,
//! and rolled up per account, day, feature and user as they arrive.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;

use chrono::{DateTime, Datelike as _, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};
use tenure_proto::ingestion::v1 as pb;

use crate::convert::{Checker, MAX_ID, MAX_LABEL, properties};

/// A validated usage event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub message_id: String,
    pub account_id: String,
    pub user_id: String,
    pub event_name: String,
    pub occurred_at: DateTime<Utc>,
    pub quantity: f64,
    pub properties: Option<serde_json::Value>,
}

/// Validates one event; problems are recorded under `path`. Field names
/// are spelled out only for a problem: a stream validates millions.
pub fn event(c: &mut Checker<'_>, item: &pb::UsageEvent, path: &str) -> Option<EventRecord> {
    let before = c.violations.len();
    let field = |name: &str| format!("{path}.{name}");
    for (value, name, max) in [
        (&item.message_id, "message_id", MAX_ID),
        (&item.account_id, "account_id", MAX_ID),
        (&item.user_id, "user_id", MAX_ID),
        (&item.event_name, "event_name", MAX_LABEL),
    ] {
        let plainly_fits = value.len() <= max && !value.trim().is_empty();
        if !plainly_fits {
            c.violations.require_text(value, field(name), max);
        }
    }
    if !(item.quantity.is_finite() && item.quantity >= 0.0) {
        c.violations
            .add(field("quantity"), "must be a finite number, not negative");
    }
    let now = Utc::now();
    let occurred_at = item
        .occurred_at
        .as_ref()
        .and_then(|t| DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?))
        .filter(|at| {
            let years = tenure_platform::time::MIN_YEAR..=tenure_platform::time::MAX_YEAR;
            years.contains(&at.year()) && *at <= now + c.future_tolerance
        })
        .or_else(|| {
            // Say what is wrong with it.
            tenure_platform::time::past_timestamp(
                item.occurred_at.as_ref(),
                &field("occurred_at"),
                c.future_tolerance,
                c.violations,
            )
        });
    if let Some(at) = occurred_at
        && at < now - c.max_event_age
    {
        c.violations.add(
            field("occurred_at"),
            format!(
                "must be within {} days of now (INGESTION_MAX_EVENT_AGE)",
                c.max_event_age.num_days()
            ),
        );
    }
    let props = item
        .properties
        .as_ref()
        .map(|p| properties(c, Some(p), &field("properties")));
    if c.violations.len() > before {
        return None;
    }
    Some(EventRecord {
        message_id: item.message_id.clone(),
        account_id: item.account_id.clone(),
        user_id: item.user_id.clone(),
        event_name: item.event_name.clone(),
        occurred_at: occurred_at?,
        quantity: if item.quantity == 0.0 {
            1.0
        } else {
            item.quantity
        },
        properties: props,
    })
}

/// Writes events; remembers which monthly partitions exist.
#[derive(Debug, Default)]
pub struct EventStore {
    partitions: Mutex<HashSet<(i32, u32)>>,
}

impl EventStore {
    /// Creates the monthly partitions `events` need, each once per process.
    /// Runs in its own transaction on `conn`, before the caller opens its
    /// ingest transaction there: ingest transactions take no DDL locks, and
    /// a chunk holds one pooled connection, never two (two per chunk let
    /// concurrent chunks drain the pool while each waited for its second).
    pub async fn ensure_partitions(
        &self,
        conn: &mut PgConnection,
        events: &[EventRecord],
    ) -> sqlx::Result<()> {
        let months: BTreeSet<(i32, u32)> = events
            .iter()
            .map(|e| (e.occurred_at.year(), e.occurred_at.month()))
            .collect();
        let missing: Vec<(i32, u32)> = {
            let known = self.partitions.lock().unwrap_or_else(|e| e.into_inner());
            months.into_iter().filter(|m| !known.contains(m)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        create_months(conn, &missing).await?;
        self.partitions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(missing);
        Ok(())
    }

    /// Stores the events not seen before, inside the caller's transaction,
    /// and keeps the daily rollups current. Returns, per input event,
    /// whether it was new (`false`: a duplicate, stored earlier or earlier
    /// in this batch).
    pub async fn ingest(
        &self,
        tx: &mut PgConnection,
        events: &[EventRecord],
    ) -> sqlx::Result<Vec<bool>> {
        let mut seen = HashSet::with_capacity(events.len());
        let first_in_batch: Vec<bool> = events
            .iter()
            .map(|e| seen.insert(e.message_id.as_str()))
            .collect();
        let candidates: Vec<&str> = events
            .iter()
            .zip(&first_in_batch)
            .filter(|(_, first)| **first)
            .map(|(e, _)| e.message_id.as_str())
            .collect();
        let fresh: Vec<String> = sqlx::query_scalar(
            "INSERT INTO ingestion.event_ids (message_id) SELECT unnest($1::text[]) \
             ON CONFLICT DO NOTHING RETURNING message_id",
        )
        .bind(&candidates)
        .fetch_all(&mut *tx)
        .await?;
        let fresh: HashSet<String> = fresh.into_iter().collect();
        let accepted: Vec<bool> = events
            .iter()
            .zip(&first_in_batch)
            .map(|(e, first)| *first && fresh.contains(&e.message_id))
            .collect();
        let new_events: Vec<&EventRecord> = events
            .iter()
            .zip(&accepted)
            .filter(|(_, a)| **a)
            .map(|(e, _)| e)
            .collect();
        if new_events.is_empty() {
            return Ok(accepted);
        }
        insert_events(tx, &new_events).await?;
        update_rollups(tx, &new_events).await?;
        Ok(accepted)
    }
}

/// Creates the monthly partitions of `months` that do not exist yet, under
/// a lock that serialises partition changes, in a transaction of their own.
async fn create_months(conn: &mut PgConnection, months: &[(i32, u32)]) -> sqlx::Result<()> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('ingestion.usage_events', 0))")
        .execute(&mut *tx)
        .await?;
    for &(year, month) in months {
        sqlx::query("SELECT ingestion.ensure_usage_events_partition($1, $2)")
            .bind(year)
            .bind(month as i32)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

/// Months whose partitions are made ahead of their first event: this one
/// and the next two, so that live traffic never waits on DDL.
pub const MONTHS_AHEAD: u32 = 2;

/// Of each of `accounts`, how many users were active in the 30 days up to
/// `cutoff`, and how many of them used one of the `advanced` features.
pub async fn active_users(
    pool: &PgPool,
    accounts: &[String],
    cutoff: DateTime<Utc>,
    advanced: &[String],
) -> sqlx::Result<std::collections::HashMap<String, (i64, i64)>> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT account_id, count(DISTINCT user_id), \
           count(DISTINCT user_id) FILTER (WHERE event_name = ANY($3)) \
         FROM ingestion.usage_events \
         WHERE account_id = ANY($1) AND occurred_at >= $2 - interval '30 days' \
           AND occurred_at < $2 \
         GROUP BY account_id",
    )
    .bind(accounts)
    .bind(cutoff)
    .bind(advanced)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, all, advanced)| (id, (all, advanced)))
        .collect())
}

/// Makes the partitions of the month of `today` and the [`MONTHS_AHEAD`]
/// after it (a background job runs it at start-up and every few hours).
pub async fn prepare_months(pool: &PgPool, today: NaiveDate) -> sqlx::Result<()> {
    let months: Vec<(i32, u32)> = (0..=MONTHS_AHEAD)
        .filter_map(|ahead| {
            today
                .with_day(1)?
                .checked_add_months(chrono::Months::new(ahead))
        })
        .map(|first| (first.year(), first.month()))
        .collect();
    create_months(&mut *pool.acquire().await?, &months).await
}

/// Writes events with COPY, the fastest way into a (partitioned) table.
async fn insert_events(tx: &mut PgConnection, events: &[&EventRecord]) -> sqlx::Result<()> {
    let mut data = String::with_capacity(events.len() * 160);
    for e in events {
        for field in [&e.message_id, &e.account_id, &e.user_id, &e.event_name] {
            copy_escape(&mut data, field);
            data.push('\t');
        }
        data.push_str(&e.occurred_at.to_rfc3339());
        data.push('\t');
        data.push_str(&e.quantity.to_string());
        data.push('\t');
        match &e.properties {
            Some(properties) => copy_escape(&mut data, &properties.to_string()),
            None => data.push_str("\\N"),
        }
        data.push('\n');
    }
    let mut copy = tx
        .copy_in_raw(
            "COPY ingestion.usage_events \
             (message_id, account_id, user_id, event_name, occurred_at, quantity, properties) FROM STDIN",
        )
        .await?;
    copy.send(data.into_bytes()).await?;
    copy.finish().await?;
    Ok(())
}

/// Appends `value` escaped for COPY's text format.
fn copy_escape(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

/// Adds events to the per-day rollups, in key order so that concurrent
/// writers lock rows in the same order.
async fn update_rollups(tx: &mut PgConnection, events: &[&EventRecord]) -> sqlx::Result<()> {
    let mut features: BTreeMap<(&str, NaiveDate, &str), (i64, f64)> = BTreeMap::new();
    let mut users: BTreeSet<(&str, NaiveDate, &str)> = BTreeSet::new();
    for e in events {
        let day = e.occurred_at.date_naive();
        let entry = features
            .entry((e.account_id.as_str(), day, e.event_name.as_str()))
            .or_default();
        entry.0 += 1;
        entry.1 += e.quantity;
        users.insert((e.account_id.as_str(), day, e.user_id.as_str()));
    }
    let (mut f_accounts, mut f_days, mut f_names, mut f_events, mut f_quantity) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ((account, day, name), (count, quantity)) in features {
        f_accounts.push(account);
        f_days.push(day);
        f_names.push(name);
        f_events.push(count);
        f_quantity.push(quantity);
    }
    sqlx::query(
        "INSERT INTO ingestion.usage_daily_features AS r (account_id, day, feature, events, quantity) \
         SELECT * FROM UNNEST($1::text[], $2::date[], $3::text[], $4::int8[], $5::float8[]) \
         ON CONFLICT (account_id, day, feature) DO UPDATE SET \
           events = r.events + EXCLUDED.events, quantity = r.quantity + EXCLUDED.quantity",
    )
    .bind(&f_accounts)
    .bind(&f_days)
    .bind(&f_names)
    .bind(&f_events)
    .bind(&f_quantity)
    .execute(&mut *tx)
    .await?;
    let (mut u_accounts, mut u_days, mut u_users) = (Vec::new(), Vec::new(), Vec::new());
    for (account, day, user) in users {
        u_accounts.push(account);
        u_days.push(day);
        u_users.push(user);
    }
    sqlx::query(
        "INSERT INTO ingestion.usage_daily_users (account_id, day, user_id) \
         SELECT * FROM UNNEST($1::text[], $2::date[], $3::text[]) ON CONFLICT DO NOTHING",
    )
    .bind(&u_accounts)
    .bind(&u_days)
    .bind(&u_users)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::copy_escape;

    #[test]
    fn escapes_copy_text_specials() {
        let mut out = String::new();
        copy_escape(&mut out, "a\tb\nc\\d\re");
        assert_eq!(out, "a\\tb\\nc\\\\d\\re");
    }
}
