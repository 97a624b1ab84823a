//! Faults as they happen in production: the services run as processes of
//! their own and are stopped with SIGKILL, a peer is down for a while,
//! Postgres itself crashes and comes back. Nothing acknowledged is lost and
//! nothing is applied twice.

use std::time::Duration;

use sqlx::Connection as _;
use tenure_platform::client::TracedChannel;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::playbooks::v1 as ppb;
use tenure_proto::playbooks::v1::playbooks_service_client::PlaybooksServiceClient;
use tenure_proto::renewals::v1 as rpb;
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;
use tenure_tests::eventually;
use tenure_tests::processes::Processes;
use tenure_tests::receivers::WebhookReceiver;
use tokio_stream::wrappers::ReceiverStream;

use crate::fixtures::*;
use crate::ingestion::account;

const SERVICE: &str = env!("CARGO_BIN_EXE_tenure-service");

/// Settings of every process: quick retries, so a recovery shows in seconds.
const QUICK: [(&str, &str); 6] = [
    ("OUTBOX_FIRST_RETRY", "100ms"),
    ("OUTBOX_MAX_RETRY", "500ms"),
    ("PLAYBOOKS_RETRY_BASE", "50ms"),
    ("PLAYBOOKS_RETRY_CAP", "200ms"),
    ("PLAYBOOKS_WEBHOOK_ALLOW", "127.0.0.1/32"),
    ("PLAYBOOKS_WEBHOOK_SECRET", "fault-test-webhook-secret"),
];

async fn processes() -> Processes {
    let database = tenure_platform::pg::testing::fresh_database()
        .await
        .expect("test database");
    Processes::new(SERVICE, database, &QUICK).expect("processes")
}

fn ingestion(procs: &Processes) -> IngestionServiceClient<TracedChannel> {
    let peers = procs.operator_peers();
    IngestionServiceClient::new(peers.channel(&peers.ingestion_url).unwrap())
}

async fn create_accounts(procs: &Processes, ids: &[String]) {
    let accounts = ids.iter().map(|id| account(id, id, 200)).collect();
    ingestion(procs)
        .batch_upsert_accounts(ipb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
        })
        .await
        .expect("accounts");
}

async fn db(procs: &Processes) -> sqlx::PgConnection {
    sqlx::PgConnection::connect(&procs.database_url)
        .await
        .expect("admin connection")
}

const CHUNKS: i64 = 12;
const PER_CHUNK: usize = 500;

fn chunk(id: i64, accounts: &[String]) -> ipb::StreamEventsRequest {
    ipb::StreamEventsRequest {
        chunk_id: id,
        events: (0..PER_CHUNK)
            .map(|i| ipb::UsageEvent {
                message_id: format!("m-{id}-{i}"),
                account_id: accounts[i % accounts.len()].clone(),
                user_id: format!("u-{}", i % 7),
                event_name: "reports".into(),
                occurred_at: ts(days_ago(1 + (i % 20) as i64)),
                quantity: 1.0,
                properties: None,
            })
            .collect(),
    }
}

/// Streams chunks `from..=CHUNKS`, three ahead of their acknowledgements;
/// calls `after_ack` with each acknowledged chunk id. Returns the last
/// acknowledged chunk and how many events were accepted and found
/// duplicate, or the status the stream ended with.
async fn stream_from(
    client: &mut IngestionServiceClient<TracedChannel>,
    from: i64,
    accounts: &[String],
    mut after_ack: impl FnMut(i64),
) -> (i64, i64, i64, Option<tonic::Status>) {
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    let mut next = from;
    while next <= CHUNKS && next < from + 3 {
        sender.send(chunk(next, accounts)).await.unwrap();
        next += 1;
    }
    let (mut acked, mut accepted, mut duplicate) = (from - 1, 0, 0);
    let mut acks = match client.stream_events(ReceiverStream::new(receiver)).await {
        Ok(answer) => answer.into_inner(),
        Err(status) => return (acked, accepted, duplicate, Some(status)),
    };
    let mut sender = Some(sender);
    loop {
        match acks.message().await {
            Ok(Some(ack)) => {
                acked = ack.chunk_id;
                accepted += i64::from(ack.accepted_count);
                duplicate += i64::from(ack.duplicate_count);
                after_ack(ack.chunk_id);
                if next <= CHUNKS {
                    if let Some(sender) = &sender {
                        let _ = sender.send(chunk(next, accounts)).await;
                    }
                    next += 1;
                } else {
                    sender = None;
                }
                if acked == CHUNKS {
                    return (acked, accepted, duplicate, None);
                }
            }
            Ok(None) => return (acked, accepted, duplicate, None),
            Err(status) => return (acked, accepted, duplicate, Some(status)),
        }
    }
}

