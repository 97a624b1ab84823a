//! A contact erased in ingestion: every trace of the person here (email
//! recipients, values in trigger events and runs' facts, words of tasks and
//! step errors) is replaced by the pseudonym ingestion chose. The notice
//! names the person only by hashes of their identifiers, so each candidate
//! value is hashed and compared.

use std::collections::HashSet;

use serde_json::Value;
use sha2::{Digest as _, Sha256};
use sqlx::PgConnection;
use tenure_platform::{ApiResult, Violations, idempotency};
use tenure_proto::playbooks::v1 as pb;
use uuid::Uuid;

use crate::SCHEMA;
use crate::grpc::PlaybooksApi;

fn hash(text: &str) -> String {
    format!("{:x}", Sha256::digest(text.as_bytes()))
}

/// Characters an identifier (an id or an email address) is made of.
fn in_token(c: char) -> bool {
    c.is_alphanumeric() || "@._-+".contains(c)
}

/// `text` with every token whose hash is in `hashes` replaced; `None` when
/// nothing matched.
fn scrub_text(text: &str, hashes: &HashSet<String>, pseudonym: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut changed = false;
    let mut rest = text;
    while !rest.is_empty() {
        let start = rest.find(in_token).unwrap_or(rest.len());
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c: char| !in_token(c)).unwrap_or(rest.len());
        let token = &rest[..end];
        // An email address ends a sentence as often as not: try it without
        // the full stop too.
        let trimmed = token.trim_end_matches('.');
        if hashes.contains(&hash(token)) {
            out.push_str(pseudonym);
            changed = true;
        } else if trimmed != token && hashes.contains(&hash(trimmed)) {
            out.push_str(pseudonym);
            out.push_str(&token[trimmed.len()..]);
            changed = true;
        } else {
            out.push_str(token);
        }
        rest = &rest[end..];
    }
    changed.then_some(out)
}

/// `value` with every string scrubbed; `None` when nothing matched.
fn scrub_json(value: &Value, hashes: &HashSet<String>, pseudonym: &str) -> Option<Value> {
    match value {
        Value::String(text) => scrub_text(text, hashes, pseudonym).map(Value::String),
        Value::Array(items) => {
            let scrubbed: Vec<Option<Value>> = items
                .iter()
                .map(|i| scrub_json(i, hashes, pseudonym))
                .collect();
            scrubbed.iter().any(Option::is_some).then(|| {
                Value::Array(
                    scrubbed
                        .into_iter()
                        .zip(items)
                        .map(|(s, i)| s.unwrap_or_else(|| i.clone()))
                        .collect(),
                )
            })
        }
        Value::Object(map) => {
            let mut changed = false;
            let mut out = map.clone();
            for (key, item) in map {
                if let Some(s) = scrub_json(item, hashes, pseudonym) {
                    out.insert(key.clone(), s);
                    changed = true;
                }
            }
            changed.then_some(Value::Object(out))
        }
        _ => None,
    }
}

