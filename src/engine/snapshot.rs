//! Persisting and restoring engine state.
//!
//! The snapshot holds everything a decision depends on, including pending and
//! clearing timers (as Prometheus restores `for` state), so a restart is
//! invisible: `restore(spec, snapshot(), t)` behaves exactly like the engine
//! that was saved, given the same later events.
//!
//! It is keyed by name, not position, so it survives a config change:
//! - probes absent from the new spec are dropped; new probes start unknown;
//! - rule state is restored only onto a rule with the same `checksum`, so an
//!   edited rule starts inactive instead of inheriting stale timers; the one
//!   exception is an edited rule that was holding the fallback on (firing or
//!   clearing): it restarts in `clearing` from `now` under its new timers
//!   (firing again at once if its new condition holds), so tuning a rule
//!   mid-outage and restarting does not switch calls back;
//! - an override, drill or flap latch naming a profile that no longer exists
//!   is dropped (with an audit line).
//!
//! Restoring emits no `SetDesired` unless the restored state, advanced to
//! `now`, differs from the persisted desired state: time passing while the
//! agent was down (an expired override, a rule whose `clear_for` elapsed)
//! is the only thing that can change it, so a restart causes no extra on/off.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{Actual, AlertKey, Desired, ProbeHealth, Timestamp};
use crate::telemetry::AuditKind;

use super::eval::ActiveAlert;
use super::event::{Cause, Command, Override, Reason};
use super::machine::{Engine, Trigger};
use super::probe::ProbeState;
use super::rule::{RulePhase, RuleState};
use super::spec::EngineSpec;
use super::state::{ActiveDrill, Blind, Flap, Layer};

/// Format version; bump on incompatible changes.
pub const SNAPSHOT_VERSION: u32 = 1;

/// Every field but `version` and `desired` has a default, so a snapshot
/// written by an older agent (fewer fields) still restores.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub desired: Desired,
    #[serde(default)]
    pub cause: Option<Cause>,
    #[serde(default)]
    pub reasons: Vec<Reason>,
    #[serde(default)]
    pub layer: Layer,
    #[serde(default)]
    pub desired_since: Option<Timestamp>,
    #[serde(default)]
    pub active_since: Option<Timestamp>,
    /// Left out of the text when empty: [`SnapshotView`] writes the probes
    /// itself, beside the other fields of a snapshot that has none.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub probes: BTreeMap<String, ProbeState>,
    #[serde(default)]
    pub rules: BTreeMap<String, RuleSnapshot>,
    #[serde(default)]
    pub alerts: Vec<AlertSnapshot>,
    #[serde(default, rename = "override")]
    pub override_: Option<Override>,
    #[serde(default)]
    pub maintenance: BTreeMap<String, Timestamp>,
    #[serde(default)]
    pub drills: BTreeMap<String, ActiveDrill>,
    #[serde(default)]
    pub blind: Option<Blind>,
    #[serde(default)]
    pub self_check_at: Option<Timestamp>,
    #[serde(default)]
    pub flap: Flap,
    #[serde(default)]
    pub actual: Option<Actual>,
    /// Decisions since `actual` was observed (`State::unseen`); absent in
    /// older snapshots, which restore it as `[desired]`.
    #[serde(default)]
    pub unseen: Vec<Desired>,
    /// Time of the engine's last step before the snapshot; a restore later
    /// than this treats restored probe states as unconfirmed.
    #[serde(default)]
    pub taken_at: Option<Timestamp>,
}

/// A [`Snapshot`] that borrows the probes' state from the engine
/// ([`Engine::snapshot_view`]); it serializes to the same document.
#[derive(Serialize)]
pub struct SnapshotView<'a> {
    /// Everything but the probes (its `probes` is empty, so not written).
    #[serde(flatten)]
    rest: Snapshot,
    probes: ProbesView<'a>,
}

/// The probes of an engine as the snapshot's `probes` map (id -> state).
struct ProbesView<'a>(&'a Engine);

