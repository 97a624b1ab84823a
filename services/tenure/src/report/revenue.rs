//! Charts of recurring revenue: the monthly movements, cohort survival,
//! the forecast and the calibration of a past one.

use tenure_proto::renewals::v1 as rpb;

use super::svg::{BLUE, GREEN, GREY, PALETTE, Plot, RED, YELLOW, legend, short, ticks};
use crate::demo::figures::{self, minor};

pub(super) fn waterfall(months: &[figures::Retention]) -> String {
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

pub(super) fn cohort_chart(cohorts: &[rpb::Cohort]) -> String {
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

pub(super) fn forecast_chart(forecasts: &[figures::Forecast]) -> String {
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

pub(super) fn calibration(backtest: &rpb::BacktestForecastResponse) -> String {
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
