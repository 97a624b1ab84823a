//! What `tenure generate` is asked for.

use chrono::NaiveDate;

/// What to generate.
#[derive(Clone, Debug)]
pub struct Config {
    pub accounts: usize,
    /// Years of history before `as_of`.
    pub years: u32,
    pub seed: u64,
    /// The last day of the history: nothing is dated after its end.
    pub as_of: NaiveDate,
}
