//! Load: the four services as processes of their own over a generated base
//! (the demo's shapes), driven together for a fixed time from loopback:
//! two clients streaming usage events as fast as ingestion acknowledges
//! them, four reading accounts' health, one streaming the renewal forecast
//! over and over. Prints each workload's throughput, p50 and p99 latency and
//! errors (there must be none), and each service's memory: resident after
//! the warm-up, at the end, and its peak. A client that sends faster than
//! Postgres writes is held back by the stream's flow control, so memory
//! stays flat.
//!
//! `cargo bench -p tenure-tests --bench load -- [ACCOUNTS [SECONDS]]`
//! (default 2,000 accounts, 60 s; the base is loaded once and kept, see
//! `tenure_tests::bases`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tenure_platform::client::TracedChannel;
use tenure_platform::time::{to_date, to_timestamp};
use tenure_proto::common::v1::DateRange;
use tenure_proto::health::v1 as hpb;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::renewals::v1 as rpb;
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;
use tenure_tests::processes::Processes;
use tokio_stream::wrappers::ReceiverStream;

const SERVICE: &str = env!("CARGO_BIN_EXE_tenure-service");
const NAMES: [&str; 4] = ["ingestion", "health", "renewals", "playbooks"];
const EVENT_WRITERS: usize = 2;
const HEALTH_READERS: usize = 4;
const EVENTS_PER_CHUNK: usize = 500;
/// Chunks sent ahead of their acknowledgement.
const IN_FLIGHT: usize = 4;
/// Chunks per stream before a writer opens the next one.
const CHUNKS_PER_STREAM: u64 = 100;
const WARM_UP: Duration = Duration::from_secs(10);

/// What one kind of client saw.
#[derive(Default)]
struct Tally {
    /// Events accepted, healths read, forecast rows received.
    units: u64,
    latencies: Vec<Duration>,
    errors: Vec<String>,
}

impl Tally {
    fn merge(mut self, other: Tally) -> Tally {
        self.units += other.units;
        self.latencies.extend(other.latencies);
        self.errors.extend(other.errors);
        self
    }

    fn print(mut self, what: &str, unit: &str, seconds: f64) -> usize {
        self.latencies.sort();
        let at = |q: f64| {
            self.latencies
                .get(
                    ((self.latencies.len() as f64 * q) as usize)
                        .min(self.latencies.len().saturating_sub(1)),
                )
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "{what:<22} {:>10.0} {unit}/s  {:>7} calls  p50 {:>8.1} ms  p99 {:>8.1} ms  errors {}",
            self.units as f64 / seconds,
            self.latencies.len(),
            at(0.5),
            at(0.99),
            self.errors.len()
        );
        for error in self.errors.iter().take(5) {
            println!("    {error}");
        }
        self.errors.len()
    }
}

fn chunk(writer: usize, n: u64, accounts: &[String]) -> ipb::StreamEventsRequest {
    let now = chrono::Utc::now();
    ipb::StreamEventsRequest {
        chunk_id: n as i64,
        events: (0..EVENTS_PER_CHUNK)
            .map(|i| {
                let seq = n as usize * EVENTS_PER_CHUNK + i;
                ipb::UsageEvent {
                    message_id: format!("load-{writer}-{seq}"),
                    account_id: accounts[(seq * 7919 + writer) % accounts.len()].clone(),
                    user_id: format!("u-{}", seq % 13),
                    event_name: ["reports", "dashboards", "api", "exports"][seq % 4].into(),
                    occurred_at: Some(to_timestamp(
                        now - chrono::Duration::minutes((seq % 10_000) as i64),
                    )),
                    quantity: 1.0,
                    properties: None,
                }
            })
            .collect(),
    }
}

/// Streams events until `until`, [`IN_FLIGHT`] chunks ahead, a new stream
/// every [`CHUNKS_PER_STREAM`] chunks; latency is from a chunk's sending to
/// its acknowledgement.
async fn write_events(
    mut client: IngestionServiceClient<TracedChannel>,
    writer: usize,
    accounts: Arc<Vec<String>>,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut n = 0_u64;
    while Instant::now() < until {
        let (sender, receiver) = tokio::sync::mpsc::channel(IN_FLIGHT);
        let mut sent = VecDeque::new();
        let last = n + CHUNKS_PER_STREAM;
        while sent.len() < IN_FLIGHT {
            sender.send(chunk(writer, n, &accounts)).await.ok();
            sent.push_back(Instant::now());
            n += 1;
        }
        let mut acks = match client.stream_events(ReceiverStream::new(receiver)).await {
            Ok(answer) => answer.into_inner(),
            Err(status) => {
                tally.errors.push(format!("open: {status:?}"));
                continue;
            }
        };
        let mut sender = Some(sender);
        while !sent.is_empty() {
            match acks.message().await {
                Ok(Some(ack)) => {
                    if let Some(at) = sent.pop_front() {
                        tally.latencies.push(at.elapsed());
                    }
                    tally.units += ack.accepted_count as u64;
                    if ack.rejected_count > 0 {
                        tally.errors.push(format!(
                            "chunk {}: {} rejected",
                            ack.chunk_id, ack.rejected_count
                        ));
                    }
                    if n < last && Instant::now() < until {
                        if let Some(sender) = &sender {
                            sender.send(chunk(writer, n, &accounts)).await.ok();
                            sent.push_back(Instant::now());
                            n += 1;
                        }
                    } else {
                        sender = None;
                    }
                }
                Ok(None) => {
                    tally.errors.push(format!(
                        "stream ended with {} chunks unacknowledged",
                        sent.len()
                    ));
                    break;
                }
                Err(status) => {
                    tally.errors.push(format!("stream: {status:?}"));
                    break;
                }
            }
        }
        drop(sender);
        while let Ok(Some(_)) = acks.message().await {}
    }
    tally
}

