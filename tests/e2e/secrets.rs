//! No secret of a run reaches its logs, its traces or the errors callers
//! see: API keys (good and forged), the webhook signing key, the database
//! roles' passwords.

use tenure_platform::auth::{Credentials, Scope, Secret};
use tenure_platform::telemetry::capture::Capture;
use tenure_proto::ingestion::v1::{BatchUpsertAccountsRequest, ListAccountsRequest};
use tenure_proto::playbooks::v1 as pb;
use tenure_tests::TestStack;
use tenure_tests::receivers::WebhookReceiver;

const WEBHOOK_SECRET: &str = "webhook-signing-secret-of-this-test";

#[tokio::test]
async fn no_secret_appears_in_logs_traces_or_errors() {
    let capture = Capture::start();
    let mut app = TestStack::spawn_with(|options| {
        let settings = &mut options.settings;
        settings.insert("PLAYBOOKS_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
        settings.insert("PLAYBOOKS_WEBHOOK_ALLOW".into(), "127.0.0.1/32".into());
    })
    .await;
    let mut errors = Vec::new();

    // Work that logs: writes, a forged key, a key out of scope, a webhook.
    app.ingestion
        .batch_upsert_accounts(BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![crate::ingestion::account("acme", "Acme", 3)],
        })
        .await
        .unwrap();
    let operator = app.stack.operator_key.expose().to_owned();
    let forged = format!("{}{}", &operator[..operator.len() - 4], "XXXX");
    let reader = app.key_with(&[Scope::Read]);
    for credentials in [
        Credentials::key(Secret::new(forged.clone())),
        reader.clone(),
    ] {
        let mut client =
            tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient::new(
                tenure_platform::client::channel(&app.stack.peers.ingestion_url, &credentials)
                    .unwrap(),
            );
        let _ = client.list_accounts(ListAccountsRequest::default()).await;
        let refused = client
            .batch_upsert_accounts(BatchUpsertAccountsRequest::default())
            .await
            .unwrap_err();
        errors.push(format!("{refused:?}"));
    }
    let receiver = WebhookReceiver::verifying(WEBHOOK_SECRET).await;
    let definition = serde_json::json!({
        "name": "hook", "title": "Hook", "trigger": {"type": "manual"},
        "steps": [
            {"id": "hook", "type": "webhook", "url": receiver.url, "next": "done"},
            {"id": "done", "type": "end"}
        ]
    });
    app.playbooks
        .create_playbook(pb::CreatePlaybookRequest {
            definition: definition.to_string(),
            format: pb::DefinitionFormat::Json as i32,
            ..Default::default()
        })
        .await
        .unwrap();
    app.playbooks
        .start_runs(pb::StartRunsRequest {
            playbook: "hook".into(),
            account_ids: vec!["acme".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let delivered = tenure_tests::eventually(std::time::Duration::from_secs(10), || async {
        (!receiver.accepted().is_empty()).then_some(())
    })
    .await;
    assert!(
        delivered.is_some(),
        "the webhook was delivered and verified"
    );

    // The secrets of this run.
    let mut secrets = vec![operator.clone(), forged.clone(), WEBHOOK_SECRET.to_owned()];
    for key in [&reader.api_key]
        .into_iter()
        .flatten()
        .map(|k| k.expose().to_owned())
    {
        secrets.push(key);
    }
    let admin = tenure_platform::db::options(&app.stack.database_url).unwrap();
    for spec in tenure::stack::SERVICES {
        if let Some(key) = app.stack.service_peers(spec.name).credentials.api_key {
            secrets.push(key.expose().to_owned());
        }
        let logins = tenure_platform::db::provision_service(&admin, spec.schema)
            .await
            .unwrap();
        secrets.extend(logins.runtime_password.map(|p| p.expose().to_owned()));
    }
    // A key's secret part alone must not appear either.
    let parts: Vec<String> = secrets
        .iter()
        .filter_map(|s| tenure_platform::auth::keys::parse(s).map(|(_, secret)| secret.to_owned()))
        .collect();
    secrets.extend(parts);

    let logs = capture.text();
    let spans = format!("{:?}", tenure_tests::spans().get_finished_spans().unwrap());
    let said = errors.join("\n");
    assert!(logs.contains("call refused"), "the refusals were logged");
    let forged_id = tenure_platform::auth::keys::parse(&forged).unwrap().0;
    assert!(logs.contains(forged_id), "refusals name the key id");
    for secret in &secrets {
        for (what, text) in [("logs", &logs), ("traces", &spans), ("errors", &said)] {
            assert!(!text.contains(secret.as_str()), "a secret is in the {what}");
        }
    }
    app.stop().await;
}
