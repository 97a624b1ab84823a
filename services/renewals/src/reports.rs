//! Retention reports: contract and revenue retention for a period, the MRR
//! movement ledger, cohort survival with the sBG model, lifetime value and
//! growth scenarios.

use chrono::{Months, NaiveDate, Utc};
use tenure_platform::{ApiError, ApiResult, Violations, time};
use tenure_proto::renewals::v1 as pb;

use crate::contracts;
use crate::forecasts::{currency, day_or_today, filter_text, window};
use crate::grpc::RenewalsApi;
use crate::ledger::{Book, Movements, Ratio, Subscription, month_starts};
use crate::pipeline;
use crate::retention::{self, FitError, Life, Sbg};
use crate::views::money;

fn rate(ratio: Ratio) -> Option<pb::Rate> {
    Some(pb::Rate {
        numerator: ratio.numerator,
        denominator: ratio.denominator,
        percent: ratio.percent_text(2),
    })
}

fn movements_to_proto(currency: &str, m: &Movements) -> pb::RevenueMovements {
    let amount = |minor| Some(money(currency, minor));
    pb::RevenueMovements {
        start: amount(m.start),
        new: amount(m.new),
        expansion: amount(m.expansion),
        reactivation: amount(m.reactivation),
        contraction: amount(m.contraction),
        churn: amount(m.churn),
        end: amount(m.end),
    }
}

/// Revenue "at the start" of a period is what was paid on its eve, and
/// "at the end" what was paid on its last day: a contract starting on the
/// first of a month is that month's new business, one ending on the first
/// (exclusive) is that month's churn.
fn day_before(day: NaiveDate) -> NaiveDate {
    day.pred_opt().unwrap_or(day)
}

/// MRR of an ARR, rounded half away from zero to the minor unit.
fn mrr(arr_minor: i64) -> i64 {
    let (q, r) = (arr_minor / 12, arr_minor % 12);
    if 2 * r.abs() >= 12 {
        q + arr_minor.signum()
    } else {
        q
    }
}

/// Cohort periods in months.
fn period_months(period: i32) -> Option<u32> {
    match pb::CohortPeriod::try_from(period).ok()? {
        pb::CohortPeriod::Unspecified | pb::CohortPeriod::Year => Some(12),
        pb::CohortPeriod::Quarter => Some(3),
        pb::CohortPeriod::Month => Some(1),
    }
}

/// Whole periods of `months` from `start` to `day`.
fn whole_periods(start: NaiveDate, day: NaiveDate, months: u32) -> u32 {
    let mut n = 0;
    while let Some(next) = start.checked_add_months(Months::new(months * (n + 1))) {
        if next > day {
            break;
        }
        n += 1;
    }
    n
}

/// Periods of `months` begun from `start` before `day`.
fn periods_begun(start: NaiveDate, day: NaiveDate, months: u32) -> u32 {
    let mut n = 0;
    while let Some(begins) = start.checked_add_months(Months::new(months * n)) {
        if begins >= day {
            break;
        }
        n += 1;
    }
    n
}

/// A customer's life in renewals: one that stopped paying on `ended` renewed
/// once less than the periods it began; one still paying has renewed once
/// per whole period so far (and is censored there).
fn life(start: NaiveDate, ended: Option<NaiveDate>, as_of: NaiveDate, months: u32) -> Life {
    match ended {
        Some(day) => Life {
            periods: periods_begun(start, day, months).saturating_sub(1),
            churned: true,
        },
        None => Life {
            periods: whole_periods(start, as_of, months),
            churned: false,
        },
    }
}

/// The start of the period of `months` containing `day` (calendar aligned).
fn period_start(day: NaiveDate, months: u32) -> NaiveDate {
    use chrono::Datelike;
    let month0 = day.month0() / months * months;
    NaiveDate::from_ymd_opt(day.year(), month0 + 1, 1).unwrap_or(day)
}

