//! Prospect fit over gRPC: training, reading and scoring. Requests become
//! the domain's inputs ([`Firmographics`]) here; the domain never sees a
//! proto.

use std::collections::BTreeSet;

use super::*;
use crate::prospect::fit::{Firmographics, ProspectFit, Score};
use crate::training::ModelKind;

/// Prospects in one scoring request.
const MAX_PROSPECTS: usize = 1000;
/// Attributes a prospect may carry, of each kind.
const MAX_ATTRIBUTES: usize = 50;

fn attribute_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A prospect as the domain takes it, or the violations under `field`.
fn firmographics(
    prospect: &pb::Prospect,
    field: &str,
    violations: &mut Violations,
) -> Option<Firmographics> {
    let before = violations.len();
    violations.require_text(
        &prospect.prospect_id,
        format!("{field}.prospect_id"),
        MAX_ID,
    );
    violations.limit_text(&prospect.segment, format!("{field}.segment"), MAX_ID);
    violations.limit_text(&prospect.industry, format!("{field}.industry"), MAX_ID);
    violations.check(
        (1..=1_000_000).contains(&prospect.seats),
        format!("{field}.seats"),
        "must be 1-1000000",
    );
    violations.check(
        (1..=120).contains(&prospect.term_months),
        format!("{field}.term_months"),
        "must be 1-120 (1 for monthly, 12 for annual)",
    );
    let arr = tenure_platform::money::non_negative(
        prospect.arr.as_ref(),
        &format!("{field}.arr"),
        violations,
    );
    violations.check(
        prospect.number_attributes.len() <= MAX_ATTRIBUTES
            && prospect.category_attributes.len() <= MAX_ATTRIBUTES,
        format!("{field}.attributes"),
        format!("at most {MAX_ATTRIBUTES} of each kind"),
    );
    for (name, value) in &prospect.number_attributes {
        violations.check(
            attribute_name_ok(name),
            format!("{field}.number_attributes[{name}]"),
            "names are lower_snake_case, at most 64 characters",
        );
        violations.check(
            value.is_finite(),
            format!("{field}.number_attributes[{name}]"),
            "must be a finite number",
        );
    }
    for (name, value) in &prospect.category_attributes {
        violations.check(
            attribute_name_ok(name),
            format!("{field}.category_attributes[{name}]"),
            "names are lower_snake_case, at most 64 characters",
        );
        violations.require_text(
            value,
            format!("{field}.category_attributes[{name}]"),
            MAX_ID,
        );
    }
    if violations.len() > before {
        return None;
    }
    Some(Firmographics {
        segment: prospect.segment.clone(),
        industry: prospect.industry.clone(),
        seats: f64::from(prospect.seats),
        arr_minor: arr.map_or(0.0, |a| a.minor as f64),
        term_months: f64::from(prospect.term_months),
        numbers: prospect.number_attributes.clone(),
        categories: prospect.category_attributes.clone(),
    })
}

fn model_id(value: &str, violations: &mut Violations) -> Option<uuid::Uuid> {
    if value.is_empty() {
        return None;
    }
    let parsed = uuid::Uuid::parse_str(value).ok();
    violations.check(parsed.is_some(), "model_id", "is not a model id");
    parsed
}

fn fit_to_proto(prospect_id: String, score: Score) -> pb::ProspectFit {
    pb::ProspectFit {
        prospect_id,
        renewal_probability: score.renewal_probability,
        reasons: score
            .reasons
            .into_iter()
            .map(|(feature, contribution)| pb::SignalContribution {
                feature,
                contribution,
            })
            .collect(),
        look_alikes: score.look_alikes,
        look_alike_count: i32::try_from(score.look_alike_count).unwrap_or(i32::MAX),
        look_alike_renewal_rate_pct: score.look_alike_renewal_rate_pct,
        renewal_probability_at_look: score.renewal_probability_at_look,
        gaps: score
            .gaps
            .into_iter()
            .map(|gap| pb::IndicatorGap {
                signal: gap.signal,
                look_alike_value: gap.look_alike_value,
                renewed_value: gap.renewed_value,
                churned_value: gap.churned_value,
                renewal_probability_if_reached: gap.renewal_probability_if_reached,
                renewal_probability_if_missed: gap.renewal_probability_if_missed,
            })
            .collect(),
        renewal_probability_if_gaps_closed: score.renewal_probability_if_gaps_closed,
    }
}

