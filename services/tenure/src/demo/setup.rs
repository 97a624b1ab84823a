//! What a customer-success team configures before its first morning: a
//! health scorecard, a maturity model, a few playbooks and its service
//! tiers.

use tenure_proto::health::v1 as hpb;
use tenure_proto::renewals::v1 as rpb;

/// The default scorecard: adoption, engagement, support, sentiment,
/// relationships, billing and outcomes, each measure a signal mapped to
/// 0-100.
pub(super) fn scorecard() -> hpb::Scorecard {
    let linear = |name: &str, signal: &str, weight: f64, worst: f64, best: f64| hpb::Measure {
        name: name.into(),
        signal: signal.into(),
        weight,
        rule: Some(hpb::measure::Rule::Linear(hpb::LinearRule { worst, best })),
    };
    let steps = |name: &str, signal: &str, weight: f64, steps: &[(f64, f64)]| hpb::Measure {
        name: name.into(),
        signal: signal.into(),
        weight,
        rule: Some(hpb::measure::Rule::Thresholds(hpb::ThresholdRule {
            steps: steps
                .iter()
                .map(|&(at_least, score)| hpb::threshold_rule::Step { at_least, score })
                .collect(),
        })),
    };
    let group = |name: &str, measures| hpb::MeasureGroup {
        name: name.into(),
        measures,
    };
    hpb::Scorecard {
        name: "standard".into(),
        groups: vec![
            group(
                "Adoption",
                vec![
                    linear(
                        "Advanced features",
                        "advanced_features_used_30d",
                        3.0,
                        0.0,
                        4.0,
                    ),
                    linear(
                        "Licences in use",
                        "license_utilization_pct",
                        2.0,
                        20.0,
                        90.0,
                    ),
                    linear("Usage trend", "usage_trend_pct", 1.0, -50.0, 20.0),
                ],
            ),
            group(
                "Support",
                vec![steps(
                    "Open P1 tickets",
                    "open_tickets_p1",
                    2.0,
                    &[(0.0, 100.0), (1.0, 20.0), (2.0, 0.0)],
                )],
            ),
            group(
                "Sentiment",
                vec![linear("Latest NPS", "latest_nps", 1.0, 0.0, 10.0)],
            ),
            group(
                "Relationships",
                vec![steps(
                    "Sponsor changed",
                    "sponsor_changed_90d",
                    2.0,
                    &[(0.0, 100.0), (1.0, 10.0)],
                )],
            ),
            group(
                "Billing",
                vec![steps(
                    "Days overdue",
                    "max_days_overdue",
                    2.0,
                    &[(0.0, 100.0), (15.0, 60.0), (45.0, 10.0)],
                )],
            ),
            group(
                "Outcomes",
                vec![linear(
                    "Success-plan attainment",
                    "success_plan_attainment_pct",
                    1.0,
                    0.0,
                    100.0,
                )],
            ),
        ],
        ..Default::default()
    }
}

/// The maturity model the demo tracks and the report draws.
pub(crate) const MATURITY_MODEL: &str = "adoption";

/// The adoption model: from signed to advocating, each level one more
/// behaviour the signals show.
pub(super) fn maturity(request_id: String) -> hpb::CreateMaturityModelRequest {
    let behaviour = |name: &str, signal: &str, at_least: f64| hpb::Behaviour {
        name: name.into(),
        signal: signal.into(),
        at_least: Some(at_least),
        at_most: None,
    };
    let level = |name: &str, description: &str, behaviours, expected_days| hpb::MaturityLevel {
        name: name.into(),
        description: description.into(),
        behaviours,
        expected_days,
        ..Default::default()
    };
    hpb::CreateMaturityModelRequest {
        request_id,
        model: Some(hpb::MaturityModel {
            name: MATURITY_MODEL.into(),
            description: "How far a customer has taken the product".into(),
            levels: vec![
                level("Signed", "Under contract", vec![], 60),
                level(
                    "Active",
                    "A quarter of the licences in use",
                    vec![behaviour(
                        "licences-in-use",
                        "license_utilization_pct",
                        25.0,
                    )],
                    90,
                ),
                level(
                    "Adopting",
                    "Most licences in use",
                    vec![behaviour("most-licences", "license_utilization_pct", 60.0)],
                    180,
                ),
                level(
                    "Advanced",
                    "Advanced features in regular use",
                    vec![behaviour(
                        "advanced-features",
                        "advanced_features_used_30d",
                        2.0,
                    )],
                    0,
                ),
                level(
                    "Advocating",
                    "A promoter",
                    vec![behaviour("promoter", "latest_nps", 9.0)],
                    0,
                ),
            ],
            ..Default::default()
        }),
    }
}

