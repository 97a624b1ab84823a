//! The pipeline and forecast APIs: listing and summarising opportunities,
//! probability-weighted forecasts, their backtest, and the batch forms
//! (a server stream and a job) for callers that forecast every account.

use std::collections::BTreeMap;
use std::pin::Pin;

use chrono::{NaiveDate, Utc};
use prost::Message as _;
use sqlx::PgPool;
use tenure_platform::{ApiError, ApiResult, Violations, idempotency, paging, time};
use tenure_proto::common::v1::{Date, DateRange};
use tenure_proto::renewals::v1 as pb;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::SCHEMA;
use crate::contracts;
use crate::forecast::{self, Category, Line, Totals};
use crate::grpc::RenewalsApi;
use crate::pipeline::{self, OPEN, OpportunityFilter, OpportunityRow, Pages};
use crate::views::{self, Context, money};

const MAX_ID: usize = 128;

pub type ForecastStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamForecastResponse, tonic::Status>> + Send>>;

/// A `[start, end)` window; `required` makes both bounds mandatory.
pub fn window(
    range: Option<&DateRange>,
    field: &str,
    required: bool,
    violations: &mut Violations,
) -> (Option<NaiveDate>, Option<NaiveDate>) {
    let bound = |value: Option<&Date>, name: &str, violations: &mut Violations| match value {
        Some(date) => time::date(Some(date), &format!("{field}.{name}"), violations),
        None if required => {
            violations.add(format!("{field}.{name}"), "is required");
            None
        }
        None => None,
    };
    let start = bound(range.and_then(|r| r.start.as_ref()), "start", violations);
    let end = bound(range.and_then(|r| r.end.as_ref()), "end", violations);
    if let (Some(s), Some(e)) = (start, end) {
        violations.check(s < e, format!("{field}.end"), "must be after start");
    }
    (start, end)
}

/// The opportunities a request names: term ends in its window (under
/// `prefix`, e.g. `forecast.`), its segment and owner.
fn opportunity_filter(
    range: Option<&DateRange>,
    prefix: &str,
    required: bool,
    segment: &str,
    owner: &str,
    violations: &mut Violations,
) -> OpportunityFilter {
    let (term_end_from, term_end_before) =
        window(range, &format!("{prefix}window"), required, violations);
    OpportunityFilter {
        term_end_from,
        term_end_before,
        segment: filter_text(segment, &format!("{prefix}segment"), violations),
        owner: filter_text(owner, &format!("{prefix}owner"), violations),
        currency: None,
    }
}

/// An optional day, today when unset.
pub fn day_or_today(value: Option<&Date>, field: &str, violations: &mut Violations) -> NaiveDate {
    let today = Utc::now().date_naive();
    match value {
        Some(date) => time::date(Some(date), field, violations).unwrap_or(today),
        None => today,
    }
}

/// An optional filter text: empty means any.
pub fn filter_text(value: &str, field: &str, violations: &mut Violations) -> Option<String> {
    violations.limit_text(value, field, MAX_ID);
    (!value.is_empty()).then(|| value.to_owned())
}

/// A currency filter, USD when unset.
pub fn currency(code: &str, field: &str, violations: &mut Violations) -> String {
    if code.is_empty() {
        return "USD".to_owned();
    }
    violations.check(
        tenure_platform::money::is_currency_code(code),
        field,
        "must be an ISO 4217 code such as USD",
    );
    code.to_owned()
}

/// What forecasts of `as_of` judge probabilities by: historical rates and
/// the calibration of model probabilities from what was decided by then.
pub async fn context(pool: &PgPool, as_of: NaiveDate) -> ApiResult<Context> {
    let today = Utc::now().date_naive();
    let current = as_of >= today;
    // History is what is known today at the latest: a future as-of date
    // must not count contracts as lapsed before their grace has passed.
    let known = as_of.min(today);
    Ok(Context {
        as_of,
        current,
        rates: contracts::rates(pool, known).await?,
        calibration: contracts::calibration(pool, known).await?,
        use_model: current,
    })
}

/// Every opportunity of `filter`, resolved, in term-end order.
pub async fn resolved_rows(
    pool: &PgPool,
    filter: &OpportunityFilter,
    context: &Context,
) -> ApiResult<Vec<(OpportunityRow, views::Resolved)>> {
    let mut out = Vec::new();
    let mut pages = Pages::new(pool, filter);
    while let Some(rows) = pages.next().await? {
        for row in rows {
            let resolved = views::resolve(context, &row);
            out.push((row, resolved));
        }
    }
    Ok(out)
}

