//! Reading the inputs of account signals as they stood at a cutoff, for a
//! batch of accounts at once, each at a day of its own (a job training on
//! past renewals asks for thousands of accounts at hundreds of days): one
//! query per source for the whole batch (the records of each kind, the
//! account versions, relationship changes, the usage rollups) and the
//! feature catalog once, so a batch of hundreds of accounts costs about a
//! dozen round trips, not a dozen each. Of the records, only those the
//! signals can use are read: an invoice paid two years ago or a ticket
//! closed last spring never leaves the database.

use std::collections::{BTreeMap, HashMap};

use super::*;

/// The inputs of one account as they stood at the end of `as_of`; `None`
/// when the account is unknown.
pub async fn load(
    pool: &PgPool,
    account_id: &str,
    as_of: NaiveDate,
) -> sqlx::Result<Option<Inputs>> {
    let slots = [(account_id.to_owned(), as_of)];
    Ok(load_at(pool, &slots, Reading::Needed)
        .await?
        .pop()
        .flatten())
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
// `p` is the slot read: its cutoff, day and window start (`records::Slots`).
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
/// Success plans started by `p.day` (`plans::Status::NotStarted` aside).
const PLANS_STARTED: &str = "(d.data->>'start_on')::date <= p.day";
/// External signals of the 90-day window.
const IN_WINDOW: &str = "(d.data->>'occurred_at')::timestamptz >= p.since \
    AND (d.data->>'occurred_at')::timestamptz < p.cutoff";

/// The records of kind `R` of each slot, as `reading` says: with `Needed`,
/// only those `condition` keeps; each list in record id order.
async fn read<R: records::Record>(
    pool: &PgPool,
    reading: Reading,
    slots: &records::Slots,
    condition: &'static str,
) -> sqlx::Result<Vec<Vec<R>>> {
    match reading {
        Reading::Needed => records::needed_as_of_many(pool, slots, condition).await,
        Reading::Every => {
            // The plain definition, one cutoff at a time.
            let mut by_slot: Vec<Vec<R>> = vec![Vec::new(); slots.len()];
            let mut by_cutoff: BTreeMap<DateTime<Utc>, Vec<usize>> = BTreeMap::new();
            for (i, cutoff) in slots.cutoffs.iter().enumerate() {
                by_cutoff.entry(*cutoff).or_default().push(i);
            }
            for (cutoff, indices) in by_cutoff {
                let ids: Vec<String> = indices
                    .iter()
                    .map(|&i| slots.account_ids[i].clone())
                    .collect();
                let found: HashMap<String, Vec<R>> =
                    records::as_of_many(pool, &ids, cutoff).await?;
                for i in indices {
                    let mut list = found
                        .get(&slots.account_ids[i])
                        .cloned()
                        .unwrap_or_default();
                    list.sort_by(|a, b| a.record_id().cmp(b.record_id()));
                    by_slot[i] = list;
                }
            }
            Ok(by_slot)
        }
    }
}

/// The slots of a batch read at `years_back` years before each one's day
/// (0: at the day itself).
fn slots_of(batch: &[(String, NaiveDate)], years_back: u64) -> records::Slots {
    let mut slots = records::Slots::default();
    for (account_id, as_of) in batch {
        let day = *as_of - Days::new(365 * years_back);
        let end = cutoff(day);
        slots.push(
            account_id,
            end,
            day,
            end - chrono::Duration::days(crate::kinds::RECENT_DAYS),
        );
    }
    slots
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
    let batch: Vec<(String, NaiveDate)> =
        account_ids.iter().map(|id| (id.clone(), as_of)).collect();
    Ok(load_at(pool, &batch, reading)
        .await?
        .into_iter()
        .flatten()
        .collect())
}

/// The inputs of each (account, day) of `batch` as they stood at the end of
/// its day, in the order given; `None` where the account is unknown.
pub async fn load_at(
    pool: &PgPool,
    batch: &[(String, NaiveDate)],
    reading: Reading,
) -> sqlx::Result<Vec<Option<Inputs>>> {
    let slots = slots_of(batch, 0);
    type AccountRow = (
        i64,
        String,
        String,
        String,
        Option<String>,
        sqlx::types::Json<Attributes>,
    );
    // Each slot's account version by two index probes: the latest before
    // the cutoff, or failing that the earliest (the rule of `records::as_of`). A
    // join of the batch to every version was hashed over the whole table.
    let accounts: Vec<AccountRow> = sqlx::query_as(
        "SELECT p.slot, v.segment, v.industry, v.owner, v.parent_account_id, v.attributes \
         FROM unnest($1::text[], $2::timestamptz[]) WITH ORDINALITY AS p(account_id, cutoff, slot), \
         LATERAL ( \
           (SELECT * FROM ingestion.account_versions v \
            WHERE v.account_id = p.account_id AND v.valid_from < p.cutoff \
            ORDER BY v.valid_from DESC LIMIT 1) \
           UNION ALL \
           (SELECT * FROM ingestion.account_versions v \
            WHERE v.account_id = p.account_id ORDER BY v.valid_from LIMIT 1) \
           LIMIT 1 \
         ) v \
         ORDER BY p.slot",
    )
    .bind(&slots.account_ids)
    .bind(&slots.cutoffs)
    .fetch_all(pool)
    .await?;
    if accounts.is_empty() {
        return Ok(vec![None; batch.len()]);
    }
    let changes: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT p.slot, c.role, c.change \
         FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) \
           WITH ORDINALITY AS p(account_id, cutoff, since, slot) \
         JOIN ingestion.relationship_changes c ON c.account_id = p.account_id \
           AND c.occurred_at >= p.since AND c.occurred_at < p.cutoff \
         ORDER BY p.slot, c.occurred_at",
    )
    .bind(&slots.account_ids)
    .bind(&slots.cutoffs)
    .bind(&slots.since)
    .fetch_all(pool)
    .await?;
    let mut relationship_changes: Vec<Vec<(Role, String)>> = vec![Vec::new(); batch.len()];
    for (slot, role, change) in changes {
        let role = if role == "sponsor" {
            Role::Sponsor
        } else {
            Role::Champion
        };
        if let Some(list) = slot_mut(&mut relationship_changes, slot) {
            list.push((role, change));
        }
    }
    // One query per source, one after another: a batch holds one
    // connection at a time, whatever the pool's size.
    let year_before = slots_of(batch, 1);
    let r = reading;
    let mut subscriptions = read(pool, r, &slots, IN_FORCE).await?.into_iter();
    let mut subscriptions_year_before = read(pool, r, &year_before, IN_FORCE).await?.into_iter();
    let mut tickets = read(pool, r, &slots, OPEN_OR_RECENT).await?.into_iter();
    let mut surveys = read(pool, r, &slots, NPS_RESPONSES).await?.into_iter();
    let mut invoices = read(pool, r, &slots, OVERDUE).await?.into_iter();
    let mut contacts = read(pool, r, &slots, ACTIVE_CHAMPIONS).await?.into_iter();
    let mut external_signals = read(pool, r, &slots, IN_WINDOW).await?.into_iter();
    let mut metrics = read(pool, r, &slots, "true").await?.into_iter();
    let catalog: HashMap<DateTime<Utc>, Vec<FeatureRecord>> =
        records::catalog_as_of_each(pool, slots.cutoffs.iter().copied()).await?;
    let usage = usage_many(pool, &slots).await?;
    let plans: Vec<Vec<PlanRecord>> = read(pool, r, &slots, PLANS_STARTED).await?;
    let mut plan_usage = plan_usage(pool, batch, &plans, &usage).await?.into_iter();
    let mut plans = plans.into_iter();
    let mut usage = usage.into_iter();

    let mut accounts = accounts.into_iter().peekable();
    let mut loaded = Vec::with_capacity(batch.len());
    for (i, (account_id, as_of)) in batch.iter().enumerate() {
        // Every source advances one slot, known account or not.
        let (subs, subs_before) = (
            subscriptions.next().unwrap_or_default(),
            subscriptions_year_before.next().unwrap_or_default(),
        );
        let (tickets, surveys, invoices) = (
            tickets.next().unwrap_or_default(),
            surveys.next().unwrap_or_default(),
            invoices.next().unwrap_or_default(),
        );
        let (contacts, external, metrics, usage) = (
            contacts.next().unwrap_or_default(),
            external_signals.next().unwrap_or_default(),
            metrics.next().unwrap_or_default(),
            usage.next().unwrap_or_default(),
        );
        let (plans, plan_usage) = (
            plans.next().unwrap_or_default(),
            plan_usage.next().unwrap_or_default(),
        );
        // Slots count from one, as `WITH ORDINALITY` does.
        let Some((_, segment, industry, owner, parent, attributes)) =
            accounts.next_if(|row| usize::try_from(row.0 - 1) == Ok(i))
        else {
            loaded.push(None);
            continue;
        };
        loaded.push(Some(Inputs {
            subscriptions: subs,
            subscriptions_year_before: subs_before,
            tickets,
            surveys,
            invoices,
            contacts,
            external_signals: external,
            metrics,
            features: catalog.get(&slots.cutoffs[i]).cloned().unwrap_or_default(),
            relationship_changes_90d: std::mem::take(&mut relationship_changes[i]),
            usage,
            plans,
            plan_usage,
            segment,
            industry,
            owner,
            parent_account_id: parent.unwrap_or_default(),
            attributes: attributes.0,
            account_id: account_id.clone(),
            as_of: *as_of,
        }));
    }
    Ok(loaded)
}

