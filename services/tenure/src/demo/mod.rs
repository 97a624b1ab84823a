//! `tenure demo`: generates a customer base, loads it through the APIs,
//! lets every service work on it, and reports what a customer-success
//! leader wants to know first.
//!
//! The steps: generate ([`crate::generate`]), import, configure a
//! scorecard and three playbooks (their webhooks go to a receiver of the
//! demo's own on loopback), train the churn model, score every account,
//! backtest the scorecard, wait for renewals to take in every subscription,
//! sweep for approaching renewals, and read back health, retention,
//! forecasts, cohorts and what the playbooks did.

pub(crate) mod figures;
mod render;
pub(crate) mod setup;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{Months, NaiveDate};
use tenure_platform::client::TracedChannel;
use tenure_platform::config::PeerConfig;
use tenure_platform::time::to_date;
use tenure_proto::health::v1 as hpb;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::playbooks::v1 as ppb;
use tenure_proto::playbooks::v1::playbooks_service_client::PlaybooksServiceClient;
use tenure_proto::renewals::v1 as rpb;
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;

pub use figures::{
    AtRisk, Forecast, Health, Retention, band_name, minor, next_quarters, past_quarters,
};

use crate::generate;
use crate::receivers::WebhookReceiver;

/// What to generate and load.
#[derive(Clone, Debug)]
pub struct Options {
    pub accounts: usize,
    pub years: u32,
    pub seed: u64,
    /// Where the generated files go.
    pub dir: PathBuf,
    /// Say what is happening on standard error, with progress bars.
    pub progress: bool,
    /// The playbooks' webhook signing secret: the demo's receiver verifies
    /// every delivery with it, as a receiver should.
    pub webhook_secret: String,
}

pub(crate) struct Clients {
    pub(crate) ingestion: IngestionServiceClient<TracedChannel>,
    pub(crate) health: HealthServiceClient<TracedChannel>,
    pub(crate) renewals: RenewalsServiceClient<TracedChannel>,
    pub(crate) playbooks: PlaybooksServiceClient<TracedChannel>,
}

impl Clients {
    pub(crate) fn connect(peers: &PeerConfig) -> anyhow::Result<Self> {
        Ok(Self {
            ingestion: IngestionServiceClient::new(peers.channel(&peers.ingestion_url)?),
            health: HealthServiceClient::new(peers.channel(&peers.health_url)?),
            renewals: RenewalsServiceClient::new(peers.channel(&peers.renewals_url)?),
            playbooks: PlaybooksServiceClient::new(peers.channel(&peers.playbooks_url)?),
        })
    }
}

/// Everything the demo found, each figure as the APIs answered it.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub as_of: Option<NaiveDate>,
    pub accounts: usize,
    /// (file, rows loaded).
    pub loaded: Vec<(String, u64)>,
    pub health: Health,
    pub model: hpb::ChurnModel,
    /// The generator's true drivers: (name, log-odds, signals).
    pub truth: Vec<(String, f64, Vec<String>)>,
    pub backtest: hpb::BacktestScorecardResponse,
    /// Surprise churns of the last year: green at the horizon, churned anyway.
    pub surprises: Vec<hpb::SurpriseChurn>,
    pub retention: Vec<Retention>,
    pub forecasts: Vec<Forecast>,
    pub cohorts: Vec<rpb::Cohort>,
    /// Service tiers and each CSM's book, as of the base's last day.
    pub coverage: rpb::GetCoverageReportResponse,
    /// Adoption, success and retention by segment and tier.
    pub three_rs: rpb::GetValueReportResponse,
    /// The accounts per level of the adoption model, as of the base's last
    /// day, per segment.
    pub maturity: hpb::GetMaturityDistributionResponse,
    /// Success plans' objectives by status, as of the base's last day.
    pub plans: figures::Plans,
    /// What past customers' first terms teach, and three prospects judged
    /// by it.
    pub prospect_model: hpb::ProspectModel,
    pub prospects: Vec<hpb::ProspectFit>,
    /// (playbook, runs started).
    pub playbook_runs: Vec<(String, usize)>,
    pub tasks_opened: usize,
    pub webhooks_received: usize,
    pub elapsed: Duration,
}

struct Steps {
    start: Instant,
    progress: bool,
}

impl Steps {
    fn say(&self, what: &str) {
        if self.progress {
            eprintln!("[{:>5.1}s] {what}", self.start.elapsed().as_secs_f64());
        }
    }
}

