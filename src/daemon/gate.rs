//! `StartGate`: when the actuator may start.

use std::time::Duration;

use tokio::time::Instant;

use super::event_loop::Loop;
use crate::config::Config;

/// After a fresh start, how long the actuator waits for every probe to leave
/// `unknown` before it applies the engine's decision anyway.
const STARTUP_GRACE: Duration = Duration::from_secs(60);

/// When the actuator may start. After a restore at once (the restored
/// decision is what Talkdesk was last told). After a fresh start (no or an
/// unreadable snapshot) only once the engine has evidence, so a fallback that
/// is on (an outage in progress, a break-glass activation) is not switched
/// off only to be switched on again seconds later: a decision to switch on,
/// or `Engine::has_fresh_evidence` (every probe out of `unknown`, no rule
/// pending), or the grace period (`STARTUP_GRACE` plus the longest rule
/// `for`) passed.
pub(super) struct StartGate {
    restored: bool,
    since: Instant,
    grace: Duration,
}

impl StartGate {
    /// Starts the grace period now.
    pub(super) fn new(restored: bool, config: &Config) -> StartGate {
        let longest_for = config
            .rules
            .iter()
            .map(|r| r.for_)
            .max()
            .unwrap_or_default();
        StartGate {
            restored,
            since: Instant::now(),
            grace: STARTUP_GRACE + longest_for,
        }
    }

    /// Whether the engine was restored from a snapshot (the gate is open).
    pub(super) fn restored(&self) -> bool {
        self.restored
    }

    pub(super) fn open(&self, lp: &Loop) -> bool {
        // A decision still waiting for its document to be saved has not
        // reached the actuator's watch yet: starting now would actuate the
        // previous one (a fresh start's "inactive" would switch an ON
        // fallback off).
        if lp.holds_unpublished() {
            return false;
        }
        self.restored
            || lp.engine().desired().is_active()
            || lp.engine().has_fresh_evidence()
            || self.since.elapsed() >= self.grace
    }
}
