//! The durable run engine. Runs and their steps live in Postgres; a step
//! is executed inside the transaction that holds its row lock (`FOR UPDATE
//! SKIP LOCKED`), so any number of replicas execute each step once, and a
//! step whose runner died is picked up again. Outbound actions carry keys
//! derived from run and step (task row, email Message-ID, webhook delivery
//! id), so a retry after a crash is recognised by whoever receives it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use sqlx::{PgConnection, PgPool};
use tenure_platform::service::poll;
use tenure_platform::trace::{capture_context, set_parent_from};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use uuid::Uuid;

use crate::facts::{Account, Peers};
use crate::plan::{Action, Plan, PlanStep, Trigger, Wait};
use crate::store;

/// How long an idle executor or matcher waits before looking again.
const IDLE: Duration = Duration::from_millis(200);

/// Step and run states as stored.
pub const PENDING: i16 = 1;
pub const DONE: i16 = 2;
pub const DEAD: i16 = 3;
pub const ACTIVE: i16 = 1;
pub const COMPLETED: i16 = 2;
pub const EXITED: i16 = 3;
pub const STALLED: i16 = 4;

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
    /// Key of webhook signatures (`PLAYBOOKS_WEBHOOK_SECRET`).
    pub webhook_secret: String,
    /// Per webhook call (`PLAYBOOKS_WEBHOOK_TIMEOUT`, 10s).
    pub webhook_timeout: Duration,
}

impl Config {
    pub fn from_settings(settings: &tenure_platform::service::Settings) -> anyhow::Result<Self> {
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
            webhook_secret: settings.get("PLAYBOOKS_WEBHOOK_SECRET").unwrap_or_default(),
            webhook_timeout: duration("PLAYBOOKS_WEBHOOK_TIMEOUT", "10s")?,
        })
    }
}

/// What a step's execution came to.
enum Outcome {
    /// Done; go to the step named, or end the run.
    Next(Option<String>, String),
    /// Not done yet: look again at `due`.
    Rearm {
        due: DateTime<Utc>,
        deadline: Option<DateTime<Utc>>,
        result: String,
    },
    /// The exit criteria hold: the run ends early.
    Exit(String),
    /// Failed; retried with backoff, dead-lettered after the last attempt.
    Fail(String),
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
    pub wakeup: Arc<Notify>,
}

#[derive(sqlx::FromRow)]
struct Due {
    run_id: Uuid,
    seq: i32,
    step_id: String,
    step_type: String,
    attempts: i32,
    armed: bool,
    deadline: Option<DateTime<Utc>>,
    due_at: DateTime<Utc>,
    playbook: String,
    version: i32,
    account_id: String,
    facts: Value,
    trace_context: Value,
}

/// Why an account was not entered.
#[derive(Debug, Clone)]
pub struct Skipped {
    pub account_id: String,
    pub reason: String,
}

