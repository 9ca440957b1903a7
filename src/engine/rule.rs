//! Per-rule hysteresis (Prometheus `for`, plus a separate clear condition).
//!
//! ```text
//!   inactive --true--> pending --true for `for`--> firing --false--> clearing
//!      ^                  |                           ^                 |
//!      +------false-------+                           +------true-------+
//!      ^                                                                |
//!      +--- false for `clear_for` AND fallback on for >= `min_active` --+
//! ```
//!
//! `for = 0` goes straight from inactive to firing; `clear_for = 0` (with
//! `min_active` satisfied) goes straight from firing to inactive. Firing and
//! clearing both *hold* the fallback on: clearing is the hysteresis that keeps
//! a recovering trunk from bouncing calls back too early.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::Timestamp;

use super::spec::RuleSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RulePhase {
    Inactive,
    Pending,
    Firing,
    Clearing,
}

impl RulePhase {
    pub fn as_str(self) -> &'static str {
        match self {
            RulePhase::Inactive => "inactive",
            RulePhase::Pending => "pending",
            RulePhase::Firing => "firing",
            RulePhase::Clearing => "clearing",
        }
    }

    /// Value of the `continuity_rule_state` gauge.
    pub fn gauge(self) -> i64 {
        match self {
            RulePhase::Inactive => 0,
            RulePhase::Pending => 1,
            RulePhase::Firing => 2,
            RulePhase::Clearing => 3,
        }
    }

    /// Whether a rule in this phase holds the fallback on.
    pub fn holds(self) -> bool {
        matches!(self, RulePhase::Firing | RulePhase::Clearing)
    }
}

impl fmt::Display for RulePhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the engine remembers about one rule. Persisted (keyed by checksum).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleState {
    pub phase: RulePhase,
    /// When the current phase began (for pending: when the condition became
    /// true; for clearing: when it became false).
    pub since: Option<Timestamp>,
    /// When the rule last started firing (not reset by clearing -> firing).
    pub fired_at: Option<Timestamp>,
    /// Frozen by the blind guard: the condition depends on probes the agent
    /// cannot trust right now, so the rule keeps its phase.
    #[serde(default)]
    pub frozen: bool,
    /// Since when the rule, due to fire on probe failures, waits for a
    /// self-check verdict newer than them (the blind guard's answer).
    #[serde(default)]
    pub awaiting_self_check: Option<Timestamp>,
}

impl Default for RuleState {
    fn default() -> Self {
        RuleState {
            phase: RulePhase::Inactive,
            since: None,
            fired_at: None,
            frozen: false,
            awaiting_self_check: None,
        }
    }
}

impl RuleState {
    /// Advances the machine with the rule's current truth. `on_since` is when
    /// the fallback was (last) switched on, `None` while it is off: `min_active`
    /// protects callers from a quick on/off, so it only binds while it is on.
    ///
    /// Returns `(from, to)` when the phase changed (one transition per call,
    /// even when `for = 0` skips pending).
    pub fn advance(
        &mut self,
        truth: bool,
        spec: &RuleSpec,
        now: Timestamp,
        on_since: Option<Timestamp>,
    ) -> Option<(RulePhase, RulePhase)> {
        let from = self.phase;
        let since = self.since.unwrap_or(now);
        let to = match (from, truth) {
            (RulePhase::Inactive, true) if spec.for_.is_zero() => RulePhase::Firing,
            (RulePhase::Inactive, true) => RulePhase::Pending,
            (RulePhase::Inactive, false) => RulePhase::Inactive,
            (RulePhase::Pending, false) => RulePhase::Inactive,
            (RulePhase::Pending, true) if now.since(since) >= spec.for_ => RulePhase::Firing,
            (RulePhase::Pending, true) => RulePhase::Pending,
            (RulePhase::Firing, true) => RulePhase::Firing,
            (RulePhase::Firing, false) if may_clear(spec, now, now, on_since) => {
                RulePhase::Inactive
            }
            (RulePhase::Firing, false) => RulePhase::Clearing,
            (RulePhase::Clearing, true) => RulePhase::Firing,
            (RulePhase::Clearing, false) if may_clear(spec, since, now, on_since) => {
                RulePhase::Inactive
            }
            (RulePhase::Clearing, false) => RulePhase::Clearing,
        };
        if to == from {
            return None;
        }
        self.awaiting_self_check = None;
        self.phase = to;
        self.since = Some(now);
        match (from, to) {
            (_, RulePhase::Inactive) => self.fired_at = None,
            (RulePhase::Inactive | RulePhase::Pending, RulePhase::Firing) => {
                self.fired_at = Some(now)
            }
            _ => {}
        }
        Some((from, to))
    }

