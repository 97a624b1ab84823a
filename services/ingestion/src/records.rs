//! The store of source records other than accounts: the newest state of each
//! record (its head) and every applied version, with newest-source-time-wins
//! upserts and as-of reads.

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::{PgConnection, PgPool};

/// A kind of source record kept in the generic store.
pub trait Record: Serialize + DeserializeOwned + Clone + Send + Unpin + 'static {
    /// Stable name of the kind in storage, e.g. `ticket`.
    const KIND: &'static str;
    fn record_id(&self) -> &str;
    /// The account it belongs to; `None` for catalog records (features).
    fn account_id(&self) -> Option<&str>;
    /// The source's time of this state; newer wins.
    fn updated_at(&self) -> DateTime<Utc>;
    /// When what it records happened, for recomputing history from then on.
    fn event_time(&self) -> DateTime<Utc> {
        self.updated_at()
    }
    /// The first day from which the account signals can no longer use this
    /// state (a paid invoice is never overdue again; a term that ended is
    /// never in force again), `None` when there is no such day. A bound
    /// may come late, never early: [`needed_as_of_many`] skips a head that
    /// was this state at a slot's cutoff from that day on, without reading it.
    fn useful_before(&self) -> Option<NaiveDate> {
        None
    }
    /// The first day on which the account signals can use this state:
    /// never before it (an invoice is not overdue before it is issued, a
    /// term not in force before it starts), `None` when there is no such
    /// day. A bound may come early, never late: a head keeps the earliest
    /// of its versions', and [`needed_as_of_many`] skips it and its
    /// versions unread on the days before.
    fn useful_from(&self) -> Option<NaiveDate> {
        None
    }
}

/// A record that an upsert applied, with the state it replaced.
#[derive(Debug, Clone)]
pub struct Applied<R> {
    pub new: R,
    pub old: Option<R>,
}

/// What a batch upsert did.
#[derive(Debug)]
pub struct Upserted<R> {
    pub applied: Vec<Applied<R>>,
    /// Items not applied because the stored state is as new or newer.
    pub stale: usize,
}

/// Applies a batch inside the caller's transaction. Every dated version in
/// the batch is applied, oldest first, so a record's history can arrive in
/// one batch; against storage only a strictly newer `updated_at` replaces
/// the head. Each applied state is kept as a version, and each applied item
/// carries the state it replaced (the previous version of the same batch,
/// where there is one).
pub async fn upsert<R: Record>(
    tx: &mut PgConnection,
    records: Vec<R>,
) -> sqlx::Result<Upserted<R>> {
    let submitted = records.len();
    let mut applied = Vec::with_capacity(submitted);
    for round in version_rounds(records, |r| r.record_id().to_owned(), |r| r.updated_at()) {
        applied.extend(upsert_round(tx, round).await?);
    }
    let stale = submitted - applied.len();
    Ok(Upserted { applied, stale })
}