/// One customer's life: when it first paid, and the first day after that
/// it paid nothing (if by `as_of`).
fn life_of(
    subscriptions: &[Subscription],
    as_of: NaiveDate,
) -> Option<(NaiveDate, Option<NaiveDate>)> {
    let start = subscriptions
        .iter()
        .filter_map(Subscription::first_paid_on)
        .min()?;
    // Revenue only changes on a term boundary or a version's change.
    let mut days: Vec<NaiveDate> = subscriptions
        .iter()
        .flat_map(Subscription::change_days)
        .collect();
    days.retain(|d| *d > start && *d <= as_of);
    days.sort_unstable();
    days.dedup();
    let ended = days
        .into_iter()
        .find(|d| Book::account_arr_on(subscriptions, *d) == 0);
    Some((start, ended))
}

fn model_to_proto(
    fit: &retention::SbgFit,
    size: f64,
    projection: usize,
    observed: usize,
) -> pb::SbgModel {
    let survival = fit.model.survival(observed + projection);
    pb::SbgModel {
        alpha: fit.model.alpha,
        beta: fit.model.beta,
        log_likelihood: fit.log_likelihood,
        projected_survivors: survival.iter().map(|s| s * size).collect(),
        survival,
    }
}

impl RenewalsApi {
    pub(crate) async fn get_retention_metrics(
        &self,
        request: pb::GetRetentionMetricsRequest,
    ) -> ApiResult<pb::GetRetentionMetricsResponse> {
        let mut violations = Violations::default();
        let (start, end) = window(request.period.as_ref(), "period", true, &mut violations);
        let segment = filter_text(&request.segment, "segment", &mut violations);
        let currency = currency(&request.currency_code, "currency_code", &mut violations);
        violations.into_result()?;
        let (Some(start), Some(end)) = (start, end) else {
            return Err(ApiError::invalid("period", "is required"));
        };
        let today = Utc::now().date_naive();
        let due = contracts::due(&self.pool, Some(start), end, segment.as_deref(), today).await?;
        let renewed = due.iter().filter(|d| d.renewed == Some(true)).count() as i64;
        let churned = due.iter().filter(|d| d.renewed == Some(false)).count() as i64;
        let due_count = due.len() as i64;
        let book = Book::from_versions(
            pipeline::versions_in(&self.pool, segment.as_deref(), Some(&currency)).await?,
        );
        let m = book.movements(day_before(start), day_before(end));
        Ok(pb::GetRetentionMetricsResponse {
            contract_renewal_rate: rate(Ratio::new(renewed, due_count)),
            contracts_due: due_count,
            contracts_renewed: renewed,
            contracts_churned: churned,
            contracts_pending: due_count - renewed - churned,
            recurring_revenue_rate: rate(m.recurring_revenue_rate()),
            movements: Some(movements_to_proto(&currency, &m)),
            gross_revenue_retention: rate(m.gross_retention()),
            net_revenue_retention: rate(m.net_retention()),
            logo_retention: rate(m.logo_retention()),
            quick_ratio: rate(m.quick_ratio()),
        })
    }

    pub(crate) async fn get_revenue_ledger(
        &self,
        request: pb::GetRevenueLedgerRequest,
    ) -> ApiResult<pb::GetRevenueLedgerResponse> {
        const MAX_MONTHS: usize = 240;
        let mut violations = Violations::default();
        let (start, end) = window(request.period.as_ref(), "period", true, &mut violations);
        let segment = filter_text(&request.segment, "segment", &mut violations);
        let currency = currency(&request.currency_code, "currency_code", &mut violations);
        let months = match (start, end) {
            (Some(s), Some(e)) if s < e => month_starts(s, e),
            _ => Vec::new(),
        };
        violations.check(
            months.len() <= MAX_MONTHS,
            "period",
            "must span at most 240 months",
        );
        violations.into_result()?;
        let book = Book::from_versions(
            pipeline::versions_in(&self.pool, segment.as_deref(), Some(&currency)).await?,
        );
        let months = months
            .iter()
            .map(|month| {
                let next = month.checked_add_months(Months::new(1)).unwrap_or(*month);
                let m = book.movements(day_before(*month), day_before(next));
                pb::LedgerMonth {
                    month: Some(time::to_date(*month)),
                    arr: Some(movements_to_proto(&currency, &m)),
                    mrr_start: Some(money(&currency, mrr(m.start))),
                    mrr_end: Some(money(&currency, mrr(m.end))),
                }
            })
            .collect();
        Ok(pb::GetRevenueLedgerResponse { months })
    }

