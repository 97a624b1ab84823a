//! A signed POST of the run's account and trigger to a URL.

use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

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
}
