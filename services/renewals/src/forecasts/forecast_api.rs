//! Forecasts for a window and the forecast stream.

use super::*;

impl RenewalsApi {
    pub(crate) async fn forecast_renewals(
        &self,
        request: pb::ForecastRenewalsRequest,
    ) -> ApiResult<pb::ForecastRenewalsResponse> {
        let mut violations = Violations::default();
        let mut filter = opportunity_filter(
            request.window.as_ref(),
            "",
            true,
            &request.segment,
            "",
            &mut violations,
        );
        let as_of = day_or_today(request.as_of.as_ref(), "as_of", &mut violations);
        let currency = currency(&request.currency_code, "currency_code", &mut violations);
        violations.into_result()?;
        filter.currency = Some(currency.clone());
        let context = context(&self.pool, &self.history, as_of).await?;
        let rows = resolved_rows(&self.pool, &filter, &context).await?;
        let lines: Vec<Line> = rows.iter().map(|(_, r)| r.line.clone()).collect();
        let totals = forecast::totals(&lines);
        Ok(pb::ForecastRenewalsResponse {
            totals: Some(totals_to_proto(&currency, &totals)),
            categories: category_summaries(&currency, &lines.iter().collect::<Vec<_>>()),
            calibration_outcomes: context.calibration.outcomes as i64,
        })
    }

    pub(crate) async fn stream_forecast(
        &self,
        request: pb::StreamForecastRequest,
    ) -> ApiResult<ForecastStream> {
        let scope = forecast_scope(&request, "")?;
        // The rows are counted and read while the history is.
        let mut feed = Feed::read(&self.pool, &scope.filter);
        let context = context(&self.pool, &self.history, scope.as_of).await?;
        let total = feed.total().await.unwrap_or_default();
        // A small buffer: the producer waits for a slow reader (HTTP/2 flow
        // control reaches back here) and stops when the reader goes away.
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        tokio::spawn(async move {
            let mut first = true;
            let result = walk(feed, &scope, &context, |rows| {
                let message = pb::StreamForecastResponse {
                    rows,
                    total_count: if std::mem::take(&mut first) { total } else { 0 },
                };
                let sender = sender.clone();
                async move { sender.send(Ok(message)).await.is_ok() }
            })
            .await;
            match result {
                Ok(true) => {
                    if first {
                        let _ = sender
                            .send(Ok(pb::StreamForecastResponse {
                                rows: Vec::new(),
                                total_count: total,
                            }))
                            .await;
                    }
                }
                Ok(false) => tracing::info!("forecast stream cancelled by the caller"),
                Err(error) => {
                    let _ = sender.send(Err(error.into())).await;
                }
            }
        });
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        )))
    }
}