    pub(crate) async fn get_cohort_retention(
        &self,
        request: pb::GetCohortRetentionRequest,
    ) -> ApiResult<pb::GetCohortRetentionResponse> {
        let mut violations = Violations::default();
        let months = period_months(request.period);
        violations.check(months.is_some(), "period", "is not a known cohort period");
        let (from, before) = window(request.starts.as_ref(), "starts", false, &mut violations);
        let segment = filter_text(&request.segment, "segment", &mut violations);
        violations.check(
            (0..=50).contains(&request.projection_periods),
            "projection_periods",
            "must be between 0 and 50",
        );
        let as_of = day_or_today(request.as_of.as_ref(), "as_of", &mut violations);
        violations.into_result()?;
        let months = months.unwrap_or(12);
        let projection = if request.projection_periods == 0 {
            5
        } else {
            request.projection_periods as usize
        };
        let book =
            Book::from_versions(pipeline::versions_in(&self.pool, segment.as_deref(), None).await?);
        let mut cohorts: std::collections::BTreeMap<NaiveDate, Vec<(NaiveDate, Life)>> =
            Default::default();
        for subscriptions in book.accounts.values() {
            let Some((start, ended)) = life_of(subscriptions, as_of) else {
                continue;
            };
            if start > as_of
                || from.is_some_and(|f| start < f)
                || before.is_some_and(|b| start >= b)
            {
                continue;
            }
            let life = life(start, ended, as_of, months);
            cohorts
                .entry(period_start(start, months))
                .or_default()
                .push((start, life));
        }
        let cohorts = cohorts
            .into_iter()
            .map(|(cohort_start, members)| {
                let lives: Vec<Life> = members.iter().map(|(_, l)| *l).collect();
                let latest_start = members
                    .iter()
                    .map(|(s, _)| *s)
                    .max()
                    .unwrap_or(cohort_start);
                let observed = whole_periods(latest_start, as_of, months);
                let survivors: Vec<i64> = (0..=observed)
                    .map(|t| lives.iter().filter(|l| l.periods >= t).count() as i64)
                    .collect();
                let counts: Vec<u64> = survivors.iter().map(|n| *n as u64).collect();
                let model = retention::fit_sbg(&counts).ok().map(|fit| {
                    model_to_proto(&fit, lives.len() as f64, projection, observed as usize)
                });
                pb::Cohort {
                    start: Some(time::to_date(cohort_start)),
                    size: lives.len() as i64,
                    kaplan_meier: retention::kaplan_meier(&lives)
                        .into_iter()
                        .map(|p| pb::SurvivalPoint {
                            period: p.period as i32,
                            at_risk: i64::from(p.at_risk),
                            churned: i64::from(p.churned),
                            censored: i64::from(p.censored),
                            survival: p.survival,
                        })
                        .collect(),
                    survivors,
                    model,
                }
            })
            .collect();
        Ok(pb::GetCohortRetentionResponse { cohorts })
    }

