//! The demo's report as text.

use std::fmt::{self, Write as _};

use tenure_proto::common::v1::Money;

use super::Report;
use super::figures::minor;

/// Whole currency units with thousands separators: `USD 1,234,567`.
pub(super) fn money(value: &Option<Money>) -> String {
    let Some(m) = value.as_ref().filter(|m| !m.currency_code.is_empty()) else {
        return "-".into();
    };
    format!("{} {}", m.currency_code, grouped(m.amount_minor / 100))
}

fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

fn pct(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.1} %"))
}

fn rate(value: &Option<tenure_proto::renewals::v1::Rate>) -> String {
    value
        .as_ref()
        .filter(|r| r.denominator != 0)
        .map_or("-".into(), |r| format!("{} %", r.percent))
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        let as_of = self.as_of.map(|d| d.to_string()).unwrap_or_default();
        let rows: u64 = self.loaded.iter().map(|(_, n)| n).sum();
        let _ = writeln!(
            out,
            "\nTenure on a generated SaaS company: {} accounts, {rows} rows loaded through the APIs, as of {as_of}\n",
            self.accounts
        );

        let _ = writeln!(out, "HEALTH BY BAND");
        for (band, count, arr) in &self.health.bands {
            let arr: Vec<String> = arr.iter().map(|m| money(&Some(m.clone()))).collect();
            let _ = writeln!(
                out,
                "  {band:<8} {count:>6} accounts   ARR {}",
                arr.join(" + ")
            );
        }
        let _ = writeln!(out, "  distribution (accounts per 10 points):");
        let widest = self
            .health
            .histogram
            .iter()
            .map(|h| h.2)
            .max()
            .unwrap_or(1)
            .max(1);
        for (lower, upper, count) in &self.health.histogram {
            let bar = "#".repeat((*count as usize * 40).div_ceil(widest as usize));
            let _ = writeln!(out, "    {lower:>3.0}-{upper:<3.0} {count:>6} {bar}");
        }

        let _ = writeln!(out, "\nAT RISK (lowest scores) AND WHY");
        for a in &self.health.at_risk {
            let _ = writeln!(
                out,
                "  {:<12} score {:>5.1}  ARR {:<16} {}",
                a.account_id,
                a.score,
                money(&a.arr),
                a.reasons.join(", ")
            );
        }
        let _ = writeln!(out, "ADVOCATES (highest scores)");
        for (account, score, arr) in &self.health.advocates {
            let _ = writeln!(
                out,
                "  {account:<12} score {score:>5.1}  ARR {}",
                money(arr)
            );
        }

        let b = &self.backtest;
        let _ = writeln!(
            out,
            "\nSCORECARD BACKTEST: {} past renewals scored as of 90 days before their end, AUC {}",
            b.example_count,
            b.auc.map_or("-".into(), |a| format!("{a:.3}"))
        );
        for band in &b.bands {
            let _ = writeln!(
                out,
                "  {:<8} {:>5} renewals, {} renewed",
                super::band_name(band.band()),
                band.account_count,
                pct(band.renewal_rate_pct)
            );
        }
        let _ = writeln!(
            out,
            "SURPRISE CHURNS OF THE LAST YEAR (green 90 days before, churned anyway): {}",
            self.surprises.len()
        );
        for s in self.surprises.iter().take(5) {
            let end = s
                .term_end_date
                .as_ref()
                .map(|d| format!("{}-{:02}-{:02}", d.year, d.month, d.day))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<12} score {:>5.1}  term ended {end}",
                s.account_id, s.score
            );
        }

        let m = &self.model;
        let _ = writeln!(
            out,
            "\nLEADING INDICATORS LEARNED from {} renewals ({} churned), cross-validated AUC {}",
            m.example_count,
            m.churn_count,
            m.cv_auc.map_or("-".into(), |a| format!("{a:.3}"))
        );
        let measured = m
            .signals
            .iter()
            .filter(|s| !s.feature.contains(':') && !s.feature.contains('='));
        for s in measured.take(6) {
            let truth = self
                .truth
                .iter()
                .find(|(_, _, signals)| signals.contains(&s.feature))
                .map_or(String::new(), |(name, _, _)| {
                    format!("<- true driver: {name}")
                });
            let _ = writeln!(
                out,
                "  {:<30} odds ratio {:>6.3}  {truth}",
                s.feature, s.odds_ratio
            );
        }
        let _ = writeln!(out, "  the generator's true drivers (log-odds):");
        for (name, log_odds, signals) in &self.truth {
            let _ = writeln!(
                out,
                "    {name:<28} {log_odds:>4.1}  shows in {}",
                signals.join(", ")
            );
        }
        for lessons in &m.maturity {
            let levels: Vec<String> = lessons
                .levels
                .iter()
                .filter(|l| l.example_count > 0)
                .map(|l| {
                    format!(
                        "{} {} ({})",
                        l.name,
                        pct(l.renewal_rate_pct),
                        l.example_count
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "  renewed, by {} maturity level at the horizon: {}",
                lessons.model_name,
                levels.join(", ")
            );
        }

        let _ = writeln!(
            out,
            "\nRETENTION (USD book)  {:<10} {:>8} {:>8} {:>8} {:>8} {:>7} {:>10} {:>9}",
            "quarter", "CRR", "RRR", "GRR", "NRR", "quick", "gross MRR", "net MRR"
        );
        for r in &self.retention {
            let q = &r.metrics;
            let _ = writeln!(
                out,
                "  {} to {}  {:>8} {:>8} {:>8} {:>8} {:>7} {:>10} {:>9}",
                r.start,
                r.end,
                rate(&q.contract_renewal_rate),
                rate(&q.recurring_revenue_rate),
                rate(&q.gross_revenue_retention),
                rate(&q.net_revenue_retention),
                rate(&q.quick_ratio),
                pct(r.gross_mrr_churn_pct()),
                pct(r.net_mrr_churn_pct()),
            );
        }

        let _ = writeln!(
            out,
            "\nFORECAST of renewals ending in the next two quarters (USD)"
        );
        for fc in &self.forecasts {
            let t = &fc.totals;
            let _ = writeln!(
                out,
                "  {} to {}: {} renewals, {} up, expected {} (90 % interval {} to {})",
                fc.start,
                fc.end,
                t.renewal_count,
                money(&t.arr_up),
                money(&t.expected_arr),
                money(&t.interval_low),
                money(&t.interval_high),
            );
        }

        let _ = writeln!(out, "\nCOHORTS (yearly, by first paid term)");
        for c in &self.cohorts {
            let start = c
                .start
                .as_ref()
                .map_or(String::new(), |d| d.year.to_string());
            let fitted = c.model.as_ref().map_or("no fit yet".into(), |m| {
                // The sBG's first-year churn is alpha / (alpha + beta); with
                // alpha + beta in the thousands its customers are alike.
                let churn = m.alpha / (m.alpha + m.beta) * 100.0;
                if m.alpha + m.beta > 1000.0 {
                    format!("sBG: {churn:.1} % churn a year, alike for every customer")
                } else {
                    format!(
                        "sBG alpha {:.2} beta {:.2}: {churn:.1} % churn in the first year, \
                         less as the riskiest leave",
                        m.alpha, m.beta
                    )
                }
            });
            let _ = writeln!(
                out,
                "  {start}: {:>5} customers, survivors {:?}, {fitted}",
                c.size, c.survivors
            );
        }

        let m = &self.maturity;
        let _ = writeln!(
            out,
            "\nMATURITY (the adoption model, v{}; share of each segment's accounts per level)",
            m.model_version
        );
        // The model's first level asks for nothing: no account is below it.
        let names: String = m
            .all
            .iter()
            .flat_map(|a| &a.levels)
            .skip(1)
            .map(|l| format!("{:>11}", l.level_name))
            .collect();
        let _ = writeln!(out, "  {:<14} {:>8}  {names}", "segment", "accounts");
        let rows = m.all.iter().map(|a| ("all", a));
        let rows = rows.chain(m.segments.iter().map(|s| (s.segment.as_str(), s)));
        for (name, segment) in rows {
            let shares: String = segment
                .levels
                .iter()
                .skip(1)
                .map(|l| format!("{:>9.1} %", l.share_pct))
                .collect();
            let _ = writeln!(out, "  {name:<14} {:>8}  {shares}", segment.accounts);
        }

        let p = &self.plans;
        let _ = writeln!(
            out,
            "\nSUCCESS PLANS ({} accounts with a plan under way; {} of objectives met or on track, success rate {})",
            p.accounts,
            pct(p.on_track_pct),
            pct(p.success_rate_pct)
        );
        for (status, objectives) in &p.statuses {
            let _ = writeln!(out, "  {status:<12} {objectives:>6} objectives");
        }

        let m = &self.prospect_model;
        let _ = writeln!(
            out,
            "\nPROSPECT FIT (learned from {} first terms, {} churned; fit AUC {}, day-{} indicators AUC {})",
            m.example_count,
            m.churn_count,
            m.cv_auc.map_or("-".to_owned(), |a| format!("{a:.2}")),
            m.look_days,
            m.indicator_cv_auc
                .map_or("-".to_owned(), |a| format!("{a:.2}")),
        );
        for fit in &self.prospects {
            let _ = writeln!(
                out,
                "  {:<36} renews {:>5.1} %   look-alikes: {} ({}, {} renewed)",
                fit.prospect_id,
                fit.renewal_probability * 100.0,
                fit.look_alikes,
                fit.look_alike_count,
                pct(fit.look_alike_renewal_rate_pct),
            );
            for gap in fit.gaps.iter().take(3) {
                let _ = writeln!(
                    out,
                    "      by day {}: {:<28} renewed {:>7.1}, churned {:>7.1}  ({:.1} % against {:.1} %)",
                    m.look_days,
                    gap.signal,
                    gap.renewed_value,
                    gap.churned_value,
                    gap.renewal_probability_if_reached * 100.0,
                    gap.renewal_probability_if_missed * 100.0,
                );
            }
        }

        let c = &self.coverage;
        let _ = writeln!(
            out,
            "\nSERVICE TIERS ({} paying customers, ARR {}; {:.1} CSMs needed)",
            c.account_count,
            money(&c.arr),
            c.csms_needed
        );
        for tier in &c.tiers {
            let _ = writeln!(
                out,
                "  {:<10} {:>6} accounts ({:>5.1} %)   ARR {:<16} ({:>5.1} %)   {:>6.1} CSMs",
                tier.display_name,
                tier.account_count,
                tier.account_percent,
                money(&tier.arr),
                tier.arr_percent,
                tier.csms_needed
            );
        }
        let over = c.owners.iter().filter(|o| o.accounts_over_capacity > 0);
        for owner in over {
            let who = if owner.owner.is_empty() {
                "no owner"
            } else {
                &owner.owner
            };
            let _ = writeln!(
                out,
                "  over capacity: {who:<12} {} accounts, ARR {} ({:.0} % of a CSM's hours)",
                owner.accounts_over_capacity,
                money(&owner.arr_over_capacity),
                owner.utilization_percent
            );
        }

        let r = &self.three_rs;
        let _ = writeln!(
            out,
            "\nADOPTION, SUCCESS AND RETENTION (customers on the day; retention of the year before)"
        );
        let _ = writeln!(
            out,
            "  {:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "",
            "customers",
            "licences",
            "advanced",
            "success",
            "positive",
            "negative",
            "logos",
            "NRR"
        );
        let rows = r.all.iter().map(|f| ("all", f));
        let rows = rows.chain(
            r.segments
                .iter()
                .chain(&r.tiers)
                .filter_map(|g| Some((g.name.as_str(), g.figures.as_ref()?))),
        );
        for (name, f) in rows {
            let percent = |rate: &Option<tenure_proto::renewals::v1::Rate>| {
                rate.as_ref()
                    .map_or("-".to_owned(), |r| format!("{} %", r.percent))
            };
            let _ = writeln!(
                out,
                "  {name:<12} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                f.accounts,
                pct(f.licenses_adopted_pct),
                pct(f.advanced_users_pct),
                pct(f.success_rate_pct),
                pct(f.positive_impact_pct),
                pct(f.negative_impact_pct),
                percent(&f.logo_retention),
                percent(&f.net_revenue_retention),
            );
        }

        let _ = writeln!(out, "\nPLAYBOOKS");
        for (name, runs) in &self.playbook_runs {
            let _ = writeln!(out, "  {name:<16} {runs:>5} runs");
        }
        let _ = writeln!(
            out,
            "  {} tasks opened for CSMs, {} webhooks delivered",
            self.tasks_opened, self.webhooks_received
        );
        let arr_total: i64 = self
            .retention
            .last()
            .and_then(|r| r.metrics.movements.as_ref())
            .map_or(0, |m| minor(&m.end));
        let _ = writeln!(
            out,
            "\nUSD recurring revenue at the end of the last full quarter: USD {}. Done in {:.0} s.",
            grouped(arr_total / 100),
            self.elapsed.as_secs_f64()
        );
        f.write_str(&out)
    }
}
