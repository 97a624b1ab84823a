//! Advocacy: what accounts did for the vendor by a day, the revenue their
//! referrals brought, beside health's advocate tail and renewals' lifetime
//! value; on a hand-made book and on a generated base.

use std::collections::{BTreeMap, HashMap};

use tenure_platform::time::to_date;
use tenure_proto::common::v1::{AdvocacySummary, Money};
use tenure_proto::health::v1 as hpb;
use tenure_proto::ingestion::v1 as pb;
use tenure_proto::renewals::v1 as rpb;
use tenure_tests::{TestStack, violated_fields};

use crate::fixtures::{days_ago, subscription, today_minus, ts};

fn activity(id: &str, kind: pb::AdvocacyKind, days: i64, referred: &str) -> pb::AdvocacyActivity {
    pb::AdvocacyActivity {
        activity_id: id.into(),
        account_id: "fan".into(),
        kind: kind as i32,
        occurred_at: ts(days_ago(days)),
        contact_id: String::new(),
        referred_account_id: referred.into(),
        note: String::new(),
        updated_at: ts(days_ago(days)),
    }
}

async fn summaries(
    app: &mut TestStack,
    ids: &[String],
    as_of: Option<chrono::NaiveDate>,
) -> Vec<pb::AccountAdvocacy> {
    app.ingestion
        .get_advocacy_summaries(pb::GetAdvocacySummariesRequest {
            account_ids: ids.to_vec(),
            as_of: as_of.map(to_date),
        })
        .await
        .unwrap()
        .into_inner()
        .accounts
}

fn usd(minor: i64) -> Money {
    Money {
        currency_code: "USD".into(),
        amount_minor: minor,
    }
}

#[tokio::test]
async fn advocacy_counts_what_was_done_by_a_day_and_what_referrals_brought() {
    let mut app = TestStack::spawn().await;
    let ids: Vec<String> = ["fan", "newco", "lost-co"].map(String::from).to_vec();
    app.plain_accounts(&ids).await;
    // The referral that became a customer pays USD 12,000 from 50 days ago.
    app.ingestion
        .batch_upsert_subscriptions(pb::BatchUpsertSubscriptionsRequest {
            request_id: String::new(),
            subscriptions: vec![subscription(
                "s-newco",
                "newco",
                10,
                1_200_000,
                today_minus(50),
                today_minus(50) + chrono::Days::new(365),
                days_ago(50),
            )],
        })
        .await
        .unwrap();
    use pb::AdvocacyKind as K;
    let activities = vec![
        activity("ref", K::Reference, 20, ""),
        activity("review", K::Review, 10, ""),
        activity("brought-newco", K::Referral, 60, "newco"),
        activity("brought-lost-co", K::Referral, 90, "lost-co"),
        activity("shipped", K::FeedbackAdopted, 400, ""),
    ];
    app.ingestion
        .batch_upsert_advocacy_activities(pb::BatchUpsertAdvocacyActivitiesRequest {
            request_id: String::new(),
            activities,
        })
        .await
        .unwrap();

    let with_unknown = vec!["fan".to_owned(), "nobody".to_owned()];
    let now = summaries(&mut app, &with_unknown, None).await;
    assert_eq!(now.len(), 1, "unknown accounts are left out");
    let fan = now[0].summary.clone().unwrap();
    assert_eq!(
        (
            fan.references,
            fan.reviews,
            fan.referrals,
            fan.referrals_won,
            fan.feedback_adopted
        ),
        (1, 1, 2, 1, 1)
    );
    assert_eq!(fan.referred_arr, vec![usd(1_200_000)]);
    let last = fan.last_activity_time.unwrap().seconds;
    let review = ts(days_ago(10)).unwrap().seconds;
    assert!((last - review).abs() < 600, "the review is the latest");
    // A month ago: the reference and review had not happened; the referral
    // already paid.
    let then = summaries(&mut app, &ids[..1], Some(today_minus(30))).await[0]
        .summary
        .clone()
        .unwrap();
    assert_eq!(
        (
            then.references,
            then.reviews,
            then.referrals,
            then.referrals_won
        ),
        (0, 0, 2, 1)
    );
    // Before the referral's first day it had brought nothing yet.
    let before = summaries(&mut app, &ids[..1], Some(today_minus(55))).await[0]
        .summary
        .clone()
        .unwrap();
    assert_eq!((before.referrals, before.referrals_won), (2, 0));
    assert!(before.referred_arr.is_empty());

    // The advocate tail of the health distribution carries the same.
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
        .recompute_health(hpb::RecomputeHealthRequest {
            account_ids: ids.clone(),
            all_accounts: false,
        })
        .await
        .unwrap();
    let distribution = app
        .health
        .get_health_distribution(hpb::GetHealthDistributionRequest::default())
        .await
        .unwrap()
        .into_inner();
    let tail: HashMap<&str, &AdvocacySummary> = distribution
        .advocates
        .iter()
        .map(|a| (a.account_id.as_str(), a.advocacy.as_ref().unwrap()))
        .collect();
    assert_eq!(tail.len(), 3);
    assert_eq!(tail["fan"], &fan);
    assert_eq!(tail["newco"].referrals, 0);

    // Refusals, field by field.
    let mut own = activity("self", K::Referral, 5, "fan");
    own.kind = K::Referral as i32;
    let mut wrong = activity("wrong", K::Review, 5, "newco");
    wrong.occurred_at = ts(chrono::Utc::now() + chrono::Duration::days(3));
    let unknown_kind = activity("what", K::Unspecified, 5, "");
    let refused = app
        .ingestion
        .batch_upsert_advocacy_activities(pb::BatchUpsertAdvocacyActivitiesRequest {
            request_id: String::new(),
            activities: vec![own, wrong, unknown_kind],
        })
        .await
        .unwrap_err();
    let mut fields = violated_fields(&refused);
    fields.sort();
    assert_eq!(
        fields,
        [
            "activities[0].referred_account_id",
            "activities[1].occurred_at",
            "activities[1].referred_account_id",
            "activities[2].kind",
        ]
    );
    let empty = app
        .ingestion
        .get_advocacy_summaries(pb::GetAdvocacySummariesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&empty), ["account_ids"]);
    app.stop().await;
}

