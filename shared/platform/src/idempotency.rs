//! `request_id` handling for write RPCs: a retried request gets the first
//! answer back, and nothing is applied twice.
//!
//! Inside the request's transaction, [`claim`] inserts the key; a retry finds
//! it and replays the stored response, a concurrent duplicate waits on the
//! row until the first commits (or rolls back and frees the key). Reusing a
//! key for a different request is `INVALID_ARGUMENT`.

use prost::Message;
use sha2::Digest as _;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

use crate::error::{ApiError, ApiResult};

/// Longest accepted `request_id`.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// Applies a write once per its `request_id`: opens its transaction, claims
/// the key (a retry gets the first answer back and `apply` does not run),
/// runs `apply` in the transaction, stores its answer with the key and
/// commits. An empty `request_id` opts out of the key, not of the
/// transaction.
pub async fn once<Req, Resp>(
    pool: &PgPool,
    schema: &str,
    method: &str,
    request: &Req,
    apply: impl AsyncFnOnce(&mut PgConnection) -> ApiResult<Resp>,
) -> ApiResult<Resp>
where
    Req: Message + tenure_proto::Idempotent,
    Resp: Message + Default,
{
    let request_id = request.request_id();
    let mut tx = pool.begin().await?;
    if let Some(previous) = claim(&mut tx, schema, method, request_id, request).await? {
        return Ok(previous);
    }
    let response = apply(&mut tx).await?;
    complete(&mut tx, schema, method, request_id, &response).await?;
    tx.commit().await?;
    Ok(response)
}

/// Claims `request_id` for `method`. Returns the stored response when this
/// request was already applied; `None` when the caller should apply it (and
/// then call [`complete`] in the same transaction). An empty `request_id`
/// opts out of idempotency.
pub async fn claim<Req: Message, Resp: Message + Default>(
    tx: &mut PgConnection,
    schema: &str,
    method: &str,
    request_id: &str,
    request: &Req,
) -> ApiResult<Option<Resp>> {
    if request_id.is_empty() {
        return Ok(None);
    }
    if request_id.len() > MAX_REQUEST_ID_LEN {
        return Err(ApiError::invalid(
            "request_id",
            format!("must be at most {MAX_REQUEST_ID_LEN} bytes"),
        ));
    }
    let fingerprint = sha2::Sha256::digest(request.encode_to_vec()).to_vec();
    let inserted = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {schema}.idempotency_keys (method, request_id, fingerprint) \
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
    )))
    .bind(method)
    .bind(request_id)
    .bind(&fingerprint)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 1 {
        return Ok(None);
    }
    let (stored_fingerprint, response): (Vec<u8>, Option<Vec<u8>>) =
        sqlx::query_as(AssertSqlSafe(format!(
            "SELECT fingerprint, response FROM {schema}.idempotency_keys \
             WHERE method = $1 AND request_id = $2"
        )))
        .bind(method)
        .bind(request_id)
        .fetch_one(&mut *tx)
        .await?;
    if stored_fingerprint != fingerprint {
        return Err(ApiError::invalid(
            "request_id",
            "was already used for a different request",
        ));
    }
    let response = response
        .ok_or_else(|| anyhow::anyhow!("idempotency key {request_id} has no stored response"))?;
    let response = Resp::decode(response.as_slice())
        .map_err(|e| anyhow::anyhow!("stored response for {request_id} does not decode: {e}"))?;
    Ok(Some(response))
}

/// Stores the response of a claimed request, in its transaction.
pub async fn complete<Resp: Message>(
    tx: &mut PgConnection,
    schema: &str,
    method: &str,
    request_id: &str,
    response: &Resp,
) -> ApiResult<()> {
    if request_id.is_empty() {
        return Ok(());
    }
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {schema}.idempotency_keys SET response = $3 WHERE method = $1 AND request_id = $2"
    )))
    .bind(method)
    .bind(request_id)
    .bind(response.encode_to_vec())
    .execute(&mut *tx)
    .await?;
    Ok(())
}
