//! Applying one event to the engine's inputs, and expiring what is due.
//!
//! `Engine::apply` dispatches each event to its own `on_*` handler. Handlers
//! only change inputs (probe states, alerts, override, windows,
//! drills, blind flag) and mark the rules whose conditions must be
//! re-evaluated; `Engine::settle` does the rest. Invalid input (unknown probe,
//! unknown profile, an override that already ended) is rejected with an
//! `Audit` command and changes nothing: nothing here can panic on input.

use std::collections::BTreeMap;

use crate::domain::{AlertKey, Desired, ProbeHealth, ProbeOutcome, Timestamp};
use crate::telemetry::AuditKind;

use super::eval::ActiveAlert;
use super::event::{Command, Event, Override};
use super::machine::{Engine, Trigger};
use super::state::{ActiveDrill, Blind};

fn audit(out: &mut Vec<Command>, kind: AuditKind, message: String) {
    out.push(Command::Audit { kind, message });
}

impl Engine {
    /// Dispatches one event to its handler.
    pub(super) fn apply(
        &mut self,
        event: Event,
        now: Timestamp,
        out: &mut Vec<Command>,
        trig: &mut Trigger,
    ) {
        match event {
            Event::ProbeResult { probe, outcome } => {
                self.on_probe_result(probe, &outcome, now, out)
            }
            Event::AlertFiring {
                key,
                labels,
                summary,
            } => self.on_alert_firing(key, labels, summary, now, out),
            Event::AlertResolved { key } => self.on_alert_resolved(&key, out),
            Event::OverrideSet(o) => self.on_override_set(o, now, out, trig),
            Event::OverrideCleared { actor, reason } => {
                self.on_override_cleared(actor, reason, out, trig)
            }
            Event::MaintenanceStarted { name, until } => {
                self.on_maintenance_started(name, until, now, out)
            }
            Event::MaintenanceEnded { name } => self.on_maintenance_ended(&name, out),
            Event::DrillStarted {
                name,
                profile,
                until,
            } => self.on_drill_started(name, profile, until, now, out),
            Event::DrillEnded { name } => self.on_drill_ended(&name, out),
            Event::SelfCheck { ok, detail } => self.on_self_check(ok, detail, now, out),
            Event::ActualObserved(a) => {
                self.st.actual = Some(a);
                self.st.unseen = vec![self.st.desired.clone()];
            }
            Event::FlapRelease { actor } => self.on_flap_release(&actor, out),
            Event::Tick => {}
        }
    }

    fn on_probe_result(
        &mut self,
        probe: String,
        outcome: &ProbeOutcome,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        let Some(&i) = self.probe_index.get(&probe) else {
            audit(
                out,
                AuditKind::Probe,
                format!("result for unknown probe {probe:?} ignored"),
            );
            return;
        };
        let (Some(spec), Some(ps)) = (self.spec.probes.get(i), self.st.probes.get_mut(i)) else {
            return;
        };
        let u = ps.apply(spec, outcome, now);
        if outcome.inconclusive {
            // Neither confirms a restored state nor changes anything.
            return;
        }
        // A restored state is confirmed by a fresh result that agrees
        // with it, or replaced by a transition; a lone success while
        // "down" confirms nothing (it takes `rise` of them).
        let agrees = matches!(
            (ps.health, outcome.success),
            (ProbeHealth::Up, true) | (ProbeHealth::Down, false)
        );
        if self.stale[i] && (agrees || u.transition.is_some()) {
            self.stale[i] = false;
            self.stale_left = self.stale_left.saturating_sub(1);
            self.mark_probe_dirty(i);
        }
        if let Some((from, to)) = u.transition {
            out.push(Command::ProbeTransition {
                probe: probe.clone(),
                from,
                to,
                detail: outcome.detail.clone(),
            });
            self.mark_probe_dirty(i);
        }
        if let Some(fast) = u.cadence {
            out.push(Command::ProbeCadence { probe, fast });
        }
    }