    /// Whether `advance(truth, ..)` at `now` would make the rule fire from
    /// inactive or pending.
    pub fn would_fire(&self, truth: bool, spec: &RuleSpec, now: Timestamp) -> bool {
        truth
            && match self.phase {
                RulePhase::Inactive => spec.for_.is_zero(),
                RulePhase::Pending => now.since(self.since.unwrap_or(now)) >= spec.for_,
                RulePhase::Firing | RulePhase::Clearing => false,
            }
    }

    /// Holds a rule that would fire (see `would_fire`) in pending, entering
    /// it from inactive (`for = 0`). Returns the transition, if any.
    pub fn hold_pending(&mut self, now: Timestamp) -> Option<(RulePhase, RulePhase)> {
        self.awaiting_self_check.get_or_insert(now);
        if self.phase == RulePhase::Inactive {
            self.phase = RulePhase::Pending;
            self.since = Some(now);
            return Some((RulePhase::Inactive, RulePhase::Pending));
        }
        None
    }

    /// When this rule next needs evaluating even if nothing else happens.
    pub fn deadline(&self, spec: &RuleSpec, on_since: Option<Timestamp>) -> Option<Timestamp> {
        if self.frozen {
            return None;
        }
        let since = self.since?;
        match self.phase {
            RulePhase::Pending => Some(since.add(spec.for_)),
            RulePhase::Clearing => {
                let clear = since.add(spec.clear_for);
                Some(match on_since {
                    Some(on) => clear.max(on.add(spec.min_active)),
                    None => clear,
                })
            }
            RulePhase::Inactive | RulePhase::Firing => None,
        }
    }

    /// Restarts the running timer (pending `for`, clearing `clear_for`) at
    /// `now`. Used when a rule thaws after the blind guard: time spent blind is
    /// not evidence either way.
    pub fn restart_timer(&mut self, now: Timestamp) {
        if matches!(self.phase, RulePhase::Pending | RulePhase::Clearing) {
            self.since = Some(now);
        }
    }
}

