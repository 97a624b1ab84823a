//! What an account does while it pays: contacts and their roles, usage,
//! tickets, NPS responses, invoices, external signals and success-plan
//! metrics, each shaped by the drivers of the year it falls in.

use chrono::{Days, Duration, Months, NaiveDate};
use rand::Rng as _;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution as _, LogNormal, Poisson};
use serde_json::json;

use super::config::Config;
use super::life::{Life, at};
use super::out::{Files, day, time};
use super::plan::{Plan, Tier};
use super::truth::{Driver, ONBOARDING};
use crate::import::Kind;

/// The product's features: (name, advanced).
const FEATURES: [(&str, bool); 12] = [
    ("dashboard.view", false),
    ("report.run", false),
    ("search.query", false),
    ("export.csv", false),
    ("comment.add", false),
    ("task.create", false),
    ("automation.run", true),
    ("api.call", true),
    ("workflow.build", true),
    ("forecast.run", true),
    ("integration.sync", true),
    ("sso.login", true),
];

pub(super) fn write_features(files: &mut Files, config: &Config) -> anyhow::Result<()> {
    let catalogued = config.as_of - Days::new(365 * u64::from(config.years) + 400);
    for (name, advanced) in FEATURES {
        files.row(
            Kind::Features,
            &json!({
                "feature_name": name,
                "display_name": name.replace('.', " "),
                "tier": if advanced { "advanced" } else { "basic" },
                "updated_at": time(at(catalogued, 0)),
            }),
        )?;
    }
    Ok(())
}

/// Writes everything the account did besides paying.
pub(super) fn write(
    files: &mut Files,
    config: &Config,
    plan: &Plan,
    life: &Life,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<()> {
    let account = Account { config, plan, life };
    let contacts = contacts(files, account, rng)?;
    usage(files, account, rng)?;
    tickets(files, account, rng)?;
    surveys(files, account, &contacts, rng)?;
    invoices(files, account, rng)?;
    signals(files, account, rng)?;
    metrics(files, account, rng)
}

/// The account whose activity is written, and the base it belongs to.
#[derive(Clone, Copy)]
struct Account<'a> {
    config: &'a Config,
    plan: &'a Plan,
    life: &'a Life,
}

/// The last moment anything may be dated: the end of the as-of day.
fn last_day(config: &Config, end: Option<NaiveDate>) -> NaiveDate {
    end.map_or(config.as_of, |e| {
        e.min(config.as_of + Days::new(1)) - Days::new(1)
    })
    .min(config.as_of)
}

fn contacts(
    files: &mut Files,
    Account { config, plan, life }: Account<'_>,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<Vec<String>> {
    let (low, high) = plan.tier.contacts();
    let count = rng.random_range(low..=high);
    let mut ids = Vec::new();
    let write = |files: &mut Files, k: u32, roles: &[&str], active: bool, on: NaiveDate| {
        let id = format!("{}-c{k}", plan.id);
        files.row(
            Kind::Contacts,
            &json!({
                "contact_id": id,
                "account_id": plan.id,
                "email": format!("person{k}@{}.example", plan.id),
                "name": format!("Person {k} of {}", plan.name),
                "title": match roles.first() { Some(&"sponsor") => "VP Operations", Some(&"champion") => "Team Lead", _ => "Analyst" },
                "roles": roles,
                "active": active,
                "updated_at": time(at(on, 7)),
            }),
        )?;
        anyhow::Ok(id)
    };
    for k in 0..count {
        let roles: &[&str] = match k {
            0 => &["sponsor"],
            1 => &["champion", "admin"],
            _ => &["user"],
        };
        ids.push(write(files, k, roles, true, plan.signup)?);
    }
    // Sponsors leave: with a successor (turnover), or without one for the
    // rest of the year (the driver); a successor comes after a renewal.
    let mut sponsor = 0;
    let mut next = count;
    for spell in &life.spells {
        for epoch in &spell.epochs {
            let lost = epoch.drivers[Driver::LostSponsor as usize];
            let change = lost.or(epoch.turnover);
            let Some(left) = change.filter(|d| *d <= config.as_of && *d > plan.signup) else {
                continue;
            };
            write(files, sponsor, &["sponsor"], false, left)?;
            let successor = if lost.is_some() {
                let renewed = spell.end.is_none_or(|e| e > epoch.end);
                renewed.then(|| epoch.end + Days::new(rng.random_range(10..=40)))
            } else {
                Some(left + Days::new(rng.random_range(5..=20)))
            };
            if let Some(arrives) = successor.filter(|d| *d <= last_day(config, spell.end)) {
                ids.push(write(files, next, &["sponsor"], true, arrives)?);
                sponsor = next;
                next += 1;
            }
        }
    }
    Ok(ids)
}

