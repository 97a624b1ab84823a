//! Success plans: objectives judged from their baselines on the start day,
//! with statuses known by construction; the plans of a generated base
//! agreeing with the signal health reads; and refusals.

use std::collections::BTreeMap;

use tenure_platform::time::to_date;
use tenure_proto::ingestion::v1 as pb;
use tenure_tests::{TestStack, violated_fields};

use crate::fixtures::{date, days_ago, event, today_minus, ts};

fn metric(
    id: &str,
    baseline: f64,
    target: f64,
    direction: pb::MetricDirection,
    values: &[(u64, f64)],
) -> pb::SuccessMetric {
    pb::SuccessMetric {
        metric_id: id.into(),
        account_id: "acme".into(),
        name: id.into(),
        unit: String::new(),
        baseline,
        target,
        direction: direction as i32,
        values: values
            .iter()
            .map(|(ago, value)| pb::MetricValue {
                measured_on: date(today_minus(*ago)),
                value: *value,
            })
            .collect(),
        updated_at: ts(days_ago(1)),
    }
}

/// An objective due `due_in` days from today (negative: past).
fn objective(id: &str, measure: pb::objective::Measure, target: f64, due_in: i64) -> pb::Objective {
    let due = chrono::Utc::now().date_naive() + chrono::Duration::days(due_in);
    pb::Objective {
        objective_id: id.into(),
        name: id.into(),
        owner: "dana".into(),
        measure: Some(measure),
        target,
        due_on: date(due),
    }
}

fn plan(id: &str, start_ago: i64, objectives: Vec<pb::Objective>) -> pb::SuccessPlan {
    let start = chrono::Utc::now().date_naive() - chrono::Duration::days(start_ago);
    pb::SuccessPlan {
        plan_id: id.into(),
        account_id: "acme".into(),
        name: format!("{id} plan"),
        owner: "dana".into(),
        start_on: date(start),
        objectives,
        updated_at: ts(days_ago(1)),
    }
}

fn metric_of(id: &str) -> pb::objective::Measure {
    pb::objective::Measure::MetricId(id.into())
}

async fn upsert(
    app: &mut TestStack,
    plans: Vec<pb::SuccessPlan>,
) -> Result<pb::UpsertSummary, tonic::Status> {
    app.ingestion
        .batch_upsert_success_plans(pb::BatchUpsertSuccessPlansRequest {
            request_id: String::new(),
            plans,
        })
        .await
        .map(|r| r.into_inner().summary.unwrap())
}

async fn progress(
    app: &mut TestStack,
    account_id: &str,
    as_of: Option<chrono::NaiveDate>,
) -> pb::GetSuccessPlanProgressResponse {
    app.ingestion
        .get_success_plan_progress(pb::GetSuccessPlanProgressRequest {
            account_id: account_id.into(),
            plan_id: String::new(),
            as_of: as_of.map(to_date),
        })
        .await
        .unwrap()
        .into_inner()
}

/// The share of objectives met or on track, of those judged, over plans.
fn on_track(plans: &[pb::PlanProgress]) -> Option<f64> {
    use pb::ObjectiveStatus as S;
    let statuses: Vec<S> = plans
        .iter()
        .flat_map(|p| &p.objectives)
        .map(|o| o.status())
        .filter(|s| !matches!(s, S::NotStarted | S::NoData))
        .collect();
    let good = statuses
        .iter()
        .filter(|s| matches!(s, S::Met | S::OnTrack))
        .count();
    (!statuses.is_empty()).then(|| good as f64 * 100.0 / statuses.len() as f64)
}

