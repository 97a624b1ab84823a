//! Recomputes health for every account of a generated base (the demo's
//! shapes: segments, monthly and annual terms, tickets, surveys, invoices,
//! usage) and, in the same run, times fetching their signals alone and the
//! database's own speed at reading the same records; prints all three and
//! what scoring adds on top; then trains the churn model on the base's past
//! renewals.
//!
//! `cargo bench -p tenure-tests --bench health_recompute -- [ACCOUNTS]`
//! (default 100,000; the base is loaded once and kept, see
//! `tenure_tests::bases`).

use std::time::{Duration, Instant};

use tenure_proto::health::v1 as hpb;
use tenure_proto::ingestion::v1 as pb;

const BATCH: usize = 5_000;

fn main() {
    let size: usize = tenure_tests::bench_size(100_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let base = tenure_tests::bases::generated(size, 1, |options| options.statement_statistics = true).await.expect("generated base");
        base.settle().await.expect("quiet stack");
        let mut app = base.app;
        let db = app.db().await;
        let ids: Vec<String> = sqlx::query_scalar("SELECT account_id FROM ingestion.accounts ORDER BY account_id")
            .fetch_all(&db)
            .await
            .expect("accounts");
        let count = ids.len();
        sqlx::query("DELETE FROM health.rescore_queue").execute(&db).await.expect("queue");
        tenure_tests::bases::create_bench_scorecard(&mut app).await;
        let statements = tenure_tests::profile::Statements::new(&db).await;

        statements.reset().await;
        let cpu = tenure_tests::profile::process_cpu();
        let started = Instant::now();
        let mut stream = app
            .ingestion
            .stream_account_signals(pb::StreamAccountSignalsRequest::default())
            .await
            .expect("signals")
            .into_inner();
        let mut fetched = 0;
        while stream.message().await.expect("signals").is_some() {
            fetched += 1;
        }
        let fetch = started.elapsed();
        assert_eq!(fetched, count);
        let fetch_cpu = tenure_tests::profile::process_cpu() - cpu;
        let fetch_profile = statements.snapshot().await;

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

        statements.reset().await;
        let cpu = tenure_tests::profile::process_cpu();
        let started = Instant::now();
        let mut scored = 0;
        for chunk in ids.chunks(BATCH) {
            let request = hpb::RecomputeHealthRequest { account_ids: chunk.to_vec(), all_accounts: false };
            scored += app.health.recompute_health(request).await.expect("recompute").into_inner().healths.len();
        }
        let recompute = started.elapsed();
        assert_eq!(scored, count);
        let recompute_cpu = tenure_tests::profile::process_cpu() - cpu;
        let recompute_profile = statements.snapshot().await;

        // Training the churn model on every past renewal of the base: the
        // signals of each account as of 90 days before its term end, then
        // the fit and its cross-validation.
        statements.reset().await;
        let cpu = tenure_tests::profile::process_cpu();
        let started = Instant::now();
        let model = app
            .health
            .train_churn_model(hpb::TrainChurnModelRequest { request_id: String::new(), horizon_days: 90, l2: 0.0, as_of: None })
            .await
            .expect("train")
            .into_inner()
            .model
            .expect("model");
        let model = loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let current = app
                .health
                .get_churn_model(hpb::GetChurnModelRequest { model_id: model.model_id.clone() })
                .await
                .expect("model")
                .into_inner()
                .model
                .expect("model");
            if current.status() != hpb::ModelStatus::Running {
                break current;
            }
        };
        let training = started.elapsed();
        assert_eq!(model.status(), hpb::ModelStatus::Ready, "{}", model.error);
        let training_cpu = tenure_tests::profile::process_cpu() - cpu;
        let training_profile = statements.snapshot().await;

        let per = |d: Duration| count as f64 / d.as_secs_f64();
        println!("accounts:               {count} (generated base of {size}, seed 1, as of {})", base.config.as_of);
        println!("baseline (one query):   {:>8.2} s  ({:.0} accounts/s; {rows} rows read in the database)", baseline.as_secs_f64(), per(baseline));
        println!("fetch signals alone:    {:>8.2} s  ({:.0} accounts/s, {:.1} x the baseline's time)", fetch.as_secs_f64(), per(fetch), fetch.as_secs_f64() / baseline.as_secs_f64());
        println!("recompute health:       {:>8.2} s  ({:.0} accounts/s; fetch + score + store + snapshot + change log)", recompute.as_secs_f64(), per(recompute));
        println!("train churn model:      {:>8.2} s  ({} outcomes, {:.0} outcomes/s: signals at the horizon, fit, cross-validation)", training.as_secs_f64(), model.example_count, model.example_count as f64 / training.as_secs_f64());
        let run = model.gather_seconds + model.fit_seconds;
        println!(
            "  of which signals:      {:>8.2} s  ({:.1} % of the run: the outcomes and each one's signals at the horizon)",
            model.gather_seconds,
            model.gather_seconds / run * 100.0
        );
        println!("  and the fit:           {:>8.2} s  (L-BFGS and five-fold cross-validation)", model.fit_seconds);
        let added = recompute.saturating_sub(fetch);
        println!("scoring adds:           {:>8.2} s  = {:.1} % of the fetch", added.as_secs_f64(), added.as_secs_f64() / fetch.as_secs_f64() * 100.0);
        println!("where the database's time goes (pg_stat_statements; the rest of the wall time is the services' own work and waits):");
        fetch_profile.print("fetch signals", fetch, fetch_cpu, 6);
        recompute_profile.print("recompute health", recompute, recompute_cpu, 6);
        training_profile.print("train churn model", training, training_cpu, 6);
        app.stop().await;
    });
}
