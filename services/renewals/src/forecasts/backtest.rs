//! Forecast backtests with only what was known on the as-of day: the
//! pipeline rebuilt from the subscription versions recorded by then, each
//! account's segment as of then (from ingestion), outcomes decided by then,
//! and optionally a churn model trained only on those outcomes, scoring the
//! accounts' signals as of then. The forecast is compared with what
//! happened to the same renewals.

use std::collections::{BTreeMap, HashMap};

use chrono::{NaiveDate, Utc};
use tenure_platform::{ApiError, ApiResult, Violations, time};
use tenure_proto::health::v1 as hpb;
use tenure_proto::ingestion::v1::StreamAccountSignalsRequest;
use tenure_proto::renewals::v1 as pb;

use super::{context, currency, opportunity_filter, resolved_rows, totals_to_proto};
use crate::forecast;
use crate::ledger::Version;
use crate::pipeline::{self, OPEN, OpportunityRow};
use crate::state::RenewalsApi;
use crate::views::{self, money};

/// How each term ended, as recorded: (kind, new ARR, decided on).
type Decisions = HashMap<(String, NaiveDate), (i16, i64, NaiveDate)>;

impl RenewalsApi {
    pub(crate) async fn backtest_forecast(
        &self,
        request: pb::BacktestForecastRequest,
    ) -> ApiResult<pb::BacktestForecastResponse> {
        let mut violations = Violations::default();
        let filter = opportunity_filter(
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
        let model_id = match request.model_id.as_str() {
            "" => None,
            id => {
                let parsed = uuid::Uuid::parse_str(id).ok();
                violations.check(parsed.is_some(), "model_id", "is not a model id");
                parsed.map(|_| id.to_owned())
            }
        };
        violations.into_result()?;
        let Some(as_of) = as_of else {
            return Err(ApiError::invalid("as_of", "is required"));
        };
        if let Some(id) = &model_id {
            self.check_model_known_by(id, as_of).await?;
        }
        let mut then = context(&self.pool, &self.history, as_of).await?;
        let now = context(&self.pool, &self.history, today).await?;

        // The pipeline of the window as it stood at the end of the as-of day.
        let (from, before) = (filter.term_end_from, filter.term_end_before);
        let versions =
            pipeline::versions_known_by(&self.pool, from, before, &currency, as_of).await?;
        let mut by_subscription: BTreeMap<&str, Vec<Version>> = BTreeMap::new();
        for version in &versions {
            by_subscription
                .entry(&version.subscription_id)
                .or_default()
                .push(version.clone());
        }
        let terms: Vec<pipeline::Term> = by_subscription
            .values()
            .flat_map(|versions| pipeline::terms(versions))
            .filter(|t| {
                from.is_none_or(|f| t.term_end >= f) && before.is_none_or(|b| t.term_end < b)
            })
            .collect();
        let mut accounts: Vec<String> = terms.iter().map(|t| t.account_id.clone()).collect();
        accounts.sort();
        accounts.dedup();
        let segments = self.segments_as_of(&accounts, as_of).await?;
        let decisions = decisions(&self.pool, &terms).await?;
        let mut rows: Vec<OpportunityRow> = terms
            .into_iter()
            .map(|term| row_as_of(term, &segments, &decisions))
            .filter(|row| {
                filter
                    .segment
                    .as_ref()
                    .is_none_or(|s| row.segment.as_ref() == Some(s))
            })
            .collect();

        // The model's view of each renewal still open then.
        let mut model_predictions = 0;
        if let Some(id) = &model_id {
            then.use_model = true;
            let mut open: Vec<String> = rows
                .iter()
                .filter(|row| views::resolve(&then, row).state == OPEN)
                .map(|row| row.account_id.clone())
                .collect();
            open.sort();
            open.dedup();
            let predicted = self.predict_as_of(&open, as_of, id).await?;
            for row in &mut rows {
                if views::resolve(&then, row).state != OPEN {
                    continue;
                }
                row.churn_probability = predicted.get(&row.account_id).copied();
                model_predictions += i64::from(row.churn_probability.is_some());
            }
        }

        // What happened since, from today's pipeline.
        let mut everything = filter.clone();
        everything.segment = None;
        everything.currency = Some(currency.clone());
        let actual: HashMap<(String, NaiveDate), Option<i64>> =
            resolved_rows(&self.pool, &everything, &now)
                .await?
                .into_iter()
                .map(|(row, known)| {
                    let key = (row.subscription_id, row.term_end);
                    (key, known.line.decided_arr_minor)
                })
                .collect();
        let mut forecast_lines = Vec::new();
        let mut predicted = Vec::new();
        let mut pairs = Vec::new();
        let (mut actual_arr, mut actual_count, mut undecided) = (0_i64, 0_i64, 0_i64);
        for row in &rows {
            let past = views::resolve(&then, row);
            forecast_lines.push(past.line.clone());
            let key = (row.subscription_id.clone(), row.term_end);
            let Some(Some(renewed)) = actual.get(&key) else {
                undecided += 1;
                continue;
            };
            actual_arr += renewed;
            actual_count += i64::from(*renewed > 0);
            if past.line.decided_arr_minor.is_none() {
                pairs.push((past.line.probability, *renewed > 0));
            }
            predicted.push(past.line);
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
            calibration: calibration_buckets(&pairs),
            undecided_count: undecided,
            model_predictions,
        })
    }

