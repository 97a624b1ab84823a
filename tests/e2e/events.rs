//! Usage events: deduplication, the acknowledged stream, rollups.

use tenure_proto::ingestion::v1 as pb;
use tenure_tests::{TestStack, violated_fields};

use crate::fixtures::*;
use crate::ingestion::account;

async fn with_accounts(ids: &[&str]) -> TestStack {
    let mut app = TestStack::spawn().await;
    let accounts = ids.iter().map(|id| account(id, id, 400)).collect();
    let request = pb::BatchUpsertAccountsRequest {
        request_id: String::new(),
        accounts,
    };
    app.ingestion
        .batch_upsert_accounts(request)
        .await
        .expect("accounts");
    app
}

#[tokio::test]
async fn duplicates_across_batches_are_stored_once() {
    let mut app = with_accounts(&["acme"]).await;
    let first: Vec<_> = (0..3)
        .map(|i| event(&format!("e-{i}"), "acme", "u1", "reports", days_ago(1)))
        .collect();
    let answer = app
        .ingestion
        .ingest_events(pb::IngestEventsRequest {
            events: first.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((answer.accepted_count, answer.duplicate_count), (3, 0));

    let mut second = first[1..].to_vec();
    second.push(event("e-3", "acme", "u2", "api", days_ago(1)));
    second.push(event("e-3", "acme", "u2", "api", days_ago(1)));
    let answer = app
        .ingestion
        .ingest_events(pb::IngestEventsRequest { events: second })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((answer.accepted_count, answer.duplicate_count), (1, 3));

    let db = app.db().await;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM ingestion.usage_events")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, 4);
    let rolled: i64 =
        sqlx::query_scalar("SELECT sum(events)::int8 FROM ingestion.usage_daily_features")
            .fetch_one(&db)
            .await
            .unwrap();
    assert_eq!(rolled, 4, "rollups count each event once");

    let mut bad = event("e-9", "nobody", "u1", "reports", days_ago(1));
    bad.quantity = -1.0;
    let future = event("e-10", "acme", "u1", "reports", days_ago(-2));
    let status = app
        .ingestion
        .ingest_events(pb::IngestEventsRequest {
            events: vec![event("e-11", "acme", "u", "x", days_ago(1)), bad, future],
        })
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&status),
        ["events[1].quantity", "events[2].occurred_at"]
    );
    let status = app
        .ingestion
        .ingest_events(pb::IngestEventsRequest {
            events: vec![event("e-12", "nobody", "u", "x", days_ago(1))],
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["events[0].account_id"]);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM ingestion.usage_events")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, 4, "nothing of a rejected batch is written");
    app.stop().await;
}

#[tokio::test]
async fn the_stream_acknowledges_each_chunk_with_a_status_per_event() {
    let mut app = with_accounts(&["acme", "globex"]).await;
    let chunk = |id: i64, events: Vec<pb::UsageEvent>| pb::StreamEventsRequest {
        chunk_id: id,
        events,
    };
    let mut invalid = event("s-bad", "acme", "", "reports", days_ago(1));
    invalid.user_id.clear();
    let chunks = vec![
        chunk(
            1,
            vec![
                event("s-1", "acme", "u1", "reports", days_ago(1)),
                event("s-2", "globex", "u9", "api", days_ago(40)),
            ],
        ),
        chunk(
            2,
            vec![
                event("s-2", "globex", "u9", "api", days_ago(40)),
                invalid,
                event("s-3", "ghost", "u1", "x", days_ago(1)),
                event("s-4", "acme", "u2", "api", days_ago(2)),
            ],
        ),
    ];
    let mut acks = app
        .ingestion
        .stream_events(tokio_stream::iter(chunks))
        .await
        .expect("stream opens")
        .into_inner();
    let first = acks.message().await.unwrap().expect("first ack");
    assert_eq!((first.chunk_id, first.accepted_count), (1, 2));
    let second = acks.message().await.unwrap().expect("second ack");
    assert_eq!(second.chunk_id, 2);
    let statuses: Vec<(i32, pb::EventStatus)> = second
        .results
        .iter()
        .map(|r| (r.index, r.status()))
        .collect();
    assert_eq!(
        statuses,
        [
            (0, pb::EventStatus::Duplicate),
            (1, pb::EventStatus::Rejected),
            (2, pb::EventStatus::Rejected),
            (3, pb::EventStatus::Accepted),
        ]
    );
    assert!(
        second.results[1].reason.contains("user_id"),
        "{}",
        second.results[1].reason
    );
    assert!(second.results[2].reason.contains("account_id"));
    assert!(
        acks.message().await.unwrap().is_none(),
        "the stream ends after the last chunk"
    );

    let db = app.db().await;
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT message_id FROM ingestion.usage_events ORDER BY message_id")
            .fetch_all(&db)
            .await
            .unwrap();
    assert_eq!(stored, ["s-1", "s-2", "s-4"]);
    let partitions: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'ingestion.usage_events'::regclass",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(partitions >= 1);
    app.stop().await;
}

/// Whether ingestion holds a partition for the month of `at`.
async fn has_partition(db: &sqlx::PgPool, at: chrono::DateTime<chrono::Utc>) -> bool {
    let name = format!("usage_events_{}", at.format("%Y_%m"));
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = 'ingestion' AND tablename = $1)",
    )
    .bind(name)
    .fetch_one(db)
    .await
    .unwrap()
}

