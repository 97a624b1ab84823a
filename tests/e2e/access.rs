//! Who may call what: every method needs a caller with its scope.

use std::collections::BTreeSet;
use std::time::Duration;

use prost::Message as _;
use tenure_platform::auth::{Credentials, Scope};
use tenure_proto::health::v1::NotifyAccountsChangedRequest;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::ingestion::v1::{
    BatchUpsertAccountsRequest, ListAccountsRequest, ListContactsRequest,
};
use tenure_tests::{TestStack, eventually};
use tonic::Code;

fn ingestion(
    app: &TestStack,
    credentials: &Credentials,
) -> IngestionServiceClient<tenure_platform::client::TracedChannel> {
    let url = &app.stack.peers.ingestion_url;
    IngestionServiceClient::new(tenure_platform::client::channel(url, credentials).unwrap())
}

async fn list_accounts(app: &TestStack, credentials: &Credentials) -> Result<(), tonic::Status> {
    ingestion(app, credentials)
        .list_accounts(ListAccountsRequest::default())
        .await
        .map(|_| ())
}

/// An operator's ingestion client, after upserting the account `acme`.
async fn with_acme(
    app: &TestStack,
) -> IngestionServiceClient<tenure_platform::client::TracedChannel> {
    let mut client = ingestion(app, &app.operator());
    client
        .batch_upsert_accounts(BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![crate::ingestion::account("acme", "Acme", 3)],
        })
        .await
        .unwrap();
    client
}

/// Usage event `i` of `acme`: a login yesterday.
fn login(i: usize) -> tenure_proto::ingestion::v1::UsageEvent {
    crate::fixtures::event(
        &format!("m-{i}"),
        "acme",
        "u-1",
        "login",
        crate::fixtures::days_ago(1),
    )
}

fn code(result: Result<(), tonic::Status>) -> Code {
    result.err().map_or(Code::Ok, |s| s.code())
}

