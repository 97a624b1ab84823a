//! Listing and summarising the renewal pipeline.

use super::*;

impl RenewalsApi {
    pub(crate) async fn list_renewal_pipeline(
        &self,
        request: pb::ListRenewalPipelineRequest,
    ) -> ApiResult<pb::ListRenewalPipelineResponse> {
        let size = paging::page_size(request.page_size)? as usize;
        let after: Option<(NaiveDate, String)> = paging::decode_token(&request.page_token)?;
        let mut violations = Violations::default();
        let filter = opportunity_filter(
            request.window.as_ref(),
            "",
            false,
            &request.segment,
            &request.owner,
            &mut violations,
        );
        let category = match request.category {
            0 => None,
            code => {
                let known = pb::ForecastCategory::try_from(code).is_ok();
                violations.check(known, "category", "is not a known forecast category");
                Some(code)
            }
        };
        violations.into_result()?;
        let context = context(&self.pool, &self.history, Utc::now().date_naive()).await?;
        let mut page = Vec::new();
        let mut next_page_token = String::new();
        let mut last_kept: Option<(NaiveDate, String)> = None;
        // Category and state are judged per row, so read until the page fills.
        let mut pages = Pages::after(&self.pool, &filter, after);
        'fill: while let Some(rows) = pages.next().await? {
            for row in rows {
                let resolved = views::resolve(&context, &row);
                if !request.include_closed && resolved.state != OPEN {
                    continue;
                }
                if category.is_some_and(|c| c != resolved.line.category as i32) {
                    continue;
                }
                if page.len() == size {
                    // One more match exists: the page ends at the last kept row.
                    next_page_token = last_kept
                        .as_ref()
                        .map(paging::encode_token)
                        .unwrap_or_default();
                    break 'fill;
                }
                last_kept = Some((row.term_end, row.subscription_id.clone()));
                page.push(views::to_proto(&context, row, &resolved));
            }
        }
        Ok(pb::ListRenewalPipelineResponse {
            opportunities: page,
            next_page_token,
        })
    }

    pub(crate) async fn summarize_renewal_pipeline(
        &self,
        request: pb::SummarizeRenewalPipelineRequest,
    ) -> ApiResult<pb::SummarizeRenewalPipelineResponse> {
        let mut violations = Violations::default();
        let filter = opportunity_filter(
            request.window.as_ref(),
            "",
            false,
            &request.segment,
            &request.owner,
            &mut violations,
        );
        violations.into_result()?;
        let context = context(&self.pool, &self.history, Utc::now().date_naive()).await?;
        let rows = resolved_rows(&self.pool, &filter, &context).await?;
        // Open renewals by category, and those already lost; per currency
        // the first one seen (the pipeline is summarised in one currency).
        let currency = rows
            .first()
            .map_or("USD".to_owned(), |(r, _)| r.currency.clone());
        let lines: Vec<&Line> = rows
            .iter()
            .filter(|(row, resolved)| {
                row.currency == currency
                    && (resolved.state == OPEN || resolved.line.category == Category::Lost)
            })
            .map(|(_, resolved)| &resolved.line)
            .collect();
        Ok(pb::SummarizeRenewalPipelineResponse {
            categories: category_summaries(&currency, &lines),
            total_count: lines.len() as i64,
            total_arr: Some(money(&currency, lines.iter().map(|l| l.arr_minor).sum())),
        })
    }
}
