//! Drift: Talkdesk changed by something other than the agent (usually a
//! person in the Talkdesk UI), found by the [`Actuator`]'s periodic read-back.
//!
//! - **Reconcile.** Every `reconcile_interval` the actuator reads Talkdesk
//!   again and tells the engine what it has. A mismatch after convergence is
//!   drift; a mismatch found after a desired change is not: the engine's
//!   (persisted) decision is simply applied, as an attempt.
//! - **While the agent was away** (a restart, a takeover by another replica):
//!   before its first write the actuator compares what Talkdesk has with what
//!   the agent last saw it have (the engine snapshot's `actual`, persisted
//!   whenever it changes). A difference that the desired state does not
//!   explain is drift, handled exactly as above ([`Actuator::reconcile_since`]).
//!   Why the last *seen* state and not the last desired one: the snapshot is
//!   written before the actuator acts, so after a crash between the two the
//!   desired state differs from Talkdesk without anyone having touched it;
//!   that is an unfinished write, which the actuator finishes.
//! - **`on_drift = "correct"`** re-applies the desired state, loudly: a WARN
//!   line, an audit record and `continuity_drift_total{action="corrected"}`.
//! - **`on_drift = "respect"`** adopts the change: an on/off change becomes an
//!   `Event::OverrideSet` for the engine (actor `drift`, ending after
//!   `adopt_ttl`), and the actuator keeps its hands off until the desired
//!   state changes to something else or the adoption expires
//!   (`talkdesk.drift_override_ttl`). The override's reason starts with
//!   "changed outside the agent"; it shows in status and the audit log, and
//!   counts in `continuity_drift_total{action="adopted"}`. A settings-only
//!   edit while the fallback is on, as decided, is kept without an override,
//!   so on/off still follows the rules' decisions.
//! - Either way the change is announced to the notification targets
//!   (`notify`, event `drift`) with what was done about it.
//!
//! Which state to adopt (`adoption`), whether an adopted state changed again
//! (`Adopted::changed`) and whether Talkdesk changed while the agent was away
//! (`changed_while_away`) are pure, with table tests; the rest is the
//! read-back's bookkeeping on the actuator.

use std::collections::BTreeMap;

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::actuator::Actuator;
use super::apply::BLIND_AFTER_ATTEMPTS;
use super::error::TalkdeskError;
use super::plan;
use crate::backoff::backoff_delay;
use crate::config::schema::OnDrift;
use crate::domain::{Actual, Desired, Profile, Timestamp};
use crate::engine::event::{Event, Override};
use crate::notify::{DriftAction, Notice, What};
use crate::telemetry::{AuditKind, AuditRecord};

/// What the agent knew when its previous actuator stopped (a restart, a
/// takeover), for the next one's comparison with what Talkdesk has now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastSeen {
    /// What Talkdesk had when the agent last saw it (the snapshot's `actual`).
    pub actual: Actual,
    /// What the agent decided since that look (the engine's `unseen`: the
    /// decision in force then and each later one). A write of any of them
    /// may have landed after the last look (a `kill -9` between the write
    /// and the snapshot recording it; a superseded plan finishing its write
    /// in flight): Talkdesk then has what the agent itself asked for, which
    /// is not drift.
    pub decided: Vec<Desired>,
}

/// A drift adopted under `on_drift = "respect"`.
pub(super) struct Adopted {
    /// What we told the engine to want.
    pub desired: Desired,
    /// What Talkdesk had when we adopted it.
    pub observed: Actual,
    pub until: Timestamp,
}

impl Adopted {
    /// Talkdesk changed again since we adopted what it had. Settings do not
    /// matter while the fallback is off.
    fn changed(&self, now: &Actual) -> bool {
        match self.desired {
            Desired::Inactive => now.enabled != self.observed.enabled,
            Desired::Active { .. } => *now != self.observed,
        }
    }
}

/// What the engine is asked to want after an on/off change made outside the
/// agent.
#[derive(Debug, PartialEq, Eq)]
struct Adoption {
    /// The override's desired state; `None` when no profile is configured
    /// to name in it.
    desired: Option<Desired>,
    /// The profile whose settings Talkdesk has, if any.
    matching: Option<String>,
}

