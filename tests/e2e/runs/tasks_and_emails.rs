//! Tasks that wake waiting runs, cooldowns and the weekly email cap.

use std::time::Duration;

use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::playbooks::v1 as pb;
use tenure_tests::eventually;
use tenure_tests::receivers::SmtpSink;

use super::*;
use crate::fixtures::{contact, days_ago, ts};

#[tokio::test]
async fn a_band_change_runs_tasks_waits_and_emails_within_caps_and_cooldowns() {
    let smtp = SmtpSink::start().await;
    let mut app = stack(Some(&smtp), 1).await;
    let ids = vec!["acme".to_owned()];
    accounts(&mut app, &ids).await;
    app.ingestion
        .batch_upsert_contacts(ipb::BatchUpsertContactsRequest {
            request_id: String::new(),
            contacts: vec![contact(
                "c-1",
                "acme",
                &[ipb::ContactRole::Champion],
                true,
                days_ago(50),
            )],
        })
        .await
        .unwrap();
    playbook(
        &mut app,
        serde_json::json!({
            "name": "save-the-account", "title": "Save the account",
            "trigger": {"type": "health_band_changed", "to": "red"},
            "audience": {"segments": ["smb"]},
            "cooldown_days": 30,
            "steps": [
                {"id": "call", "type": "task", "title": "Call {{account.name}} about {{trigger.band}} health",
                 "priority": "urgent", "due_in_days": 2, "next": "until-called"},
                {"id": "until-called", "type": "wait", "condition": {"task_outcome": {"step": "call", "is": "reached"}},
                 "timeout": "1h", "next": "mail"},
                {"id": "mail", "type": "email", "to_role": "champion", "subject": "Checking in, {{account.name}}",
                 "body": "Your CSM {{account.owner}} would like to talk.", "next": "done"},
                {"id": "done", "type": "end"}
            ]
        }),
    )
    .await;
    playbook(
        &mut app,
        serde_json::json!({
            "name": "newsletter", "title": "Newsletter", "trigger": {"type": "manual"},
            "steps": [
                {"id": "mail", "type": "email", "to_role": "champion", "subject": "News", "body": "Hello", "next": "done"},
                {"id": "done", "type": "end"}
            ]
        }),
    )
    .await;
    let changed_at = days_ago(0);
    let change = |band: &str, id: &str| pb::NotifyHealthChangedRequest {
        request_id: id.into(),
        changes: vec![pb::HealthChange {
            account_id: "acme".into(),
            kind: pb::HealthChangeKind::BandChanged as i32,
            previous_score: 55.0,
            score: 35.0,
            previous_band: "yellow".into(),
            band: band.into(),
            occurred_at: ts(changed_at),
            ..Default::default()
        }],
    };
    app.internal_playbooks()
        .notify_health_changed(change("green", "e-0"))
        .await
        .unwrap();
    app.internal_playbooks()
        .notify_health_changed(change("red", "e-1"))
        .await
        .unwrap();
    let runs = eventually(Duration::from_secs(10), || {
        let playbooks = app.playbooks.clone();
        async move {
            let runs = runs_of(playbooks, "acme").await?;
            (runs.len() == 1 && runs[0].steps.len() >= 2).then_some(runs)
        }
    })
    .await
    .expect("one run, only for the change to red");
    assert_eq!(runs[0].trigger, "health_band_changed");
    let task = app
        .playbooks
        .list_tasks(pb::ListTasksRequest {
            account_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tasks
        .remove(0);
    assert_eq!(task.title, "Call acme Inc about red health");
    assert_eq!(
        (task.assignee.as_str(), task.priority.as_str()),
        ("dana", "urgent")
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(smtp.mails().is_empty(), "the run waits for the call");

    // The same event again (a redelivery) and a new red change: no second run.
    app.internal_playbooks()
        .notify_health_changed(change("red", "e-1"))
        .await
        .unwrap();
    app.internal_playbooks()
        .notify_health_changed(change("red", "e-2"))
        .await
        .unwrap();

    // Completing the task with the awaited outcome wakes the run.
    app.playbooks
        .complete_task(pb::CompleteTaskRequest {
            task_id: task.task_id.clone(),
            outcome: "reached".into(),
        })
        .await
        .unwrap();
    run_in_state(&app, &runs[0].run_id, pb::RunState::Completed).await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].recipients, ["c-1@acme.test"]);
    assert_eq!(
        mails[0].header("Subject").as_deref(),
        Some("Checking in, acme Inc")
    );
    assert!(
        mails[0]
            .header("Message-ID")
            .unwrap()
            .contains(&runs[0].run_id)
    );

    // The weekly cap (one here) holds across playbooks.
    let newsletter = start(&mut app, "newsletter", &["acme".to_owned()])
        .await
        .runs
        .remove(0);
    let done = run_in_state(&app, &newsletter.run_id, pb::RunState::Completed).await;
    assert_eq!(done.steps[0].result, "emailed 0, capped 1");
    assert_eq!(smtp.mails().len(), 1);

    // Cooldown: the playbook does not enter the account again for 30 days.
    let again = start(&mut app, "save-the-account", &["acme".to_owned()]).await;
    assert!(again.runs.is_empty());
    assert_eq!(
        again.skipped[0].reason,
        "the playbook's cooldown has not passed"
    );
    let all_runs = app
        .playbooks
        .list_runs(pb::ListRunsRequest {
            playbook: "save-the-account".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .runs;
    assert_eq!(all_runs.len(), 1);

    let timeline = app
        .playbooks
        .get_account_timeline(pb::GetAccountTimelineRequest {
            account_id: "acme".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .entries;
    let kinds: Vec<&str> = timeline.iter().map(|e| e.kind.as_str()).collect();
    assert!(
        kinds.contains(&"trigger")
            && kinds.contains(&"run.started")
            && kinds.contains(&"task.completed")
    );
    assert!(kinds.contains(&"run.completed"));
}
