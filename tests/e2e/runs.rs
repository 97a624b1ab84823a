//! Playbook runs end to end: real webhook receivers and an SMTP sink,
//! retries and dead letters, a killed service, two replicas, tasks that
//! wake waiting runs, cooldowns and the weekly email cap.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::playbooks::v1 as pb;
use tenure_tests::receivers::{SmtpSink, WebhookReceiver};
use tenure_tests::{TestStack, eventually, violated_fields};

use crate::fixtures::{contact, days_ago, ts};

async fn stack(smtp: Option<&SmtpSink>, email_cap: u32) -> TestStack {
    let smtp = smtp.map(|s| s.url.clone());
    TestStack::spawn_with(|options| {
        let settings = &mut options.settings;
        settings.insert("PLAYBOOKS_RETRY_BASE".into(), "50ms".into());
        settings.insert("PLAYBOOKS_RETRY_CAP".into(), "200ms".into());
        settings.insert("PLAYBOOKS_MAX_ATTEMPTS".into(), "4".into());
        settings.insert("PLAYBOOKS_CONDITION_POLL".into(), "100ms".into());
        settings.insert("PLAYBOOKS_WEBHOOK_SECRET".into(), "s3cret".into());
        settings.insert("PLAYBOOKS_EMAIL_WEEKLY_CAP".into(), email_cap.to_string());
        if let Some(url) = smtp {
            settings.insert("PLAYBOOKS_SMTP_URL".into(), url);
        }
    })
    .await
}

async fn accounts(app: &mut TestStack, ids: &[String]) {
    let accounts = ids
        .iter()
        .map(|id| ipb::Account {
            account_id: id.clone(),
            name: format!("{id} Inc"),
            segment: "smb".into(),
            owner: "dana".into(),
            updated_at: ts(days_ago(100)),
            ..Default::default()
        })
        .collect();
    app.ingestion
        .batch_upsert_accounts(ipb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
        })
        .await
        .unwrap();
}

async fn playbook(app: &mut TestStack, definition: serde_json::Value) {
    app.playbooks
        .create_playbook(pb::CreatePlaybookRequest {
            request_id: String::new(),
            definition: definition.to_string(),
            format: pb::DefinitionFormat::Json as i32,
        })
        .await
        .unwrap();
}

