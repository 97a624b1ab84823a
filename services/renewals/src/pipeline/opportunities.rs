//! Reading opportunities: a page at a time for lists ([`Pages`]), a whole
//! window on a task of its own for streams and totals ([`Feed`]), and
//! their count.

use chrono::NaiveDate;
use sqlx::PgPool;

/// An opportunity with its account, health and outcome, as read.
#[derive(Clone, Debug)]
pub struct OpportunityRow {
    pub subscription_id: String,
    pub term_start: NaiveDate,
    pub term_end: NaiveDate,
    pub account_id: String,
    pub currency: String,
    pub arr_minor: i64,
    pub state: i16,
    pub next_arr_minor: Option<i64>,
    pub account_name: Option<String>,
    pub segment: Option<String>,
    pub owner: Option<String>,
    pub health_score: Option<f64>,
    pub health_band: Option<String>,
    pub churn_probability: Option<f64>,
    pub outcome_kind: Option<i16>,
    pub outcome_new_arr_minor: Option<i64>,
    pub outcome_decided_on: Option<NaiveDate>,
}

// Read by position, in the order of `page_sql!`'s columns: a stream
// decodes every row of a window, and looking each column up by name cost
// more than decoding it.
impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for OpportunityRow {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> sqlx::Result<Self> {
        use sqlx::Row as _;
        Ok(Self {
            subscription_id: row.try_get(0)?,
            term_start: row.try_get(1)?,
            term_end: row.try_get(2)?,
            account_id: row.try_get(3)?,
            currency: row.try_get(4)?,
            arr_minor: row.try_get(5)?,
            state: row.try_get(6)?,
            next_arr_minor: row.try_get(7)?,
            account_name: row.try_get(8)?,
            segment: row.try_get(9)?,
            owner: row.try_get(10)?,
            health_score: row.try_get(11)?,
            health_band: row.try_get(12)?,
            churn_probability: row.try_get(13)?,
            outcome_kind: row.try_get(14)?,
            outcome_new_arr_minor: row.try_get(15)?,
            outcome_decided_on: row.try_get(16)?,
        })
    }
}

/// What to read.
#[derive(Clone, Debug, Default)]
pub struct OpportunityFilter {
    pub term_end_from: Option<NaiveDate>,
    pub term_end_before: Option<NaiveDate>,
    pub segment: Option<String>,
    pub owner: Option<String>,
    pub currency: Option<String>,
}

/// Opportunities by `(term_end, subscription_id)` after the cursor.
async fn opportunities(
    pool: &PgPool,
    filter: &OpportunityFilter,
    after: Option<&(NaiveDate, String)>,
    limit: i64,
) -> sqlx::Result<Vec<OpportunityRow>> {
    page(filter, after, limit).fetch_all(pool).await
}

/// A filter's term-end range as plain bounds: from the first day when it
/// names no start, up to the last when it names no end.
fn term_end_bounds(filter: &OpportunityFilter) -> (NaiveDate, NaiveDate) {
    let first = NaiveDate::from_ymd_opt(1, 1, 1).unwrap_or_default();
    let from = filter.term_end_from.unwrap_or(first).max(first);
    let before = filter
        .term_end_before
        .unwrap_or_else(|| NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or_default());
    (from, before)
}

/// The opportunities of a page's window with their accounts and outcomes,
/// before the cursor and order: `$1`..`$5` are the term-end bounds,
/// segment, owner and currency. The outcomes are limited to the window's
/// term ends, so that only those are read to be joined.
macro_rules! page_sql {
    () => {
        "SELECT o.subscription_id, o.term_start, o.term_end, o.account_id, o.currency::text AS currency, o.arr_minor, \
           o.state, o.next_arr_minor, a.name AS account_name, a.segment, a.owner, a.health_score, \
           a.health_band, a.churn_probability, x.kind AS outcome_kind, \
           x.new_arr_minor AS outcome_new_arr_minor, x.decided_on AS outcome_decided_on \
         FROM renewals.opportunities o \
         LEFT JOIN renewals.accounts a USING (account_id) \
         LEFT JOIN renewals.outcomes x \
           ON x.subscription_id = o.subscription_id AND x.term_end_date = o.term_end \
           AND x.term_end_date >= $1 AND x.term_end_date < $2 \
         WHERE o.term_end >= $1 AND o.term_end < $2 \
           AND ($3::text IS NULL OR a.segment = $3) AND ($4::text IS NULL OR a.owner = $4) \
           AND ($5::text IS NULL OR o.currency = $5)"
    };
}

