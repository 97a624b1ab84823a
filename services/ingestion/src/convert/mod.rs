//! Proto to domain conversion of every record kind, validating as it parses:
//! each problem is recorded as a field violation under the item's path
//! (`tickets[3].opened_at`), and an item with any problem yields `None`.
//!
//! [`people_and_contracts`]: contacts and subscriptions (and back to protos);
//! [`activity`]: features, tickets, surveys, invoices, external signals and
//! success metrics; [`value`]: success plans and advocacy.

mod activity;
mod people_and_contracts;
mod value;

pub use activity::{external_signal, feature, invoice, success_metric, survey, ticket};
pub use people_and_contracts::{contact, contact_to_proto, subscription, subscription_to_proto};
pub use value::{advocacy_activity, success_plan};

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tenure_platform::{Violations, time};
use tenure_proto::ingestion::v1 as pb;

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
    /// How far back a usage event may lie.
    pub max_event_age: Duration,
    /// Largest JSON encoding of free properties, in bytes.
    pub max_properties: usize,
}

impl Checker<'_> {
    fn id(&mut self, value: &str, field: String) {
        self.violations
            .parse::<tenure_platform::input::Id, _>(&field, value);
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
