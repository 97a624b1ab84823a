//! The one backoff of Tenure, on the `backon` crate: delays that start at a
//! first step and double up to a cap, each drawn between half and the whole
//! of its step, so that senders recovering together spread out. Clients
//! calling again use it as a retry policy; work retried later (outbox
//! deliveries, playbook steps), whose attempts are counted in storage, asks
//! for the delay after a given attempt.

use std::time::Duration;

/// Delays from `first` doubling up to `cap`, without a limit on how many.
pub fn policy(first: Duration, cap: Duration) -> backon::ExponentialBuilder {
    // backon's jitter adds up to one more step: steps of half the size
    // give delays between half and the whole of each step.
    backon::ExponentialBuilder::default()
        .with_min_delay(first / 2)
        .with_max_delay(cap / 2)
        .with_jitter()
        .without_max_times()
}

/// The delay before trying again after `attempts` failed attempts (0: the
/// first retry), between half and the whole of `first × 2^attempts`,
/// at most `cap`, in whole milliseconds (Postgres keeps intervals to the
/// microsecond and refuses finer ones).
pub fn delay_after(first: Duration, cap: Duration, attempts: i32) -> Duration {
    use backon::BackoffBuilder as _;
    let attempts = usize::try_from(attempts.clamp(0, 64)).unwrap_or(0);
    let delay = policy(first, cap)
        .build()
        .nth(attempts)
        .unwrap_or(cap)
        .min(cap);
    Duration::from_millis(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_with_jitter_up_to_the_cap() {
        let (first, cap) = (Duration::from_secs(2), Duration::from_secs(60));
        for _ in 0..50 {
            let delay = delay_after(first, cap, 0);
            assert!(delay >= first / 2 && delay <= first, "{delay:?}");
            let delay = delay_after(first, cap, 2);
            assert!(delay >= first * 2 && delay <= first * 4, "{delay:?}");
            let delay = delay_after(first, cap, 10);
            assert!(delay >= cap / 2 && delay <= cap, "{delay:?}");
            assert!(delay_after(first, cap, i32::MAX) <= cap);
            assert_eq!(delay_after(first, cap, 1).subsec_nanos() % 1_000_000, 0);
        }
    }
}