/// Applies at most one version per record.
async fn upsert_round<R: Record>(
    tx: &mut PgConnection,
    batch: Vec<R>,
) -> sqlx::Result<Vec<Applied<R>>> {
    let mut ids = Vec::with_capacity(batch.len());
    let mut accounts = Vec::with_capacity(batch.len());
    let mut times = Vec::with_capacity(batch.len());
    let mut data = Vec::with_capacity(batch.len());
    let mut useful = Vec::with_capacity(batch.len());
    let mut useful_from = Vec::with_capacity(batch.len());
    for record in &batch {
        ids.push(record.record_id().to_owned());
        accounts.push(record.account_id().map(str::to_owned));
        times.push(record.updated_at());
        useful.push(record.useful_before());
        useful_from.push(record.useful_from());
        data.push(serde_json::to_value(record).map_err(|e| sqlx::Error::Encode(Box::new(e)))?);
    }
    let rows: Vec<(serde_json::Value, Option<serde_json::Value>)> = sqlx::query_as(
        "WITH input AS ( \
           SELECT * FROM UNNEST($2::text[], $3::text[], $4::timestamptz[], $5::jsonb[], $6::date[], \
             $7::date[]) AS t(record_id, account_id, updated_at, data, useful_before, useful_from) \
         ), old AS ( \
           SELECT h.record_id, h.account_id, h.data FROM ingestion.record_heads h \
           JOIN input i ON h.kind = $1 AND h.record_id = i.record_id \
         ), upserted AS ( \
           INSERT INTO ingestion.record_heads AS h (kind, record_id, account_id, updated_at, data, \
             useful_before, useful_from) \
           SELECT $1, record_id, account_id, updated_at, data, useful_before, useful_from FROM input \
           ON CONFLICT (kind, record_id) DO UPDATE SET \
             account_id = EXCLUDED.account_id, updated_at = EXCLUDED.updated_at, data = EXCLUDED.data, \
             useful_before = EXCLUDED.useful_before, \
             useful_from = CASE WHEN h.useful_from IS NOT NULL AND EXCLUDED.useful_from IS NOT NULL \
               THEN least(h.useful_from, EXCLUDED.useful_from) END \
           WHERE h.updated_at < EXCLUDED.updated_at \
           RETURNING h.record_id, h.account_id, h.updated_at, h.data \
         ), versions AS ( \
           INSERT INTO ingestion.record_versions (kind, record_id, account_id, valid_from, data) \
           SELECT $1, record_id, account_id, updated_at, data FROM upserted \
           ON CONFLICT DO NOTHING \
         ), moves AS ( \
           INSERT INTO ingestion.record_moves (account_id, kind, record_id) \
           SELECT o.account_id, $1, o.record_id FROM upserted u JOIN old o USING (record_id) \
           WHERE o.account_id IS NOT NULL AND o.account_id IS DISTINCT FROM u.account_id \
           ON CONFLICT DO NOTHING \
         ) \
         SELECT u.data, o.data FROM upserted u LEFT JOIN old o USING (record_id) ORDER BY u.record_id",
    )
    .bind(R::KIND)
    .bind(&ids)
    .bind(&accounts)
    .bind(&times)
    .bind(&data)
    .bind(&useful)
    .bind(&useful_from)
    .fetch_all(&mut *tx)
    .await?;
    let decode = |value: serde_json::Value| {
        serde_json::from_value::<R>(value).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    let mut applied = Vec::with_capacity(rows.len());
    for (new, old) in rows {
        applied.push(Applied {
            new: decode(new)?,
            old: old.map(decode).transpose()?,
        });
    }
    Ok(applied)
}

/// Splits a batch into rounds that apply every dated version it holds, oldest
/// first: round `k` holds the `k`-th oldest version of each key. Two items
/// of one key with the same time are one version (the later item wins).
/// Each round is sorted by key so that concurrent batches lock rows in the
/// same order.
pub fn version_rounds<T, K: Ord + std::hash::Hash + Eq + Clone>(
    items: Vec<T>,
    key: impl Fn(&T) -> K,
    time: impl Fn(&T) -> DateTime<Utc>,
) -> Vec<Vec<T>> {
    let mut by_key: std::collections::HashMap<K, std::collections::BTreeMap<DateTime<Utc>, T>> =
        std::collections::HashMap::with_capacity(items.len());
    for item in items {
        by_key
            .entry(key(&item))
            .or_default()
            .insert(time(&item), item);
    }
    let mut keyed: Vec<(K, std::collections::BTreeMap<DateTime<Utc>, T>)> =
        by_key.into_iter().collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut rounds: Vec<Vec<T>> = Vec::new();
    for (_, versions) in keyed {
        for (round, item) in versions.into_values().enumerate() {
            if rounds.len() == round {
                rounds.push(Vec::new());
            }
            rounds[round].push(item);
        }
    }
    rounds
}

/// The records of `account_id` as they stood at `cutoff`: the latest version
/// from before it, or, for a record first reported later (a backfill), its
/// earliest version. Callers judge event times (opened, paid, …) against the
/// cutoff themselves.
pub async fn as_of<R: Record>(
    pool: &PgPool,
    account_id: &str,
    cutoff: DateTime<Utc>,
) -> sqlx::Result<Vec<R>> {
    versions_as_of(pool, account_id, cutoff).await
}

/// The records of each of `account_ids` as they stood at `cutoff`, by the
/// same rule as [`as_of`], in one query for the whole batch, from every
/// version: the plain definition, which [`needed_as_of_many`] must match.
pub async fn as_of_many<R: Record>(
    db: impl sqlx::PgExecutor<'_>,
    account_ids: &[String],
    cutoff: DateTime<Utc>,
) -> sqlx::Result<std::collections::HashMap<String, Vec<R>>> {
    // A record belongs to the account its chosen state names: a ticket
    // moved from one account to another counts for the first until the
    // move and for the second from then on.
    let rows = sqlx::query_as(
        "SELECT account_id, data FROM ( \
           SELECT DISTINCT ON (record_id) account_id, data FROM ingestion.record_versions \
           WHERE kind = $2 AND record_id IN ( \
             SELECT record_id FROM ingestion.record_versions WHERE account_id = ANY($1) AND kind = $2) \
           ORDER BY record_id, (valid_from < $3) DESC, \
                    CASE WHEN valid_from < $3 THEN valid_from END DESC, valid_from ASC \
         ) chosen WHERE account_id = ANY($1)",
    )
    .bind(account_ids)
    .bind(R::KIND)
    .bind(cutoff)
    .fetch_all(db)
    .await?;
    Ok(by_account(rows))
}

/// Accounts each read as of a point of its own (one account may appear at
/// several points): the slots of a batch read by [`needed_as_of_many`].
/// Each slot has its cutoff, a day `day` and the start of a window `since`,
/// which a reader's condition may use as `p.cutoff`, `p.day` and `p.since`.
#[derive(Debug, Clone, Default)]
pub struct Slots {
    pub account_ids: Vec<String>,
    pub cutoffs: Vec<DateTime<Utc>>,
    pub days: Vec<chrono::NaiveDate>,
    pub since: Vec<DateTime<Utc>>,
}

impl Slots {
    /// Adds a slot; its index is the number of slots before it.
    pub fn push(
        &mut self,
        account_id: &str,
        cutoff: DateTime<Utc>,
        day: chrono::NaiveDate,
        since: DateTime<Utc>,
    ) {
        self.account_ids.push(account_id.to_owned());
        self.cutoffs.push(cutoff);
        self.days.push(day);
        self.since.push(since);
    }

    pub fn len(&self) -> usize {
        self.account_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.account_ids.is_empty()
    }
}

/// The records of each slot's account as they stood at the slot's cutoff,
/// by the rule of [`as_of`], keeping only those `condition` names: a
/// condition over the state chosen (`d.data`, the stored JSON) and the
/// slot (`p`), which must keep every record the reader can use and may
/// keep more. Records that have not changed since the cutoff (most, when
/// it is recent) are read from their heads, one row each; only the others
/// look up their versions; and what the reader cannot use never leaves the
/// database. The result has one list per slot, each in record id order.
pub async fn needed_as_of_many<R: Record>(
    db: impl sqlx::PgExecutor<'_>,
    slots: &Slots,
    condition: &'static str,
) -> sqlx::Result<Vec<Vec<R>>> {
    // The slots are joined, not matched with `= ANY($1)`: planning an
    // array of hundreds of ids against the column statistics cost more
    // than running the query. A record belongs to the account its chosen
    // state names. Heads that name a slot's account and are older than its
    // cutoff are chosen as they are; every other record that ever named
    // the account (a head changed since the cutoff, or a record that moved
    // away from it, as `record_moves` keeps) is chosen from its versions by
    // two index probes: the latest before the cutoff, or failing that the
    // earliest. No version is read unless it may be chosen, and no settled
    // head whose state the signals can no longer use on the slot's day
    // (`Record::useful_before`), nor any record none of whose versions they
    // can use yet (`Record::useful_from`).
    let rows: Vec<(i64, sqlx::types::Json<R>)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH p AS MATERIALIZED ( \
           SELECT * FROM unnest($1::text[], $3::timestamptz[], $4::date[], $5::timestamptz[]) \
             WITH ORDINALITY AS b(account_id, cutoff, day, since, slot) \
         ), heads AS MATERIALIZED ( \
           SELECT p.slot, h.record_id, h.data, h.updated_at < p.cutoff AS settled \
           FROM p JOIN ingestion.record_heads h ON h.account_id = p.account_id \
           WHERE h.kind = $2 \
             AND (h.useful_before IS NULL OR h.useful_before > p.day OR h.updated_at >= p.cutoff) \
             AND (h.useful_from IS NULL OR h.useful_from <= p.day) \
         ), unsettled AS ( \
           SELECT slot, record_id FROM heads WHERE NOT settled \
           UNION \
           SELECT p.slot, m.record_id \
           FROM p JOIN ingestion.record_moves m ON m.account_id = p.account_id \
           WHERE m.kind = $2 AND NOT EXISTS ( \
             SELECT FROM heads s WHERE s.settled AND s.slot = p.slot AND s.record_id = m.record_id) \
         ), rechosen AS MATERIALIZED ( \
           SELECT u.slot, c.data FROM unsettled u JOIN p USING (slot), LATERAL ( \
             (SELECT v.account_id, v.data FROM ingestion.record_versions v \
              WHERE v.kind = $2 AND v.record_id = u.record_id AND v.valid_from < p.cutoff \
              ORDER BY v.valid_from DESC LIMIT 1) \
             UNION ALL \
             (SELECT v.account_id, v.data FROM ingestion.record_versions v \
              WHERE v.kind = $2 AND v.record_id = u.record_id ORDER BY v.valid_from LIMIT 1) \
             LIMIT 1 \
           ) c WHERE c.account_id = p.account_id \
         ), chosen AS ( \
           SELECT slot, data FROM heads WHERE settled \
           UNION ALL \
           SELECT slot, data FROM rechosen \
         ) \
         SELECT d.slot, d.data FROM chosen d JOIN p USING (slot) WHERE {condition}"
    )))
    .bind(&slots.account_ids)
    .bind(R::KIND)
    .bind(&slots.cutoffs)
    .bind(&slots.days)
    .bind(&slots.since)
    .fetch_all(db)
    .await?;
    let mut by_slot: Vec<Vec<R>> = vec![Vec::new(); slots.len()];
    for (slot, sqlx::types::Json(record)) in rows {
        // Slots count from one, as `WITH ORDINALITY` does.
        if let Some(list) = usize::try_from(slot - 1)
            .ok()
            .and_then(|i| by_slot.get_mut(i))
        {
            list.push(record);
        }
    }
    for list in &mut by_slot {
        list.sort_by(|a, b| a.record_id().cmp(b.record_id()));
    }
    Ok(by_slot)
}

