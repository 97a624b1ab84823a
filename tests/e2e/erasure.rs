//! Erasing a person: nothing of them remains in any schema, and the
//! account keeps what it needs under a pseudonym.

use std::time::Duration;

use tenure_platform::auth::Scope;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::playbooks::v1 as pb;
use tenure_tests::eventually;
use tenure_tests::receivers::SmtpSink;

use crate::fixtures::{contact, days_ago, event, ts};
use crate::runs::{accounts, playbook, run_in_state, stack, start};

/// Rows of every table of every service's schema whose text holds `needle`
/// (bytes columns, such as outbox payloads, read as escaped text).
async fn rows_naming(db: &sqlx::PgPool, needle: &str) -> Vec<String> {
    let columns: Vec<(String, String, String, String)> = sqlx::query_as(
        "SELECT c.table_schema, c.table_name, c.column_name, c.data_type \
         FROM information_schema.columns c JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema IN ('ingestion', 'health', 'renewals', 'playbooks') \
           AND t.table_type = 'BASE TABLE' \
         ORDER BY 1, 2, c.ordinal_position",
    )
    .fetch_all(db)
    .await
    .unwrap();
    let mut tables: Vec<((String, String), Vec<String>)> = Vec::new();
    for (schema, table, column, kind) in columns {
        let text = if kind == "bytea" {
            format!("encode(\"{column}\", 'escape')")
        } else {
            format!("\"{column}\"::text")
        };
        match tables.last_mut() {
            Some((key, texts)) if *key == (schema.clone(), table.clone()) => texts.push(text),
            _ => tables.push(((schema, table), vec![text])),
        }
    }
    let mut found = Vec::new();
    for ((schema, table), texts) in tables {
        let count: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM \"{schema}\".\"{table}\" WHERE concat_ws(' ', {}) ILIKE $1",
            texts.join(", ")
        )))
        .bind(format!("%{needle}%"))
        .fetch_one(db)
        .await
        .unwrap();
        if count > 0 {
            found.push(format!("{schema}.{table} ({count})"));
        }
    }
    found
}