fn seats_on(seats: &[(NaiveDate, u32)], on: NaiveDate) -> u32 {
    seats
        .iter()
        .rev()
        .find(|(d, _)| *d <= on)
        .or(seats.first())
        .map_or(1, |(_, n)| *n)
}

/// Weekly sessions of the account's engaged users, mostly on weekdays,
/// after an onboarding ramp; a fall in advanced adoption halves usage and
/// drops the advanced features; a stalled onboarding keeps usage at the
/// ramp's foot, with no advanced features, for its first half year.
fn usage(
    files: &mut Files,
    Account { config, plan, life }: Account<'_>,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<()> {
    let engagement: f64 = rng.random_range(0.45..0.9);
    let advanced_share: f64 = rng.random_range(0.2..0.5);
    let mut counter = 0_u64;
    for spell in &life.spells {
        let last = last_day(config, spell.end);
        let mut week = spell.start;
        while week <= last {
            let epoch = life.epoch_on(week);
            let dropped = epoch.is_some_and(|e| e.has(Driver::FallingAdvancedAdoption, week));
            let stalled = epoch.is_some_and(|e| e.stalled(plan))
                && week < spell.start + Days::new(ONBOARDING.stalled_days);
            let ramp = if stalled {
                0.2
            } else {
                ((week - spell.start).num_days() as f64 / 60.0).clamp(0.2, 1.0)
            };
            let factor = if dropped { 0.5 } else { 1.0 };
            let engaged = (f64::from(seats_on(&spell.seats, week)) * engagement).round() as u32;
            for user in 0..engaged.max(1) {
                if !rng.random_bool((0.45 * ramp * factor).min(1.0)) {
                    continue;
                }
                let weekday = if rng.random_bool(0.92) {
                    rng.random_range(0..5)
                } else {
                    rng.random_range(5..7)
                };
                let on = week + Days::new(weekday);
                if on > last {
                    continue;
                }
                let feature = if !dropped && !stalled && rng.random_bool(advanced_share) {
                    FEATURES[rng.random_range(6..12)].0
                } else {
                    FEATURES[rng.random_range(0..6)].0
                };
                let occurred =
                    at(on, rng.random_range(8..19)) + Duration::minutes(rng.random_range(0..60));
                counter += 1;
                files.row(
                    Kind::Events,
                    &json!({
                        "message_id": format!("{}-e{counter}", plan.id),
                        "account_id": plan.id,
                        "user_id": format!("{}-u{user}", plan.id),
                        "event_name": feature,
                        "occurred_at": time(occurred),
                        "quantity": rng.random_range(1..=6),
                    }),
                )?;
            }
            week = week + Days::new(7);
        }
    }
    Ok(())
}

/// A ticket as drawn: opened, resolved some hours later (open while that
/// lies after the as-of day).
struct Ticket {
    opened: chrono::DateTime<chrono::Utc>,
    hours: f64,
    priority: &'static str,
    category: &'static str,
    csat: u32,
}

