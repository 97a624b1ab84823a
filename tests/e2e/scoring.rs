//! Health scorecards and scores over real ingestion signals.

use std::time::Duration;

use tenure_proto::health::v1 as hpb;
use tenure_proto::ingestion::v1 as pb;
use tenure_tests::{TestStack, eventually, violated_fields};

use crate::fixtures::*;
use crate::ingestion::account;

fn linear(name: &str, signal: &str, weight: f64, worst: f64, best: f64) -> hpb::Measure {
    hpb::Measure {
        name: name.into(),
        signal: signal.into(),
        weight,
        rule: Some(hpb::measure::Rule::Linear(hpb::LinearRule { worst, best })),
    }
}

fn card(name: &str, segment: &str, groups: Vec<hpb::MeasureGroup>) -> hpb::CreateScorecardRequest {
    hpb::CreateScorecardRequest {
        request_id: String::new(),
        scorecard: Some(hpb::Scorecard {
            name: name.into(),
            segment: segment.into(),
            groups,
            ..Default::default()
        }),
    }
}

fn group(name: &str, measures: Vec<hpb::Measure>) -> hpb::MeasureGroup {
    hpb::MeasureGroup {
        name: name.into(),
        measures,
    }
}

#[tokio::test]
async fn scorecards_score_accounts_and_explain_each_measure() {
    let mut app = TestStack::spawn().await;
    let mut smb = account("small", "Small Co", 400);
    smb.segment = "smb".into();
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![account("big", "Big Co", 400), smb],
        })
        .await
        .unwrap();
    let (start, end) = (today_minus(100), today_minus(100) + chrono::Days::new(365));
    app.ingestion
        .batch_upsert_subscriptions(pb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: vec![subscription(
                "s-big",
                "big",
                10,
                100_000 * 100,
                start,
                end,
                days_ago(100),
            )],
        })
        .await
        .unwrap();
    let events = (0..5)
        .map(|i| {
            event(
                &format!("e{i}"),
                "big",
                &format!("u{i}"),
                "reports",
                days_ago(2),
            )
        })
        .collect();
    app.ingestion
        .ingest_events(pb::IngestEventsRequest { events })
        .await
        .unwrap();

    let invalid = card(
        "Bad Name",
        "",
        vec![group(
            "Adoption",
            vec![linear("util", "no_such_signal", -1.0, 20.0, 20.0)],
        )],
    );
    let status = app.health.create_scorecard(invalid).await.unwrap_err();
    assert_eq!(
        violated_fields(&status),
        [
            "scorecard.name",
            "scorecard.groups[0].measures[0].signal",
            "scorecard.groups[0].measures[0].weight",
            "scorecard.groups[0].measures[0].linear"
        ]
    );

    let default = card(
        "default",
        "",
        vec![
            group(
                "Adoption",
                vec![linear(
                    "utilization",
                    "license_utilization_pct",
                    2.0,
                    20.0,
                    80.0,
                )],
            ),
            group(
                "Sentiment",
                vec![linear("nps", "latest_nps", 1.0, 0.0, 10.0)],
            ),
        ],
    );
    let created = app
        .health
        .create_scorecard(default)
        .await
        .unwrap()
        .into_inner()
        .scorecard
        .unwrap();
    assert_eq!(created.version, 1);
    let smb_card = card(
        "smb",
        "smb",
        vec![group(
            "Support",
            vec![linear("p1", "open_tickets_p1", 1.0, 3.0, 0.0)],
        )],
    );
    app.health.create_scorecard(smb_card).await.unwrap();

    let healths = app
        .health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: vec!["big".into(), "small".into()],
            all_accounts: false,
        })
        .await
        .unwrap()
        .into_inner()
        .healths;
    let big = healths.iter().find(|h| h.account_id == "big").unwrap();
    assert_eq!(
        (big.scorecard_name.as_str(), big.scorecard_version),
        ("default", 1)
    );
    // 5 of 10 seats active: utilization 50 %, halfway from 20 to 80; NPS missing.
    assert!((big.score - 50.0).abs() < 1e-9, "{}", big.score);
    assert_eq!(big.band(), hpb::Band::Yellow);
    let nps = big.measures.iter().find(|m| m.name == "nps").unwrap();
    assert!(nps.missing && nps.raw_value.is_none() && nps.effective_weight == 0.0);
    let utilization = big
        .measures
        .iter()
        .find(|m| m.name == "utilization")
        .unwrap();
    assert_eq!(
        (utilization.raw_value, utilization.effective_weight),
        (Some(50.0), 1.0)
    );
    let small = healths.iter().find(|h| h.account_id == "small").unwrap();
    assert_eq!(small.scorecard_name, "smb", "the segment's own scorecard");
    assert_eq!((small.score, small.band()), (100.0, hpb::Band::Green));

    let stored = app
        .health
        .get_health(hpb::GetHealthRequest {
            account_id: "big".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.health.unwrap().score, big.score);

    // Changes reported by ingestion are scored in the background.
    app.ingestion
        .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
            request_id: String::new(),
            tickets: vec![ticket(
                "t1",
                "small",
                pb::TicketPriority::P1,
                pb::TicketCategory::Defect,
                days_ago(1),
                None,
            )],
        })
        .await
        .unwrap();
    let mut health = app.health.clone();
    let rescored = eventually(Duration::from_secs(15), || {
        let mut health = health.clone();
        async move {
            let answer = health
                .get_health(hpb::GetHealthRequest {
                    account_id: "small".into(),
                })
                .await
                .ok()?;
            let score = answer.into_inner().health?.score;
            (score < 100.0).then_some(score)
        }
    })
    .await;
    assert_eq!(
        rescored.map(f64::round),
        Some(67.0),
        "one open P1 of three tolerated"
    );
    let missing = health
        .get_health(hpb::GetHealthRequest {
            account_id: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    app.stop().await;
}

#[tokio::test]
async fn band_changes_and_drops_reach_playbooks_once_with_history_and_trend() {
    let mut app = TestStack::spawn().await;
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![account("acme", "Acme", 400)],
        })
        .await
        .unwrap();
    let support = card(
        "default",
        "",
        vec![group(
            "Support",
            vec![linear("p1", "open_tickets_p1", 1.0, 3.0, 0.0)],
        )],
    );
    app.health.create_scorecard(support).await.unwrap();
    let db = app.db().await;
    let events = || {
        let db = db.clone();
        async move {
            sqlx::query_as::<_, (String, serde_json::Value)>(
                "SELECT kind, payload FROM playbooks.trigger_events WHERE account_id = 'acme' ORDER BY id",
            )
            .fetch_all(&db)
            .await
            .unwrap()
        }
    };
    let recompute = async |app: &mut TestStack| {
        app.health
            .recompute_health(hpb::RecomputeHealthRequest {
                account_ids: vec!["acme".into()],
                all_accounts: false,
            })
            .await
            .unwrap()
            .into_inner()
            .healths[0]
            .clone()
    };
    let first = recompute(&mut app).await;
    assert_eq!((first.score, first.band()), (100.0, hpb::Band::Green));

    let p1 = |id: &str| {
        ticket(
            id,
            "acme",
            pb::TicketPriority::P1,
            pb::TicketCategory::Defect,
            days_ago(1),
            None,
        )
    };
    app.ingestion
        .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
            request_id: String::new(),
            tickets: vec![p1("t1")],
        })
        .await
        .unwrap();
    let second = recompute(&mut app).await;
    assert_eq!(second.band(), hpb::Band::Yellow);
    recompute(&mut app).await;

    let delivered = eventually(Duration::from_secs(15), || async {
        let found = events().await;
        (found.len() >= 2).then_some(found)
    })
    .await
    .expect("health changes reach playbooks");
    tokio::time::sleep(Duration::from_millis(800)).await;
    let found = events().await;
    assert_eq!(
        found.len(),
        2,
        "one band change and one drop, however often rescored: {found:?}"
    );
    let kinds: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, ["health_band_changed", "score_dropped"]);
    assert_eq!(delivered[0].1["previous_band"], "green");
    assert_eq!(delivered[0].1["band"], "yellow");
    assert_eq!(delivered[1].1["previous_score"], 100.0);

    // A week ago the account stood at 90: the trend says how far it moved.
    sqlx::query(
        "INSERT INTO health.score_history (account_id, day, score, band, scorecard_name, scorecard_version) \
         VALUES ('acme', current_date - 7, 90, 3, 'default', 1)",
    )
    .execute(&db)
    .await
    .unwrap();
    let health = app
        .health
        .get_health(hpb::GetHealthRequest {
            account_id: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .health
        .unwrap();
    let trend = health.trend.unwrap();
    assert_eq!(
        trend.change_7d.map(f64::round),
        Some((second.score - 90.0).round())
    );
    assert_eq!(trend.change_90d, None);
    let history = app
        .health
        .get_health_history(hpb::GetHealthHistoryRequest {
            account_id: "acme".into(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.snapshots.len(), 1);
    assert_eq!(
        history.snapshots[0].score, second.score,
        "today's snapshot is the last score of today"
    );
    let older = app
        .health
        .get_health_history(hpb::GetHealthHistoryRequest {
            account_id: "acme".into(),
            page_size: 1,
            page_token: history.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(older.snapshots[0].score, 90.0);
    app.stop().await;
}

#[tokio::test]
async fn lists_and_the_distribution_show_where_risk_lies() {
    let mut app = TestStack::spawn().await;
    let accounts = ["a0", "a1", "a2", "a3"]
        .iter()
        .map(|id| account(id, id, 400))
        .collect();
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
        })
        .await
        .unwrap();
    let (start, end) = (today_minus(100), today_minus(100) + chrono::Days::new(365));
    let subscriptions = (0..4)
        .map(|i| {
            subscription(
                &format!("s{i}"),
                &format!("a{i}"),
                10,
                (i + 1) * 10_000 * 100,
                start,
                end,
                days_ago(100),
            )
        })
        .collect();
    app.ingestion
        .batch_upsert_subscriptions(pb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions,
        })
        .await
        .unwrap();
    // Account aN has N open P1 tickets: scores 100, 67, 33, 0.
    let tickets = (0..4)
        .flat_map(|n| {
            (0..n).map(move |t| {
                ticket(
                    &format!("t{n}-{t}"),
                    &format!("a{n}"),
                    pb::TicketPriority::P1,
                    pb::TicketCategory::Defect,
                    days_ago(1),
                    None,
                )
            })
        })
        .collect();
    app.ingestion
        .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
            request_id: String::new(),
            tickets,
        })
        .await
        .unwrap();
    app.health
        .create_scorecard(card(
            "default",
            "",
            vec![group(
                "Support",
                vec![linear("p1", "open_tickets_p1", 1.0, 3.0, 0.0)],
            )],
        ))
        .await
        .unwrap();
    app.health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: vec!["a0".into(), "a1".into(), "a2".into(), "a3".into()],
            all_accounts: false,
        })
        .await
        .unwrap();

    let first = app
        .health
        .list_account_health(hpb::ListAccountHealthRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = first
        .accounts
        .iter()
        .map(|a| a.account_id.as_str())
        .collect();
    assert_eq!(ids, ["a3", "a2"], "lowest score first");
    let rest = app
        .health
        .list_account_health(hpb::ListAccountHealthRequest {
            page_size: 2,
            page_token: first.next_page_token,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = rest
        .accounts
        .iter()
        .map(|a| a.account_id.as_str())
        .collect();
    assert_eq!(ids, ["a1", "a0"]);

    let by_risk = app
        .health
        .list_account_health(hpb::ListAccountHealthRequest {
            sort: hpb::HealthSort::ArrAtRiskDescending as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let ids: Vec<&str> = by_risk
        .accounts
        .iter()
        .map(|a| a.account_id.as_str())
        .collect();
    assert_eq!(
        ids[..3],
        ["a3", "a2", "a1"],
        "the biggest ARR in red or yellow first"
    );
    assert_eq!(
        by_risk.accounts[0]
            .arr_at_risk
            .as_ref()
            .unwrap()
            .amount_minor,
        40_000 * 100
    );
    let reds = app
        .health
        .list_account_health(hpb::ListAccountHealthRequest {
            band: hpb::Band::Red as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reds.accounts.len(), 2);

    let distribution = app
        .health
        .get_health_distribution(hpb::GetHealthDistributionRequest {
            tail_size: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let counts: Vec<i32> = distribution.histogram.iter().map(|b| b.count).collect();
    assert_eq!(counts, [1, 0, 0, 1, 0, 0, 1, 0, 0, 1]);
    let bands: Vec<(i32, i32, i64)> = distribution
        .bands
        .iter()
        .map(|b| {
            (
                b.band,
                b.account_count,
                b.arr.iter().map(|m| m.amount_minor).sum(),
            )
        })
        .collect();
    assert_eq!(
        bands,
        [
            (hpb::Band::Red as i32, 2, 70_000 * 100),
            (hpb::Band::Yellow as i32, 1, 20_000 * 100),
            (hpb::Band::Green as i32, 1, 10_000 * 100)
        ]
    );
    assert_eq!(distribution.at_risk[0].account_id, "a3");
    assert_eq!(distribution.advocates[0].account_id, "a0");
    app.stop().await;
}

#[tokio::test]
async fn watchers_follow_changes_and_resume_from_their_cursor() {
    let mut app = TestStack::spawn().await;
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![account("w1", "W1", 400)],
        })
        .await
        .unwrap();
    app.health
        .create_scorecard(card(
            "default",
            "",
            vec![group(
                "Support",
                vec![linear("p1", "open_tickets_p1", 1.0, 3.0, 0.0)],
            )],
        ))
        .await
        .unwrap();
    let watch = |cursor: String| hpb::WatchHealthChangesRequest {
        segment: "enterprise".into(),
        owner: String::new(),
        cursor,
    };
    let mut stream = app
        .health
        .watch_health_changes(watch(String::new()))
        .await
        .unwrap()
        .into_inner();
    let other_segment = app
        .health
        .watch_health_changes(hpb::WatchHealthChangesRequest {
            segment: "smb".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let recompute = hpb::RecomputeHealthRequest {
        account_ids: vec!["w1".into()],
        all_accounts: false,
    };
    app.health
        .recompute_health(recompute.clone())
        .await
        .unwrap();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        (first.account_id.as_str(), first.score, first.previous_score),
        ("w1", 100.0, None)
    );
    drop(stream);

    // While nobody watches, the account gets worse.
    app.ingestion
        .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
            request_id: String::new(),
            tickets: vec![ticket(
                "wt",
                "w1",
                pb::TicketPriority::P1,
                pb::TicketCategory::Defect,
                days_ago(1),
                None,
            )],
        })
        .await
        .unwrap();
    app.health.recompute_health(recompute).await.unwrap();
    let mut resumed = app
        .health
        .watch_health_changes(watch(first.cursor.clone()))
        .await
        .unwrap()
        .into_inner();
    let missed = tokio::time::timeout(Duration::from_secs(10), resumed.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(missed.previous_score, Some(100.0));
    assert_eq!(
        (missed.previous_band(), missed.band()),
        (hpb::Band::Green, hpb::Band::Yellow)
    );
    // Open watches would hold the drain at shutdown for its grace period.
    drop((other_segment, resumed));
    let bad = app
        .health
        .watch_health_changes(watch("not-a-cursor".into()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["cursor"]);
    app.stop().await;
}

#[tokio::test]
async fn late_data_rewrites_the_history_it_belongs_to() {
    let mut app = TestStack::spawn().await;
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![account("late", "Late", 400)],
        })
        .await
        .unwrap();
    app.health
        .create_scorecard(card(
            "default",
            "",
            vec![group(
                "Support",
                vec![linear("p1", "open_tickets_p1", 1.0, 3.0, 0.0)],
            )],
        ))
        .await
        .unwrap();
    app.health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: vec!["late".into()],
            all_accounts: false,
        })
        .await
        .unwrap();
    let db = app.db().await;
    sqlx::query(
        "INSERT INTO health.score_history (account_id, day, score, band, scorecard_name, scorecard_version) \
         VALUES ('late', current_date - 10, 100, 3, 'default', 1), ('late', current_date - 20, 100, 3, 'default', 1)",
    )
    .execute(&db)
    .await
    .unwrap();

    // A P1 opened twelve days ago arrives only now.
    app.ingestion
        .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
            request_id: String::new(),
            tickets: vec![ticket(
                "late-t",
                "late",
                pb::TicketPriority::P1,
                pb::TicketCategory::Defect,
                days_ago(12),
                None,
            )],
        })
        .await
        .unwrap();
    let rewritten = eventually(Duration::from_secs(15), || async {
        let score: f64 = sqlx::query_scalar("SELECT score FROM health.score_history WHERE account_id = 'late' AND day = current_date - 10")
            .fetch_one(&db)
            .await
            .unwrap();
        (score < 100.0).then_some(score)
    })
    .await;
    assert_eq!(
        rewritten.map(f64::round),
        Some(67.0),
        "the snapshot of ten days ago now sees the ticket"
    );
    let untouched: f64 = sqlx::query_scalar("SELECT score FROM health.score_history WHERE account_id = 'late' AND day = current_date - 20")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(untouched, 100.0, "days before the event stay as they were");
    app.stop().await;
}

