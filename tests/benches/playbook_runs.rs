//! Starts many runs of a three-step playbook (a task, a webhook to a local
//! receiver, the end) and prints steps/s and the delay from each step's due
//! time to its execution (p50, p99), saturated (every run started at once)
//! and then under capacity (a fifth as many runs, started at half the rate
//! the saturated phase finished them).
//!
//! The runs are of the accounts of a generated base (the demo's shapes; see
//! `tenure_tests::bases`), kept between bench runs; runs left by an
//! earlier bench run are deleted first.
//!
//! `cargo bench -p tenure-tests --bench playbook_runs -- [RUNS [ACCOUNTS]]`
//! (defaults 10,000 runs over a base of 100,000 accounts).

use std::time::{Duration, Instant};

use tenure_proto::playbooks::v1 as pb;
use tenure_tests::receivers::WebhookReceiver;

const CHUNK: usize = 1000;

/// Waits until `runs` runs of `playbook` have completed.
async fn completed(db: &sqlx::PgPool, playbook: &str, runs: usize) {
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM playbooks.runs WHERE playbook = $1 AND state = 2",
        )
        .bind(playbook)
        .fetch_one(db)
        .await
        .expect("count");
        if done as usize == runs {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn main() {
    let mut numbers = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<usize>().ok());
    let count = numbers.next().unwrap_or(10_000);
    let accounts = numbers.next().unwrap_or(100_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let base = tenure_tests::bases::generated(accounts, 1, |options| {
            options.max_connections = 12;
            options.statement_statistics = true;
            // The receiver listens on loopback, which webhooks may not
            // reach unless allowed.
            let allow = ("PLAYBOOKS_WEBHOOK_ALLOW".to_owned(), "127.0.0.1/32".to_owned());
            options.settings.extend([allow]);
        })
        .await
        .expect("generated base");
        base.settle().await.expect("quiet stack");
        let mut app = base.app;
        let db = app.db().await;
        for table in ["playbooks.steps", "playbooks.tasks", "playbooks.runs"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table}"))).execute(&db).await.expect("earlier runs");
            sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM ANALYZE {table}"))).execute(&db).await.expect("vacuum");
        }
        let receiver = WebhookReceiver::start().await;
        let ids: Vec<String> = sqlx::query_scalar("SELECT account_id FROM ingestion.accounts ORDER BY account_id LIMIT $1")
            .bind(count as i64)
            .fetch_all(&db)
            .await
            .expect("accounts");
        assert_eq!(ids.len(), count, "the base has fewer accounts than runs");
        // Names of this bench run's own: a kept base holds earlier ones.
        let tag = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (bench, paced) = (format!("bench-{tag}"), format!("paced-{tag}"));
        let definition = serde_json::json!({
            "name": bench, "title": "Bench", "trigger": {"type": "manual"},
            "steps": [
                {"id": "task", "type": "task", "title": "Call {{account.name}}", "next": "hook"},
                {"id": "hook", "type": "webhook", "url": receiver.url, "next": "done"},
                {"id": "done", "type": "end"}
            ]
        });
        app.playbook(&definition).await;

        eprintln!("starting {count} runs");
        let statements = tenure_tests::profile::Statements::new(&db).await;
        statements.reset().await;
        let cpu = tenure_tests::profile::process_cpu();
        let started = Instant::now();
        for chunk in ids.chunks(CHUNK) {
            let response = app
                .playbooks
                .start_runs(pb::StartRunsRequest {
                    request_id: String::new(),
                    playbook: bench.clone(),
                    account_ids: chunk.to_vec(),
                })
                .await
                .expect("start")
                .into_inner();
            assert_eq!(response.runs.len(), chunk.len());
        }
        let start_calls = started.elapsed();
        completed(&db, &bench, count).await;
        let all = started.elapsed();
        let saturated_cpu = tenure_tests::profile::process_cpu() - cpu;
        let saturated_profile = statements.snapshot().await;
        let (steps, span_s, p50, p99): (i64, f64, f64, f64) = sqlx::query_as(
            "SELECT count(*), extract(epoch FROM max(s.finished_at) - min(s.due_at))::float8, \
               (percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.picked_at - s.due_at)))::float8, \
               (percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM s.picked_at - s.due_at)))::float8 \
             FROM playbooks.steps s JOIN playbooks.runs r USING (run_id) WHERE r.playbook = $1 AND s.state = 2",
        )
        .bind(&bench)
        .fetch_one(&db)
        .await
        .expect("figures");
        assert_eq!(steps as usize, count * 3);
        assert_eq!(receiver.accepted().len(), count, "one webhook per run");
        println!("runs:                     {count} (3 steps each: task, webhook, end)");
        println!("start calls:              {:>8.2} s ({} runs per call)", start_calls.as_secs_f64(), CHUNK);
        println!("all runs completed after: {:>8.2} s", all.as_secs_f64());
        println!("steps executed:           {steps} in {span_s:.2} s = {:.0} steps/s", steps as f64 / span_s);
        println!("due -> executed delay:    p50 {:.1} ms, p99 {:.1} ms", p50 * 1000.0, p99 * 1000.0);
        println!("where the time goes (pg_stat_statements; the rest of the wall time is the services' own work and waits):");
        saturated_profile.print("saturated", all, saturated_cpu, 8);

        // Under capacity: a fifth as many runs of the same steps, started
        // in small calls at half the rate the saturated phase finished
        // them, so the delay is the engine's own, not a backlog's.
        let paced_definition = serde_json::json!({
            "name": paced, "title": "Paced", "trigger": {"type": "manual"},
            "steps": definition["steps"].clone()
        });
        app.playbook(&paced_definition).await;
        let paced_ids = &ids[..count / 5];
        let rate = (steps as f64 / span_s / 3.0 / 2.0).max(1.0);
        let per_tick = ((rate / 10.0).ceil() as usize).max(1);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(per_tick as f64 / rate));
        let paced_started = Instant::now();
        for chunk in paced_ids.chunks(per_tick) {
            tick.tick().await;
            let response = app
                .playbooks
                .start_runs(pb::StartRunsRequest {
                    request_id: String::new(),
                    playbook: paced.clone(),
                    account_ids: chunk.to_vec(),
                })
                .await
                .expect("start")
                .into_inner();
            assert_eq!(response.runs.len(), chunk.len());
        }
        let arrivals = paced_started.elapsed();
        completed(&db, &paced, paced_ids.len()).await;
        let (paced_steps, p50, p99): (i64, f64, f64) = sqlx::query_as(
            "SELECT count(*), \
               (percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM s.picked_at - s.due_at)))::float8, \
               (percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM s.picked_at - s.due_at)))::float8 \
             FROM playbooks.steps s JOIN playbooks.runs r USING (run_id) WHERE r.playbook = $1 AND s.state = 2",
        )
        .bind(&paced)
        .fetch_one(&db)
        .await
        .expect("figures");
        assert_eq!(paced_steps as usize, paced_ids.len() * 3);
        println!("under capacity:           {} runs started at {rate:.0} runs/s ({per_tick} per call) over {:.2} s", paced_ids.len(), arrivals.as_secs_f64());
        println!("due -> executed delay:    p50 {:.1} ms, p99 {:.1} ms", p50 * 1000.0, p99 * 1000.0);
        app.stop().await;
    });
}
