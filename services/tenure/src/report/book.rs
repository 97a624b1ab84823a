//! Charts of the book of customers: health by band and in ARR, the service
//! tiers, the maturity levels and the success plans.

use tenure_proto::health::v1 as hpb;
use tenure_proto::renewals::v1 as rpb;

use super::svg::{BLUE, GREEN, GREY, PALETTE, Plot, RED, YELLOW, legend, short, ticks};
use crate::demo::figures;

pub(super) fn tiers(coverage: Option<&rpb::GetCoverageReportResponse>) -> String {
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

pub(super) fn maturity_chart(maturity: Option<&hpb::GetMaturityDistributionResponse>) -> String {
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

pub(super) fn band_color(lower: f64) -> &'static str {
    if lower < 40.0 {
        RED
    } else if lower < 70.0 {
        YELLOW
    } else {
        GREEN
    }
}

pub(super) fn histogram(health: &figures::Health) -> String {
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

pub(super) fn usd(arr: &[tenure_proto::common::v1::Money]) -> f64 {
    arr.iter()
        .filter(|m| m.currency_code == "USD")
        .map(|m| m.amount_minor as f64 / 100.0)
        .sum()
}

pub(super) fn arr_by_band(health: &figures::Health) -> String {
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

pub(super) fn plans_chart(plans: &figures::Plans) -> String {
    let colors = [GREEN, BLUE, YELLOW, RED, GREY, "#c5c9d0"];
    let top = plans.statuses.iter().map(|(_, n)| *n).max().unwrap_or(0) as f64;
    let mut plot = Plot::new((0.0, plans.statuses.len() as f64), (0.0, top * 1.1));
    for (i, ((status, objectives), color)) in plans.statuses.iter().zip(colors).enumerate() {
        let x = i as f64;
        plot.rect(
            x + 0.15,
            x + 0.85,
            0.0,
            *objectives as f64,
            color,
            &format!("{status}: {objectives} objectives"),
        );
    }
    let labels: Vec<(f64, String)> = plans
        .statuses
        .iter()
        .enumerate()
        .map(|(i, (status, _))| (i as f64 + 0.5, (*status).to_owned()))
        .collect();
    let title = match (plans.on_track_pct, plans.success_rate_pct) {
        (Some(on_track), Some(success)) => {
            format!("objectives ({on_track:.0} % met or on track, success rate {success:.0} %)")
        }
        _ => "objectives".to_owned(),
    };
    plot.finish(&title, &labels, &ticks(0.0, top, 4, short))
}
