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

/// Opens a pool. Its sessions run without JIT compilation whatever the
/// server's default: Tenure's queries are many and each short, and
/// compiling one cost more than running it (a batch of account signals
/// took 197 ms with JIT, 30 ms without, on the generated base).
pub async fn connect(options: PgConnectOptions, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = options.options([("jit", "off")]);
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
    [
        (
            1,
            "platform outbox and idempotency keys",
            include_str!("platform.sql"),
        ),
        (
            2,
            "outbox leases and dead letters",
            include_str!("platform_2.sql"),
        ),
        (3, "wake-ups on new work", include_str!("platform_3.sql")),
    ]
    .into_iter()
    .map(|(version, name, sql)| {
        Migration::new(
            version,
            name.into(),
            MigrationType::Simple,
            AssertSqlSafe(sql.replace("{schema}", schema)).into_sql_str(),
            false,
        )
    })
    .collect()
}

/// The role a service serves as: reads and writes the tables of its own
/// schema, and nothing else (it cannot create, alter or drop them).
pub fn service_role(schema: &str) -> String {
    format!("tenure_{schema}")
}

/// The role that owns a service's schema and runs its migrations.
pub fn owner_role(schema: &str) -> String {
    format!("tenure_{schema}_owner")
}

/// How a provisioned service connects.
#[derive(Clone, Debug)]
pub struct ServiceLogins {
    /// As the schema's owner, for migrations.
    pub owner: PgConnectOptions,
    /// As the runtime role, for serving.
    pub runtime: PgConnectOptions,
    /// The runtime role's password (the owner's when they are one).
    pub runtime_password: Option<crate::auth::Secret>,
}

/// Whether a Postgres server is this machine's (loopback or a Unix socket).
fn local_server(options: &PgConnectOptions) -> bool {
    let host = options.get_host();
    host.starts_with('/')
        || host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The secret the roles' passwords derive from: `TENURE_ROLE_SECRET`, or
/// a public default that only a Postgres on this machine may use.
fn role_secret(given: Option<String>, admin: &PgConnectOptions) -> anyhow::Result<String> {
    match given {
        Some(secret) if !secret.is_empty() => Ok(secret),
        _ if local_server(admin) => Ok("tenure-local".to_owned()),
        _ => anyhow::bail!(
            "TENURE_ROLE_SECRET is not set: the service roles on {} would get passwords \
             derived from a public default; set it to a long random value",
            admin.get_host()
        ),
    }
}

/// Prepares a service's two roles and its schema using an administrative
/// connection (the stack's own cluster, or a `DATABASE_URL` allowed to
/// create roles): the owner, which owns the schema and runs migrations, and
/// the runtime role, which may only read and write its tables. Both log in
/// to this database only (PUBLIC keeps no CONNECT or TEMPORARY on it), find
/// their own schema first on their search path, and have passwords derived
/// from `TENURE_ROLE_SECRET` and the role name, sent to Postgres only as
/// SCRAM verifiers so that no statement Postgres logs holds a password.
/// Where the administrative user may not create roles, the service connects
/// as that user for both; an operator then grants as the README describes.
pub async fn provision_service(
    admin: &PgConnectOptions,
    schema: &str,
) -> anyhow::Result<ServiceLogins> {
    let secret = role_secret(std::env::var("TENURE_ROLE_SECRET").ok(), admin)?;
    let (owner, runtime) = (owner_role(schema), service_role(schema));
    let mut conn = PgConnection::connect_with(admin)
        .await
        .context("connecting as administrator")?;
    // Only a superuser may change what is logged; others' statements hold
    // verifiers, not passwords, anyway.
    let _ = sqlx::raw_sql("SET log_statement = 'none'")
        .execute(&mut conn)
        .await;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut conn)
        .await?;
    let mut statements = Vec::new();
    for role in [&owner, &runtime] {
        let verifier = scram_verifier(&derived_password(&secret, role));
        // Roles belong to the whole cluster, where other databases may be
        // provisioning the same ones at this moment: each is made and set
        // once, and concurrent creators race on the catalog's unique
        // index, where either error means "exists".
        statements.push(format!(
            "DO $$ BEGIN \
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
                 CREATE ROLE {role} LOGIN PASSWORD '{verifier}'; \
                 ALTER ROLE {role} SET search_path = {schema}; \
               END IF; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
        ));
    }
    statements.extend([
        format!("REVOKE CONNECT, TEMPORARY ON DATABASE \"{database}\" FROM PUBLIC"),
        format!("GRANT CONNECT ON DATABASE \"{database}\" TO {owner}, {runtime}"),
        format!("CREATE SCHEMA IF NOT EXISTS {schema} AUTHORIZATION {owner}"),
        // A schema from before the two roles: its objects move to the owner.
        format!("ALTER SCHEMA {schema} OWNER TO {owner}"),
        format!("REASSIGN OWNED BY {runtime} TO {owner}"),
        format!("REVOKE ALL ON SCHEMA {schema} FROM PUBLIC"),
        format!("GRANT USAGE ON SCHEMA {schema} TO {runtime}"),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} \
             GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {runtime}"
        ),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA {schema} \
             GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO {runtime}"
        ),
    ]);
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
                return Ok(ServiceLogins {
                    owner: admin.clone(),
                    runtime: admin.clone(),
                    runtime_password: None,
                });
            }
            // The statement may hold a verifier: say which step failed, not what it said.
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "provisioning the roles of {schema}: {}",
                    e.as_database_error()
                        .map_or_else(|| e.to_string(), |d| d.message().to_owned())
                ));
            }
        }
    }
    conn.close().await.ok();
    let login = |role: &str| {
        admin
            .clone()
            .username(role)
            .password(&derived_password(&secret, role))
    };
    Ok(ServiceLogins {
        owner: login(&owner),
        runtime: login(&runtime),
        runtime_password: Some(crate::auth::Secret::new(derived_password(
            &secret, &runtime,
        ))),
    })
}

