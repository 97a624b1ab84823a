//! The value journey's reads: success plans' progress (an account's plans
//! as they stood at a day's end, each objective judged on its measure's
//! values, `crate::plans`) and advocacy summaries.

use std::collections::{BTreeMap, HashMap};

use tenure_proto::common::v1::{AdvocacySummary, Money};

use super::*;
use crate::kinds::{
    AdvocacyKind, AdvocacyRecord, FeatureRecord, FeatureTier, Measure, MetricRecord, PlanRecord,
    SurveyKind, UsageMeasure,
};
use crate::plans::{self, Outcome, Status};

fn status_to_proto(status: Status) -> pb::ObjectiveStatus {
    match status {
        Status::NotStarted => pb::ObjectiveStatus::NotStarted,
        Status::Met => pb::ObjectiveStatus::Met,
        Status::OnTrack => pb::ObjectiveStatus::OnTrack,
        Status::AtRisk => pb::ObjectiveStatus::AtRisk,
        Status::Missed => pb::ObjectiveStatus::Missed,
        Status::NoData => pb::ObjectiveStatus::NoData,
    }
}

fn measure_name(measure: &Measure) -> String {
    match measure {
        Measure::Metric(id) => format!("metric:{id}"),
        Measure::Usage(UsageMeasure::ActiveUsers30d) => "usage:active_users_30d".to_owned(),
        Measure::Usage(UsageMeasure::Events30d) => "usage:events_30d".to_owned(),
    }
}

fn plan_to_proto(plan: &PlanRecord, outcomes: Vec<Outcome>) -> pb::PlanProgress {
    let (on_track_pct, success_rate_pct) = plans::shares(&outcomes);
    pb::PlanProgress {
        plan_id: plan.plan_id.clone(),
        name: plan.name.clone(),
        owner: plan.owner.clone(),
        start_on: Some(time::to_date(plan.start_on)),
        objectives: plan
            .objectives
            .iter()
            .zip(outcomes)
            .map(|(objective, outcome)| pb::ObjectiveProgress {
                objective_id: objective.objective_id.clone(),
                name: objective.name.clone(),
                owner: objective.owner.clone(),
                measure: measure_name(&objective.measure),
                baseline: outcome.baseline,
                value: outcome.value,
                target: objective.target,
                due_on: Some(time::to_date(objective.due_on)),
                attainment_pct: outcome.attainment_pct,
                projected: outcome.projected,
                status: status_to_proto(outcome.status) as i32,
                higher_is_better: outcome.higher_is_better,
            })
            .collect(),
        on_track_pct,
        success_rate_pct,
    }
}

/// A batch read's accounts (sorted, each once) and day, validated.
fn batch_on_a_day(
    ids: Vec<String>,
    as_of: Option<&tenure_proto::common::v1::Date>,
) -> ApiResult<(Vec<String>, NaiveDate)> {
    let mut violations = Violations::default();
    let ids = reads::account_batch(ids, &mut violations);
    let as_of = reads::as_of_date(as_of, &mut violations);
    violations.into_result()?;
    Ok((ids, as_of))
}

