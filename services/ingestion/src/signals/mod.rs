//! Account signals: the features health scoring and forecasting use,
//! computed from the data as it stood at the end of a given day, with
//! nothing from after it. [`load`] reads the inputs of one account or of a
//! batch (one query per source for the whole batch); [`compute`] is pure.

mod load;

pub use load::{Reading, load, load_at, load_many, load_many_reading, usage_at};

use std::collections::BTreeMap;

use chrono::{DateTime, Days, NaiveDate, NaiveTime, Utc};
use sqlx::PgPool;
use tenure_platform::time::to_date;
use tenure_proto::common::v1::Money;
use tenure_proto::ingestion::v1::AccountSignals;

use crate::convert::{Attributes, attribute_to_proto};
use crate::kinds::*;
use crate::records;
use crate::stats::median;

/// Usage figures from the daily rollups.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Usage {
    pub active_users_7d: i64,
    pub active_users_30d: i64,
    pub events_30d: i64,
    pub events_prior_30d: i64,
    pub last_active_day: Option<NaiveDate>,
    pub features_used_30d: Vec<String>,
}

/// Everything the signals of one account are computed from.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub account_id: String,
    /// The day whose end the inputs stood at.
    pub as_of: NaiveDate,
    pub segment: String,
    pub industry: String,
    pub owner: String,
    pub parent_account_id: String,
    pub attributes: Attributes,
    pub subscriptions: Vec<SubscriptionRecord>,
    pub subscriptions_year_before: Vec<SubscriptionRecord>,
    pub tickets: Vec<TicketRecord>,
    pub surveys: Vec<SurveyRecord>,
    pub invoices: Vec<InvoiceRecord>,
    pub contacts: Vec<ContactRecord>,
    pub external_signals: Vec<SignalRecord>,
    pub metrics: Vec<MetricRecord>,
    pub features: Vec<FeatureRecord>,
    /// Sponsor and champion changes in the 90 days up to the cutoff.
    pub relationship_changes_90d: Vec<(Role, String)>,
    pub usage: Usage,
    /// Success plans started by the day.
    pub plans: Vec<PlanRecord>,
    /// Usage on the days the plans' usage objectives need to be judged
    /// (`plans::status_days`), the day itself included.
    pub plan_usage: BTreeMap<NaiveDate, Usage>,
}

impl Usage {
    /// A success-plan objective's usage measure.
    pub fn measure(&self, measure: UsageMeasure) -> f64 {
        match measure {
            UsageMeasure::ActiveUsers30d => self.active_users_30d as f64,
            UsageMeasure::Events30d => self.events_30d as f64,
        }
    }
}

/// The first instant after `as_of`: data at or after it is excluded.
pub fn cutoff(as_of: NaiveDate) -> DateTime<Utc> {
    (as_of + Days::new(1)).and_time(NaiveTime::MIN).and_utc()
}

fn arr_on(subscriptions: &[SubscriptionRecord], day: NaiveDate) -> Option<(String, i64)> {
    let live: Vec<&SubscriptionRecord> = subscriptions
        .iter()
        .filter(|s| s.in_force_on(day))
        .collect();
    let currency = live.first()?.currency.clone();
    let total = live
        .iter()
        .filter(|s| s.currency == currency)
        .map(|s| s.arr_minor)
        .sum();
    Some((currency, total))
}

fn percent_change(now: f64, before: f64) -> Option<f64> {
    (before > 0.0).then(|| (now - before) / before * 100.0)
}

/// The share of the success plans' objectives met or on track on `as_of`.
fn plans_on_track(inputs: &Inputs, as_of: NaiveDate) -> Option<f64> {
    let usage_at = |measure, day| inputs.plan_usage.get(&day).map(|u| u.measure(measure));
    let outcomes: Vec<crate::plans::Outcome> = inputs
        .plans
        .iter()
        .flat_map(|plan| crate::plans::progress(plan, as_of, &inputs.metrics, &usage_at))
        .collect();
    crate::plans::shares(&outcomes).0
}

