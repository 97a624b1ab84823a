//! What an idle stack costs, and how long an ingested change takes to reach
//! the playbook step it causes.
//!
//! Two stacks in the same run, one after the other: the baseline, whose
//! background loops look every 200 ms when idle (`IDLE_POLL=200ms`, what
//! every loop did before they were woken by Postgres), and the default
//! (woken by Postgres notices, looking on their own every 10 s). For each:
//! - idle CPU over a quiet window: this process (the four services and
//!   their clients) and the stack's Postgres (its postmaster and every
//!   child), in CPU-seconds per minute;
//! - latency: external signals sent one at a time, each starting a playbook
//!   whose first step is a webhook to a receiver on loopback; the delay from
//!   the ingestion call's answer to the webhook's arrival (p50, p99, max).
//!
//! `cargo bench -p tenure-tests --bench wakeups -- [SIGNALS]` (default 100;
//! idle window 30 s).

use std::time::{Duration, Instant};

use chrono::Utc;
use tenure_platform::time::to_timestamp;
use tenure_proto::ingestion::v1 as ipb;
use tenure_tests::TestStack;
use tenure_tests::receivers::WebhookReceiver;

const WINDOW: Duration = Duration::from_secs(30);
/// Linux reports process times in ticks of 1/100 s (USER_HZ).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds used so far by process `pid`.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name, which is in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / TICKS_PER_SECOND
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU seconds of the postmaster `postmaster` and all its children.
fn postgres_cpu(postmaster: u32) -> f64 {
    let mut total = cpu_seconds(postmaster);
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            && parent(pid) == Some(postmaster)
        {
            total += cpu_seconds(pid);
        }
    }
    total
}

async fn postmaster_pid(app: &TestStack) -> u32 {
    let db = app.db().await;
    let dir: String = sqlx::query_scalar("SELECT current_setting('data_directory')")
        .fetch_one(&db)
        .await
        .expect("data directory");
    let pid = std::fs::read_to_string(format!("{dir}/postmaster.pid"))
        .expect("postmaster.pid")
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("postmaster pid");
    db.close().await;
    pid
}

struct Figures {
    process_per_minute: f64,
    postgres_per_minute: f64,
    latencies: Vec<Duration>,
}

async fn measure(idle_poll: Option<&str>, signals: usize) -> Figures {
    let mut app = TestStack::spawn_with(|options| {
        let allow = (
            "PLAYBOOKS_WEBHOOK_ALLOW".to_owned(),
            "127.0.0.1/32".to_owned(),
        );
        options.settings.extend([allow]);
        if let Some(idle) = idle_poll {
            options
                .settings
                .extend([("IDLE_POLL".to_owned(), idle.to_owned())]);
        }
    })
    .await;
    let receiver = WebhookReceiver::start().await;
    let ids: Vec<String> = (0..signals).map(|i| format!("acct-{i:05}")).collect();
    app.plain_accounts(&ids).await;
    let definition = serde_json::json!({
        "name": "funding", "title": "Funding round",
        "trigger": {"type": "external_signal", "signal_type": "funding_round"},
        "steps": [
            {"id": "hook", "type": "webhook", "url": receiver.url, "next": "done"},
            {"id": "done", "type": "end"}
        ]
    });
    app.playbook(&definition).await;
    // Let the start-up work (rescoring the new accounts, their notices)
    // settle before the quiet window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let postmaster = postmaster_pid(&app).await;
    let own = std::process::id();
    let (process_before, postgres_before) = (cpu_seconds(own), postgres_cpu(postmaster));
    tokio::time::sleep(WINDOW).await;
    let minutes = WINDOW.as_secs_f64() / 60.0;
    let process_per_minute = (cpu_seconds(own) - process_before) / minutes;
    let postgres_per_minute = (postgres_cpu(postmaster) - postgres_before) / minutes;

    let mut latencies = Vec::with_capacity(signals);
    for (i, id) in ids.iter().enumerate() {
        app.ingestion
            .batch_upsert_external_signals(ipb::BatchUpsertExternalSignalsRequest {
                request_id: String::new(),
                signals: vec![ipb::ExternalSignal {
                    signal_id: format!("signal-{i}"),
                    account_id: id.clone(),
                    kind: ipb::ExternalSignalKind::FundingRound as i32,
                    occurred_at: Some(to_timestamp(Utc::now() - chrono::Duration::minutes(1))),
                    source: "bench".into(),
                    properties: None,
                    updated_at: Some(to_timestamp(Utc::now())),
                }],
            })
            .await
            .expect("signal");
        let sent = Instant::now();
        let arrived = loop {
            if let Some(delivery) = receiver.accepted().get(i) {
                break delivery.received_at;
            }
            assert!(
                sent.elapsed() < Duration::from_secs(60),
                "no webhook for {id}"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        latencies.push(arrived.saturating_duration_since(sent));
        // Arrivals well under capacity: the stack is idle between them.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
    Figures {
        process_per_minute,
        postgres_per_minute,
        latencies,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

fn main() {
    let signals: usize = tenure_tests::bench_size(100);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        println!(
            "idle window {} s; {signals} signals, one at a time, each starting a webhook step",
            WINDOW.as_secs()
        );
        println!(
            "{:<28} {:>12} {:>12} {:>10} {:>10} {:>10}",
            "stack", "services", "postgres", "p50 ms", "p99 ms", "max ms"
        );
        let mut rows = Vec::new();
        for (label, idle) in [
            ("baseline: polls every 200ms", Some("200ms")),
            ("woken by Postgres (default)", None),
        ] {
            let mut figures = measure(idle, signals).await;
            figures.latencies.sort();
            println!(
                "{label:<28} {:>8.2} s/m {:>8.2} s/m {:>10.1} {:>10.1} {:>10.1}",
                figures.process_per_minute,
                figures.postgres_per_minute,
                percentile(&figures.latencies, 0.5),
                percentile(&figures.latencies, 0.99),
                percentile(&figures.latencies, 1.0),
            );
            rows.push(figures);
        }
        let idle = |f: &Figures| f.process_per_minute + f.postgres_per_minute;
        println!(
            "idle CPU (services + postgres): {:.2} → {:.2} CPU-s per minute = {:.1} % of the baseline",
            idle(&rows[0]),
            idle(&rows[1]),
            idle(&rows[1]) / idle(&rows[0]) * 100.0
        );
    });
}
