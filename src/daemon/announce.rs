//! What the loop tells people through `notify`: decision changes, the flap
//! latch, the blind guard and stuck actuation. Each comes from something
//! typed: the engine's `SetDesired` command, its flap and blind state
//! (compared when the engine audits a flap, blind or restore event), and the
//! actuator's status ([`StuckWatch`]). Never from log or audit text.
//!
//! Only the leader announces, and only once its engine is the restored
//! leader's (see the leadership notes in `event_loop.rs`): a follower's
//! engine decides nothing. Every replica still keeps track of what was last
//! announced ([`Seen`]), so the notices of the next change are right.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::Config;
use crate::domain::{Desired, Timestamp};
use crate::engine::{Cause, Engine, Reason, Snapshot};
use crate::notify::stuck::StuckWatch;
use crate::notify::{Notice, Notices, What};
use crate::talkdesk::ActuatorStatus;

/// How often the actuator's status is looked at for a stuck actuation: the
/// thresholds are minutes, the loop turns many times a second under load.
const LOOK_EVERY: Duration = Duration::from_millis(500);

/// What the notices so far have said, as far as the next one needs it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Seen {
    pub desired: Desired,
    /// When the fallback went on for the current activation (the engine's
    /// `active_since`): a deactivation names the activation it ends.
    pub activation: Option<Timestamp>,
    /// The flap latch: since when, on which profile.
    pub flap: Option<(Timestamp, String)>,
    /// The blind guard: since when.
    pub blind: Option<Timestamp>,
}

impl Default for Seen {
    fn default() -> Self {
        Seen {
            desired: Desired::Inactive,
            activation: None,
            flap: None,
            blind: None,
        }
    }
}

impl Seen {
    /// The stored engine as it was persisted, before the restore applies
    /// what happened while no engine ran: those changes are announced.
    pub fn stored(snap: &Snapshot) -> Seen {
        Seen {
            desired: snap.desired.clone(),
            activation: snap.active_since,
            flap: snap
                .flap
                .latched
                .as_ref()
                .map(|l| (l.since, l.profile.clone())),
            blind: snap.blind.as_ref().map(|b| b.since),
        }
    }
}

pub(super) struct Announcer {
    notices: Notices,
    seen: Seen,
    stuck: StuckWatch,
    last_look: Option<Instant>,
}

impl Announcer {
    pub fn new(notices: Notices, seen: Seen) -> Announcer {
        Announcer {
            notices,
            seen,
            stuck: StuckWatch::new(),
            last_look: None,
        }
    }

    /// The engine was replaced by the stored one (a takeover).
    pub fn restored(&mut self, seen: Seen) {
        self.seen = seen;
    }

    /// A new actuator runs: what earlier ones were stuck on is theirs.
    pub fn new_term(&mut self) {
        self.stuck.reset();
        self.last_look = None;
    }

    /// A configuration reload: the new targets.
    pub fn reconfigure(&self, config: &Config) {
        self.notices.reconfigure(config);
    }

    /// The desired state changed (`SetDesired`): the notice to send once
    /// the decision is persisted, if `send`.
    pub fn decision(
        &mut self,
        engine: &Engine,
        (desired, cause, reasons): (&Desired, Cause, &[Reason]),
        now: Timestamp,
        send: bool,
    ) -> Option<Notice> {
        let activation = if desired.is_active() {
            engine.view(now).active_since.or(self.seen.activation)
        } else {
            self.seen.activation
        };
        let previous = std::mem::replace(&mut self.seen.desired, desired.clone());
        self.seen.activation = activation.filter(|_| desired.is_active());
        send.then(|| Notice {
            at: now,
            desired: desired.clone(),
            what: What::Decision {
                previous,
                cause,
                reasons: reasons.to_vec(),
                activation,
            },
        })
    }

    /// The engine audited a flap, blind or restore event: compare the latch
    /// and the guard with what was last announced; the notices to send, if
    /// `send`. `words` are the engine's own audit lines of this step for the
    /// flap latch and the blind guard.
    pub fn conditions(
        &mut self,
        engine: &Engine,
        (flap_words, blind_words): (Option<&str>, Option<&str>),
        now: Timestamp,
        send: bool,
    ) -> Vec<Notice> {
        let view = engine.view(now);
        let desired = engine.desired().clone();
        let flap = view
            .flap
            .latched_since
            .zip(view.flap.latched_profile.clone());
        let flap_change = match (self.seen.flap.take(), &flap) {
            (None, Some((since, profile))) => Some((*since, profile.clone(), false)),
            (Some((since, profile)), None) => Some((since, profile, true)),
            _ => None,
        };
        self.seen.flap = flap;
        let blind = view.blind.as_ref().map(|b| (b.since, b.detail.clone()));
        let blind_change = match (self.seen.blind.take(), &blind) {
            (None, Some((since, detail))) => Some((*since, detail.clone(), false)),
            (Some(since), None) => Some((since, String::new(), true)),
            _ => None,
        };
        self.seen.blind = blind.map(|(since, _)| since);
        let mut out = Vec::new();
        if !send {
            return out;
        }
        if let Some((since, profile, resolved)) = flap_change {
            let detail = flap_words
                .map(str::to_string)
                .or(view.flap.reason.clone())
                .unwrap_or_default();
            out.push(Notice {
                at: now,
                desired: desired.clone(),
                what: What::Flap {
                    since,
                    profile,
                    detail,
                    resolved,
                },
            });
        }
        if let Some((since, detail, resolved)) = blind_change {
            let detail = blind_words.map(str::to_string).unwrap_or(detail);
            out.push(Notice {
                at: now,
                desired,
                what: What::Blind {
                    since,
                    detail,
                    resolved,
                },
            });
        }
        out
    }

    /// Queues `notices` for the targets (never waits).
    pub fn send(&self, notices: Vec<Notice>) {
        for notice in notices {
            self.notices.send(notice);
        }
    }

    /// Looks at the actuator's status (at most every [`LOOK_EVERY`]) for an
    /// actuation stuck longer than a target's `stuck_after`, or one that
    /// got through.
    pub fn actuator(&mut self, status: impl FnOnce() -> ActuatorStatus) {
        if self.last_look.is_some_and(|t| t.elapsed() < LOOK_EVERY) {
            return;
        }
        self.last_look = Some(Instant::now());
        let thresholds = self.notices.stuck_thresholds();
        if thresholds.is_empty() {
            return;
        }
        for notice in self.stuck.observe(&status(), &thresholds, Timestamp::now()) {
            self.notices.send(notice);
        }
    }
}