    fn on_alert_firing(
        &mut self,
        key: AlertKey,
        labels: BTreeMap<String, String>,
        summary: Option<String>,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        let expires = now.add(self.spec.alert_ttl(&key.source));
        let full = self.st.alerts.len() >= self.spec.alerts_max_active;
        let existing = match self.st.alerts.get_mut(&key) {
            // A duplicate or refresh: extend the expiry, nothing else.
            Some(a) if a.labels == labels && a.summary == summary => {
                a.last_seen = now;
                a.expires = expires;
                return;
            }
            None if full => {
                self.drop_alert(key, out);
                return;
            }
            existing => existing,
        };
        let first_seen = existing.map_or(now, |a| a.first_seen);
        let verb = if first_seen == now {
            "firing"
        } else {
            "updated"
        };
        audit(
            out,
            AuditKind::Alert,
            format!("alert {key} {verb}: {}", fmt_labels(&labels)),
        );
        self.st.alerts.insert(
            key,
            ActiveAlert {
                labels,
                summary,
                first_seen,
                last_seen: now,
                expires,
            },
        );
        self.mark_alerts_dirty();
    }

    fn on_alert_resolved(&mut self, key: &AlertKey, out: &mut Vec<Command>) {
        if self.st.alerts.remove(key).is_some() {
            audit(out, AuditKind::Alert, format!("alert {key} resolved"));
            self.mark_alerts_dirty();
        }
        if self.st.alerts.len() < self.spec.alerts_max_active {
            self.alerts_overflowing = false;
        }
    }

    /// A new alert while `alerts.max_active` are active: not taken (so no
    /// flood makes each step costlier), counted, and audited once per
    /// episode (an audit row per dropped alert would be a flood of its own).
    fn drop_alert(&mut self, key: AlertKey, out: &mut Vec<Command>) {
        if !self.alerts_overflowing {
            self.alerts_overflowing = true;
            audit(
                out,
                AuditKind::Alert,
                format!(
                    "alert {key} dropped: alerts.max_active ({}) alerts are active; new alerts are dropped and counted (continuity_alerts_dropped_total) until some resolve or expire",
                    self.spec.alerts_max_active
                ),
            );
        }
        out.push(Command::AlertDropped { key });
    }

    fn on_override_set(
        &mut self,
        o: Override,
        now: Timestamp,
        out: &mut Vec<Command>,
        trig: &mut Trigger,
    ) {
        if o.until <= now {
            audit(
                out,
                AuditKind::Override,
                format!("override by {} rejected: it ended at {}", o.actor, o.until),
            );
            return;
        }
        if let Desired::Active { profile } = &o.desired
            && !self.spec.profiles.contains(profile)
        {
            audit(
                out,
                AuditKind::Override,
                format!(
                    "override by {} rejected: unknown profile {profile:?}",
                    o.actor
                ),
            );
            return;
        }
        audit(
            out,
            AuditKind::Override,
            format!(
                "override set by {}: {} until {} ({})",
                o.actor, o.desired, o.until, o.reason
            ),
        );
        self.st.override_ = Some(o);
        *trig = Trigger::OverrideSet;
    }

    fn on_override_cleared(
        &mut self,
        actor: String,
        reason: Option<String>,
        out: &mut Vec<Command>,
        trig: &mut Trigger,
    ) {
        if let Some(o) = self.st.override_.take() {
            audit(
                out,
                AuditKind::Override,
                format!("override {} cleared by {actor}", o.desired),
            );
            *trig = Trigger::OverrideCleared { actor, reason };
        }
    }

    fn on_maintenance_started(
        &mut self,
        name: String,
        until: Timestamp,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        if until <= now {
            audit(
                out,
                AuditKind::Maintenance,
                format!("window {name} ignored: it ended at {until}"),
            );
            return;
        }
        if self.st.maintenance.insert(name.clone(), until) != Some(until) {
            audit(
                out,
                AuditKind::Maintenance,
                format!("window {name} active until {until}: probe-driven activation suppressed"),
            );
        }
    }

    fn on_maintenance_ended(&mut self, name: &str, out: &mut Vec<Command>) {
        if self.st.maintenance.remove(name).is_some() {
            audit(out, AuditKind::Maintenance, format!("window {name} ended"));
        }
    }

    fn on_drill_started(
        &mut self,
        name: String,
        profile: String,
        until: Timestamp,
        now: Timestamp,
        out: &mut Vec<Command>,
    ) {
        if until <= now || !self.spec.profiles.contains(&profile) {
            audit(
                out,
                AuditKind::Drill,
                format!(
                    "drill {name} rejected: unknown profile {profile:?} or already ended ({until})"
                ),
            );
            return;
        }
        let started = self.st.drills.get(&name).map_or(now, |d| d.started);
        let d = ActiveDrill {
            profile,
            started,
            until,
        };
        if self.st.drills.get(&name) != Some(&d) {
            audit(
                out,
                AuditKind::Drill,
                format!("drill {name} active with {} until {until}", d.profile),
            );
            self.st.drills.insert(name, d);
        }
    }