impl IngestionApi {
    pub(super) async fn get_success_plan_progress(
        &self,
        request: pb::GetSuccessPlanProgressRequest,
    ) -> ApiResult<pb::GetSuccessPlanProgressResponse> {
        let mut violations = Violations::default();
        violations.parse::<Id, _>("account_id", &request.account_id);
        violations.limit_text(&request.plan_id, "plan_id", MAX_ID);
        let as_of = reads::as_of_date(request.as_of.as_ref(), &mut violations);
        violations.into_result()?;
        if accounts::get(&self.pool, &request.account_id)
            .await?
            .is_none()
        {
            return Err(ApiError::NotFound(format!(
                "account {}",
                request.account_id
            )));
        }
        let cutoff = signals::cutoff(as_of);
        let mut found: Vec<PlanRecord> =
            records::as_of(&self.pool, &request.account_id, cutoff).await?;
        found.retain(|p| request.plan_id.is_empty() || p.plan_id == request.plan_id);
        found.sort_by(|a, b| a.plan_id.cmp(&b.plan_id));
        if found.is_empty() && !request.plan_id.is_empty() {
            return Err(ApiError::NotFound(format!(
                "success plan {} of account {}",
                request.plan_id, request.account_id
            )));
        }
        let metrics: Vec<MetricRecord> =
            records::as_of(&self.pool, &request.account_id, cutoff).await?;
        let days: std::collections::BTreeSet<NaiveDate> = found
            .iter()
            .flat_map(|plan| plans::usage_days(plan, as_of))
            .collect();
        let pairs: Vec<(String, NaiveDate)> = days
            .iter()
            .map(|day| (request.account_id.clone(), *day))
            .collect();
        let usage: BTreeMap<NaiveDate, signals::Usage> = days
            .into_iter()
            .zip(signals::usage_at(&self.pool, &pairs).await?)
            .collect();
        let usage_at = |measure, day| usage.get(&day).map(|u: &signals::Usage| u.measure(measure));
        Ok(pb::GetSuccessPlanProgressResponse {
            as_of: Some(time::to_date(as_of)),
            plans: found
                .iter()
                .map(|plan| plan_to_proto(plan, plans::progress(plan, as_of, &metrics, &usage_at)))
                .collect(),
        })
    }
}

/// Adds `amount` of `currency` to `totals`, one entry per currency.
fn add_money(totals: &mut Vec<Money>, currency: &str, amount: i64) {
    match totals.iter_mut().find(|m| m.currency_code == currency) {
        Some(total) => total.amount_minor = total.amount_minor.saturating_add(amount),
        None => totals.push(Money {
            currency_code: currency.to_owned(),
            amount_minor: amount,
        }),
    }
}

impl IngestionApi {
    pub(super) async fn get_advocacy_summaries(
        &self,
        request: pb::GetAdvocacySummariesRequest,
    ) -> ApiResult<pb::GetAdvocacySummariesResponse> {
        let (ids, as_of) = batch_on_a_day(request.account_ids, request.as_of.as_ref())?;
        let cutoff = signals::cutoff(as_of);
        let known: Vec<String> = accounts::get_many(&self.pool, &ids)
            .await?
            .into_iter()
            .map(|a| a.account_id)
            .collect();
        let activities: HashMap<String, Vec<AdvocacyRecord>> =
            records::as_of_many(&self.pool, &known, cutoff).await?;
        let activities: HashMap<String, Vec<AdvocacyRecord>> = activities
            .into_iter()
            .map(|(id, list)| {
                (
                    id,
                    list.into_iter()
                        .filter(|a| a.occurred_at < cutoff)
                        .collect(),
                )
            })
            .collect();
        // What each referred account pays on the day.
        let mut referred: Vec<String> = activities
            .values()
            .flatten()
            .filter_map(|a| a.referred_account_id.clone())
            .collect();
        referred.sort();
        referred.dedup();
        let paying: HashMap<String, Money> = signals::load_many(&self.pool, &referred, as_of)
            .await?
            .iter()
            .filter_map(|inputs| {
                let arr = signals::compute(inputs, as_of).arr?;
                (arr.amount_minor > 0).then(|| (inputs.account_id.clone(), arr))
            })
            .collect();
        let accounts = known
            .into_iter()
            .map(|account_id| {
                let mut summary = AdvocacySummary::default();
                let mut last = None;
                for activity in activities.get(&account_id).into_iter().flatten() {
                    let count = match activity.kind {
                        AdvocacyKind::Reference => &mut summary.references,
                        AdvocacyKind::CaseStudy => &mut summary.case_studies,
                        AdvocacyKind::Review => &mut summary.reviews,
                        AdvocacyKind::Referral => &mut summary.referrals,
                        AdvocacyKind::FeedbackAdopted => &mut summary.feedback_adopted,
                    };
                    *count += 1;
                    last = last.max(Some(activity.occurred_at));
                    let won = activity
                        .referred_account_id
                        .as_ref()
                        .and_then(|id| paying.get(id));
                    if let Some(arr) = won {
                        summary.referrals_won += 1;
                        add_money(
                            &mut summary.referred_arr,
                            &arr.currency_code,
                            arr.amount_minor,
                        );
                    }
                }
                summary.last_activity_time = last.map(time::to_timestamp);
                pb::AccountAdvocacy {
                    account_id,
                    summary: Some(summary),
                }
            })
            .collect();
        Ok(pb::GetAdvocacySummariesResponse { accounts })
    }
}

