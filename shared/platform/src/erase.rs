//! Erasing an account from a service's schema: every row of every table
//! with an `account_id` column is deleted, a `parent_account_id` naming it
//! is cleared, and delivered outbox rows that named it are deleted. The
//! tables are found in the catalog, so a table added later is covered
//! without being listed here.

use sqlx::{AssertSqlSafe, PgConnection};

/// Erases `account_id` from `schema` inside the caller's transaction, after
/// running `first` (statements for rows that reach the account only through
/// another table, with the account id as `$1`). Returns the rows changed.
pub async fn account(
    tx: &mut PgConnection,
    schema: &str,
    account_id: &str,
    first: &[&str],
) -> sqlx::Result<i64> {
    let mut rows = 0;
    for statement in first {
        rows += sqlx::query(AssertSqlSafe(statement.to_string()))
            .bind(account_id)
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64;
    }
    let columns: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text, NOT a.attnotnull \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND NOT c.relispartition \
           AND a.attname IN ('account_id', 'parent_account_id') AND NOT a.attisdropped \
         ORDER BY 1, 2",
    )
    .bind(schema)
    .fetch_all(&mut *tx)
    .await?;
    for (table, column, nullable) in columns {
        let statement = if column == "account_id" {
            format!("DELETE FROM {schema}.\"{table}\" WHERE account_id = $1")
        } else {
            let cleared = if nullable { "NULL" } else { "''" };
            format!(
                "UPDATE {schema}.\"{table}\" SET parent_account_id = {cleared} WHERE parent_account_id = $1"
            )
        };
        rows += sqlx::query(AssertSqlSafe(statement))
            .bind(account_id)
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64;
    }
    rows += sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {schema}.outbox WHERE delivered_at IS NOT NULL \
         AND position(convert_to($1, 'UTF8') IN payload) > 0"
    )))
    .bind(account_id)
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64;
    Ok(rows)
}

/// A `NotifyAccountErased` call: `account_id` erased from `schema` once per
/// `request_id`; `respond` builds the answer from the rows changed.
pub async fn notify_account_erased<Req, Resp>(
    pool: &sqlx::PgPool,
    schema: &str,
    request: &Req,
    account_id: &str,
    first: &[&str],
    respond: impl FnOnce(i64) -> Resp,
) -> crate::ApiResult<Resp>
where
    Req: prost::Message + tenure_proto::Idempotent,
    Resp: prost::Message + Default,
{
    const METHOD: &str = "NotifyAccountErased";
    let mut violations = crate::Violations::default();
    violations.require_text(account_id, "account_id", 128);
    violations.into_result()?;
    crate::idempotency::once(pool, schema, METHOD, request, async |tx| {
        Ok(respond(account(tx, schema, account_id, first).await?))
    })
    .await
}
