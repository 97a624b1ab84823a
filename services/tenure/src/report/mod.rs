//! `tenure report --html FILE`: one self-contained HTML page of charts,
//! every figure read from the services' APIs: the health distribution with
//! its tails, ARR by band, the service tiers, the maturity levels per
//! segment, the monthly movements of recurring revenue,
//! cohort survival with the fitted retention model, the forecast by
//! category with its interval, the calibration of a past forecast, and the
//! leading indicators the churn model learned.

mod svg;

use std::fmt::Write as _;

use chrono::{Months, NaiveDate};
use tenure_platform::config::PeerConfig;
use tenure_platform::time::to_date;
use tenure_proto::health::v1 as hpb;
use tenure_proto::renewals::v1 as rpb;

use crate::demo::figures::{self, minor, range};
use crate::demo::{Clients, next_quarters};
use svg::{BLUE, GREEN, GREY, PALETTE, Plot, RED, YELLOW, escape, legend, short, ticks};

/// The charts' names, in the order the page shows them.
pub const CHARTS: [&str; 9] = [
    "health-distribution",
    "arr-by-band",
    "service-tiers",
    "maturity",
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

fn tiers(coverage: Option<&rpb::GetCoverageReportResponse>) -> String {
    let Some(coverage) = coverage else {
        return Plot::new((0.0, 1.0), (0.0, 100.0)).finish(
            "no coverage model",
            &[],
            &ticks(0.0, 100.0, 4, short),
        );
    };
    let mut plot = Plot::new((0.0, coverage.tiers.len() as f64), (0.0, 110.0));
    for (i, tier) in coverage.tiers.iter().enumerate() {
        let x = i as f64;
        let name = &tier.display_name;
        plot.rect(
            x + 0.15,
            x + 0.5,
            0.0,
            tier.account_percent,
            "#9bb7e0",
            &format!(
                "{name}: {} accounts, {:.1} %",
                tier.account_count, tier.account_percent
            ),
        );
        plot.rect(
            x + 0.5,
            x + 0.85,
            0.0,
            tier.arr_percent,
            BLUE,
            &format!(
                "{name}: {:.1} % of ARR, {:.1} CSMs",
                tier.arr_percent, tier.csms_needed
            ),
        );
        plot.text(
            x + 0.5,
            tier.account_percent.max(tier.arr_percent),
            &format!("{:.1} CSMs", tier.csms_needed),
            "middle",
        );
    }
    let labels: Vec<(f64, String)> = coverage
        .tiers
        .iter()
        .enumerate()
        .map(|(i, t)| (i as f64 + 0.5, t.display_name.clone()))
        .collect();
    plot.finish("% of the book", &labels, &ticks(0.0, 100.0, 4, short))
}

fn maturity_chart(maturity: Option<&hpb::GetMaturityDistributionResponse>) -> String {
    let Some(maturity) = maturity else {
        return Plot::new((0.0, 1.0), (0.0, 100.0)).finish(
            "no maturity model",
            &[],
            &ticks(0.0, 100.0, 4, short),
        );
    };
    let rows: Vec<(&str, &hpb::SegmentMaturity)> = maturity
        .all
        .iter()
        .map(|a| ("all", a))
        .chain(maturity.segments.iter().map(|s| (s.segment.as_str(), s)))
        .collect();
    let mut plot = Plot::new((0.0, rows.len() as f64), (0.0, 100.0));
    for (i, (name, segment)) in rows.iter().enumerate() {
        let (x, mut base) = (i as f64, 0.0);
        for level in segment.levels.iter().filter(|l| l.accounts > 0) {
            let color = PALETTE[level.level as usize % PALETTE.len()];
            plot.rect(
                x + 0.2,
                x + 0.8,
                base,
                base + level.share_pct,
                color,
                &format!(
                    "{name}: {} at {} ({:.1} %)",
                    level.accounts, level.level_name, level.share_pct
                ),
            );
            base += level.share_pct;
        }
    }
    let labels: Vec<(f64, String)> = rows
        .iter()
        .enumerate()
        .map(|(i, (name, _))| (i as f64 + 0.5, (*name).to_owned()))
        .collect();
    let levels: Vec<&hpb::LevelCount> = rows.first().map_or(vec![], |(_, all)| {
        all.levels
            .iter()
            .filter(|l| l.level > 0 || l.accounts > 0)
            .collect()
    });
    let names: Vec<String> = levels
        .iter()
        .map(|l| match l.level {
            0 => "below the first level".to_owned(),
            _ => l.level_name.clone(),
        })
        .collect();
    let colors: Vec<&str> = levels
        .iter()
        .map(|l| PALETTE[l.level as usize % PALETTE.len()])
        .collect();
    plot.finish("% of accounts", &labels, &ticks(0.0, 100.0, 4, short)) + &legend(&names, &colors)
}

fn band_color(lower: f64) -> &'static str {
    if lower < 40.0 {
        RED
    } else if lower < 70.0 {
        YELLOW
    } else {
        GREEN
    }
}

