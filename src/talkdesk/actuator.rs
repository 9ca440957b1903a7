//! The actuator: converges what Talkdesk has (actual) to what the engine
//! wants (desired). It is the only writer of Talkdesk in the daemon.
//!
//! This file is the task that ties the parts together: it waits for a new
//! desired state, a retry or a reconcile tick, and keeps the status that
//! `/v1/status` and the gauges show. The parts, each in its own file:
//! - [`plan`](super::plan): what to write, given what Talkdesk has (pure):
//!   write only what differs, settings before activation, deactivation leaves
//!   settings alone, Talkdesk's stored form of our settings counts as equal.
//! - [`apply`](super::apply): one attempt over HTTP (read what is unknown,
//!   write the plan), `dry_run`, the `may_write` fence, and retrying forever
//!   with backoff and jitter honouring `Retry-After` while desired and actual
//!   differ; non-retryable failures wait for the desired state to change.
//! - [`drift`](super::drift): the periodic read-back, and `on_drift`
//!   (correct, or respect by adopting the change as an override).
//!
//! Before acting on a new desired state it forgets what it believed Talkdesk
//! has and reads again: someone may have used the UI since. **Shutdown**
//! never cancels a call in flight: the actuator finishes it and returns
//! before starting the next one.
//!
//! Each gauge has one writer: the actuator sets only what it alone knows
//! (`continuity_fallback_actual`, `continuity_divergence_seconds`); the
//! daemon mirrors the engine's state, `continuity_fallback_desired` included.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::apply::Next;
use super::client::Client;
use super::drift::{Adopted, LastSeen};
use super::error::{FieldError, TalkdeskError};
use super::plan::StoredForm;
use crate::config::schema::OnDrift;
use crate::domain::{Actual, Desired, Profile, Timestamp};
use crate::engine::event::Event;
use crate::notify::Notices;
use crate::telemetry::{AccountMetrics, AuditSink};

/// The check run right before every write. Async because it asks the store
/// (`cluster::Fence`).
pub trait WriteFence: Send + Sync {
    fn may_write(&self, op: super::Op) -> BoxFuture<'_, Verdict>;
}

/// A [`WriteFence`]'s answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Write now.
    Allowed,
    /// Another replica leads (or this one no longer knows that it does): do
    /// not write; the leader's actuator converges Talkdesk, and this one
    /// tries again when it leads again or at the next reconcile.
    NotLeader,
    /// This replica still leads, but the store did not confirm in time that
    /// its lease covers the request (a slow or failing store): do not write
    /// now, try again soon (with backoff) while it still leads.
    Unconfirmed,
}

impl Verdict {
    pub fn allowed(self) -> bool {
        self == Verdict::Allowed
    }
}

/// A shared [`WriteFence`].
pub type MayWrite = Arc<dyn WriteFence>;

/// A fence from a plain predicate (tests, and callers without a store):
/// `false` is [`Verdict::NotLeader`].
impl<F: Fn() -> bool + Send + Sync> WriteFence for F {
    fn may_write(&self, _op: super::Op) -> BoxFuture<'_, Verdict> {
        let verdict = if self() {
            Verdict::Allowed
        } else {
            Verdict::NotLeader
        };
        Box::pin(async move { verdict })
    }
}

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
    /// After a rejection (400, 403...), the next attempt comes after about
    /// this long (half of it to all of it, jittered).
    pub rejected_retry: Duration,
    /// How long a change adopted with `on_drift = "respect"` lasts (the
    /// override's `until`): `talkdesk.drift_override_ttl`.
    pub adopt_ttl: Duration,
}

impl ActuatorOptions {
    /// Options from the `[talkdesk]` section and `agent.dry_run`.
    pub fn from_config(
        cfg: &crate::config::schema::TalkdeskConfig,
        dry_run: bool,
    ) -> ActuatorOptions {
        ActuatorOptions {
            dry_run,
            on_drift: cfg.on_drift,
            reconcile_interval: cfg.reconcile_interval.get(),
            adopt_ttl: cfg.drift_override_ttl.get(),
            ..ActuatorOptions::default()
        }
    }
}