#[tokio::test]
async fn parents_roll_up_their_children_by_arr() {
    let mut app = TestStack::spawn().await;
    let mut children: Vec<pb::Account> = ["kid-a", "kid-b"]
        .iter()
        .map(|id| account(id, id, 400))
        .collect();
    for child in &mut children {
        child.parent_account_id = "group".into();
    }
    let mut accounts = vec![account("group", "Group", 400)];
    accounts.extend(children);
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
        })
        .await
        .unwrap();
    let (start, end) = (today_minus(100), today_minus(100) + chrono::Days::new(365));
    app.ingestion
        .batch_upsert_subscriptions(pb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: vec![
                subscription("sa", "kid-a", 10, 30_000 * 100, start, end, days_ago(100)),
                subscription("sb", "kid-b", 10, 10_000 * 100, start, end, days_ago(100)),
            ],
        })
        .await
        .unwrap();
    let tickets = (0..3)
        .map(|t| {
            ticket(
                &format!("b{t}"),
                "kid-b",
                pb::TicketPriority::P1,
                pb::TicketCategory::Defect,
                days_ago(1),
                None,
            )
        })
        .collect();
    app.ingestion
        .batch_upsert_tickets(pb::BatchUpsertTicketsRequest {
            request_id: String::new(),
            tickets,
        })
        .await
        .unwrap();
    app.health
        .create_scorecard(card(
            "default",
            "",
            vec![group(
                "Support",
                vec![linear("p1", "open_tickets_p1", 1.0, 3.0, 0.0)],
            )],
        ))
        .await
        .unwrap();
    app.health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: vec!["group".into(), "kid-a".into(), "kid-b".into()],
            all_accounts: false,
        })
        .await
        .unwrap();
    let group = app
        .health
        .get_health(hpb::GetHealthRequest {
            account_id: "group".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .health
        .unwrap();
    let rollup = group.rollup.unwrap();
    // kid-a scores 100 on 30k ARR, kid-b 0 on 10k: 75, green.
    assert_eq!(
        (rollup.score, rollup.child_count, rollup.band()),
        (75.0, 2, hpb::Band::Green)
    );
    assert_eq!(rollup.method, "arr_weighted");
    let kid = app
        .health
        .get_health(hpb::GetHealthRequest {
            account_id: "kid-a".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .health
        .unwrap();
    assert!(kid.rollup.is_none());
    app.stop().await;
}

#[tokio::test]
async fn a_csm_assessment_counts_until_it_expires_and_all_accounts_rescore() {
    let mut app = TestStack::spawn().await;
    let accounts = ["c1", "c2"].iter().map(|id| account(id, id, 400)).collect();
    app.ingestion
        .batch_upsert_accounts(pb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts,
        })
        .await
        .unwrap();
    app.health
        .create_scorecard(card(
            "default",
            "",
            vec![group(
                "Relationship",
                vec![
                    linear("csm", "csm_assessment", 1.0, 0.0, 100.0),
                    linear("p1", "open_tickets_p1", 1.0, 3.0, 0.0),
                ],
            )],
        ))
        .await
        .unwrap();
    let all = app
        .health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: vec![],
            all_accounts: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((all.scored_count, all.healths.len()), (2, 0));

    let assessment = |score: f64| hpb::RecordAssessmentRequest {
        request_id: String::new(),
        account_id: "c1".into(),
        score,
        note: "exec sponsor disengaged".into(),
        assessed_by: "dana".into(),
        expires_on: date(today_minus(0) + chrono::Days::new(30)),
    };
    let bad = app
        .health
        .record_assessment(assessment(150.0))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["score"]);
    app.health
        .record_assessment(assessment(20.0))
        .await
        .unwrap();
    let health = app.health.clone();
    let assessed = eventually(Duration::from_secs(15), || {
        let mut health = health.clone();
        async move {
            let h = health
                .get_health(hpb::GetHealthRequest {
                    account_id: "c1".into(),
                })
                .await
                .ok()?
                .into_inner()
                .health?;
            let csm = h.measures.iter().find(|m| m.name == "csm")?.clone();
            (!csm.missing).then_some((h.score, csm.raw_value))
        }
    })
    .await;
    assert_eq!(
        assessed,
        Some((60.0, Some(20.0))),
        "the assessment (20) and no tickets (100), equally weighted"
    );

    // Once expired, the assessment is missing data again.
    let db = app.db().await;
    sqlx::query("UPDATE health.assessments SET expires_on = current_date - 1")
        .execute(&db)
        .await
        .unwrap();
    let rescored = app
        .health
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: vec!["c1".into()],
            all_accounts: false,
        })
        .await
        .unwrap()
        .into_inner();
    let csm = rescored.healths[0]
        .measures
        .iter()
        .find(|m| m.name == "csm")
        .unwrap();
    assert!(csm.missing);
    assert_eq!(rescored.healths[0].score, 100.0);
    app.stop().await;
}
