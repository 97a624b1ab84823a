//! Traces across the stack: one trace from a caller through every service
//! it reaches, through the outbox and the background refreshes a change
//! causes, and errors recorded with their status code.

use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry::{Key, Value};
use tenure_proto::health::v1::GetAccountHealthRequest;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::ingestion::v1::{Account, BatchUpsertAccountsRequest};
use tenure_tests::{TestStack, untraced_channel, wait_for_spans};

use crate::ingestion::account;

fn attribute<'a>(span: &'a opentelemetry_sdk::trace::SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == Key::from(key.to_owned()))
        .map(|kv| &kv.value)
}

/// Whether every `(name, kind)` of `wanted` is among `spans`.
fn has_all(spans: &[opentelemetry_sdk::trace::SpanData], wanted: &[(&str, SpanKind)]) -> bool {
    wanted.iter().all(|(name, kind)| {
        spans
            .iter()
            .any(|s| s.name == *name && s.span_kind == *kind)
    })
}

/// The span of `kind` named `name`, or a panic listing what there is.
fn span_named<'a>(
    spans: &'a [opentelemetry_sdk::trace::SpanData],
    name: &str,
    kind: SpanKind,
) -> &'a opentelemetry_sdk::trace::SpanData {
    spans
        .iter()
        .find(|s| s.name == name && s.span_kind == kind)
        .unwrap_or_else(|| {
            panic!(
                "no {kind:?} span {name} in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
}

/// Upserts `account` in a call that carries a trace of the test's own.
async fn upsert_in_trace(app: &TestStack, account: Account, trace_id: TraceId, caller: SpanId) {
    let mut ingestion = IngestionServiceClient::new(untraced_channel(
        &app.stack.peers.ingestion_url,
        &app.operator(),
    ));
    let request = BatchUpsertAccountsRequest {
        request_id: String::new(),
        accounts: vec![account],
    };
    ingestion
        .batch_upsert_accounts(traced(request, trace_id, caller))
        .await
        .expect("upsert");
}

/// A request carrying a `traceparent` of the test's own.
fn traced<T>(message: T, trace_id: TraceId, parent: SpanId) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let header = format!("00-{trace_id}-{parent}-01");
    request
        .metadata_mut()
        .insert("traceparent", header.parse().unwrap());
    request
}

#[tokio::test]
async fn one_trace_spans_health_and_ingestion() {
    let mut app = TestStack::spawn().await;
    app.ingestion
        .batch_upsert_accounts(BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![account("trace-co", "Trace Co", 1)],
        })
        .await
        .expect("upsert");

    let trace_id = TraceId::from_hex("5af7183fc1d4e2b3a8f9e0d1c2b3a4f5").unwrap();
    let caller = SpanId::from_hex("1111222233334444").unwrap();
    let mut health = HealthServiceClient::new(untraced_channel(
        &app.stack.peers.health_url,
        &app.operator(),
    ));
    let answer = health
        .get_account_health(traced(
            GetAccountHealthRequest {
                account_id: "trace-co".into(),
            },
            trace_id,
            caller,
        ))
        .await
        .expect("health answers")
        .into_inner();
    assert_eq!(answer.account_name, "Trace Co");

    let health_method = "tenure.health.v1.HealthService/GetAccountHealth";
    let ingestion_method = "tenure.ingestion.v1.IngestionService/GetAccount";
    let spans = wait_for_spans(trace_id, |spans| {
        spans.iter().filter(|s| s.name == ingestion_method).count() >= 2
            && spans.iter().any(|s| s.name == health_method)
    })
    .await;
    let health_server = span_named(&spans, health_method, SpanKind::Server);
    let client = span_named(&spans, ingestion_method, SpanKind::Client);
    let ingestion_server = span_named(&spans, ingestion_method, SpanKind::Server);

    assert_eq!(
        health_server.parent_span_id, caller,
        "health continues the caller's trace"
    );
    assert_eq!(
        client.parent_span_id,
        health_server.span_context.span_id(),
        "the outgoing call is a child"
    );
    assert_eq!(
        ingestion_server.parent_span_id,
        client.span_context.span_id(),
        "ingestion continues it"
    );

    for (span, service, method) in [
        (
            health_server,
            "tenure.health.v1.HealthService",
            "GetAccountHealth",
        ),
        (
            ingestion_server,
            "tenure.ingestion.v1.IngestionService",
            "GetAccount",
        ),
    ] {
        assert_eq!(attribute(span, "rpc.system"), Some(&Value::from("grpc")));
        assert_eq!(attribute(span, "rpc.service"), Some(&Value::from(service)));
        assert_eq!(attribute(span, "rpc.method"), Some(&Value::from(method)));
        assert_eq!(
            attribute(span, "rpc.grpc.status_code"),
            Some(&Value::I64(0))
        );
    }
    assert_eq!(
        attribute(client, "rpc.grpc.status_code"),
        Some(&Value::I64(0)),
        "a successful call's status reaches the client span from the trailers"
    );
    app.stop().await;
}