impl Default for ActuatorOptions {
    fn default() -> Self {
        ActuatorOptions {
            dry_run: false,
            on_drift: OnDrift::default(),
            reconcile_interval: Duration::from_secs(60),
            // One second is gentle on a struggling API; 30 s bounds how late
            // the fallback can be once Talkdesk recovers, at two calls a minute.
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            // Slow enough not to hammer an API that refuses us, fast enough
            // that a gateway's passing refusal costs minutes, not the outage.
            rejected_retry: Duration::from_secs(300),
            adopt_ttl: crate::config::schema::defaults::DRIFT_OVERRIDE_TTL.get(),
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
    /// The last write was skipped because this replica may not write (or
    /// the store could not confirm in time that it may; then it retries).
    pub fenced: bool,
    pub dry_run: bool,
    /// `on_drift = "respect"` adopted a change made outside the agent.
    pub adopted: bool,
    /// Last time Talkdesk was seen (or made) to match the desired state.
    pub last_success_at: Option<Timestamp>,
    /// Talkdesk's token endpoint rejects the client credentials (the error),
    /// until a call succeeds again; `/readyz` reports it.
    pub credentials_rejected: Option<String>,
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

/// A status channel that outlives any one actuator, and a handle on it.
pub fn status_channel() -> (watch::Sender<ActuatorStatus>, ActuatorHandle) {
    let (tx, rx) = watch::channel(ActuatorStatus::default());
    (tx, ActuatorHandle { rx })
}

/// Fields are shared with [`apply`](super::apply) and [`drift`](super::drift),
/// which implement the attempt and the read-back on this same state.
pub struct Actuator {
    pub(super) client: Client,
    pub(super) opts: ActuatorOptions,
    pub(super) profiles: BTreeMap<String, Profile>,
    pub(super) metrics: AccountMetrics,
    pub(super) audit: Arc<dyn AuditSink>,
    pub(super) may_write: Option<MayWrite>,
    /// Fence checks in a row the store could not confirm (the backoff's
    /// attempt number; see `apply.rs`).
    pub(super) unconfirmed: u32,
    status_tx: watch::Sender<ActuatorStatus>,
    pub(super) status: ActuatorStatus,
    /// Our belief about Talkdesk; `None` parts are unknown and read before use.
    pub(super) known: Actual,
    pub(super) adopted: Option<Adopted>,
    /// Avoids repeating the "cannot read" warning every reconcile.
    pub(super) reads_unavailable: bool,
    /// The form Talkdesk stored our last settings in, when it differs.
    pub(super) form: Option<StoredForm>,
    /// What Talkdesk had when the agent last saw it and what the agent had
    /// decided by then (the restored snapshot): checked once for drift that
    /// happened while it was away.
    pub(super) last_seen: Option<LastSeen>,
    /// New client, options and profiles from a configuration reload.
    reconfigure: Option<mpsc::Receiver<Reconfigure>>,
    /// The desired state as the engine says it now (set by `run`): a plan
    /// stops between writes once it no longer serves it.
    pub(super) latest: Option<watch::Receiver<Desired>>,
    /// Where drift is announced (`notify`); none by default.
    pub(super) notices: Option<Notices>,
}

/// What a configuration reload hands the running actuator. Its belief about
/// Talkdesk is kept: it then writes only what the new profiles change. The
/// daemon also builds each leadership term's actuator from the latest one.
#[derive(Clone)]
pub struct Reconfigure {
    pub client: Client,
    pub opts: ActuatorOptions,
    pub profiles: BTreeMap<String, Profile>,
}

impl Actuator {
    pub fn new(
        client: Client,
        opts: ActuatorOptions,
        profiles: BTreeMap<String, Profile>,
        metrics: AccountMetrics,
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
            unconfirmed: 0,
            status_tx,
            status,
            known: Actual::default(),
            adopted: None,
            reads_unavailable: false,
            form: None,
            last_seen: None,
            reconfigure: None,
            latest: None,
            notices: None,
        }
    }

    /// Accept configuration reloads on `rx` while running.
    pub fn with_reconfigure(mut self, rx: mpsc::Receiver<Reconfigure>) -> Actuator {
        self.reconfigure = Some(rx);
        self
    }

    /// What Talkdesk had when the agent last saw it (the engine snapshot's
    /// `actual`, restored after a restart or a takeover) and what the agent
    /// had decided by then. Before its first write the actuator compares it
    /// with what Talkdesk has now, and applies `on_drift` to a change made
    /// while no agent was watching (see [`drift`](super::drift)). Without it
    /// (a fresh start) there is nothing to compare with, and the daemon's
    /// start gate waits for evidence instead.
    pub fn with_last_seen(mut self, last_seen: Option<LastSeen>) -> Actuator {
        self.last_seen = last_seen;
        self
    }

    /// Announce drift (a change made outside the agent) to these targets.
    pub fn with_notices(mut self, notices: Notices) -> Actuator {
        self.notices = Some(notices);
        self
    }

    /// Install the leadership check run before every write (default: always allowed).
    pub fn with_may_write(mut self, may_write: MayWrite) -> Actuator {
        self.may_write = Some(may_write);
        self
    }

    /// Reports to `status` instead of its own channel, so the handles of
    /// `status` follow this actuator (the daemon makes one per leadership
    /// term, all reporting to one channel; see [`status_channel`]).
    pub fn reporting_to(mut self, status: watch::Sender<ActuatorStatus>) -> Actuator {
        status.send_replace(self.status.clone());
        self.status_tx = status;
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
        self.latest = Some(desired_rx.clone());
        tracing::info!(
            desired = %desired,
            dry_run = self.opts.dry_run,
            on_drift = self.opts.on_drift.as_str(),
            reconcile_interval = %crate::telemetry::logging::duration(self.opts.reconcile_interval),
            "Actuator started."
        );
        self.status.desired = Some(desired.clone());
        self.status.since = Some(Timestamp::now());
        self.publish();

        let period = self.opts.reconcile_interval.max(Duration::from_millis(10));
        let mut reconcile = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        reconcile.set_missed_tick_behavior(MissedTickBehavior::Delay);

        let mut pending = true;
        if let Some(last) = self.last_seen.take() {
            pending = self
                .reconcile_since(&last, &desired, &events, &shutdown)
                .await;
        }
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
                            Some(new) = next_reconfigure(&mut self.reconfigure) => {
                                pending = self.apply_reconfigure(new);
                            }
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
                Some(new) = next_reconfigure(&mut self.reconfigure) => {
                    pending = self.apply_reconfigure(new);
                }
            }
        }
        tracing::info!("Actuator stopped.");
    }