fn totals_to_proto(currency: &str, t: &Totals) -> pb::ForecastTotals {
    let m = |minor| Some(money(currency, minor));
    pb::ForecastTotals {
        renewal_count: t.renewals as i64,
        arr_up: m(t.arr_up_minor),
        expected_arr: m(t.expected_minor),
        commit: m(t.commit_minor),
        best_case: m(t.best_case_minor),
        worst_case: m(t.worst_case_minor),
        interval_low: m(t.low_minor),
        interval_high: m(t.high_minor),
        expected_renewal_count: t.expected_renewals,
        expected_gross_retention: t.expected_grr,
        expected_net_retention: t.expected_nrr,
    }
}

fn category_summaries(currency: &str, lines: &[&Line]) -> Vec<pb::CategorySummary> {
    let mut by: BTreeMap<Category, (i64, i64, i64)> = BTreeMap::new();
    for line in lines {
        let entry = by.entry(line.category).or_default();
        entry.0 += 1;
        entry.1 += line.arr_minor;
        entry.2 += line.expected_minor();
    }
    by.into_iter()
        .map(|(category, (count, arr, expected))| pb::CategorySummary {
            category: category as i32,
            count,
            arr: Some(money(currency, arr)),
            expected_arr: Some(money(currency, expected)),
        })
        .collect()
}

/// The stream and job request, validated.
struct ForecastScope {
    filter: OpportunityFilter,
    as_of: NaiveDate,
    chunk: usize,
}

fn forecast_scope(request: &pb::StreamForecastRequest, field: &str) -> ApiResult<ForecastScope> {
    let mut violations = Violations::default();
    let filter = opportunity_filter(
        request.window.as_ref(),
        field,
        true,
        &request.segment,
        "",
        &mut violations,
    );
    let as_of = day_or_today(
        request.as_of.as_ref(),
        &format!("{field}as_of"),
        &mut violations,
    );
    violations.check(
        (0..=5000).contains(&request.chunk_size),
        format!("{field}chunk_size"),
        "must be between 0 and 5000",
    );
    violations.into_result()?;
    Ok(ForecastScope {
        filter,
        as_of,
        chunk: if request.chunk_size == 0 {
            500
        } else {
            request.chunk_size as usize
        },
    })
}

