//! Prospect fit on the generated base: renewals' first terms equal those
//! read straight from the generated files, and what health learns from them
//! judges prospects by the base's own look-alikes.

use std::collections::BTreeMap;
use std::path::Path;

use tenure::generate::Config;
use tenure_platform::time::to_date;
use tenure_proto::common::v1::Money;
use tenure_proto::health::v1 as hpb;
use tenure_proto::renewals::v1 as rpb;
use tenure_tests::{TestStack, violated_fields};

use super::independent;

/// The signals through which the generator's drivers show at the look day.
const DRIVER_SIGNALS: &[&str] = &[
    "advanced_features_used_30d",
    "usage_trend_pct",
    "active_users_30d",
    "active_users_7d",
    "license_utilization_pct",
    "open_tickets_p1",
    "defect_share_pct",
    "max_days_overdue",
];

async fn first_terms(app: &TestStack, config: &Config) -> Vec<rpb::FirstTerm> {
    let mut stream = app
        .renewals
        .clone()
        .stream_first_terms(rpb::StreamFirstTermsRequest {
            as_of: Some(to_date(config.as_of)),
            look_days: 90,
            segment: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut terms = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        assert!(message.terms.len() <= 1000);
        terms.extend(message.terms);
    }
    terms
}

async fn train(app: &mut TestStack, config: &Config) -> hpb::ProspectModel {
    let request = hpb::TrainProspectModelRequest {
        request_id: "prospect-fit-1".into(),
        as_of: Some(to_date(config.as_of)),
        ..Default::default()
    };
    let started = app
        .health
        .train_prospect_model(request.clone())
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    // A retry finds the run it started.
    let again = app
        .health
        .train_prospect_model(request)
        .await
        .unwrap()
        .into_inner()
        .model
        .unwrap();
    assert_eq!(again.model_id, started.model_id);
    tenure::model::wait_for_prospect_model(&mut app.health, started)
        .await
        .unwrap()
}

fn prospect(id: &str, segment: &str, industry: &str, seats: i32, dollars: i64) -> hpb::Prospect {
    hpb::Prospect {
        prospect_id: id.into(),
        segment: segment.into(),
        industry: industry.into(),
        seats,
        arr: Some(Money {
            currency_code: "USD".into(),
            amount_minor: dollars * 100,
        }),
        term_months: 12,
        number_attributes: BTreeMap::from([("employees".into(), f64::from(seats) * 8.0)]),
        category_attributes: BTreeMap::from([("billing".into(), "annual".into())]),
    }
}

pub(super) async fn judged_by_first_terms(app: &mut TestStack, config: &Config, dir: &Path) {
    // Renewals' first terms are the files' own.
    crate::pipeline::synced(app).await;
    let terms = first_terms(app, config).await;
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let expected =
        independent::Base::read(&read("subscriptions.jsonl")).first_terms(90, config.as_of);
    let streamed: BTreeMap<&str, (bool, bool)> = terms
        .iter()
        .map(|t| (t.account_id.as_str(), (t.renewed, t.paying_at_look)))
        .collect();
    let usd: BTreeMap<&str, (bool, bool)> = terms
        .iter()
        .filter(|t| t.starting_arr.as_ref().unwrap().currency_code == "USD")
        .map(|t| (t.account_id.as_str(), (t.renewed, t.paying_at_look)))
        .collect();
    let expected_ref: BTreeMap<&str, (bool, bool)> =
        expected.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let keys: std::collections::BTreeSet<&str> =
        usd.keys().chain(expected_ref.keys()).copied().collect();
    let differing: Vec<_> = keys
        .into_iter()
        .filter(|k| usd.get(k) != expected_ref.get(k))
        .map(|k| (k, usd.get(k), expected_ref.get(k)))
        .collect();
    assert!(
        differing.is_empty(),
        "{} of {} first terms differ from the files (Tenure, files): {:?}",
        differing.len(),
        usd.len(),
        &differing[..differing.len().min(10)]
    );
    let churned = terms.iter().filter(|t| !t.renewed).count();
    assert!(
        terms.len() > 500 && churned > 30,
        "{} terms, {churned} churned",
        terms.len()
    );
    assert!(terms.iter().any(|t| t.term_months == 1) && terms.iter().any(|t| t.term_months == 12));

    let model = train(app, config).await;
    assert_eq!(model.status(), hpb::ModelStatus::Ready, "{}", model.error);
    assert_eq!(
        (model.example_count as usize, model.churn_count as usize),
        (terms.len(), churned),
        "every first term is an example"
    );
    let paying = terms.iter().filter(|t| t.paying_at_look).count();
    assert_eq!(model.indicator_example_count as usize, paying);
    assert!(model.converged && model.cv_auc.is_some(), "{model:?}");
    assert!(
        model
            .firmographics
            .iter()
            .any(|w| w.feature == "term_months")
    );
    assert!(
        model
            .indicators
            .iter()
            .all(|w| !w.feature.starts_with("segment=")),
        "indicators are reported apart from firmographics"
    );

    // Look-alikes: the same segment and industry, with the base's own rate.
    let mut firmographics: BTreeMap<String, (String, String)> = BTreeMap::new();
    for line in read("accounts.jsonl").lines() {
        let row: serde_json::Value = serde_json::from_str(line).unwrap();
        firmographics.insert(
            row["account_id"].as_str().unwrap().to_owned(),
            (
                row["segment"].as_str().unwrap().to_owned(),
                row["industry"].as_str().unwrap().to_owned(),
            ),
        );
    }
    // (customers, churned while paying at the look day, renewal rate %).
    let group = |segment: &str, industry: Option<&str>| {
        let members: Vec<(bool, bool)> = streamed
            .iter()
            .filter(|(id, _)| {
                let (s, i) = &firmographics[**id];
                s == segment && industry.is_none_or(|industry| i == industry)
            })
            .map(|(_, outcome)| *outcome)
            .collect();
        let renewed = members.iter().filter(|(r, _)| *r).count();
        let churned_paying = members.iter().filter(|(r, p)| !r && *p).count();
        let rate = renewed as f64 / members.len().max(1) as f64 * 100.0;
        (members.len(), churned_paying, rate)
    };
    let scored = app
        .health
        .score_prospects(hpb::ScoreProspectsRequest {
            model_id: String::new(),
            prospects: vec![
                prospect("small", "tech-touch", "retail", 4, 3_600),
                prospect("large", "enterprise", "finance", 60, 240_000),
                prospect("unknown", "public-sector", "", 10, 20_000),
            ],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(scored.model_id, model.model_id);
    let [small, large, unknown] = &scored.fits[..] else {
        panic!("{scored:?}");
    };
    assert_eq!(small.prospect_id, "small");
    // The narrowest group large enough, as the base's own files count it.
    let narrow = group("tech-touch", Some("retail"));
    let (description, (count, _, rate)) = if narrow.0 >= 30 && narrow.1 >= 10 {
        ("segment=tech-touch, industry=retail", narrow)
    } else {
        ("segment=tech-touch", group("tech-touch", None))
    };
    assert_eq!(small.look_alikes, description);
    assert_eq!(small.look_alike_count as usize, count);
    assert!((small.look_alike_renewal_rate_pct.unwrap() - rate).abs() < 1e-9);
    assert_eq!(unknown.look_alikes, "every customer");
    assert_eq!(unknown.look_alike_count as usize, terms.len());
    for fit in [small, large, unknown] {
        assert!((0.0..=1.0).contains(&fit.renewal_probability), "{fit:?}");
        assert!(!fit.reasons.is_empty() && fit.reasons.len() <= 5, "{fit:?}");
        // Each gap named is one the model bears out.
        for gap in &fit.gaps {
            assert!(
                gap.renewal_probability_if_reached > gap.renewal_probability_if_missed,
                "{gap:?}"
            );
            assert!(gap.renewed_value != gap.churned_value, "{gap:?}");
        }
    }
    // Judged against every customer (the group with the most churns to
    // compare with), the gaps name what the generator's drivers show
    // through at day 90: above all the stalled onboarding.
    let named: Vec<&str> = unknown.gaps.iter().map(|g| g.signal.as_str()).collect();
    assert!(
        named.iter().any(|s| DRIVER_SIGNALS.contains(s)),
        "{:#?}\n{model:#?}",
        unknown.gaps
    );

    // Bad prospects are refused whole, field by field.
    let mut bad = prospect("bad", "smb", "", 0, 100);
    bad.term_months = 0;
    bad.number_attributes.insert("Bad Name".into(), f64::NAN);
    let refused = app
        .health
        .score_prospects(hpb::ScoreProspectsRequest {
            model_id: String::new(),
            prospects: vec![prospect("ok", "smb", "", 3, 100), bad],
        })
        .await
        .unwrap_err();
    let fields = violated_fields(&refused);
    for field in [
        "prospects[1].seats",
        "prospects[1].term_months",
        "prospects[1].number_attributes[Bad Name]",
    ] {
        assert!(
            fields.iter().any(|f| f == field),
            "{field} not in {fields:?}"
        );
    }
}
