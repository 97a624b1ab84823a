//! Each service's database role: its own tables only, read and written but
//! never altered, no temporary tables, and no CONNECT for anyone else.

use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use tenure_tests::TestStack;

/// The SQLSTATE `statement` fails with, or `None` when it succeeds.
async fn refusal(conn: &mut PgConnection, statement: &str) -> Option<String> {
    match sqlx::raw_sql(AssertSqlSafe(statement.to_owned()))
        .execute(&mut *conn)
        .await
    {
        Ok(_) => None,
        Err(error) => {
            Some(tenure_platform::db::sqlstate(&error).unwrap_or_else(|| error.to_string()))
        }
    }
}

const DENIED: Option<&str> = Some("42501");

#[tokio::test]
async fn each_service_role_reaches_only_its_own_tables_and_cannot_change_them() {
    let app = TestStack::spawn().await;
    let admin = tenure_platform::db::options(&app.stack.database_url).unwrap();
    let schemas: Vec<&str> = tenure::stack::SERVICES.iter().map(|s| s.schema).collect();
    for schema in &schemas {
        let logins = tenure_platform::db::provision_service(&admin, schema)
            .await
            .unwrap();
        assert_ne!(
            logins.runtime.get_username(),
            logins.owner.get_username(),
            "serving and migrating are two roles"
        );
        let mut conn = PgConnection::connect_with(&logins.runtime).await.unwrap();
        let search_path: String = sqlx::query_scalar("SHOW search_path")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(&search_path, schema);

        // Its own tables: read and written, never altered or dropped.
        let own = format!("{schema}.idempotency_keys");
        assert_eq!(
            refusal(&mut conn, &format!("SELECT count(*) FROM {own}")).await,
            None
        );
        assert_eq!(
            refusal(&mut conn, &format!("DELETE FROM {own} WHERE false")).await,
            None
        );
        for change in [
            format!("DROP TABLE {own}"),
            format!("ALTER TABLE {own} ADD COLUMN x int"),
            format!("TRUNCATE {own}"),
            format!("CREATE TABLE {schema}.extra (i int)"),
            "CREATE TEMP TABLE scratch (i int)".to_owned(),
            "CREATE TABLE public.extra (i int)".to_owned(),
        ] {
            assert_eq!(
                refusal(&mut conn, &change).await.as_deref(),
                DENIED,
                "{schema}: {change}"
            );
        }
        // Nobody else's tables, neither read nor written.
        for other in schemas.iter().filter(|o| *o != schema) {
            for statement in [
                format!("SELECT count(*) FROM {other}.outbox"),
                format!("DELETE FROM {other}.idempotency_keys"),
            ] {
                assert_eq!(
                    refusal(&mut conn, &statement).await.as_deref(),
                    DENIED,
                    "{schema} -> {statement}"
                );
            }
        }
        // Nor, on a cluster of Tenure's own, the cluster's other databases.
        if std::env::var_os("DATABASE_URL").is_none() {
            let elsewhere = logins.runtime.clone().database("postgres");
            let refused = PgConnection::connect_with(&elsewhere)
                .await
                .expect_err("no CONNECT on postgres");
            assert_eq!(tenure_platform::db::sqlstate(&refused).as_deref(), DENIED);
        }
        conn.close().await.ok();
    }

    // A role of nobody's, as any other user of the server would be: PUBLIC
    // keeps no CONNECT on Tenure's database.
    let mut root = PgConnection::connect_with(&admin).await.unwrap();
    sqlx::raw_sql("DROP ROLE IF EXISTS tenure_stranger; CREATE ROLE tenure_stranger LOGIN PASSWORD 'stranger-password'")
        .execute(&mut root)
        .await
        .unwrap();
    let stranger = admin
        .clone()
        .username("tenure_stranger")
        .password("stranger-password");
    let refused = PgConnection::connect_with(&stranger)
        .await
        .expect_err("no CONNECT");
    assert_eq!(
        tenure_platform::db::sqlstate(&refused).as_deref(),
        DENIED,
        "{refused}"
    );
    app.stop().await;
}