async fn start(app: &mut TestStack, name: &str, ids: &[String]) -> pb::StartRunsResponse {
    app.playbooks
        .start_runs(pb::StartRunsRequest {
            request_id: String::new(),
            playbook: name.into(),
            account_ids: ids.to_vec(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// The runs of an account, if the call succeeds.
async fn runs_of(
    mut playbooks: tenure_proto::playbooks::v1::playbooks_service_client::PlaybooksServiceClient<
        tenure_platform::client::TracedChannel,
    >,
    account_id: &str,
) -> Option<Vec<pb::Run>> {
    let request = pb::ListRunsRequest {
        account_id: account_id.into(),
        ..Default::default()
    };
    Some(playbooks.list_runs(request).await.ok()?.into_inner().runs)
}

async fn run_in_state(app: &TestStack, run_id: &str, state: pb::RunState) -> pb::Run {
    eventually(Duration::from_secs(20), || {
        let mut playbooks = app.playbooks.clone();
        let run_id = run_id.to_owned();
        async move {
            let run = playbooks
                .get_run(pb::GetRunRequest { run_id })
                .await
                .ok()?
                .into_inner()
                .run?;
            (run.state == state as i32).then_some(run)
        }
    })
    .await
    .unwrap_or_else(|| panic!("run {run_id} reaches {state:?}"))
}

#[tokio::test]
async fn webhooks_retry_to_one_delivery_and_dead_letter_when_they_always_fail() {
    let metrics = tenure_tests::metrics_addr();
    let mut app = stack(None, 3).await;
    let ids = vec!["acme".to_owned()];
    accounts(&mut app, &ids).await;
    let flaky = WebhookReceiver::failing(3).await;
    let broken = WebhookReceiver::failing(0).await;
    broken.always_fail(true);
    for (name, url) in [("notify-flaky", &flaky.url), ("notify-broken", &broken.url)] {
        playbook(
            &mut app,
            serde_json::json!({
                "name": name, "title": "Tell the CRM", "trigger": {"type": "manual"},
                "steps": [
                    {"id": "hook", "type": "webhook", "url": format!("{url}/hooks/tenure"), "next": "done"},
                    {"id": "done", "type": "end"}
                ]
            }),
        )
        .await;
    }
    let flaky_run = start(&mut app, "notify-flaky", &ids).await.runs.remove(0);
    let run = run_in_state(&app, &flaky_run.run_id, pb::RunState::Completed).await;
    let deliveries = flaky.deliveries();
    assert_eq!(deliveries.len(), 4, "three failures, then success");
    assert_eq!(flaky.accepted().len(), 1, "delivered once");
    let id = &deliveries[0].delivery_id;
    assert!(
        deliveries.iter().all(|d| &d.delivery_id == id),
        "one delivery id across retries"
    );
    assert_eq!(id, &format!("{}:1", run.run_id));
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret").unwrap();
    mac.update(&deliveries[3].body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(deliveries[3].signature, format!("sha256={expected}"));
    assert_eq!(deliveries[3].path, "/hooks/tenure");

    let broken_run = start(&mut app, "notify-broken", &ids).await.runs.remove(0);
    run_in_state(&app, &broken_run.run_id, pb::RunState::Stalled).await;
    assert_eq!(broken.deliveries().len(), 4, "every attempt made");
    let dead = app
        .playbooks
        .list_dead_letters(pb::ListDeadLettersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .dead_letters;
    assert_eq!(dead.len(), 1);
    // Operators see retries and dead letters by playbook on the metrics endpoint.
    let text = tenure_tests::http_get(metrics, "/metrics").await;
    for result in ["retried", "dead_lettered"] {
        assert!(
            text.lines()
                .any(|line| line.starts_with("playbook_steps_total{")
                    && line.contains(r#"playbook="notify-broken""#)
                    && line.contains(&format!(r#"result="{result}""#))),
            "no {result} count in:\n{text}"
        );
    }
    assert!(text.contains("playbook_step_delay_seconds"));
    let step = dead[0].step.clone().unwrap();
    assert_eq!((step.step_id.as_str(), step.attempts), ("hook", 4));
    assert!(step.last_error.contains("500"), "{}", step.last_error);

    // Fixed on the other side, the step is retried by hand and the run ends.
    broken.always_fail(false);
    app.playbooks
        .retry_step(pb::RetryStepRequest {
            run_id: broken_run.run_id.clone(),
            seq: step.seq,
        })
        .await
        .unwrap();
    run_in_state(&app, &broken_run.run_id, pb::RunState::Completed).await;
    assert_eq!(broken.accepted().len(), 1);
    let again = app
        .playbooks
        .retry_step(pb::RetryStepRequest {
            run_id: broken_run.run_id,
            seq: step.seq,
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), tonic::Code::FailedPrecondition);
}

#[tokio::test]
async fn a_killed_service_resumes_its_runs_without_repeating_a_webhook() {
    let mut app = stack(None, 3).await;
    let ids = vec!["acme".to_owned()];
    accounts(&mut app, &ids).await;
    let receiver = WebhookReceiver::start().await;
    playbook(
        &mut app,
        serde_json::json!({
            "name": "two-calls", "title": "Two calls", "trigger": {"type": "manual"},
            "steps": [
                {"id": "first", "type": "webhook", "url": format!("{}/first", receiver.url), "next": "pause"},
                {"id": "pause", "type": "wait", "for": "2s", "next": "second"},
                {"id": "second", "type": "webhook", "url": format!("{}/second", receiver.url), "next": "done"},
                {"id": "done", "type": "end"}
            ]
        }),
    )
    .await;
    let run = start(&mut app, "two-calls", &ids).await.runs.remove(0);
    // Killed in the middle of the run: the first call made and committed,
    // the run waiting. (A call in flight when the process dies is made
    // again with the same delivery id, for the receiver to recognise.)
    eventually(Duration::from_secs(10), || {
        let mut playbooks = app.playbooks.clone();
        let run_id = run.run_id.clone();
        async move {
            let run = playbooks
                .get_run(pb::GetRunRequest { run_id })
                .await
                .ok()?
                .into_inner()
                .run?;
            (run.steps.len() == 2 && run.steps[1].result == "waiting").then_some(())
        }
    })
    .await
    .expect("the first call made, the wait armed");
    let addr = app.stack.kill_service("playbooks").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        receiver.deliveries().len(),
        1,
        "nothing runs while it is down"
    );
    app.stack.restart_service("playbooks", addr).await.unwrap();
    run_in_state(&app, &run.run_id, pb::RunState::Completed).await;
    let paths: Vec<String> = receiver.deliveries().into_iter().map(|d| d.path).collect();
    assert_eq!(paths, ["/first", "/second"]);
}

#[tokio::test]
async fn two_replicas_execute_every_step_exactly_once() {
    let mut app = stack(None, 3).await;
    let ids: Vec<String> = (0..40).map(|i| format!("acct-{i:02}")).collect();
    accounts(&mut app, &ids).await;
    let replica = app.stack.start_replica("playbooks").await.unwrap();
    let receiver = WebhookReceiver::start().await;
    playbook(
        &mut app,
        serde_json::json!({
            "name": "fan-out", "title": "Fan out", "trigger": {"type": "manual"},
            "steps": [
                {"id": "call", "type": "task", "title": "Call {{account.name}}", "next": "hook"},
                {"id": "hook", "type": "webhook", "url": receiver.url, "next": "done"},
                {"id": "done", "type": "end"}
            ]
        }),
    )
    .await;
    let started = start(&mut app, "fan-out", &ids).await;
    assert_eq!(started.runs.len(), 40);
    for run in &started.runs {
        run_in_state(&app, &run.run_id, pb::RunState::Completed).await;
    }
    let deliveries = receiver.deliveries();
    let mut distinct: Vec<String> = deliveries.iter().map(|d| d.delivery_id.clone()).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        (deliveries.len(), distinct.len()),
        (40, 40),
        "each webhook once"
    );
    let tasks = app
        .playbooks
        .list_tasks(pb::ListTasksRequest {
            page_size: 100,
            assignee: "dana".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tasks;
    assert_eq!(tasks.len(), 40);
    assert!(tasks.iter().any(|t| t.title == "Call acct-07 Inc"));
    // Both replicas took work.
    let db = app.db().await;
    let executions: i64 =
        sqlx::query_scalar("SELECT count(*) FROM playbooks.steps WHERE state = 2")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(executions, 120);
    replica.stop().await.unwrap();
}

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

/// A request carrying a `traceparent` of the test's own.
fn traced<T>(message: T, trace_id: opentelemetry::trace::TraceId) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let header = format!("00-{trace_id}-00f067aa0ba902b7-01");
    request
        .metadata_mut()
        .insert("traceparent", header.parse().unwrap());
    request
}

#[tokio::test]
async fn ingestion_events_start_playbooks_in_the_trace_that_caused_them() {
    let mut app = stack(None, 3).await;
    accounts(&mut app, &["acme".to_owned()]).await;
    for (name, trigger) in [
        (
            "detractor",
            serde_json::json!({"type": "nps_response", "category": "detractor"}),
        ),
        (
            "promoter",
            serde_json::json!({"type": "nps_response", "category": "promoter"}),
        ),
        (
            "funding",
            serde_json::json!({"type": "external_signal", "signal_type": "funding_round"}),
        ),
        (
            "new-sponsor",
            serde_json::json!({"type": "sponsor_changed"}),
        ),
    ] {
        playbook(
            &mut app,
            serde_json::json!({
                "name": name, "title": name, "trigger": trigger,
                "steps": [
                    {"id": "follow-up", "type": "task", "title": "Follow up ({{trigger.score}}{{trigger.signal_type}})", "next": "done"},
                    {"id": "done", "type": "end"}
                ]
            }),
        )
        .await;
    }
    let trace_id =
        opentelemetry::trace::TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    let url = app.stack.url("ingestion").unwrap();
    tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient::new(
        tenure_tests::untraced_channel(&url, &app.operator()),
    )
    .batch_upsert_survey_responses(traced(
        ipb::BatchUpsertSurveyResponsesRequest {
            request_id: String::new(),
            responses: vec![crate::fixtures::nps("r-1", "acme", 3, days_ago(1))],
        },
        trace_id,
    ))
    .await
    .unwrap();
    app.ingestion
        .batch_upsert_external_signals(ipb::BatchUpsertExternalSignalsRequest {
            request_id: String::new(),
            signals: vec![ipb::ExternalSignal {
                signal_id: "s-1".into(),
                account_id: "acme".into(),
                kind: ipb::ExternalSignalKind::FundingRound as i32,
                occurred_at: ts(days_ago(2)),
                source: "news".into(),
                properties: None,
                updated_at: ts(days_ago(2)),
            }],
        })
        .await
        .unwrap();
    for (id, at) in [("c-1", 30), ("c-2", 5)] {
        let mut contacts = vec![contact(
            id,
            "acme",
            &[ipb::ContactRole::EconomicSponsor],
            true,
            days_ago(at),
        )];
        if id == "c-2" {
            contacts.push(contact(
                "c-1",
                "acme",
                &[ipb::ContactRole::EconomicSponsor],
                false,
                days_ago(at),
            ));
        }
        app.ingestion
            .batch_upsert_contacts(ipb::BatchUpsertContactsRequest {
                request_id: String::new(),
                contacts,
            })
            .await
            .unwrap();
    }
    let runs = eventually(Duration::from_secs(15), || {
        let playbooks = app.playbooks.clone();
        async move {
            let runs = runs_of(playbooks, "acme").await?;
            let done = runs
                .iter()
                .filter(|r| r.state == pb::RunState::Completed as i32)
                .count();
            (done == 3).then_some(runs)
        }
    })
    .await
    .expect("three playbooks ran");
    let mut names: Vec<&str> = runs.iter().map(|r| r.playbook.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["detractor", "funding", "new-sponsor"],
        "the promoter playbook did not start"
    );
    let tasks = app
        .playbooks
        .list_tasks(pb::ListTasksRequest {
            account_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tasks;
    let mut titles: Vec<&str> = tasks.iter().map(|t| t.title.as_str()).collect();
    titles.sort_unstable();
    assert_eq!(
        titles,
        ["Follow up ()", "Follow up (3)", "Follow up (funding_round)"]
    );

    // The detractor's steps ran in the trace of the survey upload.
    let spans = tenure_tests::wait_for_spans(trace_id, |spans| {
        spans.iter().filter(|s| s.name == "playbook.step").count() >= 2
    })
    .await;
    let steps: Vec<_> = spans.iter().filter(|s| s.name == "playbook.step").collect();
    assert_eq!(steps.len(), 2, "the task and the end of the detractor run");
}

#[tokio::test]
async fn forwarded_and_evaluated_triggers_start_their_playbooks_and_exit_criteria_end_them() {
    let mut app = TestStack::spawn_with(|options| {
        let settings = &mut options.settings;
        settings.insert("PLAYBOOKS_SCHEDULE_INTERVAL".into(), "200ms".into());
        settings.insert("PLAYBOOKS_CONDITION_POLL".into(), "1h".into());
    })
    .await;
    accounts(&mut app, &["acme".to_owned()]).await;
    let steps = serde_json::json!([
        {"id": "call", "type": "task", "title": "Call", "next": "check"},
        {"id": "check", "type": "branch", "condition": {"band": ["red", "yellow"]}, "then": "done", "else": "done"},
        {"id": "done", "type": "end"}
    ]);
    for (name, trigger) in [
        (
            "dropped",
            serde_json::json!({"type": "score_dropped", "points": 15}),
        ),
        (
            "renewal-90",
            serde_json::json!({"type": "renewal_approaching", "days": 90}),
        ),
        (
            "renewal-30",
            serde_json::json!({"type": "renewal_approaching", "days": 30}),
        ),
        ("champion", serde_json::json!({"type": "champion_changed"})),
        (
            "stalled",
            serde_json::json!({"type": "onboarding_stalled", "utilization_below_pct": 30, "days_after_start": 30}),
        ),
        (
            "usage",
            serde_json::json!({"type": "usage_dropped", "drop_pct": 30}),
        ),
        (
            "weekly",
            serde_json::json!({"type": "schedule", "every_days": 7}),
        ),
    ] {
        playbook(
            &mut app,
            serde_json::json!({"name": name, "title": name, "trigger": trigger, "steps": steps}),
        )
        .await;
    }
    // A playbook whose exit criteria end it while it waits.
    playbook(
        &mut app,
        serde_json::json!({
            "name": "until-done", "title": "Until done", "trigger": {"type": "manual"},
            "exit_when": {"task_outcome": {"step": "call", "is": "done"}},
            "steps": [
                {"id": "call", "type": "task", "title": "Call", "next": "hold"},
                {"id": "hold", "type": "wait", "condition": {"score_at_least": 90}, "timeout": "30d", "next": "after"},
                {"id": "after", "type": "task", "title": "Never", "next": "end"},
                {"id": "end", "type": "end"}
            ]
        }),
    )
    .await;
    let now = ts(days_ago(0));
    app.internal_playbooks()
        .notify_health_changed(pb::NotifyHealthChangedRequest {
            request_id: "drop-1".into(),
            changes: vec![pb::HealthChange {
                account_id: "acme".into(),
                kind: pb::HealthChangeKind::ScoreDropped as i32,
                previous_score: 80.0,
                score: 60.0,
                previous_band: "green".into(),
                band: "yellow".into(),
                occurred_at: now,
            }],
        })
        .await
        .unwrap();
    app.internal_playbooks()
        .notify_renewal_approaching(pb::NotifyRenewalApproachingRequest {
            request_id: "renewal-1".into(),
            renewals: vec![pb::RenewalApproaching {
                account_id: "acme".into(),
                subscription_id: "s-1".into(),
                term_end_date: crate::fixtures::date(
                    chrono::Utc::now().date_naive() + chrono::Days::new(85),
                ),
                days_to_renewal: 85,
                threshold_days: 90,
                arr: crate::fixtures::usd(1_000),
            }],
        })
        .await
        .unwrap();
    let event = |kind: &str, attributes: &[(&str, &str)]| pb::AccountEvent {
        account_id: "acme".into(),
        kind: kind.into(),
        occurred_at: now,
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    app.internal_playbooks()
        .notify_account_events(pb::NotifyAccountEventsRequest {
            request_id: "events-1".into(),
            events: vec![
                event("champion_changed", &[("contact_id", "c-9")]),
                event(
                    "onboarding_stalled",
                    &[("utilization_pct", "12"), ("days_since_start", "45")],
                ),
                event("usage_dropped", &[("drop_pct", "10")]),
            ],
        })
        .await
        .unwrap();
    let bad = app
        .internal_playbooks()
        .notify_account_events(pb::NotifyAccountEventsRequest {
            request_id: String::new(),
            events: vec![event("horoscope", &[])],
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["events[0].kind"]);

    let exiting = start(&mut app, "until-done", &["acme".to_owned()])
        .await
        .runs
        .remove(0);
    let completed = eventually(Duration::from_secs(15), || {
        let playbooks = app.playbooks.clone();
        async move {
            let runs = runs_of(playbooks, "acme").await?;
            let mut done: Vec<String> = runs
                .iter()
                .filter(|r| r.state == pb::RunState::Completed as i32)
                .map(|r| r.playbook.clone())
                .collect();
            done.sort();
            (done.len() == 5).then_some(done)
        }
    })
    .await
    .expect("five playbooks ran to the end");
    assert_eq!(
        completed,
        ["champion", "dropped", "renewal-90", "stalled", "weekly"]
    );

    // The weekly schedule entered the account once, not on every evaluation.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let runs = runs_of(app.playbooks.clone(), "acme").await.unwrap();
    assert_eq!(runs.iter().filter(|r| r.playbook == "weekly").count(), 1);
    let weekly = runs.iter().find(|r| r.playbook == "weekly").unwrap();
    assert_eq!(
        weekly.steps[1].result, "else",
        "unscored accounts are not red or yellow"
    );

    let task = app
        .playbooks
        .list_tasks(pb::ListTasksRequest {
            account_id: "acme".into(),
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .tasks
        .into_iter()
        .find(|t| t.run_id == exiting.run_id)
        .unwrap();
    app.playbooks
        .complete_task(pb::CompleteTaskRequest {
            task_id: task.task_id,
            outcome: "done".into(),
        })
        .await
        .unwrap();
    let exited = run_in_state(&app, &exiting.run_id, pb::RunState::Exited).await;
    assert_eq!(exited.steps.len(), 2);
    assert_eq!(exited.steps[1].result, "exit criteria met");
}

#[tokio::test]
async fn advocates_usage_drops_and_stalled_onboarding_are_found_on_schedule() {
    use tenure_proto::health::v1 as hpb;
    let mut app = TestStack::spawn_with(|options| {
        options
            .settings
            .insert("PLAYBOOKS_SCHEDULE_INTERVAL".into(), "200ms".into());
    })
    .await;
    accounts(
        &mut app,
        &["fan".to_owned(), "fading".to_owned(), "stalled".to_owned()],
    )
    .await;
    // Fifty seats bought 40 days ago, nobody using them.
    let today = chrono::Utc::now().date_naive();
    app.ingestion
        .batch_upsert_subscriptions(ipb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: vec![crate::fixtures::subscription(
                "stalled-sub",
                "stalled",
                50,
                60_000,
                today - chrono::Days::new(40),
                today + chrono::Days::new(325),
                days_ago(40),
            )],
        })
        .await
        .unwrap();
    // A scorecard on NPS alone: the promoter is green.
    let measure = hpb::Measure {
        name: "nps".into(),
        signal: "latest_nps".into(),
        weight: 1.0,
        rule: Some(hpb::measure::Rule::Linear(hpb::LinearRule {
            worst: 0.0,
            best: 10.0,
        })),
    };
    app.health
        .create_scorecard(hpb::CreateScorecardRequest {
            request_id: String::new(),
            scorecard: Some(hpb::Scorecard {
                name: "default".into(),
                groups: vec![hpb::MeasureGroup {
                    name: "Sentiment".into(),
                    measures: vec![measure],
                }],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    app.ingestion
        .batch_upsert_survey_responses(ipb::BatchUpsertSurveyResponsesRequest {
            request_id: String::new(),
            responses: vec![
                crate::fixtures::nps("r-fan", "fan", 10, days_ago(3)),
                crate::fixtures::nps("r-fading", "fading", 2, days_ago(3)),
            ],
        })
        .await
        .unwrap();
    // The fading account used the product 30 times the month before last
    // and 5 times last month: usage down 83 %.
    let mut events: Vec<ipb::UsageEvent> = (0..30)
        .map(|i| {
            crate::fixtures::event(
                &format!("old-{i}"),
                "fading",
                "u1",
                "report",
                days_ago(35 + i % 20),
            )
        })
        .collect();
    events.extend((0..5).map(|i| {
        crate::fixtures::event(
            &format!("new-{i}"),
            "fading",
            "u1",
            "report",
            days_ago(2 + i),
        )
    }));
    app.ingestion
        .ingest_events(ipb::IngestEventsRequest { events })
        .await
        .unwrap();
    for (name, trigger) in [
        (
            "advocate",
            serde_json::json!({"type": "advocate_found", "min_nps": 9}),
        ),
        (
            "usage",
            serde_json::json!({"type": "usage_dropped", "drop_pct": 50}),
        ),
        (
            "stalled",
            serde_json::json!({"type": "onboarding_stalled", "utilization_below_pct": 30, "days_after_start": 30}),
        ),
    ] {
        playbook(
            &mut app,
            serde_json::json!({
                "name": name, "title": name, "trigger": trigger,
                "steps": [
                    {"id": "hold", "type": "wait", "until": "2020-01-01", "next": "ask"},
                    {"id": "ask", "type": "task", "title": "{{account.name}}: {{trigger.nps}}{{trigger.drop_pct}}", "next": "done"},
                    {"id": "done", "type": "end"}
                ]
            }),
        )
        .await;
    }
    let done = eventually(Duration::from_secs(20), || {
        let playbooks = app.playbooks.clone();
        async move {
            let mut found = Vec::new();
            for account in ["fan", "fading", "stalled"] {
                for run in runs_of(playbooks.clone(), account).await? {
                    if run.state == pb::RunState::Completed as i32 {
                        found.push((account, run.playbook));
                    }
                }
            }
            (found.len() == 3).then_some(found)
        }
    })
    .await
    .expect("the advocate, the fading and the stalled account were found");
    assert_eq!(
        done,
        [
            ("fan", "advocate".to_owned()),
            ("fading", "usage".to_owned()),
            ("stalled", "stalled".to_owned())
        ]
    );
    let tasks = app
        .playbooks
        .list_tasks(pb::ListTasksRequest::default())
        .await
        .unwrap()
        .into_inner()
        .tasks;
    let mut titles: Vec<String> = tasks.into_iter().map(|t| t.title).collect();
    titles.sort();
    assert_eq!(titles[0], "fading Inc: 83.33333333333334");
    assert_eq!(titles[1], "fan Inc: 10");
    assert_eq!(titles[2], "stalled Inc: ");

    // A run waiting for the fading account to turn green wakes when health
    // says it did, not at its next poll (15 minutes by default).
    let scored = eventually(Duration::from_secs(20), || {
        let mut health = app.health.clone();
        async move {
            let request = hpb::GetHealthRequest {
                account_id: "fading".into(),
            };
            let band = health
                .get_health(request)
                .await
                .ok()?
                .into_inner()
                .health?
                .band;
            (band == hpb::Band::Red as i32).then_some(())
        }
    })
    .await;
    assert!(scored.is_some(), "health scored the detractor red");
    playbook(
        &mut app,
        serde_json::json!({
            "name": "until-green", "title": "Until green", "trigger": {"type": "manual"},
            "steps": [
                {"id": "hold", "type": "wait", "condition": {"band": "green"}, "timeout": "30d", "next": "thank"},
                {"id": "thank", "type": "task", "title": "Thank {{account.name}}", "next": "done"},
                {"id": "done", "type": "end"}
            ]
        }),
    )
    .await;
    let run = start(&mut app, "until-green", &["fading".to_owned()])
        .await
        .runs
        .remove(0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.ingestion
        .batch_upsert_survey_responses(ipb::BatchUpsertSurveyResponsesRequest {
            request_id: String::new(),
            responses: vec![crate::fixtures::nps(
                "r-fading-2",
                "fading",
                10,
                days_ago(0),
            )],
        })
        .await
        .unwrap();
    let done = run_in_state(&app, &run.run_id, pb::RunState::Completed).await;
    assert_eq!(done.steps[0].result, "condition met");
}