/// Groups rows of (account, record) by account; the records decode straight
/// from the stored JSON into the record type.
fn by_account<R: Record>(
    rows: Vec<(String, sqlx::types::Json<R>)>,
) -> std::collections::HashMap<String, Vec<R>> {
    let mut by_account: std::collections::HashMap<String, Vec<R>> = Default::default();
    for (account_id, sqlx::types::Json(record)) in rows {
        by_account.entry(account_id).or_default().push(record);
    }
    by_account
}

/// Every version of the records of `ids`, by record id and then source time.
pub async fn versions<R: Record>(pool: &PgPool, ids: &[String]) -> sqlx::Result<Vec<R>> {
    let rows: Vec<serde_json::Value> = sqlx::query_scalar(
        "SELECT data FROM ingestion.record_versions \
         WHERE kind = $1 AND record_id = ANY($2) ORDER BY record_id, valid_from",
    )
    .bind(R::KIND)
    .bind(ids)
    .fetch_all(pool)
    .await?;
    rows.into_iter()
        .map(|row| serde_json::from_value(row).map_err(|e| sqlx::Error::Decode(Box::new(e))))
        .collect()
}

/// Catalog records (no account) as they stood at each of `cutoffs`, by the
/// rule of [`as_of`], from one read of their versions; each list in record
/// id order.
pub async fn catalog_as_of_each<R: Record>(
    db: impl sqlx::PgExecutor<'_>,
    cutoffs: impl IntoIterator<Item = DateTime<Utc>>,
) -> sqlx::Result<std::collections::HashMap<DateTime<Utc>, Vec<R>>> {
    let rows: Vec<(String, DateTime<Utc>, sqlx::types::Json<R>)> = sqlx::query_as(
        "SELECT record_id, valid_from, data FROM ingestion.record_versions \
         WHERE account_id IS NULL AND kind = $1 ORDER BY record_id, valid_from",
    )
    .bind(R::KIND)
    .fetch_all(db)
    .await?;
    let mut records: Vec<Vec<(DateTime<Utc>, R)>> = Vec::new();
    let mut last_id: Option<String> = None;
    for (record_id, valid_from, sqlx::types::Json(record)) in rows {
        if last_id.as_deref() != Some(record_id.as_str()) {
            records.push(Vec::new());
            last_id = Some(record_id);
        }
        if let Some(versions) = records.last_mut() {
            versions.push((valid_from, record));
        }
    }
    Ok(cutoffs
        .into_iter()
        .map(|cutoff| {
            let chosen = records
                .iter()
                .filter_map(|versions| chosen_at(versions, cutoff).cloned())
                .collect();
            (cutoff, chosen)
        })
        .collect())
}