/// Ingestion killed in the middle of a streamed import: the client starts
/// again after its last acknowledged chunk with the same message ids, and
/// every event is stored once, rollups included.
#[tokio::test]
async fn ingestion_killed_mid_stream_stores_every_event_once() {
    let mut procs = processes().await;
    procs.start("ingestion").await.unwrap();
    let accounts: Vec<String> = (0..20).map(|i| format!("acct-{i:02}")).collect();
    create_accounts(&procs, &accounts).await;

    let mut client = ingestion(&procs);
    let (acked, first_accepted, _, ended) = stream_from(&mut client, 1, &accounts, |chunk| {
        if chunk == 4 {
            // From inside the stream: chunks 5 to 7 are in flight.
            procs.sigkill("ingestion");
        }
    })
    .await;
    assert!(ended.is_some(), "the stream broke with the process");
    assert!(
        (4..CHUNKS).contains(&acked),
        "acknowledged up to chunk {acked}"
    );
    procs.kill("ingestion").ok();
    procs.start("ingestion").await.unwrap();

    let (last, accepted, duplicate, ended) =
        stream_from(&mut client, acked + 1, &accounts, |_| {}).await;
    assert!(ended.is_none(), "{ended:?}");
    assert_eq!(last, CHUNKS);
    let total = CHUNKS * PER_CHUNK as i64;
    assert_eq!(
        first_accepted + accepted,
        total,
        "every event accepted once ({duplicate} found already stored)"
    );

    let mut db = db(&procs).await;
    let (rows, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT message_id) FROM ingestion.usage_events")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!((rows, distinct), (total, total));
    let rolled: Option<i64> =
        sqlx::query_scalar("SELECT sum(events)::bigint FROM ingestion.usage_daily_features")
            .fetch_one(&mut db)
            .await
            .unwrap();
    assert_eq!(rolled, Some(total), "rollups count each event once");
}

/// Creates the playbook `call-out` (one webhook call to `receiver`, then
/// the end) and starts it for `accounts`; returns the runs.
pub(crate) async fn call_out(
    playbooks: &mut PlaybooksServiceClient<TracedChannel>,
    receiver: &str,
    accounts: &[String],
) -> Vec<ppb::Run> {
    let definition = serde_json::json!({
        "name": "call-out", "title": "Call out", "trigger": {"type": "manual"},
        "steps": [
            {"id": "call", "type": "webhook", "url": format!("{receiver}/hook"), "next": "done"},
            {"id": "done", "type": "end"}
        ]
    });
    playbooks
        .create_playbook(ppb::CreatePlaybookRequest {
            request_id: String::new(),
            definition: definition.to_string(),
            format: ppb::DefinitionFormat::Json as i32,
        })
        .await
        .expect("playbook");
    playbooks
        .start_runs(ppb::StartRunsRequest {
            request_id: String::new(),
            playbook: "call-out".into(),
            account_ids: accounts.to_vec(),
        })
        .await
        .expect("runs")
        .into_inner()
        .runs
}

