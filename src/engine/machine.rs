//! `Engine`: construction, `step`, and the per-step pipeline.
//!
//! One step is: expire what is due at `now` (override, alerts, windows,
//! drills), apply the event, re-evaluate the rules whose inputs changed,
//! advance every rule's hysteresis, update the flap detector, then decide.
//! The event handlers live in `inputs.rs`, the decision in `decide.rs`.

use std::collections::HashMap;
use std::time::Duration;

use crate::domain::{Desired, ProbeHealth, Timestamp};
use crate::telemetry::AuditKind;

use super::compiled::{CompiledRule, Truth};
use super::eval::{Ctx, Tri};
use super::event::{Command, Event, Override};
use super::rule::{RulePhase, RuleState};
use super::spec::{EngineSpec, RuleSpec};
use super::state::{Latch, State};

/// What, besides the rules, made this step change things; it picks the
/// `cause` of a resulting `SetDesired`.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Trigger {
    None,
    OverrideSet,
    OverrideCleared {
        actor: String,
        reason: Option<String>,
    },
    OverrideExpired(Override),
    Restore,
}

/// The decision engine. See the module docs of `engine` for the invariants.
#[derive(Clone, Debug)]
pub struct Engine {
    pub(super) spec: EngineSpec,
    /// Parallel to `spec.rules`.
    pub(super) rules: Vec<CompiledRule>,
    pub(super) probe_index: HashMap<String, usize>,
    /// probe index -> indices of the rules that read it.
    pub(super) probe_rules: Vec<Vec<usize>>,
    /// Probes whose state was restored from a snapshot and has not been
    /// confirmed by a fresh result yet (see `effective_truth`). Not persisted:
    /// a restore marks every restored probe stale again.
    pub(super) stale: Vec<bool>,
    /// How many entries of `stale` are true. Zero once every restored state
    /// was confirmed (and always after a fresh start): then no rule needs
    /// the scan of its probes that `awaiting_fresh` does, which at 10,000
    /// probes in one glob took a quarter of the agent's CPU, twice per
    /// probe result.
    pub(super) stale_left: usize,
    /// Time of the last `step`, saved in snapshots so a restore knows whether
    /// time passed unobserved.
    pub(super) last_step: Option<Timestamp>,
    /// Some rule is dirty (saves scanning them all on most steps).
    pub(super) any_dirty: bool,
    /// New alerts are being dropped (`alerts_max_active` reached); the
    /// first drop of each episode is audited. Not persisted.
    pub(super) alerts_overflowing: bool,
    pub(super) st: State,
}

impl Engine {
    /// A fresh engine: every probe unknown, every rule inactive, fallback inactive.
    /// Probes start transitioning (unknown), so the daemon should poll them at
    /// their fast interval; [`Engine::probe_cadences`] lists that.
    pub fn new(spec: EngineSpec) -> Engine {
        let mut probe_index = HashMap::with_capacity(spec.probes.len());
        for (i, p) in spec.probes.iter().enumerate() {
            probe_index.entry(p.id.clone()).or_insert(i);
        }
        let rules: Vec<CompiledRule> = spec
            .rules
            .iter()
            .map(|r| CompiledRule::new(r, &probe_index))
            .collect();
        let mut probe_rules = vec![Vec::new(); spec.probes.len()];
        for (ri, r) in rules.iter().enumerate() {
            for &pi in &r.probes {
                probe_rules[pi].push(ri);
            }
        }
        let stale = vec![false; spec.probes.len()];
        let st = State::new(spec.probes.len());
        let mut e = Engine {
            spec,
            rules,
            probe_index,
            probe_rules,
            stale,
            stale_left: 0,
            last_step: None,
            any_dirty: true,
            alerts_overflowing: false,
            st,
        };
        e.refresh_truth();
        e
    }

    pub fn spec(&self) -> &EngineSpec {
        &self.spec
    }

