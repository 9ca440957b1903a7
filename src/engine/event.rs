//! What goes into the engine (`Event`) and what comes out (`Command`).
//!
//! Probes, webhooks, the override API, calendar jobs and the actuator only
//! produce `Event`s into one bounded channel; the daemon feeds them to
//! `Engine::step` and executes the `Command`s. This closed set is the whole
//! surface of the decision logic, which is what makes it auditable and
//! replayable.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{Actual, AlertKey, Desired, ProbeHealth, ProbeOutcome, Timestamp};
use crate::telemetry::AuditKind;

use super::rule::RulePhase;

/// A manual override as set through the API or CLI.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// `Active { profile }` forces the fallback on; `Inactive` forces it off.
    pub desired: Desired,
    pub reason: String,
    /// Who set it (API token name, `cli`, `drift` when adopted from the Talkdesk UI).
    pub actor: String,
    pub set_at: Timestamp,
    /// The override ends on its own at this instant.
    pub until: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// One probe attempt finished.
    ProbeResult {
        probe: String,
        outcome: ProbeOutcome,
    },
    /// An alert fired or was refreshed (duplicates are harmless).
    AlertFiring {
        key: AlertKey,
        labels: BTreeMap<String, String>,
        #[serde(default)]
        summary: Option<String>,
    },
    AlertResolved {
        key: AlertKey,
    },
    OverrideSet(Override),
    OverrideCleared {
        actor: String,
        reason: Option<String>,
    },
    MaintenanceStarted {
        name: String,
        until: Timestamp,
    },
    MaintenanceEnded {
        name: String,
    },
    DrillStarted {
        name: String,
        profile: String,
        until: Timestamp,
    },
    DrillEnded {
        name: String,
    },
    /// Result of the agent's own canaries (blind guard).
    SelfCheck {
        ok: bool,
        detail: String,
    },
    /// What the actuator last read from Talkdesk.
    ActualObserved(Actual),
    /// Operator releases the flap latch.
    FlapRelease {
        actor: String,
    },
    /// Time passes: timers (for, clear_for, min_active, expiries) are evaluated.
    Tick,
}

/// Why the desired state changed; the `cause` label of `continuity_transitions_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    Rule,
    Override,
    OverrideExpired,
    /// The flap latch took the decision, or gave it back. Written `flap`;
    /// older snapshots wrote `flapping`, which still reads.
    #[serde(alias = "flapping")]
    Flap,
    Drill,
    Maintenance,
    Restore,
}

impl Cause {
    /// Every cause, for pre-creating metric series.
    pub const ALL: [Cause; 7] = [
        Cause::Rule,
        Cause::Override,
        Cause::OverrideExpired,
        Cause::Flap,
        Cause::Drill,
        Cause::Maintenance,
        Cause::Restore,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Rule => "rule",
            Cause::Override => "override",
            Cause::OverrideExpired => "override_expired",
            Cause::Flap => "flap",
            Cause::Drill => "drill",
            Cause::Maintenance => "maintenance",
            Cause::Restore => "restore",
        }
    }
}

/// One reason behind a decision, with the resolved inputs that made it so
/// (gatus-style: `trunk-a down (3 failures: timeout after 2s)`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// Rule, override, drill... that this reason belongs to.
    pub source: String,
    pub text: String,
}

impl Reason {
    /// `source: text`, without repeating the source when the text starts
    /// with it: the one wording of a reason for people (logs, audit, CLI,
    /// notifications).
    pub fn line(&self) -> String {
        if self.text.starts_with(&self.source) {
            self.text.clone()
        } else {
            format!("{}: {}", self.source, self.text)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// The desired fallback state changed. The actuator converges Talkdesk to it.
    SetDesired {
        desired: Desired,
        cause: Cause,
        reasons: Vec<Reason>,
    },
    /// Poll this probe at `fast_interval` (true) or its normal `interval` (false).
    ProbeCadence { probe: String, fast: bool },
    /// A probe's health changed.
    ProbeTransition {
        probe: String,
        from: ProbeHealth,
        to: ProbeHealth,
        detail: String,
    },
    /// A rule's phase changed.
    RuleTransition {
        rule: String,
        from: RulePhase,
        to: RulePhase,
    },
    /// A rule is due to fire on probe failures that no self-check verdict
    /// has vouched for yet: run the self-check now (not debounced). The rule
    /// waits for the verdict at most `self_check_wait`.
    SelfCheckNeeded { rule: String },
    /// A new alert was not taken: `alerts.max_active` alerts are active.
    /// Counted by the daemon; the engine audits the first of each episode.
    AlertDropped { key: AlertKey },
    /// Something worth a line in the audit log that is not a state change
    /// (alert expired, override rejected, flap latch set/released...).
    Audit { kind: AuditKind, message: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_line_names_its_source_once() {
        let r = |source: &str, text: &str| Reason {
            source: source.into(),
            text: text.into(),
        };
        assert_eq!(
            r("trunks-down", "trunks-down: firing").line(),
            "trunks-down: firing"
        );
        assert_eq!(
            r("rules", "no rule is firing").line(),
            "rules: no rule is firing"
        );
    }

    /// Rule transitions are typed in memory but keep their written form: the
    /// phases as the same lowercase strings as before.
    #[test]
    fn engine_rule_transition_serializes_phases_as_strings() {
        let c = Command::RuleTransition {
            rule: "trunks-down".into(),
            from: RulePhase::Pending,
            to: RulePhase::Firing,
        };
        let json = serde_json::json!({
            "command": "rule_transition",
            "rule": "trunks-down",
            "from": "pending",
            "to": "firing",
        });
        assert_eq!(serde_json::to_value(&c).unwrap(), json);
        assert_eq!(serde_json::from_value::<Command>(json).unwrap(), c);
    }
}
