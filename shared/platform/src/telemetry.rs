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
    install(&provider, Some(config.log_format), filter)?;
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
    install(&provider, logs, &filter)?;
    Ok(TelemetryGuard { provider })
}

fn resource(service_name: &str) -> Resource {
    Resource::builder()
        .with_service_name(service_name.to_owned())
        .build()
}

fn install(
    provider: &SdkTracerProvider,
    logs: Option<LogFormat>,
    filter: &str,
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
        .with(otel)
        .with(fmt)
        .try_init()?;
    Ok(())
}
