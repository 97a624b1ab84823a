//! Lifetime value of the customers a company has (DERL) and of a new one
//! (DEL), and growth scenarios.

use std::collections::HashMap;

use chrono::NaiveDate;
use tenure_platform::{ApiError, ApiResult, Violations};
use tenure_proto::renewals::v1 as pb;

use super::{model_to_proto, observed};
use crate::forecasts::{currency, day_or_today, filter_text};
use crate::ledger::{Book, Subscription};
use crate::pipeline;
use crate::retention::{self, Renewals, Sbg, ValueError};
use crate::state::RenewalsApi;
use crate::views::money;

/// The smallest discount rate accepted: below it the expected sums take
/// too many terms to add up exactly.
const MIN_DISCOUNT: f64 = 0.001;

/// Money is kept in minor units under 2^53, where f64 is still exact.
const MAX_MINOR: f64 = 9_007_199_254_740_992.0;

fn to_minor(value: f64) -> ApiResult<i64> {
    if value.is_finite() && value.abs() < MAX_MINOR {
        Ok(value.round() as i64)
    } else {
        Err(too_large())
    }
}

fn too_large() -> ApiError {
    ApiError::FailedPrecondition("the lifetime values exceed the range money is kept in".to_owned())
}

fn diverges(_: ValueError) -> ApiError {
    ApiError::FailedPrecondition(
        "the expected lifetime value has no finite sum at this discount rate".to_owned(),
    )
}

/// The account's yearly ARR growth since it first paid (compounded), at
/// least -50 %; zero before its first year.
fn yearly_growth(
    subscriptions: &[Subscription],
    start: NaiveDate,
    today: NaiveDate,
    arr: i64,
) -> f64 {
    let first_arr = Book::account_arr_on(subscriptions, start);
    let years = (today - start).num_days() as f64 / 365.25;
    if years >= 1.0 && first_arr > 0 {
        ((arr as f64 / first_arr as f64).powf(1.0 / years) - 1.0).max(-0.5)
    } else {
        0.0
    }
}