    fn on_drill_ended(&mut self, name: &str, out: &mut Vec<Command>) {
        if self.st.drills.remove(name).is_some() {
            audit(out, AuditKind::Drill, format!("drill {name} ended"));
        }
    }

    fn on_flap_release(&mut self, actor: &str, out: &mut Vec<Command>) {
        if let Some(l) = self.st.flap.latched.take() {
            // Forget the history too, or the next transition re-latches at once.
            self.st.flap.history.clear();
            audit(
                out,
                AuditKind::Flap,
                format!("flap latch ({}) released by {actor}", l.profile),
            );
        }
    }

    fn on_self_check(&mut self, ok: bool, detail: String, now: Timestamp, out: &mut Vec<Command>) {
        if !self.spec.self_check {
            // No canaries configured: the guard is off by configuration.
            return;
        }
        self.st.self_check_at = Some(now);
        match (&mut self.st.blind, ok) {
            (None, false) => {
                audit(
                    out,
                    AuditKind::Blind,
                    format!("self-check failing ({detail}): probe-driven rules frozen"),
                );
                self.st.blind = Some(Blind { since: now, detail });
            }
            (Some(b), false) => b.detail = detail,
            (Some(b), true) => {
                audit(
                    out,
                    AuditKind::Blind,
                    format!("self-check ok again ({detail}); blind since {}", b.since),
                );
                self.st.blind = None;
            }
            (None, true) => {}
        }
    }

    /// Removes everything whose time is up at `now`.
    pub(super) fn expire(&mut self, now: Timestamp, out: &mut Vec<Command>, trig: &mut Trigger) {
        if let Some(o) = self.st.override_.take_if(|o| o.until <= now) {
            audit(
                out,
                AuditKind::Override,
                format!(
                    "override {} by {} expired at {}",
                    o.desired, o.actor, o.until
                ),
            );
            *trig = Trigger::OverrideExpired(o);
        }
        let before = self.st.alerts.len();
        let mut expired = Vec::new();
        self.st.alerts.retain(|k, a| {
            let keep = a.expires > now;
            if !keep {
                expired.push(k.clone());
            }
            keep
        });
        if self.st.alerts.len() < self.spec.alerts_max_active {
            self.alerts_overflowing = false;
        }
        if self.st.alerts.len() != before {
            for k in expired {
                audit(
                    out,
                    AuditKind::Alert,
                    format!(
                        "alert {k} expired: not refreshed within {}",
                        super::machine::fmt_dur(self.spec.alert_ttl(&k.source))
                    ),
                );
            }
            self.mark_alerts_dirty();
        }
        let mut ended = Vec::new();
        self.st.maintenance.retain(|name, until| {
            let keep = *until > now;
            if !keep {
                ended.push(name.clone());
            }
            keep
        });
        for name in ended {
            audit(out, AuditKind::Maintenance, format!("window {name} ended"));
        }
        let mut ended = Vec::new();
        self.st.drills.retain(|name, d| {
            let keep = d.until > now;
            if !keep {
                ended.push(name.clone());
            }
            keep
        });
        for name in ended {
            audit(out, AuditKind::Drill, format!("drill {name} ended"));
        }
    }
}

/// Labels as an audit line shows them: at most [`AUDIT_LABELS`] of them,
/// each value cut at [`AUDIT_LABEL_CHARS`] characters. A sender decides
/// what labels are (a 1 MiB delivery can carry a label of 1 MiB), and an
/// audit row is kept for `store.audit_retention`: it names the alert, it
/// does not copy it.
pub(super) fn fmt_labels(labels: &BTreeMap<String, String>) -> String {
    const AUDIT_LABELS: usize = 8;
    const AUDIT_LABEL_CHARS: usize = 64;
    let cut = |s: &str| -> String {
        if s.chars().count() > AUDIT_LABEL_CHARS {
            let mut t: String = s.chars().take(AUDIT_LABEL_CHARS).collect();
            t.push('…');
            t
        } else {
            s.to_string()
        }
    };
    let mut v: Vec<String> = labels
        .iter()
        .take(AUDIT_LABELS)
        .map(|(k, v)| format!("{}={:?}", cut(k), cut(v)))
        .collect();
    if labels.len() > AUDIT_LABELS {
        v.push(format!("… {} more", labels.len() - AUDIT_LABELS));
    }
    format!("{{{}}}", v.join(", "))
}
