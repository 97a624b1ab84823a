//! The outbox from ingestion to health: nothing lost while health is down,
//! every change applied once in effect.

use std::time::Duration;

use tenure_proto::health::v1::{
    GetAccountHealthRequest, NotifyAccountsChangedRequest, NotifyAccountsChangedResponse,
};
use tenure_proto::ingestion::v1::BatchUpsertAccountsRequest;
use tenure_tests::{TestStack, eventually};

use crate::ingestion::account;

async fn pending(db: &sqlx::PgPool) -> i64 {
    tenure_platform::outbox::pending_count(db, "ingestion")
        .await
        .unwrap()
}

#[tokio::test]
async fn changes_made_while_health_is_down_arrive_once_it_is_back() {
    let mut app = TestStack::spawn().await;
    let db = app.db().await;
    let health_addr = app.stack.stop_service("health").await.unwrap();

    for (request_id, accounts) in [
        (
            "down-1",
            vec![
                account("a", "A", 1),
                account("b", "B", 1),
                account("c", "C", 1),
            ],
        ),
        (
            "down-2",
            vec![account("c", "C renamed", 0), account("d", "D", 1)],
        ),
    ] {
        let request = BatchUpsertAccountsRequest {
            request_id: request_id.into(),
            accounts,
        };
        app.ingestion
            .batch_upsert_accounts(request)
            .await
            .expect("ingestion accepts while health is down");
    }
    // The dispatcher keeps trying and failing while health is away.
    let failed = eventually(Duration::from_secs(10), || async {
        let attempts: i64 =
            sqlx::query_scalar("SELECT coalesce(min(attempts), 0)::bigint FROM ingestion.outbox")
                .fetch_one(&db)
                .await
                .unwrap();
        (attempts >= 1).then_some(())
    })
    .await;
    assert!(
        failed.is_some(),
        "deliveries were attempted while health was down"
    );
    assert_eq!(pending(&db).await, 2, "nothing is lost");

    app.stack
        .restart_service("health", health_addr)
        .await
        .unwrap();
    let drained = eventually(Duration::from_secs(30), || async {
        (pending(&db).await == 0).then_some(())
    })
    .await;
    assert!(drained.is_some(), "the outbox drains once health is back");

    let queued: Vec<String> =
        sqlx::query_scalar("SELECT account_id FROM health.rescore_queue ORDER BY account_id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(queued, ["a", "b", "c", "d"]);
    let applied: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM health.idempotency_keys WHERE method = 'NotifyAccountsChanged'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(applied, 2, "each message took effect once");

    // A redelivery of the same message (as after a crash before the
    // dispatcher recorded success) gets the first answer and changes nothing.
    let (message_id, payload): (String, Vec<u8>) = sqlx::query_as(
        "SELECT message_id::text, payload FROM ingestion.outbox ORDER BY id LIMIT 1",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let first_answer: Vec<u8> = sqlx::query_scalar(
        "SELECT response FROM health.idempotency_keys WHERE method = 'NotifyAccountsChanged' AND request_id = $1",
    )
    .bind(&message_id)
    .fetch_one(&db)
    .await
    .unwrap();
    let first_answer: NotifyAccountsChangedResponse =
        prost::Message::decode(first_answer.as_slice()).unwrap();
    let mut notice: NotifyAccountsChangedRequest =
        prost::Message::decode(payload.as_slice()).unwrap();
    notice.request_id = message_id;
    let replay = app
        .internal_health()
        .notify_accounts_changed(notice)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay, first_answer, "the redelivery gets the first answer");
    let queued_after: i64 = sqlx::query_scalar("SELECT count(*) FROM health.rescore_queue")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(queued_after, 4);

    let answer = app
        .health
        .get_account_health(GetAccountHealthRequest {
            account_id: "c".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(answer.rescore_pending);
    assert_eq!(answer.account_name, "C renamed");
    app.stop().await;
}

#[tokio::test]
async fn a_message_no_receiver_takes_is_set_aside_and_never_blocks_the_rest() {
    let metrics = tenure_tests::metrics_addr();
    let mut app = TestStack::spawn_with(|options| {
        let settings = &mut options.settings;
        settings.insert("OUTBOX_MAX_ATTEMPTS".into(), "3".into());
        settings.insert("OUTBOX_FIRST_RETRY".into(), "20ms".into());
        settings.insert("OUTBOX_MAX_RETRY".into(), "50ms".into());
    })
    .await;
    let db = app.db().await;
    // A poison message: health's topic, a payload no receiver can read.
    let poison: i64 = sqlx::query_scalar(
        "INSERT INTO ingestion.outbox (message_id, topic, payload) \
         VALUES (gen_random_uuid(), 'health.accounts_changed', '\\xff'::bytea) RETURNING id",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    // Ordinary work goes through meanwhile, on the same topic and others.
    app.ingestion
        .batch_upsert_accounts(BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![account("a", "A", 1)],
        })
        .await
        .unwrap();
    let dead = eventually(Duration::from_secs(10), || async {
        let letters = tenure::outbox::dead_letters(&db).await.unwrap();
        letters.contains(&format!(" {poison} ")).then_some(letters)
    })
    .await
    .expect("the poison message is set aside");
    assert!(dead.contains("health.accounts_changed"), "{dead}");
    let (attempts, error): (i32, String) =
        sqlx::query_as("SELECT attempts, last_error FROM ingestion.outbox WHERE id = $1")
            .bind(poison)
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(attempts, 3, "every attempt made, then no more");
    assert!(error.contains("decode"), "{error}");
    let delivered = eventually(Duration::from_secs(10), || async {
        (pending(&db).await == 0).then_some(())
    })
    .await;
    assert!(delivered.is_some(), "the rest was delivered");
    let text = tenure_tests::http_get(metrics, "/metrics").await;
    assert!(
        text.lines()
            .any(|l| l.starts_with("outbox_dead_lettered_total{")
                && l.contains("health.accounts_changed")),
        "dead letters are counted"
    );

    // Retried by hand, it is attempted again from the first attempt.
    assert_eq!(
        tenure::outbox::retry(&db, "ingestion", Some(poison))
            .await
            .unwrap(),
        1
    );
    let retried = eventually(Duration::from_secs(10), || async {
        let (attempts, dead): (i32, bool) = sqlx::query_as(
            "SELECT attempts, dead_at IS NOT NULL FROM ingestion.outbox WHERE id = $1",
        )
        .bind(poison)
        .fetch_one(&db)
        .await
        .unwrap();
        (dead && attempts == 3).then_some(())
    })
    .await;
    assert!(
        retried.is_some(),
        "tried three times again, set aside again"
    );
    assert!(tenure::outbox::retry(&db, "nowhere", None).await.is_err());
    app.stop().await;
}
