//! Per-caller request and token budgets over fixed one-minute windows, in memory only, with
//! the numbers clients see in `x-ratelimit-*` headers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::RateLimit;

const WINDOW: Duration = Duration::from_secs(60);
/// Callers tracked at once. Callers are configured keys plus `anonymous`, so this is only a
/// guard against a configuration with absurdly many keys growing the map without end.
const MAX_TRACKED_CALLERS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    requests: u32,
    tokens: u64,
}

/// The state of a caller's budget after a check, for headers.
#[derive(Debug, Clone, Copy)]
pub struct RateStatus {
    pub limit: RateLimit,
    pub remaining_requests: u32,
    pub remaining_tokens: u64,
    pub reset_after: Duration,
    pub allowed: bool,
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    started: Instant,
    count: u32,
    blocked_until: Option<Instant>,
}

#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, Window>>,
    failures: Mutex<HashMap<String, Failures>>,
}

impl RateLimiter {
    /// Counts one request for `caller` if its budgets allow it.
    pub fn check(&self, caller: &str, limit: RateLimit, now: Instant) -> RateStatus {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if windows.len() >= MAX_TRACKED_CALLERS && !windows.contains_key(caller) {
            windows.retain(|_, window| now.duration_since(window.started) < WINDOW);
        }
        let window = windows.entry(caller.to_owned()).or_insert(Window {
            started: now,
            requests: 0,
            tokens: 0,
        });
        if now.duration_since(window.started) >= WINDOW {
            *window = Window {
                started: now,
                requests: 0,
                tokens: 0,
            };
        }
        let allowed =
            window.requests < limit.requests_per_minute && window.tokens < limit.tokens_per_minute;
        if allowed {
            window.requests += 1;
        }
        RateStatus {
            limit,
            remaining_requests: limit.requests_per_minute.saturating_sub(window.requests),
            remaining_tokens: limit.tokens_per_minute.saturating_sub(window.tokens),
            reset_after: WINDOW.saturating_sub(now.duration_since(window.started)),
            allowed,
        }
    }

    /// How long until `caller` may make another request under `limit`, if its budget for this
    /// window is spent; `None` when it may. Counts nothing and remembers nothing: for callers
    /// who are counted only once they have done something (a committed ledger operation), so
    /// that strangers cannot fill the table.
    pub fn over_budget(&self, caller: &str, limit: RateLimit, now: Instant) -> Option<Duration> {
        let windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let window = windows.get(caller)?;
        let elapsed = now.duration_since(window.started);
        (elapsed < WINDOW && window.requests >= limit.requests_per_minute)
            .then(|| WINDOW.saturating_sub(elapsed))
    }

    /// If `caller` spent its failed-request budget, how long it stays refused.
    pub fn failure_block(&self, caller: &str, now: Instant) -> Option<Duration> {
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let until = failures.get(caller)?.blocked_until?;
        (until > now).then(|| until - now)
    }

    /// Counts a failed request of `caller`; the `budget`-th failure within `window` blocks it
    /// for `window`.
    pub fn record_failure(&self, caller: &str, budget: u32, window: Duration, now: Instant) {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() >= MAX_TRACKED_CALLERS && !failures.contains_key(caller) {
            failures.retain(|_, entry| {
                now.duration_since(entry.started) < window
                    || entry.blocked_until.is_some_and(|until| until > now)
            });
            if failures.len() >= MAX_TRACKED_CALLERS {
                return;
            }
        }
        let entry = failures.entry(caller.to_owned()).or_insert(Failures {
            started: now,
            count: 0,
            blocked_until: None,
        });
        if now.duration_since(entry.started) >= window {
            entry.started = now;
            entry.count = 0;
        }
        entry.count = entry.count.saturating_add(1);
        if entry.count >= budget {
            entry.blocked_until = Some(now + window);
            entry.started = now;
            entry.count = 0;
        }
    }

    /// Adds the tokens a finished request used.
    pub fn record_tokens(&self, caller: &str, tokens: u64) {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(window) = windows.get_mut(caller) {
            window.tokens = window.tokens.saturating_add(tokens);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn over_budget_reads_a_window_without_counting_or_keeping_anything() {
        let limiter = RateLimiter::default();
        let limit = RateLimit {
            requests_per_minute: 2,
            tokens_per_minute: u64::MAX,
        };
        let now = Instant::now();
        assert_eq!(limiter.over_budget("stranger", limit, now), None);
        assert!(
            limiter
                .windows
                .lock()
                .expect("lock")
                .get("stranger")
                .is_none(),
            "a look leaves no entry"
        );
        limiter.check("signer", limit, now);
        assert_eq!(limiter.over_budget("signer", limit, now), None);
        limiter.check("signer", limit, now);
        assert!(limiter.over_budget("signer", limit, now).is_some());
        assert_eq!(
            limiter.over_budget("signer", limit, now + WINDOW),
            None,
            "a new window"
        );
    }

    #[test]
    fn requests_beyond_the_budget_are_refused_until_the_window_resets() {
        let limiter = RateLimiter::default();
        let limit = RateLimit {
            requests_per_minute: 2,
            tokens_per_minute: 1_000,
        };
        let start = Instant::now();
        assert!(limiter.check("a", limit, start).allowed);
        let second = limiter.check("a", limit, start);
        assert!(second.allowed);
        assert_eq!(second.remaining_requests, 0);
        assert!(!limiter.check("a", limit, start).allowed);
        assert!(
            limiter.check("b", limit, start).allowed,
            "callers are independent"
        );
        assert!(limiter.check("a", limit, start + WINDOW).allowed);
    }

    #[test]
    fn the_failure_budget_blocks_for_its_window_then_forgets() {
        let limiter = RateLimiter::default();
        let window = Duration::from_secs(30);
        let start = Instant::now();
        for _ in 0..49 {
            limiter.record_failure("a", 50, window, start);
        }
        assert_eq!(limiter.failure_block("a", start), None);
        limiter.record_failure("a", 50, window, start);
        assert_eq!(limiter.failure_block("a", start), Some(window));
        assert_eq!(
            limiter.failure_block("b", start),
            None,
            "callers are independent"
        );
        assert_eq!(limiter.failure_block("a", start + window), None);
    }

    #[test]
    fn token_budget_spent_refuses_further_requests() {
        let limiter = RateLimiter::default();
        let limit = RateLimit {
            requests_per_minute: 100,
            tokens_per_minute: 50,
        };
        let now = Instant::now();
        assert!(limiter.check("a", limit, now).allowed);
        limiter.record_tokens("a", 50);
        let status = limiter.check("a", limit, now);
        assert!(!status.allowed);
        assert_eq!(status.remaining_tokens, 0);
    }
}