impl Engine {
    pub fn new(pool: PgPool, peers: Peers, mut config: Config) -> anyhow::Result<Self> {
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
        let http = reqwest::Client::builder()
            .timeout(config.webhook_timeout)
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
            wakeup: Arc::new(Notify::new()),
        })
    }

    pub fn peers(&self) -> &Peers {
        &self.peers
    }

    /// The compiled plan of a stored version (cached).
    pub async fn plan(&self, name: &str, version: i32) -> anyhow::Result<Arc<Plan>> {
        if let Some(plan) = self
            .plans
            .lock()
            .ok()
            .and_then(|p| p.get(&(name.to_owned(), version)).cloned())
        {
            return Ok(plan);
        }
        let stored = store::get_version(&self.pool, name, version)
            .await?
            .ok_or_else(|| anyhow::anyhow!("playbook {name} v{version} is not stored"))?;
        let mut violations = tenure_platform::Violations::default();
        let format = crate::definition::Format::from_code(i32::from(stored.format))
            .ok_or_else(|| anyhow::anyhow!("playbook {name} v{version} has an unknown format"))?;
        let (_, plan) =
            crate::definition::compile(&stored.definition, format, "definition", &mut violations)
                .ok_or_else(|| {
                anyhow::anyhow!("stored playbook {name} v{version} no longer compiles")
            })?;
        let plan = Arc::new(plan);
        if let Ok(mut plans) = self.plans.lock() {
            plans.insert((name.to_owned(), version), plan.clone());
        }
        Ok(plan)
    }

    /// The latest version of every playbook, compiled.
    pub async fn latest_plans(&self) -> anyhow::Result<Vec<(i32, Arc<Plan>)>> {
        let mut plans = Vec::new();
        for (name, version) in store::latest_versions(&self.pool).await? {
            plans.push((version, self.plan(&name, version).await?));
        }
        Ok(plans)
    }

    /// Starts a run of `plan` for `account` unless one is active or the
    /// playbook's cooldown has not passed. Returns the run id if started.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_run(
        &self,
        tx: &mut PgConnection,
        plan: &Plan,
        version: i32,
        account: &Account,
        trigger: &str,
        event_id: Option<i64>,
        payload: &Value,
        trace_context: &Value,
    ) -> anyhow::Result<Result<Uuid, String>> {
        let recent: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT max(started_at) FROM playbooks.runs WHERE playbook = $1 AND account_id = $2",
        )
        .bind(&plan.name)
        .bind(&account.id)
        .fetch_one(&mut *tx)
        .await?;
        if recent.is_some_and(|at| at + plan.cooldown > Utc::now()) {
            return Ok(Err("the playbook's cooldown has not passed".to_owned()));
        }
        let run_id = Uuid::now_v7();
        let facts = json!({
            "account": account.facts(),
            "trigger": payload,
            "playbook": {"name": plan.name, "title": plan.title},
            "run": {"id": run_id.to_string()},
        });
        let inserted = sqlx::query(
            "INSERT INTO playbooks.runs (run_id, playbook, version, account_id, state, trigger_kind, \
               trigger_event_id, facts, trace_context) VALUES ($1, $2, $3, $4, 1, $5, $6, $7, $8) \
             ON CONFLICT (playbook, account_id) WHERE state IN (1, 4) DO NOTHING",
        )
        .bind(run_id)
        .bind(&plan.name)
        .bind(version)
        .bind(&account.id)
        .bind(trigger)
        .bind(event_id)
        .bind(&facts)
        .bind(trace_context)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Ok(Err("a run of this playbook is already active".to_owned()));
        }
        let Some(first) = plan.first() else {
            return Ok(Err("the playbook has no steps".to_owned()));
        };
        insert_step(tx, run_id, 1, first, Utc::now()).await?;
        self.wakeup.notify_waiters();
        Ok(Ok(run_id))
    }

    /// Matches received trigger events against the playbooks, once each.
    pub async fn match_events(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let events: Vec<(i64, String, String, Value, Value)> = sqlx::query_as(
            "SELECT id, kind, account_id, payload, trace_context FROM playbooks.trigger_events \
             WHERE matched_at IS NULL ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED",
        )
        .fetch_all(&mut *tx)
        .await?;
        if events.is_empty() {
            return Ok(0);
        }
        let plans = self.latest_plans().await?;
        for (id, kind, account_id, payload, trace_context) in &events {
            let matching: Vec<&(i32, Arc<Plan>)> = plans
                .iter()
                .filter(|(_, p)| p.trigger.kind() == kind && p.trigger.matches(payload))
                .collect();
            if matching.is_empty() {
                continue;
            }
            let Some(mut account) = self.peers.account(account_id).await? else {
                continue;
            };
            if matching.iter().any(|(_, p)| {
                p.audience.arr_min_minor.is_some() || p.audience.arr_max_minor.is_some()
            }) {
                account.arr_minor = self
                    .peers
                    .signals(account_id)
                    .await?
                    .and_then(|s| s.arr)
                    .map(|m| m.amount_minor);
            }
            for (version, plan) in matching {
                if account.outside(&plan.audience).is_some() {
                    continue;
                }
                let started = self
                    .start_run(
                        &mut tx,
                        plan,
                        *version,
                        &account,
                        kind,
                        Some(*id),
                        payload,
                        trace_context,
                    )
                    .await?;
                if let Ok(run_id) = started {
                    tracing::info!(%run_id, playbook = %plan.name, account_id, "run started");
                }
            }
        }
        let ids: Vec<i64> = events.iter().map(|e| e.0).collect();
        sqlx::query("UPDATE playbooks.trigger_events SET matched_at = now() WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        // Something happened to these accounts: runs waiting on a condition
        // look again now rather than at their next poll.
        let accounts: Vec<&str> = events.iter().map(|e| e.2.as_str()).collect();
        sqlx::query(
            "UPDATE playbooks.steps s SET due_at = now() FROM playbooks.runs r \
             WHERE r.run_id = s.run_id AND r.account_id = ANY($1) AND r.state = 1 \
               AND s.state = 1 AND s.step_type = 'wait' AND s.deadline IS NOT NULL AND s.due_at > now()",
        )
        .bind(&accounts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(events.len())
    }

    /// Evaluated triggers: a schedule over the audience, usage drops,
    /// stalled onboarding and advocates, judged on each account's current
    /// signals (and health).
    pub async fn run_schedules(&self) -> anyhow::Result<usize> {
        let plans: Vec<(i32, Arc<Plan>)> = self
            .latest_plans()
            .await?
            .into_iter()
            .filter(|(_, p)| {
                matches!(
                    p.trigger,
                    Trigger::Schedule { .. }
                        | Trigger::UsageDropped { .. }
                        | Trigger::AdvocateFound { .. }
                        | Trigger::OnboardingStalled { .. }
                )
            })
            .collect();
        if plans.is_empty() {
            return Ok(0);
        }
        // One pass over every account's signals serves all evaluated
        // playbooks; only candidates cost a call of their own.
        let mut stream = self
            .peers
            .ingestion
            .clone()
            .stream_account_signals(tenure_proto::ingestion::v1::StreamAccountSignalsRequest {
                account_ids: Vec::new(),
                as_of: None,
            })
            .await?
            .into_inner();
        let mut started = 0;
        while let Some(message) = stream.message().await? {
            let Some(signals) = message.signals else {
                continue;
            };
            let mut account: Option<Account> = None;
            for (version, plan) in &plans {
                let Some(payload) = self.evaluate(plan, &signals).await? else {
                    continue;
                };
                if account.is_none() {
                    account = self.peers.account(&signals.account_id).await?;
                }
                let Some(account) = account.as_mut() else {
                    break;
                };
                account.arr_minor = signals.arr.as_ref().map(|m| m.amount_minor);
                if account.outside(&plan.audience).is_some() {
                    continue;
                }
                let mut tx = self.pool.begin().await?;
                let context = serde_json::to_value(capture_context(&tracing::Span::current()))?;
                let kind = plan.trigger.kind();
                if self
                    .start_run(
                        &mut tx, plan, *version, account, kind, None, &payload, &context,
                    )
                    .await?
                    .is_ok()
                {
                    started += 1;
                }
                tx.commit().await?;
            }
        }
        Ok(started)
    }

    /// Whether an evaluated trigger holds for an account's signals (and,
    /// for an advocate, its health); the facts it found if so.
    async fn evaluate(
        &self,
        plan: &Plan,
        signals: &tenure_proto::ingestion::v1::AccountSignals,
    ) -> anyhow::Result<Option<Value>> {
        let audience = &plan.audience;
        let listed =
            |list: &[String], value: &str| list.is_empty() || list.iter().any(|v| v == value);
        if !listed(&audience.segments, &signals.segment)
            || !listed(&audience.owners, &signals.owner)
        {
            return Ok(None);
        }
        Ok(match &plan.trigger {
            // Low utilization in the month after the term is D days old.
            Trigger::OnboardingStalled {
                utilization_below_pct,
                days_after_start,
            } => match (
                signals.license_utilization_pct,
                signals.days_since_term_start,
            ) {
                (Some(u), Some(days))
                    if u < *utilization_below_pct
                        && (*days_after_start..*days_after_start + 30)
                            .contains(&i64::from(days)) =>
                {
                    Some(json!({"utilization_pct": u, "days_since_start": days}))
                }
                _ => None,
            },
            Trigger::UsageDropped { drop_pct } => match signals.usage_trend_pct {
                Some(t) if -t >= *drop_pct => Some(json!({"drop_pct": -t})),
                _ => None,
            },
            Trigger::AdvocateFound { min_nps } => match signals.latest_nps {
                Some(n) if i64::from(n) >= *min_nps => {
                    let band = self
                        .peers
                        .health(&signals.account_id)
                        .await?
                        .map(|(_, b)| b);
                    (band.as_deref() == Some("green")).then(|| json!({"nps": n, "band": "green"}))
                }
                _ => None,
            },
            Trigger::Schedule { every_days } => {
                let last: Option<DateTime<Utc>> = sqlx::query_scalar(
                    "SELECT max(started_at) FROM playbooks.runs WHERE playbook = $1 AND account_id = $2",
                )
                .bind(&plan.name)
                .bind(&signals.account_id)
                .fetch_one(&self.pool)
                .await?;
                let due =
                    last.is_none_or(|at| at + chrono::Duration::days(*every_days) <= Utc::now());
                due.then(|| json!({}))
            }
            _ => None,
        })
    }

    /// Executes a batch of due steps (up to `PLAYBOOKS_CLAIM_BATCH`) in one
    /// transaction: each is locked until the batch commits, and all of a
    /// batch's effects commit together. Returns how many ran.
    pub async fn execute_batch(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let batch: Vec<Due> = sqlx::query_as(
            "WITH next AS ( \
               SELECT s.run_id, s.seq FROM playbooks.steps s JOIN playbooks.runs r USING (run_id) \
               WHERE s.state = 1 AND s.due_at <= now() AND r.state = 1 \
               ORDER BY s.due_at LIMIT $1 FOR UPDATE OF s SKIP LOCKED) \
             UPDATE playbooks.steps s SET picked_at = clock_timestamp() FROM next, playbooks.runs r \
             WHERE s.run_id = next.run_id AND s.seq = next.seq AND r.run_id = s.run_id \
             RETURNING s.run_id, s.seq, s.step_id, s.step_type, s.attempts, \
               s.started_at IS NOT NULL AS armed, s.deadline, s.due_at, r.playbook, r.version, \
               r.account_id, r.facts, r.trace_context",
        )
        .bind(self.config.claim_batch)
        .fetch_all(&mut *tx)
        .await?;
        let count = batch.len();
        let now = Utc::now();
        for due in &batch {
            let late = (now - due.due_at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::histogram!("playbook_step_delay_seconds", "step_type" => due.step_type.clone())
                .record(late);
        }
        // First, for the whole batch at once: exit criteria, and every
        // webhook called, so one slow endpoint does not hold up the others.
        let spans: Vec<tracing::Span> = batch.iter().map(step_span).collect();
        let prepared = futures::future::join_all(
            batch
                .iter()
                .zip(&spans)
                .map(|(due, span)| self.prepare(due).instrument(span.clone())),
        )
        .await;
        // Then, in order, inside the transaction that holds the steps: each
        // step in a savepoint of its own, so a step whose recording fails
        // is rolled back alone and counted as a failed attempt, and the rest
        // of the batch commits.
        for ((due, span), prepared) in batch.iter().zip(spans).zip(prepared) {
            let done: anyhow::Result<()> = async {
                let (plan, early) = prepared?;
                let Some(step) = plan.step(&due.step_id) else {
                    anyhow::bail!(
                        "step {} is not in {} v{}",
                        due.step_id,
                        due.playbook,
                        due.version
                    );
                };
                let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
                let outcome = match early {
                    Some(outcome) => outcome,
                    None => self.execute(&mut savepoint, &plan, step, due).await,
                };
                self.record(&mut savepoint, &plan, due, step, outcome)
                    .await?;
                savepoint.commit().await?;
                Ok(())
            }
            .instrument(span)
            .await;
            if let Err(error) = done {
                self.fail_step(&mut tx, due, &format!("{error:#}")).await?;
            }
        }
        tx.commit().await?;
        Ok(count)
    }

    /// What can be settled before the transaction's statements: the exit
    /// criteria and a webhook's call. `None`: execute in the transaction.
    async fn prepare(&self, due: &Due) -> anyhow::Result<(Arc<Plan>, Option<Outcome>)> {
        let plan = self.plan(&due.playbook, due.version).await?;
        let Some(step) = plan.step(&due.step_id) else {
            return Ok((plan, None));
        };
        let early = match self.exit_criteria_met(&plan, step, due).await {
            Ok(true) => Some(Outcome::Exit("exit criteria met".to_owned())),
            Err(error) => Some(Outcome::Fail(format!("{error:#}"))),
            Ok(false) => match &step.action {
                Action::Webhook { url } => {
                    Some(match self.call_webhook(&plan, step, due, url).await {
                        Ok(status) => Outcome::Next(step.next.clone(), status),
                        Err(error) => Outcome::Fail(format!("{error:#}")),
                    })
                }
                _ => None,
            },
        };
        Ok((plan, early))
    }

    async fn exit_criteria_met(
        &self,
        plan: &Plan,
        step: &PlanStep,
        due: &Due,
    ) -> anyhow::Result<bool> {
        let Some(exit) = &plan.exit_when else {
            return Ok(false);
        };
        if matches!(step.action, Action::End) {
            return Ok(false);
        }
        let current = self
            .peers
            .current(&self.pool, &due.account_id, Some(due.run_id), &[exit])
            .await?;
        Ok(current.holds(exit))
    }

    async fn execute(
        &self,
        tx: &mut PgConnection,
        plan: &Plan,
        step: &PlanStep,
        due: &Due,
    ) -> Outcome {
        let result = match &step.action {
            Action::End => Ok(Outcome::Next(None, "ended".to_owned())),
            Action::Task {
                assignee,
                title,
                body,
                due_in_days,
                priority,
            } => self
                .create_task(
                    tx,
                    due,
                    assignee,
                    &title.render(&due.facts),
                    &body.render(&due.facts),
                    *due_in_days,
                    priority,
                )
                .await
                .map(|created| Outcome::Next(step.next.clone(), created)),
            Action::Email {
                to_role,
                subject,
                body,
            } => self
                .send_email(
                    tx,
                    due,
                    to_role,
                    &subject.render(&due.facts),
                    &body.render(&due.facts),
                )
                .await
                .map(|sent| Outcome::Next(step.next.clone(), sent)),
            Action::Webhook { url } => self
                .call_webhook(plan, step, due, url)
                .await
                .map(|status| Outcome::Next(step.next.clone(), status)),
            Action::Wait(wait) => self.wait(step, due, wait).await,
            Action::Branch(condition) => self
                .peers
                .current(&self.pool, &due.account_id, Some(due.run_id), &[condition])
                .await
                .map(|current| {
                    if current.holds(condition) {
                        Outcome::Next(step.then.clone(), "then".to_owned())
                    } else {
                        Outcome::Next(step.otherwise.clone(), "else".to_owned())
                    }
                }),
        };
        result.unwrap_or_else(|error| Outcome::Fail(format!("{error:#}")))
    }

    async fn wait(&self, step: &PlanStep, due: &Due, wait: &Wait) -> anyhow::Result<Outcome> {
        let now = Utc::now();
        Ok(match wait {
            Wait::For(duration) if !due.armed => Outcome::Rearm {
                due: now + chrono::Duration::from_std(*duration)?,
                deadline: None,
                result: "waiting".to_owned(),
            },
            Wait::Until(day) if !due.armed => Outcome::Rearm {
                due: day.and_time(chrono::NaiveTime::MIN).and_utc().max(now),
                deadline: None,
                result: "waiting".to_owned(),
            },
            Wait::For(_) | Wait::Until(_) => Outcome::Next(step.next.clone(), "waited".to_owned()),
            Wait::Condition { condition, timeout } => {
                let current = self
                    .peers
                    .current(&self.pool, &due.account_id, Some(due.run_id), &[condition])
                    .await?;
                let deadline = match due.deadline {
                    Some(deadline) => deadline,
                    None => now + chrono::Duration::from_std(*timeout)?,
                };
                if current.holds(condition) {
                    Outcome::Next(step.next.clone(), "condition met".to_owned())
                } else if now >= deadline {
                    match &step.on_timeout {
                        Some(target) => Outcome::Next(Some(target.clone()), "timed out".to_owned()),
                        None => Outcome::Exit("timed out waiting".to_owned()),
                    }
                } else {
                    Outcome::Rearm {
                        due: (now + chrono::Duration::from_std(self.config.condition_poll)?)
                            .min(deadline),
                        deadline: Some(deadline),
                        result: "waiting for the condition".to_owned(),
                    }
                }
            }
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_task(
        &self,
        tx: &mut PgConnection,
        due: &Due,
        assignee: &str,
        title: &str,
        body: &str,
        due_in_days: u32,
        priority: &str,
    ) -> anyhow::Result<String> {
        let assignee = if assignee == "owner" {
            due.facts
                .pointer("/account/owner")
                .and_then(Value::as_str)
                .filter(|o| !o.is_empty())
                .unwrap_or("queue:unassigned")
                .to_owned()
        } else {
            assignee.to_owned()
        };
        sqlx::query(
            "INSERT INTO playbooks.tasks (task_id, run_id, seq, account_id, assignee, title, body, priority, due_on) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, current_date + $9) ON CONFLICT (run_id, seq) DO NOTHING",
        )
        .bind(Uuid::now_v7())
        .bind(due.run_id)
        .bind(due.seq)
        .bind(&due.account_id)
        .bind(&assignee)
        .bind(title)
        .bind(body)
        .bind(priority)
        .bind(due_in_days as i32)
        .execute(&mut *tx)
        .await?;
        Ok(format!("task for {assignee}"))
    }

    async fn send_email(
        &self,
        tx: &mut PgConnection,
        due: &Due,
        role: &str,
        subject: &str,
        body: &str,
    ) -> anyhow::Result<String> {
        let Some(smtp) = &self.smtp else {
            anyhow::bail!("no SMTP relay is configured (PLAYBOOKS_SMTP_URL)");
        };
        let recipients = self.peers.contacts(&due.account_id, role).await?;
        if recipients.is_empty() {
            return Ok(format!("no active {role} to email"));
        }
        let (mut sent, mut capped) = (0, 0);
        for (email, name) in recipients {
            // One decision at a time per recipient, across replicas. Never
            // waited for (two batches could wait on each other): a busy
            // recipient makes the step try again shortly, and what was
            // already sent stays recorded.
            let free: bool =
                sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtextextended($1, 1))")
                    .bind(&email)
                    .fetch_one(&mut *tx)
                    .await?;
            anyhow::ensure!(free, "another email to {email} is being decided");
            let message_id = format!("<{}.{}.{}@tenure>", due.run_id, due.seq, short_hash(&email));
            let already: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM playbooks.emails WHERE message_id = $1)",
            )
            .bind(&message_id)
            .fetch_one(&mut *tx)
            .await?;
            if already {
                sent += 1;
                continue;
            }
            let this_week: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM playbooks.emails WHERE recipient = $1 AND sent_at > now() - interval '7 days'",
            )
            .bind(&email)
            .fetch_one(&mut *tx)
            .await?;
            if this_week >= self.config.email_weekly_cap {
                capped += 1;
                continue;
            }
            let Ok(address) = email.parse::<lettre::Address>() else {
                tracing::warn!(%email, "skipping a contact whose address cannot be mailed");
                continue;
            };
            let to =
                lettre::message::Mailbox::new((!name.is_empty()).then(|| name.clone()), address);
            let message = lettre::Message::builder()
                .from(self.config.email_from.parse()?)
                .to(to)
                .subject(subject)
                .message_id(Some(message_id.clone()))
                .body(body.to_owned())?;
            lettre::AsyncTransport::send(smtp, message).await?;
            sqlx::query(
                "INSERT INTO playbooks.emails (message_id, run_id, seq, account_id, recipient, subject) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&message_id)
            .bind(due.run_id)
            .bind(due.seq)
            .bind(&due.account_id)
            .bind(&email)
            .bind(subject)
            .execute(&mut *tx)
            .await?;
            sent += 1;
        }
        Ok(format!("emailed {sent}, capped {capped}"))
    }

    async fn call_webhook(
        &self,
        plan: &Plan,
        step: &PlanStep,
        due: &Due,
        url: &str,
    ) -> anyhow::Result<String> {
        let delivery_id = format!("{}:{}", due.run_id, due.seq);
        let body = serde_json::to_vec(&json!({
            "delivery_id": delivery_id,
            "playbook": plan.name,
            "version": due.version,
            "run_id": due.run_id,
            "step_id": step.id,
            "account": due.facts.get("account"),
            "trigger": due.facts.get("trigger"),
        }))?;
        let mut mac = Hmac::<Sha256>::new_from_slice(self.config.webhook_secret.as_bytes())
            .map_err(|e| anyhow::anyhow!("webhook key: {e}"))?;
        mac.update(&body);
        let signature: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("x-tenure-delivery", &delivery_id)
            .header("x-tenure-signature", format!("sha256={signature}"))
            .body(body)
            .send()
            .await?;
        let status = response.status();
        anyhow::ensure!(status.is_success(), "webhook answered {status}");
        Ok(format!("webhook {}", status.as_u16()))
    }

    fn count(due: &Due, result: &'static str) {
        metrics::counter!(
            "playbook_steps_total",
            "playbook" => due.playbook.clone(),
            "step_type" => due.step_type.clone(),
            "result" => result,
        )
        .increment(1);
    }

    async fn record(
        &self,
        tx: &mut PgConnection,
        plan: &Plan,
        due: &Due,
        step: &PlanStep,
        outcome: Outcome,
    ) -> anyhow::Result<()> {
        match outcome {
            Outcome::Next(target, result) => {
                Self::count(due, "done");
                finish_step(tx, due, DONE, &result, "").await?;
                match target.as_deref().and_then(|t| plan.step(t)) {
                    Some(next) => {
                        insert_step(tx, due.run_id, due.seq + 1, next, Utc::now()).await?
                    }
                    None => end_run(tx, due.run_id, COMPLETED).await?,
                }
                let _ = step;
            }
            Outcome::Rearm {
                due: at,
                deadline,
                result,
            } => {
                sqlx::query(
                    "UPDATE playbooks.steps SET due_at = $3, deadline = $4, result = $5, attempts = 0, \
                       last_error = '', started_at = COALESCE(started_at, now()) \
                     WHERE run_id = $1 AND seq = $2",
                )
                .bind(due.run_id)
                .bind(due.seq)
                .bind(at)
                .bind(deadline)
                .bind(&result)
                .execute(&mut *tx)
                .await?;
            }
            Outcome::Exit(result) => {
                Self::count(due, "exited");
                finish_step(tx, due, DONE, &result, "").await?;
                end_run(tx, due.run_id, EXITED).await?;
            }
            Outcome::Fail(error) => self.fail_step(tx, due, &error).await?,
        }
        Ok(())
    }

    /// A failed attempt: retried after a backoff, dead-lettered (and its run
    /// stalled) after the last attempt.
    async fn fail_step(&self, tx: &mut PgConnection, due: &Due, error: &str) -> anyhow::Result<()> {
        let attempts = due.attempts + 1;
        tracing::warn!(run_id = %due.run_id, step = %due.step_id, attempts, %error, "playbook step failed");
        if attempts >= self.config.max_attempts {
            Self::count(due, "dead_lettered");
            finish_step(tx, due, DEAD, "dead-lettered", error).await?;
            sqlx::query("UPDATE playbooks.runs SET state = $2 WHERE run_id = $1")
                .bind(due.run_id)
                .bind(STALLED)
                .execute(&mut *tx)
                .await?;
        } else {
            Self::count(due, "retried");
            let delay = backoff(self.config.retry_base, self.config.retry_cap, attempts);
            sqlx::query(
                "UPDATE playbooks.steps SET attempts = $3, last_error = $4, due_at = now() + $5 \
                 WHERE run_id = $1 AND seq = $2",
            )
            .bind(due.run_id)
            .bind(due.seq)
            .bind(attempts)
            .bind(error)
            .bind(chrono::Duration::from_std(delay)?)
            .execute(&mut *tx)
            .await?;
        }
        Ok(())
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
                    IDLE,
                    Some(&wake),
                    "executing playbook steps",
                    || async { engine.execute_batch().await.map(|n| n > 0) },
                )
                .await
            });
        }
        let engine = self.clone();
        let matcher_cancel = cancel.clone();
        tasks.spawn(async move {
            let wake = engine.wakeup.clone();
            poll(
                &matcher_cancel,
                IDLE,
                Some(&wake),
                "matching trigger events",
                || async { engine.match_events().await.map(|n| n > 0) },
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

fn short_hash(text: &str) -> String {
    use sha2::Digest;
    Sha256::digest(text.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The span of one step's execution, in the trace of the event that
/// started its run.
fn step_span(due: &Due) -> tracing::Span {
    let span = tracing::info_span!(
        "playbook.step",
        playbook = %due.playbook,
        step = %due.step_id,
        run_id = %due.run_id,
        account_id = %due.account_id,
    );
    if let Ok(carrier) =
        serde_json::from_value::<HashMap<String, String>>(due.trace_context.clone())
    {
        set_parent_from(&span, &carrier);
    }
    span
}

/// Exponential backoff with full jitter, capped.
fn backoff(base: Duration, cap: Duration, attempts: i32) -> Duration {
    let exp = base
        .saturating_mul(1 << attempts.clamp(0, 20) as u32)
        .min(cap);
    let jitter = rand_fraction();
    exp.mul_f64(0.5 + 0.5 * jitter)
}

fn rand_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    f64::from(nanos % 1000) / 1000.0
}

pub async fn insert_step(
    tx: &mut PgConnection,
    run_id: Uuid,
    seq: i32,
    step: &PlanStep,
    due: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO playbooks.steps (run_id, seq, step_id, step_type, state, due_at) VALUES ($1, $2, $3, $4, 1, $5)",
    )
    .bind(run_id)
    .bind(seq)
    .bind(&step.id)
    .bind(step.type_name())
    .bind(due)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn finish_step(
    tx: &mut PgConnection,
    due: &Due,
    state: i16,
    result: &str,
    error: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE playbooks.steps SET state = $3, result = $4, last_error = $5, attempts = attempts + 1, \
           finished_at = now() WHERE run_id = $1 AND seq = $2",
    )
    .bind(due.run_id)
    .bind(due.seq)
    .bind(state)
    .bind(result)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

async fn end_run(tx: &mut PgConnection, run_id: Uuid, state: i16) -> sqlx::Result<()> {
    sqlx::query("UPDATE playbooks.runs SET state = $2, ended_at = now() WHERE run_id = $1")
        .bind(run_id)
        .bind(state)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap() {
        let base = Duration::from_secs(2);
        let cap = Duration::from_secs(60);
        assert!(backoff(base, cap, 1) <= Duration::from_secs(4));
        assert!(backoff(base, cap, 1) >= Duration::from_secs(2));
        assert!(backoff(base, cap, 10) <= cap);
        assert!(backoff(base, cap, 10) >= cap / 2);
    }
}