/// The usage of each slot's account on the days its success plans' usage
/// objectives need to be judged (`plans::status_days`; the slot's own day
/// is its `usage`), in one read of the rollups for the batch.
async fn plan_usage(
    pool: &PgPool,
    batch: &[(String, NaiveDate)],
    plans: &[Vec<PlanRecord>],
    usage: &[Usage],
) -> sqlx::Result<Vec<BTreeMap<NaiveDate, Usage>>> {
    let wanted: Vec<Vec<NaiveDate>> = batch
        .iter()
        .zip(plans)
        .zip(usage)
        .map(|(((_, as_of), plans), own)| {
            let days: std::collections::BTreeSet<NaiveDate> = plans
                .iter()
                .flat_map(|plan| crate::plans::status_days(plan, *as_of, |m| own.measure(m)))
                .filter(|day| day != as_of)
                .collect();
            days.into_iter().collect()
        })
        .collect();
    let pairs: Vec<(String, NaiveDate)> = batch
        .iter()
        .zip(&wanted)
        .flat_map(|((account_id, _), days)| days.iter().map(|d| (account_id.clone(), *d)))
        .collect();
    let mut read = usage_at(pool, &pairs).await?.into_iter();
    Ok(batch
        .iter()
        .zip(wanted)
        .zip(usage)
        .map(|(((_, as_of), days), own)| {
            let mut map: BTreeMap<NaiveDate, Usage> = days.into_iter().zip(read.by_ref()).collect();
            map.insert(*as_of, own.clone());
            map
        })
        .collect())
}

