//! `tenure report --html FILE`: one self-contained HTML page of charts,
//! every figure read from the services' APIs: the health distribution with
//! its tails, ARR by band, the service tiers, the maturity levels per
//! segment, the success plans' objectives by status ([`book`]), the monthly
//! movements of recurring revenue,
//! cohort survival with the fitted retention model, the forecast by
//! category with its interval, the calibration of a past forecast, and the
//! leading indicators the churn model learned.

mod book;
mod revenue;
mod svg;

use std::fmt::Write as _;

use chrono::{Months, NaiveDate};
use tenure_platform::config::PeerConfig;
use tenure_platform::time::to_date;
use tenure_proto::health::v1 as hpb;
use tenure_proto::renewals::v1 as rpb;

use crate::demo::figures::{self, range};
use crate::demo::{Clients, next_quarters};
use book::{arr_by_band, histogram, maturity_chart, plans_chart, tiers};
use revenue::{calibration, cohort_chart, forecast_chart, waterfall};
use svg::{GREEN, Plot, RED, escape, legend, ticks};

/// The charts' names, in the order the page shows them.
pub const CHARTS: [&str; 10] = [
    "health-distribution",
    "arr-by-band",
    "service-tiers",
    "maturity",
    "success-plans",
    "mrr-movements",
    "cohort-retention",
    "forecast",
    "calibration",
    "indicators",
];

/// Builds the page from the services at `peers`, as of `as_of`.
pub async fn html(peers: &PeerConfig, as_of: NaiveDate) -> anyhow::Result<String> {
    let mut clients = Clients::connect(peers)?;
    let health = figures::health(&mut clients, 10).await?;
    let months: Vec<(NaiveDate, NaiveDate)> = (1..=12)
        .rev()
        .map(|k| {
            let start = figures::month_start(as_of) - Months::new(k);
            (start, start + Months::new(1))
        })
        .collect();
    let movements = figures::retention(&mut clients, &months).await?;
    let cohorts = figures::cohorts(&mut clients, as_of).await?;
    let forecasts = figures::forecasts(&mut clients, &next_quarters(as_of, 2), as_of).await?;
    let year_ago = as_of - Months::new(12);
    let backtest = clients
        .renewals
        .backtest_forecast(rpb::BacktestForecastRequest {
            window: range(year_ago, year_ago + Months::new(6)),
            as_of: Some(to_date(year_ago)),
            segment: String::new(),
            currency_code: "USD".into(),
            model_id: String::new(),
        })
        .await?
        .into_inner();
    // No coverage model yet: the chart says so.
    let coverage = clients
        .renewals
        .get_coverage_report(rpb::GetCoverageReportRequest {
            as_of: Some(to_date(as_of)),
            model_version: 0,
        })
        .await
        .ok()
        .map(|r| r.into_inner());
    // No maturity model yet: the chart says so.
    let maturity = clients
        .health
        .get_maturity_distribution(hpb::GetMaturityDistributionRequest {
            model_name: crate::demo::setup::MATURITY_MODEL.into(),
            as_of: Some(to_date(as_of)),
            segment: String::new(),
        })
        .await
        .ok()
        .map(|r| r.into_inner());
    let plans = figures::plans(&mut clients, as_of).await?;
    let model = clients
        .health
        .get_churn_model(hpb::GetChurnModelRequest::default())
        .await
        .ok()
        .and_then(|r| r.into_inner().model);

    let charts = [
        ("Health distribution", histogram(&health)),
        ("Recurring revenue by band (USD)", arr_by_band(&health)),
        (
            "Service tiers: share of customers (light) and of recurring revenue (dark)",
            tiers(coverage.as_ref()),
        ),
        (
            "Maturity: each segment's accounts by level of the adoption model",
            maturity_chart(maturity.as_ref()),
        ),
        ("Success plans: objectives by status", plans_chart(&plans)),
        (
            "Movements of recurring revenue per month (USD)",
            waterfall(&movements),
        ),
        (
            "Cohort survival: Kaplan–Meier (solid) and the fitted sBG model (dashed)",
            cohort_chart(&cohorts),
        ),
        (
            "Forecast of the next two quarters by category, with the 90 % interval (USD)",
            forecast_chart(&forecasts),
        ),
        (
            "Calibration of the forecast made a year ago: predicted against actual renewal rate",
            calibration(&backtest),
        ),
        (
            "Leading indicators the churn model learned (odds ratios)",
            indicators(model.as_ref()),
        ),
    ];
    let mut body = String::new();
    for ((title, chart), name) in charts.iter().zip(CHARTS) {
        let _ = write!(
            body,
            r#"<figure class="chart" data-chart="{name}"><figcaption>{}</figcaption>{chart}</figure>"#,
            escape(title)
        );
    }
    Ok(format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tenure report as of {as_of}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 24px; color: #1d2330; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 16px; }}
figure.chart {{ margin: 0; padding: 12px; border: 1px solid #e4e6ea; border-radius: 6px; }}
figcaption {{ font-weight: 600; margin-bottom: 6px; max-width: 640px; }}
.legend {{ font-size: 12px; margin-top: 4px; }} .key {{ margin-right: 12px; }}
.key i {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; }}
</style></head>
<body><h1>Tenure as of {as_of}</h1><div class="grid">{body}</div>
<script>
// Marks each chart with how many of its marks the browser laid out with a size.
for (const figure of document.querySelectorAll("figure.chart")) {{
  let drawn = 0;
  for (const mark of figure.querySelectorAll("g.marks > *")) {{
    const box = mark.getBBox();
    if (box.width > 0 || box.height > 0) drawn++;
  }}
  figure.dataset.drawn = drawn;
}}
</script></body></html>
"#
    ))
}

fn indicators(model: Option<&hpb::ChurnModel>) -> String {
    let signals: Vec<&hpb::SignalWeight> = model
        .map(|m| {
            m.signals
                .iter()
                .filter(|s| !s.feature.contains(':') && !s.feature.contains('='))
                .take(10)
                .collect()
        })
        .unwrap_or_default();
    let widest = signals
        .iter()
        .map(|s| s.odds_ratio.ln().abs())
        .fold(0.1, f64::max);
    let mut plot = Plot::new((-widest, widest), (0.0, signals.len().max(1) as f64));
    for (i, s) in signals.iter().enumerate() {
        let y = (signals.len() - i) as f64;
        let value = s.odds_ratio.ln();
        let color = if value > 0.0 { RED } else { GREEN };
        plot.rect(
            0.0,
            value,
            y - 0.8,
            y - 0.2,
            color,
            &format!("{}: odds ratio {:.3}", s.feature, s.odds_ratio),
        );
        plot.text(
            if value > 0.0 {
                -0.02 * widest
            } else {
                0.02 * widest
            },
            y - 0.6,
            &s.feature,
            if value > 0.0 { "end" } else { "start" },
        );
    }
    plot.finish(
        "indicators",
        &ticks(-widest, widest, 4, |v| format!("{:.2}", v.exp())),
        &[],
    ) + &legend(&["raises churn", "lowers churn"], &[RED, GREEN])
}
