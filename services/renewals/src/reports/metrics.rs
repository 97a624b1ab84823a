//! Retention over a period: contract renewal rate, the revenue movements
//! summed month by month, revenue and logo retention, and the monthly ledger.

use chrono::Months;
use tenure_platform::{ApiError, ApiResult, Violations, input, time};
use tenure_proto::renewals::v1 as pb;

use super::{movements_to_proto, mrr, rate};
use crate::contracts;
use crate::forecasts::{currency, day_or_today, filter_text};
use crate::ledger::{Book, Period, Ratio, month_starts};
use crate::pipeline;
use crate::state::RenewalsApi;
use crate::views::money;

/// The longest period reported, in months.
const MAX_MONTHS: usize = 240;

impl RenewalsApi {
    pub(crate) async fn get_retention_metrics(
        &self,
        request: pb::GetRetentionMetricsRequest,
    ) -> ApiResult<pb::GetRetentionMetricsResponse> {
        let mut violations = Violations::default();
        let period: Option<input::Period> = violations.parse("period", request.period.as_ref());
        let segment = filter_text(&request.segment, "segment", &mut violations);
        let currency = currency(&request.currency_code, "currency_code", &mut violations);
        let known_on = day_or_today(request.as_of.as_ref(), "as_of", &mut violations);
        if let Some(p) = period {
            violations.check(
                month_starts(p.start, p.end).len() <= MAX_MONTHS,
                "period",
                "must span at most 240 months",
            );
        }
        violations.into_result()?;
        let Some(input::Period { start, end }) = period else {
            return Err(ApiError::invalid("period", "is required"));
        };
        let scope = contracts::Scope {
            segment: segment.as_deref(),
            currency: Some(&currency),
        };
        let due = contracts::due(&self.pool, Some(start), end, scope, known_on).await?;
        let renewed = due.iter().filter(|d| d.renewed == Some(true)).count() as i64;
        let churned = due.iter().filter(|d| d.renewed == Some(false)).count() as i64;
        let due_count = due.len() as i64;
        let book = Book::from_versions(
            pipeline::versions_in(&self.pool, segment.as_deref(), Some(&currency)).await?,
        );
        let Period { flows, retention } = book.period(start, end);
        Ok(pb::GetRetentionMetricsResponse {
            contract_renewal_rate: rate(Ratio::new(renewed, renewed + churned)),
            contracts_due: due_count,
            contracts_renewed: renewed,
            contracts_churned: churned,
            contracts_pending: due_count - renewed - churned,
            recurring_revenue_rate: rate(flows.recurring_revenue_rate()),
            movements: Some(movements_to_proto(&currency, &flows)),
            gross_revenue_retention: rate(retention.gross_retention()),
            net_revenue_retention: rate(retention.net_retention()),
            logo_retention: rate(retention.logo_retention()),
            quick_ratio: rate(flows.quick_ratio()),
            gross_mrr_churn: rate(flows.gross_mrr_churn()),
            net_mrr_churn: rate(flows.net_mrr_churn()),
        })
    }

    pub(crate) async fn get_revenue_ledger(
        &self,
        request: pb::GetRevenueLedgerRequest,
    ) -> ApiResult<pb::GetRevenueLedgerResponse> {
        let mut violations = Violations::default();
        let period: Option<input::Period> = violations.parse("period", request.period.as_ref());
        let segment = filter_text(&request.segment, "segment", &mut violations);
        let currency = currency(&request.currency_code, "currency_code", &mut violations);
        let months = period.map_or_else(Vec::new, |p| month_starts(p.start, p.end));
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
                let m = book.period(*month, next).flows;
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
}
