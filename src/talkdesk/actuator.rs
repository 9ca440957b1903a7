//! The actuator: converges what Talkdesk has (actual) to what the engine
//! wants (desired). It is the only writer of Talkdesk in the daemon.
//!
//! Rules it keeps, and why:
//! - **Set, never toggle; write only what differs.** Before acting on a new
//!   desired state it reads Talkdesk (a remembered value may be stale: someone
//!   may have used the UI), then writes only the parts that differ. Every write
//!   is an idempotent set, so repeating one after a timeout is harmless.
//! - **Settings before activation.** Activating with old settings would send
//!   callers to the wrong number, so activation only follows a successful
//!   settings write (or settings already equal). Deactivation only flips the
//!   switch and leaves the settings alone.
//! - **Never give up while desired and actual differ.** Retryable failures
//!   (5xx, 429, timeouts, dropped connections) are retried forever with
//!   exponential backoff and jitter, honouring `Retry-After`, and reported
//!   loudly (logs, `continuity_actuation_failures_total`,
//!   `continuity_divergence_seconds`, audit records, [`ActuatorStatus`]).
//!   Non-retryable failures (400, 403, unknown profile) would fail the same way
//!   again: they are reported with Talkdesk's field errors and retried only
//!   when the desired state changes (a config change restarts the actuator).
//! - **Unreadable is not a reason to stay down.** If a read fails for good
//!   (the GET paths are not in Talkdesk's public reference and may need their
//!   own scopes), or keeps failing for [`BLIND_AFTER_ATTEMPTS`] attempts, the
//!   actuator writes the desired state without knowing the old one: each
//!   write is a set, so this is safe, and the fallback is what matters.
//! - **Drift.** Every `reconcile_interval` it reads Talkdesk again. If the
//!   state had converged and no longer matches, something else changed it
//!   (the UI): `on_drift = "correct"` re-applies the desired state;
//!   `"respect"` adopts the change by sending the engine an
//!   `Event::OverrideSet` (actor `drift`, ending after `adopt_ttl`) and keeps
//!   its hands off until the desired state changes to something else.
//!   A mismatch found before the first convergence (at start-up, or after a
//!   desired change) is not drift: the engine's (persisted) decision is applied.
//! - **Talkdesk's own form counts.** If the reply to a settings PUT shows
//!   Talkdesk stored them in another form (normalized numbers or language),
//!   that form is remembered as equivalent, so a later read-back is not
//!   mistaken for drift and rewritten every reconcile.
//! - **`dry_run`** reads as usual, and logs and audits each write it would
//!   make instead of making it.
//! - **Fencing.** An optional `may_write` check runs before every write; a
//!   replica that is not the leader reads but never writes.
//! - **Shutdown** never cancels a call in flight: the actuator finishes it and
//!   returns before starting the next one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::client::{Client, activation_body, settings_body};
use super::error::{FieldError, Op, TalkdeskError};
use crate::config::schema::OnDrift;
use crate::domain::{Actual, Desired, FallbackSettings, Profile, Timestamp};
use crate::engine::event::{Event, Override};
use crate::telemetry::{AuditKind, AuditRecord, AuditSink, Metrics};

/// Leadership check run before every write; `false` means "do not write".
pub type MayWrite = Arc<dyn Fn() -> bool + Send + Sync>;

/// After this many failed attempts in a row, unknown parts of the actual
/// state no longer block writing (see the module docs).
pub const BLIND_AFTER_ATTEMPTS: u32 = 3;
/// From this many failed attempts on, each failure is logged at error level.
pub const LOUD_AFTER_ATTEMPTS: u32 = 5;
/// A `Retry-After` longer than this is capped: the fallback cannot wait an
/// hour because a proxy said so.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(300);
/// How long an event may wait for room in the engine's channel.
const EMIT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct ActuatorOptions {
    /// Log and audit writes without making them.
    pub dry_run: bool,
    pub on_drift: OnDrift,
    /// How often Talkdesk is read back to detect drift.
    pub reconcile_interval: Duration,
    /// First retry delay; doubles per failed attempt up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long a change adopted with `on_drift = "respect"` lasts (the
    /// override's `until`); the API's `override_max_ttl` is a good value.
    pub adopt_ttl: Duration,
}