/// Runs the demo against the services at `peers`.
pub async fn run(peers: &PeerConfig, options: &Options) -> anyhow::Result<Report> {
    let steps = Steps {
        start: Instant::now(),
        progress: options.progress,
    };
    let mut clients = Clients::connect(peers)?;
    let config = generate::Config {
        accounts: options.accounts,
        years: options.years,
        seed: options.seed,
        as_of: generate::yesterday(),
    };
    let as_of = config.as_of;
    let mut report = Report {
        as_of: Some(as_of),
        accounts: options.accounts,
        ..Report::default()
    };
    steps.say(&format!(
        "generating {} accounts, {} years to {as_of}, seed {} in {}",
        options.accounts,
        options.years,
        options.seed,
        options.dir.display()
    ));
    generate::write(&config, &options.dir)?;
    report.truth = truth(&options.dir)?;

    steps.say("configuring the standard scorecard");
    clients
        .health
        .create_scorecard(hpb::CreateScorecardRequest {
            request_id: format!("demo-scorecard-{}", options.seed),
            scorecard: Some(setup::scorecard()),
        })
        .await
        .context("creating the scorecard")?;

    steps.say("loading the base through the APIs");
    for (kind, summary) in crate::import::base(peers, &options.dir, options.progress).await? {
        anyhow::ensure!(
            summary.rejected == 0,
            "{kind:?}: {} rows rejected (see the .rejected.jsonl file)",
            summary.rejected
        );
        report
            .loaded
            .push((format!("{kind:?}").to_lowercase(), summary.rows));
    }

    let receiver = WebhookReceiver::verifying(&options.webhook_secret).await;
    steps.say(&format!(
        "creating playbooks (webhooks to {})",
        receiver.url
    ));
    for definition in setup::playbooks(&receiver.url) {
        clients
            .playbooks
            .create_playbook(ppb::CreatePlaybookRequest {
                request_id: String::new(),
                definition,
                format: ppb::DefinitionFormat::Json as i32,
            })
            .await
            .context("creating a playbook")?;
    }

    clients
        .health
        .create_maturity_model(setup::maturity(format!("demo-maturity-{}", options.seed)))
        .await
        .context("creating the maturity model")?;

    steps.say("training the churn model on past renewals");
    report.model = train(&mut clients).await?;

    steps.say("scoring every account");
    clients
        .health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: Vec::new(),
            all_accounts: true,
        })
        .await
        .context("scoring every account")?;

    steps.say("backtesting the scorecard against past renewals");
    report.backtest = clients
        .health
        .backtest_scorecard(hpb::BacktestScorecardRequest {
            name: "standard".into(),
            version: 0,
            horizon_days: 90,
        })
        .await?
        .into_inner();
    let year_ago = as_of - Months::new(12);
    report.surprises = report
        .backtest
        .surprise_churns
        .iter()
        .filter(|s| {
            s.term_end_date
                .as_ref()
                .and_then(tenure_platform::time::from_date)
                .is_some_and(|d| d >= year_ago)
        })
        .cloned()
        .collect();

    steps.say("waiting for renewals to take in every subscription");
    settle(&mut clients, as_of, options.years).await?;
    steps.say("sweeping for renewals in the next 90 days");
    clients
        .renewals
        .run_renewal_sweep(rpb::RunRenewalSweepRequest {
            as_of: Some(to_date(as_of)),
        })
        .await?;

    steps.say("reading the maturity levels");
    report.maturity = clients
        .health
        .get_maturity_distribution(hpb::GetMaturityDistributionRequest {
            model_name: setup::MATURITY_MODEL.into(),
            as_of: Some(to_date(as_of)),
            segment: String::new(),
        })
        .await
        .context("reading the maturity distribution")?
        .into_inner();
    steps.say("learning prospect fit from first terms; scoring three prospects");
    (report.prospect_model, report.prospects) = prospect_fit(&mut clients, as_of).await?;
    steps.say("reading the success plans");
    report.plans = figures::plans(&mut clients, as_of).await?;
    steps.say("reading health, retention, forecasts, cohorts and service tiers");
    report.health = figures::health(&mut clients, 5).await?;
    report.retention = figures::retention(&mut clients, &past_quarters(as_of, 4)).await?;
    report.forecasts = figures::forecasts(&mut clients, &next_quarters(as_of, 2), as_of).await?;
    report.cohorts = figures::cohorts(&mut clients, as_of).await?;
    clients
        .renewals
        .put_coverage_model(setup::coverage(format!("demo-coverage-{}", options.seed)))
        .await
        .context("putting the coverage model")?;
    report.coverage = clients
        .renewals
        .get_coverage_report(rpb::GetCoverageReportRequest {
            as_of: Some(to_date(as_of)),
            model_version: 0,
        })
        .await?
        .into_inner();
    steps.say("reading adoption, success and retention by segment and tier");
    report.three_rs = clients
        .renewals
        .get_value_report(rpb::GetValueReportRequest {
            as_of: Some(to_date(as_of)),
            coverage_model_version: 0,
        })
        .await
        .context("reading the adoption, success and retention report")?
        .into_inner();

    steps.say("letting the playbooks run");
    tokio::time::sleep(Duration::from_secs(3)).await;
    playbook_figures(&mut clients, &receiver, &mut report).await?;
    report.elapsed = steps.start.elapsed();
    steps.say("done");
    Ok(report)
}

