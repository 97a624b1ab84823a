//! The rescore queue: a notice naming an account ingestion does not know
//! is set aside with its reason and never blocks the others.

use super::*;

#[tokio::test]
async fn an_unknown_account_is_set_aside_and_never_blocks_the_queue() {
    let mut app = TestStack::spawn().await;
    one_account_scored_on_p1(&mut app, "known", "Known").await;
    app.internal_health()
        .notify_accounts_changed(hpb::NotifyAccountsChangedRequest {
            request_id: "notice-with-a-ghost".into(),
            account_ids: vec!["ghost".into(), "known".into()],
            earliest_event_time: None,
        })
        .await
        .unwrap();
    let db = app.db().await;
    let drained = eventually(Duration::from_secs(15), || async {
        let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM health.rescore_queue")
            .fetch_one(&db)
            .await
            .ok()?;
        let scored: i64 =
            sqlx::query_scalar("SELECT count(*) FROM health.scores WHERE account_id = 'known'")
                .fetch_one(&db)
                .await
                .ok()?;
        (queued == 0 && scored == 1).then_some(())
    })
    .await;
    assert!(
        drained.is_some(),
        "the queue drained and the known account was scored"
    );
    let set_aside: Vec<(String, String)> =
        sqlx::query_as("SELECT account_id, reason FROM health.rescore_set_aside")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(set_aside.len(), 1, "{set_aside:?}");
    assert_eq!(set_aside[0].0, "ghost");
    assert!(set_aside[0].1.contains("not found"), "{set_aside:?}");
    app.stop().await;
}