#[tokio::test]
async fn events_too_old_or_for_no_account_create_no_storage() {
    let mut app = TestStack::spawn_with(|options| {
        let horizon = ("INGESTION_MAX_EVENT_AGE".to_owned(), "365d".to_owned());
        options.settings.extend([horizon]);
    })
    .await;
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![crate::ingestion::account("acme", "Acme", 3)],
        })
        .await
        .unwrap();
    let db = app.db().await;
    let ancient = days_ago(2 * 365);
    let refused = app
        .ingestion
        .ingest_events(pb::IngestEventsRequest {
            events: vec![event("old-1", "acme", "u-1", "login", ancient)],
        })
        .await
        .unwrap_err();
    assert!(
        violated_fields(&refused).contains(&"events[0].occurred_at".to_owned()),
        "{refused:?}"
    );
    assert!(
        !has_partition(&db, ancient).await,
        "no month made for a refused event"
    );

    let months_ago = days_ago(200);
    let unknown = app
        .ingestion
        .ingest_events(pb::IngestEventsRequest {
            events: vec![event("ghost-1", "ghost", "u-1", "login", months_ago)],
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);
    assert!(
        !has_partition(&db, months_ago).await,
        "no month made for an unknown account"
    );

    app.ingestion
        .ingest_events(pb::IngestEventsRequest {
            events: vec![event("known-1", "acme", "u-1", "login", months_ago)],
        })
        .await
        .unwrap();
    assert!(has_partition(&db, months_ago).await);
    app.stop().await;
}

/// The partitions of this month and the next two exist before any event
/// arrives, so live traffic never waits on DDL.
#[tokio::test]
async fn the_coming_months_partitions_are_made_ahead() {
    use chrono::Datelike as _;
    let app = TestStack::spawn().await;
    let db = app.db().await;
    let first = chrono::Utc::now().date_naive().with_day(1).unwrap();
    let expected: Vec<String> = (0..3)
        .map(|ahead| {
            let month = first + chrono::Months::new(ahead);
            format!("usage_events_{:04}_{:02}", month.year(), month.month())
        })
        .collect();
    let found = tenure_tests::eventually(std::time::Duration::from_secs(10), || {
        let db = db.clone();
        let expected = expected.clone();
        async move {
            let made: Vec<String> = sqlx::query_scalar(
                "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
                 WHERE i.inhparent = 'ingestion.usage_events'::regclass",
            )
            .fetch_all(&db)
            .await
            .ok()?;
            expected
                .iter()
                .all(|name| made.contains(name))
                .then_some(made)
        }
    })
    .await;
    assert!(found.is_some(), "partitions {expected:?}");
    app.stop().await;
}

/// Chunks that each need monthly partitions not made yet, sent on several
/// streams at once to an ingestion whose pool holds two connections: a
/// chunk makes its months and stores its events on one connection, so no
/// chunk waits for a connection that another chunk holds while it waits too.
#[tokio::test]
async fn concurrent_chunks_needing_new_months_share_a_small_pool() {
    let mut app = TestStack::spawn_with(|options| options.max_connections = 2).await;
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![account("acme", "acme", 400)],
        })
        .await
        .expect("accounts");
    const STREAMS: usize = 6;
    const CHUNKS: usize = 2;
    let mut streams = tokio::task::JoinSet::new();
    for s in 0..STREAMS {
        let mut client = app.ingestion.clone();
        let chunks: Vec<pb::StreamEventsRequest> = (0..CHUNKS)
            .map(|c| {
                // Each chunk in months of its own, past those made ahead.
                let months_ago = 4 + (s * CHUNKS + c) as i64 * 2;
                let events = (0..2)
                    .map(|i| {
                        let id = format!("m-{s}-{c}-{i}");
                        let when = days_ago(30 * (months_ago + i) + 10);
                        event(&id, "acme", "u1", "reports", when)
                    })
                    .collect();
                pb::StreamEventsRequest {
                    chunk_id: c as i64,
                    events,
                }
            })
            .collect();
        streams.spawn(async move {
            let mut acks = client
                .stream_events(tokio_stream::iter(chunks))
                .await?
                .into_inner();
            let mut accepted = 0;
            while let Some(ack) = acks.message().await? {
                accepted += ack.accepted_count;
            }
            Ok::<i32, tonic::Status>(accepted)
        });
    }
    let mut accepted = 0;
    while let Some(joined) = streams.join_next().await {
        accepted += joined.expect("stream task").expect("every chunk is stored");
    }
    let expected = (STREAMS * CHUNKS * 2) as i32;
    assert_eq!(accepted, expected);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM ingestion.usage_events")
        .fetch_one(&app.db().await)
        .await
        .unwrap();
    assert_eq!(stored, i64::from(expected));
}
