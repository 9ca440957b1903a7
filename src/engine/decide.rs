//! The decision: precedence of override, drill, flap latch and rules, the
//! `cause` of a change, and the reasons that explain it.
//!
//! Precedence, highest first (DESIGN section 3, drills placed as the issue asks):
//! 1. an unexpired manual override (`active` with a profile, or `inactive`);
//! 2. an active drill (its profile, for its duration);
//! 3. the flap latch (holds the last automatic profile on);
//! 4. the firing (or clearing) rule with the highest priority, ties broken by
//!    config order; none means inactive.
//!
//! The blind guard and maintenance windows act *inside* layer 4, on the rules'
//! state machines (see `Engine::effective_truth`), so an override or drill is
//! never affected by them, and their reasons are attached to rule decisions.
//!
//! The precedence is written once, in `Engine::decider`; the decision
//! (`target_ref`) and the reported `Mode` both read it.

use serde::{Deserialize, Serialize};

use crate::domain::{Desired, Timestamp};

use super::eval::Ctx;
use super::event::{Cause, Command, Override, Reason};
use super::machine::{Engine, Trigger, fmt_dur};
use super::rule::RulePhase;
use super::state::{ActiveDrill, Latch, Layer};

/// What governs the agent right now, as `/v1/status` reports it: the layer
/// that decides, and when the rules decide, whether the blind guard or a
/// maintenance window is shaping them (the blind guard first: it freezes
/// rules, a window only holds back new activations).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Override,
    Drill,
    Flapping,
    Blind,
    Maintenance,
    Automatic,
}

