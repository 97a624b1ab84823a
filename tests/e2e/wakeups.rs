//! Background loops are woken by Postgres when work is written, not by a
//! poll: in stacks whose loops would look on their own only once an hour
//! (`IDLE_POLL=1h`), a change still reaches health's watchers and a
//! playbook's step in seconds, and does again after the listening
//! connections were cut.

use std::time::Duration;

use tenure_proto::health::v1 as hpb;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::playbooks::v1 as pb;
use tenure_tests::{TestStack, eventually};

use crate::fixtures::{days_ago, ts};

async fn stack_that_never_polls() -> TestStack {
    TestStack::spawn_with(|options| {
        options.settings.insert("IDLE_POLL".into(), "1h".into());
    })
    .await
}

fn funding(id: &str, account: &str) -> ipb::BatchUpsertExternalSignalsRequest {
    ipb::BatchUpsertExternalSignalsRequest {
        request_id: String::new(),
        signals: vec![ipb::ExternalSignal {
            signal_id: id.into(),
            account_id: account.into(),
            kind: ipb::ExternalSignalKind::FundingRound as i32,
            occurred_at: ts(days_ago(1)),
            source: "news".into(),
            properties: None,
            updated_at: ts(days_ago(1)),
        }],
    }
}

/// The open tasks of `account`, once there are `count`.
async fn tasks(app: &TestStack, account: &str, count: usize) -> Option<Vec<pb::Task>> {
    let playbooks = app.playbooks.clone();
    eventually(Duration::from_secs(15), || {
        let mut playbooks = playbooks.clone();
        let account = account.to_owned();
        async move {
            let tasks = playbooks
                .list_tasks(pb::ListTasksRequest {
                    account_id: account,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .tasks;
            (tasks.len() >= count).then_some(tasks)
        }
    })
    .await
}

async fn funding_playbook(app: &mut TestStack) {
    let definition = serde_json::json!({
        "name": "funding", "title": "Funding round",
        "trigger": {"type": "external_signal", "signal_type": "funding_round"},
        "steps": [
            {"id": "call", "type": "task", "title": "Congratulate {{account.name}}", "next": "done"},
            {"id": "done", "type": "end"}
        ]
    });
    app.playbook(&definition).await;
}

#[tokio::test]
async fn a_change_reaches_watchers_and_playbooks_without_a_poll() {
    let mut app = stack_that_never_polls().await;
    let mut watcher = app
        .health
        .watch_health_changes(hpb::WatchHealthChangesRequest::default())
        .await
        .unwrap()
        .into_inner();
    // The account is scored by the rescore its creation queues (ingestion's
    // outbox → health's queue → its change log → the watcher).
    crate::scoring::p1_scorecard(&mut app).await;
    app.ingestion
        .batch_upsert_accounts(ipb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![crate::ingestion::account("acme", "Acme", 400)],
        })
        .await
        .unwrap();
    let change = tokio::time::timeout(Duration::from_secs(15), watcher.message())
        .await
        .expect("a change within seconds, not an hour")
        .unwrap()
        .unwrap();
    assert_eq!(change.account_id, "acme");

    // A signal starts a playbook: ingestion's outbox → playbooks' trigger
    // events → the matcher → a step → an executor.
    funding_playbook(&mut app).await;
    app.ingestion
        .batch_upsert_external_signals(funding("s-1", "acme"))
        .await
        .unwrap();
    let tasks = tasks(&app, "acme", 1)
        .await
        .expect("the playbook's task within seconds, not an hour");
    assert_eq!(tasks[0].title, "Congratulate Acme");
}

#[tokio::test]
async fn loops_are_woken_again_after_the_listening_connections_were_cut() {
    let mut app = stack_that_never_polls().await;
    crate::scoring::one_account_scored_on_p1(&mut app, "acme", "Acme").await;
    funding_playbook(&mut app).await;
    let db = app.db().await;
    // Every service listens once the stack is up.
    let listening = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
        )
        .fetch_one(&db)
        .await
        .unwrap()
    };
    let all_four = eventually(Duration::from_secs(10), || async {
        (listening().await == 4).then_some(())
    })
    .await;
    assert!(
        all_four.is_some(),
        "each service holds one listening connection"
    );
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%'",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    assert_eq!(cut.len(), 4);
    let back = eventually(Duration::from_secs(15), || async {
        (listening().await == 4).then_some(())
    })
    .await;
    assert!(back.is_some(), "every service listens again");
    app.ingestion
        .batch_upsert_external_signals(funding("s-2", "acme"))
        .await
        .unwrap();
    assert!(
        tasks(&app, "acme", 1).await.is_some(),
        "a change after the cut still reaches the playbook in seconds"
    );
}
