//! Helpers for Tenure's integration tests: a whole stack per test on its own
//! database, clients for every service, and the spans the stack emitted.

pub use tenure::receivers;

pub mod bases;
pub mod processes;
pub mod profile;

/// The first numeric command-line argument of a bench binary, or `default`.
pub fn bench_size<T: std::str::FromStr>(default: T) -> T {
    std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(default)
}

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use tenure::stack::{Stack, StackOptions};
use tenure_platform::auth::{Authorize, Credentials, Scope};
use tenure_platform::client::TracedChannel;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::playbooks::v1::playbooks_service_client::PlaybooksServiceClient;
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;

/// A running stack with a client per service.
pub struct TestStack {
    pub stack: Stack,
    pub ingestion: IngestionServiceClient<TracedChannel>,
    pub health: HealthServiceClient<TracedChannel>,
    pub renewals: RenewalsServiceClient<TracedChannel>,
    pub playbooks: PlaybooksServiceClient<TracedChannel>,
}

impl TestStack {
    /// Starts the four services on random ports over a new, empty database.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// As [`TestStack::spawn`], with options adjusted by `adjust`.
    pub async fn spawn_with(adjust: impl FnOnce(&mut StackOptions)) -> Self {
        let database = tenure_platform::pg::testing::fresh_database()
            .await
            .expect("test database");
        let mut options = StackOptions::for_tests(Some(database));
        adjust(&mut options);
        Self::start(options).await
    }

    /// Starts the four services as `options` say, with a client for each.
    pub async fn start(options: StackOptions) -> Self {
        spans();
        let stack = Stack::start(options).await.expect("stack starts");
        let peers = stack.operator_peers();
        let connect = |url: &str| peers.channel(url).expect("channel");
        Self {
            ingestion: IngestionServiceClient::new(connect(&peers.ingestion_url)),
            health: HealthServiceClient::new(connect(&peers.health_url)),
            renewals: RenewalsServiceClient::new(connect(&peers.renewals_url)),
            playbooks: PlaybooksServiceClient::new(connect(&peers.playbooks_url)),
            stack,
        }
    }

    /// An administrative connection to the stack's database, for checks
    /// behind the API.
    pub async fn db(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect(&self.stack.database_url)
            .await
            .expect("admin connection")
    }

    /// The operator's credentials (every scope but `internal`).
    pub fn operator(&self) -> Credentials {
        Credentials::key(self.stack.operator_key.clone())
    }

    /// Creates accounts `ids` (named by their ids, small businesses of
    /// dana's, last changed ten days ago), in batches of 5,000.
    pub async fn plain_accounts(&mut self, ids: &[String]) {
        use tenure_proto::ingestion::v1 as ipb;
        let updated_at =
            tenure_platform::time::to_timestamp(chrono::Utc::now() - chrono::Duration::days(10));
        for chunk in ids.chunks(5000) {
            let accounts = chunk
                .iter()
                .map(|id| ipb::Account {
                    account_id: id.clone(),
                    name: id.clone(),
                    segment: "smb".into(),
                    owner: "dana".into(),
                    updated_at: Some(updated_at),
                    ..Default::default()
                })
                .collect();
            self.ingestion
                .batch_upsert_accounts(ipb::BatchUpsertAccountsRequest {
                    request_id: String::new(),
                    accounts,
                })
                .await
                .expect("accounts");
        }
    }

    /// Creates the playbook of JSON `definition`.
    pub async fn playbook(&mut self, definition: &serde_json::Value) {
        self.playbooks
            .create_playbook(tenure_proto::playbooks::v1::CreatePlaybookRequest {
                request_id: String::new(),
                definition: definition.to_string(),
                format: tenure_proto::playbooks::v1::DefinitionFormat::Json as i32,
            })
            .await
            .expect("playbook created");
    }

    /// A health client calling as a service (ingestion: `internal` scope),
    /// for tests that send the notices the services send one another.
    pub fn internal_health(&self) -> HealthServiceClient<TracedChannel> {
        let peers = &self.stack.service_peers("ingestion");
        HealthServiceClient::new(peers.channel(&peers.health_url).expect("channel"))
    }

    /// A playbooks client calling as a service (`internal` scope).
    pub fn internal_playbooks(&self) -> PlaybooksServiceClient<TracedChannel> {
        let peers = &self.stack.service_peers("ingestion");
        PlaybooksServiceClient::new(peers.channel(&peers.playbooks_url).expect("channel"))
    }

    /// A new key with `scopes` only, in the stack's keys file, limited to
    /// the services' default rate.
    pub fn key_with(&self, scopes: &[Scope]) -> Credentials {
        self.key_limited(scopes, None)
    }

    /// A new key with `scopes` and its own rate (calls per second).
    pub fn key_limited(&self, scopes: &[Scope], rate: Option<u32>) -> Credentials {
        let file = self.stack.keys_file().expect("the stack has a keys file");
        let (_, key) =
            tenure_platform::auth::keys::create(file, "test", scopes, rate).expect("key created");
        Credentials::key(key)
    }

    pub async fn stop(self) {
        self.stack.stop().await.expect("stack stops cleanly");
    }
}

/// A channel without Tenure's client tracing, for requests that carry a
/// `traceparent` of the test's own, calling with `credentials`.
pub fn untraced_channel(
    url: &str,
    credentials: &Credentials,
) -> Authorize<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("url")
        .connect_lazy();
    Authorize::new(channel, credentials)
}

/// The in-memory span exporter every test process reports to.
pub fn spans() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let guard =
            tenure_platform::telemetry::init_for_tests(exporter.clone()).expect("telemetry");
        // Spans are exported as they end; the guard lives as long as the process.
        std::mem::forget(guard);
        exporter
    })
}

/// Waits until `found` holds for the finished spans of `trace_id`, or times out.
pub async fn wait_for_spans(
    trace_id: opentelemetry::trace::TraceId,
    found: impl Fn(&[SpanData]) -> bool,
) -> Vec<SpanData> {
    let mut spans_of_trace = Vec::new();
    for _ in 0..100 {
        spans_of_trace = spans()
            .get_finished_spans()
            .expect("finished spans")
            .into_iter()
            .filter(|s| s.span_context.trace_id() == trace_id)
            .collect();
        if found(&spans_of_trace) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if std::env::var_os("TEST_SPANS").is_some() {
        for span in spans().get_finished_spans().unwrap_or_default() {
            eprintln!(
                "{} {} {:?} parent {}",
                span.span_context.trace_id(),
                span.name,
                span.span_kind,
                span.parent_span_id
            );
        }
    }
    spans_of_trace
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The field paths of an `INVALID_ARGUMENT` status's `BadRequest` details.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
        .unwrap_or_default()
}

/// The address of this test process's Prometheus endpoint. It is served
/// from a runtime of its own that lives as long as the process, not from
/// the runtime of whichever test asked first.
pub fn metrics_addr() -> std::net::SocketAddr {
    static ADDR: OnceLock<std::net::SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        let addr = probe.local_addr().expect("address");
        drop(probe);
        let (installed, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("metrics runtime");
            runtime.block_on(async move {
                let result = tenure_platform::server::install_metrics(addr);
                let _ = installed.send(result.map_err(|e| e.to_string()));
                std::future::pending::<()>().await;
            });
        });
        ready
            .recv()
            .expect("metrics thread")
            .expect("metrics endpoint");
        addr
    })
}

/// `GET path` over plain HTTP/1.0; returns the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "unexpected answer: {head}"
    );
    body.to_owned()
}