fn histogram(health: &figures::Health) -> String {
    let top = health.histogram.iter().map(|h| h.2).max().unwrap_or(1) as f64;
    let mut plot = Plot::new((0.0, 100.0), (0.0, top * 1.15));
    for &(lower, upper, count) in &health.histogram {
        plot.rect(
            lower + 0.5,
            upper - 0.5,
            0.0,
            f64::from(count),
            band_color(lower),
            &format!("{lower:.0}-{upper:.0}: {count} accounts"),
        );
    }
    // The tails: the lowest and highest scores.
    if let Some(low) = health.at_risk.iter().map(|a| a.score).reduce(f64::max) {
        plot.line(&[(low, 0.0), (low, top * 1.1)], RED, true);
        plot.text(low, top * 1.1, "at risk", "end");
    }
    if let Some(high) = health.advocates.iter().map(|a| a.1).reduce(f64::min) {
        plot.line(&[(high, 0.0), (high, top * 1.1)], GREEN, true);
        // Left of its line when the line is near the right edge.
        let anchor = if high > 80.0 { "end" } else { "start" };
        plot.text(high, top * 1.1, "advocates", anchor);
    }
    plot.finish(
        "health distribution",
        &ticks(0.0, 100.0, 10, |v| format!("{v:.0}")),
        &ticks(0.0, top, 4, |v| format!("{v:.0}")),
    ) + &legend(&["red", "yellow", "green"], &[RED, YELLOW, GREEN])
}

fn usd(arr: &[tenure_proto::common::v1::Money]) -> f64 {
    arr.iter()
        .filter(|m| m.currency_code == "USD")
        .map(|m| m.amount_minor as f64 / 100.0)
        .sum()
}

fn arr_by_band(health: &figures::Health) -> String {
    let top = health.bands.iter().map(|b| usd(&b.2)).fold(0.0, f64::max);
    let mut plot = Plot::new((0.0, health.bands.len() as f64), (0.0, top * 1.1));
    for (i, (band, count, arr)) in health.bands.iter().enumerate() {
        let color = match band.as_str() {
            "red" => RED,
            "yellow" => YELLOW,
            "green" => GREEN,
            _ => GREY,
        };
        let value = usd(arr);
        plot.rect(
            i as f64 + 0.2,
            i as f64 + 0.8,
            0.0,
            value,
            color,
            &format!("{band}: {count} accounts, USD {value:.0}"),
        );
        plot.text(
            i as f64 + 0.5,
            value,
            &format!("{count} accounts"),
            "middle",
        );
    }
    let labels: Vec<(f64, String)> = health
        .bands
        .iter()
        .enumerate()
        .map(|(i, b)| (i as f64 + 0.5, b.0.clone()))
        .collect();
    plot.finish("ARR by band", &labels, &ticks(0.0, top, 4, short))
}

fn waterfall(months: &[figures::Retention]) -> String {
    let parts = |r: &figures::Retention| {
        let m = r.metrics.movements.clone().unwrap_or_default();
        let ups = [minor(&m.new), minor(&m.expansion), minor(&m.reactivation)];
        let downs = [minor(&m.contraction), minor(&m.churn)];
        (
            ups.map(|v| v as f64 / 100.0),
            downs.map(|v| v as f64 / 100.0),
        )
    };
    let high = months
        .iter()
        .map(|r| parts(r).0.iter().sum::<f64>())
        .fold(0.0, f64::max);
    let low = months
        .iter()
        .map(|r| parts(r).1.iter().sum::<f64>())
        .fold(0.0, f64::max);
    let mut plot = Plot::new((0.0, months.len() as f64), (-low * 1.1, high * 1.1));
    let colors = [BLUE, GREEN, PALETTE[4], YELLOW, RED];
    let names = ["new", "expansion", "reactivation", "contraction", "churn"];
    for (i, month) in months.iter().enumerate() {
        let (ups, downs) = parts(month);
        let x = i as f64;
        // Gains stack up from zero, losses down from it.
        let signed = ups.into_iter().chain(downs.into_iter().map(|v| -v));
        let (mut above, mut below) = (0.0, 0.0);
        for (k, v) in signed.enumerate() {
            let base = if v >= 0.0 { &mut above } else { &mut below };
            plot.rect(
                x + 0.15,
                x + 0.85,
                *base,
                *base + v,
                colors[k],
                &format!("{} {}: {v:.0}", month.start, names[k]),
            );
            *base += v;
        }
    }
    let labels: Vec<(f64, String)> = months
        .iter()
        .enumerate()
        .map(|(i, m)| (i as f64 + 0.5, m.start.format("%b").to_string()))
        .collect();
    plot.finish("MRR movements", &labels, &ticks(-low, high, 4, short)) + &legend(&names, &colors)
}