    /// The decisions since Talkdesk was last observed (`State::unseen`).
    pub fn unseen(&self) -> &[Desired] {
        &self.st.unseen
    }

    /// The current desired state.
    pub fn desired(&self) -> &Desired {
        &self.st.desired
    }

    /// Whether the engine knows the present: every probe has left `unknown`
    /// (and, after a restore, been confirmed by a fresh result), and no rule
    /// is pending, i.e. no decision is still being made. After a fresh start
    /// the daemon keeps the actuator away from Talkdesk until this holds (or
    /// a decision switches the fallback on, or a grace period passes).
    pub fn has_fresh_evidence(&self) -> bool {
        let probes_known = self
            .st
            .probes
            .iter()
            .zip(&self.stale)
            .all(|(p, &stale)| p.health != ProbeHealth::Unknown && !stale);
        probes_known
            && !self
                .rules
                .iter()
                .any(|r| r.state.phase == RulePhase::Pending)
    }

    /// Feeds one event at `now` and returns what the daemon must do.
    ///
    /// `now` should not go backwards; if it does, timers simply see no time
    /// pass (durations saturate at zero), nothing panics.
    pub fn step(&mut self, event: Event, now: Timestamp) -> Vec<Command> {
        let mut out = Vec::new();
        let mut trig = Trigger::None;
        self.last_step = Some(now);
        self.expire(now, &mut out, &mut trig);
        self.apply(event, now, &mut out, &mut trig);
        self.settle(now, trig, &mut out);
        out
    }

    /// `ProbeCadence` for every probe, as currently wanted. The daemon calls
    /// this once after `new` (restore already returns them).
    pub fn probe_cadences(&self) -> Vec<Command> {
        self.spec
            .probes
            .iter()
            .zip(&self.st.probes)
            .map(|(p, s)| Command::ProbeCadence {
                probe: p.id.clone(),
                fast: s.fast,
            })
            .collect()
    }