#[tokio::test]
async fn an_erased_contact_leaves_nothing_behind_in_any_schema() {
    let smtp = SmtpSink::start().await;
    let mut app = stack(Some(&smtp), 3).await;
    let ids = vec!["acme".to_owned()];
    accounts(&mut app, &ids).await;
    let mut ada = contact(
        "c-ada",
        "acme",
        &[ipb::ContactRole::Champion],
        true,
        days_ago(30),
    );
    ada.email = "ada@acme.test".into();
    ada.name = "Ada Lovelace".into();
    let bob = contact(
        "c-bob",
        "acme",
        &[ipb::ContactRole::User],
        true,
        days_ago(30),
    );
    app.ingestion
        .batch_upsert_contacts(ipb::BatchUpsertContactsRequest {
            request_id: String::new(),
            contacts: vec![ada.clone(), bob],
        })
        .await
        .unwrap();
    // Ada leaves: her champion role ends (a relationship change), after
    // she answered a survey in her own words and used the product.
    ada.roles.clear();
    ada.updated_at = ts(days_ago(5));
    app.ingestion
        .batch_upsert_contacts(ipb::BatchUpsertContactsRequest {
            request_id: String::new(),
            contacts: vec![ada],
        })
        .await
        .unwrap();
    let mut survey = crate::fixtures::nps("r-ada", "acme", 4, days_ago(10));
    survey.contact_id = "c-ada".into();
    survey.comment = "Ada Lovelace here: too slow for us".into();
    app.ingestion
        .batch_upsert_survey_responses(ipb::BatchUpsertSurveyResponsesRequest {
            request_id: String::new(),
            responses: vec![survey],
        })
        .await
        .unwrap();
    // She gave a reference call, noted in her name.
    app.ingestion
        .batch_upsert_advocacy_activities(ipb::BatchUpsertAdvocacyActivitiesRequest {
            request_id: String::new(),
            activities: vec![ipb::AdvocacyActivity {
                activity_id: "ref-ada".into(),
                account_id: "acme".into(),
                kind: ipb::AdvocacyKind::Reference as i32,
                occurred_at: ts(days_ago(8)),
                contact_id: "c-ada".into(),
                note: "Ada Lovelace took the call".into(),
                updated_at: ts(days_ago(8)),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
    app.ingestion
        .ingest_events(ipb::IngestEventsRequest {
            events: vec![
                event("e-1", "acme", "ada@acme.test", "report.run", days_ago(9)),
                event("e-2", "acme", "c-ada", "report.run", days_ago(8)),
                event("e-3", "acme", "c-bob", "report.run", days_ago(8)),
            ],
        })
        .await
        .unwrap();
    // Playbooks hears of her too: an email to her, her id in a run's facts.
    playbook(
        &mut app,
        serde_json::json!({
            "name": "check-in", "title": "Check in", "trigger": {"type": "manual"},
            "steps": [
                {"id": "mail", "type": "email", "to_role": "user", "subject": "Hello", "body": "Hi", "next": "done"},
                {"id": "done", "type": "end"}
            ]
        }),
    )
    .await;
    // Before the erasure she is a user too, so she gets the email.
    let mut user_ada = contact(
        "c-ada",
        "acme",
        &[ipb::ContactRole::User],
        true,
        days_ago(4),
    );
    user_ada.email = "ada@acme.test".into();
    user_ada.name = "Ada Lovelace".into();
    app.ingestion
        .batch_upsert_contacts(ipb::BatchUpsertContactsRequest {
            request_id: String::new(),
            contacts: vec![user_ada],
        })
        .await
        .unwrap();
    let run = start(&mut app, "check-in", &ids).await.runs.remove(0);
    run_in_state(&app, &run.run_id, pb::RunState::Completed).await;
    assert!(
        smtp.mails()
            .iter()
            .any(|m| m.recipients.iter().any(|r| r.contains("ada@acme.test"))),
        "Ada was emailed"
    );
    let db = app.db().await;
    for needle in ["c-ada", "ada@acme.test", "Ada Lovelace", "too slow for us"] {
        let before = eventually(Duration::from_secs(10), || async {
            let found = rows_naming(&db, needle).await;
            (!found.is_empty()).then_some(found)
        })
        .await;
        assert!(before.is_some(), "{needle} is stored before the erasure");
    }

    let spread = rows_naming(&db, "ada@acme.test").await;
    assert!(
        spread.iter().any(|t| t.starts_with("playbooks.emails")),
        "playbooks holds her address too: {spread:?}"
    );

    // Only a caller with the erase scope may erase.
    let url = &app.stack.peers.ingestion_url;
    let channel = |credentials| tenure_platform::client::channel(url, &credentials).unwrap();
    let refused =
        IngestionServiceClient::new(channel(app.key_with(&[Scope::Ingest, Scope::Contacts])))
            .erase_contact(ipb::EraseContactRequest {
                request_id: "erase-ada".into(),
                contact_id: "c-ada".into(),
            })
            .await
            .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let mut eraser = IngestionServiceClient::new(channel(app.key_with(&[Scope::Erase])));
    let request = ipb::EraseContactRequest {
        request_id: "erase-ada".into(),
        contact_id: "c-ada".into(),
    };
    let erased = eraser
        .erase_contact(request.clone())
        .await
        .unwrap()
        .into_inner();
    assert!(erased.pseudonym.starts_with("erased-") && erased.rows_changed > 0);
    let replayed = eraser.erase_contact(request).await.unwrap().into_inner();
    assert_eq!(replayed, erased, "a retried erasure gets the first answer");

    for needle in ["c-ada", "ada@acme.test", "Ada Lovelace", "too slow for us"] {
        let gone = eventually(Duration::from_secs(10), || async {
            let found = rows_naming(&db, needle).await;
            found.is_empty().then_some(())
        })
        .await;
        assert!(
            gone.is_some(),
            "{needle} remains in {:?}",
            rows_naming(&db, needle).await
        );
    }
    // The account keeps what it needs, under the pseudonym.
    assert!(!rows_naming(&db, &erased.pseudonym).await.is_empty());
    let contacts = app
        .ingestion
        .list_contacts(ipb::ListContactsRequest {
            account_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .contacts;
    let left: Vec<&str> = contacts.iter().map(|c| c.contact_id.as_str()).collect();
    assert_eq!(left, ["c-bob"]);
    let again = eraser
        .erase_contact(ipb::EraseContactRequest {
            request_id: String::new(),
            contact_id: "c-ada".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn an_erased_account_is_gone_from_every_service() {
    use crate::fixtures::{subscription, today_minus};
    let mut app = stack(None, 3).await;
    const GONE: &str = "acct-erase-me";
    const NAME: &str = "Erasable Industries";
    let ids = vec![GONE.to_owned(), "acct-stays".to_owned()];
    accounts(&mut app, &ids).await;
    let mut account = crate::ingestion::account(GONE, NAME, 20);
    account.segment = "smb".into();
    let mut child = crate::ingestion::account("acct-child", "Child Co", 20);
    child.parent_account_id = GONE.into();
    app.ingestion
        .batch_upsert_accounts(ipb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![account, child],
        })
        .await
        .unwrap();
    let start_day = today_minus(200);
    let end_day = start_day + chrono::Days::new(365);
    app.ingestion
        .batch_upsert_subscriptions(ipb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: vec![
                subscription(
                    "s-gone",
                    GONE,
                    10,
                    1_200_000,
                    start_day,
                    end_day,
                    days_ago(150),
                ),
                subscription(
                    "s-stays",
                    "acct-stays",
                    5,
                    600_000,
                    start_day,
                    end_day,
                    days_ago(150),
                ),
            ],
        })
        .await
        .unwrap();
    app.ingestion
        .batch_upsert_contacts(ipb::BatchUpsertContactsRequest {
            request_id: String::new(),
            contacts: vec![contact(
                "c-gone",
                GONE,
                &[ipb::ContactRole::Champion],
                true,
                days_ago(40),
            )],
        })
        .await
        .unwrap();
    playbook(
        &mut app,
        serde_json::json!({
            "name": "call", "title": "Call", "trigger": {"type": "manual"},
            "steps": [
                {"id": "call", "type": "task", "title": "Call {{account.name}}", "next": "done"},
                {"id": "done", "type": "end"}
            ]
        }),
    )
    .await;
    let run = start(&mut app, "call", &[GONE.to_owned()])
        .await
        .runs
        .remove(0);
    run_in_state(&app, &run.run_id, pb::RunState::Completed).await;
    let db = app.db().await;
    let everywhere = eventually(Duration::from_secs(15), || async {
        let found = rows_naming(&db, GONE).await;
        let schemas = ["ingestion.", "health.", "renewals.", "playbooks."];
        schemas
            .iter()
            .all(|s| found.iter().any(|t| t.starts_with(s)))
            .then_some(found)
    })
    .await;
    assert!(
        everywhere.is_some(),
        "every service holds the account before"
    );

    let mut eraser = IngestionServiceClient::new(
        tenure_platform::client::channel(
            &app.stack.peers.ingestion_url,
            &app.key_with(&[Scope::Erase]),
        )
        .unwrap(),
    );
    let erased = eraser
        .erase_account(ipb::EraseAccountRequest {
            request_id: "erase-account".into(),
            account_id: GONE.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(erased.rows_changed > 0);
    for needle in [GONE, NAME, "c-gone", "s-gone"] {
        let gone = eventually(Duration::from_secs(15), || async {
            rows_naming(&db, needle).await.is_empty().then_some(())
        })
        .await;
        assert!(
            gone.is_some(),
            "{needle} remains in {:?}",
            rows_naming(&db, needle).await
        );
    }
    // The rest of the base is untouched; the child lost only its parent.
    for kept in ["acct-stays", "s-stays", "acct-child"] {
        assert!(!rows_naming(&db, kept).await.is_empty(), "{kept} was kept");
    }
    let missing = eraser
        .erase_account(ipb::EraseAccountRequest {
            request_id: String::new(),
            account_id: GONE.into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    app.stop().await;
}