impl RenewalsApi {
    pub(crate) async fn list_renewal_pipeline(
        &self,
        request: pb::ListRenewalPipelineRequest,
    ) -> ApiResult<pb::ListRenewalPipelineResponse> {
        let size = paging::page_size(request.page_size)? as usize;
        let after: Option<(NaiveDate, String)> = paging::decode_token(&request.page_token)?;
        let mut violations = Violations::default();
        let filter = opportunity_filter(
            request.window.as_ref(),
            "",
            false,
            &request.segment,
            &request.owner,
            &mut violations,
        );
        let category = match request.category {
            0 => None,
            code => {
                let known = pb::ForecastCategory::try_from(code).is_ok();
                violations.check(known, "category", "is not a known forecast category");
                Some(code)
            }
        };
        violations.into_result()?;
        let context = context(&self.pool, Utc::now().date_naive()).await?;
        let mut page = Vec::new();
        let mut next_page_token = String::new();
        let mut last_kept: Option<(NaiveDate, String)> = None;
        // Category and state are judged per row, so read until the page fills.
        let mut pages = Pages::after(&self.pool, &filter, after);
        'fill: while let Some(rows) = pages.next().await? {
            for row in rows {
                let resolved = views::resolve(&context, &row);
                if !request.include_closed && resolved.state != OPEN {
                    continue;
                }
                if category.is_some_and(|c| c != resolved.line.category as i32) {
                    continue;
                }
                if page.len() == size {
                    // One more match exists: the page ends at the last kept row.
                    next_page_token = last_kept
                        .as_ref()
                        .map(paging::encode_token)
                        .unwrap_or_default();
                    break 'fill;
                }
                last_kept = Some((row.term_end, row.subscription_id.clone()));
                page.push(views::to_proto(&context, &row, &resolved));
            }
        }
        Ok(pb::ListRenewalPipelineResponse {
            opportunities: page,
            next_page_token,
        })
    }

    pub(crate) async fn summarize_renewal_pipeline(
        &self,
        request: pb::SummarizeRenewalPipelineRequest,
    ) -> ApiResult<pb::SummarizeRenewalPipelineResponse> {
        let mut violations = Violations::default();
        let filter = opportunity_filter(
            request.window.as_ref(),
            "",
            false,
            &request.segment,
            &request.owner,
            &mut violations,
        );
        violations.into_result()?;
        let context = context(&self.pool, Utc::now().date_naive()).await?;
        let rows = resolved_rows(&self.pool, &filter, &context).await?;
        // Open renewals by category, and those already lost; per currency
        // the first one seen (the pipeline is summarised in one currency).
        let currency = rows
            .first()
            .map_or("USD".to_owned(), |(r, _)| r.currency.clone());
        let lines: Vec<&Line> = rows
            .iter()
            .filter(|(row, resolved)| {
                row.currency == currency
                    && (resolved.state == OPEN || resolved.line.category == Category::Lost)
            })
            .map(|(_, resolved)| &resolved.line)
            .collect();
        Ok(pb::SummarizeRenewalPipelineResponse {
            categories: category_summaries(&currency, &lines),
            total_count: lines.len() as i64,
            total_arr: Some(money(&currency, lines.iter().map(|l| l.arr_minor).sum())),
        })
    }

    pub(crate) async fn forecast_renewals(
        &self,
        request: pb::ForecastRenewalsRequest,
    ) -> ApiResult<pb::ForecastRenewalsResponse> {
        let mut violations = Violations::default();
        let mut filter = opportunity_filter(
            request.window.as_ref(),
            "",
            true,
            &request.segment,
            "",
            &mut violations,
        );
        let as_of = day_or_today(request.as_of.as_ref(), "as_of", &mut violations);
        let currency = currency(&request.currency_code, "currency_code", &mut violations);
        violations.into_result()?;
        filter.currency = Some(currency.clone());
        let context = context(&self.pool, as_of).await?;
        let rows = resolved_rows(&self.pool, &filter, &context).await?;
        let lines: Vec<Line> = rows.iter().map(|(_, r)| r.line.clone()).collect();
        let totals = forecast::totals(&lines);
        Ok(pb::ForecastRenewalsResponse {
            totals: Some(totals_to_proto(&currency, &totals)),
            categories: category_summaries(&currency, &lines.iter().collect::<Vec<_>>()),
            calibration_outcomes: context.calibration.outcomes as i64,
        })
    }

    pub(crate) async fn backtest_forecast(
        &self,
        request: pb::BacktestForecastRequest,
    ) -> ApiResult<pb::BacktestForecastResponse> {
        let mut violations = Violations::default();
        let mut filter = opportunity_filter(
            request.window.as_ref(),
            "",
            true,
            &request.segment,
            "",
            &mut violations,
        );
        let today = Utc::now().date_naive();
        let as_of = time::date(request.as_of.as_ref(), "as_of", &mut violations);
        if let Some(as_of) = as_of {
            violations.check(as_of < today, "as_of", "must be a past date");
        }
        let currency = currency(&request.currency_code, "currency_code", &mut violations);
        violations.into_result()?;
        let Some(as_of) = as_of else {
            return Err(ApiError::invalid("as_of", "is required"));
        };
        filter.currency = Some(currency.clone());
        let then = context(&self.pool, as_of).await?;
        let now = context(&self.pool, today).await?;
        let rows = resolved_rows(&self.pool, &filter, &then).await?;
        let forecast_lines: Vec<Line> = rows.iter().map(|(_, r)| r.line.clone()).collect();
        let mut predicted = Vec::new();
        let mut pairs = Vec::new();
        let (mut actual_arr, mut actual_count, mut undecided) = (0_i64, 0_i64, 0_i64);
        for (row, past) in &rows {
            let known = views::resolve(&now, row);
            let Some(actual) = known.line.decided_arr_minor else {
                undecided += 1;
                continue;
            };
            actual_arr += actual;
            actual_count += i64::from(actual > 0);
            predicted.push(past.line.clone());
            if past.line.decided_arr_minor.is_none() {
                pairs.push((past.line.probability, actual > 0));
            }
        }
        let compared = forecast::totals(&predicted);
        Ok(pb::BacktestForecastResponse {
            forecast: Some(totals_to_proto(
                &currency,
                &forecast::totals(&forecast_lines),
            )),
            actual_renewed_arr: Some(money(&currency, actual_arr)),
            actual_renewed_count: actual_count,
            arr_error: Some(money(&currency, compared.expected_minor - actual_arr)),
            count_error: compared.expected_renewals - actual_count as f64,
            calibration: forecast::calibration_table(&pairs)
                .into_iter()
                .map(|b| pb::CalibrationBucket {
                    low: b.low,
                    high: b.high,
                    count: b.count as i64,
                    mean_predicted: b.mean_predicted,
                    actual_rate: b.actual_rate,
                })
                .collect(),
            undecided_count: undecided,
        })
    }

    pub(crate) async fn stream_forecast(
        &self,
        request: pb::StreamForecastRequest,
    ) -> ApiResult<ForecastStream> {
        let scope = forecast_scope(&request, "")?;
        let context = context(&self.pool, scope.as_of).await?;
        let total = pipeline::count_opportunities(&self.pool, &scope.filter).await?;
        // A small buffer: the producer waits for a slow reader (HTTP/2 flow
        // control reaches back here) and stops when the reader goes away.
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut first = true;
            let result = walk(&pool, &scope, &context, |rows| {
                let message = pb::StreamForecastResponse {
                    rows,
                    total_count: if std::mem::take(&mut first) { total } else { 0 },
                };
                let sender = sender.clone();
                async move { sender.send(Ok(message)).await.is_ok() }
            })
            .await;
            match result {
                Ok(true) => {
                    if first {
                        let _ = sender
                            .send(Ok(pb::StreamForecastResponse {
                                rows: Vec::new(),
                                total_count: total,
                            }))
                            .await;
                    }
                }
                Ok(false) => tracing::info!("forecast stream cancelled by the caller"),
                Err(error) => {
                    let _ = sender.send(Err(error.into())).await;
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        )))
    }

    pub(crate) async fn start_forecast_job(
        &self,
        request: pb::StartForecastJobRequest,
    ) -> ApiResult<pb::StartForecastJobResponse> {
        const METHOD: &str = "StartForecastJob";
        let Some(forecast) = request.forecast.as_ref() else {
            return Err(ApiError::invalid("forecast", "is required"));
        };
        forecast_scope(forecast, "forecast.")?;
        let mut tx = self.pool.begin().await?;
        if let Some(previous) =
            idempotency::claim(&mut tx, SCHEMA, METHOD, &request.request_id, &request).await?
        {
            return Ok(previous);
        }
        let row: JobRow = sqlx::query_as(
            "INSERT INTO renewals.forecast_jobs (job_id, request, state) VALUES ($1, $2, 1) \
             RETURNING job_id, state, total_rows, done_rows, error, created_at, finished_at",
        )
        .bind(Uuid::now_v7())
        .bind(forecast.encode_to_vec())
        .fetch_one(&mut *tx)
        .await?;
        let response = pb::StartForecastJobResponse {
            job: Some(row.into_proto()),
        };
        idempotency::complete(&mut tx, SCHEMA, METHOD, &request.request_id, &response).await?;
        tx.commit().await?;
        self.jobs_wakeup.notify_one();
        Ok(response)
    }

    pub(crate) async fn get_forecast_job(
        &self,
        request: pb::GetForecastJobRequest,
    ) -> ApiResult<pb::GetForecastJobResponse> {
        let job_id = parse_job_id(&request.job_id)?;
        let row: Option<JobRow> = sqlx::query_as(
            "SELECT job_id, state, total_rows, done_rows, error, created_at, finished_at \
             FROM renewals.forecast_jobs WHERE job_id = $1",
        )
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?;
        let row = row.ok_or_else(|| ApiError::NotFound(format!("forecast job {job_id}")))?;
        Ok(pb::GetForecastJobResponse {
            job: Some(row.into_proto()),
        })
    }

    pub(crate) async fn list_forecast_job_rows(
        &self,
        request: pb::ListForecastJobRowsRequest,
    ) -> ApiResult<pb::ListForecastJobRowsResponse> {
        let job_id = parse_job_id(&request.job_id)?;
        let size = match request.page_size {
            0 => 1000,
            n if (1..=5000).contains(&n) => n as u32,
            _ => return Err(ApiError::invalid("page_size", "must be between 0 and 5000")),
        };
        let after: Option<i64> = paging::decode_token(&request.page_token)?;
        let state: Option<i16> =
            sqlx::query_scalar("SELECT state FROM renewals.forecast_jobs WHERE job_id = $1")
                .bind(job_id)
                .fetch_optional(&self.pool)
                .await?;
        match state {
            None => return Err(ApiError::NotFound(format!("forecast job {job_id}"))),
            Some(JOB_SUCCEEDED) => {}
            Some(_) => {
                return Err(ApiError::FailedPrecondition(format!(
                    "forecast job {job_id} has not succeeded"
                )));
            }
        }
        let mut rows: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT seq, row FROM renewals.forecast_job_rows WHERE job_id = $1 AND seq > $2 \
             ORDER BY seq LIMIT $3",
        )
        .bind(job_id)
        .bind(after.unwrap_or(-1))
        .bind(i64::from(size) + 1)
        .fetch_all(&self.pool)
        .await?;
        let next_page_token = paging::finish_page(&mut rows, size, |(seq, _)| *seq);
        let rows = rows
            .into_iter()
            .map(|(_, bytes)| pb::RenewalOpportunity::decode(bytes.as_slice()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("a stored forecast row does not decode: {e}"))?;
        Ok(pb::ListForecastJobRowsResponse {
            rows,
            next_page_token,
        })
    }
}