fn tickets(
    files: &mut Files,
    Account { config, plan, life }: Account<'_>,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<()> {
    let per_month = Poisson::new(plan.tier.ticket_rate())?;
    let quick = LogNormal::new(24_f64.ln(), 1.0)?;
    let mut drawn = Vec::new();
    for spell in &life.spells {
        let last = last_day(config, spell.end);
        let mut month = spell.start;
        while month <= last {
            for _ in 0..per_month.sample(rng) as u32 {
                let on = month + Days::new(rng.random_range(0..28));
                if on > last {
                    continue;
                }
                let category = [
                    "defect",
                    "how_to",
                    "how_to",
                    "defect",
                    "feature_request",
                    "billing",
                    "other",
                ][rng.random_range(0..7)];
                let priority = match rng.random_range(0..100) {
                    0..3 => "p1",
                    3..20 => "p2",
                    20..70 => "p3",
                    _ => "p4",
                };
                drawn.push(Ticket {
                    opened: at(on, rng.random_range(8..18)),
                    hours: quick.sample(rng) / if priority == "p1" { 4.0 } else { 1.0 },
                    priority,
                    category,
                    csat: rng.random_range(3..=5),
                });
            }
            month = month + Months::new(1);
        }
        // The driver: P1 defects left open past the renewal.
        for epoch in &spell.epochs {
            let Some(on) = epoch.drivers[Driver::UnresolvedP1Defects as usize] else {
                continue;
            };
            for _ in 0..rng.random_range(1..=2) {
                let opened_on = on + Days::new(rng.random_range(0..10));
                if opened_on > last {
                    continue;
                }
                let fixed = epoch.end + Days::new(rng.random_range(10..=60));
                drawn.push(Ticket {
                    opened: at(opened_on, 10),
                    hours: (fixed - opened_on).num_hours() as f64,
                    priority: "p1",
                    category: "defect",
                    csat: rng.random_range(1..=2),
                });
            }
        }
    }
    for (n, ticket) in drawn.iter().enumerate() {
        let id = format!("{}-t{}", plan.id, n + 1);
        let row = |status: &str, closed: Option<chrono::DateTime<chrono::Utc>>, updated| {
            json!({
                "ticket_id": id,
                "account_id": plan.id,
                "opened_at": time(ticket.opened),
                "closed_at": closed.map(time),
                "priority": ticket.priority,
                "category": ticket.category,
                "status": status,
                "csat": if closed.is_some() { ticket.csat } else { 0 },
                "updated_at": time(updated),
            })
        };
        files.row(Kind::Tickets, &row("open", None, ticket.opened))?;
        let closed = ticket.opened + Duration::minutes((ticket.hours * 60.0) as i64);
        if closed.date_naive() <= config.as_of {
            files.row(Kind::Tickets, &row("solved", Some(closed), closed))?;
        }
    }
    Ok(())
}