/// The query of a page of [`opportunities`], its arguments bound.
fn page<'q>(
    filter: &'q OpportunityFilter,
    after: Option<&'q (NaiveDate, String)>,
    limit: i64,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, OpportunityRow, sqlx::postgres::PgArguments> {
    // Plain range conditions on the index's columns (no `$n IS NULL OR`
    // guard), so that a page is an index range read with the joins done
    // per row; a guarded condition made every page sort the whole window
    // and hash every outcome again.
    let (from, before) = term_end_bounds(filter);
    // The first page names no cursor: a row condition that holds for
    // every row would still cut the planner's estimate of the window
    // twenty-fold and turn a whole-window read into a plan for a few rows.
    let Some((after_end, after_id)) = after else {
        return sqlx::query_as(concat!(
            page_sql!(),
            " ORDER BY o.term_end, o.subscription_id LIMIT $6"
        ))
        .bind(from)
        .bind(before)
        .bind(filter.segment.as_deref())
        .bind(filter.owner.as_deref())
        .bind(filter.currency.as_deref())
        .bind(limit);
    };
    sqlx::query_as(concat!(
        page_sql!(),
        " AND (o.term_end, o.subscription_id) > ($6, $7) \
         ORDER BY o.term_end, o.subscription_id LIMIT $8"
    ))
    .bind(from)
    .bind(before)
    .bind(filter.segment.as_deref())
    .bind(filter.owner.as_deref())
    .bind(filter.currency.as_deref())
    .bind(*after_end)
    .bind(after_id.as_str())
    .bind(limit)
}

/// Walks every opportunity of a filter in `(term_end, subscription_id)`
/// order, a page at a time.
pub struct Pages<'a> {
    pool: &'a PgPool,
    filter: &'a OpportunityFilter,
    after: Option<(NaiveDate, String)>,
    size: i64,
    done: bool,
}

impl<'a> Pages<'a> {
    /// Rows read per query, unless [`Pages::sized`] says otherwise.
    pub const SIZE: i64 = 5000;
    /// Rows per query for readers of whole windows (streams, totals): a
    /// page costs a read of the rest of the window whatever its size, so
    /// fewer, larger pages cost less in all. A year's renewals of 100,000
    /// accounts (75,000 rows) are one page.
    pub const WHOLE_WINDOW: i64 = 100_000;

    pub fn new(pool: &'a PgPool, filter: &'a OpportunityFilter) -> Self {
        Self::after(pool, filter, None)
    }

    /// Starting after the cursor `after`.
    pub fn after(
        pool: &'a PgPool,
        filter: &'a OpportunityFilter,
        after: Option<(NaiveDate, String)>,
    ) -> Self {
        Self {
            pool,
            filter,
            after,
            size: Self::SIZE,
            done: false,
        }
    }

    /// Reading `size` rows per query.
    pub fn sized(mut self, size: i64) -> Self {
        self.size = size.max(1);
        self
    }

    /// The next page, `None` once all were read.
    pub async fn next(&mut self) -> sqlx::Result<Option<Vec<OpportunityRow>>> {
        if self.done {
            return Ok(None);
        }
        let rows = opportunities(self.pool, self.filter, self.after.as_ref(), self.size).await?;
        self.done = (rows.len() as i64) < self.size;
        self.after = rows.last().map(|r| (r.term_end, r.subscription_id.clone()));
        Ok(Some(rows))
    }
}

/// Every opportunity of a filter in `(term_end, subscription_id)` order,
/// read on a task of its own and handed over in batches, with their count
/// first.
///
/// A window of at most a page of rows ([`Pages::WHOLE_WINDOW`]; most are)
/// is read in one statement without an order, the rows decoded while
/// Postgres still joins, counted as read and sorted here: sorting the
/// joined rows cost Postgres more than the join, and no row could leave
/// before the sort ended. A larger window is counted and read in ordered
/// pages of that size, a page ahead of the reader, so memory stays within
/// a page. Whatever the reader's pace, the connection returns to the pool
/// once the window (or a page ahead) is read.
pub struct Feed {
    total: Option<tokio::sync::oneshot::Receiver<i64>>,
    batches: tokio::sync::mpsc::Receiver<sqlx::Result<Vec<OpportunityRow>>>,
}

impl Feed {
    /// Rows per batch handed over.
    const BATCH: usize = 1000;

    /// Starts reading the opportunities of `filter`.
    pub fn read(pool: &PgPool, filter: &OpportunityFilter) -> Self {
        Self::read_in_pages(pool, filter, Pages::WHOLE_WINDOW)
    }

    /// [`Feed::read`], a window of more than `page_rows` rows read in
    /// ordered pages of that many.
    pub fn read_in_pages(pool: &PgPool, filter: &OpportunityFilter, page_rows: i64) -> Self {
        let page_rows = page_rows.max(1);
        let capacity = (page_rows as usize).div_ceil(Self::BATCH);
        let (sender, batches) = tokio::sync::mpsc::channel(capacity);
        let (counted, total) = tokio::sync::oneshot::channel();
        let (pool, filter) = (pool.clone(), filter.clone());
        tokio::spawn(async move {
            if let Err(error) = send_window(&pool, &filter, page_rows, counted, &sender).await {
                let _ = sender.send(Err(error)).await;
            }
        });
        Self {
            total: Some(total),
            batches,
        }
    }

    /// How many opportunities the window holds (as read, or for a window
    /// larger than a page as counted before its pages are read); `None`
    /// once asked, or when reading failed (the next batch then carries the
    /// error).
    pub async fn total(&mut self) -> Option<i64> {
        self.total.take()?.await.ok()
    }

