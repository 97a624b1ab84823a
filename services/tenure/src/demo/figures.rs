//! The figures a customer-success leader wants first, each read from the
//! services' APIs.

use chrono::{Datelike as _, Months, NaiveDate};
use tenure_platform::time::to_date;
use tenure_proto::common::v1::{DateRange, Money};
use tenure_proto::health::v1 as hpb;
use tenure_proto::ingestion::v1 as ipb;
use tenure_proto::renewals::v1 as rpb;

use super::Clients;

/// Health by band, with the tails of the distribution.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    /// (band, accounts, ARR per currency).
    pub bands: Vec<(String, i32, Vec<Money>)>,
    /// (lower, upper, accounts).
    pub histogram: Vec<(f64, f64, i32)>,
    pub at_risk: Vec<AtRisk>,
    /// (account, score, ARR).
    pub advocates: Vec<(String, f64, Option<Money>)>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct AtRisk {
    pub account_id: String,
    pub score: f64,
    pub arr: Option<Money>,
    /// The measures that pulled the score down most, as "name (value)".
    pub reasons: Vec<String>,
}

/// Retention figures of one period.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Retention {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub metrics: rpb::GetRetentionMetricsResponse,
}

impl Retention {
    /// Gross MRR churn: (contraction + churn) / MRR at the start.
    pub fn gross_mrr_churn_pct(&self) -> Option<f64> {
        let m = self.metrics.movements.as_ref()?;
        let start = minor(&m.start);
        (start > 0).then(|| (minor(&m.contraction) + minor(&m.churn)) as f64 / start as f64 * 100.0)
    }

    /// Net MRR churn: (contraction + churn - expansion - reactivation) / start.
    pub fn net_mrr_churn_pct(&self) -> Option<f64> {
        let m = self.metrics.movements.as_ref()?;
        let start = minor(&m.start);
        (start > 0).then(|| {
            (minor(&m.contraction) + minor(&m.churn) - minor(&m.expansion) - minor(&m.reactivation))
                as f64
                / start as f64
                * 100.0
        })
    }
}

/// The forecast of renewals ending in one quarter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Forecast {
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub totals: rpb::ForecastTotals,
    pub categories: Vec<rpb::CategorySummary>,
}

pub fn minor(money: &Option<Money>) -> i64 {
    money.as_ref().map_or(0, |m| m.amount_minor)
}

pub(crate) fn range(start: NaiveDate, end: NaiveDate) -> Option<DateRange> {
    Some(DateRange {
        start: Some(to_date(start)),
        end: Some(to_date(end)),
    })
}

/// The first day of the month `day` falls in.
pub(crate) fn month_start(day: NaiveDate) -> NaiveDate {
    day.with_day(1).unwrap_or(day)
}

/// The first day of the quarter `day` falls in.
pub(super) fn quarter_start(day: NaiveDate) -> NaiveDate {
    let month = (day.month0() / 3) * 3 + 1;
    NaiveDate::from_ymd_opt(day.year(), month, 1).unwrap_or(day)
}

/// The last `count` whole calendar quarters before the one holding `as_of`.
pub fn past_quarters(as_of: NaiveDate, count: u32) -> Vec<(NaiveDate, NaiveDate)> {
    let current = quarter_start(as_of);
    (1..=count)
        .rev()
        .map(|k| {
            (
                current - Months::new(3 * k),
                current - Months::new(3 * (k - 1)),
            )
        })
        .collect()
}

/// The `count` calendar quarters after the one holding `as_of`.
pub fn next_quarters(as_of: NaiveDate, count: u32) -> Vec<(NaiveDate, NaiveDate)> {
    let current = quarter_start(as_of);
    (1..=count)
        .map(|k| {
            (
                current + Months::new(3 * k),
                current + Months::new(3 * (k + 1)),
            )
        })
        .collect()
}