fn derived_password(secret: &str, role: &str) -> String {
    use sha2::Digest as _;
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

/// The SCRAM-SHA-256 verifier Postgres stores for `password` (RFC 5802 and
/// 7677, as `\password` in psql computes it), so that the password itself
/// never reaches the server in a statement.
fn scram_verifier(password: &str) -> String {
    use base64::Engine as _;
    use hmac::{Hmac, Mac as _};
    use sha2::{Digest as _, Sha256};
    const ITERATIONS: u32 = 4096;
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt: [u8; 16] = rand::random();
    let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), &salt, ITERATIONS);
    let key = |name: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(&salted).expect("any key length");
        mac.update(name);
        mac.finalize().into_bytes()
    };
    let stored = Sha256::digest(key(b"Client Key"));
    let server = key(b"Server Key");
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        b64.encode(salt),
        b64.encode(stored),
        b64.encode(server)
    )
}

/// Grants the runtime role what it needs on the tables its owner's
/// migrations made (default privileges cover the tables made later).
async fn grant_runtime(owner: &PgPool, schema: &str, runtime: &str) -> anyhow::Result<()> {
    for statement in [
        format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {runtime}"
        ),
        format!("GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {schema} TO {runtime}"),
        format!("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {schema} TO {runtime}"),
    ] {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(owner)
            .await
            .with_context(|| format!("granting {runtime} its rights on {schema}"))?;
    }
    Ok(())
}

/// Migrates a service's schema connected as its owner, then grants the
/// runtime role `runtime` (when it is another role) what serving needs.
pub async fn migrate_as_owner(
    owner: PgConnectOptions,
    runtime: &str,
    schema: &'static str,
    migrations: &Migrator,
) -> anyhow::Result<()> {
    let pool = connect(owner, 1).await?;
    migrate(&pool, schema, migrations).await?;
    let owner_user: String = sqlx::query_scalar("SELECT current_user")
        .fetch_one(&pool)
        .await?;
    if owner_user != runtime {
        grant_runtime(&pool, schema, runtime).await?;
    }
    pool.close().await;
    Ok(())
}

/// Provisions the service's roles, migrates its schema as the owner and
/// returns a pool connected as the runtime role.
pub async fn prepare_service_pool(
    admin: &PgConnectOptions,
    schema: &'static str,
    migrations: &Migrator,
    max_connections: u32,
) -> anyhow::Result<PgPool> {
    let logins = provision_service(admin, schema).await?;
    migrate_as_owner(
        logins.owner,
        logins.runtime.get_username(),
        schema,
        migrations,
    )
    .await?;
    connect(logins.runtime, max_connections).await
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_default_role_secret_serves_only_a_local_server() {
        let at = |url: &str| options(url).unwrap();
        for local in [
            "postgres://u@127.0.0.1/db",
            "postgres://u@localhost/db",
            "postgres://u@[::1]/db",
        ] {
            assert_eq!(
                role_secret(None, &at(local)).unwrap(),
                "tenure-local",
                "{local}"
            );
        }
        let remote = at("postgres://u@db.internal.example/db");
        let refused = role_secret(None, &remote).unwrap_err().to_string();
        assert!(refused.contains("TENURE_ROLE_SECRET"), "{refused}");
        assert!(role_secret(Some(String::new()), &remote).is_err());
        assert_eq!(role_secret(Some("long".into()), &remote).unwrap(), "long");
    }

    #[test]
    fn scram_verifiers_have_postgres_shape_and_never_the_password() {
        let verifier = scram_verifier("hunter2-password");
        assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");
        assert!(!verifier.contains("hunter2"));
        assert_ne!(verifier, scram_verifier("hunter2-password"), "salted");
    }
}
