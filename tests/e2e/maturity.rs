//! Maturity models: levels on a generated base held against the model's own
//! definition applied to ingestion's signals, history and the distribution
//! per segment, validation, and level changes and stuck accounts starting
//! playbooks.

use std::collections::BTreeMap;
use std::time::Duration;

use tenure_platform::time::to_date;
use tenure_proto::health::v1 as hpb;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::playbooks::v1 as pb;
use tenure_tests::{TestStack, eventually, violated_fields};

fn behaviour(name: &str, signal: &str, at_least: f64) -> hpb::Behaviour {
    hpb::Behaviour {
        name: name.into(),
        signal: signal.into(),
        at_least: Some(at_least),
        at_most: None,
    }
}

fn level(name: &str, behaviours: Vec<hpb::Behaviour>, expected_days: i32) -> hpb::MaturityLevel {
    hpb::MaturityLevel {
        name: name.into(),
        behaviours,
        expected_days,
        ..Default::default()
    }
}

fn create(
    request_id: &str,
    name: &str,
    levels: Vec<hpb::MaturityLevel>,
) -> hpb::CreateMaturityModelRequest {
    hpb::CreateMaturityModelRequest {
        request_id: request_id.into(),
        model: Some(hpb::MaturityModel {
            name: name.into(),
            description: "How far a customer has taken the product".into(),
            levels,
            ..Default::default()
        }),
    }
}

/// The adoption model: each level asks for one more thing.
fn adoption() -> Vec<hpb::MaturityLevel> {
    vec![
        level("onboarding", vec![], 0),
        level(
            "active",
            vec![behaviour("logs-in", "active_users_30d", 1.0)],
            0,
        ),
        level(
            "adopting",
            vec![behaviour("uses-licenses", "license_utilization_pct", 40.0)],
            0,
        ),
        level(
            "advanced",
            vec![behaviour(
                "advanced-features",
                "advanced_features_used_30d",
                2.0,
            )],
            0,
        ),
        level(
            "advocate",
            vec![behaviour("promoter", "latest_nps", 9.0)],
            0,
        ),
    ]
}

/// The level the adoption model gives `s`, computed here from the signals.
fn expected_level(s: &ipb::AccountSignals) -> i32 {
    let shown = [
        s.active_users_30d >= 1,
        s.license_utilization_pct.is_some_and(|u| u >= 40.0),
        s.advanced_features_used_30d >= 2,
        s.latest_nps.is_some_and(|n| n >= 9),
    ];
    1 + shown.iter().take_while(|s| **s).count() as i32
}