    pub(crate) async fn fit_retention_model(
        &self,
        request: pb::FitRetentionModelRequest,
    ) -> ApiResult<pb::FitRetentionModelResponse> {
        let mut violations = Violations::default();
        violations.check(
            (3..=200).contains(&request.survivors.len()),
            "survivors",
            "must hold the cohort size and at least two later counts (at most 200)",
        );
        for (i, n) in request.survivors.iter().enumerate() {
            violations.check(*n >= 0, format!("survivors[{i}]"), "must not be negative");
        }
        violations.check(
            (0..=50).contains(&request.projection_periods),
            "projection_periods",
            "must be between 0 and 50",
        );
        violations.into_result()?;
        let counts: Vec<u64> = request.survivors.iter().map(|n| *n as u64).collect();
        let fit = retention::fit_sbg(&counts).map_err(|e| match e {
            FitError::NotDecreasing => {
                ApiError::invalid("survivors", "must not increase from one period to the next")
            }
            FitError::NoCustomers => ApiError::invalid("survivors[0]", "must be positive"),
            FitError::TooFewPeriods => {
                ApiError::invalid("survivors", "needs at least three counts")
            }
        })?;
        Ok(pb::FitRetentionModelResponse {
            model: Some(model_to_proto(
                &fit,
                counts[0] as f64,
                request.projection_periods as usize,
                counts.len() - 1,
            )),
        })
    }

    pub(crate) async fn get_lifetime_value(
        &self,
        request: pb::GetLifetimeValueRequest,
    ) -> ApiResult<pb::GetLifetimeValueResponse> {
        use pb::get_lifetime_value_request::Scope;
        let mut violations = Violations::default();
        violations.check(
            request.discount_rate > 0.0 && request.discount_rate < 1.0,
            "discount_rate",
            "must be between 0 and 1 (exclusive)",
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
        // One yearly retention model for the scope: survivor counts from the
        // Kaplan–Meier curve of every customer in it.
        let lives: Vec<Life> = book
            .accounts
            .values()
            .filter_map(|subs| {
                let (start, ended) = life_of(subs, today)?;
                Some(life(start, ended, today, 12))
            })
            .collect();
        let curve = retention::kaplan_meier(&lives);
        let size = lives.len() as f64;
        let mut survivors = vec![lives.len() as u64];
        survivors.extend(curve.iter().map(|p| (p.survival * size).round() as u64));
        let fit = retention::fit_sbg(&survivors).map_err(|_| {
            ApiError::FailedPrecondition(
                "too little history to fit a retention model: at least two years of renewals are needed"
                    .to_owned(),
            )
        })?;
        let model: Sbg = fit.model;
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
            let Some((start, _)) = life_of(subscriptions, today) else {
                continue;
            };
            let renewals = whole_periods(start, today, 12);
            let first_arr = Book::account_arr_on(subscriptions, start);
            let years = (today - start).num_days() as f64 / 365.25;
            let growth = if years >= 1.0 && first_arr > 0 {
                ((arr as f64 / first_arr as f64).powf(1.0 / years) - 1.0).clamp(-0.5, 1.0)
            } else {
                0.0
            };
            let value = model.residual_value(renewals, arr as f64, request.discount_rate, 0.0);
            let with_growth =
                model.residual_value(renewals, arr as f64, request.discount_rate, growth);
            let (value, with_growth) = (value.round() as i64, with_growth.round() as i64);
            total += value;
            total_growth += with_growth;
            accounts.push(pb::AccountLifetimeValue {
                account_id: account_id.clone(),
                arr: Some(money(&currency, arr)),
                renewals: renewals as i32,
                residual_value: Some(money(&currency, value)),
                residual_value_with_expansion: Some(money(&currency, with_growth)),
                expansion_rate: growth,
            });
        }
        if account.is_some() && accounts.is_empty() {
            return Err(ApiError::FailedPrecondition(
                "the account pays no recurring revenue on the as-of date".to_owned(),
            ));
        }
        Ok(pb::GetLifetimeValueResponse {
            accounts,
            total_residual_value: Some(money(&currency, total)),
            total_residual_value_with_expansion: Some(money(&currency, total_growth)),
            model: Some(model_to_proto(&fit, size, 5, curve.len())),
        })
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