/// The impact an account's latest NPS response of the year before `cutoff`
/// tells.
fn impact(inputs: &signals::Inputs, cutoff: chrono::DateTime<Utc>) -> pb::Impact {
    let since = cutoff - chrono::Duration::days(365);
    let latest = inputs
        .surveys
        .iter()
        .filter(|s| s.kind == SurveyKind::Nps && s.responded_at >= since && s.responded_at < cutoff)
        .max_by_key(|s| (s.responded_at, s.response_id.clone()));
    match latest.map(|s| s.score) {
        None => pb::Impact::NotSurveyed,
        Some(9..) => pb::Impact::Positive,
        Some(7..=8) => pb::Impact::Neutral,
        Some(_) => pb::Impact::Negative,
    }
}

impl IngestionApi {
    pub(super) async fn get_account_values(
        &self,
        request: pb::GetAccountValuesRequest,
    ) -> ApiResult<pb::GetAccountValuesResponse> {
        let (ids, as_of) = batch_on_a_day(request.account_ids, request.as_of.as_ref())?;
        let cutoff = signals::cutoff(as_of);
        let loaded = signals::load_many(&self.pool, &ids, as_of).await?;
        let known: Vec<String> = loaded.iter().map(|i| i.account_id.clone()).collect();
        let catalog: HashMap<_, Vec<FeatureRecord>> =
            records::catalog_as_of_each(&self.pool, [cutoff]).await?;
        let advanced: Vec<String> = catalog
            .get(&cutoff)
            .into_iter()
            .flatten()
            .filter(|f| f.tier == FeatureTier::Advanced)
            .map(|f| f.feature_name.clone())
            .collect();
        // Who used what in the 30 days up to the cutoff, from the events.
        let users = crate::events::active_users(&self.pool, &known, cutoff, &advanced).await?;
        let accounts = loaded
            .iter()
            .map(|inputs| {
                let computed = signals::compute(inputs, as_of);
                let usage_at = |measure, day| {
                    inputs
                        .plan_usage
                        .get(&day)
                        .map(|u: &signals::Usage| u.measure(measure))
                };
                let outcomes: Vec<Outcome> = inputs
                    .plans
                    .iter()
                    .flat_map(|plan| plans::progress(plan, as_of, &inputs.metrics, &usage_at))
                    .collect();
                let count = |status| outcomes.iter().filter(|o| o.status == status).count() as i64;
                let (active, advanced) = users.get(&inputs.account_id).copied().unwrap_or_default();
                pb::AccountValue {
                    account_id: inputs.account_id.clone(),
                    segment: inputs.segment.clone(),
                    seats: i64::from(computed.seats_purchased),
                    active_users_30d: active,
                    advanced_users_30d: advanced,
                    basic_users_30d: active - advanced,
                    objectives_met: count(Status::Met),
                    objectives_decided: count(Status::Met) + count(Status::Missed),
                    impact: impact(inputs, cutoff) as i32,
                    objectives_on_track: count(Status::OnTrack),
                    objectives_at_risk: count(Status::AtRisk),
                    objectives_missed: count(Status::Missed),
                    objectives_no_data: count(Status::NoData),
                }
            })
            .collect();
        Ok(pb::GetAccountValuesResponse { accounts })
    }
}
