//! Keyed token buckets for the webhook routes, two budgets:
//!
//! - **per credential**, after authentication (a source's own credential, or
//!   an API token by name): generous, configurable (`alerts.rate_limit`),
//!   because an alert storm is exactly when a legitimate sender spikes, and
//!   what one sender does never throttles another;
//! - **per client IP, for failed authentications only**: small and fixed
//!   ([`UNAUTHENTICATED`]). Once spent, a request without a valid cheap
//!   credential gets 429 before its body is read or a signature computed.
//!   A sender whose credentials are right is never charged, so a guesser on
//!   the same address (or behind the same proxy) cannot lock it out.
//!
//! This is a small hand-rolled keyed bucket rather than `governor`: the needs
//! are tiny and a bounded table matters more here than nanosecond
//! throughput. Time is a monotonic `Instant`, injected in tests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Burst one credential may send at once: an alert storm from a large
/// Alertmanager (one request per group) stays well under it.
pub const DEFAULT_BURST: u32 = 2_000;
/// Sustained requests per second per credential.
pub const DEFAULT_PER_SECOND: u32 = 500;
/// Failed authentications one client IP may make (burst, then per second).
pub const UNAUTHENTICATED: RateLimit = RateLimit {
    burst: 20,
    per_second: 1,
};
/// Clients tracked at most; when full, idle (refilled) buckets are dropped, and
/// if none is idle the table is cleared (a burst of fresh IPs is a flood anyway).
const MAX_CLIENTS: usize = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub per_second: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            burst: DEFAULT_BURST,
            per_second: DEFAULT_PER_SECOND,
        }
    }
}

#[derive(Debug)]
pub struct RateLimiter<K = Option<IpAddr>> {
    limit: Option<RateLimit>,
    buckets: Mutex<HashMap<K, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl<K: std::hash::Hash + Eq + Clone> RateLimiter<K> {
    /// `None` disables limiting (tests, or a limiter in front of the agent).
    pub fn new(limit: Option<RateLimit>) -> RateLimiter<K> {
        RateLimiter {
            limit: limit.filter(|l| l.burst > 0 && l.per_second > 0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The limit in force (`None`: unlimited).
    pub fn limit(&self) -> Option<RateLimit> {
        self.limit
    }

    /// Whether `client`'s bucket has a token, without taking it.
    pub fn peek(&self, client: &K, now: Instant) -> Result<(), Duration> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(b) = map.get(client) else {
            return Ok(());
        };
        let rate = f64::from(limit.per_second);
        let tokens = (b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate)
            .min(f64::from(limit.burst));
        if tokens >= 1.0 {
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - tokens) / rate))
        }
    }

    /// Takes one token for `client`. `Err(retry_after)` when the bucket is
    /// empty. (For IPs, `None`, no peer address known, shares one bucket.)
    pub fn check(&self, client: K, now: Instant) -> Result<(), Duration> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let burst = f64::from(limit.burst);
        let rate = f64::from(limit.per_second);
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_CLIENTS && !map.contains_key(&client) {
            map.retain(|_, b| {
                b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < burst
            });
            if map.len() >= MAX_CLIENTS {
                map.clear();
            }
        }
        let b = map.entry(client).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill_per_client() {
        let l = RateLimiter::new(Some(RateLimit {
            burst: 2,
            per_second: 1,
        }));
        let t0 = Instant::now();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert!(l.check(a, t0).is_ok());
        assert!(l.check(a, t0).is_ok());
        let retry = l.check(a, t0).unwrap_err();
        assert!(retry <= Duration::from_secs(1));
        // Another client is unaffected.
        assert!(l.check(b, t0).is_ok());
        // One second later, one more token.
        assert!(l.check(a, t0 + Duration::from_secs(1)).is_ok());
        assert!(l.check(a, t0 + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn disabled_never_limits() {
        let l: RateLimiter = RateLimiter::new(None);
        for _ in 0..1000 {
            assert!(l.check(None, Instant::now()).is_ok());
        }
    }
}