impl RenewalsApi {
    pub(crate) async fn get_lifetime_value(
        &self,
        request: pb::GetLifetimeValueRequest,
    ) -> ApiResult<pb::GetLifetimeValueResponse> {
        use pb::get_lifetime_value_request::Scope;
        let mut violations = Violations::default();
        violations.check(
            (MIN_DISCOUNT..1.0).contains(&request.discount_rate),
            "discount_rate",
            "must be at least 0.001 and below 1",
        );
        let currency = currency(&request.currency_code, "currency_code", &mut violations);
        let today = day_or_today(request.as_of.as_ref(), "as_of", &mut violations);
        let (account, segment) = match &request.scope {
            Some(Scope::AccountId(id)) => {
                violations.require_text(id, "account_id", 128);
                (Some(id.clone()), None)
            }
            Some(Scope::Segment(segment)) => {
                (None, filter_text(segment, "segment", &mut violations))
            }
            None => (None, None),
        };
        violations.into_result()?;
        let segment_of_account = match &account {
            Some(id) => Some(
                sqlx::query_scalar::<_, String>(
                    "SELECT segment FROM renewals.accounts WHERE account_id = $1",
                )
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("account {id}")))?,
            ),
            None => None,
        };
        let scope_segment = segment.or(segment_of_account);
        let book = Book::from_versions(
            pipeline::versions_in(&self.pool, scope_segment.as_deref(), Some(&currency)).await?,
        );
        // One yearly retention model for the scope, fitted on every
        // customer's true renewal counts.
        let mut renewals = Renewals::default();
        let mut size = 0_u64;
        for subscriptions in book.accounts.values() {
            if let Some(member) = observed(subscriptions, today) {
                member.add_to(&mut renewals, today, 12);
                size += 1;
            }
        }
        let fit = retention::sbg::fit(&renewals).map_err(|e| {
            ApiError::FailedPrecondition(format!("no retention model for this scope: {e}"))
        })?;
        let model: Sbg = fit.model;
        let discount = request.discount_rate;
        let del = model.del(discount).map_err(diverges)?;
        let mut derl_of: HashMap<u32, f64> = HashMap::new();
        let mut accounts = Vec::new();
        // Totals add up the rounded per-account amounts, so the parts sum exactly.
        let (mut total, mut total_growth) = (0_i64, 0_i64);
        for (account_id, subscriptions) in &book.accounts {
            if account.as_ref().is_some_and(|a| a != account_id) {
                continue;
            }
            let arr = Book::account_arr_on(subscriptions, today);
            if arr == 0 {
                continue;
            }
            let Some(member) = observed(subscriptions, today) else {
                continue;
            };
            let renewals = member.renewals_by(today, 12);
            let payments = renewals + 1;
            let observed_growth = yearly_growth(subscriptions, member.start, today, arr);
            let cap = discount / 2.0;
            let growth = observed_growth.min(cap);
            let derl = match derl_of.get(&payments) {
                Some(v) => *v,
                None => {
                    let v = model.derl(payments, discount).map_err(diverges)?;
                    derl_of.insert(payments, v);
                    v
                }
            };
            let growing = model
                .derl_growing(payments, discount, growth)
                .map_err(diverges)?;
            let value = to_minor(arr as f64 * derl)?;
            let with_growth = to_minor(arr as f64 * growing)?;
            total = total.checked_add(value).ok_or_else(too_large)?;
            total_growth = total_growth
                .checked_add(with_growth)
                .ok_or_else(too_large)?;
            accounts.push(pb::AccountLifetimeValue {
                account_id: account_id.clone(),
                arr: Some(money(&currency, arr)),
                renewals: renewals as i32,
                residual_value: Some(money(&currency, value)),
                residual_value_with_expansion: Some(money(&currency, with_growth)),
                expansion_rate: growth,
                payments: payments as i32,
                derl,
                expansion_capped: observed_growth > cap,
                referred_arr: Vec::new(),
            });
        }
        self.add_referred_arr(&mut accounts, today).await?;
        if account.is_some() && accounts.is_empty() {
            return Err(ApiError::FailedPrecondition(
                "the account pays no recurring revenue on the as-of date".to_owned(),
            ));
        }
        let horizon = renewals
            .lost
            .len()
            .max(renewals.kept.len().saturating_sub(1));
        Ok(pb::GetLifetimeValueResponse {
            accounts,
            total_residual_value: Some(money(&currency, total)),
            total_residual_value_with_expansion: Some(money(&currency, total_growth)),
            model: Some(model_to_proto(&fit, size as f64, 5, horizon)),
            del,
        })
    }

    /// Sets each valued account's referred ARR from ingestion's advocacy
    /// summaries as of `day`, a thousand accounts a call.
    async fn add_referred_arr(
        &self,
        accounts: &mut [pb::AccountLifetimeValue],
        day: NaiveDate,
    ) -> ApiResult<()> {
        for chunk in accounts.chunks_mut(1000) {
            let request = tenure_proto::ingestion::v1::GetAdvocacySummariesRequest {
                account_ids: chunk.iter().map(|a| a.account_id.clone()).collect(),
                as_of: Some(tenure_platform::time::to_date(day)),
            };
            let found: HashMap<String, Vec<tenure_proto::common::v1::Money>> = self
                .ingestion
                .clone()
                .get_advocacy_summaries(request)
                .await
                .map_err(|s| ApiError::from_upstream(s, "advocacy summaries"))?
                .into_inner()
                .accounts
                .into_iter()
                .filter_map(|a| Some((a.account_id, a.summary?.referred_arr)))
                .collect();
            for account in chunk {
                account.referred_arr = found.get(&account.account_id).cloned().unwrap_or_default();
            }
        }
        Ok(())
    }

    pub(crate) async fn project_scenario(
        &self,
        request: pb::ProjectScenarioRequest,
    ) -> ApiResult<pb::ProjectScenarioResponse> {
        let mut violations = Violations::default();
        violations.check(
            request.customers.is_finite() && request.customers > 0.0 && request.customers <= 1e9,
            "customers",
            "must be positive",
        );
        let revenue = tenure_platform::money::non_negative(
            request.revenue_per_customer.as_ref(),
            "revenue_per_customer",
            &mut violations,
        );
        for (field, value, max) in [
            ("new_customer_growth", request.new_customer_growth, 10.0),
            ("churn_rate", request.churn_rate, 1.0),
            ("expansion_rate", request.expansion_rate, 10.0),
            ("growth_target", request.growth_target, 10.0),
        ] {
            violations.check(
                value.is_finite() && (0.0..=max).contains(&value),
                field,
                format!("must be between 0 and {max}"),
            );
        }
        violations.check(
            (1..=10).contains(&request.years),
            "years",
            "must be between 1 and 10",
        );
        violations.into_result()?;
        let Some(revenue) = revenue else {
            return Err(ApiError::invalid("revenue_per_customer", "is required"));
        };
        let scenario = retention::Scenario {
            customers: request.customers,
            revenue_per_customer: revenue.minor as f64,
            new_customer_growth: request.new_customer_growth,
            churn_rate: request.churn_rate,
            expansion_rate: request.expansion_rate,
            years: request.years as u32,
        };
        let currency = revenue.currency_code();
        Ok(pb::ProjectScenarioResponse {
            months: scenario
                .project()
                .into_iter()
                .map(|m| pb::ProjectedMonth {
                    month: m.month as i32,
                    customers: m.customers,
                    mrr: Some(money(currency, m.mrr.round() as i64)),
                    mrr_without_churn: Some(money(currency, m.mrr_without_churn.round() as i64)),
                })
                .collect(),
            required_new_bookings: retention::required_new_bookings(
                request.growth_target,
                request.churn_rate,
                request.expansion_rate,
            ),
        })
    }
}