/// Scrubs what playbooks keeps of the person; returns the rows rewritten.
async fn scrub(
    tx: &mut PgConnection,
    account_id: &str,
    hashes: &HashSet<String>,
    pseudonym: &str,
) -> sqlx::Result<i64> {
    let mut rows = 0;
    let emails: Vec<(String, Uuid, i32, String)> = sqlx::query_as(
        "SELECT message_id, run_id, seq, recipient FROM playbooks.emails WHERE account_id = $1",
    )
    .bind(account_id)
    .fetch_all(&mut *tx)
    .await?;
    for (message_id, run_id, seq, recipient) in emails {
        if hashes.contains(&hash(&recipient)) {
            sqlx::query(
                "UPDATE playbooks.emails SET recipient = $2, message_id = $3 WHERE message_id = $1",
            )
            .bind(&message_id)
            .bind(format!("{pseudonym}@erased.invalid"))
            .bind(format!("<{run_id}.{seq}.{pseudonym}@tenure>"))
            .execute(&mut *tx)
            .await?;
            rows += 1;
        }
    }
    for (table, key, column) in [
        ("trigger_events", "id::text", "payload"),
        ("runs", "run_id::text", "facts"),
    ] {
        let found: Vec<(String, Value)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {key}, {column} FROM playbooks.{table} WHERE account_id = $1"
        )))
        .bind(account_id)
        .fetch_all(&mut *tx)
        .await?;
        for (id, value) in found {
            if let Some(scrubbed) = scrub_json(&value, hashes, pseudonym) {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "UPDATE playbooks.{table} SET {column} = $2 WHERE {key} = $1"
                )))
                .bind(&id)
                .bind(scrubbed)
                .execute(&mut *tx)
                .await?;
                rows += 1;
            }
        }
    }
    let tasks: Vec<(Uuid, String, String, String)> = sqlx::query_as(
        "SELECT task_id, title, body, outcome FROM playbooks.tasks WHERE account_id = $1",
    )
    .bind(account_id)
    .fetch_all(&mut *tx)
    .await?;
    for (task_id, title, body, outcome) in tasks {
        let texts = [&title, &body, &outcome].map(|t| scrub_text(t, hashes, pseudonym));
        if texts.iter().any(Option::is_some) {
            let [title2, body2, outcome2] = texts;
            sqlx::query(
                "UPDATE playbooks.tasks SET title = $2, body = $3, outcome = $4 WHERE task_id = $1",
            )
            .bind(task_id)
            .bind(title2.unwrap_or(title))
            .bind(body2.unwrap_or(body))
            .bind(outcome2.unwrap_or(outcome))
            .execute(&mut *tx)
            .await?;
            rows += 1;
        }
    }
    let steps: Vec<(Uuid, i32, String, String)> = sqlx::query_as(
        "SELECT s.run_id, s.seq, s.result, s.last_error FROM playbooks.steps s \
         JOIN playbooks.runs r USING (run_id) WHERE r.account_id = $1",
    )
    .bind(account_id)
    .fetch_all(&mut *tx)
    .await?;
    for (run_id, seq, result, error) in steps {
        let (result2, error2) = (
            scrub_text(&result, hashes, pseudonym),
            scrub_text(&error, hashes, pseudonym),
        );
        if result2.is_some() || error2.is_some() {
            sqlx::query(
                "UPDATE playbooks.steps SET result = $3, last_error = $4 WHERE run_id = $1 AND seq = $2",
            )
            .bind(run_id)
            .bind(seq)
            .bind(result2.unwrap_or(result))
            .bind(error2.unwrap_or(error))
            .execute(&mut *tx)
            .await?;
            rows += 1;
        }
    }
    Ok(rows)
}

impl PlaybooksApi {
    pub(crate) async fn notify_contact_erased(
        &self,
        request: pb::NotifyContactErasedRequest,
    ) -> ApiResult<pb::NotifyContactErasedResponse> {
        const METHOD: &str = "NotifyContactErased";
        let mut violations = Violations::default();
        violations.require_text(&request.account_id, "account_id", 128);
        violations.require_text(&request.pseudonym, "pseudonym", 128);
        for (i, h) in request.identifier_sha256.iter().enumerate() {
            if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
                violations.add(format!("identifier_sha256[{i}]"), "must be 64 hex digits");
            }
        }
        violations.into_result()?;
        idempotency::once(&self.pool, SCHEMA, METHOD, &request, async |tx| {
            let hashes: HashSet<String> = request
                .identifier_sha256
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect();
            let rows_changed =
                scrub(&mut *tx, &request.account_id, &hashes, &request.pseudonym).await?;
            Ok(pb::NotifyContactErasedResponse { rows_changed })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_identifiers_are_replaced() {
        let hashes: HashSet<String> = ["c-9", "ada@acme.test"].iter().map(|s| hash(s)).collect();
        assert_eq!(
            scrub_text("Call c-9 or write to ada@acme.test.", &hashes, "erased-1").as_deref(),
            Some("Call erased-1 or write to erased-1.")
        );
        assert_eq!(scrub_text("Call c-90 and c-9x", &hashes, "erased-1"), None);
        let facts =
            serde_json::json!({"trigger": {"contact_id": "c-9", "n": 3}, "list": ["a", "c-9"]});
        let scrubbed = scrub_json(&facts, &hashes, "erased-1").unwrap();
        assert_eq!(
            scrubbed,
            serde_json::json!({"trigger": {"contact_id": "erased-1", "n": 3}, "list": ["a", "erased-1"]})
        );
    }
}
