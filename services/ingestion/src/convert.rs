//! Proto to domain conversion of every record kind, validating as it parses:
//! each problem is recorded as a field violation under the item's path
//! (`tickets[3].opened_at`), and an item with any problem yields `None`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tenure_platform::{Violations, money, time};
use tenure_proto::common::v1::Money;
use tenure_proto::ingestion::v1 as pb;

use crate::kinds::*;

pub const MAX_ID: usize = 128;
pub const MAX_NAME: usize = 512;
pub const MAX_LABEL: usize = 128;
pub const MAX_TEXT: usize = 10_000;
const MAX_ATTRIBUTES: usize = 200;

/// A typed custom attribute.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum Attribute {
    Number(f64),
    Boolean(bool),
    Category(String),
    Date(NaiveDate),
}

pub type Attributes = BTreeMap<String, Attribute>;

/// What validation needs to know.
pub struct Checker<'a> {
    pub violations: &'a mut Violations,
    pub future_tolerance: Duration,
    /// Largest JSON encoding of free properties, in bytes.
    pub max_properties: usize,
}

impl Checker<'_> {
    fn id(&mut self, value: &str, field: String) {
        self.violations.require_text(value, field, MAX_ID);
    }

    fn updated_at(
        &mut self,
        value: Option<&prost_types::Timestamp>,
        path: &str,
    ) -> Option<DateTime<Utc>> {
        self.past(value, format!("{path}.updated_at"))
    }

    fn past(
        &mut self,
        value: Option<&prost_types::Timestamp>,
        field: String,
    ) -> Option<DateTime<Utc>> {
        time::past_timestamp(value, &field, self.future_tolerance, self.violations)
    }

    fn date(
        &mut self,
        value: Option<&tenure_proto::common::v1::Date>,
        field: String,
    ) -> Option<NaiveDate> {
        time::date(value, &field, self.violations)
    }

    /// An enum value that must be set and known.
    fn known<T>(&mut self, converted: Option<T>, field: String) -> Option<T> {
        if converted.is_none() {
            self.violations.add(field, "must be set to a known value");
        }
        converted
    }

    pub fn attributes(
        &mut self,
        attributes: &BTreeMap<String, pb::AttributeValue>,
        path: &str,
    ) -> Attributes {
        if attributes.len() > MAX_ATTRIBUTES {
            self.violations.add(
                format!("{path}.attributes"),
                format!("must hold at most {MAX_ATTRIBUTES} attributes"),
            );
        }
        let mut out = Attributes::new();
        for (name, value) in attributes {
            let field = format!("{path}.attributes[{name}]");
            let valid_name = (1..=64).contains(&name.len())
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
                && name.as_bytes()[0].is_ascii_lowercase();
            if !valid_name {
                self.violations.add(
                    field,
                    "names must be lower_snake_case, at most 64 characters",
                );
                continue;
            }
            use pb::attribute_value::Value;
            let attribute = match &value.value {
                Some(Value::Number(n)) if n.is_finite() => Some(Attribute::Number(*n)),
                Some(Value::Number(_)) => {
                    self.violations.add(field, "must be a finite number");
                    None
                }
                Some(Value::Boolean(b)) => Some(Attribute::Boolean(*b)),
                Some(Value::Category(c)) => {
                    self.violations.require_text(c, field, MAX_LABEL);
                    Some(Attribute::Category(c.clone()))
                }
                Some(Value::Date(d)) => self.date(Some(d), field).map(Attribute::Date),
                None => {
                    self.violations.add(field, "must have a value");
                    None
                }
            };
            if let Some(attribute) = attribute {
                out.insert(name.clone(), attribute);
            }
        }
        out
    }
}

