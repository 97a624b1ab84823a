//! The three R's by segment and tier on a generated base: adoption counted
//! straight from the generated events, success and impact from the plans
//! and surveys, retention as GetRetentionMetrics gives it for the same year.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use tenure_platform::time::to_date;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::renewals::v1 as pb;
use tenure_tests::TestStack;

fn rows(dir: &std::path::Path, name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join(name))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn at(row: &serde_json::Value, field: &str) -> DateTime<Utc> {
    row[field].as_str().unwrap().parse().unwrap()
}

fn close(a: Option<f64>, b: Option<f64>, what: &str) {
    match (a, b) {
        (Some(a), Some(b)) => assert!((a - b).abs() < 1e-9, "{what}: {a} against {b}"),
        _ => assert_eq!(a, b, "{what}"),
    }
}

#[tokio::test]
async fn the_three_rs_by_segment_and_tier_add_up_from_the_base() {
    let mut app = TestStack::spawn().await;
    let config = crate::generated::config(150, 13);
    let (dir, _) = crate::generated::load(&app, &config).await;
    crate::pipeline::synced(&app).await;
    let as_of = config.as_of;
    let tier = |id: &str, min_usd: i64| pb::ServiceTier {
        tier_id: id.into(),
        display_name: id.into(),
        min_arr: (min_usd > 0).then(|| tenure_proto::common::v1::Money {
            currency_code: "USD".into(),
            amount_minor: min_usd * 100,
        }),
        segments: Vec::new(),
        hours_per_account_month: 1.0,
    };
    app.renewals
        .put_coverage_model(pb::PutCoverageModelRequest {
            request_id: String::new(),
            currency_code: "USD".into(),
            tiers: vec![
                tier("top", 100_000),
                tier("leveraged", 12_000),
                tier("scalable", 0),
            ],
            csm_hours_per_month: 120.0,
        })
        .await
        .unwrap();
    let report = app
        .renewals
        .get_value_report(pb::GetValueReportRequest {
            as_of: Some(to_date(as_of)),
            coverage_model_version: 0,
        })
        .await
        .unwrap()
        .into_inner();

    // The customers of the day, with their tier and segment.
    let mut customers: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .renewals
            .list_account_tiers(pb::ListAccountTiersRequest {
                as_of: Some(to_date(as_of)),
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for a in page.accounts {
            customers.insert(a.account_id, (a.segment, a.tier_id));
        }
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let all = report.all.clone().unwrap();
    assert_eq!(all.accounts, customers.len() as i64);
    assert!(all.accounts > 30, "{report:?}");
    let tiered: i64 = report
        .tiers
        .iter()
        .map(|t| t.figures.as_ref().unwrap().accounts)
        .sum();
    let segmented: i64 = report
        .segments
        .iter()
        .map(|s| s.figures.as_ref().unwrap().accounts)
        .sum();
    assert_eq!((tiered, segmented), (all.accounts, all.accounts));

    // Adoption from the generated files: users of the 30 days up to the
    // day, and those who used an advanced feature.
    let advanced: BTreeSet<String> = rows(dir.path(), "features.jsonl")
        .iter()
        .filter(|f| f["tier"] == "advanced")
        .map(|f| f["feature_name"].as_str().unwrap().to_owned())
        .collect();
    let cutoff = (as_of + chrono::Days::new(1))
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let since = cutoff - chrono::Duration::days(30);
    let mut users: HashMap<String, BTreeMap<String, bool>> = HashMap::new();
    for event in rows(dir.path(), "events.jsonl") {
        let when = at(&event, "occurred_at");
        let account = event["account_id"].as_str().unwrap();
        if when < since || when >= cutoff || !customers.contains_key(account) {
            continue;
        }
        let used = users
            .entry(account.to_owned())
            .or_default()
            .entry(event["user_id"].as_str().unwrap().to_owned())
            .or_default();
        *used |= advanced.contains(event["event_name"].as_str().unwrap());
    }
    // Impact from each customer's latest NPS response of the year.
    let mut latest: HashMap<String, (DateTime<Utc>, i64)> = HashMap::new();
    for survey in rows(dir.path(), "surveys.jsonl") {
        let when = at(&survey, "responded_at");
        let account = survey["account_id"].as_str().unwrap().to_owned();
        if survey["kind"] != "nps" || when >= cutoff || when < cutoff - chrono::Duration::days(365)
        {
            continue;
        }
        let score = survey["score"].as_i64().unwrap();
        let entry = latest.entry(account).or_insert((when, score));
        if when > entry.0 {
            *entry = (when, score);
        }
    }
    // Seats and plan objectives as the APIs give them.
    let ids: Vec<String> = customers.keys().cloned().collect();
    let signals = crate::fixtures::streamed_signals(
        &mut app,
        ipb::StreamAccountSignalsRequest {
            account_ids: ids.clone(),
            as_of: Some(to_date(as_of)),
            ..Default::default()
        },
        ids.len(),
    )
    .await;
    let mut expected: BTreeMap<String, [f64; 10]> = BTreeMap::new();
    for s in &signals {
        let used = users.get(&s.account_id);
        let active = used.map_or(0, |u| u.len()) as f64;
        let adv = used.map_or(0, |u| u.values().filter(|a| **a).count()) as f64;
        assert_eq!(
            active,
            f64::from(s.active_users_30d),
            "{}: rollups and events agree",
            s.account_id
        );
        let progress = app
            .ingestion
            .get_success_plan_progress(ipb::GetSuccessPlanProgressRequest {
                account_id: s.account_id.clone(),
                plan_id: String::new(),
                as_of: Some(to_date(as_of)),
            })
            .await
            .unwrap()
            .into_inner();
        let statuses: Vec<ipb::ObjectiveStatus> = progress
            .plans
            .iter()
            .flat_map(|p| &p.objectives)
            .map(|o| o.status())
            .collect();
        let met = statuses
            .iter()
            .filter(|s| **s == ipb::ObjectiveStatus::Met)
            .count() as f64;
        let missed = statuses
            .iter()
            .filter(|s| **s == ipb::ObjectiveStatus::Missed)
            .count() as f64;
        let impact = latest.get(&s.account_id).map(|(_, score)| *score);
        let seats = f64::from(s.seats_purchased);
        let (segment, tier) = &customers[&s.account_id];
        let figures = [
            1.0,
            seats,
            active.min(seats),
            active,
            adv,
            met,
            met + missed,
            f64::from(u8::from(impact.is_some_and(|n| n >= 9))),
            f64::from(u8::from(impact.is_some_and(|n| (7..=8).contains(&n)))),
            f64::from(u8::from(impact.is_some_and(|n| n <= 6))),
        ];
        for group in ["", segment.as_str(), tier.as_str()] {
            let sums = expected.entry(group.to_owned()).or_default();
            for (sum, x) in sums.iter_mut().zip(figures) {
                *sum += x;
            }
        }
    }
    let share = |part: f64, whole: f64| (whole > 0.0).then(|| part * 100.0 / whole);
    let check = |name: &str, figures: &pb::ValueFigures| {
        let [
            accounts,
            seats,
            adopted,
            active,
            adv,
            met,
            decided,
            pos,
            neu,
            neg,
        ] = expected[name];
        let surveyed = pos + neu + neg;
        assert_eq!(figures.accounts as f64, accounts, "{name}");
        close(figures.licenses_adopted_pct, share(adopted, seats), name);
        close(figures.advanced_users_pct, share(adv, active), name);
        close(figures.basic_users_pct, share(active - adv, active), name);
        close(figures.success_rate_pct, share(met, decided), name);
        assert_eq!(figures.surveyed_accounts as f64, surveyed, "{name}");
        close(figures.positive_impact_pct, share(pos, surveyed), name);
        close(figures.negative_impact_pct, share(neg, surveyed), name);
    };
    check("", &all);
    for group in report.segments.iter().chain(&report.tiers) {
        check(&group.name, group.figures.as_ref().unwrap());
    }
    assert!(
        all.advanced_users_pct.unwrap() > 0.0 && all.success_rate_pct.is_some(),
        "{all:?}"
    );

    // Retention: the year's logos and NRR as GetRetentionMetrics counts them.
    let metrics = |segment: &str| {
        let mut renewals = app.renewals.clone();
        let request = pb::GetRetentionMetricsRequest {
            period: report.retention_period,
            segment: segment.to_owned(),
            currency_code: "USD".into(),
            as_of: None,
        };
        async move {
            renewals
                .get_retention_metrics(request)
                .await
                .unwrap()
                .into_inner()
        }
    };
    let whole = metrics("").await;
    assert_eq!(all.logo_retention, whole.logo_retention);
    assert_eq!(all.net_revenue_retention, whole.net_revenue_retention);
    for group in &report.segments {
        let asked = metrics(&group.name).await;
        let figures = group.figures.as_ref().unwrap();
        assert_eq!(
            figures.net_revenue_retention, asked.net_revenue_retention,
            "{}",
            group.name
        );
        assert_eq!(
            figures.logo_retention, asked.logo_retention,
            "{}",
            group.name
        );
    }
    let starting: i64 = report
        .tiers
        .iter()
        .map(|t| {
            t.figures
                .as_ref()
                .unwrap()
                .logo_retention
                .as_ref()
                .unwrap()
                .denominator
        })
        .sum();
    assert_eq!(starting, all.logo_retention.unwrap().denominator);
    app.stop().await;
}
