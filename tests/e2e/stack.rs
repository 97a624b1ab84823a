//! The stack as a whole: health checks, shutdown, metrics, reflection,
//! field-level validation errors and peer deadlines (traces are in
//! [`super::traces`]).

use std::collections::BTreeSet;

use tenure_platform::client::channel;
use tenure_proto::health::v1::GetAccountHealthRequest;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::ingestion::v1::{Account, BatchUpsertAccountsRequest, ListAccountsRequest};
use tenure_tests::{TestStack, untraced_channel, violated_fields};
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
