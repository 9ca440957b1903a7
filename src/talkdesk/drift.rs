//! Drift: Talkdesk changed by something other than the agent (usually a
//! person in the Talkdesk UI), found by the [`Actuator`]'s periodic read-back.
//!
//! - **Reconcile.** Every `reconcile_interval` the actuator reads Talkdesk
//!   again and tells the engine what it has. A mismatch after convergence is
//!   drift; a mismatch found before the first convergence (at start-up, or
//!   after a desired change) is not: the engine's (persisted) decision is
//!   simply applied, as an attempt.
//! - **`on_drift = "correct"`** re-applies the desired state.
//! - **`on_drift = "respect"`** adopts the change: an on/off change becomes an
//!   `Event::OverrideSet` for the engine (actor `drift`, ending after
//!   `adopt_ttl`), and the actuator keeps its hands off until the desired
//!   state changes to something else or the adoption expires. A settings-only
//!   edit while the fallback is on, as decided, is kept without an override,
//!   so on/off still follows the rules' decisions.

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::actuator::Actuator;
use super::error::TalkdeskError;
use super::plan;
use crate::config::schema::OnDrift;
use crate::domain::{Actual, Desired, Timestamp};
use crate::engine::event::{Event, Override};
use crate::telemetry::AuditRecord;

/// A drift adopted under `on_drift = "respect"`.
pub(super) struct Adopted {
    /// What we told the engine to want.
    pub desired: Desired,
    /// What Talkdesk had when we adopted it.
    pub observed: Actual,
    pub until: Timestamp,
}

impl Actuator {
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
        if error.is_retryable() || !self.reads_unavailable {
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
        // Settings do not matter while the fallback is off.
        let changed = match a.desired {
            Desired::Inactive => self.known.enabled != a.observed.enabled,
            Desired::Active { .. } => self.known != a.observed,
        };
        if changed {
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
                tracing::warn!(desired = %desired, actual = ?self.known, "Drift: Talkdesk changed outside the agent; correcting.");
                self.audit.record(
                    AuditRecord::new(
                        now,
                        "drift",
                        format!(
                            "Talkdesk no longer matches {desired}; correcting (on_drift = correct)"
                        ),
                    )
                    .with_data(json!({"desired": desired, "actual": self.known})),
                );
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
                "drift",
                "Talkdesk's fallback settings were changed outside the agent; kept because talkdesk.on_drift = \"respect\" (on/off still follows the decisions)",
            )
            .with_data(json!({ "desired": desired, "actual": self.known, "until": until })),
        );
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
        let matching = self
            .known
            .settings
            .as_ref()
            .and_then(|s| self.profiles.values().find(|p| &p.settings == s))
            .map(|p| p.name.clone());
        let adopted = match self.known.enabled {
            Some(false) => Some(Desired::Inactive),
            // The override needs a profile name. Prefer the profile whose
            // settings Talkdesk has; else keep the current one. Either way the
            // actuator does not rewrite the settings while the drift is adopted.
            Some(true) => matching
                .clone()
                .or_else(|| desired.profile().map(str::to_string))
                .or_else(|| self.profiles.keys().next().cloned())
                .map(|profile| Desired::Active { profile }),
            None => return,
        };
        let settings_note = match (&matching, self.known.enabled) {
            (_, Some(false)) => String::new(),
            (Some(p), _) => format!(", settings of profile {p}"),
            (None, _) => ", settings that match no profile (left as they are)".to_string(),
        };
        let reason = format!(
            "Talkdesk was changed outside the agent (e.g. in the UI): fallback {}{settings_note}; adopted because talkdesk.on_drift = \"respect\"",
            if self.known.enabled == Some(true) {
                "enabled"
            } else {
                "disabled"
            },
        );
        let until = now.add(self.opts.adopt_ttl);
        let adopted_label = adopted.as_ref().map(Desired::to_string);
        tracing::warn!(desired = %desired, adopted = ?adopted_label, until = %until, "Drift: adopting the change made outside the agent.");
        self.audit.record(
            AuditRecord::new(now, "drift", reason.clone()).with_data(json!({
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
        self.hold(adopted.unwrap_or_else(|| desired.clone()), until, now);
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
