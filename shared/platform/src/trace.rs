//! W3C trace context across process boundaries, in one place.
//!
//! - [`ServerTraceLayer`] extracts `traceparent` from every incoming gRPC call,
//!   opens an `rpc.server` span named and attributed per the OpenTelemetry RPC
//!   conventions, and records request metrics when the call ends.
//! - [`ClientTraceLayer`] opens an `rpc.client` span for every outgoing call
//!   and injects its context as `traceparent`.
//! - [`capture_context`] and [`span_with_parent`] carry the context through
//!   rows that are stored now and processed later (the outbox).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::HeaderMap;
use http_body::{Body, Frame};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt as _;
use tower_layer::Layer;
use tower_service::Service;
use tracing::{Instrument as _, Span, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Reads trace headers from HTTP/2 headers (gRPC metadata).
pub struct HeaderExtractor<'a>(pub &'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes trace headers into HTTP/2 headers (gRPC metadata).
pub struct HeaderInjector<'a>(pub &'a mut HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// The context of `span` as W3C headers (`traceparent`, `tracestate`), for
/// storing beside work that continues later.
pub fn capture_context(span: &Span) -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&context, &mut carrier));
    carrier
}

/// Makes `span` a child of the context stored in `carrier` (from [`capture_context`]).
pub fn set_parent_from(span: &Span, carrier: &HashMap<String, String>) {
    let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// The context to store beside deferred work, as JSON (see [`capture_context`]).
pub fn stored_context() -> serde_json::Value {
    serde_json::to_value(capture_context(&Span::current())).unwrap_or_default()
}

/// Makes `span`, which does deferred work for several causes at once (a
/// batch from a queue), continue the trace of the first stored context and
/// link to the traces of the others.
pub fn continue_traces<'a>(span: &Span, stored: impl IntoIterator<Item = &'a serde_json::Value>) {
    let mut contexts = stored
        .into_iter()
        .filter_map(|value| serde_json::from_value::<HashMap<String, String>>(value.clone()).ok());
    if let Some(first) = contexts.next() {
        set_parent_from(span, &first);
    }
    for carrier in contexts {
        let linked = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
        let context = linked.span().span_context().clone();
        if context.is_valid() {
            span.add_link(context);
        }
    }
}

/// The hex trace id of a span, or empty when it has none.
pub fn trace_id(span: &Span) -> String {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span_context.trace_id().to_string()
    } else {
        String::new()
    }
}

/// Splits a gRPC path `/pkg.Service/Method` into service and method.
fn rpc_names(path: &str) -> (String, String) {
    let trimmed = path.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((service, method)) => (service.to_owned(), method.to_owned()),
        None => (trimmed.to_owned(), String::new()),
    }
}

/// The `grpc-status` of a header or trailer map, if present.
fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Tower layer for gRPC servers: span per call, parent from `traceparent`,
/// request count and latency by service, method and status code. Metrics
/// are labelled only with the methods the server has (any other path is
/// `unknown`), so junk paths cannot grow the series without bound.
#[derive(Clone, Debug, Default)]
pub struct ServerTraceLayer {
    known: std::sync::Arc<std::collections::HashSet<String>>,
}

impl ServerTraceLayer {
    /// Labels metrics with the paths `/service/method` of `methods`, and
    /// every method of `open_services` (health, reflection).
    pub fn new(
        methods: impl IntoIterator<Item = (String, String)>,
        open_services: &[&str],
    ) -> Self {
        let mut known: std::collections::HashSet<String> = methods
            .into_iter()
            .map(|(service, method)| format!("{service}/{method}"))
            .collect();
        known.extend(open_services.iter().map(|s| format!("{s}/*")));
        Self {
            known: std::sync::Arc::new(known),
        }
    }

    fn labels(&self, service: &str, method: &str) -> (String, String) {
        let path = format!("{service}/{method}");
        if self.known.contains(&path) || self.known.contains(&format!("{service}/*")) {
            (service.to_owned(), method.to_owned())
        } else {
            ("unknown".to_owned(), "unknown".to_owned())
        }
    }
}

impl<S> Layer<S> for ServerTraceLayer {
    type Service = ServerTrace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ServerTrace {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct ServerTrace<S> {
    inner: S,
    layer: ServerTraceLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ServerTrace<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
{
    type Response = http::Response<CallBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = rpc_names(request.uri().path());
        let span = tracing::info_span!(
            "rpc.server",
            otel.name = format!("{service}/{method}"),
            otel.kind = "server",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            trace_id = Empty,
        );
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(request.headers()))
        });
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
        span.record("trace_id", trace_id(&span));
        let (service, method) = self.layer.labels(&service, &method);
        let call = CallRecord {
            span: span.clone(),
            service,
            method,
            started: Instant::now(),
        };

        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(
            async move {
                let response = inner.call(request).await?;
                let (parts, body) = response.into_parts();
                let record = match grpc_status(&parts.headers) {
                    // Trailers-only response: the call has ended with this status.
                    Some(code) => {
                        call.finish(code);
                        None
                    }
                    None => Some(call),
                };
                Ok(http::Response::from_parts(
                    parts,
                    CallBody {
                        inner: body,
                        record,
                    },
                ))
            }
            .instrument(span),
        )
    }
}

