//! A bounded, time-limited memory of delivery ids.
//!
//! PagerDuty delivers at least once and retries for about 20 minutes, with the
//! same `X-Webhook-Id`; CloudEvents senders retry with the same `source`+`id`.
//! The engine is idempotent, so a duplicate is harmless to the decision, but
//! remembering ids keeps the audit log and metrics honest ("duplicate", not a
//! second "accepted").
//!
//! An id is recorded only once its events are in the engine's queue: a delivery
//! refused with 503 must be accepted when the sender retries it.
//!
//! Memory is bounded twice: ids older than the TTL are forgotten, and when the
//! table is full the oldest id is dropped (worst case, a very late retry is
//! accepted again: harmless).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::Timestamp;

/// PagerDuty retries for about 20 minutes; one hour covers it with margin.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Ids remembered at most. Each costs well under 200 bytes, so about 2 MB.
pub const DEFAULT_CAPACITY: usize = 10_000;
/// Longest id remembered; longer ones (hostile) are not deduplicated.
const MAX_ID_LEN: usize = 256;

#[derive(Debug)]
pub struct Dedupe {
    ttl: Duration,
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// id -> when it was recorded.
    seen: HashMap<String, Timestamp>,
    /// Insertion order, for expiry and eviction. May hold stale entries for ids
    /// re-recorded later; those are skipped when their time does not match.
    order: VecDeque<(Timestamp, String)>,
}

impl Default for Dedupe {
    fn default() -> Self {
        Dedupe::new(DEFAULT_CAPACITY, DEFAULT_TTL)
    }
}

impl Dedupe {
    pub fn new(capacity: usize, ttl: Duration) -> Dedupe {
        Dedupe {
            ttl,
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Whether `id` was recorded within the TTL before `now`.
    pub fn seen(&self, id: &str, now: Timestamp) -> bool {
        let mut g = self.lock();
        self.expire(&mut g, now);
        g.seen.contains_key(id)
    }

    /// Remembers `id` as delivered at `now`.
    pub fn record(&self, id: &str, now: Timestamp) {
        if id.is_empty() || id.len() > MAX_ID_LEN {
            return;
        }
        let mut g = self.lock();
        self.expire(&mut g, now);
        while g.seen.len() >= self.capacity {
            let Some((at, old)) = g.order.pop_front() else {
                break;
            };
            if g.seen.get(&old) == Some(&at) {
                g.seen.remove(&old);
            }
        }
        g.seen.insert(id.to_string(), now);
        g.order.push_back((now, id.to_string()));
    }

    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn expire(&self, g: &mut Inner, now: Timestamp) {
        let cutoff = now.sub(self.ttl);
        while let Some((at, _)) = g.order.front() {
            // Also drop stale entries so `order` cannot grow past the table.
            if *at > cutoff && g.order.len() <= self.capacity * 2 {
                break;
            }
            let Some((at, id)) = g.order.pop_front() else {
                break;
            };
            if g.seen.get(&id) == Some(&at) {
                g.seen.remove(&id);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent
        // in a harmful way (worst case, a duplicate is accepted), so poisoning
        // is ignored rather than propagated as a panic.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_millis(s * 1000)
    }

    #[test]
    fn remembers_within_ttl_and_forgets_after() {
        let d = Dedupe::new(10, Duration::from_secs(60));
        assert!(!d.seen("a", t(0)));
        d.record("a", t(0));
        assert!(d.seen("a", t(59)));
        assert!(!d.seen("a", t(61)));
        assert!(d.is_empty());
    }

    #[test]
    fn bounded_by_capacity_oldest_first() {
        let d = Dedupe::new(3, Duration::from_secs(3600));
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            d.record(id, t(i as i64));
        }
        assert_eq!(d.len(), 3);
        assert!(!d.seen("a", t(5)));
        assert!(d.seen("d", t(5)));
        // Re-recording an id keeps the table bounded too.
        for i in 0..100 {
            d.record("d", t(10 + i));
        }
        assert!(d.len() <= 3);
        assert!(d.lock().order.len() <= 6 + 1);
    }
}
