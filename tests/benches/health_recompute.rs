//! Recomputes health for many accounts and, in the same run, times fetching
//! their signals alone; prints both and what scoring adds on top.
//!
//! `cargo bench -p tenure-tests --bench health_recompute -- [ACCOUNTS]`
//! (default 100,000 accounts, each with a subscription; one in ten with
//! open tickets; a six-measure scorecard).

use std::time::{Duration, Instant};

use chrono::{Days, Utc};
use tenure_platform::time::{to_date, to_timestamp};
use tenure_proto::common::v1::Money;
use tenure_proto::health::v1 as hpb;
use tenure_proto::ingestion::v1 as pb;
use tenure_tests::TestStack;

const BATCH: usize = 5_000;

fn linear(signal: &str, worst: f64, best: f64) -> hpb::Measure {
    hpb::Measure {
        name: signal.into(),
        signal: signal.into(),
        weight: 1.0,
        rule: Some(hpb::measure::Rule::Linear(hpb::LinearRule { worst, best })),
    }
}

async fn load(app: &mut TestStack, count: usize) {
    let now = Utc::now();
    let today = now.date_naive();
    let ids: Vec<String> = (0..count).map(|i| format!("acct-{i:06}")).collect();
    for chunk in ids.chunks(BATCH) {
        let accounts = chunk
            .iter()
            .map(|id| pb::Account {
                account_id: id.clone(),
                name: id.clone(),
                segment: "enterprise".into(),
                owner: "dana".into(),
                updated_at: Some(to_timestamp(now - chrono::Duration::days(200))),
                ..Default::default()
            })
            .collect();
        app.ingestion
            .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
                request_id: String::new(),
                accounts,
            })
            .await
            .expect("accounts");
        let subscriptions = chunk
            .iter()
            .enumerate()
            .map(|(i, id)| pb::Subscription {
                subscription_id: format!("{id}-sub"),
                account_id: id.clone(),
                status: pb::SubscriptionStatus::Active as i32,
                term_start: Some(to_date(today - Days::new(100))),
                term_end: Some(to_date(today + Days::new(265))),
                arr: Some(Money {
                    currency_code: "USD".into(),
                    amount_minor: 1_000_000 + i as i64,
                }),
                seats: 10 + (i % 40) as i32,
                auto_renew: true,
                line_items: vec![],
                updated_at: Some(to_timestamp(now - chrono::Duration::days(100))),
            })
            .collect();
        app.ingestion
            .batch_upsert_subscriptions(pb::BatchUpsertSubscriptionsRequest {
                request_id: String::new(),
                subscriptions,
            })
            .await
            .expect("subscriptions");
        let tickets: Vec<pb::Ticket> = chunk
            .iter()
            .step_by(10)
            .map(|id| pb::Ticket {
                ticket_id: format!("{id}-t"),
                account_id: id.clone(),
                opened_at: Some(to_timestamp(now - chrono::Duration::days(3))),
                closed_at: None,
                priority: pb::TicketPriority::P2 as i32,
                category: pb::TicketCategory::Defect as i32,
                status: pb::TicketStatus::Open as i32,
                csat: 0,
                updated_at: Some(to_timestamp(now - chrono::Duration::days(3))),
            })
            .collect();
        app.ingestion
            .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
                request_id: String::new(),
                tickets,
            })
            .await
            .expect("tickets");
    }
}

fn main() {
    let count: usize = tenure_tests::bench_size(100_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let mut app = TestStack::spawn().await;
        let db = app.db().await;
        eprintln!("loading {count} accounts");
        load(&mut app, count).await;
        // Let the change notices settle so the background scorer stays idle.
        while tenure_platform::outbox::pending_count(&db, "ingestion").await.expect("outbox") > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        sqlx::query("DELETE FROM health.rescore_queue").execute(&db).await.expect("queue");
        let measures = vec![
            linear("license_utilization_pct", 20.0, 80.0),
            linear("active_users_30d", 0.0, 20.0),
            linear("open_tickets_p1", 3.0, 0.0),
            linear("open_tickets_p2", 5.0, 0.0),
            linear("days_to_renewal", 0.0, 180.0),
            linear("latest_nps", 0.0, 10.0),
        ];
        let scorecard = hpb::Scorecard {
            name: "default".into(),
            groups: vec![hpb::MeasureGroup { name: "All".into(), measures }],
            ..Default::default()
        };
        app.health
            .create_scorecard(hpb::CreateScorecardRequest { request_id: String::new(), scorecard: Some(scorecard) })
            .await
            .expect("scorecard");

        let started = Instant::now();
        let mut stream = app
            .ingestion
            .stream_account_signals(pb::StreamAccountSignalsRequest { account_ids: vec![], as_of: None })
            .await
            .expect("signals")
            .into_inner();
        let mut fetched = 0;
        while stream.message().await.expect("signals").is_some() {
            fetched += 1;
        }
        let fetch = started.elapsed();
        assert_eq!(fetched, count);

        // Baseline: the database's own speed at reading the same inputs,
        // every record's state as of now for every account in one query.
        let started = Instant::now();
        let mut rows = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM (SELECT DISTINCT ON (account_id, kind, record_id) account_id, data \
               FROM ingestion.record_versions WHERE valid_from < now() \
               ORDER BY account_id, kind, record_id, valid_from DESC) latest",
        )
        .fetch_one(&db)
        .await
        .expect("baseline");
        rows += sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM (SELECT DISTINCT ON (account_id) account_id, segment, attributes \
               FROM ingestion.account_versions ORDER BY account_id, valid_from DESC) latest",
        )
        .fetch_one(&db)
        .await
        .expect("baseline");
        let baseline = started.elapsed();

        let ids: Vec<String> = (0..count).map(|i| format!("acct-{i:06}")).collect();
        let started = Instant::now();
        let mut scored = 0;
        for chunk in ids.chunks(BATCH) {
            let request = hpb::RecomputeHealthRequest { account_ids: chunk.to_vec(), all_accounts: false };
            scored += app.health.recompute_health(request).await.expect("recompute").into_inner().healths.len();
        }
        let recompute = started.elapsed();
        assert_eq!(scored, count);

        let per = |d: Duration| count as f64 / d.as_secs_f64();
        println!("accounts:               {count}");
        println!("baseline (one query):   {:>8.2} s  ({:.0} accounts/s; {rows} rows read in the database)", baseline.as_secs_f64(), per(baseline));
        println!("fetch signals alone:    {:>8.2} s  ({:.0} accounts/s, {:.1} x the baseline's time)", fetch.as_secs_f64(), per(fetch), fetch.as_secs_f64() / baseline.as_secs_f64());
        println!("recompute health:       {:>8.2} s  ({:.0} accounts/s; fetch + score + store + snapshot + change log)", recompute.as_secs_f64(), per(recompute));
        let added = recompute.saturating_sub(fetch);
        println!("scoring adds:           {:>8.2} s  = {:.1} % of the fetch", added.as_secs_f64(), added.as_secs_f64() / fetch.as_secs_f64() * 100.0);
        app.stop().await;
    });
}
