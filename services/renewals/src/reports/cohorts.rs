//! Cohort survival in time (Kaplan–Meier) and the sBG model fitted on
//! true renewal counts.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use tenure_platform::input::Window;
use tenure_platform::{ApiError, ApiResult, Violations, time};
use tenure_proto::renewals::v1 as pb;

use super::{Observed, model_to_proto, observed, period_months, period_start, whole_periods};
use crate::forecasts::{day_or_today, filter_text};
use crate::ledger::Book;
use crate::pipeline;
use crate::retention::{self, FitError, Life, Renewals};
use crate::state::RenewalsApi;

impl RenewalsApi {
    pub(crate) async fn get_cohort_retention(
        &self,
        request: pb::GetCohortRetentionRequest,
    ) -> ApiResult<pb::GetCohortRetentionResponse> {
        let mut violations = Violations::default();
        let months = period_months(request.period);
        violations.check(months.is_some(), "period", "is not a known cohort period");
        let starts: Option<Window> = violations.parse("starts", request.starts.as_ref());
        let Window {
            start: from,
            end: before,
        } = starts.unwrap_or_default();
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
        let mut cohorts: BTreeMap<NaiveDate, Vec<Observed>> = BTreeMap::new();
        for subscriptions in book.accounts.values() {
            let Some(member) = observed(subscriptions, as_of) else {
                continue;
            };
            let start = member.start;
            if start > as_of
                || from.is_some_and(|f| start < f)
                || before.is_some_and(|b| start >= b)
            {
                continue;
            }
            cohorts
                .entry(period_start(start, months))
                .or_default()
                .push(member);
        }
        let cohorts = cohorts
            .into_iter()
            .map(|(cohort_start, members)| {
                cohort(cohort_start, &members, as_of, months, projection)
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
        let fit = retention::sbg::fit_survivors(&counts).map_err(|e| match e {
            FitError::NoCustomers => ApiError::invalid("survivors[0]", "must be positive"),
            FitError::NoChurn | FitError::NoRenewals => {
                ApiError::FailedPrecondition(format!("survivors: {e}"))
            }
            FitError::NotDecreasing | FitError::TooFewPeriods => {
                ApiError::invalid("survivors", e.to_string())
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
}

/// One cohort: its survival in time, its survivors after each period every
/// member was observed through, and the sBG model of its renewals.
fn cohort(
    start: NaiveDate,
    members: &[Observed],
    as_of: NaiveDate,
    months: u32,
    projection: usize,
) -> pb::Cohort {
    let lives: Vec<Life> = members.iter().map(|m| m.in_time(as_of)).collect();
    let curve = retention::kaplan_meier(&lives);
    let latest_start = members.iter().map(|m| m.start).max().unwrap_or(start);
    let observed = whole_periods(latest_start, as_of, months);
    let survivors: Vec<i64> = (0..=observed)
        .map(|t| {
            members
                .iter()
                .filter(|m| m.ended.is_none() || m.renewals_by(as_of, months) >= t)
                .count() as i64
        })
        .collect();
    let mut renewals = Renewals::default();
    for member in members {
        member.add_to(&mut renewals, as_of, months);
    }
    let horizon = renewals
        .lost
        .len()
        .max(renewals.kept.len().saturating_sub(1));
    let (model, model_unavailable) = match retention::sbg::fit(&renewals) {
        Ok(fit) => (
            Some(model_to_proto(
                &fit,
                lives.len() as f64,
                projection,
                horizon,
            )),
            String::new(),
        ),
        Err(e) => (None, e.to_string()),
    };
    let median = curve.median();
    pb::Cohort {
        start: Some(time::to_date(start)),
        size: lives.len() as i64,
        kaplan_meier: curve
            .points(months)
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
        median_survival: Some(pb::MedianSurvival {
            months: median.months,
            lower: median.lower,
            upper: median.upper,
        }),
        model_unavailable,
    }
}
