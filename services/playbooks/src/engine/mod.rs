//! The durable run engine. Runs and their steps live in Postgres; a step
//! is executed inside the transaction that holds its row lock (`FOR UPDATE
//! SKIP LOCKED`), so any number of replicas execute each step once, and a
//! step whose runner died is picked up again. Outbound actions carry keys
//! derived from run and step (task row, email Message-ID, webhook delivery
//! id), so a retry after a crash is recognised by whoever receives it.
//!
//! - [`matcher`]: trigger events received, matched to playbooks, runs started.
//! - [`scheduler`]: evaluated triggers (schedules, usage drops, advocates).
//! - [`executor`]: due steps claimed in batches, executed, their outcomes recorded.
//! - [`actions`]: what a step does outside (a task, an email, a webhook).
//! - [`steps`]: the rows of runs and steps.

mod actions;
mod executor;
mod matcher;
mod scheduler;
mod steps;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use tenure_platform::service::{Pace, poll};
use tenure_platform::wake::Wakeups;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::facts::Peers;
use crate::plan::Plan;
use crate::store::versions as store;

pub use crate::store::states::{RunState, StepState};
pub use executor::claim_statement;
pub use matcher::Start;

/// The wake-up channels of the engine (migration `wake`): trigger events
/// arrived, steps added.
pub const TRIGGERS_CHANNEL: &str = "triggers";
pub const STEPS_CHANNEL: &str = "steps";

/// The shortest wait for a step that is due but held by another executor.
const HELD_ELSEWHERE: Duration = Duration::from_millis(200);

/// How the engine runs, from the environment.
#[derive(Clone, Debug)]
pub struct Config {
    /// Concurrent step executors (`PLAYBOOKS_WORKERS`, default 4).
    pub workers: usize,
    /// Due steps one executor takes per transaction (`PLAYBOOKS_CLAIM_BATCH`, 32).
    pub claim_batch: i64,
    /// Attempts before a step is dead-lettered (`PLAYBOOKS_MAX_ATTEMPTS`, 6).
    pub max_attempts: i32,
    /// First retry delay and cap (`PLAYBOOKS_RETRY_BASE`, 2s; `PLAYBOOKS_RETRY_CAP`, 10m).
    pub retry_base: Duration,
    pub retry_cap: Duration,
    /// How often a wait on a condition looks again (`PLAYBOOKS_CONDITION_POLL`, 15m).
    pub condition_poll: Duration,
    /// How often evaluated triggers (schedule, usage, advocates) run
    /// (`PLAYBOOKS_SCHEDULE_INTERVAL`, 1h).
    pub schedule_interval: Duration,
    /// Emails per contact per week across all playbooks (`PLAYBOOKS_EMAIL_WEEKLY_CAP`, 3).
    pub email_weekly_cap: i64,
    /// SMTP relay (`PLAYBOOKS_SMTP_URL`, e.g. smtp://relay:25); none: emails fail.
    pub smtp_url: Option<String>,
    /// Sender (`PLAYBOOKS_EMAIL_FROM`).
    pub email_from: String,
    /// Key of webhook signatures (`PLAYBOOKS_WEBHOOK_SECRET`); empty: no
    /// playbook may have a webhook step.
    pub webhook_secret: String,
    /// Networks webhooks may reach although internal (`PLAYBOOKS_WEBHOOK_ALLOW`).
    pub webhook_allow: actions::destination::Allowed,
    /// Per webhook call (`PLAYBOOKS_WEBHOOK_TIMEOUT`, 10s).
    pub webhook_timeout: Duration,
}

