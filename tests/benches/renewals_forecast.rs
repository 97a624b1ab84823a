//! Streams the forecast of every renewal and, in the same run, reads the
//! same renewal rows with a plain query; prints rows/s for both and the
//! ratio.
//!
//! `cargo bench -p tenure-tests --bench renewals_forecast -- [ACCOUNTS]`
//! (default 100,000 accounts, one subscription term each, renewing within a
//! year; 2,000 past outcomes give the segments' historical rates). The rows
//! are written straight into renewals' tables: this measures the read path.

use std::time::{Duration, Instant};

use chrono::Utc;
use tenure_platform::time::to_date;
use tenure_proto::common::v1::DateRange;
use tenure_proto::renewals::v1 as pb;
use tenure_tests::TestStack;
use tokio_stream::StreamExt as _;

const PLAIN_QUERY: &str = "SELECT o.subscription_id, o.term_end, o.account_id, o.currency::text, \
       o.arr_minor, o.state, o.next_arr_minor, a.name, a.segment, a.owner, a.health_score, \
       a.health_band, a.churn_probability \
     FROM renewals.opportunities o LEFT JOIN renewals.accounts a USING (account_id) \
     WHERE o.term_end >= $1 AND o.term_end < $2";

fn main() {
    let count: i64 = tenure_tests::bench_size(100_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let mut app = TestStack::spawn().await;
        let db = app.db().await;
        let today = Utc::now().date_naive();
        eprintln!("loading {count} renewals");
        sqlx::query(
            "INSERT INTO renewals.accounts (account_id, name, segment, owner, health_score, health_band) \
             SELECT 'acct-' || i, 'Account ' || i, (ARRAY['enterprise','mid-market','smb'])[1 + i % 3], \
                    'owner-' || (i % 50), 40 + (i % 60), CASE WHEN i % 60 < 30 THEN 'yellow' ELSE 'green' END \
             FROM generate_series(1, $1) AS i",
        )
        .bind(count)
        .execute(&db)
        .await
        .expect("accounts");
        sqlx::query(
            "INSERT INTO renewals.opportunities (subscription_id, term_end, account_id, term_start, currency, arr_minor, state) \
             SELECT 'sub-' || i, $2::date + (i % 365)::int, 'acct-' || i, $2::date + (i % 365)::int - 365, 'USD', 100000 + i, 1 \
             FROM generate_series(1, $1) AS i",
        )
        .bind(count)
        .bind(today)
        .execute(&db)
        .await
        .expect("opportunities");
        sqlx::query(
            "INSERT INTO renewals.outcomes (outcome_id, account_id, subscription_id, term_end_date, kind, currency, \
               previous_arr_minor, new_arr_minor, churn_reason, decided_on) \
             SELECT gen_random_uuid(), 'acct-' || i, 'old-' || i, $1::date - 30, CASE WHEN i % 5 = 0 THEN 3 ELSE 1 END, \
                    'USD', 100000, CASE WHEN i % 5 = 0 THEN 0 ELSE 100000 END, CASE WHEN i % 5 = 0 THEN 2 ELSE 0 END, $1::date - 20 \
             FROM generate_series(1, 2000) AS i",
        )
        .bind(today)
        .execute(&db)
        .await
        .expect("outcomes");
        sqlx::query("ANALYZE").execute(&db).await.expect("analyze");
        let window = Some(DateRange {
            start: Some(to_date(today)),
            end: Some(to_date(today + chrono::Days::new(366))),
        });
        let end = today + chrono::Days::new(366);

        // Warm the cache so neither side pays for cold pages.
        let warm = sqlx::query(PLAIN_QUERY).bind(today).bind(end).fetch_all(&db).await.expect("warm");
        assert_eq!(warm.len() as i64, count);
        drop(warm);

        let started = Instant::now();
        let mut stream = app
            .renewals
            .stream_forecast(pb::StreamForecastRequest { window, chunk_size: 1000, ..Default::default() })
            .await
            .expect("stream")
            .into_inner();
        let mut streamed = 0_i64;
        while let Some(message) = stream.message().await.expect("stream") {
            streamed += message.rows.len() as i64;
        }
        let stream_time = started.elapsed();
        assert_eq!(streamed, count);

        let started = Instant::now();
        let mut rows = sqlx::query(PLAIN_QUERY).bind(today).bind(end).fetch(&db);
        let mut read = 0_i64;
        while let Some(row) = rows.next().await {
            row.expect("row");
            read += 1;
        }
        let plain_time = started.elapsed();
        assert_eq!(read, count);

        let per = |d: Duration| count as f64 / d.as_secs_f64();
        println!("renewals:                 {count}");
        println!("plain query:              {:>8.2} s  ({:.0} rows/s)", plain_time.as_secs_f64(), per(plain_time));
        println!("streamed forecast:        {:>8.2} s  ({:.0} rows/s; probabilities, categories, expected ARR, over gRPC)", stream_time.as_secs_f64(), per(stream_time));
        println!("forecast stream / query:  {:.1} % of the plain query's rows/s", per(stream_time) / per(plain_time) * 100.0);
        app.stop().await;
    });
}