/// The state of one record at `cutoff` from its versions in time order: the
/// latest from before it or, failing that, the earliest (the rule of
/// [`as_of`]).
fn chosen_at<R>(versions: &[(DateTime<Utc>, R)], cutoff: DateTime<Utc>) -> Option<&R> {
    versions
        .iter()
        .rev()
        .find(|(valid_from, _)| *valid_from < cutoff)
        .or(versions.first())
        .map(|(_, record)| record)
}

async fn versions_as_of<R: Record>(
    db: impl sqlx::PgExecutor<'_>,
    account_id: &str,
    cutoff: DateTime<Utc>,
) -> sqlx::Result<Vec<R>> {
    let rows: Vec<sqlx::types::Json<R>> = sqlx::query_scalar(
        "SELECT DISTINCT ON (record_id) data FROM ingestion.record_versions \
         WHERE account_id = $1 AND kind = $2 \
         ORDER BY record_id, (valid_from < $3) DESC, \
                  CASE WHEN valid_from < $3 THEN valid_from END DESC, valid_from ASC",
    )
    .bind(account_id)
    .bind(R::KIND)
    .bind(cutoff)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|sqlx::types::Json(r)| r).collect())
}

/// Account ids known to exist. Accounts are never deleted, so a positive
/// answer stays true; the cache saves the lookup on every event chunk.
#[derive(Debug, Default)]
pub struct KnownAccounts {
    ids: std::sync::RwLock<std::collections::HashSet<String>>,
}

