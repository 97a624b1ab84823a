//! Versions of playbooks: each stored definition, numbered per name.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct PlaybookVersion {
    pub name: String,
    pub version: i32,
    pub title: String,
    pub definition: String,
    pub format: i16,
    pub step_count: i32,
    pub create_time: DateTime<Utc>,
}

/// A version about to be stored; its number is assigned by [`insert_next_version`].
pub struct NewVersion<'a> {
    pub name: &'a str,
    pub title: &'a str,
    pub definition: &'a str,
    pub format: i16,
    pub step_count: i32,
}

/// Stores the next version of a playbook. Concurrent creates of the same
/// name serialise on an advisory lock, so versions stay dense.
pub async fn insert_next_version(
    tx: &mut PgConnection,
    new: &NewVersion<'_>,
) -> sqlx::Result<PlaybookVersion> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('playbooks:' || $1, 0))")
        .bind(new.name)
        .execute(&mut *tx)
        .await?;
    sqlx::query_as(
        "INSERT INTO playbooks.playbook_versions (name, version, title, definition, format, step_count) \
         SELECT $1, coalesce(max(version), 0) + 1, $2, $3, $4, $5 \
         FROM playbooks.playbook_versions WHERE name = $1 \
         RETURNING *",
    )
    .bind(new.name)
    .bind(new.title)
    .bind(new.definition)
    .bind(new.format)
    .bind(new.step_count)
    .fetch_one(&mut *tx)
    .await
}

/// The latest version of each playbook, by name, after `after`.
pub async fn list_latest(
    pool: &PgPool,
    after: Option<&str>,
    limit: i64,
) -> sqlx::Result<Vec<PlaybookVersion>> {
    sqlx::query_as(
        "SELECT DISTINCT ON (name) * FROM playbooks.playbook_versions \
         WHERE ($1::text IS NULL OR name > $1) \
         ORDER BY name, version DESC LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One stored version.
pub async fn get_version(
    db: impl sqlx::PgExecutor<'_>,
    name: &str,
    version: i32,
) -> sqlx::Result<Option<PlaybookVersion>> {
    sqlx::query_as("SELECT * FROM playbooks.playbook_versions WHERE name = $1 AND version = $2")
        .bind(name)
        .bind(version)
        .fetch_optional(db)
        .await
}

/// The latest version of a playbook.
pub async fn latest(pool: &PgPool, name: &str) -> sqlx::Result<Option<PlaybookVersion>> {
    sqlx::query_as(
        "SELECT * FROM playbooks.playbook_versions WHERE name = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(name)
    .fetch_optional(pool)
    .await
}

/// Name and latest version number of every playbook.
pub async fn latest_versions(db: impl sqlx::PgExecutor<'_>) -> sqlx::Result<Vec<(String, i32)>> {
    sqlx::query_as(
        "SELECT name, max(version) FROM playbooks.playbook_versions GROUP BY name ORDER BY name",
    )
    .fetch_all(db)
    .await
}
