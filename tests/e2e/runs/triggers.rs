//! What starts runs (ingested events, forwarded and evaluated triggers),
//! the exit criteria that end them, and the traces they run in.

use std::time::Duration;

use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::playbooks::v1 as pb;
use tenure_tests::{TestStack, eventually, violated_fields};

use super::*;
use crate::fixtures::{contact, days_ago, ts};

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
                ..Default::default()
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
        event_kind: 0,
    };
    // Senders name the kind by the shared enum; older ones by its word.
    let usage_dropped = pb::AccountEvent {
        kind: String::new(),
        event_kind: tenure_proto::common::v1::AccountEventKind::UsageDropped as i32,
        ..event("", &[("drop_pct", "10")])
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
                usage_dropped,
            ],
        })
        .await
        .unwrap();
    let bad = app
        .internal_playbooks()
        .notify_account_events(pb::NotifyAccountEventsRequest {
            request_id: String::new(),
            events: vec![
                event("horoscope", &[]),
                pb::AccountEvent {
                    event_kind: 99,
                    ..event("sponsor_changed", &[])
                },
            ],
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&bad),
        ["events[0].kind", "events[1].event_kind"]
    );

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
            (band == tenure_proto::common::v1::Band::Red as i32).then_some(())
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
