//! Peer benchmarks: an account's measures against its peers' on a day.

use tenure_proto::ingestion::v1 as pb;
use tenure_tests::{TestStack, violated_fields};

use crate::fixtures::{date, ts};

fn day(text: &str) -> chrono::NaiveDate {
    text.parse().unwrap()
}

fn at(text: &str) -> Option<prost_types::Timestamp> {
    ts(format!("{text}T12:00:00Z").parse().unwrap())
}

/// A sales cycle (days, lower is better) measured on each of `values`.
fn cycle(account: &str, values: &[(&str, f64)]) -> pb::SuccessMetric {
    pb::SuccessMetric {
        metric_id: format!("{account}-cycle"),
        account_id: account.into(),
        name: "sales cycle".into(),
        unit: "days".into(),
        baseline: 60.0,
        target: 20.0,
        direction: pb::MetricDirection::LowerIsBetter as i32,
        values: values
            .iter()
            .map(|(on, value)| pb::MetricValue {
                measured_on: date(day(on)),
                value: *value,
            })
            .collect(),
        updated_at: at("2025-05-02"),
    }
}

/// `me` and four peers in mid-market with sales cycles of 10 to 40 days;
/// an enterprise account, and a mid-market one that arrived after the day
/// asked, are no peers.
async fn base(app: &mut TestStack) {
    let accounts = [
        ("me", "mid-market", "2024-01-01"),
        ("p1", "mid-market", "2024-01-01"),
        ("p2", "mid-market", "2024-01-01"),
        ("p3", "mid-market", "2024-01-01"),
        ("p4", "mid-market", "2024-01-01"),
        ("big", "enterprise", "2024-01-01"),
        ("late", "mid-market", "2025-12-01"),
    ];
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: accounts
                .iter()
                .map(|(id, segment, since)| pb::Account {
                    account_id: (*id).into(),
                    name: (*id).into(),
                    segment: (*segment).into(),
                    updated_at: at(since),
                    ..Default::default()
                })
                .collect(),
        })
        .await
        .unwrap();
    let metrics = vec![
        // The later value lies after the day asked.
        cycle(
            "me",
            &[
                ("2025-04-01", 45.0),
                ("2025-05-01", 30.0),
                ("2025-08-01", 5.0),
            ],
        ),
        cycle("p1", &[("2025-05-01", 10.0)]),
        cycle("p2", &[("2025-05-01", 20.0)]),
        cycle("p3", &[("2025-05-01", 30.0)]),
        cycle("p4", &[("2025-05-01", 40.0)]),
        cycle("big", &[("2025-05-01", 1.0)]),
        cycle("late", &[("2025-05-01", 1.0)]),
    ];
    app.ingestion
        .batch_upsert_success_metrics(pb::BatchUpsertSuccessMetricsRequest {
            request_id: String::new(),
            metrics,
        })
        .await
        .unwrap();
}

fn request(peers: &[&str], segment: &str) -> pb::GetPeerBenchmarksRequest {
    pb::GetPeerBenchmarksRequest {
        account_id: "me".into(),
        as_of: date(day("2025-06-30")),
        peer_account_ids: peers.iter().map(|p| (*p).into()).collect(),
        segment: segment.into(),
    }
}

#[tokio::test]
async fn an_account_stands_among_its_segment_or_a_stated_cohort_on_the_day_asked() {
    let mut app = TestStack::spawn().await;
    base(&mut app).await;
    let answer = app
        .ingestion
        .get_peer_benchmarks(request(&[], ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (answer.segment.as_str(), answer.peer_count),
        ("mid-market", 4)
    );
    let cycle = &answer.benchmarks[0];
    assert_eq!(
        (cycle.measure.as_str(), cycle.unit.as_str()),
        ("sales cycle", "days")
    );
    assert!(!cycle.higher_is_better);
    // 30 days against 10, 20, 30 and 40: better than one, tied with one.
    assert_eq!(cycle.value, 30.0);
    assert_eq!(cycle.peer_count, 4);
    assert_eq!(cycle.percentile, 37.5);
    assert_eq!(cycle.median, 25.0);
    // Shorter is better: the best quarter starts at 17.5 days.
    assert_eq!((cycle.top_quartile, cycle.bottom_quartile), (17.5, 32.5));
    // Usage is measured for everyone: no events yet, all tied.
    let usage: Vec<(&str, f64)> = answer.benchmarks[1..]
        .iter()
        .map(|b| (b.measure.as_str(), b.percentile))
        .collect();
    assert_eq!(
        usage,
        [
            ("active users (30 days)", 50.0),
            ("events (30 days)", 50.0),
            ("features used (30 days)", 50.0),
        ]
    );

    // Another segment, and a stated cohort (the account itself not counted).
    let enterprise = app
        .ingestion
        .get_peer_benchmarks(request(&[], "enterprise"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (enterprise.peer_count, enterprise.benchmarks[0].percentile),
        (1, 0.0)
    );
    let cohort = app
        .ingestion
        .get_peer_benchmarks(request(&["p1", "me", "p2", "p1"], ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((cohort.segment.as_str(), cohort.peer_count), ("", 2));
    assert_eq!(
        (cohort.benchmarks[0].percentile, cohort.benchmarks[0].median),
        (0.0, 15.0)
    );
}

#[tokio::test]
async fn peers_that_are_not_there_or_a_request_that_names_both_are_refused() {
    let mut app = TestStack::spawn().await;
    base(&mut app).await;
    let unknown = app
        .ingestion
        .get_peer_benchmarks(request(&["p1", "ghost"], ""))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&unknown), ["peer_account_ids[1]"]);
    // Not yet there on the day asked.
    let late = app
        .ingestion
        .get_peer_benchmarks(request(&["late"], ""))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&late), ["peer_account_ids[0]"]);
    let both = app
        .ingestion
        .get_peer_benchmarks(request(&["p1"], "enterprise"))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&both), ["segment"]);
    let mut nobody = request(&[], "");
    nobody.account_id = "ghost".into();
    let missing = app.ingestion.get_peer_benchmarks(nobody).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}
