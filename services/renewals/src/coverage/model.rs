//! The coverage model and what it makes of a book of customers: each
//! customer's tier by the first rule it meets, the hours it needs, and
//! whether those hours fit in its owner's capacity. Pure: no database, no
//! wire types.

use std::collections::BTreeMap;

/// One tier: who belongs to it, and the CSM time each of its accounts needs.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Tier {
    pub id: String,
    pub name: String,
    /// ARR at least this, in the model's currency (minor units); 0: any.
    pub min_arr_minor: i64,
    /// Segments the tier takes; empty: any.
    pub segments: Vec<String>,
    /// CSM hours a month per account; 0: pooled coverage.
    pub hours_per_account_month: f64,
}

impl Tier {
    fn takes(&self, customer: &Customer) -> bool {
        customer.arr_minor >= self.min_arr_minor
            && (self.segments.is_empty() || self.segments.contains(&customer.segment))
    }

    /// Whether the tier takes every account (the last one must).
    pub fn takes_all(&self) -> bool {
        self.min_arr_minor == 0 && self.segments.is_empty()
    }

    /// Accounts one CSM can cover in the tier; 0 for pooled coverage.
    pub fn accounts_per_csm(&self, csm_hours_per_month: f64) -> f64 {
        if self.hours_per_account_month > 0.0 {
            csm_hours_per_month / self.hours_per_account_month
        } else {
            0.0
        }
    }
}

/// A version of the coverage model.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub version: i32,
    pub currency: String,
    pub tiers: Vec<Tier>,
    pub csm_hours_per_month: f64,
    pub created: chrono::DateTime<chrono::Utc>,
}

/// A customer on the day of a report: ARR in the model's currency.
#[derive(Clone, Debug, PartialEq)]
pub struct Customer {
    pub account_id: String,
    pub name: String,
    pub segment: String,
    pub owner: String,
    pub arr_minor: i64,
}

/// Where a customer stands: its tier (an index into the model's tiers),
/// the hours it needs, and whether they fit in its owner's capacity.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    pub tier: usize,
    pub hours: f64,
    pub over_capacity: bool,
}

impl Model {
    /// The tier of `customer`: the first whose rule it meets (the last
    /// takes everyone).
    pub fn tier_of(&self, customer: &Customer) -> usize {
        self.tiers
            .iter()
            .position(|tier| tier.takes(customer))
            .unwrap_or(self.tiers.len().saturating_sub(1))
    }

    /// Places every customer (in the order given). Each owner's book is
    /// filled in order of tier, then ARR, largest first: the accounts whose
    /// hours no longer fit in one CSM's month are over capacity, and so is
    /// every account that needs hours and has no owner.
    pub fn place(&self, customers: &[Customer]) -> Vec<Placement> {
        let mut placements: Vec<Placement> = customers
            .iter()
            .map(|customer| {
                let tier = self.tier_of(customer);
                let hours = self
                    .tiers
                    .get(tier)
                    .map_or(0.0, |t| t.hours_per_account_month);
                Placement {
                    tier,
                    hours,
                    over_capacity: false,
                }
            })
            .collect();
        let mut books: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, customer) in customers.iter().enumerate() {
            books.entry(customer.owner.as_str()).or_default().push(i);
        }
        for (owner, mut book) in books {
            book.sort_by(|&a, &b| {
                placements[a]
                    .tier
                    .cmp(&placements[b].tier)
                    .then(customers[b].arr_minor.cmp(&customers[a].arr_minor))
                    .then(customers[a].account_id.cmp(&customers[b].account_id))
            });
            let mut used = 0.0;
            for i in book {
                let placement = &mut placements[i];
                if placement.hours <= 0.0 {
                    continue;
                }
                used += placement.hours;
                // A little slack for sums of fractional hours.
                placement.over_capacity =
                    owner.is_empty() || used > self.csm_hours_per_month + 1e-9;
            }
        }
        placements
    }
}

/// A tier's share of the book.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TierTotals {
    pub accounts: i64,
    pub arr_minor: i64,
    pub hours: f64,
}

/// An owner's book against their capacity.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OwnerTotals {
    pub accounts: i64,
    pub arr_minor: i64,
    pub hours: f64,
    pub over_capacity: i64,
    pub arr_over_capacity_minor: i64,
}

/// What a report says of a placed book.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Totals {
    pub accounts: i64,
    pub arr_minor: i64,
    /// In the model's tier order.
    pub tiers: Vec<TierTotals>,
    /// By owner, the empty owner first.
    pub owners: BTreeMap<String, OwnerTotals>,
    pub over_capacity: i64,
}

impl Totals {
    pub fn of(model: &Model, customers: &[Customer], placements: &[Placement]) -> Self {
        let mut totals = Totals {
            tiers: vec![TierTotals::default(); model.tiers.len()],
            ..Default::default()
        };
        for (customer, placement) in customers.iter().zip(placements) {
            totals.accounts += 1;
            totals.arr_minor += customer.arr_minor;
            if let Some(tier) = totals.tiers.get_mut(placement.tier) {
                tier.accounts += 1;
                tier.arr_minor += customer.arr_minor;
                tier.hours += placement.hours;
            }
            let owner = totals.owners.entry(customer.owner.clone()).or_default();
            owner.accounts += 1;
            owner.arr_minor += customer.arr_minor;
            owner.hours += placement.hours;
            if placement.over_capacity {
                owner.over_capacity += 1;
                owner.arr_over_capacity_minor += customer.arr_minor;
                totals.over_capacity += 1;
            }
        }
        totals
    }