    /// When the next timer (rule `for`/`clear_for`/`min_active`, override,
    /// alert, window or drill expiry, flap latch quiet period) falls due. The
    /// daemon sleeps until then and sends `Event::Tick`. It may be at or before
    /// the last step's time; then a Tick is due at once.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        let mut next: Option<Timestamp> = None;
        let mut put = |t: Timestamp| next = Some(next.map_or(t, |n| n.min(t)));
        if let Some(o) = &self.st.override_ {
            put(o.until);
        }
        self.st.alerts.values().for_each(|a| put(a.expires));
        self.st.maintenance.values().for_each(|&t| put(t));
        self.st.drills.values().for_each(|d| put(d.until));
        if let Some(t) = self.flap_release_at() {
            put(t);
        }
        let on = self.st.active_since;
        for (i, (r, c)) in self.spec.rules.iter().zip(&self.rules).enumerate() {
            // A held rule waits for a probe result, not for time.
            if self.awaiting_fresh(i) {
                continue;
            }
            // Held for a self-check verdict: the wait is bounded.
            if let Some(held) = c.state.awaiting_self_check {
                put(held.add(self.spec.self_check_wait));
                continue;
            }
            if let Some(t) = c.state.deadline(r, on) {
                put(t);
            }
        }
        next
    }

    /// Re-evaluates the conditions of rules whose inputs changed.
    pub(super) fn refresh_truth(&mut self) {
        if !self.any_dirty {
            return;
        }
        let live = Ctx {
            probe_specs: &self.spec.probes,
            probes: &self.st.probes,
            alerts: &self.st.alerts,
            mask_probes: false,
        };
        let masked = Ctx {
            mask_probes: true,
            ..live
        };
        for r in self.rules.iter_mut().filter(|r| r.dirty) {
            let l = r.node.eval(&live);
            let m = if r.reads_probes() {
                r.node.eval(&masked)
            } else {
                l
            };
            r.truth = Truth { live: l, masked: m };
            r.dirty = false;
        }
        self.any_dirty = false;
    }

    pub(super) fn mark_probe_dirty(&mut self, probe: usize) {
        if let Some(rules) = self.probe_rules.get(probe) {
            for &r in rules {
                self.rules[r].dirty = true;
                self.any_dirty = true;
            }
        }
    }

    pub(super) fn mark_alerts_dirty(&mut self) {
        for r in self.rules.iter_mut().filter(|r| r.reads_alerts) {
            r.dirty = true;
            self.any_dirty = true;
        }
    }

    pub(super) fn mark_all_dirty(&mut self) {
        self.rules.iter_mut().for_each(|r| r.dirty = true);
        self.any_dirty = true;
    }

    /// Rules, flap detector and decision, after the inputs changed.
    pub(super) fn settle(&mut self, now: Timestamp, trig: Trigger, out: &mut Vec<Command>) {
        self.refresh_truth();
        let mut cleared = Vec::new();
        self.advance_rules(now, out, &mut cleared);
        self.update_flap(now, out);
        if self.decide(now, &trig, &cleared, out) {
            // Switching the fallback off lifts `min_active` for clearing rules
            // (it only protects callers while calls are forwarded); let them
            // finish now rather than at an already-passed deadline.
            let before = out.len();
            self.advance_rules(now, out, &mut cleared);
            if out.len() != before {
                self.update_flap(now, out);
                self.decide(now, &Trigger::None, &cleared, out);
            }
        }
    }

    /// The effective truth a rule's state machine sees, or `None` when the
    /// blind guard freezes it. This is where blind and maintenance semantics live:
    ///
    /// - blind (self-check failing), rule reads probes: probe leaves are
    ///   `Unknown`; if alerts alone decide the condition, that value is used,
    ///   otherwise the rule is frozen (keeps its phase, timers paused).
    /// - maintenance window active, rule reads probes and is inactive or
    ///   pending: probe leaves are `Unknown` and only a definite `True`
    ///   counts, so probes can never newly activate a rule (a pending rule
    ///   drops back to inactive). A rule already firing or clearing keeps
    ///   evaluating normally: an outage that began before the window is still
    ///   handled and still clears.
    pub(super) fn effective_truth(&self, i: usize) -> Option<bool> {
        let r = &self.rules[i];
        let t = r.truth;
        let uses_probes = r.reads_probes();
        if uses_probes && self.st.blind.is_some() {
            return match t.masked {
                Tri::True => Some(true),
                Tri::False => Some(false),
                Tri::Unknown => None,
            };
        }
        let phase = r.state.phase;
        if uses_probes && !self.st.maintenance.is_empty() && !phase.holds() {
            return Some(t.masked == Tri::True);
        }
        Some(t.live == Tri::True)
    }

    /// After a restore, a rule that is not firing and whose condition depends
    /// on a probe state no fresh result has confirmed yet (the snapshot may be
    /// hours old) is *held*: its phase and its timer are kept, as Prometheus
    /// restores `for` state, but it does not advance until fresh evidence
    /// arrives. So old evidence can neither newly switch calls away (pending
    /// -> firing) nor bring them back (clearing -> inactive). If alerts alone
    /// decide its condition it advances normally. A firing rule keeps using
    /// the restored states: it holds the fallback on until fresh results say
    /// otherwise.
    pub(super) fn awaiting_fresh(&self, i: usize) -> bool {
        let r = &self.rules[i];
        r.reads_probes()
            && self.st.blind.is_none()
            && r.state.phase != RulePhase::Firing
            && r.truth.masked == Tri::Unknown
            && self.stale_left > 0
            && r.probes.iter().any(|&p| self.stale[p])
    }

    /// When rule `i` reads probes that are down on a run of failures newer
    /// than the last self-check verdict: the start of the newest such run.
    /// `None` when the guard is off, already blind (rules are frozen then),
    /// or a verdict has come in since the failures began.
    pub(super) fn unverified_failures(&self, i: usize) -> Option<Timestamp> {
        if !self.spec.self_check || self.st.blind.is_some() {
            return None;
        }
        let newest = self.rules[i]
            .probes
            .iter()
            .filter_map(|&p| {
                let s = &self.st.probes[p];
                (s.health == ProbeHealth::Down)
                    .then_some(s.failing_since)
                    .flatten()
            })
            .max()?;
        match self.st.self_check_at {
            Some(verdict) if verdict >= newest => None,
            _ => Some(newest),
        }
    }

    fn advance_rules(&mut self, now: Timestamp, out: &mut Vec<Command>, cleared: &mut Vec<usize>) {
        let on_since = self.st.active_since;
        for i in 0..self.rules.len() {
            if self.awaiting_fresh(i) {
                continue;
            }
            let eff = self.effective_truth(i);
            let wait = self.spec.self_check_wait;
            let (Some(spec), Some(rs)) = (
                self.spec.rules.get(i),
                self.rules.get_mut(i).map(|r| &mut r.state),
            ) else {
                continue;
            };
            let Some(truth) = eff else {
                rs.frozen = true;
                rs.awaiting_self_check = None;
                continue;
            };
            if rs.frozen {
                // Time spent blind is evidence of nothing: restart the timer.
                rs.frozen = false;
                rs.restart_timer(now);
            }
            // Only a rule about to fire asks which of its probes failed
            // unverified: that looks at every probe the rule reads (all
            // 10,000 of a glob), too much for every probe result.
            let unverified = if rs.would_fire(truth, spec, now) {
                self.unverified_failures(i)
            } else {
                None
            };
            let (Some(spec), Some(rs)) = (
                self.spec.rules.get(i),
                self.rules.get_mut(i).map(|r| &mut r.state),
            ) else {
                continue;
            };
            if let Some(failing) = unverified
                && wait_for_verdict(rs, spec, failing, wait, now, out)
            {
                continue;
            }
            if let Some((from, to)) = rs.advance(truth, spec, now, on_since) {
                out.push(Command::RuleTransition {
                    rule: spec.name.clone(),
                    from,
                    to,
                });
                if to == RulePhase::Inactive && from.holds() {
                    cleared.push(i);
                }
            }
        }
    }

    /// The highest-priority rule holding the fallback on (ties: config order).
    pub(super) fn top_rule(&self) -> Option<usize> {
        let mut best: Option<usize> = None;
        for (i, (r, c)) in self.spec.rules.iter().zip(&self.rules).enumerate() {
            if !c.state.phase.holds() {
                continue;
            }
            match best {
                Some(b) if self.spec.rules[b].priority >= r.priority => {}
                _ => best = Some(i),
            }
        }
        best
    }

    /// The flap detector. It counts *automatic on/off transitions*: the
    /// rules' own decision going from off to on or from on to off, whether or
    /// not an override, drill or the latch itself masks it. A switch between
    /// two profiles while the rules keep the fallback on is not one (the
    /// callers stay forwarded); neither is anything an operator or the
    /// calendar does (overrides, drills, their ends), nor a latch release.
    /// More than `flap_max` of them within `flap_window` latch the most recent
    /// automatic profile on; `flap_window` without one releases it.
    fn update_flap(&mut self, now: Timestamp, out: &mut Vec<Command>) {
        // Compare before cloning: this runs on every step.
        let top = self.top_rule().map(|i| self.spec.rules[i].profile.as_str());
        let was = self.st.flap.auto.as_ref();
        let switched = match (was, top) {
            (Some(Desired::Inactive), None) => false,
            (Some(Desired::Active { profile }), Some(p)) => profile != p,
            _ => true,
        };
        let on_off = was.is_none_or(|w| w.is_active() != top.is_some());
        let f = &mut self.st.flap;
        if switched {
            // The first evaluation (`auto` unknown) only sets the baseline.
            if on_off && f.auto.is_some() {
                f.history.push_back(now);
                // Latching needs max+1 entries and release only the newest.
                while f.history.len() > self.spec.flap_max as usize + 1 {
                    f.history.pop_front();
                }
            }
            f.auto = Some(match top {
                Some(p) => {
                    f.last_active_profile = Some(p.to_string());
                    Desired::Active {
                        profile: p.to_string(),
                    }
                }
                None => Desired::Inactive,
            });
        }
        let window = self.spec.flap_window;
        while f.history.front().is_some_and(|&t| now.since(t) >= window) {
            f.history.pop_front();
        }
        let max = self.spec.flap_max;
        match &f.latched {
            None if max > 0 && f.history.len() > max as usize => {
                if let Some(profile) = f.last_active_profile.clone() {
                    f.latched = Some(Latch {
                        since: now,
                        profile,
                    });
                    if let Some(why) = self.flap_explanation() {
                        out.push(Command::Audit {
                            kind: AuditKind::Flap,
                            message: format!("flap latch set: {why}"),
                        });
                    }
                }
            }
            Some(l) if f.history.is_empty() => {
                out.push(Command::Audit {
                    kind: AuditKind::Flap,
                    message: format!(
                        "flap latch released: no automatic on/off transition for {} (latched since {})",
                        fmt_dur(window),
                        l.since
                    ),
                });
                f.latched = None;
            }
            _ => {}
        }
    }

    /// When the flap latch lets go by itself if the rules stop flapping:
    /// `flap_window` after the last automatic on/off transition. `None`
    /// while it is not latched.
    pub(super) fn flap_release_at(&self) -> Option<Timestamp> {
        let f = &self.st.flap;
        f.latched.as_ref()?;
        f.history.back().map(|t| t.add(self.spec.flap_window))
    }

    /// Why the flap latch holds, until when, and how to release it: the one
    /// wording of the audit line, the decision's reason and status.
    pub(super) fn flap_explanation(&self) -> Option<String> {
        let l = self.st.flap.latched.as_ref()?;
        let until = self
            .flap_release_at()
            .map_or_else(|| "the window is quiet".to_string(), |t| t.to_string());
        Some(format!(
            "more than {} automatic on/off transitions within {}; holding {} on since {} until {} \
             (later if the rules keep flapping), or release it now with \
             `continuity-agent override release-flap`",
            self.spec.flap_max,
            fmt_dur(self.spec.flap_window),
            l.profile,
            l.since,
            until
        ))
    }
}