/// The adoption for what Talkdesk has (`known`); `None` when its on/off
/// state is unknown, so there is nothing to adopt.
fn adoption(
    known: &Actual,
    desired: &Desired,
    profiles: &BTreeMap<String, Profile>,
) -> Option<Adoption> {
    let matching = known
        .settings
        .as_ref()
        .and_then(|s| profiles.values().find(|p| &p.settings == s))
        .map(|p| p.name.clone());
    let adopted = match known.enabled? {
        false => Some(Desired::Inactive),
        // The override needs a profile name. Prefer the profile whose
        // settings Talkdesk has; else keep the current one. Either way the
        // actuator does not rewrite the settings while the drift is adopted.
        true => matching
            .clone()
            .or_else(|| desired.profile().map(str::to_string))
            .or_else(|| profiles.keys().next().cloned())
            .map(|profile| Desired::Active { profile }),
    };
    Some(Adoption {
        desired: adopted,
        matching,
    })
}

/// Talkdesk changed since the agent last saw it (`last`): its on/off state,
/// or its settings while on (settings do not matter while off). Unknown parts
/// on either side are not evidence of a change.
fn changed_while_away(last: &Actual, now: &Actual) -> bool {
    match (last.enabled, now.enabled) {
        (Some(a), Some(b)) if a != b => true,
        (Some(true), Some(true)) => matches!(
            (&last.settings, &now.settings),
            (Some(a), Some(b)) if a != b
        ),
        _ => false,
    }
}