    /// Whether the first tier holds a third to a half of the ARR with
    /// under 10 % of the customers: the usual shape of a top tier.
    pub fn top_tier_as_usual(&self) -> bool {
        let Some(top) = self.tiers.first() else {
            return false;
        };
        if self.accounts == 0 || self.arr_minor <= 0 {
            return false;
        }
        let revenue = top.arr_minor as f64 / self.arr_minor as f64;
        let accounts = top.accounts as f64 / self.accounts as f64;
        (1.0 / 3.0..=0.5).contains(&revenue) && accounts < 0.1
    }
}

/// `part` of `whole` in percent (0 when the whole is empty).
pub fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part / whole * 100.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dollars(n: i64) -> i64 {
        n * 100
    }

    fn tier(id: &str, min_arr: i64, segments: &[&str], hours: f64) -> Tier {
        Tier {
            id: id.to_owned(),
            name: id.to_owned(),
            min_arr_minor: min_arr,
            segments: segments.iter().map(|s| (*s).to_owned()).collect(),
            hours_per_account_month: hours,
        }
    }

    fn model() -> Model {
        Model {
            version: 1,
            currency: "USD".to_owned(),
            tiers: vec![
                tier("top", dollars(100_000), &[], 10.0),
                tier(
                    "leveraged",
                    dollars(20_000),
                    &["mid-market", "enterprise"],
                    2.0,
                ),
                tier("scalable", 0, &[], 0.0),
            ],
            csm_hours_per_month: 21.0,
            created: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn customer(id: &str, segment: &str, owner: &str, arr: i64) -> Customer {
        Customer {
            account_id: id.to_owned(),
            name: id.to_owned(),
            segment: segment.to_owned(),
            owner: owner.to_owned(),
            arr_minor: arr,
        }
    }

    #[test]
    fn the_first_rule_met_names_the_tier() {
        let model = model();
        assert_eq!(
            model.tier_of(&customer("a", "smb", "", dollars(150_000))),
            0
        );
        assert_eq!(
            model.tier_of(&customer("b", "enterprise", "", dollars(30_000))),
            1
        );
        // ARR enough for the second tier, but not its segment.
        assert_eq!(model.tier_of(&customer("c", "smb", "", dollars(30_000))), 2);
        assert_eq!(
            model.tier_of(&customer("d", "mid-market", "", dollars(5))),
            2
        );
    }

    #[test]
    fn a_book_fills_by_tier_then_arr_and_the_rest_is_over_capacity() {
        let model = model();
        let customers = vec![
            customer("small-1", "mid-market", "ana", dollars(25_000)),
            customer("top-1", "enterprise", "ana", dollars(200_000)),
            customer("top-2", "enterprise", "ana", dollars(300_000)),
            customer("small-2", "mid-market", "ana", dollars(30_000)),
            customer("pooled", "smb", "ana", dollars(1_000)),
            customer("orphan", "enterprise", "", dollars(150_000)),
            customer("orphan-pooled", "smb", "", dollars(1_000)),
        ];
        let placed = model.place(&customers);
        let over: Vec<&str> = customers
            .iter()
            .zip(&placed)
            .filter(|(_, p)| p.over_capacity)
            .map(|(c, _)| c.account_id.as_str())
            .collect();
        // Ana's 21 hours: two top accounts (20 h), then the larger of the
        // two leveraged ones would make 22 h: both are over capacity.
        assert_eq!(over, ["small-1", "small-2", "orphan"]);
        let totals = Totals::of(&model, &customers, &placed);
        assert_eq!(totals.accounts, 7);
        assert_eq!(totals.tiers[0].accounts, 3);
        assert_eq!(totals.tiers[0].hours, 30.0);
        assert_eq!(totals.owners["ana"].hours, 24.0);
        assert_eq!(totals.owners["ana"].over_capacity, 2);
        assert_eq!(
            totals.owners["ana"].arr_over_capacity_minor,
            dollars(55_000)
        );
        assert_eq!(totals.owners[""].over_capacity, 1);
        assert_eq!(totals.over_capacity, 3);
    }

    #[test]
    fn a_top_tier_as_usual_holds_a_third_to_half_of_revenue_with_few_accounts() {
        let model = model();
        let mut customers: Vec<Customer> = (0..19)
            .map(|i| customer(&format!("s{i}"), "smb", "", dollars(10_000)))
            .collect();
        customers.push(customer("big", "enterprise", "", dollars(150_000)));
        let placed = model.place(&customers);
        let totals = Totals::of(&model, &customers, &placed);
        // 150k of 340k (44 %) with 1 of 20 accounts (5 %).
        assert!(totals.top_tier_as_usual());
        customers.push(customer("big-2", "enterprise", "", dollars(150_000)));
        let placed = model.place(&customers);
        // 300k of 490k (61 %): more than half.
        assert!(!Totals::of(&model, &customers, &placed).top_tier_as_usual());
    }

    #[test]
    fn accounts_per_csm_follow_the_hours() {
        let model = model();
        assert_eq!(model.tiers[0].accounts_per_csm(21.0), 2.1);
        assert_eq!(model.tiers[2].accounts_per_csm(21.0), 0.0);
        assert!(model.tiers[2].takes_all() && !model.tiers[1].takes_all());
    }
}