fn truth(dir: &std::path::Path) -> anyhow::Result<Vec<(String, f64, Vec<String>)>> {
    let text = std::fs::read_to_string(dir.join("truth.json"))?;
    let truth: serde_json::Value = serde_json::from_str(&text)?;
    Ok(truth["drivers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| {
            (
                d["name"].as_str().unwrap_or_default().to_owned(),
                d["log_odds"].as_f64().unwrap_or_default(),
                d["signals"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect(),
            )
        })
        .collect())
}

async fn train(clients: &mut Clients) -> anyhow::Result<hpb::ChurnModel> {
    let model =
        crate::model::train_and_wait(&mut clients.health, crate::model::request(90, 0.01, None))
            .await?;
    anyhow::ensure!(
        model.status() == hpb::ModelStatus::Ready,
        "the churn model failed: {}",
        model.error
    );
    Ok(model)
}

async fn prospect_fit(
    clients: &mut Clients,
    as_of: NaiveDate,
) -> anyhow::Result<(hpb::ProspectModel, Vec<hpb::ProspectFit>)> {
    let started = clients
        .health
        .train_prospect_model(hpb::TrainProspectModelRequest {
            as_of: Some(to_date(as_of)),
            ..Default::default()
        })
        .await
        .context("training prospect fit")?
        .into_inner()
        .model
        .unwrap_or_default();
    let model = crate::model::wait_for_prospect_model(&mut clients.health, started).await?;
    anyhow::ensure!(
        model.status() == hpb::ModelStatus::Ready,
        "prospect fit failed: {}",
        model.error
    );
    let fits = clients
        .health
        .score_prospects(hpb::ScoreProspectsRequest {
            model_id: model.model_id.clone(),
            prospects: setup::prospects(),
        })
        .await
        .context("scoring prospects")?
        .into_inner()
        .fits;
    Ok((model, fits))
}

/// Waits until renewals' view of the book stops changing: its retention
/// figures over the whole history, unchanged for five reads a second apart
/// (renewals takes in subscription changes in the background, in batches).
async fn settle(clients: &mut Clients, as_of: NaiveDate, years: u32) -> anyhow::Result<()> {
    let period = figures::range(
        as_of - Months::new(12 * (years + 2)),
        as_of + Months::new(1),
    );
    let (mut last, mut unchanged) = (None, 0);
    for _ in 0..600 {
        let metrics = clients
            .renewals
            .get_retention_metrics(rpb::GetRetentionMetricsRequest {
                period,
                segment: String::new(),
                currency_code: "USD".into(),
                as_of: None,
            })
            .await?
            .into_inner();
        if last.as_ref() == Some(&metrics) {
            unchanged += 1;
            if unchanged == 5 {
                return Ok(());
            }
        } else {
            unchanged = 0;
            last = Some(metrics);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    anyhow::bail!("renewals did not settle within ten minutes")
}

async fn playbook_figures(
    clients: &mut Clients,
    receiver: &WebhookReceiver,
    report: &mut Report,
) -> anyhow::Result<()> {
    for name in ["turned-red", "renewal-at-risk", "advocates"] {
        let mut count = 0;
        let mut page_token = String::new();
        loop {
            let page = clients
                .playbooks
                .list_runs(ppb::ListRunsRequest {
                    page_size: 1000,
                    page_token,
                    playbook: name.into(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            count += page.runs.len();
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        report.playbook_runs.push((name.to_owned(), count));
    }
    let mut page_token = String::new();
    loop {
        let page = clients
            .playbooks
            .list_tasks(ppb::ListTasksRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        report.tasks_opened += page.tasks.len();
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    report.webhooks_received = receiver.accepted().len();
    Ok(())
}
