//! Bounded growth: idempotency keys, the event dedup window, the health
//! change log and matched trigger events keep rows for a stated time.

use std::time::Duration;

use tenure_tests::{TestStack, eventually};

async fn count(db: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn old_rows_go_and_recent_ones_stay() {
    let app = TestStack::spawn_with(|options| {
        let settings = &mut options.settings;
        settings.insert("RETENTION_INTERVAL".into(), "100ms".into());
        settings.insert("IDEMPOTENCY_RETENTION".into(), "2d".into());
        settings.insert("EVENT_DEDUP_WINDOW".into(), "30d".into());
        settings.insert("HEALTH_CHANGE_LOG_RETENTION".into(), "30d".into());
        settings.insert("PLAYBOOKS_TRIGGER_EVENT_RETENTION".into(), "30d".into());
    })
    .await;
    let db = app.db().await;
    for schema in ["ingestion", "health", "renewals", "playbooks"] {
        for (request_id, age_days) in [("old", 3), ("recent", 1)] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO {schema}.idempotency_keys (method, request_id, fingerprint, created_at) \
                 VALUES ('Test', $1, '\\x00', now() - $2 * interval '1 day')"
            )))
            .bind(request_id)
            .bind(age_days)
            .execute(&db)
            .await
            .unwrap();
        }
    }
    sqlx::raw_sql(
        "INSERT INTO ingestion.event_ids (message_id, seen_at) VALUES \
           ('old-event', now() - interval '31 days'), ('recent-event', now() - interval '29 days'); \
         INSERT INTO health.change_log (account_id, score, band, segment, owner, change_time) VALUES \
           ('old', 50, 2, '', '', now() - interval '31 days'), ('recent', 50, 2, '', '', now()); \
         INSERT INTO playbooks.trigger_events (source, kind, account_id, payload, occurred_at, received_at, matched_at) VALUES \
           ('test', 'old-matched', 'a', '{}', now() - interval '40 days', now() - interval '40 days', now() - interval '40 days'), \
           ('test', 'recent-matched', 'a', '{}', now(), now(), now())",
    )
    .execute(&db)
    .await
    .unwrap();

    let gone = eventually(Duration::from_secs(10), || async {
        let mut old = 0;
        for schema in ["ingestion", "health", "renewals", "playbooks"] {
            old += count(
                &db,
                &format!("SELECT count(*) FROM {schema}.idempotency_keys WHERE request_id = 'old'"),
            )
            .await;
        }
        old += count(
            &db,
            "SELECT count(*) FROM ingestion.event_ids WHERE message_id = 'old-event'",
        )
        .await;
        old += count(
            &db,
            "SELECT count(*) FROM health.change_log WHERE account_id = 'old'",
        )
        .await;
        old += count(
            &db,
            "SELECT count(*) FROM playbooks.trigger_events WHERE kind = 'old-matched'",
        )
        .await;
        (old == 0).then_some(())
    })
    .await;
    assert!(gone.is_some(), "old rows are deleted");
    for schema in ["ingestion", "health", "renewals", "playbooks"] {
        let kept = count(
            &db,
            &format!("SELECT count(*) FROM {schema}.idempotency_keys WHERE request_id = 'recent'"),
        )
        .await;
        assert_eq!(kept, 1, "{schema} keeps a recent key");
    }
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM ingestion.event_ids WHERE message_id = 'recent-event'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM health.change_log WHERE account_id = 'recent'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM playbooks.trigger_events WHERE kind = 'recent-matched'"
        )
        .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn a_retention_shorter_than_its_floor_refuses_to_start() {
    let database = tenure_platform::pg::testing::fresh_database()
        .await
        .unwrap();
    let mut options = tenure::stack::StackOptions::for_tests(Some(database));
    options
        .settings
        .insert("IDEMPOTENCY_RETENTION".into(), "1h".into());
    let refused = tenure::stack::Stack::start(options)
        .await
        .err()
        .expect("no start with idempotency keys kept an hour");
    assert!(
        format!("{refused:#}").contains("IDEMPOTENCY_RETENTION"),
        "{refused:#}"
    );
}
