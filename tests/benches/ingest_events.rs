//! Streams usage events over gRPC into ingestion and, in the same run and on
//! the same Postgres, loads the same rows with a plain COPY into an
//! identical table; prints both rates and their ratio, for three shapes:
//! a week of live sessions, uniformly random times, and the demo's
//! generated base.
//!
//! `cargo bench -p tenure-tests --bench ingest_events -- [EVENTS] [STREAMS]`
//! (defaults: 1,000,000 events over 2 concurrent streams of 2,000-event chunks).

use std::time::Instant;

use chrono::{Duration, Utc};
use sqlx::Connection as _;
use tenure_platform::time::to_timestamp;
use tenure_proto::ingestion::v1 as pb;
use tenure_tests::TestStack;

const ACCOUNTS: usize = 1_000;
const USERS_PER_ACCOUNT: usize = 25;
const FEATURES: [&str; 12] = [
    "dashboard.view",
    "report.run",
    "report.export",
    "api.call",
    "workflow.create",
    "workflow.run",
    "integration.sync",
    "user.invite",
    "search",
    "alert.create",
    "sso.login",
    "billing.view",
];
const CHUNK: usize = 5_000;

/// How the generated events are spread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// Live traffic: a week of sessions in time order, each a burst of one
    /// user's events on one feature, busier accounts more often.
    Sessions,
    /// The worst case for rollups: every event at a random time in the last
    /// 90 days, for a random user and feature.
    Uniform,
    /// The demo's generated base: a year of each account's sessions (weekly
    /// seasonality, onboarding ramps, advanced features taken up or not),
    /// whole accounts one after another, as a backfill sends them.
    Generated,
}

/// The first `total` usage events of a generated base (seed 1, one year,
/// enough accounts), with the ids of the accounts they name.
fn generated_events(total: usize) -> (Vec<pb::UsageEvent>, Vec<String>) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = tenure::generate::Config {
        // About 120 events per account and year: room to spare.
        accounts: total / 60 + 1,
        years: 1,
        seed: 1,
        as_of: tenure::generate::yesterday(),
    };
    tenure::generate::write(&config, dir.path()).expect("generated base");
    let events = tenure::import::read_events(&dir.path().join("events.jsonl"), total)
        .expect("generated events");
    assert_eq!(
        events.len(),
        total,
        "the generated base holds enough events"
    );
    let mut accounts: Vec<String> = events.iter().map(|e| e.account_id.clone()).collect();
    accounts.sort();
    accounts.dedup();
    (events, accounts)
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Skewed towards small values: a few accounts and features are busy.
    fn skewed(&mut self, n: usize) -> usize {
        let a = self.below(n);
        let b = self.below(n);
        a.min(b)
    }
}

fn events(total: usize, shape: Shape, prefix: &str) -> Vec<pb::UsageEvent> {
    let now = Utc::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let week = 7 * 24 * 3600;
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let account = rng.skewed(ACCOUNTS);
        let user = rng.below(USERS_PER_ACCOUNT);
        let feature = FEATURES[rng.skewed(FEATURES.len())];
        let (burst, seconds_ago) = match shape {
            Shape::Sessions => (
                1 + rng.below(20),
                week - (out.len() as i64 * week / total as i64),
            ),
            Shape::Uniform => (1, (rng.next() % (90 * 24 * 3600)) as i64),
            Shape::Generated => unreachable!("generated events come from the generator"),
        };
        for _ in 0..burst.min(total - out.len()) {
            let i = out.len();
            let mut properties = prost_types::Struct::default();
            for (key, value) in [
                ("client", if i % 3 == 0 { "web" } else { "desktop" }),
                ("plan", "pro"),
            ] {
                properties.fields.insert(
                    key.to_owned(),
                    prost_types::Value {
                        kind: Some(prost_types::value::Kind::StringValue(value.to_owned())),
                    },
                );
            }
            out.push(pb::UsageEvent {
                message_id: format!("{prefix}-{i:09}"),
                account_id: format!("acct-{account:05}"),
                user_id: format!("user-{account:05}-{user:02}"),
                event_name: feature.to_owned(),
                occurred_at: Some(to_timestamp(now - Duration::seconds(seconds_ago))),
                quantity: 1.0,
                properties: Some(properties),
            });
        }
    }
    out
}

