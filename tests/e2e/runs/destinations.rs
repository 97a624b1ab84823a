//! Where webhooks may go and how a receiver knows them: internal addresses
//! refused after resolution, redirects not followed, deliveries signed with
//! a timestamp so that a replay is refused, and no webhook without a key.

use tenure_proto::playbooks::v1 as pb;
use tenure_tests::TestStack;
use tenure_tests::receivers::WebhookReceiver;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// A playbook `name` whose one step calls `url`.
fn hook(name: &str, url: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name, "title": "Tell someone", "trigger": {"type": "manual"},
        "steps": [
            {"id": "hook", "type": "webhook", "url": url, "next": "done"},
            {"id": "done", "type": "end"}
        ]
    })
}

/// The error the dead-lettered step of `run_id` ended with.
async fn dead_letter_error(app: &TestStack, run_id: &str) -> String {
    run_in_state(app, run_id, pb::RunState::Stalled).await;
    app.playbooks
        .clone()
        .list_dead_letters(pb::ListDeadLettersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .dead_letters
        .into_iter()
        .find(|d| d.run_id == run_id)
        .and_then(|d| d.step)
        .map(|s| s.last_error)
        .expect("a dead letter for the run")
}

#[tokio::test]
async fn webhooks_may_not_reach_loopback_private_or_metadata_addresses() {
    // No PLAYBOOKS_WEBHOOK_ALLOW: what a production stack runs with.
    let mut app = TestStack::spawn_with(|options| {
        let settings = &mut options.settings;
        settings.insert("PLAYBOOKS_RETRY_BASE".into(), "20ms".into());
        settings.insert("PLAYBOOKS_RETRY_CAP".into(), "50ms".into());
        settings.insert("PLAYBOOKS_MAX_ATTEMPTS".into(), "2".into());
        settings.insert("PLAYBOOKS_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
    })
    .await;
    let ids = vec!["acme".to_owned()];
    accounts(&mut app, &ids).await;
    let receiver = WebhookReceiver::start().await;
    let port = receiver.url.rsplit(':').next().unwrap().to_owned();
    let targets = [
        ("to-loopback", receiver.url.clone(), "127.0.0.1"),
        (
            "to-localhost",
            format!("http://localhost:{port}/x"),
            "localhost",
        ),
        ("to-ipv6-loopback", format!("http://[::1]:{port}/x"), "::1"),
        (
            "to-metadata",
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "169.254.169.254",
        ),
        (
            "to-private",
            "http://10.0.0.1:8080/x".to_owned(),
            "10.0.0.1",
        ),
    ];
    for (name, url, _) in &targets {
        playbook(&mut app, hook(name, url)).await;
    }
    for (name, _, host) in &targets {
        let run = start(&mut app, name, &ids).await.runs.remove(0);
        let error = dead_letter_error(&app, &run.run_id).await;
        assert!(
            error.contains("may not reach") && error.contains(host),
            "{name}: {error}"
        );
    }
    assert!(receiver.deliveries().is_empty(), "nothing reached loopback");
    app.stop().await;
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let mut app = stack(None, 3).await;
    let ids = vec!["acme".to_owned()];
    accounts(&mut app, &ids).await;
    let inner = WebhookReceiver::start().await;
    let outer = WebhookReceiver::redirecting(&format!("{}/inside", inner.url)).await;
    playbook(&mut app, hook("redirected", &outer.url)).await;
    let run = start(&mut app, "redirected", &ids).await.runs.remove(0);
    let error = dead_letter_error(&app, &run.run_id).await;
    assert!(error.contains("redirects are not followed"), "{error}");
    assert!(!outer.deliveries().is_empty());
    assert!(inner.deliveries().is_empty(), "the redirect went nowhere");
    app.stop().await;
}

/// Posts `body` to `url` with the headers given; returns the status code.
async fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> u16 {
    let authority = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let mut request = format!(
        "POST /replayed HTTP/1.1\r\nhost: {authority}\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_delivery_verifies_once_and_a_replay_is_refused() {
    let mut app = stack(None, 3).await;
    let ids = vec!["acme".to_owned()];
    accounts(&mut app, &ids).await;
    let receiver = WebhookReceiver::verifying(WEBHOOK_SECRET).await;
    playbook(&mut app, hook("signed", &receiver.url)).await;
    let run = start(&mut app, "signed", &ids).await.runs.remove(0);
    run_in_state(&app, &run.run_id, pb::RunState::Completed).await;
    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 1, "{:?}", receiver.deliveries());
    let delivery = &accepted[0];

    // The same request again, as an attacker who captured it would send it.
    let replay = |timestamp: String, signature: String| {
        let url = receiver.url.clone();
        let id = delivery.delivery_id.clone();
        let body = delivery.body.clone();
        async move {
            let headers = [
                ("x-tenure-delivery", id.as_str()),
                ("x-tenure-timestamp", timestamp.as_str()),
                ("x-tenure-signature", signature.as_str()),
            ];
            post(&url, &headers, &body).await
        }
    };
    assert_eq!(
        replay(delivery.timestamp.clone(), delivery.signature.clone()).await,
        409,
        "a delivery accepted before is refused"
    );
    let fresh = (chrono::Utc::now() + chrono::Duration::seconds(1))
        .timestamp()
        .to_string();
    assert_eq!(
        replay(fresh, delivery.signature.clone()).await,
        401,
        "a new timestamp breaks the signature"
    );
    app.stop().await;
}

#[tokio::test]
async fn webhooks_need_a_signing_secret() {
    let mut app = stack(None, 3).await;
    playbook(
        &mut app,
        hook("signed-before", "https://hooks.example.com/x"),
    )
    .await;

    // Restarted without the key, the service will not run the webhook
    // playbooks it holds (unsigned deliveries, or every one failing).
    let addr = app.stack.stop_service("playbooks").await.unwrap();
    app.stack.set_setting("PLAYBOOKS_WEBHOOK_SECRET", "");
    let refused = app
        .stack
        .restart_service("playbooks", addr)
        .await
        .expect_err("no start with webhooks and no key");
    assert!(
        format!("{refused:#}").contains("PLAYBOOKS_WEBHOOK_SECRET"),
        "{refused:#}"
    );
    app.stack
        .set_setting("PLAYBOOKS_WEBHOOK_SECRET", "too short");
    let weak = app
        .stack
        .restart_service("playbooks", addr)
        .await
        .unwrap_err();
    assert!(
        format!("{weak:#}").contains("at least 16 bytes"),
        "{weak:#}"
    );
    app.stop().await;

    let app = TestStack::spawn_with(|options| {
        options
            .settings
            .insert("PLAYBOOKS_WEBHOOK_SECRET".into(), String::new());
    })
    .await;
    let created = app
        .playbooks
        .clone()
        .create_playbook(pb::CreatePlaybookRequest {
            definition: hook("unsigned", "https://hooks.example.com/x").to_string(),
            format: pb::DefinitionFormat::Json as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(created.code(), tonic::Code::FailedPrecondition);
    assert!(created.message().contains("PLAYBOOKS_WEBHOOK_SECRET"));
    app.stop().await;
}
