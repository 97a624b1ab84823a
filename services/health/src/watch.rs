//! `WatchHealthChanges`: the change log of scores, followed live.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tenure_platform::{ApiError, ApiResult, time};
use tenure_proto::health::v1 as pb;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// Records a change of `health` from `before` (nothing when unchanged).
pub async fn record(
    tx: &mut PgConnection,
    health: &pb::AccountHealth,
    before: Option<crate::changes::Before>,
    facts: &crate::store::AccountFacts,
) -> sqlx::Result<()> {
    if let Some(before) = before {
        if (before.score - health.score).abs() < 1e-9 && before.band as i32 == health.band {
            return Ok(());
        }
    }
    sqlx::query(
        "INSERT INTO health.change_log (account_id, score, band, previous_score, previous_band, segment, owner) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&health.account_id)
    .bind(health.score)
    .bind(health.band as i16)
    .bind(before.map(|b| b.score))
    .bind(before.map_or(0, |b| b.band as i16))
    .bind(&facts.segment)
    .bind(&facts.owner)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

type Row = (
    i64,
    String,
    f64,
    i16,
    Option<f64>,
    i16,
    String,
    String,
    chrono::DateTime<chrono::Utc>,
);

/// Streams changes after the request's cursor, polling the log.
pub async fn watch(
    pool: PgPool,
    request: pb::WatchHealthChangesRequest,
) -> ApiResult<ReceiverStream<Result<pb::WatchHealthChangesResponse, Status>>> {
    let mut cursor: i64 = match request.cursor.as_str() {
        "" => {
            sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM health.change_log")
                .fetch_one(&pool)
                .await?
        }
        text => text
            .parse()
            .map_err(|_| ApiError::invalid("cursor", "is not a cursor this API returned"))?,
    };
    let segment = (!request.segment.is_empty()).then_some(request.segment);
    let owner = (!request.owner.is_empty()).then_some(request.owner);
    let (sender, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let rows: Result<Vec<Row>, sqlx::Error> = sqlx::query_as(
                "SELECT seq, account_id, score, band, previous_score, previous_band, segment, owner, change_time \
                 FROM health.change_log WHERE seq > $1 AND ($2::text IS NULL OR segment = $2) \
                   AND ($3::text IS NULL OR owner = $3) ORDER BY seq LIMIT 500",
            )
            .bind(cursor)
            .bind(&segment)
            .bind(&owner)
            .fetch_all(&pool)
            .await;
            let rows = match rows {
                Ok(rows) => rows,
                Err(error) => {
                    let _ = sender.send(Err(Status::from(ApiError::from(error)))).await;
                    return;
                }
            };
            if rows.is_empty() {
                tokio::select! {
                    () = sender.closed() => return,
                    () = tokio::time::sleep(Duration::from_millis(250)) => continue,
                }
            }
            for (seq, account_id, score, band, previous_score, previous_band, segment, owner, at) in
                rows
            {
                cursor = seq;
                let event = pb::WatchHealthChangesResponse {
                    cursor: seq.to_string(),
                    account_id,
                    score,
                    band: i32::from(band),
                    previous_score,
                    previous_band: i32::from(previous_band),
                    segment,
                    owner,
                    change_time: Some(time::to_timestamp(at)),
                };
                if sender.send(Ok(event)).await.is_err() {
                    return;
                }
            }
        }
    });
    Ok(ReceiverStream::new(receiver))
}