impl ActuatorOptions {
    /// Options from the `[talkdesk]` section, `agent.dry_run`, and how long an
    /// adopted drift lasts (the API's `override_max_ttl` is a good value).
    pub fn from_config(
        cfg: &crate::config::schema::TalkdeskConfig,
        dry_run: bool,
        adopt_ttl: Duration,
    ) -> ActuatorOptions {
        ActuatorOptions {
            dry_run,
            on_drift: cfg.on_drift,
            reconcile_interval: cfg.reconcile_interval.get(),
            adopt_ttl,
            ..ActuatorOptions::default()
        }
    }
}

impl Default for ActuatorOptions {
    fn default() -> Self {
        ActuatorOptions {
            dry_run: false,
            on_drift: OnDrift::Correct,
            reconcile_interval: Duration::from_secs(60),
            // One second is gentle on a struggling API; 30 s bounds how late
            // the fallback can be once Talkdesk recovers, at two calls a minute.
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            adopt_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

/// The last failure, as `/v1/status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LastError {
    pub at: Timestamp,
    pub message: String,
    /// `server_error`, `rate_limited`, `timeout`, `connection`, `forbidden`, ...
    pub kind: String,
    pub status: Option<u16>,
    pub retryable: bool,
    /// Talkdesk's field errors (validation failures).
    pub fields: Vec<FieldError>,
}

/// What the actuator is doing, readable at any time through [`ActuatorHandle`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ActuatorStatus {
    /// The desired state being applied (`None` before `run` starts).
    pub desired: Option<Desired>,
    /// What Talkdesk was last seen (or made) to have.
    pub actual: Actual,
    /// Actual matches desired (or an adopted drift).
    pub converged: bool,
    /// Failed attempts since desired and actual started to differ.
    pub attempts: u32,
    /// When desired and actual started to differ.
    pub since: Option<Timestamp>,
    pub last_error: Option<LastError>,
    /// A non-retryable error stopped retries until the desired state changes.
    pub blocked: bool,
    /// The last write was skipped because this replica may not write.
    pub fenced: bool,
    pub dry_run: bool,
    /// `on_drift = "respect"` adopted a change made outside the agent.
    pub adopted: bool,
    /// Last time Talkdesk was seen (or made) to match the desired state.
    pub last_success_at: Option<Timestamp>,
}

/// Cloneable read access to the actuator's status.
#[derive(Clone)]
pub struct ActuatorHandle {
    rx: watch::Receiver<ActuatorStatus>,
}

impl ActuatorHandle {
    pub fn status(&self) -> ActuatorStatus {
        self.rx.borrow().clone()
    }

    /// A receiver that changes with every status update (`wait_for` in tests).
    pub fn subscribe(&self) -> watch::Receiver<ActuatorStatus> {
        self.rx.clone()
    }
}

/// A drift adopted under `on_drift = "respect"`.
struct Adopted {
    /// What we told the engine to want.
    desired: Desired,
    /// What Talkdesk had when we adopted it.
    observed: Actual,
    until: Timestamp,
}

enum Step {
    Converged,
    DryRun,
    Fenced,
    Shutdown,
}

enum Next {
    Idle,
    Retry(Duration),
    Shutdown,
}

enum Write {
    Settings(FallbackSettings),
    Activation(bool),
}

pub struct Actuator {
    client: Client,
    opts: ActuatorOptions,
    profiles: BTreeMap<String, Profile>,
    metrics: Metrics,
    audit: Arc<dyn AuditSink>,
    may_write: Option<MayWrite>,
    status_tx: watch::Sender<ActuatorStatus>,
    status: ActuatorStatus,
    /// Our belief about Talkdesk; `None` parts are unknown and read before use.
    known: Actual,
    adopted: Option<Adopted>,
    /// Avoids repeating the "cannot read" warning every reconcile.
    reads_unavailable: bool,
    /// (settings we sent, settings Talkdesk said it stored) when they differ.
    echo: Option<(FallbackSettings, FallbackSettings)>,
}

impl Actuator {
    pub fn new(
        client: Client,
        opts: ActuatorOptions,
        profiles: BTreeMap<String, Profile>,
        metrics: Metrics,
        audit: Arc<dyn AuditSink>,
    ) -> Actuator {
        let status = ActuatorStatus {
            dry_run: opts.dry_run,
            ..ActuatorStatus::default()
        };
        let (status_tx, _) = watch::channel(status.clone());
        Actuator {
            client,
            opts,
            profiles,
            metrics,
            audit,
            may_write: None,
            status_tx,
            status,
            known: Actual::default(),
            adopted: None,
            reads_unavailable: false,
            echo: None,
        }
    }

