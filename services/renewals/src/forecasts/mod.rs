//! The pipeline and forecast APIs: listing and summarising opportunities
//! ([`pipeline_api`]), probability-weighted forecasts and their backtest
//! ([`forecast_api`], [`backtest`]), and the batch forms for callers that forecast every
//! account: a server stream and a durable job ([`jobs`]). Shared here: how
//! requests are read and how opportunities are resolved and summed.

mod backtest;
mod forecast_api;
pub mod history;
mod jobs;
mod pipeline_api;

pub use jobs::{JOBS_CHANNEL, expire_jobs, run_jobs};

use std::collections::BTreeMap;
use std::pin::Pin;

use chrono::{NaiveDate, Utc};
use prost::Message as _;
use sqlx::PgPool;
use tenure_platform::input::{Period, Window};
use tenure_platform::{ApiError, ApiResult, Violations, idempotency, paging, time};
use tenure_proto::common::v1::{Date, DateRange};
use tenure_proto::renewals::v1 as pb;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::SCHEMA;
use crate::forecast::{self, Category, Line, Totals};
use crate::pipeline::{Feed, OPEN, OpportunityFilter, OpportunityRow, Pages};
use crate::state::RenewalsApi;
use crate::views::{self, Context, money};

const MAX_ID: usize = 128;

pub type ForecastStream =
    Pin<Box<dyn Stream<Item = Result<pb::StreamForecastResponse, tonic::Status>> + Send>>;

/// The opportunities a request names: term ends in its window (under
/// `prefix`, e.g. `forecast.`), its segment and owner.
fn opportunity_filter(
    range: Option<&DateRange>,
    prefix: &str,
    required: bool,
    segment: &str,
    owner: &str,
    violations: &mut Violations,
) -> OpportunityFilter {
    let field = format!("{prefix}window");
    let window: Option<Window> = if required {
        violations
            .parse::<Period, _>(&field, range)
            .map(Window::from)
    } else {
        violations.parse(&field, range)
    };
    let Window {
        start: term_end_from,
        end: term_end_before,
    } = window.unwrap_or_default();
    OpportunityFilter {
        term_end_from,
        term_end_before,
        segment: filter_text(segment, &format!("{prefix}segment"), violations),
        owner: filter_text(owner, &format!("{prefix}owner"), violations),
        currency: None,
    }
}

/// An optional day, today when unset.
pub fn day_or_today(value: Option<&Date>, field: &str, violations: &mut Violations) -> NaiveDate {
    let today = Utc::now().date_naive();
    match value {
        Some(date) => time::date(Some(date), field, violations).unwrap_or(today),
        None => today,
    }
}

/// An optional filter text: empty means any.
pub fn filter_text(value: &str, field: &str, violations: &mut Violations) -> Option<String> {
    violations.limit_text(value, field, MAX_ID);
    (!value.is_empty()).then(|| value.to_owned())
}

/// A currency filter, USD when unset.
pub fn currency(code: &str, field: &str, violations: &mut Violations) -> String {
    if code.is_empty() {
        return "USD".to_owned();
    }
    violations.check(
        tenure_platform::money::is_currency_code(code),
        field,
        "must be an ISO 4217 code such as USD",
    );
    code.to_owned()
}

/// What forecasts of `as_of` judge probabilities by: historical rates and
/// the calibration of model probabilities from what was decided by then
/// (kept in `history` until the history changes).
pub async fn context(
    pool: &PgPool,
    history: &history::HistoryCache,
    as_of: NaiveDate,
) -> ApiResult<Context> {
    let today = Utc::now().date_naive();
    let current = as_of >= today;
    // History is what is known today at the latest: a future as-of date
    // must not count contracts as lapsed before their grace has passed.
    let known = as_of.min(today);
    let learned = history.get(pool, known).await?;
    Ok(Context {
        as_of,
        current,
        rates: learned.rates.clone(),
        calibration: learned.calibration,
        model_term_days: learned.model_term_days,
        use_model: current,
    })
}

/// Every opportunity of `filter`, resolved, in term-end order.
pub async fn resolved_rows(
    pool: &PgPool,
    filter: &OpportunityFilter,
    context: &Context,
) -> ApiResult<Vec<(OpportunityRow, views::Resolved)>> {
    let mut out = Vec::new();
    let mut feed = Feed::read(pool, filter);
    while let Some(rows) = feed.next().await? {
        for row in rows {
            let resolved = views::resolve(context, &row);
            out.push((row, resolved));
        }
    }
    Ok(out)
}

fn totals_to_proto(currency: &str, t: &Totals) -> pb::ForecastTotals {
    let m = |minor| Some(money(currency, minor));
    pb::ForecastTotals {
        renewal_count: t.renewals as i64,
        arr_up: m(t.arr_up_minor),
        expected_arr: m(t.expected_minor),
        commit: m(t.commit_minor),
        best_case: m(t.best_case_minor),
        worst_case: m(t.worst_case_minor),
        interval_low: m(t.low_minor),
        interval_high: m(t.high_minor),
        expected_renewal_count: t.expected_renewals,
        expected_gross_retention: t.expected_grr,
        expected_net_retention: t.expected_nrr,
        interval_method: t.interval.name().to_owned(),
    }
}

fn category_summaries(currency: &str, lines: &[&Line]) -> Vec<pb::CategorySummary> {
    let mut by: BTreeMap<Category, (i64, i64, i64)> = BTreeMap::new();
    for line in lines {
        let entry = by.entry(line.category).or_default();
        entry.0 += 1;
        entry.1 += line.arr_minor;
        entry.2 += line.expected_minor();
    }
    by.into_iter()
        .map(|(category, (count, arr, expected))| pb::CategorySummary {
            category: category as i32,
            count,
            arr: Some(money(currency, arr)),
            expected_arr: Some(money(currency, expected)),
        })
        .collect()
}

/// The stream and job request, validated.
struct ForecastScope {
    filter: OpportunityFilter,
    as_of: NaiveDate,
    chunk: usize,
}

fn forecast_scope(request: &pb::StreamForecastRequest, field: &str) -> ApiResult<ForecastScope> {
    let mut violations = Violations::default();
    let filter = opportunity_filter(
        request.window.as_ref(),
        field,
        true,
        &request.segment,
        "",
        &mut violations,
    );
    let as_of = day_or_today(
        request.as_of.as_ref(),
        &format!("{field}as_of"),
        &mut violations,
    );
    violations.check(
        (0..=5000).contains(&request.chunk_size),
        format!("{field}chunk_size"),
        "must be between 0 and 5000",
    );
    violations.into_result()?;
    Ok(ForecastScope {
        filter,
        as_of,
        chunk: if request.chunk_size == 0 {
            500
        } else {
            request.chunk_size as usize
        },
    })
}

/// Walks every opportunity of `feed` in chunks, handing each to `emit`;
/// stops early (returning false) when `emit` returns false.
async fn walk<F, Fut>(
    mut feed: Feed,
    scope: &ForecastScope,
    context: &Context,
    mut emit: F,
) -> ApiResult<bool>
where
    F: FnMut(Vec<pb::RenewalOpportunity>) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let mut chunk = Vec::with_capacity(scope.chunk);
    while let Some(rows) = feed.next().await? {
        for row in rows {
            let resolved = views::resolve(context, &row);
            chunk.push(views::to_proto(context, row, &resolved));
            if chunk.len() == scope.chunk && !emit(std::mem::take(&mut chunk)).await {
                return Ok(false);
            }
        }
    }
    Ok(chunk.is_empty() || emit(chunk).await)
}
