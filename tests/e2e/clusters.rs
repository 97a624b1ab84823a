//! Past one machine: each service's schema on a Postgres cluster of its
//! own. The services meet only over gRPC, so the whole flow holds: records
//! in, scores out, the renewal pipeline, a playbook run that calls out.

use std::time::Duration;

use sqlx::Connection as _;
use tenure_proto::health::v1 as hpb;
use tenure_proto::health::v1::health_service_client::HealthServiceClient;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::ingestion::v1::ingestion_service_client::IngestionServiceClient;
use tenure_proto::playbooks::v1::playbooks_service_client::PlaybooksServiceClient;
use tenure_proto::renewals::v1 as rpb;
use tenure_proto::renewals::v1::renewals_service_client::RenewalsServiceClient;
use tenure_tests::eventually;
use tenure_tests::processes::{Processes, own_cluster};
use tenure_tests::receivers::WebhookReceiver;

use crate::fixtures::*;
use crate::ingestion::account;

const SERVICES: [&str; 4] = ["ingestion", "health", "renewals", "playbooks"];

#[tokio::test]
async fn four_services_on_four_clusters_run_the_whole_flow() {
    let mut clusters = Vec::new();
    let mut urls = Vec::new();
    for _ in SERVICES {
        let (cluster, url) = own_cluster().await.expect("a cluster");
        clusters.push(cluster);
        urls.push(url);
    }
    let settings = [
        ("PLAYBOOKS_WEBHOOK_ALLOW", "127.0.0.1/32"),
        ("PLAYBOOKS_WEBHOOK_SECRET", "four-clusters-webhook-secret"),
    ];
    let mut procs = Processes::new(
        env!("CARGO_BIN_EXE_tenure-service"),
        urls[0].clone(),
        &settings,
    )
    .expect("processes");
    for (name, url) in SERVICES.iter().zip(&urls).skip(1) {
        procs = procs.with_database(name, url.clone());
    }
    for name in SERVICES {
        procs.start(name).await.expect("service starts");
    }
    let peers = procs.operator_peers();
    let mut ingestion = IngestionServiceClient::new(peers.channel(&peers.ingestion_url).unwrap());
    let mut health = HealthServiceClient::new(peers.channel(&peers.health_url).unwrap());
    let renewals = RenewalsServiceClient::new(peers.channel(&peers.renewals_url).unwrap());
    let mut playbooks = PlaybooksServiceClient::new(peers.channel(&peers.playbooks_url).unwrap());

    // Records in.
    let ids: Vec<String> = (0..3).map(|i| format!("acct-{i}")).collect();
    ingestion
        .batch_upsert_accounts(ipb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: ids.iter().map(|id| account(id, id, 300)).collect(),
        })
        .await
        .unwrap();
    let today = chrono::Utc::now().date_naive();
    ingestion
        .batch_upsert_subscriptions(ipb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: ids
                .iter()
                .map(|id| {
                    subscription(
                        &format!("{id}-sub"),
                        id,
                        10,
                        1_200_000,
                        today - chrono::Days::new(300),
                        today + chrono::Days::new(65),
                        days_ago(290),
                    )
                })
                .collect(),
        })
        .await
        .unwrap();

    // Scores out: health reads the signals from ingestion's cluster.
    health
        .create_scorecard(hpb::CreateScorecardRequest {
            request_id: String::new(),
            scorecard: Some(tenure_tests::bases::bench_scorecard()),
        })
        .await
        .unwrap();
    health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: ids.clone(),
            all_accounts: false,
        })
        .await
        .unwrap();
    let scored = health
        .get_health(hpb::GetHealthRequest {
            account_id: ids[0].clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .health
        .unwrap();
    assert_ne!(
        scored.band,
        tenure_proto::common::v1::Band::Unspecified as i32,
        "{scored:?}"
    );

    // The pipeline: renewals learns the subscriptions from ingestion.
    let pipeline = eventually(Duration::from_secs(30), || {
        let mut renewals = renewals.clone();
        async move {
            let opportunities = renewals
                .list_renewal_pipeline(rpb::ListRenewalPipelineRequest {
                    page_size: 10,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .opportunities;
            (opportunities.len() == 3).then_some(opportunities)
        }
    })
    .await
    .expect("renewals has the three terms");
    assert!(
        pipeline
            .iter()
            .all(|o| o.arr.as_ref().map(|a| a.amount_minor) == Some(1_200_000))
    );

    // A playbook run that calls out, reading the account from ingestion.
    let receiver = WebhookReceiver::start().await;
    let runs = crate::faults::call_out(&mut playbooks, &receiver.url, &ids).await;
    assert_eq!(runs.len(), 3);
    eventually(Duration::from_secs(30), || async {
        (receiver.accepted().len() == 3).then_some(())
    })
    .await
    .expect("three webhook calls");

    // Each cluster holds its own service's schema and no other.
    for (name, url) in SERVICES.iter().zip(&urls) {
        let mut db = sqlx::PgConnection::connect(url).await.unwrap();
        let schemas: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace WHERE nspname = ANY($1) ORDER BY 1",
        )
        .bind(SERVICES.map(str::to_owned).to_vec())
        .fetch_all(&mut db)
        .await
        .unwrap();
        assert_eq!(schemas, [name.to_string()]);
    }
    drop(procs);
    drop(clusters);
}
