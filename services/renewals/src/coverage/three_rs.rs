//! The three R's by segment and service tier: adoption and success of the
//! customers paying on a day (ingestion's account values), and the
//! retention of the year before it, for the customers paying at its start,
//! grouped as they were then.

use std::collections::{BTreeMap, HashMap};

use chrono::{Days, Months};
use tenure_platform::{ApiError, ApiResult, Violations, time};
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::renewals::v1 as pb;

use super::api::version_of;
use super::model::{Customer, Placement, percent};
use crate::forecasts::day_or_today;
use crate::ledger::{Book, Movements, Ratio, before};
use crate::pipeline;
use crate::state::RenewalsApi;

/// What a group of customers adds up to.
#[derive(Default)]
struct Sums {
    accounts: i64,
    seats: i64,
    adopted: i64,
    active: i64,
    advanced: i64,
    basic: i64,
    met: i64,
    decided: i64,
    impacts: [i64; 3],
    retention: Movements,
}

impl Sums {
    fn add(&mut self, value: &ipb::AccountValue) {
        self.accounts += 1;
        self.seats += value.seats;
        self.adopted += value.active_users_30d.min(value.seats);
        self.active += value.active_users_30d;
        self.advanced += value.advanced_users_30d;
        self.basic += value.basic_users_30d;
        self.met += value.objectives_met;
        self.decided += value.objectives_decided;
        let slot = match value.impact() {
            ipb::Impact::Positive => Some(0),
            ipb::Impact::Neutral => Some(1),
            ipb::Impact::Negative => Some(2),
            _ => None,
        };
        if let Some(slot) = slot {
            self.impacts[slot] += 1;
        }
    }

    fn figures(&self) -> pb::ValueFigures {
        let share = |part: i64, whole: i64| (whole > 0).then(|| percent(part as f64, whole as f64));
        let surveyed: i64 = self.impacts.iter().sum();
        let rate = |ratio: Ratio| pb::Rate {
            numerator: ratio.numerator,
            denominator: ratio.denominator,
            percent: ratio.percent_text(2),
        };
        pb::ValueFigures {
            accounts: self.accounts,
            licenses_adopted_pct: share(self.adopted, self.seats),
            basic_users_pct: share(self.basic, self.active),
            advanced_users_pct: share(self.advanced, self.active),
            success_rate_pct: share(self.met, self.decided),
            surveyed_accounts: surveyed,
            positive_impact_pct: share(self.impacts[0], surveyed),
            neutral_impact_pct: share(self.impacts[1], surveyed),
            negative_impact_pct: share(self.impacts[2], surveyed),
            logo_retention: Some(rate(self.retention.logo_retention())),
            net_revenue_retention: Some(rate(self.retention.net_retention())),
        }
    }
}

/// The groups a customer counts in: the whole book, its segment, its tier.
#[derive(Default)]
struct Groups {
    all: Sums,
    segments: BTreeMap<String, Sums>,
    tiers: Vec<Sums>,
}

impl Groups {
    fn new(tiers: usize) -> Self {
        Self {
            tiers: (0..tiers).map(|_| Sums::default()).collect(),
            ..Self::default()
        }
    }

    /// The sums of `customer`'s groups.
    fn of(&mut self, customer: &Customer, placement: &Placement) -> [&mut Sums; 3] {
        let segment = self.segments.entry(customer.segment.clone()).or_default();
        let tier = &mut self.tiers[placement.tier];
        [&mut self.all, segment, tier]
    }
}

impl RenewalsApi {
    pub(crate) async fn get_value_report(
        &self,
        request: pb::GetValueReportRequest,
    ) -> ApiResult<pb::GetValueReportResponse> {
        let mut violations = Violations::default();
        let as_of = day_or_today(request.as_of.as_ref(), "as_of", &mut violations);
        let version = version_of(
            request.coverage_model_version,
            "coverage_model_version",
            &mut violations,
        );
        violations.into_result()?;
        let placed = self.placed(version, as_of).await?;
        let model = &placed.model;
        let mut groups = Groups::new(model.tiers.len());

        // Adoption and success of the customers on the day.
        let mut values: HashMap<String, ipb::AccountValue> = HashMap::new();
        for chunk in placed.customers.chunks(1000) {
            let request = ipb::GetAccountValuesRequest {
                account_ids: chunk.iter().map(|c| c.account_id.clone()).collect(),
                as_of: Some(time::to_date(as_of)),
            };
            let answer = self
                .ingestion
                .clone()
                .get_account_values(request)
                .await
                .map_err(|s| ApiError::from_upstream(s, "account values"))?;
            values.extend(
                answer
                    .into_inner()
                    .accounts
                    .into_iter()
                    .map(|v| (v.account_id.clone(), v)),
            );
        }
        for (customer, placement) in placed.customers.iter().zip(&placed.placements) {
            if let Some(value) = values.get(&customer.account_id) {
                for sums in groups.of(customer, placement) {
                    sums.add(value);
                }
            }
        }

        // Retention of the year before, the customers grouped as they were
        // at its start.
        let end = as_of + Days::new(1);
        let start = end - Months::new(12);
        let then = self.placed(Some(model.version), before(start)).await?;
        let book = Book::from_versions(
            pipeline::versions_recorded_by(&self.pool, as_of, None)
                .await?
                .into_iter()
                .filter(|v| v.currency == model.currency),
        );
        for (customer, placement) in then.customers.iter().zip(&then.placements) {
            let Some(subscriptions) = book.accounts.get(&customer.account_id) else {
                continue;
            };
            let one = Book {
                accounts: BTreeMap::from([(customer.account_id.clone(), subscriptions.clone())]),
            };
            let moved = one.period(start, end).retention;
            for sums in groups.of(customer, placement) {
                add_retention(&mut sums.retention, &moved);
            }
        }

        let group = |name: &str, sums: &Sums| pb::ValueGroup {
            name: name.to_owned(),
            figures: Some(sums.figures()),
        };
        Ok(pb::GetValueReportResponse {
            as_of: Some(time::to_date(as_of)),
            retention_period: Some(tenure_proto::common::v1::DateRange {
                start: Some(time::to_date(start)),
                end: Some(time::to_date(end)),
            }),
            coverage_model_version: model.version,
            currency_code: model.currency.clone(),
            all: Some(groups.all.figures()),
            segments: groups
                .segments
                .iter()
                .map(|(name, sums)| group(name, sums))
                .collect(),
            tiers: model
                .tiers
                .iter()
                .zip(&groups.tiers)
                .map(|(tier, sums)| group(&tier.id, sums))
                .collect(),
        })
    }
}

/// Adds one account's movements over the year to a group's.
fn add_retention(total: &mut Movements, one: &Movements) {
    total.start = total.start.saturating_add(one.start);
    total.end = total.end.saturating_add(one.end);
    total.add_flows(one);
    total.logos_start += one.logos_start;
    total.logos_retained += one.logos_retained;
    total.logos_end += one.logos_end;
}
