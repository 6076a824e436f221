//! Crash-loop back-off: how long a container that exited waits before its next start, 10 s
//! doubling to 5 min like kubelet, reset after it ran cleanly for 10 minutes.

use std::time::Duration;

/// The first delay.
pub const INITIAL: Duration = Duration::from_secs(10);
/// The longest delay.
pub const MAX: Duration = Duration::from_secs(300);
/// A run this long resets the back-off.
pub const RESET_AFTER: Duration = Duration::from_secs(600);

/// The delay before restart number `restarts + 1`, given how long the last run lasted.
pub fn delay(restarts: u32, last_run: Duration) -> Duration {
    if last_run >= RESET_AFTER || restarts == 0 {
        return INITIAL;
    }
    let doublings = (restarts - 1).min(16);
    INITIAL.saturating_mul(1 << doublings).min(MAX)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn back_off_doubles_from_ten_seconds_to_five_minutes() {
        let short = Duration::from_secs(1);
        let delays: Vec<u64> = (0..8).map(|n| delay(n, short).as_secs()).collect();
        assert_eq!(delays, [10, 10, 20, 40, 80, 160, 300, 300]);
    }

    #[test]
    fn a_long_clean_run_resets_the_back_off() {
        assert_eq!(delay(7, RESET_AFTER), INITIAL);
    }

    proptest! {
        #[test]
        fn delays_never_shrink_and_stay_within_bounds(n in 0u32..1000) {
            let short = Duration::from_secs(1);
            prop_assert!(delay(n, short) <= delay(n + 1, short));
            prop_assert!(delay(n, short) >= INITIAL && delay(n, short) <= MAX);
        }
    }
}
