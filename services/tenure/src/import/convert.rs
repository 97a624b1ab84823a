//! One row to the API message of its kind.

use serde_json::{Map, Value};
use tenure_proto::ingestion::v1 as pb;
use tenure_proto::renewals::v1 as rpb;

use super::Kind;
use super::rows::{Fields, attribute};

/// A row converted to the API's message for its kind.
pub(super) enum Item {
    Account(pb::Account),
    Contact(pb::Contact),
    Subscription(pb::Subscription),
    Feature(pb::Feature),
    Ticket(pb::Ticket),
    Survey(pb::SurveyResponse),
    Invoice(pb::Invoice),
    Signal(pb::ExternalSignal),
    Metric(pb::SuccessMetric),
    Plan(pb::SuccessPlan),
    Advocacy(pb::AdvocacyActivity),
    Event(pb::UsageEvent),
    Outcome(rpb::RenewalOutcome),
}

pub(super) fn convert(kind: Kind, row: &Map<String, Value>) -> Result<Item, String> {
    let f = Fields(row);
    Ok(match kind {
        Kind::Accounts => {
            let mut attributes: std::collections::BTreeMap<String, pb::AttributeValue> = row
                .iter()
                .filter_map(|(k, v)| {
                    k.strip_prefix("attr_")
                        .map(|name| (name.to_owned(), attribute(v)))
                })
                .collect();
            if let Some(Value::Object(map)) = row.get("attributes") {
                attributes.extend(map.iter().map(|(k, v)| (k.clone(), attribute(v))));
            }
            Item::Account(pb::Account {
                account_id: f.text("account_id"),
                name: f.text("name"),
                segment: f.text("segment"),
                industry: f.text("industry"),
                owner: f.text("owner"),
                parent_account_id: f.text("parent_account_id"),
                lifecycle_stage: f.choice("lifecycle_stage", "LIFECYCLE_STAGE", |s| {
                    pb::LifecycleStage::from_str_name(s).map(|e| e as i32)
                })?,
                updated_at: f.time("updated_at")?,
                attributes,
            })
        }
        Kind::Contacts => {
            let roles_text = match row.get("roles") {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
                _ => f
                    .text("roles")
                    .split(';')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| s.trim().to_owned())
                    .collect::<Vec<_>>(),
            };
            let mut roles = Vec::new();
            for role in roles_text {
                let name = match role.to_ascii_lowercase().as_str() {
                    "sponsor" | "economic_sponsor" => "CONTACT_ROLE_ECONOMIC_SPONSOR".to_owned(),
                    other => format!("CONTACT_ROLE_{}", other.to_ascii_uppercase()),
                };
                roles.push(
                    pb::ContactRole::from_str_name(&name)
                        .ok_or_else(|| format!("roles: {role:?} is not a known role"))?
                        as i32,
                );
            }
            Item::Contact(pb::Contact {
                contact_id: f.text("contact_id"),
                account_id: f.text("account_id"),
                email: f.text("email"),
                name: f.text("name"),
                title: f.text("title"),
                roles,
                active: if f.text("active").is_empty() {
                    true
                } else {
                    f.flag("active")?
                },
                updated_at: f.time("updated_at")?,
            })
        }
        Kind::Subscriptions => Item::Subscription(pb::Subscription {
            subscription_id: f.text("subscription_id"),
            account_id: f.text("account_id"),
            status: f.choice("status", "SUBSCRIPTION_STATUS", |s| {
                pb::SubscriptionStatus::from_str_name(s).map(|e| e as i32)
            })?,
            term_start: f.date("term_start")?,
            term_end: f.date("term_end")?,
            arr: f.money("arr")?,
            seats: f.number("seats")?,
            auto_renew: f.flag("auto_renew")?,
            line_items: Vec::new(),
            updated_at: f.time("updated_at")?,
        }),
        Kind::Features => Item::Feature(pb::Feature {
            feature_name: f.text("feature_name"),
            display_name: f.text("display_name"),
            tier: f.choice("tier", "FEATURE_TIER", |s| {
                pb::FeatureTier::from_str_name(s).map(|e| e as i32)
            })?,
            updated_at: f.time("updated_at")?,
        }),
        Kind::Tickets => Item::Ticket(pb::Ticket {
            ticket_id: f.text("ticket_id"),
            account_id: f.text("account_id"),
            opened_at: f.time("opened_at")?,
            closed_at: f.time("closed_at")?,
            priority: f.choice("priority", "TICKET_PRIORITY", |s| {
                pb::TicketPriority::from_str_name(s).map(|e| e as i32)
            })?,
            category: f.choice("category", "TICKET_CATEGORY", |s| {
                pb::TicketCategory::from_str_name(s).map(|e| e as i32)
            })?,
            status: f.choice("status", "TICKET_STATUS", |s| {
                pb::TicketStatus::from_str_name(s).map(|e| e as i32)
            })?,
            csat: f.number("csat")?,
            updated_at: f.time("updated_at")?,
        }),
        Kind::Surveys => Item::Survey(pb::SurveyResponse {
            response_id: f.text("response_id"),
            account_id: f.text("account_id"),
            contact_id: f.text("contact_id"),
            kind: f.choice("kind", "SURVEY_KIND", |s| {
                pb::SurveyKind::from_str_name(s).map(|e| e as i32)
            })?,
            score: f.number("score")?,
            comment: f.text("comment"),
            responded_at: f.time("responded_at")?,
            updated_at: f.time("updated_at")?,
        }),
        Kind::Invoices => Item::Invoice(pb::Invoice {
            invoice_id: f.text("invoice_id"),
            account_id: f.text("account_id"),
            amount: f.money("amount")?,
            issued_on: f.date("issued_on")?,
            due_on: f.date("due_on")?,
            paid_on: f.date("paid_on")?,
            status: f.choice("status", "INVOICE_STATUS", |s| {
                pb::InvoiceStatus::from_str_name(s).map(|e| e as i32)
            })?,
            updated_at: f.time("updated_at")?,
        }),
        Kind::Signals => Item::Signal(pb::ExternalSignal {
            signal_id: f.text("signal_id"),
            account_id: f.text("account_id"),
            kind: f.choice("kind", "EXTERNAL_SIGNAL_KIND", |s| {
                pb::ExternalSignalKind::from_str_name(s).map(|e| e as i32)
            })?,
            occurred_at: f.time("occurred_at")?,
            source: f.text("source"),
            properties: f.properties("properties")?,
            updated_at: f.time("updated_at")?,
        }),
        Kind::Metrics => {
            let values = objects(row, "values", |v| {
                Ok(pb::MetricValue {
                    measured_on: v.date("measured_on")?,
                    value: v.number("value")?,
                })
            })?;
            Item::Metric(pb::SuccessMetric {
                metric_id: f.text("metric_id"),
                account_id: f.text("account_id"),
                name: f.text("name"),
                unit: f.text("unit"),
                baseline: f.number("baseline")?,
                target: f.number("target")?,
                direction: f.choice("direction", "METRIC_DIRECTION", |s| {
                    pb::MetricDirection::from_str_name(s).map(|e| e as i32)
                })?,
                values,
                updated_at: f.time("updated_at")?,
            })
        }
        Kind::Plans => {
            let objectives = objects(row, "objectives", |o| {
                let metric_id = o.text("metric_id");
                let measure = if metric_id.is_empty() {
                    pb::objective::Measure::Usage(o.choice("usage", "USAGE_MEASURE", |s| {
                        pb::UsageMeasure::from_str_name(s).map(|e| e as i32)
                    })?)
                } else {
                    pb::objective::Measure::MetricId(metric_id)
                };
                Ok(pb::Objective {
                    objective_id: o.text("objective_id"),
                    name: o.text("name"),
                    owner: o.text("owner"),
                    measure: Some(measure),
                    target: o.number("target")?,
                    due_on: o.date("due_on")?,
                })
            })?;
            Item::Plan(pb::SuccessPlan {
                plan_id: f.text("plan_id"),
                account_id: f.text("account_id"),
                name: f.text("name"),
                owner: f.text("owner"),
                start_on: f.date("start_on")?,
                objectives,
                updated_at: f.time("updated_at")?,
            })
        }
        Kind::Advocacy => Item::Advocacy(pb::AdvocacyActivity {
            activity_id: f.text("activity_id"),
            account_id: f.text("account_id"),
            kind: f.choice("kind", "ADVOCACY_KIND", |s| {
                pb::AdvocacyKind::from_str_name(s).map(|e| e as i32)
            })?,
            occurred_at: f.time("occurred_at")?,
            contact_id: f.text("contact_id"),
            referred_account_id: f.text("referred_account_id"),
            note: f.text("note"),
            updated_at: f.time("updated_at")?,
        }),
        Kind::Events => Item::Event(pb::UsageEvent {
            message_id: f.text("message_id"),
            account_id: f.text("account_id"),
            user_id: f.text("user_id"),
            event_name: f.text("event_name"),
            occurred_at: f.time("occurred_at")?,
            quantity: f.number("quantity")?,
            properties: f.properties("properties")?,
        }),
        Kind::Outcomes => Item::Outcome(rpb::RenewalOutcome {
            account_id: f.text("account_id"),
            subscription_id: f.text("subscription_id"),
            term_end_date: f.date("term_end_date")?,
            kind: f.choice("kind", "OUTCOME_KIND", |s| {
                rpb::OutcomeKind::from_str_name(s).map(|e| e as i32)
            })?,
            previous_arr: f.money("previous_arr")?,
            new_arr: f.money("new_arr")?,
            churn_reason: f.choice("churn_reason", "CHURN_REASON", |s| {
                rpb::ChurnReason::from_str_name(s).map(|e| e as i32)
            })?,
            churn_note: f.text("churn_note"),
            decided_on: f.date("decided_on")?,
            ..Default::default()
        }),
    })
}

/// Each object of the array `name` of `row` (none when it is absent),
/// converted by `each`.
fn objects<T>(
    row: &Map<String, Value>,
    name: &str,
    each: impl Fn(Fields<'_>) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    let Some(Value::Array(items)) = row.get(name) else {
        return Ok(Vec::new());
    };
    items
        .iter()
        .map(|item| match item {
            Value::Object(map) => each(Fields(map)),
            _ => Err(format!("{name}: entries must be objects")),
        })
        .collect()
}
