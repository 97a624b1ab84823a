//! The stack as a whole: health checks, reflection, traces across services,
//! field-level validation errors.

use std::collections::BTreeSet;

use opentelemetry::trace::{SpanId, SpanKind, TraceId};
use opentelemetry::{Key, Value};
use tenure_platform::client::channel;
use tenure_proto::health::v1::GetAccountHealthRequest;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::ingestion::v1::{Account, BatchUpsertAccountsRequest, ListAccountsRequest};
use tenure_tests::{TestStack, untraced_channel, violated_fields, wait_for_spans};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::ingestion::account;

const SERVICES: [(&str, &str); 4] = [
    ("ingestion", "tenure.ingestion.v1.IngestionService"),
    ("health", "tenure.health.v1.HealthService"),
    ("renewals", "tenure.renewals.v1.RenewalsService"),
    ("playbooks", "tenure.playbooks.v1.PlaybooksService"),
];

#[tokio::test]
async fn every_service_reports_serving() {
    let app = TestStack::spawn().await;
    for (name, grpc_service) in SERVICES {
        let url = app.stack.url(name).expect("service url");
        let mut client = HealthClient::new(channel(&url, &Default::default()).unwrap());
        for service in [grpc_service, ""] {
            let status = client
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .unwrap_or_else(|e| panic!("{name} health check failed: {e}"))
                .into_inner()
                .status();
            assert_eq!(status.as_str_name(), "SERVING", "{name} {service:?}");
        }
        let unknown = client
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await;
        assert_eq!(unknown.unwrap_err().code(), tonic::Code::NotFound);
    }
    let statuses = tenure::status::check_all(&app.stack.peers).await;
    assert!(
        statuses.iter().all(|s| s.is_serving()),
        "{}",
        tenure::status::render(&statuses)
    );
    app.stop().await;
}

#[tokio::test]
async fn shutdown_reports_not_serving_and_drains_within_the_grace_period() {
    let mut app = TestStack::spawn_with(|options| {
        options.server.shutdown_grace = std::time::Duration::from_millis(500);
    })
    .await;
    let url = app.stack.url("renewals").unwrap();
    let mut client = HealthClient::new(channel(&url, &Default::default()).unwrap());
    let mut watch = client
        .watch(HealthCheckRequest {
            service: "tenure.renewals.v1.RenewalsService".into(),
        })
        .await
        .expect("watch")
        .into_inner();
    let first = watch.message().await.unwrap().unwrap().status();
    assert_eq!(first.as_str_name(), "SERVING");

    // The open watch is an in-flight call: the stop must wait for it, but
    // no longer than the grace period.
    let started = std::time::Instant::now();
    let stopping = tokio::spawn(async move {
        app.stack.stop_service("renewals").await.unwrap();
        app
    });
    let next = watch.message().await.unwrap().unwrap().status();
    assert_eq!(
        next.as_str_name(),
        "NOT_SERVING",
        "watchers learn of the drain"
    );
    let app = stopping.await.unwrap();
    let took = started.elapsed();
    assert!(
        took < std::time::Duration::from_secs(5),
        "stopped after {took:?}"
    );
    let refused = HealthClient::new(channel(&url, &Default::default()).unwrap())
        .check(HealthCheckRequest::default())
        .await
        .expect_err("no longer listening");
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    app.stop().await;
}

