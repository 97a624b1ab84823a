//! How an opportunity reads on a given day: decided or open, its renewal
//! probability and where it came from, its category and expected ARR.

use chrono::{Days, NaiveDate};
use tenure_platform::time;
use tenure_proto::common::v1::Money;
use tenure_proto::renewals::v1 as pb;

use crate::contracts::GRACE_DAYS;
use crate::forecast::{Calibration, Category, Line, Rates, Source};
use crate::pipeline::{LOST, OPEN, OpportunityRow, RENEWED};

/// What probabilities are judged by.
#[derive(Clone, Debug)]
pub struct Context {
    pub as_of: NaiveDate,
    /// True when `as_of` is today or later: the subscription's own state is
    /// known; for a past day only what was decided by then counts.
    pub current: bool,
    pub rates: Rates,
    pub calibration: Calibration,
    /// Whether health's model probabilities may be used (not for a past day:
    /// the model then saw later data).
    pub use_model: bool,
    /// The typical length in days of the renewals the model learned from.
    pub model_term_days: Option<f64>,
}

/// A model's churn probability `p` for a renewal of `model_days`, carried
/// to a term of `term_days` as if churn were spread evenly over time:
/// 1 − (1 − p)^(term / model). A monthly term of a model that learned from
/// yearly renewals churns about a twelfth as often.
pub fn churn_for_term(p: f64, term_days: i64, model_days: Option<f64>) -> f64 {
    match model_days {
        Some(model) if model > 0.0 && term_days > 0 => {
            1.0 - (1.0 - p.clamp(0.0, 1.0)).powf(term_days as f64 / model)
        }
        _ => p,
    }
}

/// An opportunity resolved for a day.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub line: Line,
    pub source: Source,
    pub state: i16,
    /// Lost by the lapsed rule (see [`crate::contracts::GRACE_DAYS`]).
    pub lapsed: bool,
}

pub fn resolve(context: &Context, row: &OpportunityRow) -> Resolved {
    let decided = |renewed_arr: i64, state: i16| Resolved {
        line: Line {
            arr_minor: row.arr_minor,
            probability: if state == LOST { 0.0 } else { 1.0 },
            category: if state == LOST {
                Category::Lost
            } else {
                Category::Commit
            },
            decided_arr_minor: Some(renewed_arr),
        },
        source: Source::Decided,
        state,
        lapsed: false,
    };
    let outcome = row
        .outcome_kind
        .filter(|_| row.outcome_decided_on.is_some_and(|d| d <= context.as_of));
    if let Some(kind) = outcome {
        let state = if kind == 3 { LOST } else { RENEWED };
        return decided(row.outcome_new_arr_minor.unwrap_or(0), state);
    }
    if row.state != OPEN && (context.current || row.term_end <= context.as_of) {
        return match row.state {
            RENEWED => decided(row.next_arr_minor.unwrap_or(row.arr_minor), RENEWED),
            _ => decided(0, LOST),
        };
    }
    // One rule with the contract renewal rate: a term still open a grace
    // period after its end, with no later term, cancellation or outcome,
    // has lapsed and is lost.
    if row.state == OPEN && row.term_end + Days::new(u64::from(GRACE_DAYS)) <= context.as_of {
        return Resolved {
            lapsed: true,
            ..decided(0, LOST)
        };
    }
    let (probability, source) = match row.churn_probability {
        Some(churn) if context.use_model => {
            let days = (row.term_end - row.term_start).num_days();
            let churn = churn_for_term(churn, days, context.model_term_days);
            (context.calibration.apply(1.0 - churn), Source::Model)
        }
        _ => context
            .rates
            .for_segment(row.segment.as_deref().unwrap_or("")),
    };
    Resolved {
        line: Line {
            arr_minor: row.arr_minor,
            probability,
            category: Category::of(probability, false),
            decided_arr_minor: None,
        },
        source,
        state: OPEN,
        lapsed: false,
    }
}

pub fn money(currency: &str, minor: i64) -> Money {
    Money {
        currency_code: currency.to_owned(),
        amount_minor: minor,
    }
}

/// The opportunity as the API shows it; takes the row, whose strings move
/// into the message.
pub fn to_proto(
    context: &Context,
    row: OpportunityRow,
    resolved: &Resolved,
) -> pb::RenewalOpportunity {
    let band = row
        .health_band
        .as_deref()
        .and_then(tenure_proto::common::v1::Band::from_word)
        .map_or(0, |band| band as i32);
    pb::RenewalOpportunity {
        term_end_date: Some(time::to_date(row.term_end)),
        expected_arr: Some(money(&row.currency, resolved.line.expected_minor())),
        days_to_renewal: (row.term_end - context.as_of).num_days() as i32,
        arr: Some(Money {
            currency_code: row.currency,
            amount_minor: row.arr_minor,
        }),
        subscription_id: row.subscription_id,
        account_id: row.account_id,
        account_name: row.account_name.unwrap_or_default(),
        segment: row.segment.unwrap_or_default(),
        owner: row.owner.unwrap_or_default(),
        health_score: row.health_score.unwrap_or_default(),
        health_band: row.health_band.unwrap_or_default(),
        renewal_probability: resolved.line.probability,
        probability_source: resolved.source as i32,
        category: resolved.line.category as i32,
        state: i32::from(resolved.state),
        outcome_kind: row.outcome_kind.map_or(0, i32::from),
        lapsed: resolved.lapsed,
        band,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_yearly_churn_probability_carried_to_shorter_terms() {
        let p = 0.2;
        assert!((churn_for_term(p, 365, Some(365.0)) - p).abs() < 1e-12);
        let monthly = churn_for_term(p, 30, Some(365.0));
        assert!((monthly - (1.0 - 0.8_f64.powf(30.0 / 365.0))).abs() < 1e-12);
        assert!(monthly < 0.02, "{monthly}");
        // Twelve monthly renewals compound back to the year's churn.
        let kept_a_year = (1.0 - churn_for_term(p, 365, Some(365.0 * 12.0))).powi(12);
        assert!((kept_a_year - 0.8).abs() < 1e-12);
        assert_eq!(churn_for_term(p, 30, None), p, "no outcomes: as given");
    }
}