/// Walks every opportunity of `scope` in chunks, handing each to `emit`;
/// stops early (returning false) when `emit` returns false.
async fn walk<F, Fut>(
    pool: &PgPool,
    scope: &ForecastScope,
    context: &Context,
    mut emit: F,
) -> ApiResult<bool>
where
    F: FnMut(Vec<pb::RenewalOpportunity>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut pages = Pages::new(pool, &scope.filter);
    while let Some(rows) = pages.next().await? {
        let mut chunk = Vec::with_capacity(scope.chunk);
        for row in &rows {
            let resolved = views::resolve(context, row);
            chunk.push(views::to_proto(context, row, &resolved));
            if chunk.len() == scope.chunk && !emit(std::mem::take(&mut chunk)).await {
                return Ok(false);
            }
        }
        if !chunk.is_empty() && !emit(chunk).await {
            return Ok(false);
        }
    }
    Ok(true)
}

const JOB_QUEUED: i16 = 1;
const JOB_RUNNING: i16 = 2;
const JOB_SUCCEEDED: i16 = 3;
const JOB_FAILED: i16 = 4;

#[derive(sqlx::FromRow)]
struct JobRow {
    job_id: Uuid,
    state: i16,
    total_rows: i64,
    done_rows: i64,
    error: String,
    created_at: chrono::DateTime<Utc>,
    finished_at: Option<chrono::DateTime<Utc>>,
}

