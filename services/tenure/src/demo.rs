//! `tenure demo`: walks a running stack through a day of customer data and
//! prints what each service answers.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{Days, NaiveDate, Utc};
use tenure_platform::client::{TracedChannel, channel};
use tenure_platform::config::PeerConfig;
use tenure_platform::time::{to_date, to_timestamp};
use tenure_proto::common::v1::Money;
use tenure_proto::health::v1::GetAccountHealthRequest;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::ingestion::v1::{
    Account, BatchUpsertAccountsRequest, LifecycleStage, ListAccountsRequest,
};
use tenure_proto::playbooks::v1::playbooks_service_client::PlaybooksServiceClient;
use tenure_proto::playbooks::v1::{CreatePlaybookRequest, DefinitionFormat};
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;
use tenure_proto::renewals::v1::{
    ChurnReason, ListRenewalOutcomesRequest, OutcomeKind, RecordRenewalOutcomeRequest,
    RenewalOutcome,
};

const PLAYBOOK: &str = r#"{
  "name": "sponsor-changed", "title": "New sponsor: re-onboard",
  "trigger": {"type": "sponsor_changed"},
  "steps": [
    {"id": "intro", "type": "task", "title": "Meet the new sponsor", "assignee": "owner", "due_in_days": 5, "next": "recap"},
    {"id": "recap", "type": "email", "to_role": "sponsor", "template": "value-recap", "next": "done"},
    {"id": "done", "type": "end"}
  ]
}"#;