/// Computes the signals at the end of `as_of` from `inputs` (already limited
/// to what was known then).
pub fn compute(inputs: &Inputs, as_of: NaiveDate) -> AccountSignals {
    let end = cutoff(as_of);
    let window_start = end - chrono::Duration::days(90);
    let live: Vec<&SubscriptionRecord> = inputs
        .subscriptions
        .iter()
        .filter(|s| s.in_force_on(as_of))
        .collect();
    let seats: i64 = live.iter().map(|s| i64::from(s.seats)).sum();
    let arr = arr_on(&inputs.subscriptions, as_of);
    let arr_before = as_of
        .checked_sub_days(Days::new(365))
        .and_then(|d| arr_on(&inputs.subscriptions_year_before, d));
    let arr_growth_pct = match (&arr, &arr_before) {
        (Some((c1, now)), Some((c2, before))) if c1 == c2 => {
            percent_change(*now as f64, *before as f64)
        }
        _ => None,
    };

    let usage = &inputs.usage;
    let tier_of: BTreeMap<&str, FeatureTier> = inputs
        .features
        .iter()
        .map(|f| (f.feature_name.as_str(), f.tier))
        .collect();
    let used_of = |tier| {
        usage
            .features_used_30d
            .iter()
            .filter(|f| tier_of.get(f.as_str()) == Some(&tier))
            .count() as i32
    };

    let mut open = [0i32; 4];
    for ticket in inputs.tickets.iter().filter(|t| t.open_at(end)) {
        if let Some(slot) = open.get_mut(usize::from(ticket.priority.saturating_sub(1))) {
            *slot += 1;
        }
    }
    let recent: Vec<&TicketRecord> = inputs
        .tickets
        .iter()
        .filter(|t| t.opened_at >= window_start && t.opened_at < end)
        .collect();
    let defects = recent
        .iter()
        .filter(|t| t.category == TicketCategory::Defect)
        .count();
    let defect_share_pct =
        (!recent.is_empty()).then(|| defects as f64 / recent.len() as f64 * 100.0);
    let mut resolution_hours: Vec<f64> = inputs
        .tickets
        .iter()
        .filter_map(|t| {
            let closed = t.closed_at?;
            (closed >= window_start && closed < end)
                .then(|| (closed - t.opened_at).num_seconds() as f64 / 3600.0)
        })
        .collect();

    let mut nps: Vec<&SurveyRecord> = inputs
        .surveys
        .iter()
        .filter(|s| s.kind == SurveyKind::Nps && s.responded_at < end)
        .collect();
    nps.sort_by_key(|s| (s.responded_at, s.response_id.clone()));
    let latest_nps = nps.last().map(|s| s.score);
    let nps_change = match nps.as_slice() {
        [.., before, latest] => Some(latest.score - before.score),
        _ => None,
    };

    let mut overdue: BTreeMap<&str, i64> = BTreeMap::new();
    let mut max_days_overdue = 0;
    for invoice in &inputs.invoices {
        let days = invoice.days_overdue_on(as_of);
        if days > 0 {
            *overdue.entry(invoice.currency.as_str()).or_default() += invoice.amount_minor;
            max_days_overdue = max_days_overdue.max(days);
        }
    }

    let changed = |role| {
        inputs
            .relationship_changes_90d
            .iter()
            .any(|(r, _)| *r == role)
    };
    let attainments: Vec<f64> = inputs
        .metrics
        .iter()
        .filter_map(|m| m.attainment_on(as_of))
        .collect();
    let risk_signals = inputs
        .external_signals
        .iter()
        .filter(|s| s.kind.is_risk() && s.occurred_at >= window_start && s.occurred_at < end)
        .count();

    AccountSignals {
        account_id: inputs.account_id.clone(),
        as_of: Some(to_date(as_of)),
        segment: inputs.segment.clone(),
        industry: inputs.industry.clone(),
        owner: inputs.owner.clone(),
        parent_account_id: inputs.parent_account_id.clone(),
        seats_purchased: seats as i32,
        active_users_7d: usage.active_users_7d as i32,
        active_users_30d: usage.active_users_30d as i32,
        license_utilization_pct: (seats > 0)
            .then(|| usage.active_users_30d as f64 / seats as f64 * 100.0),
        basic_features_used_30d: used_of(FeatureTier::Basic),
        advanced_features_used_30d: used_of(FeatureTier::Advanced),
        usage_trend_pct: percent_change(usage.events_30d as f64, usage.events_prior_30d as f64),
        days_since_last_activity: usage.last_active_day.map(|d| (as_of - d).num_days() as i32),
        open_tickets_p1: open[0],
        open_tickets_p2: open[1],
        open_tickets_p3: open[2],
        open_tickets_p4: open[3],
        defect_share_pct,
        median_resolution_hours: median(&mut resolution_hours),
        latest_nps,
        nps_change,
        overdue_amounts: overdue
            .into_iter()
            .map(|(currency, amount)| Money {
                currency_code: currency.to_owned(),
                amount_minor: amount,
            })
            .collect(),
        max_days_overdue: max_days_overdue as i32,
        sponsor_changed_90d: changed(Role::Sponsor),
        champion_changed_90d: changed(Role::Champion),
        active_champions: inputs
            .contacts
            .iter()
            .filter(|c| c.acts_as(Role::Champion))
            .count() as i32,
        days_to_renewal: live
            .iter()
            .map(|s| (s.term_end - as_of).num_days() as i32)
            .min(),
        days_since_term_start: live
            .iter()
            .map(|s| (as_of - s.term_start).num_days() as i32)
            .min(),
        arr_growth_pct,
        arr: arr.map(|(currency, amount)| Money {
            currency_code: currency,
            amount_minor: amount,
        }),
        success_plan_attainment_pct: (!attainments.is_empty())
            .then(|| attainments.iter().sum::<f64>() / attainments.len() as f64),
        risk_signals_90d: risk_signals as i32,
        success_plan_on_track_pct: plans_on_track(inputs, as_of),
        attributes: inputs
            .attributes
            .iter()
            .map(|(k, v)| (k.clone(), attribute_to_proto(v)))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        day(y, m, d).and_hms_opt(12, 0, 0).unwrap().and_utc()
    }

    fn subscription(seats: i32, arr: i64, start: NaiveDate, end: NaiveDate) -> SubscriptionRecord {
        SubscriptionRecord {
            subscription_id: "s".into(),
            account_id: "a".into(),
            status: SubscriptionStatus::Active,
            term_start: start,
            term_end: end,
            currency: "USD".into(),
            arr_minor: arr,
            seats,
            auto_renew: true,
            line_items: vec![],
            updated_at: at(2026, 1, 1),
        }
    }

    fn ticket(
        id: &str,
        priority: u8,
        category: TicketCategory,
        opened: DateTime<Utc>,
        closed: Option<DateTime<Utc>>,
    ) -> TicketRecord {
        TicketRecord {
            ticket_id: id.into(),
            account_id: "a".into(),
            opened_at: opened,
            closed_at: closed,
            priority,
            category,
            status: TicketStatus::Open,
            csat: None,
            updated_at: opened,
        }
    }

    #[test]
    fn computes_usage_support_and_contract_signals() {
        let as_of = day(2026, 6, 30);
        let inputs = Inputs {
            account_id: "a".into(),
            segment: "enterprise".into(),
            subscriptions: vec![subscription(
                50,
                120_000,
                day(2026, 1, 1),
                day(2026, 12, 31),
            )],
            subscriptions_year_before: vec![subscription(
                40,
                100_000,
                day(2025, 1, 1),
                day(2025, 12, 31),
            )],
            tickets: vec![
                ticket("t1", 1, TicketCategory::Defect, at(2026, 6, 1), None),
                ticket(
                    "t2",
                    2,
                    TicketCategory::HowTo,
                    at(2026, 5, 1),
                    Some(at(2026, 5, 3)),
                ),
                // Closed after the as-of day: still open then.
                ticket(
                    "t3",
                    2,
                    TicketCategory::Defect,
                    at(2026, 6, 20),
                    Some(at(2026, 7, 5)),
                ),
            ],
            features: vec![
                FeatureRecord {
                    feature_name: "reports".into(),
                    display_name: String::new(),
                    tier: FeatureTier::Basic,
                    updated_at: at(2026, 1, 1),
                },
                FeatureRecord {
                    feature_name: "api".into(),
                    display_name: String::new(),
                    tier: FeatureTier::Advanced,
                    updated_at: at(2026, 1, 1),
                },
            ],
            usage: Usage {
                active_users_7d: 10,
                active_users_30d: 20,
                events_30d: 150,
                events_prior_30d: 200,
                last_active_day: Some(day(2026, 6, 27)),
                features_used_30d: vec!["reports".into(), "api".into(), "unknown".into()],
            },
            relationship_changes_90d: vec![(Role::Sponsor, "added".into())],
            ..Default::default()
        };
        let s = compute(&inputs, as_of);
        assert_eq!(s.seats_purchased, 50);
        assert_eq!(s.license_utilization_pct, Some(40.0));
        assert_eq!(
            (s.basic_features_used_30d, s.advanced_features_used_30d),
            (1, 1)
        );
        assert_eq!(s.usage_trend_pct, Some(-25.0));
        assert_eq!(s.days_since_last_activity, Some(3));
        assert_eq!((s.open_tickets_p1, s.open_tickets_p2), (1, 1));
        assert_eq!(s.defect_share_pct.map(f64::round), Some(67.0));
        assert_eq!(s.median_resolution_hours, Some(48.0));
        assert_eq!(s.days_to_renewal, Some(184));
        assert_eq!(s.days_since_term_start, Some(180));
        assert_eq!(s.arr_growth_pct, Some(20.0));
        assert!(s.sponsor_changed_90d && !s.champion_changed_90d);
    }

    #[test]
    fn missing_data_leaves_signals_unset() {
        let s = compute(
            &Inputs {
                account_id: "a".into(),
                ..Default::default()
            },
            day(2026, 6, 30),
        );
        assert_eq!(s.license_utilization_pct, None);
        assert_eq!(s.usage_trend_pct, None);
        assert_eq!(s.latest_nps, None);
        assert_eq!(s.days_to_renewal, None);
        assert!(s.arr.is_none());
    }
}