    /// Install the leadership check run before every write (default: always allowed).
    pub fn with_may_write(mut self, may_write: MayWrite) -> Actuator {
        self.may_write = Some(may_write);
        self
    }

    pub fn handle(&self) -> ActuatorHandle {
        ActuatorHandle {
            rx: self.status_tx.subscribe(),
        }
    }

    /// Converge until `shutdown` is cancelled or the desired-state sender is dropped.
    pub async fn run(
        mut self,
        mut desired_rx: watch::Receiver<Desired>,
        events: mpsc::Sender<Event>,
        shutdown: CancellationToken,
    ) {
        let mut desired = desired_rx.borrow_and_update().clone();
        tracing::info!(
            desired = %desired,
            dry_run = self.opts.dry_run,
            on_drift = ?self.opts.on_drift,
            reconcile_interval = ?self.opts.reconcile_interval,
            "Actuator started."
        );
        self.status.desired = Some(desired.clone());
        self.status.since = Some(Timestamp::now());
        self.publish();

        let period = self.opts.reconcile_interval.max(Duration::from_millis(10));
        let mut reconcile = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        reconcile.set_missed_tick_behavior(MissedTickBehavior::Delay);

        let mut pending = true;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if pending {
                match self.attempt(&desired, &events, &shutdown).await {
                    Next::Shutdown => break,
                    Next::Idle => {}
                    Next::Retry(delay) => {
                        tokio::select! {
                            biased;
                            _ = shutdown.cancelled() => break,
                            changed = desired_rx.changed() => {
                                if changed.is_err() {
                                    break;
                                }
                                let new = desired_rx.borrow_and_update().clone();
                                // We were retrying anyway: retry now unless the
                                // change is the engine taking up an adopted drift.
                                pending = self.on_desired_change(new, &mut desired) || !self.status.converged;
                            }
                            _ = tokio::time::sleep(delay) => pending = true,
                        }
                        continue;
                    }
                }
            }
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                changed = desired_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let new = desired_rx.borrow_and_update().clone();
                    pending = self.on_desired_change(new, &mut desired);
                }
                _ = reconcile.tick() => {
                    pending = self.reconcile(&desired, &events, &shutdown).await;
                }
            }
        }
        tracing::info!("Actuator stopped.");
    }

    /// A new desired state arrived. Returns whether to act on it now.
    fn on_desired_change(&mut self, new: Desired, desired: &mut Desired) -> bool {
        if let Some(a) = &self.adopted
            && a.desired == new
        {
            // The engine took up the override we sent for a drift: Talkdesk
            // already has it, nothing to write.
            *desired = new;
            self.status.desired = Some(desired.clone());
            self.publish();
            return false;
        }
        if new == *desired && (self.status.blocked || self.status.converged) {
            return false;
        }
        tracing::info!(from = %desired, to = %new, "Desired state changed.");
        *desired = new;
        self.adopted = None;
        self.status.adopted = false;
        self.status.blocked = false;
        self.status.attempts = 0;
        self.status.desired = Some(desired.clone());
        if self.status.converged || self.status.since.is_none() {
            self.status.since = Some(Timestamp::now());
        }
        self.status.converged = false;
        // Read Talkdesk again before acting: what we remember may be stale.
        self.known = Actual::default();
        self.publish();
        true
    }

    /// One convergence attempt, with its bookkeeping. Decides what comes next.
    async fn attempt(
        &mut self,
        desired: &Desired,
        events: &mpsc::Sender<Event>,
        shutdown: &CancellationToken,
    ) -> Next {
        let result = self.converge(desired, events, shutdown).await;
        let next = match result {
            Ok(Step::Converged) => {
                let now = Timestamp::now();
                if !self.status.converged {
                    tracing::info!(desired = %desired, failed_attempts = self.status.attempts, "Talkdesk converged to the desired state.");
                    self.audit.record(
                        AuditRecord::new(
                            now,
                            AuditKind::Actuation,
                            format!("Talkdesk now matches {desired}"),
                        )
                        .with_data(json!({
                            "desired": desired,
                            "failed_attempts": self.status.attempts,
                            "actual": self.known,
                        })),
                    );
                }
                self.mark_converged(now);
                Next::Idle
            }
            Ok(Step::DryRun) => {
                self.status.converged = false;
                Next::Idle
            }
            Ok(Step::Fenced) => {
                tracing::info!(desired = %desired, "Not the leader: Talkdesk write skipped.");
                self.status.fenced = true;
                Next::Idle
            }
            Ok(Step::Shutdown) => Next::Shutdown,
            Err(error) => self.failed(desired, error),
        };
        self.publish();
        next
    }

    fn mark_converged(&mut self, now: Timestamp) {
        self.status.converged = true;
        self.status.attempts = 0;
        self.status.blocked = false;
        self.status.fenced = false;
        self.status.since = None;
        self.status.last_success_at = Some(now);
    }

    fn failed(&mut self, desired: &Desired, error: TalkdeskError) -> Next {
        let now = Timestamp::now();
        self.status.attempts += 1;
        self.status.converged = false;
        let attempts = self.status.attempts;
        let kind = error.kind();
        self.metrics
            .actuation_failures_total
            .with_label_values(&[kind])
            .inc();
        let fields: Vec<String> = error
            .fields()
            .iter()
            .map(|f| format!("{}: {}", f.name, f.description))
            .collect();
        self.status.last_error = Some(LastError {
            at: now,
            message: error.to_string(),
            kind: kind.to_string(),
            status: error.status(),
            retryable: error.is_retryable(),
            fields: error.fields().to_vec(),
        });
        let since = self.status.since.unwrap_or(now);
        let diverged_for = now.since(since);
        let record = AuditRecord::new(
            now,
            AuditKind::Actuation,
            format!("applying {desired} failed (attempt {attempts}): {error}"),
        )
        .with_data(json!({
            "desired": desired,
            "attempt": attempts,
            "kind": kind,
            "status": error.status(),
            "retryable": error.is_retryable(),
            "fields": error.fields(),
            "diverged_for_s": diverged_for.as_secs(),
        }));
        self.audit.record(record);
        if error.is_retryable() {
            let delay = backoff_delay(
                self.opts.backoff_min,
                self.opts.backoff_max,
                attempts,
                error.retry_after(),
            );
            if attempts < LOUD_AFTER_ATTEMPTS {
                tracing::warn!(desired = %desired, attempt = attempts, retry_in = ?delay, %error, "Talkdesk actuation failed; retrying.");
            } else {
                tracing::error!(desired = %desired, attempt = attempts, diverged_for = ?diverged_for, retry_in = ?delay, %error, "Talkdesk actuation keeps failing; still retrying.");
            }
            Next::Retry(delay)
        } else {
            tracing::error!(desired = %desired, %error, fields = ?fields, "Talkdesk rejected the actuation; not retrying until the desired state or the config changes.");
            self.status.blocked = true;
            Next::Idle
        }
    }

    /// Read what is unknown, then write what differs, settings first.
    async fn converge(
        &mut self,
        desired: &Desired,
        events: &mpsc::Sender<Event>,
        shutdown: &CancellationToken,
    ) -> Result<Step, TalkdeskError> {
        let target = match desired {
            Desired::Active { profile } => Some(
                self.profiles
                    .get(profile)
                    .ok_or_else(|| TalkdeskError::UnknownProfile(profile.clone()))?
                    .settings
                    .clone(),
            ),
            Desired::Inactive => None,
        };
        let blind_ok = self.status.attempts >= BLIND_AFTER_ATTEMPTS;

        let mut read = false;
        if self.known.enabled.is_none() {
            if shutdown.is_cancelled() {
                return Ok(Step::Shutdown);
            }
            match self.client.get_activation().await {
                Ok(e) => {
                    self.known.enabled = Some(e);
                    read = true;
                }
                Err(e) => self.unreadable(e, blind_ok)?,
            }
        }
        if target.is_some() && self.known.settings.is_none() {
            if shutdown.is_cancelled() {
                return Ok(Step::Shutdown);
            }
            match self.client.get_settings().await {
                Ok(s) => {
                    self.known.settings = Some(s);
                    read = true;
                }
                Err(e) => self.unreadable(e, blind_ok)?,
            }
        }
        if read {
            self.observed(events).await;
        }

        let mut plan = Vec::new();
        match &target {
            Some(settings) => {
                if !self.settings_match(settings) {
                    plan.push(Write::Settings(settings.clone()));
                }
                if self.known.enabled != Some(true) {
                    plan.push(Write::Activation(true));
                }
            }
            None => {
                if self.known.enabled != Some(false) {
                    plan.push(Write::Activation(false));
                }
            }
        }
        if plan.is_empty() {
            return Ok(Step::Converged);
        }
        // Explain the writes before making them: what Talkdesk has, what
        // will change, and why (the desired state).
        let steps: Vec<String> = plan
            .iter()
            .map(|w| match w {
                Write::Settings(_) => "write settings".to_string(),
                Write::Activation(e) => format!("set enabled={e}"),
            })
            .collect();
        tracing::info!(desired = %desired, enabled = ?self.known.enabled, settings_known = self.known.settings.is_some(), plan = ?steps, dry_run = self.opts.dry_run, "Applying the desired state to Talkdesk.");
        self.audit.record(
            AuditRecord::new(
                Timestamp::now(),
                AuditKind::Actuation,
                format!("applying {desired}: {}", steps.join(", then ")),
            )
            .with_data(json!({
                "desired": desired,
                "plan": steps,
                "before": self.known,
                "dry_run": self.opts.dry_run,
            })),
        );
        if self.opts.dry_run {
            for w in &plan {
                match w {
                    Write::Settings(s) => {
                        self.client.audit_dry_run(Op::PutSettings, settings_body(s))
                    }
                    Write::Activation(e) => self
                        .client
                        .audit_dry_run(Op::PutActivation, activation_body(*e)),
                }
            }
            return Ok(Step::DryRun);
        }
        for w in plan {
            if shutdown.is_cancelled() {
                return Ok(Step::Shutdown);
            }
            if let Some(may_write) = &self.may_write
                && !may_write()
            {
                return Ok(Step::Fenced);
            }
            match w {
                Write::Settings(s) => match self.client.put_settings(&s).await {
                    Ok(stored) => match stored {
                        Some(stored) if stored != s => {
                            tracing::warn!(sent = ?s, stored = ?stored, "Talkdesk stored the settings in another form; treating it as equivalent.");
                            self.echo = Some((s, stored.clone()));
                            self.known.settings = Some(stored);
                        }
                        _ => self.known.settings = Some(s),
                    },
                    Err(e) => {
                        // A failed PUT may still have been applied: unknown now.
                        self.known.settings = None;
                        return Err(e);
                    }
                },
                Write::Activation(enabled) => match self.client.set_activation(enabled).await {
                    Ok(()) => self.known.enabled = Some(enabled),
                    Err(e) => {
                        self.known.enabled = None;
                        return Err(e);
                    }
                },
            }
            self.observed(events).await;
        }
        Ok(Step::Converged)
    }

    /// A read failed. Transient failures are retried first; a permanent one
    /// (or a transient one that has lasted) lets us write without knowing.
    fn unreadable(&mut self, error: TalkdeskError, blind_ok: bool) -> Result<(), TalkdeskError> {
        if error.is_retryable() && !blind_ok {
            return Err(error);
        }
        if !self.reads_unavailable {
            tracing::warn!(%error, "Cannot read Talkdesk's current state; writing the desired state without comparing (each write is an idempotent set).");
        }
        self.reads_unavailable = true;
        Ok(())
    }

    /// Periodic read-back. Returns whether to attempt convergence now.
    async fn reconcile(
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
            Err(error) => {
                if error.is_retryable() || !self.reads_unavailable {
                    tracing::warn!(%error, "Reconcile: cannot read Talkdesk.");
                }
                if !error.is_retryable() {
                    self.reads_unavailable = true;
                }
                // Not converged yet and not blocked: this tick is a retry too.
                return !self.status.converged && !self.status.blocked;
            }
        };
        self.reads_unavailable = false;
        self.known = fresh;
        self.observed(events).await;
        let now = Timestamp::now();
        let satisfied = self.satisfies(desired);

        if let Some(a) = &self.adopted {
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
            return false;
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
            let detail = json!({"desired": desired, "actual": self.known});
            match self.opts.on_drift {
                OnDrift::Correct => {
                    tracing::warn!(desired = %desired, actual = ?self.known, "Drift: Talkdesk changed outside the agent; correcting.");
                    self.audit.record(
                        AuditRecord::new(now, AuditKind::Drift, format!("Talkdesk no longer matches {desired}; correcting (on_drift = correct)"))
                            .with_data(detail),
                    );
                    self.status.converged = false;
                    self.status.since = Some(now);
                    self.publish();
                    return true;
                }
                OnDrift::Respect => {
                    self.adopt(desired, events).await;
                    return false;
                }
            }
        }
        // Never converged: blocked waits for a change; dry-run, fenced and
        // failing states try again on every tick.
        !self.status.blocked
    }

    /// `on_drift = "respect"`: tell the engine to want what Talkdesk has now.
    async fn adopt(&mut self, desired: &Desired, events: &mpsc::Sender<Event>) {
        let now = Timestamp::now();
        // What the fallback is meant to be now: the adopted state while a
        // drift is adopted, else the engine's decision.
        let effective = self.adopted.as_ref().map_or(desired, |a| &a.desired);
        if effective.is_active() && self.known.enabled == Some(true) {
            // Only the settings changed (someone edited the forwarding or the
            // message in the UI while the fallback is on, as decided). Keep
            // their edit, but do not turn it into an on/off override: when the
            // outage ends, the fallback must still go off on the rules'
            // decision, not stay pinned on for the adoption TTL.
            let until = now.add(self.opts.adopt_ttl);
            tracing::warn!(desired = %desired, until = %until, "Drift: settings changed outside the agent; keeping them (on/off still follows the decisions).");
            self.audit.record(
                AuditRecord::new(
                    now,
                    AuditKind::Drift,
                    "Talkdesk's fallback settings were changed outside the agent; kept because talkdesk.on_drift = \"respect\" (on/off still follows the decisions)",
                )
                .with_data(json!({ "desired": desired, "actual": self.known, "until": until })),
            );
            self.adopted = Some(Adopted {
                desired: desired.clone(),
                observed: self.known.clone(),
                until,
            });
            self.status.adopted = true;
            self.mark_converged(now);
            self.publish();
            return;
        }
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
        self.adopted = Some(Adopted {
            desired: adopted.unwrap_or_else(|| desired.clone()),
            observed: self.known.clone(),
            until,
        });
        self.status.adopted = true;
        self.mark_converged(now);
        self.publish();
    }

    fn satisfies(&self, desired: &Desired) -> bool {
        match desired {
            Desired::Inactive => self.known.enabled == Some(false),
            Desired::Active { profile } => {
                self.known.enabled == Some(true)
                    && self
                        .profiles
                        .get(profile)
                        .is_some_and(|p| self.settings_match(&p.settings))
            }
        }
    }

    /// Talkdesk has `target`, as sent or in the form it stored it.
    fn settings_match(&self, target: &FallbackSettings) -> bool {
        match &self.known.settings {
            None => false,
            Some(actual) => {
                actual == target
                    || self
                        .echo
                        .as_ref()
                        .is_some_and(|(sent, stored)| sent == target && stored == actual)
            }
        }
    }

    /// Tell the engine what Talkdesk has.
    async fn observed(&mut self, events: &mpsc::Sender<Event>) {
        self.status.actual = self.known.clone();
        self.publish();
        self.emit(events, Event::ActualObserved(self.known.clone()))
            .await;
    }

    async fn emit(&self, events: &mpsc::Sender<Event>, event: Event) {
        match tokio::time::timeout(EMIT_TIMEOUT, events.send(event)).await {
            Ok(Ok(())) => {}
            // The engine is gone: the daemon is shutting down.
            Ok(Err(_)) => tracing::debug!("Engine channel closed; event dropped."),
            Err(_) => tracing::warn!(
                "Engine channel full for 5s; event dropped (the next reconcile repeats it)."
            ),
        }
    }

    /// Push the status to handles and the gauges that mirror it.
    fn publish(&self) {
        if let Some(d) = &self.status.desired {
            self.metrics.fallback_desired.set(i64::from(d.is_active()));
        }
        // From the last observation, not `known`: forgetting before a fresh
        // read must not flicker the gauge to "unknown".
        self.metrics
            .fallback_actual
            .set(match self.status.actual.enabled {
                Some(true) => 1,
                Some(false) => 0,
                None => -1,
            });
        let diverged = match (self.status.converged, self.status.since) {
            (false, Some(since)) => Timestamp::now().since(since).as_secs_f64(),
            _ => 0.0,
        };
        self.metrics.divergence_seconds.set(diverged);
        self.status_tx.send_replace(self.status.clone());
    }
}