#[tokio::test]
async fn levels_on_a_generated_base_follow_the_models_behaviours() {
    let mut app = TestStack::spawn().await;
    let config = crate::generated::config(150, 23);
    crate::generated::load(&app, &config).await;
    let as_of = config.as_of;

    // Bad models are refused field by field, and nothing is stored.
    let mut bad = adoption();
    bad[1].behaviours.clear();
    bad[2].behaviours[0].signal = "no_such_signal".into();
    bad[3].behaviours[0].at_least = None;
    bad[4].behaviours[0].at_most = Some(1.0);
    bad.push(level(
        "active",
        vec![behaviour("uses-licenses", "latest_nps", 1.0)],
        -1,
    ));
    let status = app
        .health
        .create_maturity_model(create("bad", "adoption", bad))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let fields = violated_fields(&status);
    for field in [
        "model.levels[1].behaviours",
        "model.levels[2].behaviours[0].signal",
        "model.levels[3].behaviours[0].at_least",
        "model.levels[4].behaviours[0].at_most",
        "model.levels[5].name",
        "model.levels[5].behaviours[0].name",
        "model.levels[5].expected_days",
    ] {
        assert!(fields.iter().any(|f| f == field), "{field} in {fields:?}");
    }
    let two = app
        .health
        .create_maturity_model(create("two", "adoption", adoption()[..2].to_vec()))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&two), vec!["model.levels".to_owned()]);
    let missing = app
        .health
        .get_maturity_model(hpb::GetMaturityModelRequest {
            name: "adoption".into(),
            version: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // Created once per request id.
    for _ in 0..2 {
        let model = app
            .health
            .create_maturity_model(create("adoption-1", "adoption", adoption()))
            .await
            .unwrap()
            .into_inner()
            .model
            .unwrap();
        assert_eq!((model.version, model.levels.len()), (1, 5));
        assert_eq!(model.levels[4].level, 5);
    }
    let listed = app
        .health
        .list_maturity_models(hpb::ListMaturityModelsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.models.len(), 1);

    // Every account's level, from its signals at the base's end.
    let mut stream = app
        .ingestion
        .stream_account_signals(ipb::StreamAccountSignalsRequest {
            as_of: Some(to_date(as_of)),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut expected: BTreeMap<String, (String, i32)> = BTreeMap::new();
    while let Some(message) = stream.message().await.unwrap() {
        let s = message.signals.unwrap();
        expected.insert(
            s.account_id.clone(),
            (s.segment.clone(), expected_level(&s)),
        );
    }
    assert_eq!(expected.len(), 150);
    let mut counts: BTreeMap<(String, i32), i64> = BTreeMap::new();
    for (segment, level) in expected.values() {
        *counts.entry((segment.clone(), *level)).or_default() += 1;
        *counts.entry((String::new(), *level)).or_default() += 1;
    }
    let populated = (1..=5)
        .filter(|l| counts.contains_key(&(String::new(), *l)))
        .count();
    assert!(
        populated >= 3,
        "a real base spreads over levels: {counts:?}"
    );

    let distribution = app
        .health
        .get_maturity_distribution(hpb::GetMaturityDistributionRequest {
            model_name: "adoption".into(),
            as_of: Some(to_date(as_of)),
            segment: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let all = distribution.all.unwrap();
    assert_eq!((all.accounts, all.levels.len()), (150, 6));
    assert_eq!(
        all.levels[0].accounts, 0,
        "the first level asks for nothing"
    );
    let segments: Vec<&hpb::SegmentMaturity> = std::iter::once(&all)
        .chain(distribution.segments.iter())
        .collect();
    assert!(distribution.segments.len() >= 2, "{segments:?}");
    for segment in segments {
        for count in &segment.levels {
            let key = (segment.segment.clone(), count.level);
            assert_eq!(
                count.accounts,
                counts.get(&key).copied().unwrap_or(0),
                "{key:?}"
            );
        }
        let shares: f64 = segment.levels.iter().map(|l| l.share_pct).sum();
        assert!((shares - 100.0).abs() < 1e-6, "{segment:?}");
    }
    // One segment alone.
    let (segment, _) = expected.values().next().unwrap().clone();
    let alone = app
        .health
        .get_maturity_distribution(hpb::GetMaturityDistributionRequest {
            model_name: "adoption".into(),
            as_of: Some(to_date(as_of)),
            segment: segment.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alone.segments.len(), 1);
    assert_eq!(
        alone.all.unwrap().accounts,
        expected.values().filter(|(s, _)| *s == segment).count() as i64
    );

    // An account of each level, explained.
    for wanted in 1..=5 {
        let Some((account_id, _)) = expected.iter().find(|(_, (_, l))| *l == wanted) else {
            continue;
        };
        let maturity = app
            .health
            .get_account_maturity(hpb::GetAccountMaturityRequest {
                model_name: "adoption".into(),
                account_id: account_id.clone(),
                as_of: Some(to_date(as_of)),
            })
            .await
            .unwrap()
            .into_inner()
            .maturity
            .unwrap();
        assert_eq!(maturity.level, wanted, "{maturity:?}");
        assert_eq!(maturity.behaviours.len(), 4);
        let shown = maturity.behaviours.iter().filter(|b| b.shown).count() as i32;
        assert!(shown >= wanted - 1, "{maturity:?}");
        if wanted < 5 {
            assert_eq!(maturity.next_level, wanted + 1);
            assert_eq!(maturity.next_level_needs.len(), 1, "{maturity:?}");
            let needed = &maturity.behaviours[wanted as usize - 1];
            assert_eq!(
                (needed.level, needed.shown),
                (wanted + 1, false),
                "{maturity:?}"
            );
            assert_eq!(maturity.next_level_needs[0], needed.name);
        } else {
            assert!(maturity.next_level_needs.is_empty() && maturity.next_level == 0);
        }
    }

    // A year of an account's levels, each look the level as of that day.
    let account_id = expected
        .iter()
        .find(|(_, (_, l))| *l >= 3)
        .map(|(id, _)| id.clone())
        .unwrap();
    let history = app
        .health
        .get_maturity_history(hpb::GetMaturityHistoryRequest {
            model_name: "adoption".into(),
            account_id: account_id.clone(),
            from: Some(to_date(as_of - chrono::Days::new(364))),
            to: Some(to_date(as_of)),
            interval_days: 28,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.points.len(), 14);
    assert_eq!(history.points.last().unwrap().day, Some(to_date(as_of)));
    for point in history.points.iter().step_by(5) {
        let then = app
            .health
            .get_account_maturity(hpb::GetAccountMaturityRequest {
                model_name: "adoption".into(),
                account_id: account_id.clone(),
                as_of: point.day,
            })
            .await
            .unwrap()
            .into_inner()
            .maturity
            .unwrap();
        assert_eq!(then.level, point.level, "{point:?}");
    }
    let moves = history
        .points
        .windows(2)
        .filter(|w| w[0].level != w[1].level)
        .count();
    assert_eq!(history.changes.len(), moves);

    // Refusals.
    let tomorrow = chrono::Utc::now().date_naive() + chrono::Days::new(1);
    let future = app
        .health
        .get_account_maturity(hpb::GetAccountMaturityRequest {
            model_name: "adoption".into(),
            account_id: account_id.clone(),
            as_of: Some(to_date(tomorrow)),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&future), vec!["as_of".to_owned()]);
    let unknown = app
        .health
        .get_account_maturity(hpb::GetAccountMaturityRequest {
            model_name: "adoption".into(),
            account_id: "no-such-account".into(),
            as_of: None,
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound, "{unknown:?}");
    let too_many = app
        .health
        .get_maturity_history(hpb::GetMaturityHistoryRequest {
            model_name: "adoption".into(),
            account_id,
            from: Some(to_date(as_of - chrono::Days::new(1000))),
            to: Some(to_date(as_of)),
            interval_days: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&too_many), vec!["interval_days".to_owned()]);
    app.stop().await;
}

/// Sets the account's custom attribute `name`, dated `seconds` ago.
async fn attribute(app: &mut TestStack, account_id: &str, name: &str, value: bool, seconds: i64) {
    let updated_at = chrono::Utc::now() - chrono::Duration::seconds(seconds);
    app.ingestion
        .batch_upsert_accounts(ipb::BatchUpsertAccountsRequest {
            request_id: String::new(),
            accounts: vec![ipb::Account {
                account_id: account_id.into(),
                name: account_id.into(),
                segment: "smb".into(),
                owner: "dana".into(),
                updated_at: Some(tenure_platform::time::to_timestamp(updated_at)),
                attributes: [(
                    name.to_owned(),
                    ipb::AttributeValue {
                        value: Some(ipb::attribute_value::Value::Boolean(value)),
                    },
                )]
                .into(),
                ..Default::default()
            }],
        })
        .await
        .unwrap();
}

/// The playbooks the runs of `account_id` belong to, once there are `n`.
async fn playbooks_run(app: &TestStack, account_id: &str, n: usize) -> Vec<String> {
    eventually(Duration::from_secs(20), || {
        let mut playbooks = app.playbooks.clone();
        let account_id = account_id.to_owned();
        async move {
            let runs = playbooks
                .list_runs(pb::ListRunsRequest {
                    account_id,
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .runs;
            let mut names: Vec<String> = runs.into_iter().map(|r| r.playbook).collect();
            names.sort();
            (names.len() >= n).then_some(names)
        }
    })
    .await
    .unwrap_or_else(|| panic!("{n} runs for {account_id}"))
}

#[tokio::test]
async fn level_changes_and_stuck_accounts_start_playbooks() {
    let mut app = TestStack::spawn().await;
    app.health
        .create_scorecard(crate::fixtures::single_measure_scorecard(
            "default",
            "seats_purchased",
            0.0,
            10.0,
        ))
        .await
        .unwrap();
    app.health
        .create_maturity_model(create(
            "",
            "rollout",
            vec![
                level("signed", vec![], 30),
                level(
                    "trained",
                    vec![behaviour("trained", "attributes.trained", 1.0)],
                    0,
                ),
                level("live", vec![behaviour("live", "attributes.live", 1.0)], 0),
            ],
        ))
        .await
        .unwrap();
    for (name, trigger) in [
        (
            "celebrate",
            serde_json::json!({"type": "maturity_level_reached", "model": "rollout", "level": 2}),
        ),
        (
            "regress",
            serde_json::json!({"type": "maturity_level_dropped", "model": "rollout"}),
        ),
        (
            "rescue",
            serde_json::json!({"type": "maturity_level_stuck", "model": "rollout", "level": 1, "min_days": 30}),
        ),
    ] {
        app.playbook(&serde_json::json!({
            "name": name, "title": name, "trigger": trigger,
            "steps": [
                {"id": "call", "type": "task", "title": "{{trigger.level_name}} on {{trigger.model}}", "next": "done"},
                {"id": "done", "type": "end"}
            ]
        }))
        .await;
    }
    app.plain_accounts(&["climber".to_owned(), "stalled".to_owned()])
        .await;
    // Both are held at the first level once scored, without a notice: no
    // change of the customer's made them so.
    let db = app.db().await;
    let held = |db: sqlx::PgPool| async move {
        sqlx::query_as::<_, (String, i16)>(
            "SELECT account_id, level FROM health.maturity_levels \
             WHERE model_name = 'rollout' ORDER BY account_id",
        )
        .fetch_all(&db)
        .await
        .unwrap()
    };
    let first = eventually(Duration::from_secs(20), || {
        let db = db.clone();
        async move { Some(held(db).await).filter(|rows| rows.len() == 2) }
    })
    .await
    .expect("both accounts held");
    assert_eq!(
        first,
        vec![("climber".to_owned(), 1), ("stalled".to_owned(), 1)]
    );

    // Trained: the climber reaches level 2; untrained again, it drops.
    attribute(&mut app, "climber", "trained", true, 60).await;
    assert_eq!(playbooks_run(&app, "climber", 1).await, vec!["celebrate"]);
    attribute(&mut app, "climber", "trained", false, 30).await;
    assert_eq!(
        playbooks_run(&app, "climber", 2).await,
        vec!["celebrate", "regress"]
    );

    // The stalled account has been signed for 45 days; the model expects
    // 30. Rescored, it is stuck, and told so once.
    sqlx::query(
        "UPDATE health.maturity_levels SET since = current_date - 45 \
         WHERE account_id = 'stalled'",
    )
    .execute(&db)
    .await
    .unwrap();
    for _ in 0..2 {
        app.health
            .recompute_health(hpb::RecomputeHealthRequest {
                account_ids: vec!["stalled".into()],
                all_accounts: false,
            })
            .await
            .unwrap();
    }
    assert_eq!(playbooks_run(&app, "stalled", 1).await, vec!["rescue"]);
    let task = eventually(Duration::from_secs(20), || {
        let mut playbooks = app.playbooks.clone();
        async move {
            let tasks = playbooks
                .list_tasks(pb::ListTasksRequest {
                    account_id: "stalled".into(),
                    ..Default::default()
                })
                .await
                .ok()?
                .into_inner()
                .tasks;
            tasks.into_iter().next()
        }
    })
    .await
    .expect("the rescue task");
    assert_eq!(task.title, "signed on rollout");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        playbooks_run(&app, "stalled", 1).await.len(),
        1,
        "one notice per stay"
    );
    app.stop().await;
}
