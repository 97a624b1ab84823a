//! What happens at an account: features, tickets, surveys, invoices,
//! external signals and success metrics.

use tenure_platform::money;
use tenure_proto::ingestion::v1 as pb;

use super::*;
use crate::kinds::*;

pub fn feature(c: &mut Checker<'_>, item: &pb::Feature, path: &str) -> Option<FeatureRecord> {
    clean(c, |c| {
        c.violations.require_text(
            &item.feature_name,
            format!("{path}.feature_name"),
            MAX_LABEL,
        );
        c.violations
            .limit_text(&item.display_name, format!("{path}.display_name"), MAX_NAME);
        let tier = match pb::FeatureTier::try_from(item.tier) {
            Ok(pb::FeatureTier::Basic) => Some(FeatureTier::Basic),
            Ok(pb::FeatureTier::Advanced) => Some(FeatureTier::Advanced),
            _ => None,
        };
        let tier = c.known(tier, format!("{path}.tier"));
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        Some(FeatureRecord {
            feature_name: item.feature_name.clone(),
            display_name: item.display_name.clone(),
            tier: tier?,
            updated_at: updated_at?,
        })
    })
}

pub fn ticket(c: &mut Checker<'_>, item: &pb::Ticket, path: &str) -> Option<TicketRecord> {
    clean(c, |c| {
        c.id(&item.ticket_id, format!("{path}.ticket_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        let opened_at = c.past(item.opened_at.as_ref(), format!("{path}.opened_at"));
        let closed_at = match &item.closed_at {
            Some(t) => c.past(Some(t), format!("{path}.closed_at")),
            None => None,
        };
        if let (Some(opened), Some(closed)) = (opened_at, closed_at) {
            c.violations.check(
                closed >= opened,
                format!("{path}.closed_at"),
                "must not be before opened_at",
            );
        }
        let priority = match pb::TicketPriority::try_from(item.priority) {
            Ok(pb::TicketPriority::Unspecified) | Err(_) => None,
            Ok(p) => Some(p as u8),
        };
        let priority = c.known(priority, format!("{path}.priority"));
        let category = match pb::TicketCategory::try_from(item.category) {
            Ok(pb::TicketCategory::Defect) => Some(TicketCategory::Defect),
            Ok(pb::TicketCategory::HowTo) => Some(TicketCategory::HowTo),
            Ok(pb::TicketCategory::FeatureRequest) => Some(TicketCategory::FeatureRequest),
            Ok(pb::TicketCategory::Billing) => Some(TicketCategory::Billing),
            Ok(pb::TicketCategory::Other) => Some(TicketCategory::Other),
            _ => None,
        };
        let category = c.known(category, format!("{path}.category"));
        let status = match pb::TicketStatus::try_from(item.status) {
            Ok(pb::TicketStatus::Open) => Some(TicketStatus::Open),
            Ok(pb::TicketStatus::Pending) => Some(TicketStatus::Pending),
            Ok(pb::TicketStatus::Solved) => Some(TicketStatus::Solved),
            Ok(pb::TicketStatus::Closed) => Some(TicketStatus::Closed),
            _ => None,
        };
        let status = c.known(status, format!("{path}.status"));
        c.violations.check(
            (0..=5).contains(&item.csat),
            format!("{path}.csat"),
            "must be 1-5, or 0 when not rated",
        );
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        Some(TicketRecord {
            ticket_id: item.ticket_id.clone(),
            account_id: item.account_id.clone(),
            opened_at: opened_at?,
            closed_at,
            priority: priority?,
            category: category?,
            status: status?,
            csat: (item.csat > 0).then_some(item.csat as u8),
            updated_at: updated_at?,
        })
    })
}

pub fn survey(c: &mut Checker<'_>, item: &pb::SurveyResponse, path: &str) -> Option<SurveyRecord> {
    clean(c, |c| {
        c.id(&item.response_id, format!("{path}.response_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        c.violations
            .limit_text(&item.contact_id, format!("{path}.contact_id"), MAX_ID);
        c.violations
            .limit_text(&item.comment, format!("{path}.comment"), MAX_TEXT);
        let kind = match pb::SurveyKind::try_from(item.kind) {
            Ok(pb::SurveyKind::Nps) => Some(SurveyKind::Nps),
            Ok(pb::SurveyKind::Csat) => Some(SurveyKind::Csat),
            _ => None,
        };
        let kind = c.known(kind, format!("{path}.kind"));
        match kind {
            Some(SurveyKind::Nps) => c.violations.check(
                (0..=10).contains(&item.score),
                format!("{path}.score"),
                "NPS scores are 0-10",
            ),
            Some(SurveyKind::Csat) => c.violations.check(
                (1..=5).contains(&item.score),
                format!("{path}.score"),
                "CSAT scores are 1-5",
            ),
            None => {}
        }
        let responded_at = c.past(item.responded_at.as_ref(), format!("{path}.responded_at"));
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        Some(SurveyRecord {
            response_id: item.response_id.clone(),
            account_id: item.account_id.clone(),
            contact_id: item.contact_id.clone(),
            kind: kind?,
            score: item.score,
            comment: item.comment.clone(),
            responded_at: responded_at?,
            updated_at: updated_at?,
        })
    })
}

pub fn invoice(c: &mut Checker<'_>, item: &pb::Invoice, path: &str) -> Option<InvoiceRecord> {
    clean(c, |c| {
        c.id(&item.invoice_id, format!("{path}.invoice_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        let amount = money::non_negative(
            item.amount.as_ref(),
            &format!("{path}.amount"),
            c.violations,
        );
        let issued_on = c.date(item.issued_on.as_ref(), format!("{path}.issued_on"));
        let due_on = c.date(item.due_on.as_ref(), format!("{path}.due_on"));
        let paid_on = match &item.paid_on {
            Some(d) => c.date(Some(d), format!("{path}.paid_on")),
            None => None,
        };
        if let (Some(issued), Some(due)) = (issued_on, due_on) {
            c.violations.check(
                due >= issued,
                format!("{path}.due_on"),
                "must not be before issued_on",
            );
        }
        let status = match pb::InvoiceStatus::try_from(item.status) {
            Ok(pb::InvoiceStatus::Open) => Some(InvoiceStatus::Open),
            Ok(pb::InvoiceStatus::Paid) => Some(InvoiceStatus::Paid),
            Ok(pb::InvoiceStatus::Void) => Some(InvoiceStatus::Void),
            Ok(pb::InvoiceStatus::Uncollectible) => Some(InvoiceStatus::Uncollectible),
            _ => None,
        };
        let status = c.known(status, format!("{path}.status"));
        if status == Some(InvoiceStatus::Paid) {
            c.violations.check(
                paid_on.is_some(),
                format!("{path}.paid_on"),
                "is required for a paid invoice",
            );
        }
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        let amount = amount?;
        Some(InvoiceRecord {
            invoice_id: item.invoice_id.clone(),
            account_id: item.account_id.clone(),
            currency: amount.currency_code().to_owned(),
            amount_minor: amount.minor,
            issued_on: issued_on?,
            due_on: due_on?,
            paid_on,
            status: status?,
            updated_at: updated_at?,
        })
    })
}

pub fn external_signal(
    c: &mut Checker<'_>,
    item: &pb::ExternalSignal,
    path: &str,
) -> Option<SignalRecord> {
    clean(c, |c| {
        c.id(&item.signal_id, format!("{path}.signal_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        c.violations
            .limit_text(&item.source, format!("{path}.source"), MAX_LABEL);
        let kind = match pb::ExternalSignalKind::try_from(item.kind) {
            Ok(pb::ExternalSignalKind::FundingRound) => Some(SignalKind::FundingRound),
            Ok(pb::ExternalSignalKind::Acquisition) => Some(SignalKind::Acquisition),
            Ok(pb::ExternalSignalKind::Layoffs) => Some(SignalKind::Layoffs),
            Ok(pb::ExternalSignalKind::KeyPersonChange) => Some(SignalKind::KeyPersonChange),
            Ok(pb::ExternalSignalKind::CompetitorEngagement) => {
                Some(SignalKind::CompetitorEngagement)
            }
            Ok(pb::ExternalSignalKind::Other) => Some(SignalKind::Other),
            _ => None,
        };
        let kind = c.known(kind, format!("{path}.kind"));
        let occurred_at = c.past(item.occurred_at.as_ref(), format!("{path}.occurred_at"));
        let properties = properties(c, item.properties.as_ref(), &format!("{path}.properties"));
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        Some(SignalRecord {
            signal_id: item.signal_id.clone(),
            account_id: item.account_id.clone(),
            kind: kind?,
            occurred_at: occurred_at?,
            source: item.source.clone(),
            properties,
            updated_at: updated_at?,
        })
    })
}

pub fn success_metric(
    c: &mut Checker<'_>,
    item: &pb::SuccessMetric,
    path: &str,
) -> Option<MetricRecord> {
    clean(c, |c| {
        c.id(&item.metric_id, format!("{path}.metric_id"));
        c.id(&item.account_id, format!("{path}.account_id"));
        c.violations
            .require_text(&item.name, format!("{path}.name"), MAX_NAME);
        c.violations
            .limit_text(&item.unit, format!("{path}.unit"), MAX_LABEL);
        c.violations.check(
            item.baseline.is_finite(),
            format!("{path}.baseline"),
            "must be a finite number",
        );
        c.violations.check(
            item.target.is_finite(),
            format!("{path}.target"),
            "must be a finite number",
        );
        c.violations.check(
            item.target != item.baseline,
            format!("{path}.target"),
            "must differ from baseline",
        );
        let direction = match pb::MetricDirection::try_from(item.direction) {
            Ok(pb::MetricDirection::HigherIsBetter) => Some(Direction::HigherIsBetter),
            Ok(pb::MetricDirection::LowerIsBetter) => Some(Direction::LowerIsBetter),
            _ => None,
        };
        let direction = c.known(direction, format!("{path}.direction"));
        if let Some(direction) = direction {
            let agrees = match direction {
                Direction::HigherIsBetter => item.target > item.baseline,
                Direction::LowerIsBetter => item.target < item.baseline,
            };
            c.violations.check(
                agrees,
                format!("{path}.target"),
                "must lie in the metric's better direction from baseline",
            );
        }
        let mut values = Vec::with_capacity(item.values.len());
        for (i, value) in item.values.iter().enumerate() {
            let day = c.date(
                value.measured_on.as_ref(),
                format!("{path}.values[{i}].measured_on"),
            );
            c.violations.check(
                value.value.is_finite(),
                format!("{path}.values[{i}].value"),
                "must be a finite number",
            );
            if let Some(day) = day {
                values.push((day, value.value));
            }
        }
        values.sort_by_key(|(day, _)| *day);
        let updated_at = c.updated_at(item.updated_at.as_ref(), path);
        Some(MetricRecord {
            metric_id: item.metric_id.clone(),
            account_id: item.account_id.clone(),
            name: item.name.clone(),
            unit: item.unit.clone(),
            baseline: item.baseline,
            target: item.target,
            direction: direction?,
            values,
            updated_at: updated_at?,
        })
    })
}
