//! Definitions are validated; dry runs show the path a run would take.

use tenure_proto::playbooks::v1 as pb;
use tenure_tests::violated_fields;

use super::*;

#[tokio::test]
async fn definitions_are_validated_and_dry_runs_show_the_path() {
    let mut app = stack(None, 3).await;
    accounts(&mut app, &["acme".to_owned(), "globex".to_owned()]).await;
    let bad = app
        .playbooks
        .create_playbook(pb::CreatePlaybookRequest {
            request_id: String::new(),
            format: pb::DefinitionFormat::Json as i32,
            definition: serde_json::json!({
                "name": "bad", "title": "Bad", "trigger": {"type": "renewal_approaching"},
                "steps": [
                    {"id": "t", "type": "task", "title": "Hi {{account.shoe_size}}", "next": "w"},
                    {"id": "w", "type": "wait", "for": "soon", "next": "b"},
                    {"id": "b", "type": "branch", "condition": {"band": "purple"}, "then": "e", "else": "e"},
                    {"id": "e", "type": "end"}
                ]
            })
            .to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        violated_fields(&bad),
        [
            "definition.trigger.days",
            "definition.steps[0].title",
            "definition.steps[1].for",
            "definition.steps[2].condition.band"
        ]
    );
    let db = app.db().await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM playbooks.playbook_versions")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, 0, "nothing partial is written");

    playbook(
        &mut app,
        serde_json::json!({
            "name": "check-in", "title": "Check in", "trigger": {"type": "manual"},
            "audience": {"segments": ["smb"]},
            "steps": [
                {"id": "branch", "type": "branch", "condition": {"band": "green"}, "then": "praise", "else": "call"},
                {"id": "praise", "type": "task", "title": "Ask for a reference", "next": "done"},
                {"id": "call", "type": "task", "title": "Call", "next": "done"},
                {"id": "done", "type": "end"}
            ]
        }),
    )
    .await;
    let dry = app
        .playbooks
        .dry_run_playbook(pb::DryRunPlaybookRequest {
            name: "check-in".into(),
            account_ids: vec!["acme".into(), "nobody".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .accounts;
    assert!(dry[0].would_enter);
    assert_eq!(
        dry[0].path,
        ["branch", "call", "done"],
        "unscored: not green"
    );
    assert!(!dry[1].would_enter);
    assert_eq!(dry[1].reason, "ingestion does not know the account");

    // The same playbook written in YAML is a new version of it.
    let yaml = "
name: check-in
title: Check in (YAML)
trigger: {type: manual}
audience: {segments: [enterprise]}
steps:
  - {id: call, type: task, title: 'Call {{account.name}}', next: done}
  - {id: done, type: end}
";
    let created = app
        .playbooks
        .create_playbook(pb::CreatePlaybookRequest {
            request_id: String::new(),
            definition: yaml.into(),
            format: pb::DefinitionFormat::Yaml as i32,
        })
        .await
        .unwrap()
        .into_inner()
        .playbook
        .unwrap();
    assert_eq!(
        (created.version, created.format),
        (2, pb::DefinitionFormat::Yaml as i32)
    );
    let dry = app
        .playbooks
        .dry_run_playbook(pb::DryRunPlaybookRequest {
            name: "check-in".into(),
            account_ids: vec!["acme".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .accounts;
    assert!(!dry[0].would_enter, "acme is smb, v2 is for enterprise");
    let broken = app
        .playbooks
        .dry_run_playbook(pb::DryRunPlaybookRequest {
            definition: "steps: [".into(),
            format: pb::DefinitionFormat::Yaml as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&broken), ["definition"]);
}

#[tokio::test]
async fn notices_with_impossible_numbers_are_refused_field_by_field() {
    let app = TestStack::spawn().await;
    let health = pb::NotifyHealthChangedRequest {
        request_id: String::new(),
        changes: vec![
            pb::HealthChange {
                account_id: "acme".into(),
                kind: pb::HealthChangeKind::BandChanged as i32,
                previous_score: f64::NAN,
                score: 250.0,
                previous_band: "green".into(),
                band: "red".into(),
                occurred_at: crate::fixtures::ts(days_ago(0)),
                ..Default::default()
            },
            pb::HealthChange {
                account_id: "acme".into(),
                kind: pb::HealthChangeKind::BandChanged as i32,
                previous_score: 80.0,
                score: 30.0,
                // The enum wins over the words; a code no band has is refused.
                previous_band: "purple".into(),
                from_band: tenure_proto::common::v1::Band::Green as i32,
                to_band: 42,
                occurred_at: crate::fixtures::ts(days_ago(0)),
                ..Default::default()
            },
        ],
    };
    let refused = app
        .internal_playbooks()
        .notify_health_changed(health)
        .await
        .unwrap_err();
    let fields = violated_fields(&refused);
    assert!(
        fields.contains(&"changes[0].previous_score".to_owned()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"changes[0].score".to_owned()),
        "{fields:?}"
    );
    let bands: Vec<&String> = fields.iter().filter(|f| f.contains("band")).collect();
    assert_eq!(bands, ["changes[1].to_band"], "{fields:?}");

    let renewal = pb::NotifyRenewalApproachingRequest {
        request_id: String::new(),
        renewals: vec![pb::RenewalApproaching {
            account_id: "acme".into(),
            subscription_id: "s-1".into(),
            term_end_date: crate::fixtures::date(crate::fixtures::today_minus(0)),
            days_to_renewal: -5,
            threshold_days: 90,
            arr: crate::fixtures::usd(i64::MAX),
        }],
    };
    let refused = app
        .internal_playbooks()
        .notify_renewal_approaching(renewal)
        .await
        .unwrap_err();
    let fields = violated_fields(&refused);
    assert!(
        fields.contains(&"renewals[0].days_to_renewal".to_owned()),
        "{fields:?}"
    );
    assert!(
        fields.contains(&"renewals[0].arr.amount_minor".to_owned()),
        "{fields:?}"
    );
    app.stop().await;
}