pub(crate) async fn health(clients: &mut Clients, tail: i32) -> anyhow::Result<Health> {
    let distribution = clients
        .health
        .get_health_distribution(hpb::GetHealthDistributionRequest {
            tail_size: tail,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut at_risk = Vec::new();
    for account in &distribution.at_risk {
        let scored = clients
            .health
            .get_health(hpb::GetHealthRequest {
                account_id: account.account_id.clone(),
            })
            .await?
            .into_inner()
            .health
            .unwrap_or_default();
        let mut weak: Vec<&hpb::MeasureScore> = scored
            .measures
            .iter()
            .filter(|m| !m.missing && m.score.is_some_and(|s| s < 50.0))
            .collect();
        weak.sort_by(|a, b| {
            let lost =
                |m: &hpb::MeasureScore| m.effective_weight * (100.0 - m.score.unwrap_or(0.0));
            lost(b).total_cmp(&lost(a))
        });
        at_risk.push(AtRisk {
            account_id: account.account_id.clone(),
            score: account.score,
            arr: account.arr.clone(),
            reasons: weak
                .iter()
                .take(3)
                .map(|m| {
                    format!(
                        "{} ({})",
                        m.name,
                        m.raw_value.map_or("-".into(), |v| format!("{v:.0}"))
                    )
                })
                .collect(),
        });
    }
    Ok(Health {
        bands: distribution
            .bands
            .iter()
            .map(|b| (band_name(b.band()), b.account_count, b.arr.clone()))
            .collect(),
        histogram: distribution
            .histogram
            .iter()
            .map(|h| (h.lower, h.upper, h.count))
            .collect(),
        at_risk,
        advocates: distribution
            .advocates
            .iter()
            .map(|a| (a.account_id.clone(), a.score, a.arr.clone()))
            .collect(),
    })
}

pub fn band_name(band: tenure_proto::common::v1::Band) -> String {
    band.word().unwrap_or("unscored").to_owned()
}

pub(crate) async fn retention(
    clients: &mut Clients,
    quarters: &[(NaiveDate, NaiveDate)],
) -> anyhow::Result<Vec<Retention>> {
    let mut out = Vec::new();
    for &(start, end) in quarters {
        let metrics = clients
            .renewals
            .get_retention_metrics(rpb::GetRetentionMetricsRequest {
                period: range(start, end),
                segment: String::new(),
                currency_code: "USD".into(),
                as_of: None,
            })
            .await?
            .into_inner();
        out.push(Retention {
            start,
            end,
            metrics,
        });
    }
    Ok(out)
}

pub(crate) async fn forecasts(
    clients: &mut Clients,
    quarters: &[(NaiveDate, NaiveDate)],
    as_of: NaiveDate,
) -> anyhow::Result<Vec<Forecast>> {
    let mut out = Vec::new();
    for &(start, end) in quarters {
        let response = clients
            .renewals
            .forecast_renewals(rpb::ForecastRenewalsRequest {
                window: range(start, end),
                as_of: Some(to_date(as_of)),
                segment: String::new(),
                currency_code: "USD".into(),
            })
            .await?
            .into_inner();
        out.push(Forecast {
            start,
            end,
            totals: response.totals.unwrap_or_default(),
            categories: response.categories,
        });
    }
    Ok(out)
}

/// Yearly cohorts by first paid term, observed as of `as_of`, with their
/// fitted retention model projected three years on.
pub(crate) async fn cohorts(
    clients: &mut Clients,
    as_of: NaiveDate,
) -> anyhow::Result<Vec<rpb::Cohort>> {
    Ok(clients
        .renewals
        .get_cohort_retention(rpb::GetCohortRetentionRequest {
            period: rpb::CohortPeriod::Year as i32,
            projection_periods: 3,
            as_of: Some(to_date(as_of)),
            ..Default::default()
        })
        .await?
        .into_inner()
        .cohorts)
}

/// The base's success plans as of a day: their objectives by status, the
/// share met or on track and the success rate (met of decided).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plans {
    /// Accounts with a plan started by the day.
    pub accounts: usize,
    /// (status, objectives), from met to no data.
    pub statuses: Vec<(&'static str, i64)>,
    pub on_track_pct: Option<f64>,
    pub success_rate_pct: Option<f64>,
}

/// The success plans of every account with one started by `as_of` (those
/// whose signals carry an on-track share), counted by ingestion a thousand
/// accounts a call.
pub(crate) async fn plans(clients: &mut Clients, as_of: NaiveDate) -> anyhow::Result<Plans> {
    let mut stream = clients
        .ingestion
        .stream_account_signals(ipb::StreamAccountSignalsRequest {
            as_of: Some(to_date(as_of)),
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut planned = Vec::new();
    while let Some(message) = stream.message().await? {
        if let Some(signals) = message.signals
            && signals.success_plan_on_track_pct.is_some()
        {
            planned.push(signals.account_id);
        }
    }
    let mut counts = [0i64; 5];
    for chunk in planned.chunks(1000) {
        let values = clients
            .ingestion
            .get_account_values(ipb::GetAccountValuesRequest {
                account_ids: chunk.to_vec(),
                as_of: Some(to_date(as_of)),
            })
            .await?
            .into_inner();
        for v in values.accounts {
            let of = [
                v.objectives_met,
                v.objectives_on_track,
                v.objectives_at_risk,
                v.objectives_missed,
                v.objectives_no_data,
            ];
            for (count, n) in counts.iter_mut().zip(of) {
                *count += n;
            }
        }
    }
    let [met, on_track, at_risk, missed, _] = counts;
    let pct = |part: i64, whole: i64| (whole > 0).then(|| part as f64 * 100.0 / whole as f64);
    let names = ["met", "on track", "at risk", "missed", "no data"];
    Ok(Plans {
        accounts: planned.len(),
        statuses: names.into_iter().zip(counts).collect(),
        on_track_pct: pct(met + on_track, met + on_track + at_risk + missed),
        success_rate_pct: pct(met, met + missed),
    })
}
