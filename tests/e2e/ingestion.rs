//! Ingestion's account API.

use chrono::{Duration, Utc};
use tenure_platform::time::to_timestamp;
use tenure_proto::ingestion::v1::{
    Account, BatchUpsertAccountsRequest, GetAccountRequest, LifecycleStage, ListAccountsRequest,
};
use tenure_tests::{TestStack, violated_fields};

/// An account last changed `age_days` ago at its source.
pub(crate) fn account(id: &str, name: &str, age_days: i64) -> Account {
    Account {
        account_id: id.to_owned(),
        name: name.to_owned(),
        segment: "enterprise".to_owned(),
        industry: "software".to_owned(),
        owner: "dana".to_owned(),
        parent_account_id: String::new(),
        lifecycle_stage: LifecycleStage::Adopting as i32,
        updated_at: Some(to_timestamp(Utc::now() - Duration::days(age_days))),
        attributes: Default::default(),
    }
}

fn batch(request_id: &str, accounts: Vec<Account>) -> BatchUpsertAccountsRequest {
    BatchUpsertAccountsRequest {
        request_id: request_id.to_owned(),
        accounts,
    }
}

async fn get(app: &TestStack, id: &str) -> Result<Account, tonic::Status> {
    Ok(app
        .ingestion
        .clone()
        .get_account(GetAccountRequest {
            account_id: id.to_owned(),
        })
        .await?
        .into_inner()
        .account
        .expect("account in answer"))
}

#[tokio::test]
async fn an_older_update_never_overwrites_a_newer_one() {
    let mut app = TestStack::spawn().await;
    let first = app
        .ingestion
        .batch_upsert_accounts(batch("", vec![account("acme", "Acme v2", 1)]))
        .await
        .unwrap();
    assert_eq!(first.into_inner().summary.unwrap().applied_count, 1);

    // A slower source delivers an older state afterwards.
    let stale = app
        .ingestion
        .batch_upsert_accounts(batch("", vec![account("acme", "Acme v1", 5)]))
        .await
        .unwrap();
    let stale = stale.into_inner().summary.unwrap();
    assert_eq!((stale.applied_count, stale.stale_count), (0, 1));
    assert_eq!(get(&app, "acme").await.unwrap().name, "Acme v2");

    // Within one batch every version is applied, oldest first, wherever it
    // stands; one older than the stored state is stale.
    let mixed = vec![
        account("acme", "Acme v4", 0),
        account("acme", "Acme v0", 9),
        account("acme", "Acme v3", 0),
    ];
    let mixed = app
        .ingestion
        .batch_upsert_accounts(batch("", mixed))
        .await
        .unwrap()
        .into_inner()
        .summary
        .unwrap();
    assert_eq!((mixed.applied_count, mixed.stale_count), (2, 1));
    assert_eq!(get(&app, "acme").await.unwrap().name, "Acme v3");

    let db = app.db().await;
    let versions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ingestion.account_versions WHERE account_id = 'acme'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(versions, 3, "each applied change is kept as a version");
    app.stop().await;
}

#[tokio::test]
async fn a_retried_request_is_answered_once_and_applied_once() {
    let mut app = TestStack::spawn().await;
    let request = batch("retry-1", vec![account("a", "A", 2), account("b", "B", 2)]);
    let first = app
        .ingestion
        .batch_upsert_accounts(request.clone())
        .await
        .unwrap()
        .into_inner();
    let again = app
        .ingestion
        .batch_upsert_accounts(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first, again, "the retry gets the first answer");
    assert_eq!(first.summary.unwrap().applied_count, 2);

    let db = app.db().await;
    let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM ingestion.outbox")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(messages, 1, "the change is announced once");

    let mut reused = request;
    reused.accounts.pop();
    let status = app
        .ingestion
        .batch_upsert_accounts(reused)
        .await
        .expect_err("key reuse");
    assert_eq!(violated_fields(&status), ["request_id"]);
    app.stop().await;
}

