//! Retention models: the observed survival curve in time ([`survival`]),
//! the shifted-beta-geometric model of contractual retention and the
//! lifetime values it implies ([`sbg`]), and growth scenarios.

pub mod sbg;
pub mod survival;

pub use sbg::{Boundary, FitError, Renewals, Sbg, SbgFit, ValueError};
pub use survival::{Curve, Life, Median, SurvivalPoint, kaplan_meier, months_between};

/// A growth plan to project.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scenario {
    pub customers: f64,
    /// Annual recurring revenue per customer.
    pub revenue_per_customer: f64,
    /// New customers a year, as a share of the starting customer count.
    pub new_customer_growth: f64,
    /// Share of customers lost a year.
    pub churn_rate: f64,
    /// Growth of a kept customer's revenue a year.
    pub expansion_rate: f64,
    pub years: u32,
}

/// One projected month.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProjectedMonth {
    pub month: u32,
    pub customers: f64,
    /// Monthly recurring revenue with churn, and as if nobody churned.
    pub mrr: f64,
    pub mrr_without_churn: f64,
}

impl Scenario {
    /// Month by month: annual rates compounded monthly, new customers
    /// arriving evenly through the year.
    pub fn project(&self) -> Vec<ProjectedMonth> {
        let monthly_churn = 1.0 - (1.0 - self.churn_rate).powf(1.0 / 12.0);
        let monthly_expansion = (1.0 + self.expansion_rate).powf(1.0 / 12.0);
        let arrivals = self.customers * self.new_customer_growth / 12.0;
        let (mut kept, mut all) = (self.customers, self.customers);
        let mut revenue = self.revenue_per_customer / 12.0;
        let mut months = Vec::new();
        for month in 1..=self.years * 12 {
            kept = kept * (1.0 - monthly_churn) + arrivals;
            all += arrivals;
            revenue *= monthly_expansion;
            months.push(ProjectedMonth {
                month,
                customers: kept,
                mrr: kept * revenue,
                mrr_without_churn: all * revenue,
            });
        }
        months
    }
}

/// New bookings needed in a year, as a share of last year's recurring
/// revenue, to grow by `growth_target` while losing `churn_rate` and gaining
/// `expansion_rate` from the base: 50 % growth at 20 % churn needs 70 %.
pub fn required_new_bookings(growth_target: f64, churn_rate: f64, expansion_rate: f64) -> f64 {
    growth_target + churn_rate - expansion_rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growth_needs_bookings_for_churn_and_growth() {
        assert!((required_new_bookings(0.5, 0.2, 0.0) - 0.7).abs() < 1e-12);
        let scenario = Scenario {
            customers: 100.0,
            revenue_per_customer: 12_000.0,
            new_customer_growth: 0.5,
            churn_rate: 0.2,
            expansion_rate: 0.0,
            years: 1,
        };
        let months = scenario.project();
        assert_eq!(months.len(), 12);
        let last = months[11];
        assert!((last.mrr_without_churn - 150.0 * 1000.0).abs() < 1e-6);
        assert!(last.mrr < last.mrr_without_churn);
        assert!(last.customers > 100.0 && last.customers < 150.0);
    }
}
