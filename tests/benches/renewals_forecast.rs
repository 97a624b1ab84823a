//! Streams the forecast of every renewal of a generated base (the demo's
//! shapes: monthly and annual terms, segments, the outcomes of past
//! renewals) in the year after the base ends and, in the same run, reads the
//! same renewal rows with a plain query; prints rows/s for both and the
//! ratio.
//!
//! `cargo bench -p tenure-tests --bench renewals_forecast -- [ACCOUNTS]`
//! (default 100,000; the base is loaded once and kept, see
//! `tenure_tests::bases`).

use std::time::{Duration, Instant};

use tenure_platform::time::to_date;
use tenure_proto::common::v1::DateRange;
use tenure_proto::renewals::v1 as pb;
use tokio_stream::StreamExt as _;

const PLAIN_QUERY: &str = "SELECT o.subscription_id, o.term_end, o.account_id, o.currency::text, \
       o.arr_minor, o.state, o.next_arr_minor, a.name, a.segment, a.owner, a.health_score, \
       a.health_band, a.churn_probability \
     FROM renewals.opportunities o LEFT JOIN renewals.accounts a USING (account_id) \
     WHERE o.term_end >= $1 AND o.term_end < $2";

fn main() {
    let size: usize = tenure_tests::bench_size(100_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let base = tenure_tests::bases::generated(size, 1, |options| options.statement_statistics = true).await.expect("generated base");
        base.settle().await.expect("quiet stack");
        let app = base.app;
        let db = app.db().await;
        let today = base.config.as_of + chrono::Days::new(1);
        sqlx::query("ANALYZE").execute(&db).await.expect("analyze");
        let window = Some(DateRange {
            start: Some(to_date(today)),
            end: Some(to_date(today + chrono::Days::new(366))),
        });
        let end = today + chrono::Days::new(366);

        // Warm the cache so neither side pays for cold pages.
        let warm = sqlx::query(PLAIN_QUERY).bind(today).bind(end).fetch_all(&db).await.expect("warm");
        let count = warm.len() as i64;
        drop(warm);

        // The first request after start-up reads the renewal history once
        // (rates, calibration); later ones find it kept. Then five rounds of
        // a stream and the plain query, one after the other so that both
        // meet the same machine; the medians are the figures.
        let statements = tenure_tests::profile::Statements::new(&db).await;
        let stream_once = || async {
            statements.reset().await;
            let cpu = tenure_tests::profile::process_cpu();
            let started = Instant::now();
            let mut stream = app
                .renewals
                .clone()
                .stream_forecast(pb::StreamForecastRequest { window, chunk_size: 1000, ..Default::default() })
                .await
                .expect("stream")
                .into_inner();
            let mut streamed = 0_i64;
            while let Some(message) = stream.message().await.expect("stream") {
                streamed += message.rows.len() as i64;
            }
            let elapsed = started.elapsed();
            assert_eq!(streamed, count);
            (elapsed, statements.snapshot().await, tenure_tests::profile::process_cpu() - cpu)
        };
        let plain_once = || async {
            let started = Instant::now();
            let mut rows = sqlx::query(PLAIN_QUERY).bind(today).bind(end).fetch(&db);
            let mut read = 0_i64;
            while let Some(row) = rows.next().await {
                row.expect("row");
                read += 1;
            }
            assert_eq!(read, count);
            started.elapsed()
        };
        let (first_time, _, _) = stream_once().await;
        let (mut streams, mut plains) = (Vec::new(), Vec::new());
        let mut profile = None;
        for _ in 0..5 {
            let (elapsed, statements, cpu) = stream_once().await;
            streams.push(elapsed);
            profile = Some((statements, cpu));
            plains.push(plain_once().await);
        }
        let median = |times: &mut Vec<Duration>| {
            times.sort();
            times[times.len() / 2]
        };
        let (stream_time, plain_time) = (median(&mut streams), median(&mut plains));

        let per = |d: Duration| count as f64 / d.as_secs_f64();
        println!("renewals:                 {count} (due in the year after the generated base of {size} accounts ends, {})", base.config.as_of);
        println!("plain query:              {:>8.2} s  ({:.0} rows/s; median of {:.2?})", plain_time.as_secs_f64(), per(plain_time), plains);
        println!("first streamed forecast:  {:>8.2} s  ({:.0} rows/s; reads the renewal history once)", first_time.as_secs_f64(), per(first_time));
        println!("streamed forecast:        {:>8.2} s  ({:.0} rows/s; probabilities, categories, expected ARR, over gRPC; median of {:.2?})", stream_time.as_secs_f64(), per(stream_time), streams);
        println!("forecast stream / query:  {:.1} % of the plain query's rows/s", per(stream_time) / per(plain_time) * 100.0);
        println!("where the last stream's time goes (pg_stat_statements; the rest is the services' own work and waits):");
        if let Some((profile, cpu)) = profile {
            profile.print("streamed forecast", stream_time, cpu, 4);
        }
        app.stop().await;
    });
}