impl Actuator {
    /// Drift while no agent was watching: called once before the first
    /// write after a restart (and by a replica taking over), with what
    /// Talkdesk had when the agent last saw it. A difference that the
    /// desired state does not already explain is handled by `on_drift`
    /// exactly as the periodic read-back does. Returns whether to attempt
    /// convergence now.
    ///
    /// A read that keeps failing ([`BLIND_AFTER_ATTEMPTS`] tries) gives up
    /// the comparison: unreadable is not a reason to stay down.
    pub(crate) async fn reconcile_since(
        &mut self,
        last: &LastSeen,
        desired: &Desired,
        events: &mpsc::Sender<Event>,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut tries = 0;
        let fresh = loop {
            if shutdown.is_cancelled() {
                return false;
            }
            match self.client.read_actual().await {
                Ok(a) => break a,
                Err(error) => {
                    tries += 1;
                    if !self.call_failed(&error) {
                        tracing::warn!(%error, attempt = tries, "Cannot read Talkdesk to compare it with what the agent last saw.");
                    }
                    if !error.is_retryable() || tries >= BLIND_AFTER_ATTEMPTS {
                        return true;
                    }
                    let delay = backoff_delay(
                        self.opts.backoff_min,
                        self.opts.backoff_max,
                        tries,
                        error.retry_after(),
                    );
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
            }
        };
        self.known = fresh;
        self.observed(events).await;
        let now = Timestamp::now();
        if plan::satisfies(&self.known, desired, &self.profiles, self.form.as_ref()) {
            self.mark_converged(now);
            self.publish();
            return false;
        }
        if !changed_while_away(&last.actual, &self.known) {
            // Talkdesk is as the agent left it: an unfinished write, not drift.
            return true;
        }
        let own =
            |d: &&Desired| plan::satisfies(&self.known, d, &self.profiles, self.form.as_ref());
        if let Some(own) = last.decided.iter().find(own) {
            // Talkdesk has what the agent had decided: its own write landed
            // after it last looked. Finish the current decision, not drift.
            tracing::info!(message = "Talkdesk has what the agent decided before it stopped (its write landed after the last look); not drift: applying the current decision.", decided = %own, desired = %desired, now = %describe(&self.known));
            return true;
        }
        tracing::warn!(desired = %desired, last_seen = %describe(&last.actual), now = %describe(&self.known), "Talkdesk was changed while the agent was not watching.");
        self.drifted(desired, now, events).await
    }

    /// Periodic read-back. Returns whether to attempt convergence now.
    pub(super) async fn reconcile(
        &mut self,
        desired: &Desired,
        events: &mpsc::Sender<Event>,
        shutdown: &CancellationToken,
    ) -> bool {
        if shutdown.is_cancelled() {
            return false;
        }
        let fresh = match self.client.read_actual().await {
            Ok(a) => a,
            Err(error) => return self.read_back_failed(&error),
        };
        self.reads_unavailable = false;
        self.known = fresh;
        self.observed(events).await;
        let now = Timestamp::now();
        let satisfied = plan::satisfies(&self.known, desired, &self.profiles, self.form.as_ref());

        if self.adopted.is_some() {
            return self.while_adopted(desired, satisfied, now, events).await;
        }
        if satisfied {
            if !self.status.converged {
                tracing::info!(desired = %desired, "Reconcile: Talkdesk matches the desired state.");
            }
            self.mark_converged(now);
            self.publish();
            return false;
        }
        if self.status.converged {
            return self.drifted(desired, now, events).await;
        }
        // Never converged: blocked waits for a change; dry-run, fenced and
        // failing states try again on every tick.
        !self.status.blocked
    }

    /// The new desired state is the override we sent for an adopted drift:
    /// Talkdesk already has it, nothing to write.
    pub(super) fn takes_up_adoption(&self, new: &Desired) -> bool {
        self.adopted.as_ref().is_some_and(|a| &a.desired == new)
    }

    /// The read-back failed. Returns whether to attempt convergence now.
    fn read_back_failed(&mut self, error: &TalkdeskError) -> bool {
        let repeat = self.call_failed(error);
        if (error.is_retryable() && !repeat) || !self.reads_unavailable {
            tracing::warn!(%error, "Reconcile: cannot read Talkdesk.");
        }
        if !error.is_retryable() {
            self.reads_unavailable = true;
        }
        // Not converged yet and not blocked: this tick is a retry too.
        !self.status.converged && !self.status.blocked
    }

    /// Read-back while a drift is adopted: apply the desired state again once
    /// the adoption expires, adopt again if Talkdesk changed again.
    async fn while_adopted(
        &mut self,
        desired: &Desired,
        satisfied: bool,
        now: Timestamp,
        events: &mpsc::Sender<Event>,
    ) -> bool {
        let Some(a) = &self.adopted else {
            return false;
        };
        if now >= a.until {
            tracing::info!("Adopted drift expired; applying the desired state again.");
            self.adopted = None;
            self.status.adopted = false;
            if !satisfied {
                self.status.converged = false;
                self.status.since = Some(now);
            }
            self.publish();
            return !satisfied;
        }
        if a.changed(&self.known) {
            // Changed again outside the agent: adopt the new state too.
            self.adopt(desired, events).await;
        }
        false
    }

    /// Talkdesk no longer has the state it had converged to.
    /// Returns whether to attempt convergence now.
    async fn drifted(
        &mut self,
        desired: &Desired,
        now: Timestamp,
        events: &mpsc::Sender<Event>,
    ) -> bool {
        match self.opts.on_drift {
            OnDrift::Correct => {
                self.metrics
                    .drift_total
                    .with_label_values(&["corrected"])
                    .inc();
                tracing::warn!(desired = %desired, actual = %self.known, "Drift: Talkdesk was changed outside the agent; correcting it (talkdesk.on_drift = \"correct\").");
                self.audit.record(
                    AuditRecord::new(
                        now,
                        AuditKind::Drift,
                        format!(
                            "changed outside the agent: Talkdesk has {}, not {desired}; correcting (on_drift = correct)",
                            describe(&self.known)
                        ),
                    )
                    .with_data(json!({"desired": desired, "actual": self.known})),
                );
                self.announce(DriftAction::Corrected, desired, None, now);
                self.status.converged = false;
                self.status.since = Some(now);
                self.publish();
                true
            }
            OnDrift::Respect => {
                self.adopt(desired, events).await;
                false
            }
        }
    }

    /// `on_drift = "respect"`: tell the engine to want what Talkdesk has now.
    async fn adopt(&mut self, desired: &Desired, events: &mpsc::Sender<Event>) {
        let now = Timestamp::now();
        self.metrics
            .drift_total
            .with_label_values(&["adopted"])
            .inc();
        // What the fallback is meant to be now: the adopted state while a
        // drift is adopted, else the engine's decision.
        let effective = self.adopted.as_ref().map_or(desired, |a| &a.desired);
        if effective.is_active() && self.known.enabled == Some(true) {
            self.keep_settings_edit(desired, now);
        } else {
            self.adopt_as_override(desired, now, events).await;
        }
    }

    /// Only the settings changed (someone edited the forwarding or the
    /// message in the UI while the fallback is on, as decided). Keep their
    /// edit, but do not turn it into an on/off override: when the outage
    /// ends, the fallback must still go off on the rules' decision, not stay
    /// pinned on for the adoption TTL.
    fn keep_settings_edit(&mut self, desired: &Desired, now: Timestamp) {
        let until = now.add(self.opts.adopt_ttl);
        tracing::warn!(desired = %desired, until = %until, "Drift: settings changed outside the agent; keeping them (on/off still follows the decisions).");
        self.audit.record(
            AuditRecord::new(
                now,
                AuditKind::Drift,
                "changed outside the agent: Talkdesk's fallback settings; kept because talkdesk.on_drift = \"respect\" (on/off still follows the decisions)",
            )
            .with_data(json!({ "desired": desired, "actual": self.known, "until": until })),
        );
        self.announce(DriftAction::SettingsKept, desired, Some(until), now);
        self.hold(desired.clone(), until, now);
    }

    /// The fallback was switched on or off outside the agent: ask the engine
    /// to want that too, as an override that ends after `adopt_ttl`.
    async fn adopt_as_override(
        &mut self,
        desired: &Desired,
        now: Timestamp,
        events: &mpsc::Sender<Event>,
    ) {
        let Some(Adoption {
            desired: adopted,
            matching,
        }) = adoption(&self.known, desired, &self.profiles)
        else {
            return;
        };
        let settings_note = match (&matching, self.known.enabled) {
            (_, Some(false)) => String::new(),
            (Some(p), _) => format!(", settings of profile {p}"),
            (None, _) => ", settings that match no profile (left as they are)".to_string(),
        };
        let reason = format!(
            "changed outside the agent (Talkdesk UI, break-glass or another tool): fallback {}{settings_note}; adopted because talkdesk.on_drift = \"respect\"",
            if self.known.enabled == Some(true) {
                "enabled"
            } else {
                "disabled"
            },
        );
        let until = now.add(self.opts.adopt_ttl);
        let adopted_label = adopted
            .as_ref()
            .map_or_else(|| "Talkdesk's own state".to_string(), Desired::to_string);
        tracing::warn!(desired = %desired, adopted = %adopted_label, until = %until, "Drift: Talkdesk was changed outside the agent; adopting the change as an override.");
        self.audit.record(
            AuditRecord::new(now, AuditKind::Drift, reason.clone()).with_data(json!({
                "desired": desired,
                "adopted": adopted,
                "actual": self.known,
                "until": until,
            })),
        );
        match &adopted {
            Some(d) => {
                self.emit(
                    events,
                    Event::OverrideSet(Override {
                        desired: d.clone(),
                        reason,
                        actor: "drift".to_string(),
                        set_at: now,
                        until,
                    }),
                )
                .await;
            }
            None => tracing::warn!("Drift adopted without an override: no profile is configured."),
        }
        let adopted = adopted.unwrap_or_else(|| desired.clone());
        self.announce(DriftAction::Adopted, &adopted, Some(until), now);
        self.hold(adopted, until, now);
    }

    /// Tells the notification targets what `on_drift` did; `desired` is what
    /// the fallback is meant to be now.
    fn announce(
        &self,
        action: DriftAction,
        desired: &Desired,
        until: Option<Timestamp>,
        now: Timestamp,
    ) {
        if let Some(notices) = &self.notices {
            notices.send(Notice {
                at: now,
                desired: desired.clone(),
                what: What::Drift {
                    action,
                    talkdesk: self.known.clone(),
                    until,
                },
            });
        }
    }

    /// Keep hands off what Talkdesk has now until `until`, as `desired`.
    fn hold(&mut self, desired: Desired, until: Timestamp, now: Timestamp) {
        self.adopted = Some(Adopted {
            desired,
            observed: self.known.clone(),
            until,
        });
        self.status.adopted = true;
        self.mark_converged(now);
        self.publish();
    }
}

/// What Talkdesk has, for logs: "on", "off" or "unknown" (settings are in
/// the audit record's data).
fn describe(a: &Actual) -> &'static str {
    match a.enabled {
        Some(true) => "fallback on",
        Some(false) => "fallback off",
        None => "fallback unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::FallbackSettings;

    fn settings(default: &str) -> FallbackSettings {
        FallbackSettings {
            default: Some(default.to_string()),
            ..FallbackSettings::default()
        }
    }

    fn profiles() -> BTreeMap<String, Profile> {
        [("backup", "+14155558888"), ("other", "+442071234567")]
            .into_iter()
            .map(|(name, number)| {
                let p = Profile {
                    name: name.to_string(),
                    settings: settings(number),
                };
                (name.to_string(), p)
            })
            .collect()
    }

    fn active(profile: &str) -> Desired {
        Desired::Active {
            profile: profile.to_string(),
        }
    }

    fn actual(enabled: Option<bool>, default: Option<&str>) -> Actual {
        Actual {
            enabled,
            settings: default.map(settings),
        }
    }

    /// (name, what Talkdesk has, the engine's decision, profiles, adoption)
    type Case<'a> = (
        &'a str,
        Actual,
        Desired,
        &'a BTreeMap<String, Profile>,
        Option<Adoption>,
    );

