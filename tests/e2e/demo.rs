//! `tenure demo` at a small size, and its HTML report in a real browser.

use tenure_tests::TestStack;

/// The demo at a small size: every step runs, and the figures it prints are
/// the ones the APIs give when asked again.
#[tokio::test]
async fn the_demo_reports_what_the_apis_answer_and_the_page_draws_every_chart() {
    let app = TestStack::spawn_with(|options| {
        let allow = (
            "PLAYBOOKS_WEBHOOK_ALLOW".to_owned(),
            "127.0.0.1/32".to_owned(),
        );
        options.settings.extend([allow]);
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let options = tenure::demo::Options {
        accounts: 200,
        years: 3,
        seed: 3,
        dir: dir.path().to_path_buf(),
        progress: false,
        webhook_secret: app.stack.setting("PLAYBOOKS_WEBHOOK_SECRET").unwrap(),
    };
    let report = tenure::demo::run(&app.stack.operator_peers(), &options)
        .await
        .expect("the demo runs");
    let text = report.to_string();
    let as_of = report.as_of.unwrap();

    // Health by band, as GetHealthDistribution counts it now.
    let distribution = app
        .health
        .clone()
        .get_health_distribution(tenure_proto::health::v1::GetHealthDistributionRequest {
            tail_size: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let scored: i32 = distribution.bands.iter().map(|b| b.account_count).sum();
    assert!(scored > 0, "{text}");
    for band in &distribution.bands {
        let name = tenure::demo::band_name(band.band());
        let line = format!("  {name:<8} {:>6} accounts", band.account_count);
        assert!(text.contains(&line), "{line:?} missing from:\n{text}");
    }
    assert_eq!(report.health.at_risk.len(), distribution.at_risk.len());

    // Retention of each of the last four quarters, as GetRetentionMetrics says.
    let quarters = tenure::demo::past_quarters(as_of, 4);
    assert_eq!(report.retention.len(), 4);
    for (figures, (start, end)) in report.retention.iter().zip(quarters) {
        let asked = app
            .renewals
            .clone()
            .get_retention_metrics(tenure_proto::renewals::v1::GetRetentionMetricsRequest {
                period: Some(tenure_proto::common::v1::DateRange {
                    start: Some(tenure_platform::time::to_date(start)),
                    end: Some(tenure_platform::time::to_date(end)),
                }),
                segment: String::new(),
                currency_code: "USD".into(),
                as_of: None,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(figures.metrics, asked, "{start} to {end}");
        let percent = asked
            .net_revenue_retention
            .map(|r| r.percent)
            .unwrap_or_default();
        assert!(
            text.contains(&format!("{percent} %")),
            "NRR {percent} missing from:\n{text}"
        );
    }
    assert_eq!(report.forecasts.len(), 2);
    assert!(report.model.example_count > 0, "{text}");
    // Every paying customer in one tier; the generated enterprise accounts
    // (USD 100,000 and up) make the top tier.
    let coverage = &report.coverage;
    let tiers: Vec<&str> = coverage.tiers.iter().map(|t| t.tier_id.as_str()).collect();
    assert_eq!(tiers, ["top", "leveraged", "scalable"]);
    let tiered: i64 = coverage.tiers.iter().map(|t| t.account_count).sum();
    assert_eq!(tiered, coverage.account_count);
    assert!(
        coverage.account_count > 0 && coverage.tiers[0].account_count > 0,
        "{text}"
    );
    // Every scored account at a level of the adoption model; the base
    // spreads over its levels.
    let maturity = report.maturity.all.as_ref().unwrap();
    assert_eq!(maturity.accounts, 200, "{text}");
    let levels_held = maturity.levels.iter().filter(|l| l.accounts > 0).count();
    assert!(levels_held >= 3, "{text}");
    // The generated plans, judged: some met, some missed.
    let plans = &report.plans;
    let count = |status: &str| plans.statuses.iter().find(|(s, _)| *s == status).unwrap().1;
    assert!(
        plans.accounts > 0 && count("met") > 0 && count("missed") > 0,
        "{text}"
    );
    // The churn model's examples, told by the adoption model's levels.
    let lessons = &report.model.maturity;
    assert_eq!(lessons.len(), 1, "{text}");
    let by_level: i32 = lessons[0].levels.iter().map(|l| l.example_count).sum();
    assert_eq!(by_level, report.model.example_count, "{text}");
    for behaviour in &lessons[0].behaviours {
        assert_eq!(
            behaviour.shown_count + behaviour.not_shown_count,
            report.model.example_count
        );
    }
    // Prospect fit learned from the base's first terms, three prospects
    // judged by it.
    assert_eq!(
        report.prospect_model.status(),
        tenure_proto::health::v1::ModelStatus::Ready
    );
    assert!(report.prospect_model.example_count > 50, "{text}");
    assert_eq!(report.prospects.len(), 3, "{text}");
    for heading in [
        "HEALTH BY BAND",
        "MATURITY",
        "PROSPECT FIT",
        "SUCCESS PLANS",
        "AT RISK",
        "SURPRISE CHURNS",
        "LEADING INDICATORS",
        "RETENTION",
        "FORECAST",
        "COHORTS",
        "SERVICE TIERS",
        "ADOPTION, SUCCESS AND RETENTION",
        "PLAYBOOKS",
    ] {
        assert!(text.contains(heading), "{heading} missing from:\n{text}");
    }

    // The HTML report of the same base, opened in headless Chromium.
    let page = tenure::report::html(&app.stack.operator_peers(), as_of)
        .await
        .unwrap();
    let path = dir.path().join("report.html");
    std::fs::write(&path, &page).unwrap();
    for fetch in ["src=", "href=", "@import", "url("] {
        assert!(!page.contains(fetch), "the page loads nothing ({fetch})");
    }
    let drawn = drawn_marks(&path);
    for chart in tenure::report::CHARTS {
        let marks = drawn.get(chart).copied().unwrap_or(0);
        assert!(marks > 0, "{chart} drew nothing ({drawn:?})");
    }
    app.stop().await;
}

/// Opens `page` in headless Chromium and reads back, per chart, how many of
/// its marks the browser laid out with a size (the page's own script counts
/// them after layout and writes `data-drawn`).
fn drawn_marks(page: &std::path::Path) -> std::collections::BTreeMap<String, usize> {
    let profile = tempfile::tempdir().unwrap();
    let output = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs (scripts/setup --tests installs it)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let dom = String::from_utf8_lossy(&output.stdout);
    let mut drawn = std::collections::BTreeMap::new();
    for tag in dom.split("<figure").skip(1) {
        let tag = &tag[..tag.find('>').unwrap_or(tag.len())];
        let attribute = |name: &str| {
            let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
            let end = tag[start..].find('"')? + start;
            Some(tag[start..end].to_owned())
        };
        if let (Some(chart), Some(count)) = (attribute("data-chart"), attribute("data-drawn")) {
            drawn.insert(chart, count.parse().unwrap_or(0));
        }
    }
    drawn
}
