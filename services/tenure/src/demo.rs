//! `tenure demo`: walks a running stack through a day of customer data and
//! prints what each service answers.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context as _;
use chrono::{Days, NaiveDate, Utc};
use tenure_platform::client::{TracedChannel, channel};
use tenure_platform::config::PeerConfig;
use tenure_platform::time::{to_date, to_timestamp};
use tenure_proto::common::v1::{DateRange, Money};
use tenure_proto::health::v1::GetAccountHealthRequest;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::ingestion::v1::{
    Account, BatchUpsertAccountsRequest, BatchUpsertContactsRequest,
    BatchUpsertSubscriptionsRequest, Contact, ContactRole, LifecycleStage, ListAccountsRequest,
    Subscription, SubscriptionStatus,
};
use tenure_proto::playbooks::v1::playbooks_service_client::PlaybooksServiceClient;
use tenure_proto::playbooks::v1::{CreatePlaybookRequest, DefinitionFormat, ListTasksRequest};
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;
use tenure_proto::renewals::v1::{
    ChurnReason, ForecastRenewalsRequest, ListRenewalOutcomesRequest, OutcomeKind,
    RecordRenewalOutcomeRequest, RenewalOutcome, RunRenewalSweepRequest,
    SummarizeRenewalPipelineRequest,
};

const PLAYBOOK: &str = r#"{
  "name": "sponsor-changed", "title": "New sponsor: re-onboard",
  "trigger": {"type": "sponsor_changed"},
  "steps": [
    {"id": "intro", "type": "task", "title": "Meet {{account.name}}'s new sponsor", "assignee": "owner", "due_in_days": 5, "next": "healthy"},
    {"id": "healthy", "type": "branch", "condition": {"band": "green"}, "then": "done", "else": "review"},
    {"id": "review", "type": "task", "title": "Plan a value review with {{account.name}}", "assignee": "owner", "due_in_days": 14, "next": "done"},
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
    ];
    // Then an older copy of Acme from a slow source: it must not win.
    let stale_copy = vec![account(
        "acme",
        "ACME (stale CRM copy)",
        "smb",
        "nobody",
        LifecycleStage::Churned,
        9,
    )];
    let mut summaries = Vec::new();
    for (batch, accounts) in [("accounts", accounts), ("stale-copy", stale_copy)] {
        let upserted = ingestion
            .batch_upsert_accounts(BatchUpsertAccountsRequest {
                request_id: format!("demo-{batch}-{run_id}"),
                accounts,
            })
            .await
            .context("upserting accounts")?
            .into_inner();
        summaries.push(upserted.summary.unwrap_or_default());
    }
    writeln!(
        out,
        "ingestion  BatchUpsertAccounts: {} applied; then an older copy of acme: {} applied, {} stale (ignored)",
        summaries[0].applied_count, summaries[1].applied_count, summaries[1].stale_count
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

    sponsor_change(&mut ingestion, &mut playbooks, &mut out, now).await?;
    pipeline(&mut ingestion, &mut renewals, &mut out, now).await?;
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

/// Acme's sponsor leaves and another takes over: playbooks re-onboards.
async fn sponsor_change(
    ingestion: &mut IngestionServiceClient<TracedChannel>,
    playbooks: &mut PlaybooksServiceClient<TracedChannel>,
    out: &mut String,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let contact = |id: &str, active: bool, age_days: u64| Contact {
        contact_id: id.to_owned(),
        account_id: "acme".to_owned(),
        email: format!("{id}@acme.example"),
        name: id.to_owned(),
        title: "VP Operations".to_owned(),
        roles: vec![ContactRole::EconomicSponsor as i32],
        active,
        updated_at: Some(to_timestamp(now - Days::new(age_days))),
    };
    for contacts in [
        vec![contact("pat", true, 60)],
        vec![contact("pat", false, 0), contact("sam", true, 0)],
    ] {
        ingestion
            .batch_upsert_contacts(BatchUpsertContactsRequest {
                request_id: String::new(),
                contacts,
            })
            .await
            .context("upserting contacts")?;
    }
    for _ in 0..100 {
        let tasks = playbooks
            .list_tasks(ListTasksRequest {
                account_id: "acme".into(),
                ..Default::default()
            })
            .await?
            .into_inner()
            .tasks;
        if tasks.len() >= 2 {
            for task in tasks {
                writeln!(
                    out,
                    "playbooks  task for {} due {}: {}",
                    task.assignee,
                    task.due_date
                        .map(|d| format!("{:04}-{:02}-{:02}", d.year, d.month, d.day))
                        .unwrap_or_default(),
                    task.title
                )?;
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the sponsor change did not start the playbook")
}

/// Subscriptions coming up for renewal: the pipeline and its forecast.
async fn pipeline(
    ingestion: &mut IngestionServiceClient<TracedChannel>,
    renewals: &mut RenewalsServiceClient<TracedChannel>,
    out: &mut String,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let today = now.date_naive();
    let subscription = |account: &str, arr: i64, days_left: u64| Subscription {
        subscription_id: format!("{account}-main"),
        account_id: account.to_owned(),
        status: SubscriptionStatus::Active as i32,
        term_start: Some(to_date(today + Days::new(days_left) - Days::new(365))),
        term_end: Some(to_date(today + Days::new(days_left))),
        arr: Some(Money {
            currency_code: "USD".into(),
            amount_minor: arr * 100,
        }),
        seats: 25,
        auto_renew: false,
        line_items: Vec::new(),
        updated_at: Some(to_timestamp(now - Days::new(200))),
    };
    ingestion
        .batch_upsert_subscriptions(BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: vec![
                subscription("acme", 120_000, 75),
                subscription("globex", 150_000, 25),
                subscription("initech", 40_000, 200),
                subscription("umbrella", 12_000, 10),
            ],
        })
        .await
        .context("upserting subscriptions")?;
    let window = Some(DateRange {
        start: Some(to_date(today)),
        end: Some(to_date(today + Days::new(365))),
    });
    for _ in 0..100 {
        let summary = renewals
            .summarize_renewal_pipeline(SummarizeRenewalPipelineRequest {
                window,
                ..Default::default()
            })
            .await?
            .into_inner();
        if summary.total_count == 4 {
            let dollars =
                |m: &Option<Money>| m.as_ref().map_or(0.0, |m| m.amount_minor as f64 / 100.0);
            writeln!(
                out,
                "renewals   pipeline, next 365 days: {} renewals, ARR {:.0} up for renewal",
                summary.total_count,
                dollars(&summary.total_arr)
            )?;
            let forecast = renewals
                .forecast_renewals(ForecastRenewalsRequest {
                    window,
                    ..Default::default()
                })
                .await?
                .into_inner()
                .totals
                .unwrap_or_default();
            writeln!(
                out,
                "renewals   forecast: expected ARR {:.0} (90 % interval {:.0} to {:.0}), best case {:.0}",
                dollars(&forecast.expected_arr),
                dollars(&forecast.interval_low),
                dollars(&forecast.interval_high),
                dollars(&forecast.best_case)
            )?;
            let swept = renewals
                .run_renewal_sweep(RunRenewalSweepRequest { as_of: None })
                .await?
                .into_inner();
            writeln!(
                out,
                "renewals   sweep: {} renewal-approaching events queued for playbooks",
                swept.emitted_count
            )?;
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("renewals did not pick up the subscriptions")
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