    #[test]
    fn adoption_names_what_talkdesk_has() {
        let stranger = Some("+33100000000");
        let (some, none) = (profiles(), BTreeMap::new());
        #[rustfmt::skip]
        let table: Vec<Case> = vec![
            ("switched off: adopt off",
                actual(Some(false), Some("+14155558888")), active("backup"), &some,
                Some(Adoption { desired: Some(Desired::Inactive), matching: Some("backup".into()) })),
            ("switched on with a profile's settings: that profile",
                actual(Some(true), Some("+442071234567")), Desired::Inactive, &some,
                Some(Adoption { desired: Some(active("other")), matching: Some("other".into()) })),
            ("switched on with unknown settings: keep the current profile",
                actual(Some(true), stranger), active("other"), &some,
                Some(Adoption { desired: Some(active("other")), matching: None })),
            ("switched on with unknown settings while off: the first profile",
                actual(Some(true), stranger), Desired::Inactive, &some,
                Some(Adoption { desired: Some(active("backup")), matching: None })),
            ("switched on, no profile to name: no override",
                actual(Some(true), stranger), Desired::Inactive, &none,
                Some(Adoption { desired: None, matching: None })),
            ("on/off unknown: nothing to adopt",
                actual(None, Some("+14155558888")), active("backup"), &some, None),
        ];
        for (name, known, desired, profiles, want) in table {
            assert_eq!(adoption(&known, &desired, profiles), want, "{name}");
        }
    }