/// The clearing condition: false for `clear_for` since `false_since`, and the
/// fallback on for at least `min_active` (or not on at all).
fn may_clear(
    spec: &RuleSpec,
    false_since: Timestamp,
    now: Timestamp,
    on_since: Option<Timestamp>,
) -> bool {
    let quiet = now.since(false_since) >= spec.clear_for;
    let held = on_since.is_none_or(|on| now.since(on) >= spec.min_active);
    quiet && held
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::expr::Expr;
    use RulePhase::{Clearing, Firing, Inactive, Pending};

    fn spec(for_s: u64, clear_s: u64, min_active_s: u64) -> RuleSpec {
        RuleSpec {
            name: "r".into(),
            profile: "p".into(),
            priority: 0,
            for_: Duration::from_secs(for_s),
            clear_for: Duration::from_secs(clear_s),
            min_active: Duration::from_secs(min_active_s),
            when: Expr::All(vec![]),
            checksum: "x".into(),
        }
    }

    fn at(s: i64) -> Timestamp {
        Timestamp(s * 1000)
    }

    /// Every edge of the rule machine. Each row starts in `start` (entered at
    /// t=0, fallback on since `on` if given), then feeds `truth` at time `now`.
    #[test]
    fn engine_rule_transition_table() {
        type Row = (
            &'static str,
            (u64, u64, u64),
            RulePhase,
            Option<i64>,
            bool,
            i64,
            RulePhase,
        );
        let table: &[Row] = &[
            // name, (for, clear_for, min_active), start, on_since, truth, now, expected
            (
                "inactive stays inactive when false",
                (10, 60, 300),
                Inactive,
                None,
                false,
                5,
                Inactive,
            ),
            (
                "inactive -> pending when true",
                (10, 60, 300),
                Inactive,
                None,
                true,
                5,
                Pending,
            ),
            (
                "inactive -> firing at once when for = 0",
                (0, 60, 300),
                Inactive,
                None,
                true,
                5,
                Firing,
            ),
            (
                "pending stays pending before for",
                (10, 60, 300),
                Pending,
                None,
                true,
                9,
                Pending,
            ),
            (
                "pending -> firing when true for `for`",
                (10, 60, 300),
                Pending,
                None,
                true,
                10,
                Firing,
            ),
            (
                "pending -> inactive when false",
                (10, 60, 300),
                Pending,
                None,
                false,
                3,
                Inactive,
            ),
            (
                "firing stays firing when true",
                (10, 60, 300),
                Firing,
                Some(0),
                true,
                1000,
                Firing,
            ),
            (
                "firing -> clearing when false",
                (10, 60, 300),
                Firing,
                Some(0),
                false,
                1000,
                Clearing,
            ),
            (
                "firing -> inactive at once: clear_for 0, min_active met",
                (10, 0, 300),
                Firing,
                Some(0),
                false,
                300,
                Inactive,
            ),
            (
                "firing -> clearing: clear_for 0 but min_active not met",
                (10, 0, 300),
                Firing,
                Some(0),
                false,
                299,
                Clearing,
            ),
            (
                "clearing -> firing when true again",
                (10, 60, 300),
                Clearing,
                Some(0),
                true,
                30,
                Firing,
            ),
            (
                "clearing holds before clear_for",
                (10, 60, 0),
                Clearing,
                Some(0),
                false,
                59,
                Clearing,
            ),
            (
                "clearing -> inactive after clear_for and min_active",
                (10, 60, 30),
                Clearing,
                Some(0),
                false,
                60,
                Inactive,
            ),
            (
                "clearing holds until min_active even after clear_for",
                (10, 60, 300),
                Clearing,
                Some(0),
                false,
                299,
                Clearing,
            ),
            (
                "clearing -> inactive once min_active is met",
                (10, 60, 300),
                Clearing,
                Some(0),
                false,
                300,
                Inactive,
            ),
            (
                "min_active does not bind while the fallback is off",
                (10, 60, 300),
                Clearing,
                None,
                false,
                60,
                Inactive,
            ),
        ];
        for (name, (f, c, m), start, on, truth, now, want) in table {
            let s = spec(*f, *c, *m);
            let mut st = RuleState {
                phase: *start,
                since: Some(at(0)),
                fired_at: start.holds().then(|| at(0)),
                frozen: false,
                awaiting_self_check: None,
            };
            let tr = st.advance(*truth, &s, at(*now), on.map(at));
            assert_eq!(st.phase, *want, "{name}");
            assert_eq!(tr.is_some(), start != want, "{name}: transition reported");
            if start != want {
                assert_eq!(st.since, Some(at(*now)), "{name}: since");
            }
        }
    }

    #[test]
    fn engine_rule_fired_at_survives_clearing_and_resets_on_inactive() {
        let s = spec(0, 60, 0);
        let mut st = RuleState::default();
        st.advance(true, &s, at(1), None);
        assert_eq!(st.fired_at, Some(at(1)));
        st.advance(false, &s, at(2), Some(at(1)));
        st.advance(true, &s, at(3), Some(at(1)));
        assert_eq!((st.phase, st.fired_at), (Firing, Some(at(1))));
        st.advance(false, &s, at(4), Some(at(1)));
        st.advance(false, &s, at(64), Some(at(1)));
        assert_eq!((st.phase, st.fired_at), (Inactive, None));
    }

    #[test]
    fn engine_rule_deadlines() {
        let s = spec(10, 60, 300);
        let pending = RuleState {
            phase: Pending,
            since: Some(at(5)),
            ..RuleState::default()
        };
        assert_eq!(pending.deadline(&s, None), Some(at(15)));
        let clearing = RuleState {
            phase: Clearing,
            since: Some(at(100)),
            ..RuleState::default()
        };
        assert_eq!(clearing.deadline(&s, Some(at(0))), Some(at(300)));
        assert_eq!(clearing.deadline(&s, Some(at(-1000))), Some(at(160)));
        assert_eq!(clearing.deadline(&s, None), Some(at(160)));
        let frozen = RuleState {
            frozen: true,
            ..clearing
        };
        assert_eq!(frozen.deadline(&s, None), None);
    }
}
