//! `EngineView`: the serializable picture of the engine for `GET /v1/status`
//! and the status page. Built on demand; never stored.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::domain::{Actual, Desired, ProbeHealth, Timestamp};

use super::event::{Cause, Override, Reason};
use super::machine::{Engine, Trigger};
use super::rule::RulePhase;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EngineView {
    pub now: Timestamp,
    pub desired: Desired,
    /// Cause of the last change of `desired` (`None`: never changed).
    pub cause: Option<Cause>,
    /// Why the desired state is what it is *now* (recomputed, with current
    /// probe details).
    pub reasons: Vec<Reason>,
    /// Reasons recorded when `desired` last changed.
    pub change_reasons: Vec<Reason>,
    pub desired_since: Option<Timestamp>,
    pub active_since: Option<Timestamp>,
    pub actual: Option<Actual>,
    pub probes: Vec<ProbeView>,
    pub rules: Vec<RuleView>,
    pub alerts: Vec<AlertView>,
    #[serde(rename = "override")]
    pub override_: Option<Override>,
    pub flapping: bool,
    pub flap: FlapView,
    pub blind: Option<BlindView>,
    pub maintenance: Vec<WindowView>,
    pub drills: Vec<DrillView>,
    pub next_deadline: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProbeView {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub health: ProbeHealth,
    pub consecutive_successes: u32,
    pub consecutive_failures: u32,
    pub rise: u32,
    pub fall: u32,
    pub fast: bool,
    pub last_detail: Option<String>,
    pub last_latency_ms: Option<u64>,
    pub last_result_at: Option<Timestamp>,
    pub last_change: Option<Timestamp>,
    /// Restored after a restart and not yet confirmed by a fresh result.
    pub stale: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RuleView {
    pub name: String,
    pub profile: String,
    pub priority: i32,
    pub state: RulePhase,
    pub since: Option<Timestamp>,
    pub fired_at: Option<Timestamp>,
    /// The condition with live inputs, whatever the guard/window does with it.
    pub condition: bool,
    pub frozen: bool,
    /// Held after a restart until its probes report fresh results.
    pub awaiting_fresh_results: bool,
    /// The condition as text.
    pub when: String,
    pub explanation: Vec<String>,
    /// Probe leaves on their way to true: `1 of 2 probes matching "trunk-*"
    /// down; needs 2`.
    pub progress: Vec<String>,
    /// Pending: when it fires if the condition holds (`since + for`).
    pub fires_at: Option<Timestamp>,
    /// Clearing: when it stops holding the fallback on if the condition
    /// stays false (`since + clear_for`, not before `min_active` has passed).
    pub clears_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AlertView {
    pub source: String,
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub summary: Option<String>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub expires: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlapView {
    /// Automatic on/off transitions still inside the window (capped at `flap_max + 1`).
    pub transitions_in_window: usize,
    pub flap_max: u32,
    pub latched_since: Option<Timestamp>,
    pub latched_profile: Option<String>,
    /// When the latch lets go by itself if the rules stop flapping.
    pub until: Option<Timestamp>,
    /// While latched: why, until when, and how to release it.
    pub reason: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BlindView {
    pub since: Timestamp,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WindowView {
    pub name: String,
    pub until: Timestamp,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DrillView {
    pub name: String,
    pub profile: String,
    pub started: Timestamp,
    pub until: Timestamp,
}

/// What the daemon's gauges mirror besides each probe's health: cheap enough
/// for every step (no clone of an alert, no explanation, nothing per probe),
/// unlike [`Engine::view`]. Probe health is [`Engine::probe_gauge`] for the
/// probes a step moved, [`Engine::probe_gauges`] for all of them.
#[derive(Debug, PartialEq)]
pub struct Gauges<'a> {
    /// `(name, phase)` of every rule.
    pub rules: Vec<(&'a str, RulePhase)>,
    pub alerts: usize,
    pub override_active: bool,
    pub flapping: bool,
    pub blind: bool,
}

impl Engine {
    /// The figures the gauges mirror (see [`Gauges`]).
    pub fn gauges(&self) -> Gauges<'_> {
        Gauges {
            rules: self
                .spec
                .rules
                .iter()
                .zip(&self.rules)
                .map(|(r, c)| (r.name.as_str(), c.state.phase))
                .collect(),
            alerts: self.st.alerts.len(),
            override_active: self.st.override_.is_some(),
            flapping: self.st.flap.latched.is_some(),
            blind: self.st.blind.is_some(),
        }
    }

    /// `(id, type, health)` of every probe.
    pub fn probe_gauges(&self) -> impl Iterator<Item = (&str, &'static str, ProbeHealth)> {
        self.spec
            .probes
            .iter()
            .zip(&self.st.probes)
            .map(|(p, s)| (p.id.as_str(), p.kind, s.health))
    }

    /// `(type, health)` of one probe: after a step, only the probes it moved
    /// need their gauge set (a loop over every probe on every transition
    /// made 10,000 trunks coming up cost 10,000 x 10,000 label lookups).
    pub fn probe_gauge(&self, id: &str) -> Option<(&'static str, ProbeHealth)> {
        let &i = self.probe_index.get(id)?;
        Some((self.spec.probes.get(i)?.kind, self.st.probes.get(i)?.health))
    }

    /// A snapshot of everything `/v1/status` shows. `now` only affects the
    /// wording of durations in explanations; nothing expires here.
    pub fn view(&self, now: Timestamp) -> EngineView {
        let probes = self
            .spec
            .probes
            .iter()
            .zip(&self.st.probes)
            .zip(&self.stale)
            .map(|((p, s), &stale)| ProbeView {
                id: p.id.clone(),
                kind: p.kind,
                health: s.health,
                consecutive_successes: s.successes,
                consecutive_failures: s.failures,
                rise: p.rise,
                fall: p.fall,
                fast: s.fast,
                last_detail: s.last_detail.clone(),
                last_latency_ms: s.last_latency_ms,
                last_result_at: s.last_result_at,
                last_change: s.last_change,
                stale,
            })
            .collect();
        let rules = (0..self.spec.rules.len())
            .filter_map(|i| self.rule_view(i, now))
            .collect();
        let alerts = self
            .st
            .alerts
            .iter()
            .map(|(k, a)| AlertView {
                source: k.source.clone(),
                id: k.id.clone(),
                labels: a.labels.clone(),
                summary: a.summary.clone(),
                first_seen: a.first_seen,
                last_seen: a.last_seen,
                expires: a.expires,
            })
            .collect();
        let f = &self.st.flap;
        EngineView {
            now,
            desired: self.st.desired.clone(),
            cause: self.st.cause,
            reasons: self.reasons(now, self.st.layer, &Trigger::None, &[]),
            change_reasons: self.st.reasons.clone(),
            desired_since: self.st.desired_since,
            active_since: self.st.active_since,
            actual: self.st.actual.clone(),
            probes,
            rules,
            alerts,
            override_: self.st.override_.clone(),
            flapping: f.latched.is_some(),
            flap: FlapView {
                transitions_in_window: f.history.len(),
                flap_max: self.spec.flap_max,
                latched_since: f.latched.as_ref().map(|l| l.since),
                latched_profile: f.latched.as_ref().map(|l| l.profile.clone()),
                until: self.flap_release_at(),
                reason: self.flap_explanation(),
            },
            blind: self.st.blind.as_ref().map(|b| BlindView {
                since: b.since,
                detail: b.detail.clone(),
            }),
            maintenance: self
                .st
                .maintenance
                .iter()
                .map(|(name, &until)| WindowView {
                    name: name.clone(),
                    until,
                })
                .collect(),
            drills: self
                .st
                .drills
                .iter()
                .map(|(name, d)| DrillView {
                    name: name.clone(),
                    profile: d.profile.clone(),
                    started: d.started,
                    until: d.until,
                })
                .collect(),
            next_deadline: self.next_deadline(),
        }
    }

    fn rule_view(&self, i: usize, now: Timestamp) -> Option<RuleView> {
        let spec = self.spec.rules.get(i)?;
        let c = self.rules.get(i)?;
        let s = &c.state;
        Some(RuleView {
            name: spec.name.clone(),
            profile: spec.profile.clone(),
            priority: spec.priority,
            state: s.phase,
            since: s.since,
            fired_at: s.fired_at,
            condition: c.truth.live == super::eval::Tri::True,
            frozen: s.frozen,
            awaiting_fresh_results: self.awaiting_fresh(i),
            when: c.node.describe(&self.spec.probes),
            explanation: self
                .explain_rule(i, now)
                .into_iter()
                .map(|r| r.text)
                .collect(),
            progress: self.rule_progress(i),
            fires_at: (s.phase == RulePhase::Pending)
                .then(|| s.deadline(spec, self.st.active_since))
                .flatten(),
            clears_at: (s.phase == RulePhase::Clearing)
                .then(|| s.deadline(spec, self.st.active_since))
                .flatten(),
        })
    }

    /// How close rule `i`'s probe conditions are to true.
    fn rule_progress(&self, i: usize) -> Vec<String> {
        let Some(c) = self.rules.get(i) else {
            return Vec::new();
        };
        let ctx = super::eval::Ctx {
            probe_specs: &self.spec.probes,
            probes: &self.st.probes,
            alerts: &self.st.alerts,
            mask_probes: false,
        };
        let mut out = Vec::new();
        c.node.progress(&ctx, &mut out);
        out
    }
}
