//! `WatchHealthChanges`: the change log of scores, followed live.

use sqlx::{PgConnection, PgPool};
use tenure_platform::wake::Wakeups;
use tenure_platform::{ApiError, ApiResult, time};
use tenure_proto::health::v1 as pb;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

/// Appends the score changes of a batch to the change log: each account
/// whose score or band moved from `before` (or that had none).
pub async fn record_many(
    tx: &mut PgConnection,
    changes: &[(
        &pb::AccountHealth,
        Option<crate::changes::Before>,
        &crate::store::AccountFacts,
    )],
) -> sqlx::Result<()> {
    let moved: Vec<_> = changes
        .iter()
        .filter(|(health, before, _)| {
            before.is_none_or(|b| {
                (b.score - health.score).abs() >= 1e-9 || b.band as i32 != health.band
            })
        })
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = moved.iter().map(|(h, _, _)| h.account_id.clone()).collect();
    let scores: Vec<f64> = moved.iter().map(|(h, _, _)| h.score).collect();
    let bands: Vec<i16> = moved.iter().map(|(h, _, _)| h.band as i16).collect();
    let previous: Vec<Option<f64>> = moved.iter().map(|(_, b, _)| b.map(|b| b.score)).collect();
    let previous_bands: Vec<i16> = moved
        .iter()
        .map(|(_, b, _)| b.map_or(0, |b| b.band as i16))
        .collect();
    let segments: Vec<String> = moved.iter().map(|(_, _, f)| f.segment.clone()).collect();
    let owners: Vec<String> = moved.iter().map(|(_, _, f)| f.owner.clone()).collect();
    sqlx::query(
        "INSERT INTO health.change_log (account_id, score, band, previous_score, previous_band, segment, owner) \
         SELECT account_id, score, band, previous_score, previous_band, segment, owner \
         FROM UNNEST($1::text[], $2::float8[], $3::int2[], $4::float8[], $5::int2[], $6::text[], $7::text[]) \
           WITH ORDINALITY AS i(account_id, score, band, previous_score, previous_band, segment, owner, n) \
         ORDER BY n",
    )
    .bind(&ids)
    .bind(&scores)
    .bind(&bands)
    .bind(&previous)
    .bind(&previous_bands)
    .bind(&segments)
    .bind(&owners)
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

/// The wake-up channel of the change log (migration `wake`).
pub const CHANGES_CHANNEL: &str = "changes";

/// Streams changes after the request's cursor, reading the log again when
/// a change is logged (or after the idle time).
pub async fn watch(
    pool: PgPool,
    wakeups: &Wakeups,
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
    let logged = wakeups.channel(CHANGES_CHANNEL);
    let idle = wakeups.fallback;
    tokio::spawn(async move {
        loop {
            // Made before the read, so a change logged during it is not missed.
            let notified = logged.notified();
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
                    () = notified => continue,
                    () = tokio::time::sleep(idle) => continue,
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
