//! Who the customers are: touch tier, size, currency, term length, signup
//! date and parent, drawn for every account before any life is simulated.

use chrono::{Days, NaiveDate};
use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

use super::config::Config;

/// Touch tiers: how a customer is served, and the segment it is filed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Tier {
    TechTouch,
    MidMarket,
    Enterprise,
}

impl Tier {
    pub(super) fn segment(self) -> &'static str {
        match self {
            Tier::TechTouch => "tech-touch",
            Tier::MidMarket => "mid-market",
            Tier::Enterprise => "enterprise",
        }
    }

    /// Yearly recurring revenue range, in whole currency units.
    fn arr_range(self) -> (f64, f64) {
        match self {
            Tier::TechTouch => (1_200.0, 12_000.0),
            Tier::MidMarket => (12_000.0, 100_000.0),
            Tier::Enterprise => (100_000.0, 600_000.0),
        }
    }

    fn seat_range(self) -> (u32, u32) {
        match self {
            Tier::TechTouch => (2, 8),
            Tier::MidMarket => (8, 30),
            Tier::Enterprise => (25, 90),
        }
    }

    fn monthly_share(self) -> f64 {
        match self {
            Tier::TechTouch => 0.8,
            Tier::MidMarket => 0.25,
            Tier::Enterprise => 0.0,
        }
    }

    /// Log-odds of churn at a yearly renewal with no driver present.
    pub(super) fn base_log_odds(self) -> f64 {
        match self {
            Tier::TechTouch => -2.0,
            Tier::MidMarket => -2.6,
            Tier::Enterprise => -3.0,
        }
    }

    pub(super) fn contacts(self) -> (u32, u32) {
        match self {
            Tier::TechTouch => (2, 3),
            Tier::MidMarket => (3, 5),
            Tier::Enterprise => (5, 8),
        }
    }

    /// Tickets a month.
    pub(super) fn ticket_rate(self) -> f64 {
        match self {
            Tier::TechTouch => 0.08,
            Tier::MidMarket => 0.25,
            Tier::Enterprise => 0.6,
        }
    }

    fn owners(self) -> &'static [&'static str] {
        match self {
            Tier::TechTouch => &["pooled"],
            Tier::MidMarket => &["avery", "blake", "casey", "devon", "emery", "finley"],
            Tier::Enterprise => &["harper", "jordan", "kendall", "morgan"],
        }
    }
}

/// One account as drawn before its life is simulated.
#[derive(Clone, Debug)]
pub(super) struct Plan {
    pub(super) index: usize,
    pub(super) id: String,
    pub(super) name: String,
    pub(super) tier: Tier,
    pub(super) industry: &'static str,
    pub(super) owner: &'static str,
    pub(super) currency: &'static str,
    pub(super) monthly: bool,
    pub(super) signup: NaiveDate,
    /// Yearly recurring revenue at signup, in minor units.
    pub(super) arr_minor: i64,
    pub(super) seats: u32,
    pub(super) parent: Option<String>,
    pub(super) employees: u32,
    /// Its onboarding stalls ([`super::truth::ONBOARDING`]).
    pub(super) stalled_onboarding: bool,
}

const INDUSTRIES: [&str; 8] = [
    "software",
    "retail",
    "healthcare",
    "finance",
    "manufacturing",
    "education",
    "media",
    "logistics",
];

const FIRST: [&str; 16] = [
    "Acme", "Blue", "Cedar", "Delta", "Ember", "Fjord", "Granite", "Harbor", "Iris", "Juniper",
    "Kestrel", "Lumen", "Maple", "Nova", "Orbit", "Pioneer",
];
const SECOND: [&str; 12] = [
    "Labs",
    "Systems",
    "Works",
    "Health",
    "Retail",
    "Capital",
    "Logistics",
    "Media",
    "Foods",
    "Analytics",
    "Studios",
    "Partners",
];

pub(super) fn account_id(index: usize) -> String {
    format!("acct-{index:06}")
}

/// Draws every account. Two in five signed before the window opened (the
/// company existed before it); signups inside the window grow over time.
pub(super) fn plans(config: &Config, rng: &mut ChaCha8Rng) -> Vec<Plan> {
    let window_days = 365 * u64::from(config.years);
    let window_start = config.as_of - Days::new(window_days);
    let mut plans: Vec<Plan> = Vec::with_capacity(config.accounts);
    let mut enterprise_parents: Vec<usize> = Vec::new();
    for index in 0..config.accounts {
        let draw: f64 = rng.random();
        let tier = if draw < 0.6 {
            Tier::TechTouch
        } else if draw < 0.9 {
            Tier::MidMarket
        } else {
            Tier::Enterprise
        };
        let signup = if rng.random_bool(0.4) {
            window_start - Days::new(rng.random_range(1..=365))
        } else {
            // Density rising linearly over the window: inverse of t².
            let t: f64 = rng.random::<f64>().sqrt();
            window_start + Days::new(((t * window_days as f64) as u64).min(window_days - 1))
        };
        let (low, high) = tier.arr_range();
        let arr = (low.ln() + rng.random::<f64>() * (high.ln() - low.ln())).exp();
        let (seat_low, seat_high) = tier.seat_range();
        let seats = rng.random_range(seat_low..=seat_high);
        let currency = if tier != Tier::TechTouch && rng.random_bool(0.15) {
            "EUR"
        } else {
            "USD"
        };
        let monthly = rng.random_bool(tier.monthly_share());
        let owners = tier.owners();
        let parent =
            if tier == Tier::Enterprise && !enterprise_parents.is_empty() && rng.random_bool(0.2) {
                let parent = enterprise_parents[rng.random_range(0..enterprise_parents.len())];
                Some(account_id(parent))
            } else {
                if tier == Tier::Enterprise {
                    enterprise_parents.push(index);
                }
                None
            };
        let name = format!(
            "{} {} {}",
            FIRST[rng.random_range(0..FIRST.len())],
            SECOND[rng.random_range(0..SECOND.len())],
            index
        );
        plans.push(Plan {
            index,
            id: account_id(index),
            name,
            tier,
            industry: INDUSTRIES[rng.random_range(0..INDUSTRIES.len())],
            owner: owners[rng.random_range(0..owners.len())],
            currency,
            monthly,
            signup,
            // Prices are whole units a month.
            arr_minor: ((arr / 12.0).round() as i64).max(1) * 12 * 100,
            seats,
            parent,
            employees: seats * rng.random_range(3..=20),
            stalled_onboarding: super::truth::stalled(config.seed, index),
        });
    }
    plans
}