async fn read_health(
    mut client: HealthServiceClient<TracedChannel>,
    reader: usize,
    accounts: Arc<Vec<String>>,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut i = reader;
    while Instant::now() < until {
        let account_id = accounts[(i * 104_729) % accounts.len()].clone();
        i += HEALTH_READERS;
        let started = Instant::now();
        match client
            .get_health(hpb::GetHealthRequest { account_id })
            .await
        {
            Ok(_) => {
                tally.latencies.push(started.elapsed());
                tally.units += 1;
            }
            Err(status) => tally.errors.push(format!("{status:?}")),
        }
    }
    tally
}

async fn stream_forecasts(
    mut client: RenewalsServiceClient<TracedChannel>,
    window: Option<DateRange>,
    until: Instant,
) -> Tally {
    let mut tally = Tally::default();
    while Instant::now() < until {
        let started = Instant::now();
        let stream = client
            .stream_forecast(rpb::StreamForecastRequest {
                window,
                chunk_size: 1000,
                ..Default::default()
            })
            .await;
        let mut stream = match stream {
            Ok(answer) => answer.into_inner(),
            Err(status) => {
                tally.errors.push(format!("{status:?}"));
                continue;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(message)) => tally.units += message.rows.len() as u64,
                Ok(None) => {
                    tally.latencies.push(started.elapsed());
                    break;
                }
                Err(status) => {
                    tally.errors.push(format!("{status:?}"));
                    break;
                }
            }
        }
    }
    tally
}

fn main() {
    let mut numbers = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse::<u64>().ok());
    let size = numbers.next().unwrap_or(2_000) as usize;
    let seconds = numbers.next().unwrap_or(60).max(15);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let base = tenure_tests::bases::generated(size, 1, |_| {}).await.expect("generated base");
        base.settle().await.expect("quiet stack");
        let mut app = base.app;
        tenure_tests::bases::create_bench_scorecard(&mut app).await;
        app.health
            .recompute_health(hpb::RecomputeHealthRequest { account_ids: vec![], all_accounts: true })
            .await
            .expect("every account scored");
        let db = app.db().await;
        let accounts: Vec<String> = sqlx::query_scalar("SELECT DISTINCT account_id FROM health.scores ORDER BY account_id")
            .fetch_all(&db)
            .await
            .expect("scored accounts");
        db.close().await;
        let accounts = Arc::new(accounts);

        // The same base, now served by one process per service.
        for service in app.stack.services.drain(..) {
            service.stop().await.expect("in-process service stops");
        }
        let mut procs = Processes::new(SERVICE, app.stack.database_url.clone(), &[]).expect("processes");
        for name in NAMES {
            procs.start(name).await.expect("service starts");
        }
        let peers = procs.operator_peers();
        let channel = |url: &str| peers.channel(url).expect("channel");
        let today = base.config.as_of + chrono::Days::new(1);
        let window = Some(DateRange {
            start: Some(to_date(today)),
            end: Some(to_date(today + chrono::Days::new(366))),
        });

        println!(
            "load: {} scored accounts, {seconds} s, {EVENT_WRITERS} event streams ({EVENTS_PER_CHUNK} per chunk, {IN_FLIGHT} in flight), {HEALTH_READERS} health readers, 1 forecast streamer",
            accounts.len()
        );
        let started = Instant::now();
        let until = started + Duration::from_secs(seconds);
        let mut writers = Vec::new();
        for writer in 0..EVENT_WRITERS {
            let client = IngestionServiceClient::new(channel(&peers.ingestion_url));
            writers.push(tokio::spawn(write_events(client, writer, accounts.clone(), until)));
        }
        let mut readers = Vec::new();
        for reader in 0..HEALTH_READERS {
            let client = HealthServiceClient::new(channel(&peers.health_url));
            readers.push(tokio::spawn(read_health(client, reader, accounts.clone(), until)));
        }
        let forecasts = tokio::spawn(stream_forecasts(RenewalsServiceClient::new(channel(&peers.renewals_url)), window, until));

        // Memory: resident after the warm-up, then at the end.
        tokio::time::sleep(WARM_UP).await;
        let warm: Vec<Option<u64>> = NAMES.iter().map(|n| procs.rss_kib(n)).collect();
        let mut events = Tally::default();
        for writer in writers {
            events = events.merge(writer.await.expect("writer"));
        }
        let mut health = Tally::default();
        for reader in readers {
            health = health.merge(reader.await.expect("reader"));
        }
        let forecasts = forecasts.await.expect("forecasts");
        let took = started.elapsed().as_secs_f64();

        let mut errors = 0;
        errors += events.print("usage events", "events", took);
        errors += health.print("GetHealth", "reads", took);
        errors += forecasts.print("StreamForecast", "rows", took);
        let mib = |kib: Option<u64>| kib.map_or("-".to_owned(), |k| format!("{:.0} MiB", k as f64 / 1024.0));
        for (name, warm) in NAMES.iter().zip(warm) {
            println!(
                "memory {name:<10} after warm-up {:>8}  at the end {:>8}  peak {:>8}",
                mib(warm),
                mib(procs.rss_kib(name)),
                mib(procs.peak_rss_kib(name))
            );
        }
        drop(procs);
        app.stop().await;
        assert_eq!(errors, 0, "every call under load must succeed");
    });
}