#[tokio::test]
async fn metrics_count_calls_by_method_and_code() {
    let metrics = tenure_tests::metrics_addr();
    let mut app = TestStack::spawn().await;
    let _ = app
        .health
        .get_account_health(GetAccountHealthRequest {
            account_id: "metrics-ghost".into(),
        })
        .await
        .expect_err("unknown account");
    let text = tenure_tests::http_get(metrics, "/metrics").await;
    let counted = text.lines().any(|line| {
        line.starts_with("grpc_server_handled_total{")
            && line.contains(r#"grpc_service="tenure.health.v1.HealthService""#)
            && line.contains(r#"grpc_method="GetAccountHealth""#)
            && line.contains(r#"grpc_code="NotFound""#)
    });
    assert!(counted, "no counter for the failed call in:\n{text}");
    assert!(
        text.contains("grpc_server_handling_seconds_bucket{"),
        "latency is a histogram"
    );
    app.stop().await;
}

/// The services a reflection endpoint lists, asked in protocol `$v` (the
/// v1 and v1alpha messages are the same shapes in two packages).
macro_rules! listed_services {
    ($v:ident, $url:expr, $credentials:expr) => {{
        use tonic_reflection::pb::$v::ServerReflectionRequest;
        use tonic_reflection::pb::$v::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$v::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$v::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(channel($url, &$credentials).unwrap());
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let response = client
            .server_reflection_info(tokio_stream::once(request))
            .await
            .expect("reflection call")
            .into_inner()
            .message()
            .await
            .expect("reflection answer")
            .expect("one answer");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection answer from {}", $url);
        };
        list.service
            .into_iter()
            .map(|s| s.name)
            .collect::<BTreeSet<String>>()
    }};
}

#[tokio::test]
async fn reflection_lists_each_service_in_v1_and_v1alpha() {
    let app = TestStack::spawn().await;
    for (name, grpc_service) in SERVICES {
        let url = app.stack.url(name).expect("service url");
        let expected: BTreeSet<String> = [
            grpc_service,
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]
        .into_iter()
        .map(str::to_owned)
        .collect();
        assert_eq!(
            listed_services!(v1, &url, app.operator()),
            expected,
            "{name} v1"
        );
        assert_eq!(
            listed_services!(v1alpha, &url, app.operator()),
            expected,
            "{name} v1alpha"
        );
    }
    app.stop().await;
}

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
async fn a_bad_batch_is_rejected_whole_with_field_violations() {
    let app = TestStack::spawn().await;
    let mut missing_name = account("b", "", 1);
    missing_name.name.clear();
    let mut future = account("c", "Future Inc", 1);
    future.updated_at = Some(tenure_platform::time::to_timestamp(
        chrono::Utc::now() + chrono::Duration::days(2),
    ));
    let request = BatchUpsertAccountsRequest {
        request_id: "bad-batch".into(),
        accounts: vec![
            account("a", "Good Co", 1),
            missing_name,
            future,
            Account {
                lifecycle_stage: 42,
                ..account("d", "D", 1)
            },
        ],
    };
    let status = app
        .ingestion
        .clone()
        .batch_upsert_accounts(request)
        .await
        .expect_err("rejected");
    assert_eq!(
        violated_fields(&status),
        [
            "accounts[1].name",
            "accounts[2].updated_at",
            "accounts[3].lifecycle_stage"
        ]
    );
    let listed = app
        .ingestion
        .clone()
        .list_accounts(ListAccountsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.accounts.is_empty(),
        "nothing of a rejected batch is written"
    );
    app.stop().await;
}

#[tokio::test]
async fn metrics_name_only_methods_the_server_has() {
    use tenure_proto::ingestion::v1::ListAccountsResponse;
    let metrics = tenure_tests::metrics_addr();
    let app = TestStack::spawn().await;
    let channel = untraced_channel(&app.stack.peers.ingestion_url, &app.operator());
    for path in [
        "/junk.Service/Junk4242",
        "/tenure.ingestion.v1.IngestionService/NoSuchMethod4242",
    ] {
        let mut grpc = tonic::client::Grpc::new(channel.clone());
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<ListAccountsRequest, ListAccountsResponse>::default();
        let answer = grpc
            .unary(
                tonic::Request::new(ListAccountsRequest::default()),
                http::uri::PathAndQuery::from_static(path),
                codec,
            )
            .await;
        assert!(answer.is_err(), "{path} is no method");
    }
    let text = tenure_tests::http_get(metrics, "/metrics").await;
    // Match the names, not the digits: a sample's value may contain them.
    for junk in ["Junk4242", "NoSuchMethod4242", "junk.Service"] {
        assert!(
            !text.contains(junk),
            "the junk path {junk} became a metric label"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("grpc_server_handled_total{")
                && l.contains(r#"grpc_method="unknown""#)),
        "junk is counted as unknown"
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

/// A peer that accepts connections and never answers: a service's unary
/// call gives up at its deadline, while a result stream is the caller's to
/// bound.
#[tokio::test]
async fn calls_to_a_silent_peer_end_at_their_deadline() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            connections.push(socket);
        }
    });
    let deadline = std::time::Duration::from_millis(300);
    let peers = tenure_platform::config::PeerConfig {
        ingestion_url: url.clone(),
        health_url: url.clone(),
        renewals_url: url.clone(),
        playbooks_url: url.clone(),
        credentials: Default::default(),
        call_timeout: Some(deadline),
    };
    let mut client = IngestionServiceClient::new(peers.channel(&url).unwrap());

    let started = std::time::Instant::now();
    let call = client.get_account(tenure_proto::ingestion::v1::GetAccountRequest {
        account_id: "acme".into(),
    });
    let status = tokio::time::timeout(deadline * 20, call)
        .await
        .expect("the call ends by its deadline")
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded, "{status:?}");
    assert!(started.elapsed() < deadline * 10, "{:?}", started.elapsed());

    // A stream of every account's signals may take long: no default deadline.
    let stream = client.stream_account_signals(
        tenure_proto::ingestion::v1::StreamAccountSignalsRequest::default(),
    );
    assert!(
        tokio::time::timeout(deadline * 3, stream).await.is_err(),
        "the stream was cut off by a deadline it never set"
    );
    held.abort();
}
