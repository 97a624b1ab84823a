//! The value journey's records: success plans and advocacy activities,
//! validated from their protos.

use std::collections::HashSet;

use super::*;
use crate::kinds::{AdvocacyKind, AdvocacyRecord, Measure, ObjectiveDef, PlanRecord, UsageMeasure};

const MAX_OBJECTIVES: usize = 50;

pub fn success_plan(c: &mut Checker<'_>, item: &pb::SuccessPlan, path: &str) -> Option<PlanRecord> {
    clean(c, |c| {
        c.id(&item.plan_id, format!("{path}.plan_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        c.violations
            .require_text(&item.name, format!("{path}.name"), MAX_NAME);
        c.violations
            .limit_text(&item.owner, format!("{path}.owner"), MAX_LABEL);
        let start_on = c.date(item.start_on.as_ref(), format!("{path}.start_on"));
        c.violations.check(
            (1..=MAX_OBJECTIVES).contains(&item.objectives.len()),
            format!("{path}.objectives"),
            format!("must hold 1 to {MAX_OBJECTIVES} objectives"),
        );
        let mut seen = HashSet::new();
        let mut objectives = Vec::with_capacity(item.objectives.len());
        for (i, objective) in item.objectives.iter().enumerate() {
            let at = format!("{path}.objectives[{i}]");
            c.id(&objective.objective_id, format!("{at}.objective_id"));
            if !seen.insert(objective.objective_id.as_str()) {
                c.violations.add(
                    format!("{at}.objective_id"),
                    "is used by an earlier objective",
                );
            }
            c.violations
                .require_text(&objective.name, format!("{at}.name"), MAX_NAME);
            c.violations
                .limit_text(&objective.owner, format!("{at}.owner"), MAX_LABEL);
            use pb::objective::Measure as M;
            let measure = match &objective.measure {
                Some(M::MetricId(id)) => {
                    c.id(id, format!("{at}.metric_id"));
                    Some(Measure::Metric(id.clone()))
                }
                Some(M::Usage(usage)) => {
                    let usage = match pb::UsageMeasure::try_from(*usage) {
                        Ok(pb::UsageMeasure::ActiveUsers30d) => Some(UsageMeasure::ActiveUsers30d),
                        Ok(pb::UsageMeasure::Events30d) => Some(UsageMeasure::Events30d),
                        _ => None,
                    };
                    c.known(usage, format!("{at}.usage")).map(Measure::Usage)
                }
                None => {
                    c.violations
                        .add(format!("{at}.measure"), "is required: metric_id or usage");
                    None
                }
            };
            c.violations.check(
                objective.target.is_finite(),
                format!("{at}.target"),
                "must be a finite number",
            );
            let due_on = c.date(objective.due_on.as_ref(), format!("{at}.due_on"));
            if let (Some(start), Some(due)) = (start_on, due_on) {
                c.violations.check(
                    due > start,
                    format!("{at}.due_on"),
                    "must be after the plan's start_on",
                );
            }
            if let (Some(measure), Some(due_on)) = (measure, due_on) {
                objectives.push(ObjectiveDef {
                    objective_id: objective.objective_id.clone(),
                    name: objective.name.clone(),
                    owner: objective.owner.clone(),
                    measure,
                    target: objective.target,
                    due_on,
                });
            }
        }
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        Some(PlanRecord {
            plan_id: item.plan_id.clone(),
            account_id: item.account_id.clone(),
            name: item.name.clone(),
            owner: item.owner.clone(),
            start_on: start_on?,
            objectives,
            updated_at: updated_at?,
        })
    })
}

pub fn advocacy_activity(
    c: &mut Checker<'_>,
    item: &pb::AdvocacyActivity,
    path: &str,
) -> Option<AdvocacyRecord> {
    clean(c, |c| {
        c.id(&item.activity_id, format!("{path}.activity_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        let kind = match pb::AdvocacyKind::try_from(item.kind) {
            Ok(pb::AdvocacyKind::Reference) => Some(AdvocacyKind::Reference),
            Ok(pb::AdvocacyKind::CaseStudy) => Some(AdvocacyKind::CaseStudy),
            Ok(pb::AdvocacyKind::Review) => Some(AdvocacyKind::Review),
            Ok(pb::AdvocacyKind::Referral) => Some(AdvocacyKind::Referral),
            Ok(pb::AdvocacyKind::FeedbackAdopted) => Some(AdvocacyKind::FeedbackAdopted),
            _ => None,
        };
        let kind = c.known(kind, format!("{path}.kind"));
        let occurred_at = c.past(item.occurred_at.as_ref(), format!("{path}.occurred_at"));
        c.violations
            .limit_text(&item.contact_id, format!("{path}.contact_id"), MAX_ID);
        c.violations.limit_text(
            &item.referred_account_id,
            format!("{path}.referred_account_id"),
            MAX_ID,
        );
        if !item.referred_account_id.is_empty() {
            c.violations.check(
                kind == Some(AdvocacyKind::Referral),
                format!("{path}.referred_account_id"),
                "only a referral brings an account",
            );
            c.violations.check(
                item.referred_account_id != item.account_id,
                format!("{path}.referred_account_id"),
                "must name another account",
            );
        }
        c.violations
            .limit_text(&item.note, format!("{path}.note"), MAX_TEXT);
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        Some(AdvocacyRecord {
            activity_id: item.activity_id.clone(),
            account_id: item.account_id.clone(),
            kind: kind?,
            occurred_at: occurred_at?,
            contact_id: item.contact_id.clone(),
            referred_account_id: (!item.referred_account_id.is_empty())
                .then(|| item.referred_account_id.clone()),
            note: item.note.clone(),
            updated_at: updated_at?,
        })
    })
}