#[tokio::test]
async fn lists_page_through_filtered_accounts() {
    let mut app = TestStack::spawn().await;
    let mut accounts: Vec<Account> = (0..7)
        .map(|i| account(&format!("acct-{i:02}"), &format!("Account {i}"), 1))
        .collect();
    accounts[3].segment = "smb".into();
    accounts[5].owner = "lee".into();
    app.ingestion
        .batch_upsert_accounts(batch("", accounts))
        .await
        .unwrap();

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .ingestion
            .list_accounts(ListAccountsRequest {
                page_size: 3,
                page_token: token.clone(),
                segment: "enterprise".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.accounts.len() <= 3);
        seen.extend(page.accounts.into_iter().map(|a| a.account_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        seen,
        [
            "acct-00", "acct-01", "acct-02", "acct-04", "acct-05", "acct-06"
        ]
    );

    let by_owner = app
        .ingestion
        .list_accounts(ListAccountsRequest {
            owner: "lee".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_owner.accounts.len(), 1);

    let bad = app
        .ingestion
        .list_accounts(ListAccountsRequest {
            page_token: "forged".into(),
            page_size: -1,
            ..Default::default()
        })
        .await
        .expect_err("bad paging");
    assert_eq!(violated_fields(&bad), ["page_size"]);
    app.stop().await;
}

#[tokio::test]
async fn unknown_accounts_are_not_found_and_ids_are_validated() {
    let app = TestStack::spawn().await;
    assert_eq!(
        get(&app, "nobody").await.unwrap_err().code(),
        tonic::Code::NotFound
    );
    assert_eq!(
        violated_fields(&get(&app, "").await.unwrap_err()),
        ["account_id"]
    );
    let status = app
        .ingestion
        .clone()
        .batch_upsert_accounts(batch("", vec![]))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["accounts"]);
    app.stop().await;
}

#[tokio::test]
async fn a_page_of_large_accounts_fits_what_clients_accept() {
    use tenure_proto::ingestion::v1::AttributeValue;
    use tenure_proto::ingestion::v1::attribute_value::Value;
    let app = TestStack::spawn().await;
    // 150 accounts of about 30 KB each: 4.5 MB, over the 4 MiB a gRPC
    // client accepts by default.
    let accounts: Vec<Account> = (0..150)
        .map(|i| {
            let mut big = account(&format!("big-{i:03}"), "Big", 1);
            big.attributes = (0..200)
                .map(|a| {
                    let value = AttributeValue {
                        value: Some(Value::Category(format!("{a:0>120}"))),
                    };
                    (format!("attribute_{a:03}_{:0>40}", 0), value)
                })
                .collect();
            big
        })
        .collect();
    app.ingestion
        .clone()
        .batch_upsert_accounts(batch("big", accounts))
        .await
        .unwrap();
    let mut client = app.ingestion.clone();
    let (mut seen, mut token, mut pages) = (0, String::new(), 0);
    loop {
        let page = client
            .list_accounts(ListAccountsRequest {
                page_size: 1000,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("a page within the client's limit")
            .into_inner();
        pages += 1;
        seen += page.accounts.len();
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, 150);
    assert!(pages >= 2, "the page was cut by bytes");
    app.stop().await;
}

/// Many accounts in one read: the known ones in id order (a repeated id
/// once), the unknown ones named; bad requests are refused with the field.
#[tokio::test]
async fn accounts_are_read_many_at_once() {
    let mut app = TestStack::spawn().await;
    app.plain_accounts(&["b".into(), "a".into()]).await;
    let answer = app
        .ingestion
        .batch_get_accounts(tenure_proto::ingestion::v1::BatchGetAccountsRequest {
            account_ids: vec!["b".into(), "ghost".into(), "a".into(), "b".into()],
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = answer
        .accounts
        .iter()
        .map(|a| a.account_id.as_str())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    assert_eq!(answer.missing_account_ids, ["ghost"]);
    let refused = app
        .ingestion
        .batch_get_accounts(tenure_proto::ingestion::v1::BatchGetAccountsRequest {
            account_ids: Vec::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["account_ids"]);
    app.stop().await;
}