async fn stream_all(
    app: &TestStack,
    events: Vec<pb::UsageEvent>,
    streams: usize,
) -> (usize, std::time::Duration) {
    let per_stream = events.len().div_ceil(streams);
    let mut parts: Vec<Vec<pb::UsageEvent>> = Vec::new();
    let mut rest = events;
    while !rest.is_empty() {
        let tail = rest.split_off(per_stream.min(rest.len()));
        parts.push(std::mem::replace(&mut rest, tail));
    }
    // The requests are made before the clock starts, as COPY's text is.
    let streams: Vec<Vec<pb::StreamEventsRequest>> = parts
        .into_iter()
        .map(|part| {
            part.chunks(CHUNK)
                .enumerate()
                .map(|(i, c)| pb::StreamEventsRequest {
                    chunk_id: i as i64,
                    events: c.to_vec(),
                })
                .collect()
        })
        .collect();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for chunks in streams {
        let mut client = app.ingestion.clone();
        tasks.push(tokio::spawn(async move {
            let mut acks = client
                .stream_events(tokio_stream::iter(chunks))
                .await
                .expect("stream")
                .into_inner();
            let mut accepted = 0usize;
            while let Some(ack) = acks.message().await.expect("ack") {
                assert_eq!(
                    ack.rejected_count,
                    0,
                    "{:?}",
                    ack.results.iter().find(|r| !r.reason.is_empty())
                );
                accepted += ack.accepted_count as usize;
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for task in tasks {
        accepted += task.await.expect("stream task");
    }
    (accepted, started.elapsed())
}

fn copy_text(events: &[pb::UsageEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(events.len() * 160);
    for e in events {
        let at = e.occurred_at.as_ref().expect("time");
        let at = chrono::DateTime::from_timestamp(at.seconds, at.nanos as u32).expect("time");
        let props = e
            .properties
            .as_ref()
            .map(tenure_ingestion::convert::struct_to_json)
            .unwrap_or_default();
        let line = format!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
            e.message_id,
            e.account_id,
            e.user_id,
            e.event_name,
            at.to_rfc3339(),
            e.quantity,
            props.to_string().replace('\\', "\\\\")
        );
        out.extend_from_slice(line.as_bytes());
    }
    out
}

async fn copy_all(
    database_url: &str,
    table: &str,
    events: &[pb::UsageEvent],
) -> (u64, std::time::Duration) {
    let mut conn = sqlx::PgConnection::connect(database_url)
        .await
        .expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS bench; \
         CREATE TABLE {table} (LIKE ingestion.usage_events INCLUDING DEFAULTS) PARTITION BY RANGE (occurred_at); \
         CREATE INDEX ON {table} (account_id, occurred_at); \
         CREATE TABLE {table}_all PARTITION OF {table} DEFAULT;"
    )))
    .execute(&mut conn)
    .await
    .expect("copy target");
    let data = copy_text(events);
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(&format!(
            "COPY {table} (message_id, account_id, user_id, event_name, occurred_at, quantity, properties) FROM STDIN"
        ))
        .await
        .expect("copy in");
    for piece in data.chunks(1 << 20) {
        copy.send(piece).await.expect("copy data");
    }
    let rows = copy.finish().await.expect("copy finish");
    (rows, started.elapsed())
}

async fn copy_table(database_url: &str, table: &str, events: &[pb::UsageEvent]) -> f64 {
    let (copied, time) = copy_all(database_url, table, events).await;
    assert_eq!(copied as usize, events.len());
    events.len() as f64 / time.as_secs_f64()
}

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| !a.starts_with('-'));
    let total: usize = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let streams: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(2).max(1);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let mut app = TestStack::spawn().await;
        let synthetic: Vec<String> = (0..ACCOUNTS).map(|i| format!("acct-{i:05}")).collect();
        app.plain_accounts(&synthetic).await;
        println!("events per run: {total}; gRPC: {streams} concurrent StreamEvents, chunks of {CHUNK}");
        println!("{:<10} {:>14} {:>14} {:>8} {:>22}", "shape", "COPY ev/s", "gRPC ev/s", "ratio", "RSS while streaming");
        for (shape, prefix) in [(Shape::Sessions, "s"), (Shape::Uniform, "u"), (Shape::Generated, "g")] {
            let events = match shape {
                Shape::Generated => {
                    let (events, accounts) = generated_events(total);
                    app.plain_accounts(&accounts).await;
                    events
                }
                shape => events(total, shape, prefix),
            };
            let copy_rate = copy_table(&app.stack.database_url, &format!("bench.copy_{prefix}"), &events).await;
            // The services run in this process: the peak while streaming,
            // over what was resident before (the events already built).
            let pid = std::process::id();
            let resident = tenure_tests::processes::memory_kib(pid, "VmRSS:").unwrap_or(0);
            tenure_tests::processes::reset_peak_rss();
            let (accepted, grpc_time) = stream_all(&app, events, streams).await;
            let peak = tenure_tests::processes::memory_kib(pid, "VmHWM:").unwrap_or(0);
            assert_eq!(accepted, total, "every event accepted once");
            let grpc_rate = total as f64 / grpc_time.as_secs_f64();
            println!(
                "{:<10} {:>14.0} {:>14.0} {:>7.1}% {:>9.0} MiB peak +{:.0}",
                format!("{shape:?}").to_lowercase(),
                copy_rate,
                grpc_rate,
                grpc_rate / copy_rate * 100.0,
                peak as f64 / 1024.0,
                peak.saturating_sub(resident) as f64 / 1024.0
            );
        }
        println!("(gRPC path: validation, account check, message-id dedup, monthly partitions, daily rollups, outbox; COPY: the same rows into an identical table)");
        app.stop().await;
    });
}
