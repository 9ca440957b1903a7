//! The engine's mutable state, apart from the spec it was built with and the
//! per-rule state (kept with each rule in `compiled.rs`).
//!
//! Everything here is plain data so that the snapshot can persist it and a
//! restored engine behaves exactly like the original (see `snapshot.rs`).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::domain::{Actual, AlertKey, Desired, Timestamp};

use super::eval::ActiveAlert;
use super::event::{Cause, Override, Reason};
use super::probe::ProbeState;

/// Which precedence layer decided the desired state (DESIGN section 3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    Override,
    Drill,
    Flapping,
    #[default]
    Rule,
}

impl Layer {
    /// The cause of a decision this layer took.
    pub fn cause(self) -> Cause {
        match self {
            Layer::Override => Cause::Override,
            Layer::Drill => Cause::Drill,
            Layer::Flapping => Cause::Flap,
            Layer::Rule => Cause::Rule,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveDrill {
    pub profile: String,
    pub started: Timestamp,
    pub until: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blind {
    pub since: Timestamp,
    pub detail: String,
}

/// The flap detector: automatic on/off transitions (the rule-driven decision
/// switching the fallback on or off) within the window, whether or not an
/// override or drill masks them, so the latch measures the signal rather than
/// operator actions. Profile switches are not counted (see `update_flap`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flap {
    /// Times of automatic on/off transitions still inside the window, oldest first.
    pub history: VecDeque<Timestamp>,
    /// The automatic decision as of the last step.
    pub auto: Option<Desired>,
    /// Profile of the most recent automatic activation (what the latch holds).
    pub last_active_profile: Option<String>,
    pub latched: Option<Latch>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latch {
    pub since: Timestamp,
    pub profile: String,
}

/// Not serialized as is (alert keys are structs); `Snapshot` is the persisted form.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub desired: Desired,
    /// Cause and reasons of the last change of `desired` (`None` before any).
    pub cause: Option<Cause>,
    pub reasons: Vec<Reason>,
    pub layer: Layer,
    pub desired_since: Option<Timestamp>,
    /// When the fallback was last switched on; `None` while off (`min_active`).
    pub active_since: Option<Timestamp>,
    /// Parallel to `spec.probes`. (Rule states live with each compiled rule.)
    pub probes: Vec<ProbeState>,
    pub alerts: BTreeMap<AlertKey, ActiveAlert>,
    pub override_: Option<Override>,
    /// Active maintenance windows: name -> end.
    pub maintenance: BTreeMap<String, Timestamp>,
    pub drills: BTreeMap<String, ActiveDrill>,
    pub blind: Option<Blind>,
    /// When the last self-check verdict (either way) arrived.
    pub self_check_at: Option<Timestamp>,
    pub flap: Flap,
    pub actual: Option<Actual>,
    /// The decisions since Talkdesk was last observed: the one in force when
    /// it was, then each later one, without repeats. A write of any of them
    /// may still land after the agent stops (a plan finishes the write in
    /// flight when superseded), so after a restart Talkdesk matching one of
    /// them is the agent's own write, not a change made in the UI
    /// (`talkdesk::drift::LastSeen`).
    pub unseen: Vec<Desired>,
}

impl State {
    pub fn new(probes: usize) -> State {
        State {
            desired: Desired::Inactive,
            cause: None,
            reasons: Vec::new(),
            layer: Layer::Rule,
            desired_since: None,
            active_since: None,
            probes: vec![ProbeState::default(); probes],
            alerts: BTreeMap::new(),
            override_: None,
            maintenance: BTreeMap::new(),
            drills: BTreeMap::new(),
            blind: None,
            self_check_at: None,
            // A fresh engine's rules want nothing: the first activation is a transition.
            flap: Flap {
                auto: Some(Desired::Inactive),
                ..Flap::default()
            },
            actual: None,
            unseen: vec![Desired::Inactive],
        }
    }
}
