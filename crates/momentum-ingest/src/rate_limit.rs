//! Per-token rate limits on ingestion: a token bucket of events per caller.
//!
//! Each caller (token name) may post `events_per_second` on average and up
//! to `burst_events` at once. A request that would overdraw its bucket is
//! refused whole, with how long to wait, and takes nothing from the bucket;
//! one refused later for naming too many participants gives back what it
//! took.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub(crate) struct RateLimiter {
    events_per_second: f64,
    burst_events: f64,
    /// Caller name → (events available, when that was computed). Bounded by
    /// the number of configured tokens (`momentum_runtime::auth::TOKENS_MAX`).
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub(crate) fn new(events_per_second: u32, burst_events: u32) -> RateLimiter {
        assert!(events_per_second > 0 && burst_events > 0, "rate limits are positive");
        RateLimiter {
            events_per_second: f64::from(events_per_second),
            burst_events: f64::from(burst_events),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `events` from the caller's bucket, or says how long until they
    /// would be there.
    pub(crate) fn take(&self, caller: &str, events: usize, now: Instant) -> Result<(), Duration> {
        let events = events as f64;
        let mut buckets = self.buckets.lock().expect("the rate limiter is never poisoned");
        let (available, updated) = buckets.entry(caller.to_owned()).or_insert((self.burst_events, now));
        let elapsed = now.saturating_duration_since(*updated).as_secs_f64();
        *available = (*available + elapsed * self.events_per_second).min(self.burst_events);
        *updated = now;
        if events <= *available {
            *available -= events;
            Ok(())
        } else {
            // A request bigger than the burst can never pass; waiting a full
            // refill is still the right advice, and the 429 says the limit.
            let missing = events.min(self.burst_events) - *available;
            Err(Duration::from_secs_f64((missing / self.events_per_second).max(0.001)))
        }
    }

    /// Gives back `events` taken by a request that stored none of them, so
    /// that the client's retry, split or resent, is not charged twice. A
    /// bucket never holds more than its burst, but the refill that ran
    /// while the request held its events is not taken back: for requests
    /// refused within milliseconds, as the callers' are, that is a few
    /// events at the rate of one token's limit.
    pub(crate) fn give_back(&self, caller: &str, events: usize) {
        let mut buckets = self.buckets.lock().expect("the rate limiter is never poisoned");
        if let Some((available, _)) = buckets.get_mut(caller) {
            *available = (*available + events as f64).min(self.burst_events);
        }
    }

    pub(crate) fn events_per_second(&self) -> f64 {
        self.events_per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caller_may_post_its_burst_then_waits_for_the_refill_and_others_are_not_affected() {
        let limiter = RateLimiter::new(100, 1000);
        let start = Instant::now();
        assert!(limiter.take("a", 1000, start).is_ok());
        let wait = limiter.take("a", 50, start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "50 events at 100/s is half a second, got {wait:?}");
        assert!(limiter.take("b", 1000, start).is_ok(), "every caller has its own bucket");
        assert!(limiter.take("a", 50, start + Duration::from_millis(500)).is_ok());
        assert!(limiter.take("a", 1, start + Duration::from_millis(500)).is_err());
    }

    #[test]
    fn events_given_back_can_be_taken_again() {
        let limiter = RateLimiter::new(1, 10);
        let start = Instant::now();
        assert!(limiter.take("a", 8, start).is_ok());
        assert!(limiter.take("a", 8, start).is_err(), "two are left");
        limiter.give_back("a", 8);
        assert!(limiter.take("a", 8, start).is_ok(), "the eight given back are there again");
        assert!(limiter.take("a", 3, start).is_err(), "and no more than them");
    }
}