#[tokio::test]
async fn outbox_delivery_continues_the_writers_trace() {
    let app = TestStack::spawn().await;
    let trace_id = TraceId::from_hex("7a3c1e5f9b2d4c6e8f0a1b2c3d4e5f60").unwrap();
    let caller = SpanId::from_hex("2222333344445555").unwrap();
    upsert_in_trace(&app, account("later", "Later Co", 1), trace_id, caller).await;

    let upsert = "tenure.ingestion.v1.IngestionService/BatchUpsertAccounts";
    let notify = "tenure.health.v1.HealthService/NotifyAccountsChanged";
    // A parent span is exported when it ends, after its children: wait for
    // the delivery itself, not only the call it made.
    let spans = wait_for_spans(trace_id, |spans| {
        has_all(
            spans,
            &[
                (notify, SpanKind::Server),
                (notify, SpanKind::Client),
                ("outbox.deliver", SpanKind::Internal),
            ],
        )
    })
    .await;
    let written = span_named(&spans, upsert, SpanKind::Server);
    let delivery = span_named(&spans, "outbox.deliver", SpanKind::Internal);
    let sent = span_named(&spans, notify, SpanKind::Client);
    let received = span_named(&spans, notify, SpanKind::Server);
    assert_eq!(written.parent_span_id, caller);
    assert_eq!(
        delivery.parent_span_id,
        written.span_context.span_id(),
        "delivery continues the write's span"
    );
    assert_eq!(sent.parent_span_id, delivery.span_context.span_id());
    assert_eq!(received.parent_span_id, sent.span_context.span_id());
    app.stop().await;
}

#[tokio::test]
async fn errors_carry_their_status_code_on_the_span() {
    let app = TestStack::spawn().await;
    let trace_id = TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap();
    let caller = SpanId::from_hex("b7ad6b7169203331").unwrap();
    let mut health = HealthServiceClient::new(untraced_channel(
        &app.stack.peers.health_url,
        &app.operator(),
    ));
    let status = health
        .get_account_health(traced(
            GetAccountHealthRequest {
                account_id: "nobody".into(),
            },
            trace_id,
            caller,
        ))
        .await
        .expect_err("unknown account");
    assert_eq!(status.code(), tonic::Code::NotFound);
    let method = "tenure.health.v1.HealthService/GetAccountHealth";
    let spans = wait_for_spans(trace_id, |spans| spans.iter().any(|s| s.name == method)).await;
    let span = spans
        .iter()
        .find(|s| s.name == method)
        .expect("server span");
    assert_eq!(
        attribute(span, "rpc.grpc.status_code"),
        Some(&Value::I64(tonic::Code::NotFound as i64))
    );
    app.stop().await;
}

#[tokio::test]
async fn renewals_refreshes_a_subscription_in_the_trace_of_its_change() {
    use tenure_proto::ingestion::v1::BatchUpsertSubscriptionsRequest;
    let app = TestStack::spawn().await;
    let mut ingestion = IngestionServiceClient::new(untraced_channel(
        &app.stack.peers.ingestion_url,
        &app.operator(),
    ));
    ingestion
        .batch_upsert_accounts(BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![account("sub-co", "Sub Co", 5)],
        })
        .await
        .expect("account");
    let trace_id = TraceId::from_hex("3c1e5f9b2d4c6e8f0a1b2c3d4e5f607a").unwrap();
    let caller = SpanId::from_hex("3333444455556666").unwrap();
    let start = crate::fixtures::today_minus(30);
    let subscription = crate::fixtures::subscription(
        "sub-1",
        "sub-co",
        10,
        120_000,
        start,
        start + chrono::Days::new(365),
        crate::fixtures::days_ago(1),
    );
    let request = BatchUpsertSubscriptionsRequest {
        request_id: String::new(),
        subscriptions: vec![subscription],
    };
    ingestion
        .batch_upsert_subscriptions(traced(request, trace_id, caller))
        .await
        .expect("subscription");

    let notify = "tenure.renewals.v1.RenewalsService/NotifySubscriptionsChanged";
    let history = "tenure.ingestion.v1.IngestionService/GetSubscriptionHistory";
    let spans = wait_for_spans(trace_id, |spans| {
        has_all(
            spans,
            &[
                (notify, SpanKind::Server),
                ("renewals.sync", SpanKind::Internal),
                (history, SpanKind::Client),
                (history, SpanKind::Server),
            ],
        )
    })
    .await;
    let marked = span_named(&spans, notify, SpanKind::Server);
    let sync = span_named(&spans, "renewals.sync", SpanKind::Internal);
    let fetched = span_named(&spans, history, SpanKind::Client);
    assert_eq!(sync.parent_span_id, marked.span_context.span_id());
    assert_eq!(fetched.parent_span_id, sync.span_context.span_id());
    app.stop().await;
}

#[tokio::test]
async fn health_rescores_an_account_in_the_trace_of_its_change() {
    let mut app = TestStack::spawn().await;
    crate::scoring::p1_scorecard(&mut app).await;
    let trace_id = TraceId::from_hex("4d2f6a0c8e1b3d5f7a9c0e2b4d6f8a1c").unwrap();
    let caller = SpanId::from_hex("4444555566667777").unwrap();
    upsert_in_trace(
        &app,
        account("rescored-co", "Rescored Co", 1),
        trace_id,
        caller,
    )
    .await;
    let notify = "tenure.health.v1.HealthService/NotifyAccountsChanged";
    let spans = wait_for_spans(trace_id, |spans| {
        spans.iter().any(|s| s.name == "health.rescore")
            && spans
                .iter()
                .any(|s| s.name == notify && s.span_kind == SpanKind::Server)
    })
    .await;
    let marked = span_named(&spans, notify, SpanKind::Server);
    let rescore = span_named(&spans, "health.rescore", SpanKind::Internal);
    assert_eq!(rescore.parent_span_id, marked.span_context.span_id());
    app.stop().await;
}