/// Delay before retry number `attempt` (1-based): exponential from `min`,
/// capped at `max`, with "equal jitter" (half fixed, half random) so replicas
/// and restarts spread out but never retry instantly; at least the server's
/// `Retry-After` (capped at [`RETRY_AFTER_CAP`]).
pub fn backoff_delay(
    min: Duration,
    max: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = min
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(max.max(min));
    let half = exp / 2;
    let jitter_ms = rand::rng().random_range(0..=half.as_millis().min(u64::MAX as u128) as u64);
    let delay = half + Duration::from_millis(jitter_ms);
    match retry_after {
        Some(ra) => delay.max(ra.min(RETRY_AFTER_CAP)),
        None => delay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_honours_retry_after() {
        let (min, max) = (Duration::from_millis(100), Duration::from_secs(1));
        for attempt in 1..30 {
            let d = backoff_delay(min, max, attempt, None);
            let exp = (min * 2u32.pow((attempt - 1).min(20))).min(max);
            assert!(
                d >= exp / 2 && d <= exp,
                "attempt {attempt}: {d:?} vs {exp:?}"
            );
        }
        let d = backoff_delay(min, max, 1, Some(Duration::from_secs(3)));
        assert_eq!(d, Duration::from_secs(3));
        let d = backoff_delay(min, max, 1, Some(Duration::from_secs(3600)));
        assert_eq!(d, RETRY_AFTER_CAP);
    }
}
