//! Playbook runs end to end: real webhook receivers and an SMTP sink,
//! retries and dead letters, a killed service, two replicas, tasks that
//! wake waiting runs, cooldowns and the weekly email cap.
//!
//! - [`delivery`]: webhooks once each, through retries, crashes and replicas,
//!   only to permitted destinations, signed.
//! - [`tasks_and_emails`]: tasks that wake waiting runs, cooldowns, the email cap.
//! - [`batches`]: steps recorded together, one failing alone; how claims find runs.
//! - [`definitions`]: validation and dry runs.
//! - [`triggers`]: what starts runs, and the traces they run in.

mod batches;
mod definitions;
mod delivery;
mod destinations;
mod tasks_and_emails;
mod triggers;

use std::time::Duration;

use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::playbooks::v1 as pb;
use tenure_tests::receivers::SmtpSink;
use tenure_tests::{TestStack, eventually};

use crate::fixtures::{days_ago, ts};

/// The key the test stacks sign webhook deliveries with.
pub(super) const WEBHOOK_SECRET: &str = "test-webhook-signing-secret";

pub(super) async fn stack(smtp: Option<&SmtpSink>, email_cap: u32) -> TestStack {
    let smtp = smtp.map(|s| s.url.clone());
    TestStack::spawn_with(|options| {
        let settings = &mut options.settings;
        settings.insert("PLAYBOOKS_RETRY_BASE".into(), "50ms".into());
        settings.insert("PLAYBOOKS_RETRY_CAP".into(), "200ms".into());
        settings.insert("PLAYBOOKS_MAX_ATTEMPTS".into(), "4".into());
        settings.insert("PLAYBOOKS_CONDITION_POLL".into(), "100ms".into());
        settings.insert("PLAYBOOKS_WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
        settings.insert("PLAYBOOKS_WEBHOOK_ALLOW".into(), "127.0.0.1/32".into());
        settings.insert("PLAYBOOKS_EMAIL_WEEKLY_CAP".into(), email_cap.to_string());
        if let Some(url) = smtp {
            settings.insert("PLAYBOOKS_SMTP_URL".into(), url);
        }
    })
    .await
}

pub(super) async fn accounts(app: &mut TestStack, ids: &[String]) {
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

pub(super) async fn playbook(app: &mut TestStack, definition: serde_json::Value) {
    app.playbook(&definition).await;
}

pub(super) async fn start(
    app: &mut TestStack,
    name: &str,
    ids: &[String],
) -> pb::StartRunsResponse {
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
pub(super) async fn runs_of(
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

pub(super) async fn run_in_state(app: &TestStack, run_id: &str, state: pb::RunState) -> pb::Run {
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
