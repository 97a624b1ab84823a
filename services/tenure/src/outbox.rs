//! `tenure outbox`: the dead letters of every service's outbox, and sending
//! them again once their receiver is mended.

use std::fmt::Write as _;

use tenure_platform::outbox::admin;

use crate::stack::SERVICES;

fn schema_of(service: &str) -> anyhow::Result<&'static str> {
    SERVICES
        .iter()
        .find(|s| s.name == service)
        .map(|s| s.schema)
        .ok_or_else(|| {
            let known: Vec<&str> = SERVICES.iter().map(|s| s.name).collect();
            anyhow::anyhow!("no service {service:?} (known: {})", known.join(", "))
        })
}

/// A table of every service's dead letters.
pub async fn dead_letters(pool: &sqlx::PgPool) -> anyhow::Result<String> {
    let mut out = format!(
        "{:<10} {:>8} {:<30} {:>8} {:<20} ERROR\n",
        "SERVICE", "ID", "TOPIC", "ATTEMPTS", "DEAD SINCE"
    );
    for spec in SERVICES {
        for letter in admin::dead_letters(pool, spec.schema).await? {
            let _ = writeln!(
                out,
                "{:<10} {:>8} {:<30} {:>8} {:<20} {}",
                spec.name,
                letter.id,
                letter.topic,
                letter.attempts,
                letter.dead_at.format("%Y-%m-%dT%H:%M:%SZ"),
                letter.last_error.unwrap_or_default()
            );
        }
    }
    Ok(out)
}

/// Sends `service`'s dead letter `id` (every one when `None`) again.
pub async fn retry(pool: &sqlx::PgPool, service: &str, id: Option<i64>) -> anyhow::Result<u64> {
    Ok(admin::retry(pool, schema_of(service)?, id).await?)
}
