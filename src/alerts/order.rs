//! Out-of-order deliveries. Senders retry failed deliveries later, so an old
//! event can arrive after a newer one: PagerDuty retries an
//! `incident.triggered` that once got a 503 even after `incident.resolved`
//! was accepted. Applied in arrival order, that would re-open a resolved
//! incident and hold the fallback on until the alert's TTL. Updates that
//! carry the sender's event time are therefore compared with the newest one
//! applied for the same alert, and older ones are ignored.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::domain::{AlertKey, Timestamp};

/// Remembered alerts at most; the oldest are forgotten first.
pub const CAPACITY: usize = 10_000;
/// How long an alert's newest event time is remembered: longer than any
/// sender's retry schedule (PagerDuty retries for about 20 minutes).
pub const MEMORY: Duration = Duration::from_secs(24 * 3600);

#[derive(Default)]
pub struct Order {
    /// key -> (newest event time applied, when it was applied).
    newest: Mutex<HashMap<AlertKey, (Timestamp, Timestamp)>>,
}

impl Order {
    /// Whether an update for `key` with event time `at` is older than one
    /// already applied (then it must be ignored).
    pub fn is_stale(&self, key: &AlertKey, at: Timestamp) -> bool {
        let map = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        map.get(key).is_some_and(|(newest, _)| at < *newest)
    }

    /// Records that an update for `key` with event time `at` was applied.
    pub fn record(&self, key: &AlertKey, at: Timestamp, now: Timestamp) {
        let mut map = self.newest.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= CAPACITY {
            let horizon = now.sub(MEMORY);
            map.retain(|_, (_, seen)| *seen > horizon);
            if map.len() >= CAPACITY
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (_, seen))| *seen)
                    .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let entry = map.entry(key.clone()).or_insert((at, now));
        if at >= entry.0 {
            *entry = (at, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: &str) -> AlertKey {
        AlertKey {
            source: "pagerduty".into(),
            id: id.into(),
        }
    }

    #[test]
    fn older_events_are_stale_newer_and_equal_are_not() {
        let o = Order::default();
        assert!(!o.is_stale(&key("a"), Timestamp(100)), "unknown alert");
        o.record(&key("a"), Timestamp(100), Timestamp(1));
        assert!(o.is_stale(&key("a"), Timestamp(99)));
        assert!(
            !o.is_stale(&key("a"), Timestamp(100)),
            "same event: a duplicate, harmless"
        );
        assert!(!o.is_stale(&key("a"), Timestamp(101)));
        o.record(&key("a"), Timestamp(50), Timestamp(2));
        assert!(
            o.is_stale(&key("a"), Timestamp(99)),
            "recording an older time never moves it back"
        );
        assert!(!o.is_stale(&key("b"), Timestamp(0)), "per alert");
    }

    #[test]
    fn memory_is_bounded() {
        let o = Order::default();
        for i in 0..(CAPACITY + 10) {
            o.record(&key(&i.to_string()), Timestamp(1), Timestamp(i as i64));
        }
        assert!(o.newest.lock().unwrap().len() <= CAPACITY);
    }
}