impl JobRow {
    fn into_proto(self) -> pb::ForecastJob {
        pb::ForecastJob {
            job_id: self.job_id.to_string(),
            state: i32::from(self.state),
            total_rows: self.total_rows,
            done_rows: self.done_rows,
            error: self.error,
            create_time: Some(time::to_timestamp(self.created_at)),
            finish_time: self.finished_at.map(time::to_timestamp),
        }
    }
}

fn parse_job_id(text: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(text).map_err(|_| ApiError::invalid("job_id", "must be a job id"))
}

/// Runs forecast jobs. A job is claimed with a session advisory lock held
/// for as long as it runs, so a job whose runner died (its session gone) is
/// picked up again and restarted from scratch by any replica.
pub async fn run_jobs(
    pool: PgPool,
    wakeup: std::sync::Arc<tokio::sync::Notify>,
    cancel: CancellationToken,
) {
    tenure_platform::service::poll(
        &cancel,
        std::time::Duration::from_secs(5),
        Some(&wakeup),
        "running forecast jobs",
        || run_one_job(&pool, &cancel),
    )
    .await;
}

async fn run_one_job(pool: &PgPool, cancel: &CancellationToken) -> anyhow::Result<bool> {
    let any: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM renewals.forecast_jobs WHERE state IN ($1, $2))",
    )
    .bind(JOB_QUEUED)
    .bind(JOB_RUNNING)
    .fetch_one(pool)
    .await?;
    if !any {
        return Ok(false);
    }
    // A connection of its own, outside the pool: however this ends, the
    // session (and with it the claim) ends with it.
    let mut claim = pool.acquire().await?.detach();
    let waiting: Vec<(Uuid, Vec<u8>)> = sqlx::query_as(
        "SELECT job_id, request FROM renewals.forecast_jobs WHERE state IN ($1, $2) \
         ORDER BY created_at LIMIT 20",
    )
    .bind(JOB_QUEUED)
    .bind(JOB_RUNNING)
    .fetch_all(&mut claim)
    .await?;
    let mut job = None;
    for (job_id, request) in waiting {
        let locked: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1::text, 0))")
                .bind(job_id.to_string())
                .fetch_one(&mut claim)
                .await?;
        if !locked {
            continue;
        }
        // Another replica may have finished it since the list was read.
        let still_waiting: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM renewals.forecast_jobs WHERE job_id = $1 AND state IN ($2, $3))",
        )
        .bind(job_id)
        .bind(JOB_QUEUED)
        .bind(JOB_RUNNING)
        .fetch_one(&mut claim)
        .await?;
        if still_waiting {
            job = Some((job_id, request));
            break;
        }
        sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1::text, 0))")
            .bind(job_id.to_string())
            .execute(&mut claim)
            .await?;
    }
    let Some((job_id, request)) = job else {
        return Ok(false);
    };
    let finished = run_claimed_job(pool, cancel, job_id, &request).await;
    // Closing the session releases the claim, whatever happened.
    sqlx::Connection::close(claim).await?;
    finished?;
    Ok(true)
}

