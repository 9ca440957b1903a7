//! What people are told about: a typed [`Notice`], made where the fact is
//! known (the daemon's loop for decisions, the flap latch, the blind guard
//! and stuck actuation; the actuator for drift), never parsed from log or
//! audit text.

use std::time::Duration;

use crate::domain::{Actual, Desired, Timestamp};
use crate::engine::{Cause, Reason};

use super::config::NoticeKind;

/// Something people should hear about.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// When it happened.
    pub at: Timestamp,
    /// The decision in force once it happened: what callers get follows
    /// from it.
    pub desired: Desired,
    pub what: What,
}

#[derive(Clone, Debug, PartialEq)]
pub enum What {
    /// The desired state changed (the engine's `SetDesired`).
    Decision {
        previous: Desired,
        cause: Cause,
        reasons: Vec<Reason>,
        /// When the fallback went on, for the activation this decision
        /// starts, continues (a profile change) or ends: the engine's
        /// `active_since`, persisted with its snapshot, so every process
        /// (after a restart, another replica after a takeover) names the
        /// same activation the same way. PagerDuty's `dedup_key` comes from it.
        activation: Option<Timestamp>,
    },
    /// Talkdesk has not matched the decision for `after` (a target's
    /// `stuck_after`), or matches again.
    Stuck {
        phase: StuckPhase,
        after: Duration,
        /// When Talkdesk and the decision started to differ.
        since: Option<Timestamp>,
        /// Failed attempts so far.
        attempts: u32,
        last_error: Option<String>,
        /// A non-retryable error: the actuator waits for the decision or the
        /// configuration to change.
        blocked: bool,
        /// Talkdesk's activation as last seen (`None`: unknown).
        talkdesk_enabled: Option<bool>,
    },
    /// The flap latch was set (holding `profile` on since `since`) or released.
    Flap {
        since: Timestamp,
        profile: String,
        /// The engine's own words (its audit line, or the latch's reason).
        detail: String,
        resolved: bool,
    },
    /// The blind guard engaged (self-check failing since `since`) or released.
    Blind {
        since: Timestamp,
        detail: String,
        resolved: bool,
    },
    /// Talkdesk was changed outside the agent.
    Drift {
        action: DriftAction,
        /// What Talkdesk has now.
        talkdesk: Actual,
        /// When an adopted change stops being respected.
        until: Option<Timestamp>,
    },
}

/// Where a stuck actuation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StuckPhase {
    /// Talkdesk has differed from the decision for `after`.
    Started,
    /// Talkdesk matches the decision again, after a `Started`.
    Ended,
    /// Talkdesk matches the decision at the start of a leadership term with
    /// nothing reported stuck in it: sent only to PagerDuty, to resolve an
    /// incident a previous process opened and could not close (PagerDuty
    /// ignores a resolve for an incident that is not open).
    Settled,
}

/// What `talkdesk.on_drift` did with a change made outside the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriftAction {
    /// `correct`: the decision is applied again.
    Corrected,
    /// `respect`: the on/off change is adopted as an override.
    Adopted,
    /// `respect`: a settings edit while on is kept; on/off still follows the
    /// decisions.
    SettingsKept,
}

impl DriftAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DriftAction::Corrected => "corrected",
            DriftAction::Adopted => "adopted",
            DriftAction::SettingsKept => "settings_kept",
        }
    }
}

impl Notice {
    /// The event name of `on = [...]`.
    pub fn kind(&self) -> NoticeKind {
        match &self.what {
            What::Decision { previous, .. } => match (previous.is_active(), &self.desired) {
                (false, Desired::Active { .. }) => NoticeKind::Activate,
                (true, Desired::Active { .. }) => NoticeKind::Profile,
                (_, Desired::Inactive) => NoticeKind::Deactivate,
            },
            What::Stuck { .. } => NoticeKind::Stuck,
            What::Flap { .. } => NoticeKind::Flap,
            What::Blind { .. } => NoticeKind::Blind,
            What::Drift { .. } => NoticeKind::Drift,
        }
    }

    /// Whether this ends something an earlier notice started (a stuck
    /// actuation, the flap latch, the blind guard). A deactivation ends an
    /// activation too, but is an event of its own.
    pub fn resolved(&self) -> bool {
        match &self.what {
            What::Stuck { phase, .. } => *phase != StuckPhase::Started,
            What::Flap { resolved, .. } | What::Blind { resolved, .. } => *resolved,
            What::Decision { .. } | What::Drift { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(p: &str) -> Desired {
        Desired::Active {
            profile: p.to_string(),
        }
    }

    fn decision(previous: Desired, desired: Desired) -> Notice {
        Notice {
            at: Timestamp::from_millis(1),
            desired,
            what: What::Decision {
                previous,
                cause: Cause::Rule,
                reasons: vec![],
                activation: None,
            },
        }
    }

    #[test]
    fn a_decision_is_an_activation_a_deactivation_or_a_profile_change() {
        use NoticeKind::*;
        assert_eq!(decision(Desired::Inactive, on("a")).kind(), Activate);
        assert_eq!(decision(on("a"), Desired::Inactive).kind(), Deactivate);
        assert_eq!(decision(on("a"), on("b")).kind(), Profile);
        assert!(!decision(on("a"), Desired::Inactive).resolved());
    }
}
