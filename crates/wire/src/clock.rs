//! The wall clock, as Gondola's formats count it: seconds (`created`), milliseconds (the
//! provider protocol's `issued_at_ms`) and nanoseconds since the Unix epoch. A clock before the
//! epoch reads as zero; one past what fits reads as the largest value.

use std::time::{SystemTime, UNIX_EPOCH};

fn since_epoch() -> std::time::Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

pub fn unix_seconds() -> u64 {
    since_epoch().as_secs()
}

pub fn unix_millis() -> u64 {
    u64::try_from(since_epoch().as_millis()).unwrap_or(u64::MAX)
}

pub fn unix_nanos() -> u64 {
    u64::try_from(since_epoch().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_units_agree() {
        let seconds = unix_seconds();
        let millis = unix_millis();
        let nanos = unix_nanos();
        assert!(seconds > 1_700_000_000, "a clock after 2023: {seconds}");
        assert!(millis / 1000 >= seconds && millis / 1000 <= seconds + 1);
        assert!(nanos / 1_000_000 >= millis && nanos / 1_000_000 <= millis + 1000);
    }
}