/// Playbooks killed while a webhook call is in flight: once it is back the
/// call is made again with the same delivery id, the run completes, and no
/// other call is made.
#[tokio::test]
async fn playbooks_killed_mid_webhook_sends_it_again_under_the_same_id() {
    let mut procs = processes().await;
    procs.start("ingestion").await.unwrap();
    procs.start("playbooks").await.unwrap();
    let ids = vec!["acme".to_owned()];
    create_accounts(&procs, &ids).await;
    let receiver = WebhookReceiver::holding_first().await;
    let peers = procs.operator_peers();
    let mut playbooks = PlaybooksServiceClient::new(peers.channel(&peers.playbooks_url).unwrap());
    let run = call_out(&mut playbooks, &receiver.url, &ids)
        .await
        .remove(0);

    eventually(Duration::from_secs(20), || async {
        (!receiver.deliveries().is_empty()).then_some(())
    })
    .await
    .expect("the call is made");
    procs.kill("playbooks").unwrap();
    procs.start("playbooks").await.unwrap();

    let completed = eventually(Duration::from_secs(30), || {
        let run_id = run.run_id.clone();
        let mut client = playbooks.clone();
        async move {
            let run = client
                .get_run(ppb::GetRunRequest { run_id })
                .await
                .ok()?
                .into_inner()
                .run?;
            (run.state() == ppb::RunState::Completed).then_some(run)
        }
    })
    .await;
    assert!(completed.is_some(), "{}", procs.log_tail("playbooks", 20));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let deliveries = receiver.deliveries();
    let statuses: Vec<u16> = deliveries.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [0, 200], "held, then made again and answered");
    assert_eq!(deliveries[0].delivery_id, deliveries[1].delivery_id);
}

/// Renewals down while subscriptions change: ingestion's outbox keeps the
/// notices, delivers them when renewals is back, and the pipeline ends as
/// it would have without the outage.
#[tokio::test]
async fn a_peer_down_for_a_while_gets_its_backlog() {
    let mut procs = processes().await;
    for name in ["ingestion", "health", "renewals", "playbooks"] {
        procs.start(name).await.unwrap();
    }
    let ids: Vec<String> = (0..10).map(|i| format!("acct-{i}")).collect();
    create_accounts(&procs, &ids).await;
    let today = chrono::Utc::now().date_naive();
    let subscriptions = |arr: i64, at| -> Vec<ipb::Subscription> {
        ids.iter()
            .map(|id| {
                subscription(
                    &format!("{id}-sub"),
                    id,
                    10,
                    arr,
                    today - chrono::Days::new(200),
                    today + chrono::Days::new(165),
                    at,
                )
            })
            .collect()
    };
    let mut client = ingestion(&procs);
    let upsert = |subscriptions: Vec<ipb::Subscription>| {
        let mut client = client.clone();
        async move {
            client
                .batch_upsert_subscriptions(ipb::BatchUpsertSubscriptionsRequest {
                    request_id: String::new(),
                    subscriptions,
                })
                .await
                .expect("subscriptions")
        }
    };
    upsert(subscriptions(1_200_000, days_ago(3))).await;
    let peers = procs.operator_peers();
    let renewals = RenewalsServiceClient::new(peers.channel(&peers.renewals_url).unwrap());
    let arrs = |renewals: &RenewalsServiceClient<TracedChannel>| {
        let mut renewals = renewals.clone();
        async move {
            let pipeline = renewals
                .list_renewal_pipeline(rpb::ListRenewalPipelineRequest {
                    page_size: 100,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .opportunities;
            Some(
                pipeline
                    .iter()
                    .map(|o| o.arr.as_ref().map_or(0, |a| a.amount_minor))
                    .collect::<Vec<i64>>(),
            )
        }
    };
    eventually(Duration::from_secs(30), || async {
        arrs(&renewals).await.filter(|a| a == &vec![1_200_000; 10])
    })
    .await
    .expect("renewals has the first terms");

    procs.kill("renewals").unwrap();
    upsert(subscriptions(1_500_000, days_ago(1))).await;
    client
        .batch_upsert_accounts(ipb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![account("acct-late", "Late", 10)],
        })
        .await
        .unwrap();
    // Deliveries fail and are retried while it is down.
    let mut db = db(&procs).await;
    let pending = eventually(Duration::from_secs(20), || {
        let url = procs.database_url.clone();
        async move {
            let mut db = sqlx::PgConnection::connect(&url).await.ok()?;
            let failing: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM ingestion.outbox \
                 WHERE delivered_at IS NULL AND attempts > 0",
            )
            .fetch_one(&mut db)
            .await
            .ok()?;
            (failing > 0).then_some(failing)
        }
    })
    .await;
    assert!(pending.is_some(), "the notices wait in the outbox");
    tokio::time::sleep(Duration::from_secs(2)).await;
    procs.start("renewals").await.unwrap();

    let settled = eventually(Duration::from_secs(30), || async {
        arrs(&renewals).await.filter(|a| a == &vec![1_500_000; 10])
    })
    .await;
    assert!(settled.is_some(), "{}", procs.log_tail("ingestion", 20));
    let (undelivered, dead): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE delivered_at IS NULL), \
                count(*) FILTER (WHERE dead_at IS NOT NULL) FROM ingestion.outbox",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!((undelivered, dead), (0, 0));
}

