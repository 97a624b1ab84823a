//! Forecast jobs: started, read and paged over the API, run durably by a
//! background runner that claims one job at a time.

use super::*;

impl RenewalsApi {
    pub(crate) async fn start_forecast_job(
        &self,
        request: pb::StartForecastJobRequest,
    ) -> ApiResult<pb::StartForecastJobResponse> {
        const METHOD: &str = "StartForecastJob";
        let Some(forecast) = request.forecast.as_ref() else {
            return Err(ApiError::invalid("forecast", "is required"));
        };
        forecast_scope(forecast, "forecast.")?;
        let response = idempotency::once(&self.pool, SCHEMA, METHOD, &request, async |tx| {
            let row: JobRow = sqlx::query_as(
                "INSERT INTO renewals.forecast_jobs (job_id, request, state) VALUES ($1, $2, 1) \
                 RETURNING job_id, state, total_rows, done_rows, error, created_at, finished_at",
            )
            .bind(Uuid::now_v7())
            .bind(forecast.encode_to_vec())
            .fetch_one(&mut *tx)
            .await?;
            Ok(pb::StartForecastJobResponse {
                job: Some(row.into_proto()),
            })
        })
        .await?;
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

/// The wake-up channel of started forecast jobs (migration `wake`).
pub const JOBS_CHANNEL: &str = "jobs";

/// Runs forecast jobs. A job is claimed with a session advisory lock held
/// for as long as it runs, so a job whose runner died (its session gone) is
/// picked up again and restarted from scratch by any replica.
pub async fn run_jobs(
    pool: PgPool,
    wakeup: std::sync::Arc<tokio::sync::Notify>,
    idle: std::time::Duration,
    cancel: CancellationToken,
) {
    tenure_platform::service::poll(
        &cancel,
        idle,
        Some(&wakeup),
        "running forecast jobs",
        || async { run_one_job(&pool, &cancel).await.map(Into::into) },
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
        // A job reads history once for all its rows.
        let context = context(pool, &history::HistoryCache::default(), scope.as_of).await?;
        let mut feed = Feed::read(pool, &scope.filter);
        let total = feed.total().await.unwrap_or_default();
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
        let finished = walk(feed, &scope, &context, |rows| {
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
