//! Out-of-order deliveries. Senders retry failed deliveries later, so an old
//! event can arrive after a newer one: PagerDuty retries an
//! `incident.triggered` that once got a 503 even after `incident.resolved`
//! was accepted. Applied in arrival order, that would re-open a resolved
//! incident and hold the fallback on until the alert's TTL. Updates that
//! carry the sender's event time are therefore compared with the newest one
//! applied for the same alert, and older ones are ignored.
//!
//! The memory belongs to whoever applies inputs (the daemon's loop, in input
//! id order, whichever replica accepted them) and is persisted with the
//! engine snapshot, so a retry that arrives after a restart or a takeover is
//! still recognised. It is bounded in size ([`CAPACITY`]) and in age
//! ([`MEMORY`]); event times in the future are refused at intake (beyond the
//! source's `max_skew`), so one bad clock cannot make the real "resolved" be
//! ignored.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{AlertKey, Timestamp};

/// Remembered alerts at most; the oldest are forgotten first.
pub const CAPACITY: usize = 10_000;
/// How long an alert's newest event time is remembered: longer than any
/// sender's retry schedule (PagerDuty retries for about 20 minutes).
pub const MEMORY: Duration = Duration::from_secs(24 * 3600);

/// Alert -> newest event time applied, and when it was applied.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<Entry>", into = "Vec<Entry>")]
pub struct Order {
    newest: HashMap<AlertKey, (Timestamp, Timestamp)>,
}

/// How one remembered alert is persisted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Entry {
    key: AlertKey,
    /// The newest event time applied.
    at: Timestamp,
    /// When it was applied.
    seen: Timestamp,
}

impl Order {
    /// Whether an update for `key` with event time `at` is older than one
    /// already applied (then it must be ignored).
    pub fn is_stale(&self, key: &AlertKey, at: Timestamp) -> bool {
        self.newest.get(key).is_some_and(|(newest, _)| at < *newest)
    }

    /// Records that an update for `key` with event time `at` was applied.
    pub fn record(&mut self, key: &AlertKey, at: Timestamp, now: Timestamp) {
        if !self.newest.contains_key(key) && self.newest.len() >= CAPACITY {
            self.forget_before(now.sub(MEMORY));
            if self.newest.len() >= CAPACITY
                && let Some(oldest) = self
                    .newest
                    .iter()
                    .min_by_key(|(_, (_, seen))| *seen)
                    .map(|(k, _)| k.clone())
            {
                self.newest.remove(&oldest);
            }
        }
        let entry = self.newest.entry(key.clone()).or_insert((at, now));
        if at >= entry.0 {
            *entry = (at, now);
        }
    }

    /// Forgets alerts last applied before `horizon`.
    pub fn forget_before(&mut self, horizon: Timestamp) {
        self.newest.retain(|_, (_, seen)| *seen > horizon);
    }

    pub fn len(&self) -> usize {
        self.newest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.newest.is_empty()
    }
}

impl From<Vec<Entry>> for Order {
    fn from(entries: Vec<Entry>) -> Order {
        let mut order = Order::default();
        for e in entries {
            order.record(&e.key, e.at, e.seen);
        }
        order
    }
}

impl From<Order> for Vec<Entry> {
    fn from(order: Order) -> Vec<Entry> {
        let mut v: Vec<Entry> = order
            .newest
            .into_iter()
            .map(|(key, (at, seen))| Entry { key, at, seen })
            .collect();
        // Stable documents: the same memory always serializes the same way.
        v.sort_by(|a, b| a.key.cmp(&b.key));
        v
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
        let mut o = Order::default();
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
        let mut o = Order::default();
        for i in 0..(CAPACITY + 10) {
            o.record(&key(&i.to_string()), Timestamp(1), Timestamp(i as i64));
        }
        assert!(o.len() <= CAPACITY);
        assert!(o.is_stale(&key(&(CAPACITY + 9).to_string()), Timestamp(0)));
        assert!(
            !o.is_stale(&key("0"), Timestamp(0)),
            "the oldest went first"
        );
    }

    #[test]
    fn survives_a_round_trip_through_json() {
        let mut o = Order::default();
        o.record(&key("a"), Timestamp(100), Timestamp(7));
        o.record(&key("b"), Timestamp(5), Timestamp(8));
        let back: Order = serde_json::from_value(serde_json::to_value(&o).unwrap()).unwrap();
        assert_eq!(back, o);
        assert!(back.is_stale(&key("a"), Timestamp(99)));
    }
}
