//! A task for a person: one row per run and step.

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::engine::Engine;
use crate::engine::executor::Due;

impl Engine {
    #[allow(clippy::too_many_arguments)]
    pub(in crate::engine) async fn create_task(
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
}
