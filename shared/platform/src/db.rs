//! Database access shared by every service: pools, the service's own schema
//! and role, and migrations.
//!
//! Each service owns one schema (`ingestion`, `health`, …). Its migrations
//! live in its crate and run at start-up together with the platform's own
//! tables (outbox, idempotency keys) in that schema; the migrations table is
//! `<schema>._sqlx_migrations`. SQL always names tables schema-qualified.

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool, SqlSafeStr as _};

/// Opens a pool.
pub async fn connect(options: PgConnectOptions, max_connections: u32) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // A broken connection fails its query and is replaced; pinging on
        // every checkout would double the round trips of small queries.
        .test_before_acquire(false)
        .connect_with(options.clone())
        .await
        .with_context(|| {
            format!(
                "connecting to Postgres at {}:{} as {}",
                options.get_host(),
                options.get_port(),
                options.get_username()
            )
        })
}

/// Parses a Postgres URL.
pub fn options(url: &str) -> anyhow::Result<PgConnectOptions> {
    PgConnectOptions::from_str(url).context("DATABASE_URL is not a valid Postgres URL")
}

/// Creates `schema` if needed and applies the platform's and the service's
/// migrations to it. Concurrent replicas serialise on sqlx's advisory lock.
pub async fn migrate(
    pool: &PgPool,
    schema: &'static str,
    service: &Migrator,
) -> anyhow::Result<()> {
    let mut migrations = platform_migrations(schema);
    migrations.extend(service.iter().cloned());
    let mut migrator = Migrator::with_migrations(migrations);
    migrator.dangerous_set_table_name(format!("{schema}._sqlx_migrations"));
    // CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
    // schema exists, which a provisioned service role does not have.
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(schema)
            .fetch_one(pool)
            .await?;
    if !exists {
        migrator.create_schema(schema);
    }
    migrator
        .run(pool)
        .await
        .with_context(|| format!("migrating schema {schema}"))
}

/// The tables every service keeps in its own schema. Versions 1–999 belong
/// to the platform; service migrations use timestamps.
fn platform_migrations(schema: &str) -> Vec<Migration> {
    let sql = include_str!("platform.sql").replace("{schema}", schema);
    vec![Migration::new(
        1,
        "platform outbox and idempotency keys".into(),
        MigrationType::Simple,
        AssertSqlSafe(sql).into_sql_str(),
        false,
    )]
}

/// The database role a service connects as: rights on its own schema only.
pub fn service_role(schema: &str) -> String {
    format!("tenure_{schema}")
}

/// Prepares a service's role and schema using an administrative connection
/// (the stack's own cluster, or a `DATABASE_URL` allowed to create roles)
/// and returns the options to connect as that role.
///
/// The role's password is derived from `TENURE_ROLE_SECRET` and the role
/// name, so it works under password authentication as well as trust, and
/// concurrent provisioning never rewrites it. Where the administrative user
/// may not create roles, the service connects as that user instead, in its
/// own schema; an operator then grants as described in the README.
pub async fn provision_service(
    admin: &PgConnectOptions,
    schema: &str,
) -> anyhow::Result<PgConnectOptions> {
    let role = service_role(schema);
    let password = derived_password(&role);
    let mut conn = PgConnection::connect_with(admin)
        .await
        .context("connecting as administrator")?;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await?;
    let statements = [
        // Concurrent creators race on the catalog's unique index: either error means "exists".
        format!(
            "DO $$ BEGIN CREATE ROLE {role} LOGIN PASSWORD '{password}'; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ),
        format!("GRANT CONNECT ON DATABASE \"{database}\" TO {role}"),
        format!("CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {role}"),
    ];
    for statement in statements {
        match sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut conn)
            .await
        {
            Ok(_) => {}
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501") => {
                tracing::warn!(
                    schema,
                    "no privilege to create service roles; connecting as the administrative user"
                );
                return Ok(admin.clone());
            }
            Err(e) => return Err(e).with_context(|| format!("provisioning role {role}")),
        }
    }
    conn.close().await.ok();
    Ok(admin.clone().username(&role).password(&password))
}

fn derived_password(role: &str) -> String {
    use sha2::Digest as _;
    let secret = std::env::var("TENURE_ROLE_SECRET").unwrap_or_else(|_| "tenure-local".to_owned());
    let mut hasher = sha2::Sha256::new();
    hasher.update(secret.as_bytes());
    hasher.update([0]);
    hasher.update(role.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Provisions the service's role, connects as it and migrates its schema.
pub async fn prepare_service_pool(
    admin: &PgConnectOptions,
    schema: &'static str,
    migrations: &Migrator,
    max_connections: u32,
) -> anyhow::Result<PgPool> {
    let options = provision_service(admin, schema).await?;
    let pool = connect(options, max_connections).await?;
    migrate(&pool, schema, migrations).await?;
    Ok(pool)
}

/// The SQLSTATE of a database error, for matching by code rather than text.
pub fn sqlstate(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(e) => e.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// SQLSTATE codes Tenure reacts to.
pub mod codes {
    pub const UNIQUE_VIOLATION: &str = "23505";
    pub const FOREIGN_KEY_VIOLATION: &str = "23503";
    pub const CHECK_VIOLATION: &str = "23514";
    pub const INSUFFICIENT_PRIVILEGE: &str = "42501";
}