/// Runs `check` and keeps its result only when it added no violation.
fn clean<T>(
    checker: &mut Checker<'_>,
    check: impl FnOnce(&mut Checker<'_>) -> Option<T>,
) -> Option<T> {
    let before = checker.violations.len();
    let value = check(checker);
    if checker.violations.len() > before {
        None
    } else {
        value
    }
}

pub fn attribute_to_proto(attribute: &Attribute) -> pb::AttributeValue {
    use pb::attribute_value::Value;
    let value = match attribute {
        Attribute::Number(n) => Value::Number(*n),
        Attribute::Boolean(b) => Value::Boolean(*b),
        Attribute::Category(c) => Value::Category(c.clone()),
        Attribute::Date(d) => Value::Date(time::to_date(*d)),
    };
    pb::AttributeValue { value: Some(value) }
}

pub fn contact(c: &mut Checker<'_>, item: &pb::Contact, path: &str) -> Option<ContactRecord> {
    clean(c, |c| {
        c.id(&item.contact_id, format!("{path}.contact_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        c.violations
            .require_text(&item.email, format!("{path}.email"), 320);
        c.violations.check(
            item.email.contains('@'),
            format!("{path}.email"),
            "must be an email address",
        );
        c.violations
            .limit_text(&item.name, format!("{path}.name"), MAX_NAME);
        c.violations
            .limit_text(&item.title, format!("{path}.title"), MAX_NAME);
        let mut roles = Vec::new();
        for (i, role) in item.roles.iter().enumerate() {
            let role = match pb::ContactRole::try_from(*role) {
                Ok(pb::ContactRole::EconomicSponsor) => Some(Role::Sponsor),
                Ok(pb::ContactRole::Champion) => Some(Role::Champion),
                Ok(pb::ContactRole::Admin) => Some(Role::Admin),
                Ok(pb::ContactRole::User) => Some(Role::User),
                _ => None,
            };
            if let Some(role) = c.known(role, format!("{path}.roles[{i}]")) {
                roles.push(role);
            }
        }
        roles.sort();
        roles.dedup();
        let updated_at = c.updated_at(item.updated_at.as_ref(), path)?;
        Some(ContactRecord {
            contact_id: item.contact_id.clone(),
            account_id: item.account_id.clone(),
            email: item.email.trim().to_lowercase(),
            name: item.name.clone(),
            title: item.title.clone(),
            roles,
            active: item.active,
            updated_at,
        })
    })
}

pub fn subscription(
    c: &mut Checker<'_>,
    item: &pb::Subscription,
    path: &str,
) -> Option<SubscriptionRecord> {
    clean(c, |c| {
        c.id(&item.subscription_id, format!("{path}.subscription_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        let status = match pb::SubscriptionStatus::try_from(item.status) {
            Ok(pb::SubscriptionStatus::Trial) => Some(SubscriptionStatus::Trial),
            Ok(pb::SubscriptionStatus::Active) => Some(SubscriptionStatus::Active),
            Ok(pb::SubscriptionStatus::Canceled) => Some(SubscriptionStatus::Canceled),
            Ok(pb::SubscriptionStatus::Expired) => Some(SubscriptionStatus::Expired),
            _ => None,
        };
        let status = c.known(status, format!("{path}.status"));
        let term_start = c.date(item.term_start.as_ref(), format!("{path}.term_start"));
        let term_end = c.date(item.term_end.as_ref(), format!("{path}.term_end"));
        if let (Some(start), Some(end)) = (term_start, term_end) {
            c.violations.check(
                start < end,
                format!("{path}.term_end"),
                "must be after term_start",
            );
        }
        let arr = money::non_negative(item.arr.as_ref(), &format!("{path}.arr"), c.violations);
        c.violations.check(
            item.seats >= 0,
            format!("{path}.seats"),
            "must not be negative",
        );
        let mut line_items = Vec::with_capacity(item.line_items.len());
        for (i, line) in item.line_items.iter().enumerate() {
            let line_path = format!("{path}.line_items[{i}]");
            c.violations
                .require_text(&line.product, format!("{line_path}.product"), MAX_LABEL);
            c.violations
                .limit_text(&line.plan, format!("{line_path}.plan"), MAX_LABEL);
            c.violations.check(
                line.quantity >= 0,
                format!("{line_path}.quantity"),
                "must not be negative",
            );
            let line_arr =
                money::non_negative(line.arr.as_ref(), &format!("{line_path}.arr"), c.violations);
            if let (Some(line_arr), Some(arr)) = (line_arr, arr) {
                c.violations.check(
                    line_arr.currency == arr.currency,
                    format!("{line_path}.arr.currency_code"),
                    "must match the subscription's currency",
                );
            }
            line_items.push(LineItemRecord {
                product: line.product.clone(),
                plan: line.plan.clone(),
                quantity: line.quantity,
                arr_minor: line_arr.map_or(0, |a| a.minor),
            });
        }
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        let arr = arr?;
        Some(SubscriptionRecord {
            subscription_id: item.subscription_id.clone(),
            account_id: item.account_id.clone(),
            status: status?,
            term_start: term_start?,
            term_end: term_end?,
            currency: arr.currency_code().to_owned(),
            arr_minor: arr.minor,
            seats: item.seats,
            auto_renew: item.auto_renew,
            line_items,
            updated_at: updated_at?,
        })
    })
}

/// A stored contact as the API shows it.
pub fn contact_to_proto(record: ContactRecord) -> pb::Contact {
    let roles = record
        .roles
        .iter()
        .map(|role| match role {
            Role::Sponsor => pb::ContactRole::EconomicSponsor,
            Role::Champion => pb::ContactRole::Champion,
            Role::Admin => pb::ContactRole::Admin,
            Role::User => pb::ContactRole::User,
        } as i32)
        .collect();
    pb::Contact {
        contact_id: record.contact_id,
        account_id: record.account_id,
        email: record.email,
        name: record.name,
        title: record.title,
        roles,
        active: record.active,
        updated_at: Some(time::to_timestamp(record.updated_at)),
    }
}

/// A stored subscription version as the API shows it.
pub fn subscription_to_proto(record: SubscriptionRecord) -> pb::Subscription {
    let money = |minor| Money {
        currency_code: record.currency.clone(),
        amount_minor: minor,
    };
    let status = match record.status {
        SubscriptionStatus::Trial => pb::SubscriptionStatus::Trial,
        SubscriptionStatus::Active => pb::SubscriptionStatus::Active,
        SubscriptionStatus::Canceled => pb::SubscriptionStatus::Canceled,
        SubscriptionStatus::Expired => pb::SubscriptionStatus::Expired,
    };
    pb::Subscription {
        subscription_id: record.subscription_id.clone(),
        account_id: record.account_id.clone(),
        status: status as i32,
        term_start: Some(time::to_date(record.term_start)),
        term_end: Some(time::to_date(record.term_end)),
        arr: Some(money(record.arr_minor)),
        seats: record.seats,
        auto_renew: record.auto_renew,
        line_items: record
            .line_items
            .iter()
            .map(|line| pb::LineItem {
                product: line.product.clone(),
                plan: line.plan.clone(),
                quantity: line.quantity,
                arr: Some(money(line.arr_minor)),
            })
            .collect(),
        updated_at: Some(time::to_timestamp(record.updated_at)),
    }
}

pub fn feature(c: &mut Checker<'_>, item: &pb::Feature, path: &str) -> Option<FeatureRecord> {
    clean(c, |c| {
        c.violations.require_text(
            &item.feature_name,
            format!("{path}.feature_name"),
            MAX_LABEL,
        );
        c.violations
            .limit_text(&item.display_name, format!("{path}.display_name"), MAX_NAME);
        let tier = match pb::FeatureTier::try_from(item.tier) {
            Ok(pb::FeatureTier::Basic) => Some(FeatureTier::Basic),
            Ok(pb::FeatureTier::Advanced) => Some(FeatureTier::Advanced),
            _ => None,
        };
        let tier = c.known(tier, format!("{path}.tier"));
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        Some(FeatureRecord {
            feature_name: item.feature_name.clone(),
            display_name: item.display_name.clone(),
            tier: tier?,
            updated_at: updated_at?,
        })
    })
}

pub fn ticket(c: &mut Checker<'_>, item: &pb::Ticket, path: &str) -> Option<TicketRecord> {
    clean(c, |c| {
        c.id(&item.ticket_id, format!("{path}.ticket_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        let opened_at = c.past(item.opened_at.as_ref(), format!("{path}.opened_at"));
        let closed_at = match &item.closed_at {
            Some(t) => c.past(Some(t), format!("{path}.closed_at")),
            None => None,
        };
        if let (Some(opened), Some(closed)) = (opened_at, closed_at) {
            c.violations.check(
                closed >= opened,
                format!("{path}.closed_at"),
                "must not be before opened_at",
            );
        }
        let priority = match pb::TicketPriority::try_from(item.priority) {
            Ok(pb::TicketPriority::Unspecified) | Err(_) => None,
            Ok(p) => Some(p as u8),
        };
        let priority = c.known(priority, format!("{path}.priority"));
        let category = match pb::TicketCategory::try_from(item.category) {
            Ok(pb::TicketCategory::Defect) => Some(TicketCategory::Defect),
            Ok(pb::TicketCategory::HowTo) => Some(TicketCategory::HowTo),
            Ok(pb::TicketCategory::FeatureRequest) => Some(TicketCategory::FeatureRequest),
            Ok(pb::TicketCategory::Billing) => Some(TicketCategory::Billing),
            Ok(pb::TicketCategory::Other) => Some(TicketCategory::Other),
            _ => None,
        };
        let category = c.known(category, format!("{path}.category"));
        let status = match pb::TicketStatus::try_from(item.status) {
            Ok(pb::TicketStatus::Open) => Some(TicketStatus::Open),
            Ok(pb::TicketStatus::Pending) => Some(TicketStatus::Pending),
            Ok(pb::TicketStatus::Solved) => Some(TicketStatus::Solved),
            Ok(pb::TicketStatus::Closed) => Some(TicketStatus::Closed),
            _ => None,
        };
        let status = c.known(status, format!("{path}.status"));
        c.violations.check(
            (0..=5).contains(&item.csat),
            format!("{path}.csat"),
            "must be 1-5, or 0 when not rated",
        );
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        Some(TicketRecord {
            ticket_id: item.ticket_id.clone(),
            account_id: item.account_id.clone(),
            opened_at: opened_at?,
            closed_at,
            priority: priority?,
            category: category?,
            status: status?,
            csat: (item.csat > 0).then_some(item.csat as u8),
            updated_at: updated_at?,
        })
    })
}

pub fn survey(c: &mut Checker<'_>, item: &pb::SurveyResponse, path: &str) -> Option<SurveyRecord> {
    clean(c, |c| {
        c.id(&item.response_id, format!("{path}.response_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        c.violations
            .limit_text(&item.contact_id, format!("{path}.contact_id"), MAX_ID);
        c.violations
            .limit_text(&item.comment, format!("{path}.comment"), MAX_TEXT);
        let kind = match pb::SurveyKind::try_from(item.kind) {
            Ok(pb::SurveyKind::Nps) => Some(SurveyKind::Nps),
            Ok(pb::SurveyKind::Csat) => Some(SurveyKind::Csat),
            _ => None,
        };
        let kind = c.known(kind, format!("{path}.kind"));
        match kind {
            Some(SurveyKind::Nps) => c.violations.check(
                (0..=10).contains(&item.score),
                format!("{path}.score"),
                "NPS scores are 0-10",
            ),
            Some(SurveyKind::Csat) => c.violations.check(
                (1..=5).contains(&item.score),
                format!("{path}.score"),
                "CSAT scores are 1-5",
            ),
            None => {}
        }
        let responded_at = c.past(item.responded_at.as_ref(), format!("{path}.responded_at"));
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        Some(SurveyRecord {
            response_id: item.response_id.clone(),
            account_id: item.account_id.clone(),
            contact_id: item.contact_id.clone(),
            kind: kind?,
            score: item.score,
            comment: item.comment.clone(),
            responded_at: responded_at?,
            updated_at: updated_at?,
        })
    })
}

pub fn invoice(c: &mut Checker<'_>, item: &pb::Invoice, path: &str) -> Option<InvoiceRecord> {
    clean(c, |c| {
        c.id(&item.invoice_id, format!("{path}.invoice_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        let amount = money::non_negative(
            item.amount.as_ref(),
            &format!("{path}.amount"),
            c.violations,
        );
        let issued_on = c.date(item.issued_on.as_ref(), format!("{path}.issued_on"));
        let due_on = c.date(item.due_on.as_ref(), format!("{path}.due_on"));
        let paid_on = match &item.paid_on {
            Some(d) => c.date(Some(d), format!("{path}.paid_on")),
            None => None,
        };
        if let (Some(issued), Some(due)) = (issued_on, due_on) {
            c.violations.check(
                due >= issued,
                format!("{path}.due_on"),
                "must not be before issued_on",
            );
        }
        let status = match pb::InvoiceStatus::try_from(item.status) {
            Ok(pb::InvoiceStatus::Open) => Some(InvoiceStatus::Open),
            Ok(pb::InvoiceStatus::Paid) => Some(InvoiceStatus::Paid),
            Ok(pb::InvoiceStatus::Void) => Some(InvoiceStatus::Void),
            Ok(pb::InvoiceStatus::Uncollectible) => Some(InvoiceStatus::Uncollectible),
            _ => None,
        };
        let status = c.known(status, format!("{path}.status"));
        if status == Some(InvoiceStatus::Paid) {
            c.violations.check(
                paid_on.is_some(),
                format!("{path}.paid_on"),
                "is required for a paid invoice",
            );
        }
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        let amount = amount?;
        Some(InvoiceRecord {
            invoice_id: item.invoice_id.clone(),
            account_id: item.account_id.clone(),
            currency: amount.currency_code().to_owned(),
            amount_minor: amount.minor,
            issued_on: issued_on?,
            due_on: due_on?,
            paid_on,
            status: status?,
            updated_at: updated_at?,
        })
    })
}

pub fn external_signal(
    c: &mut Checker<'_>,
    item: &pb::ExternalSignal,
    path: &str,
) -> Option<SignalRecord> {
    clean(c, |c| {
        c.id(&item.signal_id, format!("{path}.signal_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        c.violations
            .limit_text(&item.source, format!("{path}.source"), MAX_LABEL);
        let kind = match pb::ExternalSignalKind::try_from(item.kind) {
            Ok(pb::ExternalSignalKind::FundingRound) => Some(SignalKind::FundingRound),
            Ok(pb::ExternalSignalKind::Acquisition) => Some(SignalKind::Acquisition),
            Ok(pb::ExternalSignalKind::Layoffs) => Some(SignalKind::Layoffs),
            Ok(pb::ExternalSignalKind::KeyPersonChange) => Some(SignalKind::KeyPersonChange),
            Ok(pb::ExternalSignalKind::CompetitorEngagement) => {
                Some(SignalKind::CompetitorEngagement)
            }
            Ok(pb::ExternalSignalKind::Other) => Some(SignalKind::Other),
            _ => None,
        };
        let kind = c.known(kind, format!("{path}.kind"));
        let occurred_at = c.past(item.occurred_at.as_ref(), format!("{path}.occurred_at"));
        let properties = properties(c, item.properties.as_ref(), &format!("{path}.properties"));
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        Some(SignalRecord {
            signal_id: item.signal_id.clone(),
            account_id: item.account_id.clone(),
            kind: kind?,
            occurred_at: occurred_at?,
            source: item.source.clone(),
            properties,
            updated_at: updated_at?,
        })
    })
}

pub fn success_metric(
    c: &mut Checker<'_>,
    item: &pb::SuccessMetric,
    path: &str,
) -> Option<MetricRecord> {
    clean(c, |c| {
        c.id(&item.metric_id, format!("{path}.metric_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        c.violations
            .require_text(&item.name, format!("{path}.name"), MAX_NAME);
        c.violations
            .limit_text(&item.unit, format!("{path}.unit"), MAX_LABEL);
        c.violations.check(
            item.baseline.is_finite(),
            format!("{path}.baseline"),
            "must be a finite number",
        );
        c.violations.check(
            item.target.is_finite(),
            format!("{path}.target"),
            "must be a finite number",
        );
        c.violations.check(
            item.target != item.baseline,
            format!("{path}.target"),
            "must differ from baseline",
        );
        let direction = match pb::MetricDirection::try_from(item.direction) {
            Ok(pb::MetricDirection::HigherIsBetter) => Some(Direction::HigherIsBetter),
            Ok(pb::MetricDirection::LowerIsBetter) => Some(Direction::LowerIsBetter),
            _ => None,
        };
        let direction = c.known(direction, format!("{path}.direction"));
        if let Some(direction) = direction {
            let agrees = match direction {
                Direction::HigherIsBetter => item.target > item.baseline,
                Direction::LowerIsBetter => item.target < item.baseline,
            };
            c.violations.check(
                agrees,
                format!("{path}.target"),
                "must lie in the metric's better direction from baseline",
            );
        }
        let mut values = Vec::with_capacity(item.values.len());
        for (i, value) in item.values.iter().enumerate() {
            let day = c.date(
                value.measured_on.as_ref(),
                format!("{path}.values[{i}].measured_on"),
            );
            c.violations.check(
                value.value.is_finite(),
                format!("{path}.values[{i}].value"),
                "must be a finite number",
            );
            if let Some(day) = day {
                values.push((day, value.value));
            }
        }
        values.sort_by_key(|(day, _)| *day);
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        Some(MetricRecord {
            metric_id: item.metric_id.clone(),
            account_id: item.account_id.clone(),
            name: item.name.clone(),
            unit: item.unit.clone(),
            baseline: item.baseline,
            target: item.target,
            direction: direction?,
            values,
            updated_at: updated_at?,
        })
    })
}

/// Converts free properties to JSON, enforcing the size cap.
pub fn properties(
    c: &mut Checker<'_>,
    value: Option<&prost_types::Struct>,
    field: &str,
) -> serde_json::Value {
    let max_bytes = c.max_properties;
    let json = value.map(struct_to_json).unwrap_or(serde_json::Value::Null);
    let size = serde_json::to_vec(&json)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > max_bytes {
        c.violations.add(
            field,
            format!("must encode to at most {max_bytes} bytes of JSON"),
        );
    }
    json
}

pub fn struct_to_json(value: &prost_types::Struct) -> serde_json::Value {
    serde_json::Value::Object(
        value
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), value_to_json(v)))
            .collect(),
    )
}

fn value_to_json(value: &prost_types::Value) -> serde_json::Value {
    use prost_types::value::Kind;
    match &value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::NumberValue(n)) => serde_json::Number::from_f64(*n)
            .map_or(serde_json::Value::Null, serde_json::Value::Number),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(list)) => {
            serde_json::Value::Array(list.values.iter().map(value_to_json).collect())
        }
    }
}
