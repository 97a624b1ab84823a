//! A signed POST of the run's account and trigger to a URL (see
//! [`crate::signature`]), to a destination the guard permits.

use serde_json::json;

use super::destination;
use crate::engine::Engine;
use crate::engine::executor::Due;
use crate::plan::{Plan, PlanStep};

impl Engine {
    pub(in crate::engine) async fn call_webhook(
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
        anyhow::ensure!(
            !self.config.webhook_secret.is_empty(),
            "no webhook signing secret is configured (PLAYBOOKS_WEBHOOK_SECRET)"
        );
        let target = reqwest::Url::parse(url)?;
        destination::check_literal(&target, &self.config.webhook_allow)?;
        let timestamp = chrono::Utc::now().timestamp();
        let signature = crate::signature::sign(
            self.config.webhook_secret.as_bytes(),
            timestamp,
            &delivery_id,
            &body,
        );
        let response = self
            .http
            .post(target)
            .header("content-type", "application/json")
            .header("x-tenure-delivery", &delivery_id)
            .header("x-tenure-timestamp", timestamp.to_string())
            .header("x-tenure-signature", signature)
            .body(body)
            .send()
            .await?;
        let status = response.status();
        anyhow::ensure!(
            !status.is_redirection(),
            "webhook answered {status}: redirects are not followed"
        );
        anyhow::ensure!(status.is_success(), "webhook answered {status}");
        Ok(format!("webhook {}", status.as_u16()))
    }
}