impl Config {
    pub fn from_settings(settings: &tenure_platform::config::Settings) -> anyhow::Result<Self> {
        let duration = |name: &str, default: &str| -> anyhow::Result<Duration> {
            let text = settings.get(name).unwrap_or_else(|| default.to_owned());
            humantime::parse_duration(&text).map_err(|e| anyhow::anyhow!("{name}: {e}"))
        };
        let number = |name: &str, default: i64| -> anyhow::Result<i64> {
            match settings.get(name) {
                Some(text) => text.parse().map_err(|e| anyhow::anyhow!("{name}: {e}")),
                None => Ok(default),
            }
        };
        Ok(Self {
            workers: number("PLAYBOOKS_WORKERS", 4)?.clamp(1, 64) as usize,
            claim_batch: number("PLAYBOOKS_CLAIM_BATCH", 32)?.clamp(1, 100),
            max_attempts: number("PLAYBOOKS_MAX_ATTEMPTS", 6)?.clamp(1, 100) as i32,
            retry_base: duration("PLAYBOOKS_RETRY_BASE", "2s")?,
            retry_cap: duration("PLAYBOOKS_RETRY_CAP", "10m")?,
            condition_poll: duration("PLAYBOOKS_CONDITION_POLL", "15m")?,
            schedule_interval: duration("PLAYBOOKS_SCHEDULE_INTERVAL", "1h")?,
            email_weekly_cap: number("PLAYBOOKS_EMAIL_WEEKLY_CAP", 3)?,
            smtp_url: settings.get("PLAYBOOKS_SMTP_URL").filter(|s| !s.is_empty()),
            email_from: settings
                .get("PLAYBOOKS_EMAIL_FROM")
                .unwrap_or_else(|| "Tenure <success@tenure.invalid>".to_owned()),
            webhook_secret: {
                let secret = settings.get("PLAYBOOKS_WEBHOOK_SECRET").unwrap_or_default();
                anyhow::ensure!(
                    secret.is_empty() || secret.len() >= crate::signature::MIN_SECRET_BYTES,
                    "PLAYBOOKS_WEBHOOK_SECRET must be at least {} bytes",
                    crate::signature::MIN_SECRET_BYTES
                );
                secret
            },
            webhook_allow: actions::destination::Allowed::parse(
                &settings.get("PLAYBOOKS_WEBHOOK_ALLOW").unwrap_or_default(),
            )?,
            webhook_timeout: duration("PLAYBOOKS_WEBHOOK_TIMEOUT", "10s")?,
        })
    }
}
/// Compiled plans by playbook name and version (versions never change).
type PlanCache = HashMap<(String, i32), Arc<Plan>>;

#[derive(Clone)]
pub struct Engine {
    pool: PgPool,
    peers: Peers,
    config: Arc<Config>,
    http: reqwest::Client,
    smtp: Option<lettre::AsyncSmtpTransport<lettre::Tokio1Executor>>,
    plans: Arc<Mutex<PlanCache>>,
    /// Notified when steps are added (by this process or, through
    /// Postgres, by any other).
    pub wakeup: Arc<Notify>,
    /// Notified when trigger events arrive.
    triggers: Arc<Notify>,
    /// How long an idle executor or matcher waits when nothing wakes it.
    idle: Duration,
}

/// Why an account was not entered.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub account_id: String,
    pub reason: String,
}

impl Engine {
    pub fn new(
        pool: PgPool,
        peers: Peers,
        mut config: Config,
        wakeups: &Wakeups,
    ) -> anyhow::Result<Self> {
        // Each executor holds a connection for its batch; leave some for
        // the API, the matcher and the schedules.
        let spare = (pool.options().get_max_connections() as usize)
            .saturating_sub(3)
            .max(1);
        if config.workers > spare {
            tracing::warn!(
                workers = config.workers,
                spare,
                "fewer playbook executors than asked: the database pool is too small for more"
            );
            config.workers = spare;
        }
        // Webhooks: names resolved through the destination guard, no
        // redirects (a public URL could send the call inward), no proxy
        // from the environment (it would resolve names the guard never sees).
        let http = reqwest::Client::builder()
            .timeout(config.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(actions::destination::GuardedResolver {
                allowed: Arc::new(config.webhook_allow.clone()),
            }))
            .build()?;
        let smtp = match &config.smtp_url {
            // Plain SMTP to a relay inside the cluster; the relay (or the
            // mesh) carries TLS onwards.
            Some(url) => {
                let parsed = reqwest::Url::parse(url)?;
                anyhow::ensure!(
                    parsed.scheme() == "smtp",
                    "PLAYBOOKS_SMTP_URL must be smtp://host:port"
                );
                let host = parsed
                    .host_str()
                    .ok_or_else(|| anyhow::anyhow!("PLAYBOOKS_SMTP_URL has no host"))?;
                Some(
                    lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous(host)
                        .port(parsed.port().unwrap_or(25))
                        .build(),
                )
            }
            None => None,
        };
        Ok(Self {
            pool,
            peers,
            config: Arc::new(config),
            http,
            smtp,
            plans: Arc::default(),
            wakeup: wakeups.channel(STEPS_CHANNEL),
            triggers: wakeups.channel(TRIGGERS_CHANNEL),
            idle: wakeups.fallback,
        })
    }