fn cohort_chart(cohorts: &[rpb::Cohort]) -> String {
    let periods = cohorts
        .iter()
        .map(|c| {
            c.model
                .as_ref()
                .map_or(c.kaplan_meier.len(), |m| m.survival.len())
        })
        .max()
        .unwrap_or(1)
        .max(2);
    let mut plot = Plot::new((0.0, periods as f64 - 1.0), (0.0, 1.0));
    let (mut years, mut colors) = (Vec::new(), Vec::new());
    for (k, cohort) in cohorts.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let mut observed = vec![(0.0, 1.0)];
        observed.extend(
            cohort
                .kaplan_meier
                .iter()
                .map(|p| (f64::from(p.period), p.survival)),
        );
        plot.line(&observed, color, false);
        for &(x, y) in &observed {
            plot.dot(x, y, color, &format!("{:.1} % after {x} years", y * 100.0));
        }
        if let Some(model) = cohort
            .model
            .as_ref()
            .filter(|m| m.alpha < 1e6 && m.beta < 1e6)
        {
            let fitted: Vec<(f64, f64)> = model
                .survival
                .iter()
                .enumerate()
                .map(|(t, s)| (t as f64, *s))
                .collect();
            plot.line(&fitted, color, true);
        }
        years.push(
            cohort
                .start
                .as_ref()
                .map_or(String::new(), |d| d.year.to_string()),
        );
        colors.push(color);
    }
    plot.finish(
        "cohort retention",
        &ticks(0.0, periods as f64 - 1.0, periods - 1, |v| {
            format!("{v:.0}y")
        }),
        &ticks(0.0, 1.0, 4, |v| format!("{:.0} %", v * 100.0)),
    ) + &legend(&years, &colors)
}

fn forecast_chart(forecasts: &[figures::Forecast]) -> String {
    let total = |f: &figures::Forecast| {
        minor(&f.totals.interval_high).max(minor(&f.totals.arr_up)) as f64 / 100.0
    };
    let top = forecasts.iter().map(total).fold(0.0, f64::max);
    let mut plot = Plot::new((0.0, forecasts.len() as f64), (0.0, top * 1.1));
    let names = ["commit", "probable", "at risk", "lost"];
    let colors = [GREEN, BLUE, RED, GREY];
    for (i, forecast) in forecasts.iter().enumerate() {
        let (x, start) = (i as f64, forecast.start);
        let mut base = 0.0;
        for category in &forecast.categories {
            let k = (category.category as usize).clamp(1, 4) - 1;
            let value = minor(&category.expected_arr) as f64 / 100.0;
            plot.rect(
                x + 0.25,
                x + 0.75,
                base,
                base + value,
                colors[k],
                &format!("{start} {}: {value:.0}", names[k]),
            );
            base += value;
        }
        // The interval as a whisker: a stem with a cap at each end.
        let t = &forecast.totals;
        let (low, high) = (
            minor(&t.interval_low) as f64 / 100.0,
            minor(&t.interval_high) as f64 / 100.0,
        );
        let whisker = [
            (x + 0.4, low),
            (x + 0.6, low),
            (x + 0.5, low),
            (x + 0.5, high),
            (x + 0.4, high),
            (x + 0.6, high),
        ];
        plot.line(&whisker, "#1d2330", false);
    }
    let labels: Vec<(f64, String)> = forecasts
        .iter()
        .enumerate()
        .map(|(i, f)| (i as f64 + 0.5, f.start.format("from %Y-%m-%d").to_string()))
        .collect();
    plot.finish("forecast", &labels, &ticks(0.0, top, 4, short)) + &legend(&names, &colors)
}

fn calibration(backtest: &rpb::BacktestForecastResponse) -> String {
    let mut plot = Plot::new((0.0, 1.0), (0.0, 1.0));
    plot.line(&[(0.0, 0.0), (1.0, 1.0)], GREY, true);
    for bucket in backtest.calibration.iter().filter(|b| b.count > 0) {
        plot.dot(
            bucket.mean_predicted,
            bucket.actual_rate,
            BLUE,
            &format!(
                "{} renewals: predicted {:.2}, renewed {:.2}",
                bucket.count, bucket.mean_predicted, bucket.actual_rate
            ),
        );
    }
    let percent = |v: f64| format!("{:.0} %", v * 100.0);
    plot.finish(
        "calibration",
        &ticks(0.0, 1.0, 5, percent),
        &ticks(0.0, 1.0, 5, percent),
    )
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
