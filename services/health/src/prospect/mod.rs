//! Prospect fit: learning from past customers' first terms, and judging
//! prospects by what was learned ([`fit`], the domain core).
//!
//! Here: what a customer's signals say of it, as firmographics on its first
//! paid day and as leading indicators at the look day. The training job
//! that gathers them is [`crate::training::prospect`].

pub mod fit;

use std::collections::BTreeMap;

use tenure_proto::ingestion::v1::AccountSignals;
use tenure_proto::ingestion::v1::attribute_value::Value;
use tenure_proto::renewals::v1::FirstTerm;

use crate::signals;
use fit::Firmographics;

/// Signals that describe the contract or the company rather than how the
/// customer is doing: not leading indicators.
const NOT_INDICATORS: &[&str] = &["seats_purchased", "days_to_renewal", "arr_growth_pct"];

/// The leading indicators among an account's signals.
pub fn indicators(signals: &AccountSignals) -> BTreeMap<String, f64> {
    let mut values = signals::values(signals);
    values.retain(|name, _| {
        !name.starts_with("attributes.") && !NOT_INDICATORS.contains(&name.as_str())
    });
    values
}

/// What was known of a customer when it signed: its signals on its first
/// paid day and the plan it bought.
pub(crate) fn firmographics(signals: &AccountSignals, term: &FirstTerm) -> Firmographics {
    let mut known = Firmographics {
        segment: signals.segment.clone(),
        industry: signals.industry.clone(),
        seats: f64::from(signals.seats_purchased),
        arr_minor: term
            .starting_arr
            .as_ref()
            .map_or(0.0, |m| m.amount_minor as f64),
        term_months: f64::from(term.term_months),
        ..Firmographics::default()
    };
    for (name, attribute) in &signals.attributes {
        match &attribute.value {
            Some(Value::Number(n)) => {
                known.numbers.insert(name.clone(), *n);
            }
            Some(Value::Boolean(b)) => {
                known
                    .numbers
                    .insert(name.clone(), if *b { 1.0 } else { 0.0 });
            }
            Some(Value::Category(c)) => {
                known.categories.insert(name.clone(), c.clone());
            }
            _ => {}
        }
    }
    known
}
