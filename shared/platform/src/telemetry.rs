//! One telemetry set-up per process: W3C propagation, an OpenTelemetry tracer
//! (exported over OTLP/gRPC when configured), readable or JSON logs, and an
//! `EnvFilter` from `RUST_LOG`.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, filter::LevelFilter};

use crate::config::{LogFormat, TelemetryConfig};

const DEFAULT_FILTER: &str = "info,sqlx=warn,h2=warn,tower=warn,hyper=warn";

/// Flushes buffered spans when dropped; keep it alive for the process.
#[must_use = "dropping the guard flushes and stops trace export"]
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("telemetry shutdown failed: {error}");
        }
    }
}

/// Installs logging and tracing for a process named `service_name`.
///
/// Spans are always created (so trace ids reach logs and peers); they are
/// exported only when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
pub fn init(config: &TelemetryConfig, service_name: &str) -> anyhow::Result<TelemetryGuard> {
    let mut builder = SdkTracerProvider::builder().with_resource(resource(service_name));
    if let Some(endpoint) = &config.otlp_endpoint {
        use opentelemetry_otlp::WithExportConfig as _;
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let filter = config.log_filter.as_deref().unwrap_or(DEFAULT_FILTER);
    install(&provider, Some(config.log_format), filter, None)?;
    Ok(TelemetryGuard { provider })
}

/// Installs tracing that hands finished spans to `exporter` as they end, for
/// tests that assert on traces. Logs are written only when `TEST_LOG` is set.
#[cfg(feature = "testing")]
pub fn init_for_tests(
    exporter: opentelemetry_sdk::trace::InMemorySpanExporter,
) -> anyhow::Result<TelemetryGuard> {
    let provider = SdkTracerProvider::builder()
        .with_resource(resource("tenure-tests"))
        .with_simple_exporter(exporter)
        .build();
    let logs = std::env::var_os("TEST_LOG").map(|_| LogFormat::Pretty);
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| DEFAULT_FILTER.to_owned());
    install(&provider, logs, &filter, Some(capture::layer()))?;
    Ok(TelemetryGuard { provider })
}

fn resource(service_name: &str) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .build()
}

type BoxedLayer = Box<dyn tracing_subscriber::Layer<tracing_subscriber::Registry> + Send + Sync>;

fn install(
    provider: &SdkTracerProvider,
    logs: Option<LogFormat>,
    filter: &str,
    extra: Option<BoxedLayer>,
) -> anyhow::Result<()> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    // Spans go to OpenTelemetry at INFO whatever RUST_LOG says, so that
    // trace context always propagates; RUST_LOG governs the logs only.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("tenure"))
        .with_filter(LevelFilter::INFO);
    let filter = || EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let fmt = match logs {
        Some(LogFormat::Json) => Some(
            tracing_subscriber::fmt::layer()
                .json()
                .with_current_span(true)
                .with_span_list(false)
                .with_filter(filter())
                .boxed(),
        ),
        Some(LogFormat::Pretty) => Some(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_filter(filter())
                .boxed(),
        ),
        None => None,
    };
    tracing_subscriber::registry()
        .with(extra)
        .with(otel)
        .with(fmt)
        .try_init()?;
    Ok(())
}

/// Everything logged at debug level while a capture is open, for tests that
/// check what a run writes (that no secret appears in it).
#[cfg(feature = "testing")]
pub mod capture {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tracing_subscriber::Layer as _;

    static OPEN: AtomicUsize = AtomicUsize::new(0);
    static TEXT: Mutex<Vec<u8>> = Mutex::new(Vec::new());

    /// While held, every log line of the process (debug and up, the
    /// transport crates' chatter aside) is kept.
    pub struct Capture(());

    impl Capture {
        pub fn start() -> Self {
            OPEN.fetch_add(1, Ordering::SeqCst);
            Capture(())
        }

        /// What was written while any capture was open.
        pub fn text(&self) -> String {
            let bytes = TEXT.lock().unwrap_or_else(|p| p.into_inner());
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }

    impl Drop for Capture {
        fn drop(&mut self) {
            OPEN.fetch_sub(1, Ordering::SeqCst);
        }
    }

    struct Writer;

    impl std::io::Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            TEXT.lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    pub(super) fn layer() -> super::BoxedLayer {
        let open = tracing_subscriber::filter::filter_fn(|_| OPEN.load(Ordering::Relaxed) > 0);
        let level = tracing_subscriber::EnvFilter::new(
            "debug,h2=info,hyper=info,hyper_util=info,tower=info,rustls=info,tokio_util=info",
        );
        tracing_subscriber::fmt::layer()
            .with_writer(|| Writer)
            .with_ansi(false)
            .with_filter(level)
            .with_filter(open)
            .boxed()
    }
}
