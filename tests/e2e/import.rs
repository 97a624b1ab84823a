//! `tenure import`: files through the API, with rejects written out.

use tenure::import::{Kind, Summary, run};
use tenure_tests::TestStack;

#[tokio::test]
async fn imports_files_and_writes_rejected_rows_with_reasons() {
    let mut app = TestStack::spawn().await;
    let peers = app.stack.operator_peers();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };

    let accounts = write(
        "accounts.csv",
        "account_id,name,segment,lifecycle_stage,updated_at,attr_employees\n\
         acme,Acme,enterprise,mature,2026-01-01T00:00:00Z,1200\n\
         globex,Globex,smb,adopting,2026-01-01T00:00:00Z,40\n\
         bad,,smb,adopting,2026-01-01T00:00:00Z,1\n\
         worse,Worse,smb,dormant,2026-01-01T00:00:00Z,1\n",
    );
    let rejects = dir.path().join("accounts.rejected.jsonl");
    let summary = run(&peers, Kind::Accounts, &accounts, &rejects, 100, false)
        .await
        .unwrap();
    assert_eq!(
        summary,
        Summary {
            rows: 4,
            accepted: 2,
            unchanged: 0,
            rejected: 2
        }
    );
    let rejected = std::fs::read_to_string(&rejects).unwrap();
    let lines: Vec<serde_json::Value> = rejected
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0]["line"], 5,
        "a row that does not convert is rejected before sending"
    );
    assert!(
        lines[0]["reason"]
            .as_str()
            .unwrap()
            .contains("lifecycle_stage")
    );
    assert_eq!(lines[1]["line"], 4);
    assert!(
        lines[1]["reason"]
            .as_str()
            .unwrap()
            .contains("accounts[2].name"),
        "{}",
        lines[1]["reason"]
    );

    let events = write(
        "events.jsonl",
        concat!(
            r#"{"message_id":"m1","account_id":"acme","user_id":"u1","event_name":"report.run","occurred_at":"2026-11-01T10:00:00Z","properties":{"client":"web"}}"#,
            "\n",
            r#"{"message_id":"m1","account_id":"acme","user_id":"u1","event_name":"report.run","occurred_at":"2026-11-01T10:00:00Z"}"#,
            "\n",
            r#"{"message_id":"m2","account_id":"nobody","user_id":"u1","event_name":"report.run","occurred_at":"2026-11-01T10:00:00Z"}"#,
            "\n",
            r#"{"message_id":"m3","account_id":"globex","user_id":"u2","event_name":"api.call","occurred_at":"2026-11-02T10:00:00Z","quantity":3}"#,
            "\n",
        ),
    );
    let rejects = dir.path().join("events.rejected.jsonl");
    let summary = run(&peers, Kind::Events, &events, &rejects, 2, false)
        .await
        .unwrap();
    assert_eq!(
        summary,
        Summary {
            rows: 4,
            accepted: 2,
            unchanged: 1,
            rejected: 1
        }
    );
    let rejected = std::fs::read_to_string(&rejects).unwrap();
    assert!(
        rejected.contains("\"line\":3") && rejected.contains("account_id"),
        "{rejected}"
    );

    // Outcomes go to renewals, checked whole like any batch; a term that
    // already has an outcome is left as it is.
    let day = |text: &str| text.parse::<chrono::NaiveDate>().unwrap();
    let terms = [
        ("acme-1".to_owned(), "acme".to_owned(), day("2025-06-01")),
        (
            "globex-1".to_owned(),
            "globex".to_owned(),
            day("2025-07-01"),
        ),
        (
            "globex-2".to_owned(),
            "globex".to_owned(),
            day("2025-07-01"),
        ),
    ];
    crate::fixtures::past_terms_in(&mut app, None, "USD", &terms).await;
    let outcomes = write(
        "outcomes.csv",
        "account_id,subscription_id,term_end_date,kind,previous_arr_minor,new_arr_minor,currency,churn_reason,decided_on\n\
         acme,acme-1,2025-06-01,renewed,100000,120000,USD,,2025-05-20\n\
         globex,globex-1,2025-07-01,churned,50000,0,USD,lost_sponsor,2025-06-15\n\
         globex,globex-2,2025-07-01,churned,50000,0,USD,,2025-06-15\n",
    );
    let rejects = dir.path().join("outcomes.rejected.jsonl");
    let first = run(&peers, Kind::Outcomes, &outcomes, &rejects, 100, false)
        .await
        .unwrap();
    assert_eq!(
        first,
        Summary {
            rows: 3,
            accepted: 2,
            unchanged: 0,
            rejected: 1
        }
    );
    let rejected = std::fs::read_to_string(&rejects).unwrap();
    assert!(
        rejected.contains("\"line\":4") && rejected.contains("outcomes[2].churn_reason"),
        "{rejected}"
    );
    let again = run(&peers, Kind::Outcomes, &outcomes, &rejects, 100, false)
        .await
        .unwrap();
    assert_eq!((again.accepted, again.unchanged), (0, 2));
    let recorded = app
        .renewals
        .clone()
        .list_renewal_outcomes(tenure_proto::renewals::v1::ListRenewalOutcomesRequest {
            page_size: 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .outcomes;
    assert_eq!(recorded.len(), 2);
    app.stop().await;
}