#[tokio::test]
async fn objectives_are_judged_from_their_baselines_as_of_any_day() {
    let mut app = TestStack::spawn().await;
    app.plain_accounts(&["acme".to_owned()]).await;
    use pb::MetricDirection::{HigherIsBetter, LowerIsBetter};
    app.ingestion
        .batch_upsert_success_metrics(pb::BatchUpsertSuccessMetricsRequest {
            request_id: String::new(),
            metrics: vec![
                // Falling ten days a month: 60 well before it is due.
                metric(
                    "cycle",
                    90.0,
                    60.0,
                    LowerIsBetter,
                    &[(80, 85.0), (50, 75.0), (20, 65.0)],
                ),
                // Half way when due ten days ago; there only after.
                metric(
                    "rollout",
                    0.0,
                    100.0,
                    HigherIsBetter,
                    &[(40, 50.0), (5, 100.0)],
                ),
                // There already.
                metric("reports", 0.0, 80.0, HigherIsBetter, &[(5, 100.0)]),
            ],
        })
        .await
        .unwrap();
    // Three users, each active every week for the plan's whole life: flat.
    let mut events = Vec::new();
    for user in ["u1", "u2", "u3"] {
        for week in 0..20 {
            let id = format!("{user}-{week}");
            events.push(event(&id, "acme", user, "report", days_ago(2 + 7 * week)));
        }
    }
    app.ingestion
        .ingest_events(pb::IngestEventsRequest { events })
        .await
        .unwrap();
    let users = pb::objective::Measure::Usage(pb::UsageMeasure::ActiveUsers30d as i32);
    let first = plan(
        "first",
        100,
        vec![
            objective("cycle", metric_of("cycle"), 60.0, 60),
            objective("users", users.clone(), 5.0, 30),
            objective("rollout", metric_of("rollout"), 100.0, -10),
            objective("reports", metric_of("reports"), 80.0, 10),
            objective("unmeasured", metric_of("no-such-metric"), 1.0, 10),
        ],
    );
    let later = plan(
        "later",
        -5,
        vec![objective("cycle", metric_of("cycle"), 60.0, 60)],
    );
    let summary = upsert(&mut app, vec![first.clone(), later]).await.unwrap();
    assert_eq!(summary.applied_count, 2);
    assert_eq!(
        upsert(&mut app, vec![first.clone()])
            .await
            .unwrap()
            .stale_count,
        1
    );

    let now = progress(&mut app, "acme", None).await;
    assert_eq!(now.plans.len(), 2);
    let statuses: BTreeMap<&str, (pb::ObjectiveStatus, &pb::ObjectiveProgress)> = now.plans[0]
        .objectives
        .iter()
        .map(|o| (o.objective_id.as_str(), (o.status(), o)))
        .collect();
    use pb::ObjectiveStatus as S;
    let (status, cycle) = statuses["cycle"];
    assert_eq!(status, S::OnTrack, "{cycle:?}");
    // No value by the start: the metric's own baseline.
    assert_eq!((cycle.baseline, cycle.value), (Some(90.0), Some(65.0)));
    assert!(cycle.projected.unwrap() < 60.0 && !cycle.higher_is_better);
    assert!(
        (cycle.attainment_pct.unwrap() - 83.33).abs() < 0.01,
        "{cycle:?}"
    );
    let (status, users) = statuses["users"];
    assert_eq!(status, S::AtRisk, "{users:?}");
    assert_eq!((users.baseline, users.value), (Some(3.0), Some(3.0)));
    assert_eq!(users.measure, "usage:active_users_30d");
    let (status, rollout) = statuses["rollout"];
    assert_eq!(
        (status, rollout.value),
        (S::Missed, Some(50.0)),
        "judged on its due day"
    );
    assert_eq!(statuses["reports"].0, S::Met);
    assert_eq!(statuses["unmeasured"].0, S::NoData);
    assert_eq!(now.plans[0].on_track_pct, Some(50.0));
    assert_eq!(now.plans[0].success_rate_pct, Some(50.0));
    assert_eq!(now.plans[1].objectives[0].status(), S::NotStarted);

    // The signal health reads is the same share, over every plan.
    let signals = app
        .ingestion
        .get_account_signals(pb::GetAccountSignalsRequest {
            account_id: "acme".into(),
            as_of: None,
        })
        .await
        .unwrap()
        .into_inner()
        .signals
        .unwrap();
    assert_eq!(signals.success_plan_on_track_pct, Some(50.0));

    // A month ago: nothing from after it counts.
    let then_day = today_minus(30);
    let then = progress(&mut app, "acme", Some(then_day)).await;
    let reports = &then.plans[0].objectives[3];
    assert_eq!((reports.status(), reports.value), (S::NoData, None));
    assert_eq!(
        then.plans[0].objectives[2].status(),
        S::AtRisk,
        "not due then"
    );
    let signals_then = app
        .ingestion
        .get_account_signals(pb::GetAccountSignalsRequest {
            account_id: "acme".into(),
            as_of: date(then_day),
        })
        .await
        .unwrap()
        .into_inner()
        .signals
        .unwrap();
    assert_eq!(
        signals_then.success_plan_on_track_pct,
        on_track(&then.plans)
    );

    // A newer version replaces the plan.
    let mut easier = first.clone();
    easier.objectives[1].target = 3.0;
    easier.updated_at = ts(days_ago(0));
    upsert(&mut app, vec![easier]).await.unwrap();
    let now = progress(&mut app, "acme", None).await;
    assert_eq!(now.plans[0].objectives[1].status(), S::Met);

    // Refusals, field by field, and nothing stored.
    let mut bad = plan(
        "bad",
        10,
        vec![objective("a", metric_of("cycle"), 1.0, -20)],
    );
    bad.objectives.push(pb::Objective {
        measure: None,
        ..objective("a", metric_of("cycle"), f64::NAN, 5)
    });
    bad.objectives
        .push(objective("b", pb::objective::Measure::Usage(0), 1.0, 5));
    let refused = upsert(&mut app, vec![bad]).await.unwrap_err();
    let fields = violated_fields(&refused);
    for field in [
        "plans[0].objectives[0].due_on",
        "plans[0].objectives[1].objective_id",
        "plans[0].objectives[1].measure",
        "plans[0].objectives[1].target",
        "plans[0].objectives[2].usage",
    ] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }
    let empty = upsert(&mut app, vec![plan("empty", 10, vec![])])
        .await
        .unwrap_err();
    assert_eq!(
        violated_fields(&empty),
        vec!["plans[0].objectives".to_owned()]
    );
    assert_eq!(progress(&mut app, "acme", None).await.plans.len(), 2);
    let unknown = app
        .ingestion
        .get_success_plan_progress(pb::GetSuccessPlanProgressRequest {
            account_id: "acme".into(),
            plan_id: "no-such-plan".into(),
            as_of: None,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    app.stop().await;
}

/// The generated base's plans: every status a real book has, and the signal
/// of each account the share its plans' objectives give.
#[tokio::test]
async fn a_generated_base_plans_agree_with_the_signal() {
    let mut app = TestStack::spawn().await;
    let config = crate::generated::config(120, 5);
    let (dir, _) = crate::generated::load(&app, &config).await;
    let text = std::fs::read_to_string(dir.path().join("plans.jsonl")).unwrap();
    let mut planned: Vec<String> = text
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            row["account_id"].as_str().unwrap().to_owned()
        })
        .collect();
    planned.sort();
    planned.dedup();
    assert!(planned.len() >= 10, "{planned:?}");
    let as_of = config.as_of;
    let streamed = crate::fixtures::streamed_signals(
        &mut app,
        pb::StreamAccountSignalsRequest {
            account_ids: planned.clone(),
            as_of: Some(to_date(as_of)),
            ..Default::default()
        },
        planned.len(),
    )
    .await;
    let mut seen: BTreeMap<i32, usize> = BTreeMap::new();
    for signals in streamed {
        let answer = progress(&mut app, &signals.account_id, Some(as_of)).await;
        for objective in answer.plans.iter().flat_map(|p| &p.objectives) {
            *seen.entry(objective.status).or_default() += 1;
        }
        assert_eq!(
            signals.success_plan_on_track_pct,
            on_track(&answer.plans),
            "{}: {answer:?}",
            signals.account_id
        );
    }
    use pb::ObjectiveStatus as S;
    for status in [S::Met, S::Missed] {
        assert!(
            seen.get(&(status as i32)).is_some_and(|n| *n > 0),
            "{status:?} in {seen:?}"
        );
    }
    app.stop().await;
}