/// A rule due to fire on probe failures (`failing` since) that no
/// self-check verdict has vouched for: firing now could forward every call
/// because the agent itself is cut off. It waits in pending for the verdict
/// the daemon is asked for (blind: it will freeze; ok: it fires), at most
/// `wait`. Returns whether it must keep waiting; when the wait is over
/// without a verdict it fires on the probe evidence, with an audit line.
fn wait_for_verdict(
    rs: &mut RuleState,
    spec: &RuleSpec,
    failing: Timestamp,
    wait: Duration,
    now: Timestamp,
    out: &mut Vec<Command>,
) -> bool {
    if rs.awaiting_self_check.is_none() {
        out.push(Command::SelfCheckNeeded {
            rule: spec.name.clone(),
        });
    }
    if let Some((from, to)) = rs.hold_pending(now) {
        out.push(Command::RuleTransition {
            rule: spec.name.clone(),
            from,
            to,
        });
    }
    let held = rs.awaiting_self_check.unwrap_or(now);
    if now < held.add(wait) {
        return true;
    }
    out.push(Command::Audit {
        kind: AuditKind::Blind,
        message: format!(
            "{}: no self-check verdict within {} of the probe failures (failing since {failing}); firing on the probe evidence",
            spec.name,
            fmt_dur(wait)
        ),
    });
    false
}

/// `2m`, `10s`, `1h 30m`: for reasons and audit lines.
pub(super) fn fmt_dur(d: std::time::Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        humantime::format_duration(d).to_string()
    }
}
