//! Ages and durations the way kubectl prints them (`5s`, `3m2s`, `4h`, `2d3h`), from an
//! object's timestamps and the current time.
//!
//! Everything takes `now` as an argument so the formatting is testable without a clock.

use jiff::{SignedDuration, Timestamp};

/// kubectl's `duration.HumanDuration`: two significant units while they matter, one after.
/// Small negative durations (clock skew of under two seconds) read `0s`; larger ones read
/// `<invalid>`.
pub fn human_duration(duration: SignedDuration) -> String {
    let seconds = duration.as_secs();
    if seconds < -1 {
        return "<invalid>".to_owned();
    }
    if seconds < 0 {
        return "0s".to_owned();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}

/// The time since `timestamp`, or `<unknown>` when there is none, as kubectl's AGE column
/// shows it.
pub fn since(timestamp: Option<Timestamp>, now: Timestamp) -> String {
    match timestamp {
        Some(then) => human_duration(now.duration_since(then)),
        None => "<unknown>".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: i64) -> String {
        human_duration(SignedDuration::from_secs(s))
    }

    #[test]
    fn ages_under_two_minutes_are_counted_in_seconds() {
        assert_eq!(secs(0), "0s");
        assert_eq!(secs(5), "5s");
        assert_eq!(secs(119), "119s");
    }

    #[test]
    fn ages_under_ten_minutes_show_minutes_and_seconds() {
        assert_eq!(secs(120), "2m");
        assert_eq!(secs(182), "3m2s");
        assert_eq!(secs(599), "9m59s");
    }

    #[test]
    fn ages_under_three_hours_show_whole_minutes() {
        assert_eq!(secs(600), "10m");
        assert_eq!(secs(179 * 60 + 59), "179m");
    }

    #[test]
    fn ages_under_eight_hours_show_hours_and_minutes() {
        assert_eq!(secs(3 * 3600), "3h");
        assert_eq!(secs(4 * 3600 + 5 * 60 + 9), "4h5m");
    }

    #[test]
    fn ages_under_two_days_show_whole_hours() {
        assert_eq!(secs(8 * 3600 + 59 * 60), "8h");
        assert_eq!(secs(47 * 3600), "47h");
    }

    #[test]
    fn ages_of_days_show_days_and_hours_for_a_week() {
        assert_eq!(secs(2 * 86400 + 3 * 3600), "2d3h");
        assert_eq!(secs(3 * 86400), "3d");
        assert_eq!(secs(8 * 86400 + 5 * 3600), "8d");
        assert_eq!(secs(400 * 86400), "400d");
    }

    #[test]
    fn ages_of_years_show_years_and_days() {
        assert_eq!(secs(2 * 365 * 86400 + 10 * 86400), "2y10d");
        assert_eq!(secs(3 * 365 * 86400), "3y");
        assert_eq!(secs(9 * 365 * 86400 + 10 * 86400), "9y");
    }

    #[test]
    fn timestamps_slightly_in_the_future_read_as_zero_and_far_ones_as_invalid() {
        assert_eq!(secs(-1), "0s");
        assert_eq!(secs(-5), "<invalid>");
    }

    #[test]
    fn age_is_counted_from_a_timestamp_to_now() {
        let now: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
        let created: Timestamp = "2024-05-01T11:56:58Z".parse().unwrap();
        assert_eq!(since(Some(created), now), "3m2s");
        assert_eq!(since(None, now), "<unknown>");
    }
}
