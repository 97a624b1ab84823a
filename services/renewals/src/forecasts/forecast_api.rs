//! Forecasts for a window, their backtest, and the forecast stream.

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
        let context = context(&self.pool, as_of).await?;
        let rows = resolved_rows(&self.pool, &filter, &context).await?;
        let lines: Vec<Line> = rows.iter().map(|(_, r)| r.line.clone()).collect();
        let totals = forecast::totals(&lines);
        Ok(pb::ForecastRenewalsResponse {
            totals: Some(totals_to_proto(&currency, &totals)),
            categories: category_summaries(&currency, &lines.iter().collect::<Vec<_>>()),
            calibration_outcomes: context.calibration.outcomes as i64,
        })
    }

    pub(crate) async fn backtest_forecast(
        &self,
        request: pb::BacktestForecastRequest,
    ) -> ApiResult<pb::BacktestForecastResponse> {
        let mut violations = Violations::default();
        let mut filter = opportunity_filter(
            request.window.as_ref(),
            "",
            true,
            &request.segment,
            "",
            &mut violations,
        );
        let today = Utc::now().date_naive();
        let as_of = time::date(request.as_of.as_ref(), "as_of", &mut violations);
        if let Some(as_of) = as_of {
            violations.check(as_of < today, "as_of", "must be a past date");
        }
        let currency = currency(&request.currency_code, "currency_code", &mut violations);
        violations.into_result()?;
        let Some(as_of) = as_of else {
            return Err(ApiError::invalid("as_of", "is required"));
        };
        filter.currency = Some(currency.clone());
        let then = context(&self.pool, as_of).await?;
        let now = context(&self.pool, today).await?;
        let rows = resolved_rows(&self.pool, &filter, &then).await?;
        let forecast_lines: Vec<Line> = rows.iter().map(|(_, r)| r.line.clone()).collect();
        let mut predicted = Vec::new();
        let mut pairs = Vec::new();
        let (mut actual_arr, mut actual_count, mut undecided) = (0_i64, 0_i64, 0_i64);
        for (row, past) in &rows {
            let known = views::resolve(&now, row);
            let Some(actual) = known.line.decided_arr_minor else {
                undecided += 1;
                continue;
            };
            actual_arr += actual;
            actual_count += i64::from(actual > 0);
            predicted.push(past.line.clone());
            if past.line.decided_arr_minor.is_none() {
                pairs.push((past.line.probability, actual > 0));
            }
        }
        let compared = forecast::totals(&predicted);
        Ok(pb::BacktestForecastResponse {
            forecast: Some(totals_to_proto(
                &currency,
                &forecast::totals(&forecast_lines),
            )),
            actual_renewed_arr: Some(money(&currency, actual_arr)),
            actual_renewed_count: actual_count,
            arr_error: Some(money(&currency, compared.expected_minor - actual_arr)),
            count_error: compared.expected_renewals - actual_count as f64,
            calibration: forecast::calibration_table(&pairs)
                .into_iter()
                .map(|b| pb::CalibrationBucket {
                    low: b.low,
                    high: b.high,
                    count: b.count as i64,
                    mean_predicted: b.mean_predicted,
                    actual_rate: b.actual_rate,
                })
                .collect(),
            undecided_count: undecided,
        })
    }

    pub(crate) async fn stream_forecast(
        &self,
        request: pb::StreamForecastRequest,
    ) -> ApiResult<ForecastStream> {
        let scope = forecast_scope(&request, "")?;
        let context = context(&self.pool, scope.as_of).await?;
        let total = pipeline::count_opportunities(&self.pool, &scope.filter).await?;
        // A small buffer: the producer waits for a slow reader (HTTP/2 flow
        // control reaches back here) and stops when the reader goes away.
        let (sender, receiver) = tokio::sync::mpsc::channel(2);
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut first = true;
            let result = walk(&pool, &scope, &context, |rows| {
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
