//! Evaluated triggers: judged on each account's current signals (and
//! health) every `PLAYBOOKS_SCHEDULE_INTERVAL`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tenure_platform::trace::capture_context;

use super::Engine;
use crate::facts::Account;
use crate::plan::{Plan, Trigger};

impl Engine {
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
                ..Default::default()
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
                        &mut tx,
                        (plan, *version),
                        account,
                        &super::Start {
                            trigger: kind,
                            event_id: None,
                            payload: &payload,
                            trace_context: &context,
                        },
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
}