fn surveys(
    files: &mut Files,
    Account { config, plan, life }: Account<'_>,
    contacts: &[String],
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<()> {
    let mut id = 0;
    for spell in &life.spells {
        let last = last_day(config, spell.end);
        let mut on = spell.start + Days::new(rng.random_range(45..=90));
        while on <= last {
            let troubled = life.epoch_on(on).is_some_and(|e| {
                [Driver::FallingAdvancedAdoption, Driver::UnresolvedP1Defects]
                    .into_iter()
                    .any(|d| e.has(d, on))
            });
            let draw = rng.random_range(0..100);
            let score = match (troubled, draw) {
                (true, 0..55) | (false, 0..15) => rng.random_range(0..=6),
                (true, 55..85) | (false, 15..50) => rng.random_range(7..=8),
                _ => rng.random_range(9..=10),
            };
            id += 1;
            let answered = at(on, rng.random_range(9..17));
            files.row(
                Kind::Surveys,
                &json!({
                    "response_id": format!("{}-n{id}", plan.id),
                    "account_id": plan.id,
                    "contact_id": contacts[rng.random_range(0..contacts.len())],
                    "kind": "nps",
                    "score": score,
                    "responded_at": time(answered),
                    "updated_at": time(answered),
                }),
            )?;
            on = on + Days::new(rng.random_range(150..=210));
        }
    }
    Ok(())
}

/// Monthly invoices for monthly terms, quarterly ones for yearly terms;
/// in a year of late invoices each is paid months after it falls due.
fn invoices(
    files: &mut Files,
    Account { config, plan, life }: Account<'_>,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<()> {
    let (step, parts) = if plan.monthly { (1, 12) } else { (3, 4) };
    let mut id = 0;
    for spell in &life.spells {
        let last = last_day(config, spell.end);
        let mut issued = spell.start;
        while issued <= last {
            let arr = life
                .versions
                .iter()
                .rfind(|v| v.updated_at.date_naive() <= issued && v.term_start <= issued)
                .map_or(plan.arr_minor, |v| v.arr_minor);
            let due = issued + Days::new(30);
            let late = life
                .epoch_on(issued)
                .is_some_and(|e| e.has(Driver::LateInvoices, issued));
            let paid = if late {
                due + Days::new(rng.random_range(70..=150))
            } else if rng.random_bool(0.1) {
                due + Days::new(rng.random_range(1..=20))
            } else {
                due - Days::new(rng.random_range(0..=25))
            };
            id += 1;
            let row = |status: &str, paid_on: Option<NaiveDate>, updated: NaiveDate| {
                json!({
                    "invoice_id": format!("{}-i{id}", plan.id),
                    "account_id": plan.id,
                    "amount_minor": arr / parts,
                    "currency": plan.currency,
                    "issued_on": day(issued),
                    "due_on": day(due),
                    "paid_on": paid_on.map(day),
                    "status": status,
                    "updated_at": time(at(updated, 6)),
                })
            };
            files.row(Kind::Invoices, &row("open", None, issued))?;
            if paid <= config.as_of {
                files.row(Kind::Invoices, &row("paid", Some(paid), paid.max(issued)))?;
            }
            issued = issued + Months::new(step);
        }
    }
    Ok(())
}

fn signals(
    files: &mut Files,
    Account { config, plan, life }: Account<'_>,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<()> {
    let per_year = Poisson::new(0.25)?;
    let mut id = 0;
    for spell in &life.spells {
        let last = last_day(config, spell.end);
        for epoch in &spell.epochs {
            for _ in 0..per_year.sample(rng) as u32 {
                let on = epoch.start + Days::new(rng.random_range(0..365));
                if on > last {
                    continue;
                }
                let kind = [
                    "funding_round",
                    "acquisition",
                    "layoffs",
                    "key_person_change",
                    "competitor_engagement",
                ][rng.random_range(0..5)];
                id += 1;
                let occurred = at(on, 12);
                files.row(
                    Kind::Signals,
                    &json!({
                        "signal_id": format!("{}-x{id}", plan.id),
                        "account_id": plan.id,
                        "kind": kind,
                        "occurred_at": time(occurred),
                        "source": "news",
                        "updated_at": time(occurred),
                    }),
                )?;
            }
        }
    }
    Ok(())
}

/// A success-plan metric per spell for mid-market and enterprise accounts:
/// hours saved a week, climbing towards its target over nine months, half
/// as fast in a year of falling adoption; and the spell's success plan.
fn metrics(
    files: &mut Files,
    Account { config, plan, life }: Account<'_>,
    rng: &mut ChaCha8Rng,
) -> anyhow::Result<()> {
    if plan.tier == Tier::TechTouch {
        return Ok(());
    }
    for (n, spell) in life.spells.iter().enumerate() {
        let last = last_day(config, spell.end);
        let target = (f64::from(plan.seats) * 0.5).round().max(2.0);
        let mut values = Vec::new();
        let mut on = spell.start + Days::new(30);
        let mut progress = 0.0_f64;
        while on <= last {
            let slowed = life
                .epoch_on(on)
                .is_some_and(|e| e.has(Driver::FallingAdvancedAdoption, on));
            progress = (progress + if slowed { -0.05 } else { 0.12 }).clamp(0.0, 1.2);
            let noise: f64 = rng.random_range(-0.05..0.05);
            values.push(json!({
                "measured_on": day(on),
                "value": ((target * (progress + noise)).max(0.0) * 10.0).round() / 10.0,
            }));
            on = on + Days::new(30);
        }
        let Some(updated) = values.last().map(|_| on - Days::new(30)) else {
            continue;
        };
        let metric_id = format!("{}-m{}", plan.id, n + 1);
        // The spell's success plan: the metric at its target in nine
        // months, and half the seats in use within six.
        files.row(
            Kind::Plans,
            &json!({
                "plan_id": format!("{}-p{}", plan.id, n + 1),
                "account_id": plan.id,
                "name": "Value plan",
                "owner": plan.owner,
                "start_on": day(spell.start),
                "objectives": [
                    {
                        "objective_id": "hours-saved",
                        "name": "Hours saved a week",
                        "metric_id": metric_id,
                        "target": target,
                        "due_on": day(spell.start + Days::new(270)),
                    },
                    {
                        "objective_id": "active-users",
                        "name": "Half the seats in use",
                        "usage": "active_users_30d",
                        "target": target,
                        "due_on": day(spell.start + Days::new(180)),
                    },
                ],
                "updated_at": time(at(spell.start, 9)),
            }),
        )?;
        files.row(
            Kind::Metrics,
            &json!({
                "metric_id": metric_id,
                "account_id": plan.id,
                "name": "hours saved a week",
                "unit": "hours",
                "baseline": 0.0,
                "target": target,
                "direction": "higher_is_better",
                "values": values,
                "updated_at": time(at(updated, 20)),
            }),
        )?;
    }
    Ok(())
}