    #[test]
    fn a_change_while_away_is_on_off_or_settings_while_on() {
        #[rustfmt::skip]
        let table = [
            ("switched on", actual(Some(false), Some("+1")), actual(Some(true), Some("+1")), true),
            ("switched off", actual(Some(true), Some("+1")), actual(Some(false), Some("+1")), true),
            ("settings edited while on", actual(Some(true), Some("+1")), actual(Some(true), Some("+2")), true),
            ("settings edited while off", actual(Some(false), Some("+1")), actual(Some(false), Some("+2")), false),
            ("unchanged", actual(Some(true), Some("+1")), actual(Some(true), Some("+1")), false),
            ("last unknown", actual(None, None), actual(Some(true), Some("+1")), false),
            ("settings unknown then", actual(Some(true), None), actual(Some(true), Some("+1")), false),
        ];
        for (name, last, now, want) in table {
            assert_eq!(changed_while_away(&last, &now), want, "{name}");
        }
    }

    #[test]
    fn an_adopted_state_changes_when_what_matters_changes() {
        let adopted = |desired: Desired, observed: Actual| Adopted {
            desired,
            observed,
            until: Timestamp::from_millis(0),
        };
        let off = adopted(Desired::Inactive, actual(Some(false), Some("+1")));
        assert!(
            !off.changed(&actual(Some(false), Some("+2"))),
            "settings do not matter while off"
        );
        assert!(off.changed(&actual(Some(true), Some("+1"))));
        let on = adopted(active("backup"), actual(Some(true), Some("+1")));
        assert!(!on.changed(&actual(Some(true), Some("+1"))));
        assert!(
            on.changed(&actual(Some(true), Some("+2"))),
            "an edit while on is a change"
        );
        assert!(on.changed(&actual(Some(false), Some("+1"))));
    }
}