impl Serialize for ProbesView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        serializer.collect_map(e.spec.probes.iter().map(|p| &p.id).zip(&e.st.probes))
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RuleSnapshot {
    pub checksum: String,
    #[serde(flatten)]
    pub state: RuleState,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertSnapshot {
    pub key: AlertKey,
    #[serde(flatten)]
    pub alert: ActiveAlert,
}

impl Engine {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            probes: self
                .spec
                .probes
                .iter()
                .zip(&self.st.probes)
                .map(|(p, s)| (p.id.clone(), s.clone()))
                .collect(),
            ..self.snapshot_view().rest
        }
    }

    /// What [`snapshot`](Self::snapshot) holds, ready to serialize to the
    /// same document without copying the state of every probe: the probes
    /// are serialized straight from the engine. At 10,000 probes that copy
    /// was most of a snapshot's transient memory (BENCHMARKS.md, "SIP
    /// OPTIONS"); the persister writes a snapshot every few seconds.
    pub fn snapshot_view(&self) -> SnapshotView<'_> {
        let st = &self.st;
        let rest = Snapshot {
            version: SNAPSHOT_VERSION,
            desired: st.desired.clone(),
            cause: st.cause,
            reasons: st.reasons.clone(),
            layer: st.layer,
            desired_since: st.desired_since,
            active_since: st.active_since,
            probes: BTreeMap::new(),
            rules: self
                .spec
                .rules
                .iter()
                .zip(&self.rules)
                .map(|(r, c)| {
                    (
                        r.name.clone(),
                        RuleSnapshot {
                            checksum: r.checksum.clone(),
                            state: c.state.clone(),
                        },
                    )
                })
                .collect(),
            alerts: st
                .alerts
                .iter()
                .map(|(k, a)| AlertSnapshot {
                    key: k.clone(),
                    alert: a.clone(),
                })
                .collect(),
            override_: st.override_.clone(),
            maintenance: st.maintenance.clone(),
            drills: st.drills.clone(),
            blind: st.blind.clone(),
            self_check_at: st.self_check_at,
            flap: st.flap.clone(),
            actual: st.actual.clone(),
            unseen: st.unseen.clone(),
            taken_at: self.last_step,
        };
        SnapshotView {
            rest,
            probes: ProbesView(self),
        }
    }

    /// Rebuilds an engine from a snapshot under `spec` (possibly a changed
    /// config) and advances it to `now`. Returns the cadence of every probe,
    /// an audit line, and whatever time passing made necessary. The daemon
    /// seeds the actuator with `desired()` afterwards.
    pub fn restore(spec: EngineSpec, snap: Snapshot, now: Timestamp) -> (Engine, Vec<Command>) {
        let mut e = Engine::new(spec);
        let mut notes = Vec::new();
        if snap.version > SNAPSHOT_VERSION {
            notes.push(format!(
                "snapshot version {} is newer than {SNAPSHOT_VERSION}: unknown fields ignored",
                snap.version
            ));
        }
        let mut snap = snap;
        let profiles = e.spec.profiles.clone();
        let known = |p: &str| profiles.iter().any(|k| k == p);

        // Time passed unobserved (a restart): restored probe states are
        // evidence from then, and must be confirmed before they can newly
        // activate a rule (see `Engine::awaiting_fresh`).
        let unobserved = snap.taken_at.is_none_or(|t| now > t);
        e.last_step = snap.taken_at;
        let mut dropped = snap.probes.len();
        for (i, p) in e.spec.probes.iter().enumerate() {
            if let Some(s) = snap.probes.remove(&p.id) {
                e.stale[i] = unobserved && s.health != ProbeHealth::Unknown;
                e.st.probes[i] = s;
                dropped -= 1;
            }
        }
        e.stale_left = e.stale.iter().filter(|&&s| s).count();
        if dropped > 0 {
            notes.push(format!("{dropped} probe(s) no longer configured dropped"));
        }
        for (i, r) in e.spec.rules.iter().enumerate() {
            match snap.rules.remove(&r.name) {
                Some(s) if s.checksum == r.checksum => e.rules[i].state = s.state,
                // Edited while holding the fallback on: dropping it would switch
                // calls back mid-outage just because a rule was tuned. Keep only
                // the fact that it holds: it restarts clearing under its new
                // timers (back to firing at once if its new condition is true).
                Some(s) if s.state.phase.holds() => {
                    e.rules[i].state = RuleState {
                        phase: RulePhase::Clearing,
                        since: Some(now),
                        fired_at: Some(now),
                        frozen: false,
                        awaiting_self_check: None,
                    };
                    notes.push(format!(
                        "rule {} changed while holding the fallback: it restarts clearing with its new timers",
                        r.name
                    ));
                }
                Some(_) => notes.push(format!("rule {} changed: its state starts over", r.name)),
                None => {}
            }
        }
        e.st.alerts = snap.alerts.into_iter().map(|a| (a.key, a.alert)).collect();
        e.st.override_ = snap.override_.filter(|o| match &o.desired {
            Desired::Active { profile } if !known(profile) => {
                notes.push(format!("override with unknown profile {profile:?} dropped"));
                false
            }
            _ => true,
        });
        let drills = e.spec.drills.clone();
        e.st.drills = snap
            .drills
            .into_iter()
            .filter(|(n, d)| {
                // A drill removed from the config must not keep moving calls.
                let ok = drills.contains_key(n) && known(&d.profile);
                if !ok {
                    notes.push(format!("drill {n} no longer configured: dropped"));
                }
                ok
            })
            .collect();
        e.st.maintenance = snap.maintenance;
        e.st.blind = snap.blind.filter(|_| e.spec.self_check);
        e.st.self_check_at = snap.self_check_at;
        e.st.flap = snap.flap;
        if let Some(l) = e.st.flap.latched.take_if(|l| !known(&l.profile)) {
            notes.push(format!(
                "flap latch on unknown profile {:?} dropped",
                l.profile
            ));
        }
        e.st.actual = snap.actual;
        e.st.unseen = if snap.unseen.is_empty() {
            vec![snap.desired.clone()]
        } else {
            snap.unseen
        };
        e.st.desired = snap.desired;
        e.st.cause = snap.cause;
        e.st.reasons = snap.reasons;
        e.st.layer = snap.layer;
        e.st.desired_since = snap.desired_since;
        e.st.active_since = snap.active_since;
        e.mark_all_dirty();

        let mut out = e.probe_cadences();
        let mut msg = format!("engine state restored: desired {}", e.st.desired);
        if !notes.is_empty() {
            msg.push_str("; ");
            msg.push_str(&notes.join("; "));
        }
        out.push(Command::Audit {
            kind: AuditKind::Restore,
            message: msg,
        });
        let mut trig = Trigger::Restore;
        e.expire(now, &mut out, &mut trig);
        e.settle(now, trig, &mut out);
        (e, out)
    }
}
