//! Success plans' progress: an account's plans as they stood at a day's end,
//! each objective judged on its measure's values (`crate::plans`).

use std::collections::BTreeMap;

use super::*;
use crate::kinds::{Measure, MetricRecord, PlanRecord, UsageMeasure};
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

impl IngestionApi {
    pub(super) async fn get_success_plan_progress(
        &self,
        request: pb::GetSuccessPlanProgressRequest,
    ) -> ApiResult<pb::GetSuccessPlanProgressResponse> {
        let mut violations = Violations::default();
        violations.require_text(&request.account_id, "account_id", MAX_ID);
        violations.limit_text(&request.plan_id, "plan_id", MAX_ID);
        let as_of = match &request.as_of {
            None => Some(Utc::now().date_naive()),
            Some(day) => reads::past_day(Some(day), "as_of", &mut violations),
        };
        violations.into_result()?;
        let as_of = as_of.unwrap_or_else(|| Utc::now().date_naive());
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