#[test]
fn every_method_of_every_service_has_a_rule() {
    let set = prost_types::FileDescriptorSet::decode(tenure_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut methods = BTreeSet::new();
    for file in &set.file {
        for service in &file.service {
            let full = format!("{}.{}", file.package(), service.name());
            for method in &service.method {
                methods.insert((full.clone(), method.name().to_owned()));
            }
        }
    }
    let mut ruled = BTreeSet::new();
    for spec in tenure::stack::SERVICES {
        for (method, _) in spec.access {
            for service in spec.grpc_services {
                ruled.insert((service.to_string(), method.to_string()));
            }
        }
    }
    assert_eq!(
        methods, ruled,
        "each method exactly one rule, no rule for a missing method"
    );
}

#[tokio::test]
async fn no_key_or_a_wrong_key_is_unauthenticated_without_a_hint() {
    let app = TestStack::spawn().await;
    let none = Credentials::default();
    assert_eq!(
        code(list_accounts(&app, &none).await),
        Code::Unauthenticated
    );

    let mut forged = app.stack.operator_key.expose().to_owned();
    let last = forged.pop();
    forged.push(if last == Some('A') { 'B' } else { 'A' });
    let refused = list_accounts(
        &app,
        &Credentials::key(tenure_platform::auth::Secret::new(forged.clone())),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    let key_id = &forged["tenure_".len().."tenure_".len() + 12];
    assert!(
        !refused.message().contains(key_id) && !refused.message().contains(&forged),
        "{refused:?}"
    );
    assert_eq!(
        code(list_accounts(&app, &app.operator()).await),
        Code::Ok,
        "the operator's key opens what it holds"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_key_opens_only_its_scopes() {
    let app = TestStack::spawn().await;
    let reader = app.key_with(&[Scope::Read]);
    assert_eq!(code(list_accounts(&app, &reader).await), Code::Ok);
    let write = ingestion(&app, &reader)
        .batch_upsert_accounts(BatchUpsertAccountsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(write.code(), Code::PermissionDenied);
    assert!(write.message().contains("ingest"), "{write:?}");
    let contacts = ingestion(&app, &reader)
        .list_contacts(ListContactsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(
        contacts.code(),
        Code::PermissionDenied,
        "personal data needs its own scope"
    );

    // The notifications that start rescoring and playbooks come only from
    // the services: not even the operator may send one.
    let mut health = HealthServiceClient::new(
        app.stack
            .operator_peers()
            .channel(&app.stack.peers.health_url)
            .unwrap(),
    );
    let forged = health
        .notify_accounts_changed(NotifyAccountsChangedRequest::default())
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Code::PermissionDenied);
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_key_stops_working_without_a_restart() {
    let app = TestStack::spawn().await;
    let file = app.stack.keys_file().unwrap().to_owned();
    let (stored, key) =
        tenure_platform::auth::keys::create(&file, "soon revoked", &[Scope::Read], None).unwrap();
    let credentials = Credentials::key(key);
    assert_eq!(code(list_accounts(&app, &credentials).await), Code::Ok);
    assert!(tenure_platform::auth::keys::revoke(&file, &stored.id).unwrap());
    let refused = eventually(Duration::from_secs(5), || async {
        (code(list_accounts(&app, &credentials).await) == Code::Unauthenticated).then_some(())
    })
    .await;
    assert!(refused.is_some(), "the revoked key still works");
    app.stop().await;
}

#[tokio::test]
async fn a_mesh_identity_is_a_caller_where_the_mesh_header_is_trusted() {
    const FORECAST_JOB: &str = "spiffe://cluster.local/ns/tenure/sa/forecast-job";
    let app = TestStack::spawn_with(|options| {
        options.server.auth.mesh_identity_header = Some("x-forwarded-client-cert".into());
        options.server.auth.mesh_identities = vec![format!("{FORECAST_JOB}=read").parse().unwrap()];
    })
    .await;
    let url = &app.stack.peers.ingestion_url;
    let mut client =
        IngestionServiceClient::new(tenure_tests::untraced_channel(url, &Credentials::default()));
    let as_identity = |identity: &str| {
        let mut request = tonic::Request::new(ListAccountsRequest::default());
        let header = format!("By=spiffe://cluster.local/ns/tenure/sa/ingestion;URI={identity}");
        request
            .metadata_mut()
            .insert("x-forwarded-client-cert", header.parse().unwrap());
        request
    };
    client
        .list_accounts(as_identity(FORECAST_JOB))
        .await
        .expect("the job reads");
    let stranger = client
        .list_accounts(as_identity("spiffe://cluster.local/ns/other/sa/intruder"))
        .await
        .unwrap_err();
    assert_eq!(stranger.code(), Code::Unauthenticated);
    let write = client
        .batch_upsert_accounts({
            let mut request = tonic::Request::new(BatchUpsertAccountsRequest::default());
            *request.metadata_mut() = as_identity(FORECAST_JOB).metadata().clone();
            request
        })
        .await
        .unwrap_err();
    assert_eq!(write.code(), Code::PermissionDenied);
    app.stop().await;
}

#[tokio::test]
async fn a_service_with_no_way_to_know_its_callers_does_not_start() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let access = tenure_platform::auth::Access {
        services: tenure_ingestion::GRPC_SERVICES,
        rules: tenure_ingestion::ACCESS,
    };
    let refused = tenure_platform::server::RunningServer::start(
        listener,
        tonic::service::Routes::default(),
        access,
        tenure_platform::config::ServerConfig::default(),
    )
    .err()
    .expect("refused to start");
    assert!(
        refused.to_string().contains("TENURE_API_KEYS_FILE"),
        "{refused:#}"
    );
}

#[tokio::test]
async fn contacts_are_read_a_page_at_a_time_and_only_with_their_scope() {
    use tenure_proto::ingestion::v1::{BatchUpsertContactsRequest, ContactRole};
    let app = TestStack::spawn().await;
    let at = crate::fixtures::days_ago(3);
    let mut client = with_acme(&app).await;
    let ids = ["c-1", "c-2", "c-3", "c-4", "c-5"];
    let contacts = ids
        .iter()
        .map(|id| crate::fixtures::contact(id, "acme", &[ContactRole::User], true, at))
        .collect();
    client
        .batch_upsert_contacts(BatchUpsertContactsRequest {
            request_id: String::new(),
            contacts,
        })
        .await
        .unwrap();

    let reader = ingestion(&app, &app.key_with(&[Scope::Contacts]));
    let (mut seen, mut token, mut pages) = (Vec::new(), String::new(), 0);
    loop {
        let page = reader
            .clone()
            .list_contacts(ListContactsRequest {
                account_id: "acme".into(),
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        assert!(page.contacts.len() <= 2);
        seen.extend(page.contacts.into_iter().map(|c| c.contact_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!((pages, seen), (3, ids.map(str::to_owned).to_vec()));
    let tampered = reader
        .clone()
        .list_contacts(ListContactsRequest {
            account_id: "acme".into(),
            page_token: "not-a-token".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(tampered.code(), Code::InvalidArgument);

    let without = ingestion(&app, &app.key_with(&[Scope::Read, Scope::Ingest]));
    let refused = without
        .clone()
        .list_contacts(ListContactsRequest {
            account_id: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    app.stop().await;
}

#[tokio::test]
async fn each_caller_has_its_own_rate_and_is_told_when_to_come_back() {
    use tonic_types::StatusExt as _;
    let app = TestStack::spawn().await;
    // Two calls a second, four at once.
    let slow = app.key_limited(&[Scope::Read], Some(2));
    let mut codes = Vec::new();
    for _ in 0..8 {
        codes.push(code(list_accounts(&app, &slow).await));
    }
    assert_eq!(&codes[..4], &[Code::Ok; 4], "the burst passes");
    let refused = list_accounts(&app, &slow).await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{codes:?}");
    let wait = refused
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo says when");
    assert!(wait <= Duration::from_secs(1), "{wait:?}");

    // Another caller is not held back by this one.
    assert_eq!(code(list_accounts(&app, &app.operator()).await), Code::Ok);
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert_eq!(
        code(list_accounts(&app, &slow).await),
        Code::Ok,
        "back after the wait"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_resource_exhausted() {
    let app = TestStack::spawn_with(|options| options.server.max_message_bytes = 2048).await;
    let mut big = crate::ingestion::account("acme", "Acme", 3);
    big.industry = "x".repeat(4096);
    let refused = ingestion(&app, &app.operator())
        .batch_upsert_accounts(BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![big],
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert_eq!(
        code(list_accounts(&app, &app.operator()).await),
        Code::Ok,
        "small calls still pass"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_stream_longer_than_its_limit_is_resource_exhausted() {
    use tenure_proto::ingestion::v1::StreamEventsRequest;
    let app = TestStack::spawn_with(|options| {
        let limit = ("INGESTION_MAX_STREAM_CHUNKS".to_owned(), "2".to_owned());
        options.settings.extend([limit]);
    })
    .await;
    let mut client = with_acme(&app).await;
    let chunks: Vec<StreamEventsRequest> = (1..=3)
        .map(|i| StreamEventsRequest {
            chunk_id: i,
            events: vec![login(i as usize)],
        })
        .collect();
    let mut acks = client
        .stream_events(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    for chunk_id in [1, 2] {
        assert_eq!(acks.message().await.unwrap().unwrap().chunk_id, chunk_id);
    }
    let refused = acks.message().await.unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_chunk_too_large_ends_the_stream_with_its_status() {
    use tenure_proto::ingestion::v1::StreamEventsRequest;
    let app = TestStack::spawn_with(|options| options.server.max_message_bytes = 4096).await;
    let mut client = with_acme(&app).await;
    let event = login;
    let chunks = vec![
        StreamEventsRequest {
            chunk_id: 1,
            events: vec![event(1)],
        },
        StreamEventsRequest {
            chunk_id: 2,
            events: (2..200).map(event).collect(),
        },
    ];
    let mut acks = client
        .stream_events(tokio_stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acks.message().await.unwrap().unwrap().chunk_id, 1);
    let ended = acks.message().await;
    let status = ended.expect_err("the stream ends with the chunk's error, not OK");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    app.stop().await;
}