/// The usage measures of success-plan objectives (active users and events
/// in the 30 days up to the day) of each (account, day), in the order
/// given, in one read of the rollups; nothing else of `Usage` is set.
pub async fn usage_at(pool: &PgPool, pairs: &[(String, NaiveDate)]) -> sqlx::Result<Vec<Usage>> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let slots = slots_of(pairs, 0);
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT (SELECT count(DISTINCT u.user_id) FROM ingestion.usage_daily_users u \
                 WHERE u.account_id = p.account_id AND u.day > p.day - 30 AND u.day <= p.day), \
                (SELECT coalesce(sum(f.events), 0)::int8 FROM ingestion.usage_daily_features f \
                 WHERE f.account_id = p.account_id AND f.day > p.day - 30 AND f.day <= p.day) \
         FROM unnest($1::text[], $2::date[]) WITH ORDINALITY AS p(account_id, day, slot) \
         ORDER BY p.slot",
    )
    .bind(&slots.account_ids)
    .bind(&slots.days)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(active_users_30d, events_30d)| Usage {
            active_users_30d,
            events_30d,
            ..Usage::default()
        })
        .collect())
}

/// The list of the slot numbered `slot` (from one, as `WITH ORDINALITY`
/// counts).
fn slot_mut<T>(lists: &mut [T], slot: i64) -> Option<&mut T> {
    usize::try_from(slot - 1)
        .ok()
        .and_then(|i| lists.get_mut(i))
}