/// What is known of a call until its status arrives.
struct CallRecord {
    span: Span,
    service: String,
    method: String,
    started: Instant,
}

impl CallRecord {
    fn finish(self, code: i32) {
        let code_name = format!("{:?}", tonic::Code::from_i32(code));
        self.span.record("rpc.grpc.status_code", code);
        if code != 0 {
            self.span.record("otel.status_code", "ERROR");
        }
        let labels = [
            ("grpc_service", self.service),
            ("grpc_method", self.method),
            ("grpc_code", code_name),
        ];
        metrics::counter!("grpc_server_handled_total", &labels).increment(1);
        metrics::histogram!("grpc_server_handling_seconds", &labels[..2])
            .record(self.started.elapsed().as_secs_f64());
    }
}

pin_project_lite::pin_project! {
    /// A response body that ends its call's span and metrics when the
    /// `grpc-status` trailer passes, or as cancelled when dropped before.
    pub struct CallBody<B> {
        #[pin]
        inner: B,
        record: Option<CallRecord>,
    }

    impl<B> PinnedDrop for CallBody<B> {
        fn drop(this: Pin<&mut Self>) {
            if let Some(record) = this.project().record.take() {
                record.finish(tonic::Code::Cancelled as i32);
            }
        }
    }
}

impl<B: Body> Body for CallBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        match &frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    if let Some(record) = this.record.take() {
                        record.finish(grpc_status(trailers).unwrap_or(tonic::Code::Unknown as i32));
                    }
                }
            }
            Some(Err(_)) => {
                if let Some(record) = this.record.take() {
                    record.finish(tonic::Code::Internal as i32);
                }
            }
            None => {
                if let Some(record) = this.record.take() {
                    record.finish(tonic::Code::Unknown as i32);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Tower layer for gRPC clients: span per call, `traceparent` injected.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClientTraceLayer;

impl<S> Layer<S> for ClientTraceLayer {
    type Service = ClientTrace<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ClientTrace { inner }
    }
}

#[derive(Clone, Debug)]
pub struct ClientTrace<S> {
    inner: S,
}

fn record_client_status(span: &Span, code: i32) {
    span.record("rpc.grpc.status_code", code);
    if code != 0 {
        span.record("otel.status_code", "ERROR");
    }
}

pin_project_lite::pin_project! {
    /// A client's response body that records the call's `grpc-status` on
    /// its span when the trailers pass (the status of a successful call,
    /// and of any streamed one, arrives there).
    pub struct ClientCallBody<B> {
        #[pin]
        inner: B,
        span: Option<Span>,
    }
}

impl<B: Body> Body for ClientCallBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                if let Some(span) = this.span.take() {
                    record_client_status(&span, code);
                }
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for ClientTrace<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
{
    type Response = http::Response<ClientCallBody<ResBody>>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = rpc_names(request.uri().path());
        let span = tracing::info_span!(
            "rpc.client",
            otel.name = format!("{service}/{method}"),
            otel.kind = "client",
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
        );
        let context = span.context();
        opentelemetry::global::get_text_map_propagator(|p| {
            p.inject_context(&context, &mut HeaderInjector(request.headers_mut()))
        });
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let record_span = span.clone();
        Box::pin(
            async move {
                let response = match inner.call(request).await {
                    Ok(response) => response,
                    Err(error) => {
                        record_client_status(&record_span, tonic::Code::Unavailable as i32);
                        return Err(error);
                    }
                };
                // A trailers-only answer (an error) carries its status in the
                // headers; otherwise it comes with the body's trailers.
                let (parts, body) = response.into_parts();
                let span = match grpc_status(&parts.headers) {
                    Some(code) => {
                        record_client_status(&record_span, code);
                        None
                    }
                    None => Some(record_span),
                };
                Ok(http::Response::from_parts(
                    parts,
                    ClientCallBody { inner: body, span },
                ))
            }
            .instrument(span),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_grpc_paths() {
        assert_eq!(
            rpc_names("/tenure.ingestion.v1.IngestionService/GetAccount"),
            (
                "tenure.ingestion.v1.IngestionService".to_owned(),
                "GetAccount".to_owned()
            )
        );
        assert_eq!(rpc_names("/odd"), ("odd".to_owned(), String::new()));
    }

    #[test]
    fn traceparent_round_trips_through_headers() {
        use opentelemetry::propagation::TextMapPropagator as _;
        use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
        use opentelemetry_sdk::propagation::TraceContextPropagator;

        let propagator = TraceContextPropagator::new();
        let trace_id = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        let span_id = SpanId::from_hex("00f067aa0ba902b7").unwrap();
        let sent = SpanContext::new(
            trace_id,
            span_id,
            TraceFlags::SAMPLED,
            true,
            TraceState::NONE,
        );
        let context = opentelemetry::Context::new().with_remote_span_context(sent);

        let mut headers = HeaderMap::new();
        propagator.inject_context(&context, &mut HeaderInjector(&mut headers));
        assert_eq!(
            headers.get("traceparent").unwrap(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        let received = propagator.extract(&HeaderExtractor(&headers));
        let received = received.span().span_context().clone();
        assert_eq!(received.trace_id(), trace_id);
        assert_eq!(received.span_id(), span_id);
        assert!(received.is_sampled());
    }
}