    /// The next batch of rows, `None` once all were read.
    pub async fn next(&mut self) -> sqlx::Result<Option<Vec<OpportunityRow>>> {
        self.batches.recv().await.transpose()
    }
}

type Batches = tokio::sync::mpsc::Sender<sqlx::Result<Vec<OpportunityRow>>>;

/// Reads the window of `filter` and sends its count, then its rows in
/// batches until all were read or the receiver is gone. A window within a
/// page is read whole and counted as read; a larger one is counted, then
/// read in ordered pages (the first read, of a page and one row, is then
/// spent).
async fn send_window(
    pool: &PgPool,
    filter: &OpportunityFilter,
    page_rows: i64,
    counted: tokio::sync::oneshot::Sender<i64>,
    sender: &Batches,
) -> sqlx::Result<()> {
    let (from, before) = term_end_bounds(filter);
    let mut tx = whole_window_reading(pool).await?;
    let mut rows: Vec<OpportunityRow> = sqlx::query_as(concat!(page_sql!(), " LIMIT $6"))
        .bind(from)
        .bind(before)
        .bind(filter.segment.as_deref())
        .bind(filter.owner.as_deref())
        .bind(filter.currency.as_deref())
        .bind(page_rows.saturating_add(1))
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    if rows.len() as i64 > page_rows {
        drop(rows);
        let _ = counted.send(count_opportunities(pool, filter).await?);
        return send_pages(pool, filter, page_rows, sender).await;
    }
    let _ = counted.send(rows.len() as i64);
    rows.sort_unstable_by(|a, b| {
        (a.term_end, &a.subscription_id).cmp(&(b.term_end, &b.subscription_id))
    });
    let mut rows = rows.into_iter();
    loop {
        let batch: Vec<OpportunityRow> = rows.by_ref().take(Feed::BATCH).collect();
        if batch.is_empty() || sender.send(Ok(batch)).await.is_err() {
            return Ok(());
        }
    }
}

/// A transaction for reading a whole window: without parallel workers, and
/// with the memory to sort a page at once. The service works on the rows
/// while they are read, and workers would take the cores it needs for a
/// plan that gathers into one stream anyway.
async fn whole_window_reading(
    pool: &PgPool,
) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
        .execute(&mut *tx)
        .await?;
    sqlx::query("SET LOCAL work_mem = '64MB'")
        .execute(&mut *tx)
        .await?;
    Ok(tx)
}

/// Reads the window of `filter` in ordered pages and sends their rows in
/// batches as they arrive until all were read or the receiver is gone.
async fn send_pages(
    pool: &PgPool,
    filter: &OpportunityFilter,
    page_rows: i64,
    sender: &Batches,
) -> sqlx::Result<()> {
    use tokio_stream::StreamExt as _;
    let mut after: Option<(NaiveDate, String)> = None;
    loop {
        let mut read = 0_i64;
        let mut last = None;
        let mut tx = whole_window_reading(pool).await?;
        let mut rows = page(filter, after.as_ref(), page_rows).fetch(&mut *tx);
        let mut batch = Vec::with_capacity(Feed::BATCH);
        while let Some(row) = rows.next().await {
            batch.push(row?);
            read += 1;
            if batch.len() == Feed::BATCH {
                last = batch
                    .last()
                    .map(|r: &OpportunityRow| (r.term_end, r.subscription_id.clone()));
                if sender.send(Ok(std::mem::take(&mut batch))).await.is_err() {
                    return Ok(());
                }
            }
        }
        drop(rows);
        tx.commit().await?;
        if let Some(r) = batch.last() {
            last = Some((r.term_end, r.subscription_id.clone()));
        }
        if !batch.is_empty() && sender.send(Ok(batch)).await.is_err() {
            return Ok(());
        }
        if read < page_rows {
            return Ok(());
        }
        after = last;
    }
}

/// Counts opportunities matching `filter`: a range read of the term-end
/// index, joined to the accounts only when the filter names a segment or
/// an owner.
async fn count_opportunities(pool: &PgPool, filter: &OpportunityFilter) -> sqlx::Result<i64> {
    let (from, before) = term_end_bounds(filter);
    if filter.segment.is_none() && filter.owner.is_none() {
        return sqlx::query_scalar(
            "SELECT count(*) FROM renewals.opportunities o \
             WHERE o.term_end >= $1 AND o.term_end < $2 AND ($3::text IS NULL OR o.currency = $3)",
        )
        .bind(from)
        .bind(before)
        .bind(filter.currency.as_deref())
        .fetch_one(pool)
        .await;
    }
    sqlx::query_scalar(
        "SELECT count(*) FROM renewals.opportunities o JOIN renewals.accounts a USING (account_id) \
         WHERE o.term_end >= $1 AND o.term_end < $2 \
           AND ($3::text IS NULL OR a.segment = $3) AND ($4::text IS NULL OR a.owner = $4) \
           AND ($5::text IS NULL OR o.currency = $5)",
    )
    .bind(from)
    .bind(before)
    .bind(filter.segment.as_deref())
    .bind(filter.owner.as_deref())
    .bind(filter.currency.as_deref())
    .fetch_one(pool)
    .await
}