/// Usage figures of each slot from the daily rollups, three grouped
/// queries for the whole batch.
async fn usage_many(pool: &PgPool, slots: &records::Slots) -> sqlx::Result<Vec<Usage>> {
    let mut usage: Vec<Usage> = vec![Usage::default(); slots.len()];
    let users: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT p.slot, count(DISTINCT u.user_id) FILTER (WHERE u.day > p.day - 7), \
           count(DISTINCT u.user_id) \
         FROM unnest($1::text[], $2::date[]) WITH ORDINALITY AS p(account_id, day, slot) \
         JOIN ingestion.usage_daily_users u ON u.account_id = p.account_id \
           AND u.day > p.day - 30 AND u.day <= p.day \
         GROUP BY p.slot",
    )
    .bind(&slots.account_ids)
    .bind(&slots.days)
    .fetch_all(pool)
    .await?;
    for (slot, users_7d, users_30d) in users {
        if let Some(entry) = slot_mut(&mut usage, slot) {
            entry.active_users_7d = users_7d;
            entry.active_users_30d = users_30d;
        }
    }
    let features: Vec<(i64, i64, i64, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT p.slot, \
           coalesce(sum(f.events) FILTER (WHERE f.day > p.day - 30), 0)::int8, \
           coalesce(sum(f.events) FILTER (WHERE f.day <= p.day - 30), 0)::int8, \
           array_agg(DISTINCT f.feature) FILTER (WHERE f.day > p.day - 30) \
         FROM unnest($1::text[], $2::date[]) WITH ORDINALITY AS p(account_id, day, slot) \
         JOIN ingestion.usage_daily_features f ON f.account_id = p.account_id \
           AND f.day > p.day - 60 AND f.day <= p.day \
         GROUP BY p.slot",
    )
    .bind(&slots.account_ids)
    .bind(&slots.days)
    .fetch_all(pool)
    .await?;
    for (slot, events_30d, events_prior_30d, used) in features {
        if let Some(entry) = slot_mut(&mut usage, slot) {
            entry.events_30d = events_30d;
            entry.events_prior_30d = events_prior_30d;
            entry.features_used_30d = used.unwrap_or_default();
        }
    }
    // The last active day may lie far back: one index probe per slot.
    let last: Vec<(i64, Option<NaiveDate>)> = sqlx::query_as(
        "SELECT p.slot, (SELECT max(f.day) FROM ingestion.usage_daily_features f \
                         WHERE f.account_id = p.account_id AND f.day <= p.day) \
         FROM unnest($1::text[], $2::date[]) WITH ORDINALITY AS p(account_id, day, slot)",
    )
    .bind(&slots.account_ids)
    .bind(&slots.days)
    .fetch_all(pool)
    .await?;
    for (slot, day) in last {
        if let Some(entry) = slot_mut(&mut usage, slot) {
            entry.last_active_day = day;
        }
    }
    Ok(usage)
}