/// The coverage model: top accounts (USD 100,000 and up) get ten CSM hours
/// a month, leveraged ones (USD 12,000 and up) two, the rest pooled
/// coverage; a CSM has 120 hours a month for their accounts.
pub(super) fn coverage(request_id: String) -> rpb::PutCoverageModelRequest {
    let tier = |id: &str, name: &str, min_usd: i64, hours: f64| rpb::ServiceTier {
        tier_id: id.into(),
        display_name: name.into(),
        min_arr: (min_usd > 0).then(|| tenure_proto::common::v1::Money {
            currency_code: "USD".into(),
            amount_minor: min_usd * 100,
        }),
        segments: Vec::new(),
        hours_per_account_month: hours,
    };
    rpb::PutCoverageModelRequest {
        request_id,
        currency_code: "USD".into(),
        tiers: vec![
            tier("top", "Top", 100_000, 10.0),
            tier("leveraged", "Leveraged", 12_000, 2.0),
            tier("scalable", "Scalable", 0, 0.0),
        ],
        csm_hours_per_month: 120.0,
    }
}

/// The playbooks, in JSON; `{hook}` is the webhook receiver's URL.
pub(super) fn playbooks(hook: &str) -> Vec<String> {
    vec![
        format!(
            r#"{{
  "name": "turned-red", "title": "Health turned red: find out why",
  "trigger": {{"type": "health_band_changed", "to": "red"}},
  "steps": [
    {{"id": "review", "type": "task", "title": "Review {{{{account.name}}}}: health is red", "assignee": "owner", "due_in_days": 3, "next": "alert"}},
    {{"id": "alert", "type": "webhook", "url": "{hook}/red", "next": "done"}},
    {{"id": "done", "type": "end"}}
  ]
}}"#
        ),
        format!(
            r#"{{
  "name": "renewal-at-risk", "title": "Renewal in 90 days: save it if at risk",
  "trigger": {{"type": "renewal_approaching", "days": 90}},
  "steps": [
    {{"id": "check", "type": "branch", "condition": {{"band": "green"}}, "then": "done", "else": "plan"}},
    {{"id": "plan", "type": "task", "title": "Save plan for {{{{account.name}}}}'s renewal", "assignee": "owner", "due_in_days": 7, "priority": "high", "next": "notify"}},
    {{"id": "notify", "type": "webhook", "url": "{hook}/renewal-at-risk", "next": "done"}},
    {{"id": "done", "type": "end"}}
  ]
}}"#
        ),
        r#"{
  "name": "advocates", "title": "Advocate found: ask for a reference",
  "trigger": {"type": "health_band_changed", "to": "green"},
  "steps": [
    {"id": "ask", "type": "task", "title": "Ask {{account.name}} for a reference", "assignee": "owner", "due_in_days": 14, "next": "done"},
    {"id": "done", "type": "end"}
  ]
}"#
        .to_owned(),
    ]
}

/// Three companies about to sign: a small one on a monthly plan, a
/// mid-market one on an annual plan, an enterprise one.
pub(super) fn prospects() -> Vec<hpb::Prospect> {
    let prospect =
        |id: &str, segment: &str, industry: &str, seats: i32, dollars: i64, months: i32| {
            hpb::Prospect {
                prospect_id: id.into(),
                segment: segment.into(),
                industry: industry.into(),
                seats,
                arr: Some(tenure_proto::common::v1::Money {
                    currency_code: "USD".into(),
                    amount_minor: dollars * 100,
                }),
                term_months: months,
                number_attributes: [("employees".to_owned(), f64::from(seats) * 10.0)].into(),
                category_attributes: [(
                    "billing".to_owned(),
                    if months == 1 { "monthly" } else { "annual" }.to_owned(),
                )]
                .into(),
            }
        };
    vec![
        prospect(
            "Nova Retail (5 seats, monthly)",
            "tech-touch",
            "retail",
            5,
            4_800,
            1,
        ),
        prospect(
            "Cedar Health (20 seats, annual)",
            "mid-market",
            "healthcare",
            20,
            36_000,
            12,
        ),
        prospect(
            "Granite Capital (60 seats, annual)",
            "enterprise",
            "finance",
            60,
            240_000,
            12,
        ),
    ]
}