    /// Refuses a model that is not ready or learned from outcomes decided
    /// after `as_of` (or from every outcome).
    async fn check_model_known_by(&self, model_id: &str, as_of: NaiveDate) -> ApiResult<()> {
        let model = self
            .health
            .clone()
            .get_churn_model(hpb::GetChurnModelRequest {
                model_id: model_id.to_owned(),
            })
            .await
            .map_err(|s| ApiError::from_upstream(s, "churn model"))?
            .into_inner()
            .model
            .unwrap_or_default();
        if model.status() != hpb::ModelStatus::Ready {
            return Err(ApiError::FailedPrecondition(format!(
                "churn model {model_id} is not ready"
            )));
        }
        let mut ignored = Violations::default();
        let trained_as_of = time::date(model.as_of.as_ref(), "", &mut ignored);
        match trained_as_of {
            Some(day) if day <= as_of => Ok(()),
            _ => Err(ApiError::FailedPrecondition(format!(
                "churn model {model_id} learned from outcomes decided after {as_of}: train one \
                 with as_of on or before it"
            ))),
        }
    }

    /// Each account's segment as ingestion knew it on `as_of`.
    async fn segments_as_of(
        &self,
        accounts: &[String],
        as_of: NaiveDate,
    ) -> ApiResult<HashMap<String, String>> {
        let mut segments = HashMap::new();
        if accounts.is_empty() {
            return Ok(segments);
        }
        let mut stream = self
            .ingestion
            .clone()
            .stream_account_signals(StreamAccountSignalsRequest {
                account_ids: accounts.to_vec(),
                as_of: Some(time::to_date(as_of)),
                ..Default::default()
            })
            .await
            .map_err(|s| ApiError::from_upstream(s, "account signals"))?
            .into_inner();
        while let Some(message) = stream
            .message()
            .await
            .map_err(|s| ApiError::from_upstream(s, "account signals"))?
        {
            if let Some(signals) = message.signals {
                segments.insert(signals.account_id, signals.segment);
            }
        }
        Ok(segments)
    }

    /// The model's churn probability for each account from its signals as
    /// of `as_of`, a thousand accounts a call; none for an account not
    /// known then.
    async fn predict_as_of(
        &self,
        account_ids: &[String],
        as_of: NaiveDate,
        model_id: &str,
    ) -> ApiResult<HashMap<String, f64>> {
        let mut predicted = HashMap::with_capacity(account_ids.len());
        for batch in account_ids.chunks(1000) {
            let request = hpb::BatchPredictChurnRequest {
                account_ids: batch.to_vec(),
                as_of: Some(time::to_date(as_of)),
                model_id: model_id.to_owned(),
            };
            let answer = self
                .health
                .clone()
                .batch_predict_churn(request)
                .await
                .map_err(|s| ApiError::from_upstream(s, "churn prediction"))?;
            predicted.extend(
                answer
                    .into_inner()
                    .predictions
                    .into_iter()
                    .map(|p| (p.account_id, p.churn_probability)),
            );
        }
        Ok(predicted)
    }
}

/// The recorded outcomes of these terms.
async fn decisions(pool: &sqlx::PgPool, terms: &[pipeline::Term]) -> ApiResult<Decisions> {
    let ids: Vec<String> = terms.iter().map(|t| t.subscription_id.clone()).collect();
    let ends: Vec<NaiveDate> = terms.iter().map(|t| t.term_end).collect();
    let rows: Vec<(String, NaiveDate, i16, i64, NaiveDate)> = sqlx::query_as(
        "SELECT x.subscription_id, x.term_end_date, x.kind, x.new_arr_minor, x.decided_on \
         FROM UNNEST($1::text[], $2::date[]) AS t(subscription_id, term_end) \
         JOIN renewals.outcomes x \
           ON x.subscription_id = t.subscription_id AND x.term_end_date = t.term_end",
    )
    .bind(&ids)
    .bind(&ends)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, end, kind, arr, decided)| ((id, end), (kind, arr, decided)))
        .collect())
}

/// A term as an opportunity row of the as-of day (the resolver ignores
/// outcomes decided after it).
fn row_as_of(
    term: pipeline::Term,
    segments: &HashMap<String, String>,
    decisions: &Decisions,
) -> OpportunityRow {
    let decision = decisions.get(&(term.subscription_id.clone(), term.term_end));
    OpportunityRow {
        segment: segments.get(&term.account_id).cloned(),
        subscription_id: term.subscription_id,
        term_start: term.term_start,
        term_end: term.term_end,
        account_id: term.account_id,
        currency: term.currency,
        arr_minor: term.arr_minor,
        state: term.state,
        next_arr_minor: term.next_arr_minor,
        account_name: None,
        owner: None,
        health_score: None,
        health_band: None,
        churn_probability: None,
        outcome_kind: decision.map(|d| d.0),
        outcome_new_arr_minor: decision.map(|d| d.1),
        outcome_decided_on: decision.map(|d| d.2),
    }
}

fn calibration_buckets(pairs: &[(f64, bool)]) -> Vec<pb::CalibrationBucket> {
    forecast::calibration_table(pairs)
        .into_iter()
        .map(|b| pb::CalibrationBucket {
            low: b.low,
            high: b.high,
            count: b.count as i64,
            mean_predicted: b.mean_predicted,
            actual_rate: b.actual_rate,
        })
        .collect()
}