/// Runs the demo against the services at `peers`; returns the transcript.
pub async fn run(peers: &PeerConfig) -> anyhow::Result<String> {
    let mut ingestion = IngestionServiceClient::new(channel(&peers.ingestion_url)?);
    let mut health = HealthServiceClient::new(channel(&peers.health_url)?);
    let mut renewals = RenewalsServiceClient::new(channel(&peers.renewals_url)?);
    let mut playbooks = PlaybooksServiceClient::new(channel(&peers.playbooks_url)?);
    let mut out = String::new();
    let now = Utc::now();
    let run_id = now.timestamp_millis();

    let account =
        |id: &str, name: &str, segment: &str, owner: &str, stage: LifecycleStage, age_days: u64| {
            Account {
                account_id: id.to_owned(),
                name: name.to_owned(),
                segment: segment.to_owned(),
                industry: "software".to_owned(),
                owner: owner.to_owned(),
                parent_account_id: String::new(),
                lifecycle_stage: stage as i32,
                updated_at: Some(to_timestamp(now - Days::new(age_days))),
                attributes: Default::default(),
            }
        };
    let accounts = vec![
        account(
            "acme",
            "Acme Corp",
            "enterprise",
            "dana",
            LifecycleStage::Mature,
            1,
        ),
        account(
            "globex",
            "Globex",
            "enterprise",
            "dana",
            LifecycleStage::Renewing,
            1,
        ),
        account(
            "initech",
            "Initech",
            "mid-market",
            "lee",
            LifecycleStage::Adopting,
            1,
        ),
        account(
            "umbrella",
            "Umbrella",
            "smb",
            "lee",
            LifecycleStage::Onboarding,
            1,
        ),
        // An older copy of Acme from a slow source: must not win.
        account(
            "acme",
            "ACME (stale CRM copy)",
            "smb",
            "nobody",
            LifecycleStage::Churned,
            9,
        ),
    ];
    let upserted = ingestion
        .batch_upsert_accounts(BatchUpsertAccountsRequest {
            request_id: format!("demo-accounts-{run_id}"),
            accounts,
        })
        .await
        .context("upserting accounts")?
        .into_inner();
    let summary = upserted.summary.unwrap_or_default();
    writeln!(
        out,
        "ingestion  BatchUpsertAccounts: {} applied, {} stale (an older copy of acme was ignored)",
        summary.applied_count, summary.stale_count
    )?;

    let listed = ingestion
        .list_accounts(ListAccountsRequest {
            segment: "enterprise".into(),
            page_size: 10,
            ..Default::default()
        })
        .await?
        .into_inner();
    let names: Vec<_> = listed
        .accounts
        .iter()
        .map(|a| format!("{} ({})", a.name, a.owner))
        .collect();
    writeln!(
        out,
        "ingestion  ListAccounts segment=enterprise: {}",
        names.join(", ")
    )?;

    // The outbox tells health about the change; health asks ingestion who acme is.
    let mut pending = false;
    for _ in 0..50 {
        let answer = health
            .get_account_health(GetAccountHealthRequest {
                account_id: "acme".into(),
            })
            .await
            .context("asking health about acme")?
            .into_inner();
        if answer.rescore_pending {
            writeln!(
                out,
                "health     GetAccountHealth acme: {} [{}], rescore pending (notified through the outbox)",
                answer.account_name, answer.segment
            )?;
            pending = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(pending, "health was not notified of the account changes");

    let playbook = playbooks
        .create_playbook(CreatePlaybookRequest {
            request_id: format!("demo-playbook-{run_id}"),
            definition: PLAYBOOK.to_owned(),
            format: DefinitionFormat::Json as i32,
        })
        .await?
        .into_inner()
        .playbook
        .context("playbook missing")?;
    writeln!(
        out,
        "playbooks  CreatePlaybook: {} v{} \"{}\" with {} steps",
        playbook.name, playbook.version, playbook.title, playbook.step_count
    )?;

    record_outcomes(&mut renewals, &mut out, run_id).await?;

    let bad = ingestion
        .batch_upsert_accounts(BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![Account {
                account_id: "x".into(),
                ..Default::default()
            }],
        })
        .await;
    if let Err(status) = bad {
        writeln!(
            out,
            "ingestion  a bad batch is refused whole: {:?}: {}",
            status.code(),
            status.message()
        )?;
    }
    Ok(out)
}

async fn record_outcomes(
    renewals: &mut RenewalsServiceClient<TracedChannel>,
    out: &mut String,
    run_id: i64,
) -> anyhow::Result<()> {
    let usd = |minor: i64| Money {
        currency_code: "USD".into(),
        amount_minor: minor,
    };
    let term_end = NaiveDate::from_ymd_opt(2026, 9, 30).context("date")?;
    let outcomes = [
        (
            "globex",
            OutcomeKind::Renewed,
            120_000 * 100,
            150_000 * 100,
            ChurnReason::Unspecified,
        ),
        (
            "umbrella",
            OutcomeKind::Churned,
            12_000 * 100,
            0,
            ChurnReason::LostSponsor,
        ),
    ];
    for (account, kind, previous, new, reason) in outcomes {
        renewals
            .record_renewal_outcome(RecordRenewalOutcomeRequest {
                request_id: format!("demo-outcome-{account}-{run_id}"),
                outcome: Some(RenewalOutcome {
                    account_id: account.into(),
                    subscription_id: format!("{account}-sub-{run_id}"),
                    term_end_date: Some(to_date(term_end)),
                    kind: kind as i32,
                    previous_arr: Some(usd(previous)),
                    new_arr: Some(usd(new)),
                    churn_reason: reason as i32,
                    decided_on: Some(to_date(term_end)),
                    ..Default::default()
                }),
            })
            .await
            .with_context(|| format!("recording the outcome of {account}"))?;
    }
    let listed = renewals
        .list_renewal_outcomes(ListRenewalOutcomesRequest {
            page_size: 5,
            ..Default::default()
        })
        .await?
        .into_inner();
    for outcome in listed.outcomes.iter().take(2) {
        let arr = |m: &Option<Money>| {
            m.as_ref()
                .map(|m| m.amount_minor as f64 / 100.0)
                .unwrap_or_default()
        };
        writeln!(
            out,
            "renewals   outcome {}: {} ARR {:.2} -> {:.2} {}",
            outcome.account_id,
            outcome.kind().as_str_name(),
            arr(&outcome.previous_arr),
            arr(&outcome.new_arr),
            if outcome.churn_reason() == ChurnReason::Unspecified {
                ""
            } else {
                outcome.churn_reason().as_str_name()
            },
        )?;
    }
    Ok(())
}