/// Postgres crashes (immediate stop) and comes back under a steady stream
/// of writes: every write acknowledged before, during and after is there,
/// any failure in between is UNAVAILABLE (retried by the client with the
/// same request id), and ingestion recovers without being restarted.
#[tokio::test]
async fn postgres_crashing_under_load_loses_no_acknowledged_write() {
    let (mut cluster, url) = tenure_tests::processes::own_cluster()
        .await
        .expect("a cluster of the test's own");
    let mut procs = Processes::new(SERVICE, url, &QUICK).unwrap();
    procs.start("ingestion").await.unwrap();
    let pid = procs.pid("ingestion");

    const BATCHES: usize = 60;
    const PER_BATCH: usize = 20;
    // The writer goes on until Postgres is back, so writes are under way
    // before, during and after the crash however fast each one is.
    let acked = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let back = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = ingestion(&procs);
    let writer = tokio::spawn({
        let (acked, back) = (acked.clone(), back.clone());
        async move {
            use std::sync::atomic::Ordering::SeqCst;
            let mut client = client;
            let mut failures = Vec::new();
            let mut batch = 0;
            while batch < BATCHES || !back.load(SeqCst) {
                let accounts: Vec<ipb::Account> = (0..PER_BATCH)
                    .map(|i| {
                        let id = format!("load-{batch:03}-{i:02}");
                        account(&id, &id, 30)
                    })
                    .collect();
                let request = ipb::BatchUpsertAccountsRequest {
                    request_id: format!("load-{batch}"),
                    accounts,
                };
                let started = tokio::time::Instant::now();
                loop {
                    match client.batch_upsert_accounts(request.clone()).await {
                        Ok(_) => break,
                        Err(status) => {
                            failures.push(status.code());
                            assert!(
                                started.elapsed() < Duration::from_secs(60),
                                "batch {batch} still failing: {status:?}"
                            );
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
                batch += 1;
                acked.store(batch, SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (batch, failures)
        }
    });
    eventually(Duration::from_secs(30), || {
        let acked = acked.clone();
        async move { (acked.load(std::sync::atomic::Ordering::SeqCst) >= 5).then_some(()) }
    })
    .await
    .expect("writes acknowledged before the crash");
    let cluster = tokio::task::spawn_blocking(move || {
        cluster
            .crash_and_restart(Duration::from_secs(2))
            .map(|()| cluster)
    })
    .await
    .unwrap()
    .expect("postgres restarts");
    let during = acked.load(std::sync::atomic::Ordering::SeqCst);
    back.store(true, std::sync::atomic::Ordering::SeqCst);
    let (written, failures) = writer.await.expect("every batch acknowledged");
    assert!(
        written > during,
        "writes acknowledged after Postgres came back ({during} before, {written} in all)"
    );
    // Calls in flight when it went down fail; others may wait for a
    // connection through the outage. Whatever failed was UNAVAILABLE.
    assert!(
        failures
            .iter()
            .all(|code| *code == tonic::Code::Unavailable),
        "failures while Postgres was down: {failures:?}"
    );
    assert_eq!(procs.pid("ingestion"), pid, "not restarted");
    let mut db = db(&procs).await;
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT account_id) FROM ingestion.accounts WHERE account_id LIKE 'load-%'",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(stored, (written * PER_BATCH) as i64);
    drop(db);
    drop(procs);
    drop(cluster);
}