/// Runs a job this session holds the claim of, and records how it ended.
async fn run_claimed_job(
    pool: &PgPool,
    cancel: &CancellationToken,
    job_id: Uuid,
    request: &[u8],
) -> anyhow::Result<()> {
    let outcome = async {
        let request = pb::StreamForecastRequest::decode(request)?;
        let scope = forecast_scope(&request, "").map_err(|e| anyhow::anyhow!("{e}"))?;
        let context = context(pool, scope.as_of).await?;
        let total = pipeline::count_opportunities(pool, &scope.filter).await?;
        sqlx::query("DELETE FROM renewals.forecast_job_rows WHERE job_id = $1")
            .bind(job_id)
            .execute(pool)
            .await?;
        sqlx::query(
            "UPDATE renewals.forecast_jobs SET state = $2, total_rows = $3, done_rows = 0 WHERE job_id = $1",
        )
        .bind(job_id)
        .bind(JOB_RUNNING)
        .bind(total)
        .execute(pool)
        .await?;
        let mut seq = 0_i64;
        let failure: std::sync::Mutex<Option<sqlx::Error>> = std::sync::Mutex::new(None);
        let finished = walk(pool, &scope, &context, |rows| {
            let first = seq;
            seq += rows.len() as i64;
            let pool = pool.clone();
            let cancelled = cancel.is_cancelled();
            let failed = &failure;
            async move {
                if cancelled {
                    return false;
                }
                let seqs: Vec<i64> = (first..first + rows.len() as i64).collect();
                let bytes: Vec<Vec<u8>> = rows.iter().map(|r| r.encode_to_vec()).collect();
                let written = async {
                    let mut tx = pool.begin().await?;
                    sqlx::query(
                        "INSERT INTO renewals.forecast_job_rows (job_id, seq, row) \
                         SELECT $1, * FROM UNNEST($2::int8[], $3::bytea[])",
                    )
                    .bind(job_id)
                    .bind(&seqs)
                    .bind(&bytes)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query("UPDATE renewals.forecast_jobs SET done_rows = $2 WHERE job_id = $1")
                        .bind(job_id)
                        .bind(first + rows.len() as i64)
                        .execute(&mut *tx)
                        .await?;
                    tx.commit().await
                }
                .await;
                match written {
                    Ok(()) => true,
                    Err(error) => {
                        if let Ok(mut slot) = failed.lock() {
                            *slot = Some(error);
                        }
                        false
                    }
                }
            }
        })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(error) = failure.into_inner().ok().flatten() {
            return Err(error.into());
        }
        Ok::<bool, anyhow::Error>(finished)
    }
    .await;
    match outcome {
        Ok(true) => {
            sqlx::query(
                "UPDATE renewals.forecast_jobs SET state = $2, finished_at = now() WHERE job_id = $1",
            )
            .bind(job_id)
            .bind(JOB_SUCCEEDED)
            .execute(pool)
            .await?;
        }
        // Stopping: the job stays running and is picked up again.
        Ok(false) => {}
        Err(error) => {
            sqlx::query(
                "UPDATE renewals.forecast_jobs SET state = $2, error = $3, finished_at = now() WHERE job_id = $1",
            )
            .bind(job_id)
            .bind(JOB_FAILED)
            .bind(format!("{error:#}"))
            .execute(pool)
            .await?;
        }
    }
    Ok(())
}

/// Deletes finished jobs older than `keep` with their rows.
pub async fn expire_jobs(pool: &PgPool, keep: chrono::Duration) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM renewals.forecast_jobs WHERE state IN (3, 4) AND finished_at < now() - $1::interval",
    )
    .bind(keep)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
