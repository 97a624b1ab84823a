//! Webhooks: delivered once through retries, crashes and replicas.

use std::time::Duration;

use tenure_proto::playbooks::v1 as pb;
use tenure_tests::eventually;
use tenure_tests::receivers::WebhookReceiver;

use super::*;

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
    let last = &deliveries[3];
    let now = chrono::Utc::now().timestamp();
    let verified = tenure_playbooks::signature::verify(
        WEBHOOK_SECRET.as_bytes(),
        &last.timestamp,
        &last.delivery_id,
        &last.signature,
        &last.body,
        now,
    );
    assert_eq!(
        verified,
        Ok(()),
        "signed with the secret, timestamp and delivery id"
    );
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