impl HealthApi {
    pub(super) async fn train_prospect_model(
        &self,
        request: pb::TrainProspectModelRequest,
    ) -> ApiResult<pb::TrainProspectModelResponse> {
        const METHOD: &str = "TrainProspectModel";
        let (look_days, l2, as_of) = super::models::training_settings(
            ("look_days", request.look_days, 30..=365),
            request.l2,
            request.as_of.as_ref(),
        )?;
        idempotency::once(&self.pool, SCHEMA, METHOD, &request, async |tx| {
            let (model_id, created) = self
                .trainer
                .start_job(tx, ModelKind::Prospect, look_days, l2, as_of)
                .await?;
            Ok(pb::TrainProspectModelResponse {
                model: Some(pb::ProspectModel {
                    model_id: model_id.to_string(),
                    status: pb::ModelStatus::Running as i32,
                    look_days,
                    l2,
                    as_of: as_of.map(time::to_date),
                    create_time: Some(time::to_timestamp(created)),
                    ..Default::default()
                }),
            })
        })
        .await
    }

    pub(super) async fn get_prospect_model(
        &self,
        request: pb::GetProspectModelRequest,
    ) -> ApiResult<pb::GetProspectModelResponse> {
        let mut violations = Violations::default();
        let model_id = model_id(&request.model_id, &mut violations);
        violations.into_result()?;
        let stored = self.trainer.stored(ModelKind::Prospect, model_id).await?;
        let mut model: pb::ProspectModel = stored.report()?;
        model.model_id = stored.model_id.to_string();
        model.status = i32::from(stored.status);
        model.look_days = stored.horizon_days;
        model.l2 = stored.l2;
        model.error = stored.error;
        model.create_time = Some(time::to_timestamp(stored.create_time));
        model.finish_time = stored.finish_time.map(time::to_timestamp);
        model.as_of = stored.as_of.map(time::to_date);
        Ok(pb::GetProspectModelResponse { model: Some(model) })
    }

    pub(super) async fn score_prospects(
        &self,
        request: pb::ScoreProspectsRequest,
    ) -> ApiResult<pb::ScoreProspectsResponse> {
        let mut violations = Violations::default();
        let model_id = model_id(&request.model_id, &mut violations);
        violations.check(
            (1..=MAX_PROSPECTS).contains(&request.prospects.len()),
            "prospects",
            format!("must hold 1 to {MAX_PROSPECTS} prospects"),
        );
        let mut seen = BTreeSet::new();
        let mut inputs = Vec::with_capacity(request.prospects.len());
        for (i, prospect) in request.prospects.iter().enumerate() {
            let field = format!("prospects[{i}]");
            violations.check(
                seen.insert(prospect.prospect_id.as_str()),
                format!("{field}.prospect_id"),
                "is given twice",
            );
            inputs.extend(firmographics(prospect, &field, &mut violations));
        }
        violations.into_result()?;
        let (model_id, fit): (uuid::Uuid, ProspectFit) =
            self.trainer.ready(ModelKind::Prospect, model_id).await?;
        let fits = request
            .prospects
            .into_iter()
            .zip(inputs)
            .map(|(prospect, input)| fit_to_proto(prospect.prospect_id, fit.score(&input)))
            .collect();
        Ok(pb::ScoreProspectsResponse {
            model_id: model_id.to_string(),
            fits,
        })
    }
}