    /// Refuses a plan with a webhook step when deliveries could not be
    /// signed (no `PLAYBOOKS_WEBHOOK_SECRET`).
    pub fn check_webhooks(&self, plan: &Plan) -> Result<(), String> {
        let webhook = plan
            .steps
            .iter()
            .find(|s| matches!(s.action, crate::plan::Action::Webhook { .. }));
        match webhook {
            Some(step) if self.config.webhook_secret.is_empty() => Err(format!(
                "{} has a webhook step ({}), but webhook deliveries cannot be signed: \
                 PLAYBOOKS_WEBHOOK_SECRET is not set",
                plan.name, step.id
            )),
            _ => Ok(()),
        }
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// The compiled plan of a stored version (cached).
    pub async fn plan(&self, name: &str, version: i32) -> anyhow::Result<Arc<Plan>> {
        if let Some(plan) = self.cached_plan(name, version) {
            return Ok(plan);
        }
        self.plan_on(&mut *self.pool.acquire().await?, name, version)
            .await
    }

    fn cached_plan(&self, name: &str, version: i32) -> Option<Arc<Plan>> {
        self.plans
            .lock()
            .ok()
            .and_then(|p| p.get(&(name.to_owned(), version)).cloned())
    }

    /// [`Engine::plan`], read on `db` when not cached: for callers that
    /// hold a connection already and must not wait for a second one.
    pub async fn plan_on(
        &self,
        db: &mut PgConnection,
        name: &str,
        version: i32,
    ) -> anyhow::Result<Arc<Plan>> {
        if let Some(plan) = self.cached_plan(name, version) {
            return Ok(plan);
        }
        let stored = store::get_version(db, name, version)
            .await?
            .ok_or_else(|| anyhow::anyhow!("playbook {name} v{version} is not stored"))?;
        let mut violations = tenure_platform::Violations::default();
        let format = crate::definition::Format::from_code(i32::from(stored.format))
            .ok_or_else(|| anyhow::anyhow!("playbook {name} v{version} has an unknown format"))?;
        let (_, plan) = crate::plan::compile_document(
            &stored.definition,
            format,
            "definition",
            &mut violations,
        )
        .ok_or_else(|| anyhow::anyhow!("stored playbook {name} v{version} no longer compiles"))?;
        let plan = Arc::new(plan);
        if let Ok(mut plans) = self.plans.lock() {
            plans.insert((name.to_owned(), version), plan.clone());
        }
        Ok(plan)
    }

    /// The latest version of every playbook, compiled.
    pub async fn latest_plans(&self) -> anyhow::Result<Vec<(i32, Arc<Plan>)>> {
        self.latest_plans_on(&mut *self.pool.acquire().await?).await
    }

    /// [`Engine::latest_plans`] read on `db`.
    pub async fn latest_plans_on(
        &self,
        db: &mut PgConnection,
    ) -> anyhow::Result<Vec<(i32, Arc<Plan>)>> {
        let mut plans = Vec::new();
        for (name, version) in store::latest_versions(&mut *db).await? {
            plans.push((version, self.plan_on(db, &name, version).await?));
        }
        Ok(plans)
    }

    /// Runs `workers` executors, the trigger matcher and the schedules
    /// until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        // Dropped with this future (a stop or a crash), the set aborts them all.
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..self.config.workers {
            let engine = self.clone();
            let cancel = cancel.clone();
            tasks.spawn(async move {
                let wake = engine.wakeup.clone();
                poll(
                    &cancel,
                    engine.idle,
                    Some(&wake),
                    "executing playbook steps",
                    || async {
                        if engine.execute_batch().await? > 0 {
                            return Ok(Pace::Busy);
                        }
                        Ok(match engine.next_due().await? {
                            Some(due) => Pace::DueIn(due.max(HELD_ELSEWHERE)),
                            None => Pace::Idle,
                        })
                    },
                )
                .await
            });
        }
        let engine = self.clone();
        let matcher_cancel = cancel.clone();
        tasks.spawn(async move {
            let wake = engine.triggers.clone();
            poll(
                &matcher_cancel,
                engine.idle,
                Some(&wake),
                "matching trigger events",
                || async { engine.match_events().await.map(|n| (n > 0).into()) },
            )
            .await
        });
        let engine = self.clone();
        let interval = self.config.schedule_interval;
        tasks.spawn(async move {
            loop {
                if let Err(error) = engine.run_schedules().await {
                    tracing::warn!(error = %format!("{error:#}"), "evaluated triggers failed");
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(interval) => {}
                }
            }
        });
        while tasks.join_next().await.is_some() {}
    }
}
