//! Input an outside client may send on purpose: refused as the caller's
//! error, with the field named, and nothing written.

use tenure_proto::health::v1 as hpb;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::playbooks::v1 as ppb;
use tenure_proto::renewals::v1 as rpb;
use tenure_tests::{TestStack, violated_fields};

use crate::fixtures::*;
use crate::ingestion::account;

/// NUL (U+0000) cannot be stored by Postgres: in any string of any service,
/// read or write, it is INVALID_ARGUMENT naming the field.
#[tokio::test]
async fn nul_in_any_string_is_the_callers_error() {
    let mut app = TestStack::spawn().await;

    let mut accounts = vec![
        account("acme", "Acme", 100),
        account("globex", "Glo\0bex", 100),
    ];
    accounts[0]
        .attributes
        .insert("tier\0".into(), ipb::AttributeValue::default());
    let refused = app
        .ingestion
        .batch_upsert_accounts(ipb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["accounts[0].attributes[0].key"]);
    let read = app
        .ingestion
        .get_account(ipb::GetAccountRequest {
            account_id: "acme".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(read.code(), tonic::Code::NotFound, "nothing was written");

    let refused = app
        .ingestion
        .get_account(ipb::GetAccountRequest {
            account_id: "ac\0me".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["account_id"]);

    // A JSON property of an event, in the middle of a stream: the stream
    // ends with the chunk's error.
    app.plain_accounts(&["acme".into()]).await;
    let mut event = ipb::UsageEvent {
        message_id: "e-1".into(),
        account_id: "acme".into(),
        user_id: "u-1".into(),
        event_name: "reports".into(),
        occurred_at: ts(days_ago(1)),
        ..Default::default()
    };
    let clean = ipb::StreamEventsRequest {
        chunk_id: 1,
        events: vec![event.clone()],
    };
    event.message_id = "e-2".into();
    event.properties = Some(prost_types::Struct {
        fields: [(
            "plan".to_owned(),
            prost_types::Value {
                kind: Some(prost_types::value::Kind::StringValue("pro\0".into())),
            },
        )]
        .into(),
    });
    let dirty = ipb::StreamEventsRequest {
        chunk_id: 2,
        events: vec![event],
    };
    let mut acks = app
        .ingestion
        .stream_events(tokio_stream::iter(vec![clean, dirty]))
        .await
        .expect("stream opens")
        .into_inner();
    let mut ended = None;
    loop {
        match acks.message().await {
            Ok(Some(ack)) => assert_eq!(ack.chunk_id, 1, "only the clean chunk is acknowledged"),
            Ok(None) => break,
            Err(status) => {
                ended = Some(status);
                break;
            }
        }
    }
    let ended = ended.expect("the stream ends with an error");
    let fields = violated_fields(&ended);
    assert!(
        fields[0].starts_with("events[0].properties.fields[0]"),
        "{fields:?}"
    );

    let refused = app
        .health
        .get_health(hpb::GetHealthRequest {
            account_id: "\0".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["account_id"]);

    // A page token made by hand around a cursor holding NUL.
    let token = tenure_platform::paging::encode_token(&(today_minus(1), "a\0"));
    let refused = app
        .renewals
        .list_renewal_outcomes(rpb::ListRenewalOutcomesRequest {
            page_token: token,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["page_token"]);

    // An escaped NUL inside a playbook document.
    let refused = app
        .playbooks
        .create_playbook(ppb::CreatePlaybookRequest {
            request_id: String::new(),
            definition: r#"{"name": "x", "title": "\u0000"}"#.into(),
            format: ppb::DefinitionFormat::Json as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["definition"]);
    app.stop().await;
}
