//! The hidden causes of churn: the drivers, their log-odds and their
//! shares, and which accounts stall in onboarding. [`super::answers`]
//! writes them down beside the base.

/// A hidden driver of churn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    FallingAdvancedAdoption,
    LostSponsor,
    UnresolvedP1Defects,
    LateInvoices,
}

/// A driver, how often it strikes and how the data shows it.
#[derive(Clone, Copy, Debug)]
pub struct DriverSpec {
    pub driver: Driver,
    pub name: &'static str,
    /// Chance it appears in a given year of an account's life.
    pub share: f64,
    /// Days after the year's start within which it appears: early enough to
    /// be visible in the signals 90 days before the renewal it endangers.
    pub appears: (u64, u64),
    /// What it adds to the log-odds of churn at the renewal.
    pub log_odds: f64,
    /// The account signals it shows in.
    pub signals: &'static [&'static str],
}

pub const DRIVERS: [DriverSpec; 4] = [
    DriverSpec {
        driver: Driver::FallingAdvancedAdoption,
        name: "falling_advanced_adoption",
        share: 0.15,
        appears: (30, 200),
        log_odds: 1.8,
        signals: &[
            "advanced_features_used_30d",
            "usage_trend_pct",
            "active_users_30d",
        ],
    },
    DriverSpec {
        driver: Driver::LostSponsor,
        name: "lost_sponsor",
        share: 0.10,
        appears: (190, 265),
        log_odds: 1.6,
        signals: &["sponsor_changed_90d"],
    },
    DriverSpec {
        driver: Driver::UnresolvedP1Defects,
        name: "unresolved_p1_defects",
        share: 0.10,
        appears: (60, 250),
        log_odds: 1.2,
        signals: &["open_tickets_p1", "defect_share_pct"],
    },
    DriverSpec {
        driver: Driver::LateInvoices,
        name: "late_invoices",
        share: 0.12,
        appears: (30, 150),
        log_odds: 1.0,
        signals: &["max_days_overdue", "overdue_amounts"],
    },
];

/// The first-year driver: an onboarding that stalled. Few of the account's
/// users ever take up the product in its first half year, none of them its
/// advanced features, and its first renewal is at risk. It strikes a share
/// of accounts chosen by a hash of the seed and the account rather than
/// from a random stream, so adding it changed no account it spared.
pub struct OnboardingSpec {
    pub name: &'static str,
    pub share: f64,
    /// Days from the first paid day that usage stays low.
    pub stalled_days: u64,
    /// What it adds to the log-odds of churn in the first year.
    pub log_odds: f64,
    pub signals: &'static [&'static str],
}

pub const ONBOARDING: OnboardingSpec = OnboardingSpec {
    name: "stalled_onboarding",
    share: 0.2,
    stalled_days: 180,
    log_odds: 1.4,
    signals: &[
        "active_users_30d",
        "license_utilization_pct",
        "advanced_features_used_30d",
    ],
};

/// Whether account `index` of a base seeded `seed` stalled in onboarding.
pub(super) fn stalled(seed: u64, index: usize) -> bool {
    let mut x = seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED_0B0A_4D16_0001;
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 29;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 32;
    (x % 1_000_000) as f64 / 1_000_000.0 < ONBOARDING.share
}