/// Beyond this many cached ids the cache starts over, bounding its memory.
const KNOWN_ACCOUNTS_CAPACITY: usize = 1_000_000;

impl KnownAccounts {
    /// The ids among `account_ids` that name no account.
    pub async fn unknown(
        &self,
        tx: &mut PgConnection,
        account_ids: &[String],
    ) -> sqlx::Result<std::collections::HashSet<String>> {
        let mut wanted: Vec<String> = {
            let ids = self.ids.read().unwrap_or_else(|e| e.into_inner());
            account_ids
                .iter()
                .filter(|id| !ids.contains(*id))
                .cloned()
                .collect()
        };
        if wanted.is_empty() {
            return Ok(Default::default());
        }
        wanted.sort();
        wanted.dedup();
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT account_id FROM ingestion.accounts WHERE account_id = ANY($1)",
        )
        .bind(&wanted)
        .fetch_all(&mut *tx)
        .await?;
        let found: std::collections::HashSet<String> = found.into_iter().collect();
        let missing = wanted
            .into_iter()
            .filter(|id| !found.contains(id))
            .collect();
        let mut ids = self.ids.write().unwrap_or_else(|e| e.into_inner());
        if ids.len() + found.len() > KNOWN_ACCOUNTS_CAPACITY {
            ids.clear();
        }
        ids.extend(found);
        Ok(missing)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;

    use super::*;

    #[test]
    fn a_record_at_a_cutoff_is_its_latest_earlier_state_or_its_first() {
        let at = |day: u32| Utc.with_ymd_and_hms(2025, 1, day, 0, 0, 0).unwrap();
        let versions = [(at(5), "v5"), (at(10), "v10"), (at(20), "v20")];
        assert_eq!(chosen_at(&versions, at(1)), Some(&"v5"), "a backfill");
        assert_eq!(
            chosen_at(&versions, at(5)),
            Some(&"v5"),
            "not yet v5, none earlier"
        );
        assert_eq!(chosen_at(&versions, at(6)), Some(&"v5"));
        assert_eq!(
            chosen_at(&versions, at(10)),
            Some(&"v5"),
            "the cutoff is exclusive"
        );
        assert_eq!(chosen_at(&versions, at(25)), Some(&"v20"));
        assert_eq!(chosen_at::<&str>(&[], at(25)), None);
    }

    #[test]
    fn rounds_apply_each_version_once_oldest_first() {
        let at = |day: u32| Utc.with_ymd_and_hms(2025, 1, day, 0, 0, 0).unwrap();
        let items = vec![
            ("b", at(3), "b3"),
            ("a", at(2), "a2"),
            ("b", at(1), "b1"),
            ("a", at(2), "a2 again"),
            ("c", at(5), "c5"),
            ("a", at(1), "a1"),
        ];
        let rounds = version_rounds(items, |i| i.0, |i| i.1);
        let names: Vec<Vec<&str>> = rounds
            .iter()
            .map(|round| round.iter().map(|i| i.2).collect())
            .collect();
        assert_eq!(names, [vec!["a1", "b1", "c5"], vec!["a2 again", "b3"]]);
    }
}
