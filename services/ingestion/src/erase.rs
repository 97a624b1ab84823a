//! Erasing a person. A contact's versions are deleted; where a record must
//! stay for the account's sake (a sponsor's departure, a survey score, the
//! account's usage), the person's id, email addresses and own words are
//! replaced by a pseudonym that names no one. Playbooks hears of it through
//! the outbox by hashes of the identifiers, never the identifiers.

use sha2::{Digest as _, Sha256};
use sqlx::PgConnection;
use tenure_proto::playbooks::v1::NotifyContactErasedRequest;

use crate::SCHEMA;
use crate::notify::{TOPIC_ACCOUNT_ERASED, TOPIC_CONTACT_ERASED};

/// What an erasure did.
pub struct Erased {
    pub pseudonym: String,
    pub rows_changed: i64,
}

/// Hex SHA-256 of an identifier, as the erasure notice carries it.
pub fn identifier_hash(identifier: &str) -> String {
    format!("{:x}", Sha256::digest(identifier.as_bytes()))
}

/// Deletes the delivered outbox rows whose payload holds any of `names`.
async fn forget_delivered(tx: &mut PgConnection, names: &[String]) -> sqlx::Result<i64> {
    Ok(sqlx::query(
        "DELETE FROM ingestion.outbox WHERE delivered_at IS NOT NULL \
         AND EXISTS (SELECT 1 FROM unnest($1::text[]) AS n WHERE position(convert_to(n, 'UTF8') IN payload) > 0)",
    )
    .bind(names)
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64)
}

/// Erases `contact_id` inside the caller's transaction; `None` when ingestion
/// holds no contact of that id.
pub async fn contact(tx: &mut PgConnection, contact_id: &str) -> sqlx::Result<Option<Erased>> {
    let versions: Vec<(Option<String>, serde_json::Value)> = sqlx::query_as(
        "SELECT account_id, data FROM ingestion.record_versions WHERE kind = 'contact' AND record_id = $1 \
         UNION ALL \
         SELECT account_id, data FROM ingestion.record_heads WHERE kind = 'contact' AND record_id = $1",
    )
    .bind(contact_id)
    .fetch_all(&mut *tx)
    .await?;
    if versions.is_empty() {
        return Ok(None);
    }
    let mut accounts: Vec<String> = versions.iter().filter_map(|(a, _)| a.clone()).collect();
    accounts.sort();
    accounts.dedup();
    let mut identifiers = vec![contact_id.to_owned()];
    for (_, data) in &versions {
        if let Some(email) = data.get("email").and_then(|e| e.as_str()) {
            if !email.is_empty() && !identifiers.iter().any(|i| i == email) {
                identifiers.push(email.to_owned());
            }
        }
    }
    let pseudonym = format!(
        "erased-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    );
    let mut rows: i64 = 0;
    sqlx::query("DELETE FROM ingestion.record_moves WHERE kind = 'contact' AND record_id = $1")
        .bind(contact_id)
        .execute(&mut *tx)
        .await?;
    for table in ["record_versions", "record_heads"] {
        rows += sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM ingestion.{table} WHERE kind = 'contact' AND record_id = $1"
        )))
        .bind(contact_id)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
        // What the person said goes with their name: a survey's comment,
        // an advocacy activity's note.
        for (kind, said) in [("survey", "comment"), ("advocacy", "note")] {
            rows += sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE ingestion.{table} \
                 SET data = data || jsonb_build_object('contact_id', $2::text, '{said}', '') \
                 WHERE kind = '{kind}' AND account_id = ANY($3) AND data->>'contact_id' = $1"
            )))
            .bind(contact_id)
            .bind(&pseudonym)
            .bind(&accounts)
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64;
        }
    }
    rows += sqlx::query(
        "UPDATE ingestion.relationship_changes SET contact_id = $2 WHERE contact_id = $1",
    )
    .bind(contact_id)
    .bind(&pseudonym)
    .execute(&mut *tx)
    .await?
    .rows_affected() as i64;
    for table in ["usage_events", "usage_daily_users"] {
        rows += sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE ingestion.{table} SET user_id = $1 WHERE account_id = ANY($2) AND user_id = ANY($3)"
        )))
        .bind(&pseudonym)
        .bind(&accounts)
        .bind(&identifiers)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
    }
    // Delivered notices that named the person (a champion's change) are
    // kept a while for diagnosis; not these.
    rows += forget_delivered(tx, &identifiers).await?;
    let notice = NotifyContactErasedRequest {
        request_id: String::new(),
        account_id: accounts.first().cloned().unwrap_or_default(),
        identifier_sha256: identifiers.iter().map(|i| identifier_hash(i)).collect(),
        pseudonym: pseudonym.clone(),
    };
    tenure_platform::outbox::enqueue(tx, SCHEMA, TOPIC_CONTACT_ERASED, &notice).await?;
    Ok(Some(Erased {
        pseudonym,
        rows_changed: rows,
    }))
}

/// Erases `account_id` from ingestion inside the caller's transaction and
/// tells the other services; `None` when ingestion holds no such account.
pub async fn account(tx: &mut PgConnection, account_id: &str) -> sqlx::Result<Option<Erased>> {
    let exists: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM ingestion.accounts WHERE account_id = $1)",
    )
    .bind(account_id)
    .fetch_one(&mut *tx)
    .await?;
    if !exists {
        return Ok(None);
    }
    // Notices about its records (subscriptions changed) name the records,
    // not the account.
    let records: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT record_id FROM ingestion.record_versions WHERE account_id = $1",
    )
    .bind(account_id)
    .fetch_all(&mut *tx)
    .await?;
    let mut rows = tenure_platform::erase::account(tx, SCHEMA, account_id, &[]).await?;
    rows += forget_delivered(tx, &records).await?;
    let notice = tenure_proto::ingestion::v1::EraseAccountRequest {
        request_id: String::new(),
        account_id: account_id.to_owned(),
    };
    for topic in TOPIC_ACCOUNT_ERASED {
        tenure_platform::outbox::enqueue(tx, SCHEMA, topic, &notice).await?;
    }
    Ok(Some(Erased {
        pseudonym: String::new(),
        rows_changed: rows,
    }))
}
