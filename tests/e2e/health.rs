//! Health's first API: change notices and the account view it builds by
//! asking ingestion.

use tenure_proto::health::v1::{GetAccountHealthRequest, NotifyAccountsChangedRequest};
use tenure_tests::{TestStack, violated_fields};

#[tokio::test]
async fn notices_mark_accounts_once_per_request() {
    let app = TestStack::spawn().await;
    let notice = |request_id: &str, ids: &[&str]| NotifyAccountsChangedRequest {
        request_id: request_id.to_owned(),
        account_ids: ids.iter().map(|s| s.to_string()).collect(),
        earliest_event_time: None,
    };
    let first = app
        .internal_health()
        .notify_accounts_changed(notice("n-1", &["x", "y"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.marked_count, 2);
    let overlap = app
        .internal_health()
        .notify_accounts_changed(notice("n-2", &["y", "z", "z"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(overlap.marked_count, 1, "only z is new");
    let replay = app
        .internal_health()
        .notify_accounts_changed(notice("n-1", &["x", "y"]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(replay, first);

    let status = app
        .internal_health()
        .notify_accounts_changed(notice("n-3", &["ok", ""]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["account_ids[1]"]);
    app.stop().await;
}

#[tokio::test]
async fn account_health_needs_a_known_account() {
    let mut app = TestStack::spawn().await;
    let status = app
        .health
        .get_account_health(GetAccountHealthRequest {
            account_id: "ghost".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let status = app
        .health
        .get_account_health(GetAccountHealthRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["account_id"]);
    app.stop().await;
}

/// `tenure recompute` (the nightly job's command) rescores every account.
#[tokio::test]
async fn the_recompute_command_rescores_every_account() {
    let mut app = TestStack::spawn().await;
    let accounts = ["r1", "r2", "r3"]
        .iter()
        .map(|id| crate::ingestion::account(id, id, 10))
        .collect();
    app.ingestion
        .batch_upsert_accounts(tenure_proto::ingestion::v1::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
        })
        .await
        .unwrap();
    crate::scoring::p1_scorecard(&mut app).await;
    let scored = tenure::rescore::recompute_all(&app.stack.peers.health_url, &app.operator())
        .await
        .unwrap();
    assert_eq!(scored, 3);
    app.stop().await;
}