/// The generated base's advocacy: each account's counts as the files hold
/// them, its referred ARR what the accounts it brought pay, and the same
/// beside each customer's lifetime value.
#[tokio::test]
async fn a_generated_base_advocacy_adds_up() {
    let mut app = TestStack::spawn().await;
    let config = crate::generated::config(150, 9);
    let (dir, _) = crate::generated::load(&app, &config).await;
    let as_of = config.as_of;
    let text = std::fs::read_to_string(dir.path().join("advocacy.jsonl")).unwrap();
    // (account, kind) → count, and each referral's account.
    let mut counts: BTreeMap<(String, String), i32> = BTreeMap::new();
    let mut referrals: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        let account = row["account_id"].as_str().unwrap().to_owned();
        let kind = row["kind"].as_str().unwrap().to_owned();
        if kind == "referral" {
            referrals.push((
                account.clone(),
                row["referred_account_id"].as_str().unwrap().to_owned(),
            ));
        }
        *counts.entry((account, kind)).or_default() += 1;
    }
    assert!(referrals.len() >= 5 && counts.len() > 20, "{counts:?}");
    let accounts_text = std::fs::read_to_string(dir.path().join("accounts.jsonl")).unwrap();
    let mut ids: Vec<String> = accounts_text
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            row["account_id"].as_str().unwrap().to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    let summaries: HashMap<String, AdvocacySummary> = summaries(&mut app, &ids, Some(as_of))
        .await
        .into_iter()
        .map(|a| (a.account_id, a.summary.unwrap()))
        .collect();
    assert_eq!(summaries.len(), ids.len());
    let count = |account: &str, kind: &str| {
        counts
            .get(&(account.to_owned(), kind.to_owned()))
            .copied()
            .unwrap_or(0)
    };
    // What each referred account pays on the day, from its signals.
    let mut pays: HashMap<String, i64> = HashMap::new();
    for (_, referred) in &referrals {
        let signals = app
            .ingestion
            .get_account_signals(pb::GetAccountSignalsRequest {
                account_id: referred.clone(),
                as_of: Some(to_date(as_of)),
            })
            .await
            .unwrap()
            .into_inner()
            .signals
            .unwrap();
        if let Some(arr) = signals.arr.filter(|a| a.amount_minor > 0) {
            assert_eq!(
                arr.currency_code, "USD",
                "referred accounts in one currency here"
            );
            pays.insert(referred.clone(), arr.amount_minor);
        }
    }
    assert!(!pays.is_empty(), "some referrals still pay");
    for (account, summary) in &summaries {
        assert_eq!(
            (summary.references, summary.case_studies, summary.referrals),
            (
                count(account, "reference"),
                count(account, "case_study"),
                count(account, "referral")
            ),
            "{account}"
        );
        let won: Vec<i64> = referrals
            .iter()
            .filter(|(by, _)| by == account)
            .filter_map(|(_, referred)| pays.get(referred).copied())
            .collect();
        assert_eq!(summary.referrals_won, won.len() as i32, "{account}");
        let expected: Vec<Money> = if won.is_empty() {
            vec![]
        } else {
            vec![usd(won.iter().sum())]
        };
        assert_eq!(summary.referred_arr, expected, "{account}");
    }

    // Beside each paying customer's lifetime value.
    crate::pipeline::synced(&app).await;
    let valued = app
        .renewals
        .get_lifetime_value(rpb::GetLifetimeValueRequest {
            scope: None,
            discount_rate: 0.1,
            currency_code: "USD".into(),
            as_of: Some(to_date(as_of)),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(valued.accounts.len() > 20);
    let mut referring = 0;
    for account in &valued.accounts {
        assert_eq!(
            account.referred_arr, summaries[&account.account_id].referred_arr,
            "{}",
            account.account_id
        );
        referring += usize::from(!account.referred_arr.is_empty());
    }
    assert!(referring > 0, "a customer whose referral pays");
    app.stop().await;
}