impl Mode {
    /// The name `/v1/status` and the CLI show (the serialized form).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Override => "override",
            Mode::Drill => "drill",
            Mode::Flapping => "flapping",
            Mode::Blind => "blind",
            Mode::Maintenance => "maintenance",
            Mode::Automatic => "automatic",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// The layer that decides, with what it decides from.
enum Decider<'a> {
    Override(&'a Override),
    Drill(&'a ActiveDrill),
    Flapping(&'a Latch),
    Rules,
}

fn reason(source: impl Into<String>, text: impl Into<String>) -> Reason {
    Reason {
        source: source.into(),
        text: text.into(),
    }
}

impl Engine {
    /// The active drill that wins if several overlap: the most recently started.
    pub(super) fn current_drill(&self) -> Option<(&String, &ActiveDrill)> {
        self.st.drills.iter().max_by_key(|(_, d)| d.started)
    }

    /// The precedence, the one place it is written: override > drill > flap
    /// latch > rules.
    fn decider(&self) -> Decider<'_> {
        if let Some(o) = &self.st.override_ {
            return Decider::Override(o);
        }
        if let Some((_, d)) = self.current_drill() {
            return Decider::Drill(d);
        }
        if let Some(l) = &self.st.flap.latched {
            return Decider::Flapping(l);
        }
        Decider::Rules
    }

    /// The desired profile (`None`: inactive) and which layer decided it.
    /// Borrowed, so the per-step comparison allocates nothing.
    pub(super) fn target_ref(&self) -> (Option<&str>, Layer) {
        match self.decider() {
            Decider::Override(o) => (o.desired.profile(), Layer::Override),
            Decider::Drill(d) => (Some(d.profile.as_str()), Layer::Drill),
            Decider::Flapping(l) => (Some(l.profile.as_str()), Layer::Flapping),
            Decider::Rules => {
                let top = self.top_rule().map(|i| self.spec.rules[i].profile.as_str());
                (top, Layer::Rule)
            }
        }
    }

    /// What governs the agent right now (see [`Mode`]). Like `view`, this
    /// reads the state as of the last step: nothing expires here.
    pub fn mode(&self) -> Mode {
        match self.decider() {
            Decider::Override(_) => Mode::Override,
            Decider::Drill(_) => Mode::Drill,
            Decider::Flapping(_) => Mode::Flapping,
            Decider::Rules if self.st.blind.is_some() => Mode::Blind,
            Decider::Rules if !self.st.maintenance.is_empty() => Mode::Maintenance,
            Decider::Rules => Mode::Automatic,
        }
    }

    /// Emits `SetDesired` if the target changed. Returns whether it did.
    pub(super) fn decide(
        &mut self,
        now: Timestamp,
        trig: &Trigger,
        cleared: &[usize],
        out: &mut Vec<Command>,
    ) -> bool {
        let (target, layer) = self.target_ref();
        let unchanged = match (&self.st.desired, target) {
            (Desired::Inactive, None) => true,
            (Desired::Active { profile }, Some(p)) => profile == p,
            _ => false,
        };
        let target = match target {
            _ if unchanged => None,
            Some(p) => Some(Desired::Active {
                profile: p.to_string(),
            }),
            None => Some(Desired::Inactive),
        };
        let prev_layer = self.st.layer;
        self.st.layer = layer;
        let Some(target) = target else {
            // The flap latch took the decision over (or gave it back) without
            // changing it: nothing goes to the actuator, but the recorded
            // cause and reasons must name who decides now.
            if layer != prev_layer && (layer == Layer::Flapping || prev_layer == Layer::Flapping) {
                self.st.cause = Some(layer.cause());
                self.st.reasons = self.reasons(now, layer, trig, cleared);
            }
            return false;
        };
        let cause = match trig {
            Trigger::OverrideExpired(_) => Cause::OverrideExpired,
            Trigger::OverrideSet | Trigger::OverrideCleared { .. } => Cause::Override,
            Trigger::Restore => Cause::Restore,
            Trigger::None => match (layer, prev_layer) {
                // A higher layer ended and the rules took over again: the
                // ending is what changed the state.
                (Layer::Rule, Layer::Drill) => Cause::Drill,
                (Layer::Rule, Layer::Flapping) => Cause::Flap,
                (layer, _) => layer.cause(),
            },
        };
        let reasons = self.reasons(now, layer, trig, cleared);
        if target.is_active() && !self.st.desired.is_active() {
            self.st.active_since = Some(now);
        } else if !target.is_active() {
            self.st.active_since = None;
        }
        if !self.st.unseen.contains(&target) {
            // Bounded by the profiles (one entry per distinct decision).
            self.st.unseen.push(target.clone());
        }
        self.st.desired = target.clone();
        self.st.desired_since = Some(now);
        self.st.cause = Some(cause);
        self.st.reasons = reasons.clone();
        out.push(Command::SetDesired {
            desired: target,
            cause,
            reasons,
        });
        true
    }

    /// Reasons for the current decision of `layer`, plus context (what ended,
    /// blind guard, maintenance).
    pub(super) fn reasons(
        &self,
        now: Timestamp,
        layer: Layer,
        trig: &Trigger,
        cleared: &[usize],
    ) -> Vec<Reason> {
        let mut r = Vec::new();
        match trig {
            Trigger::OverrideExpired(o) => r.push(reason(
                "override",
                format!(
                    "override {} by {} expired at {} ({})",
                    o.desired, o.actor, o.until, o.reason
                ),
            )),
            Trigger::OverrideCleared { actor, reason: why } => r.push(reason(
                "override",
                format!(
                    "override cleared by {actor}{}",
                    why.as_deref()
                        .map(|w| format!(" ({w})"))
                        .unwrap_or_default()
                ),
            )),
            Trigger::OverrideSet | Trigger::Restore | Trigger::None => {}
        }
        match layer {
            Layer::Override => {
                if let Some(o) = &self.st.override_ {
                    r.push(reason(
                        "override",
                        format!(
                            "manual override by {}: {} until {} ({})",
                            o.actor, o.desired, o.until, o.reason
                        ),
                    ));
                }
            }
            Layer::Drill => {
                if let Some((name, d)) = self.current_drill() {
                    r.push(reason(
                        format!("drill:{name}"),
                        format!("drill {name}: {} until {}", d.profile, d.until),
                    ));
                }
            }
            Layer::Flapping => {
                if let Some(text) = self.flap_explanation() {
                    r.push(reason("flap", text));
                }
            }
            Layer::Rule => self.rule_reasons(now, cleared, &mut r),
        }
        self.context_reasons(&mut r);
        r
    }

    fn rule_reasons(&self, now: Timestamp, cleared: &[usize], r: &mut Vec<Reason>) {
        let Some(top) = self.top_rule() else {
            for &i in cleared {
                let spec = &self.spec.rules[i];
                r.push(reason(
                    spec.name.clone(),
                    format!(
                        "{}: cleared (condition false for clear_for {}; fallback on for min_active {})",
                        spec.name,
                        fmt_dur(spec.clear_for),
                        fmt_dur(spec.min_active)
                    ),
                ));
            }
            r.push(reason("rules", "no rule is firing"));
            // Say what is on its way, so "why isn't it on yet?" has an answer.
            for (i, c) in self.rules.iter().enumerate() {
                if c.state.phase == RulePhase::Pending || c.state.frozen {
                    r.extend(self.explain_rule(i, now));
                }
            }
            return;
        };
        r.extend(self.explain_rule(top, now));
        for (i, (spec, c)) in self.spec.rules.iter().zip(&self.rules).enumerate() {
            if i != top && c.state.phase.holds() {
                r.push(reason(
                    spec.name.clone(),
                    format!(
                        "{}: also {} (priority {}, profile {})",
                        spec.name, c.state.phase, spec.priority, spec.profile
                    ),
                ));
            }
        }
    }

    /// One reason per true leaf of rule `i`, with the probe details and alert
    /// labels that made it true, plus a line for its phase when that matters.
    pub(super) fn explain_rule(&self, i: usize, now: Timestamp) -> Vec<Reason> {
        let (Some(spec), Some(c)) = (self.spec.rules.get(i), self.rules.get(i)) else {
            return Vec::new();
        };
        let s = &c.state;
        let name = &spec.name;
        let mut r = Vec::new();
        if s.frozen {
            r.push(reason(
                name.clone(),
                format!(
                    "{name}: {} (frozen by the blind guard: the probe states below are not trusted)",
                    s.phase
                ),
            ));
        }
        let ctx = Ctx {
            probe_specs: &self.spec.probes,
            probes: &self.st.probes,
            alerts: &self.st.alerts,
            mask_probes: false,
        };
        let mut lines = Vec::new();
        c.node.explain(&ctx, &mut lines);
        r.extend(
            lines
                .into_iter()
                .map(|l| reason(name.clone(), format!("{name}: {l}"))),
        );
        let since = s.since.unwrap_or(now);
        match s.phase {
            RulePhase::Clearing => r.push(reason(
                name.clone(),
                format!(
                    "{name}: clearing: condition false for {} (needs {}; fallback must stay on at least {})",
                    fmt_dur(now.since(since)),
                    fmt_dur(spec.clear_for),
                    fmt_dur(spec.min_active)
                ),
            )),
            RulePhase::Pending if s.awaiting_self_check.is_some() => r.push(reason(
                name.clone(),
                format!(
                    "{name}: pending: due to fire, waiting for the self-check to confirm the agent itself can reach the network (at most until {})",
                    s.awaiting_self_check.unwrap_or(now).add(self.spec.self_check_wait)
                ),
            )),
            RulePhase::Pending => r.push(reason(
                name.clone(),
                format!(
                    "{name}: pending: condition true for {} (fires after {})",
                    fmt_dur(now.since(since)),
                    fmt_dur(spec.for_)
                ),
            )),
            RulePhase::Firing | RulePhase::Inactive => {}
        }
        if r.is_empty() {
            r.push(reason(name.clone(), format!("{name}: {}", s.phase)));
        }
        r
    }

    fn context_reasons(&self, r: &mut Vec<Reason>) {
        if let Some(b) = &self.st.blind {
            r.push(reason(
                "blind",
                format!(
                    "blind guard: self-check failing since {} ({}); probe-driven rules frozen",
                    b.since, b.detail
                ),
            ));
        }
        for (name, until) in &self.st.maintenance {
            r.push(reason(
                format!("maintenance:{name}"),
                format!(
                    "maintenance window {name} until {until}: probe-driven activation suppressed"
                ),
            ));
        }
    }
}