    /// A reload changed the client, options or profiles. Returns whether to
    /// act now: always, so a profile whose settings changed is written (the
    /// attempt writes only what differs, so an unchanged profile writes nothing).
    fn apply_reconfigure(&mut self, new: Reconfigure) -> bool {
        self.client = new.client;
        self.opts = new.opts;
        self.profiles = new.profiles;
        self.form = None;
        self.reads_unavailable = false;
        self.status.dry_run = self.opts.dry_run;
        self.publish();
        tracing::info!(
            message = "Actuator reconfigured.",
            dry_run = self.opts.dry_run
        );
        true
    }

    /// A new desired state arrived. Returns whether to act on it now.
    fn on_desired_change(&mut self, new: Desired, desired: &mut Desired) -> bool {
        if self.takes_up_adoption(&new) {
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

    /// Talkdesk matches the desired state (or an adopted drift) now.
    pub(super) fn mark_converged(&mut self, now: Timestamp) {
        self.status.converged = true;
        self.status.attempts = 0;
        self.status.blocked = false;
        self.status.fenced = false;
        self.status.since = None;
        self.status.last_success_at = Some(now);
    }

    /// A call failed. Tracks whether Talkdesk rejects our credentials, and
    /// says so once per change rather than once per retry. Returns whether
    /// the error is a rejection already reported (callers log it quietly).
    pub(super) fn call_failed(&mut self, error: &TalkdeskError) -> bool {
        if !error.rejects_credentials() {
            return false;
        }
        let known = self.status.credentials_rejected.is_some();
        if !known {
            tracing::error!(%error, "Talkdesk rejects the credentials; check talkdesk.client_id and talkdesk.client_secret (or client_secret_file). Still retrying.");
        }
        self.status.credentials_rejected = Some(error.to_string());
        known
    }

    /// Tell the engine what Talkdesk has (after a call that succeeded).
    pub(super) async fn observed(&mut self, events: &mpsc::Sender<Event>) {
        if self.status.credentials_rejected.take().is_some() {
            tracing::info!("Talkdesk accepts the credentials again.");
        }
        self.status.actual = self.known.clone();
        self.publish();
        self.emit(events, Event::ActualObserved(self.known.clone()))
            .await;
    }

    pub(super) async fn emit(&self, events: &mpsc::Sender<Event>, event: Event) {
        match tokio::time::timeout(EMIT_TIMEOUT, events.send(event)).await {
            Ok(Ok(())) => {}
            // The engine is gone: the daemon is shutting down.
            Ok(Err(_)) => tracing::debug!("Engine channel closed; event dropped."),
            Err(_) => tracing::warn!(
                "Engine channel full for 5s; event dropped (the next reconcile repeats it)."
            ),
        }
    }

    /// Push the status to handles, and to the gauges only the actuator knows
    /// (`continuity_fallback_desired` mirrors the engine: the daemon sets it).
    pub(super) fn publish(&self) {
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

/// The next reload, or never when reloads are not wired (tests, demo).
async fn next_reconfigure(rx: &mut Option<mpsc::Receiver<Reconfigure>>) -> Option<Reconfigure> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::TalkdeskConfig;
    use crate::config::types::Dur;

    #[test]
    fn options_come_from_the_talkdesk_section_and_the_callers_values() {
        let cfg = TalkdeskConfig {
            on_drift: OnDrift::Respect,
            reconcile_interval: Dur::from_millis(90_000),
            drift_override_ttl: Dur::from_secs(7200),
            ..TalkdeskConfig::default()
        };
        let opts = ActuatorOptions::from_config(&cfg, true);
        assert!(opts.dry_run);
        assert_eq!(opts.on_drift, OnDrift::Respect);
        assert_eq!(opts.reconcile_interval, Duration::from_secs(90));
        assert_eq!(opts.adopt_ttl, Duration::from_secs(7200));
        // Backoff is not configurable: the documented defaults.
        let defaults = ActuatorOptions::default();
        assert_eq!(
            (opts.backoff_min, opts.backoff_max),
            (defaults.backoff_min, defaults.backoff_max)
        );
    }
}
