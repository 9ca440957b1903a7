//! Applying a plan: one convergence attempt of the [`Actuator`] over HTTP,
//! and what happens after it (retry with backoff, blocked, idle).
//!
//! An attempt reads what is unknown, asks [`plan`] which writes
//! are needed, explains them (log and audit), then makes them one by one.
//! Rules it keeps, and why:
//! - **Retry forever while desired and actual differ.** Retryable failures
//!   (5xx, 429, timeouts, dropped connections) are retried with exponential
//!   backoff and jitter, waiting at least the server's `Retry-After`
//!   ([`backoff_delay`]), and reported loudly (logs,
//!   `continuity_actuation_failures_total`, audit, status).
//!   Non-retryable ones (400, 403, unknown profile) would most likely fail
//!   the same way again: the actuator reports itself blocked (status, error
//!   log, audit) and tries again on a slow schedule
//!   (`ActuatorOptions::rejected_retry`, about every 5 minutes), never giving
//!   up while desired and actual differ; a new desired state or a reload
//!   tries at once.
//! - **Unreadable is not a reason to stay down.** A read that fails for good,
//!   or keeps failing for [`BLIND_AFTER_ATTEMPTS`] attempts, leaves that part
//!   unknown, and the plan writes it anyway (each write is a set).
//! - **After a failed write the written part is unknown:** the PUT may still
//!   have been applied, so it is read again before the next attempt.
//! - **`dry_run`** plans as usual and audits each write instead of making it;
//!   **fencing** (`may_write`, an async [`WriteFence`](super::actuator::WriteFence),
//!   `cluster::Fence` in the daemon) is checked right before every single
//!   write, after the access token is ready so nothing slow sits between the
//!   check and the request: another leader means idle (that leader writes),
//!   a store too slow to confirm the lease means retry with backoff and
//!   jitter while this replica still leads; a
//!   **shutdown** is checked before every call, never during one.

use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::actuator::{Actuator, LastError, Verdict};
use super::client::{activation_body, settings_body};
use super::error::{Op, TalkdeskError};
use super::plan::{self, Step, StoredForm};
use crate::backoff::backoff_delay;
use crate::domain::{Desired, FallbackSettings, Timestamp};
use crate::engine::event::Event;
use crate::telemetry::logging;
use crate::telemetry::{AuditKind, AuditRecord};

/// After this many failed attempts in a row, unknown parts of the actual
/// state no longer block writing (see the module docs).
pub const BLIND_AFTER_ATTEMPTS: u32 = 3;
/// From this many failed attempts on, each failure is logged at error level.
pub const LOUD_AFTER_ATTEMPTS: u32 = 5;

/// How a convergence attempt ended, when no call failed.
enum Outcome {
    Converged,
    DryRun,
    /// Another replica leads: the write was not made.
    Fenced,
    /// This replica leads, but the store did not confirm it in time.
    Unconfirmed,
    Shutdown,
    /// The desired state changed between two writes: the rest of the plan
    /// no longer serves it (an override cleared after the settings write
    /// must not be followed by `enabled=true`).
    Superseded,
}

/// What the actuator's loop does after an attempt.
pub(super) enum Next {
    /// Wait for a new desired state or the next reconcile.
    Idle,
    /// Try again after this delay (sooner if the desired state changes).
    Retry(Duration),
    Shutdown,
}

impl Actuator {
    /// One convergence attempt, with its bookkeeping. Decides what comes next.
    pub(super) async fn attempt(
        &mut self,
        desired: &Desired,
        events: &mpsc::Sender<Event>,
        shutdown: &CancellationToken,
    ) -> Next {
        let next = match self.converge(desired, events, shutdown).await {
            Ok(Outcome::Converged) => {
                self.converged(desired);
                Next::Idle
            }
            Ok(Outcome::DryRun) => {
                self.status.converged = false;
                Next::Idle
            }
            Ok(Outcome::Fenced) => {
                tracing::info!(desired = %desired, "Not the leader: Talkdesk write skipped.");
                self.status.fenced = true;
                self.unconfirmed = 0;
                Next::Idle
            }
            Ok(Outcome::Unconfirmed) => {
                // Still the leader as far as anyone knows: waiting for the
                // next reconcile (a minute) would leave callers where they
                // are for nothing. Retry soon; the fence says `NotLeader`
                // once this replica has really lost the lease.
                self.unconfirmed += 1;
                self.status.fenced = true;
                let delay = backoff_delay(
                    self.opts.backoff_min,
                    self.opts.backoff_max,
                    self.unconfirmed,
                    None,
                );
                tracing::warn!(desired = %desired, attempt = self.unconfirmed, retry_in = %logging::duration(delay), "The store did not confirm the lease in time: Talkdesk write postponed; retrying while this replica leads.");
                Next::Retry(delay)
            }
            Ok(Outcome::Shutdown) => Next::Shutdown,
            Ok(Outcome::Superseded) => {
                tracing::info!(desired = %desired, "The desired state changed during the plan; the rest of it is dropped.");
                self.audit.record(AuditRecord::new(
                    Timestamp::now(),
                    AuditKind::Actuation,
                    format!("plan for {desired} stopped between writes: the desired state changed"),
                ));
                // At once: the run loop picks the new desired state up.
                Next::Retry(Duration::ZERO)
            }
            Err(error) => self.failed(desired, error),
        };
        self.publish();
        next
    }

    /// Read what is unknown, then write what differs, settings first.
    async fn converge(
        &mut self,
        desired: &Desired,
        events: &mpsc::Sender<Event>,
        shutdown: &CancellationToken,
    ) -> Result<Outcome, TalkdeskError> {
        // An unknown profile fails before any call.
        let wants_settings = plan::target(desired, &self.profiles)?.is_some();
        if !self.read_unknown(wants_settings, events, shutdown).await? {
            return Ok(Outcome::Shutdown);
        }
        let steps = plan::plan(&self.known, desired, &self.profiles, self.form.as_ref())?;
        if steps.is_empty() {
            return Ok(Outcome::Converged);
        }
        self.explain(desired, &steps);
        if self.opts.dry_run {
            for step in &steps {
                self.audit_dry_run(step);
            }
            return Ok(Outcome::DryRun);
        }
        for step in steps {
            // A fenced write answered 401 (token revoked or expired early) is
            // sent once more with a fresh token, through the fence again:
            // each fence check allows exactly one request.
            let mut refreshed = false;
            loop {
                if shutdown.is_cancelled() {
                    return Ok(Outcome::Shutdown);
                }
                if self.superseded(desired) {
                    return Ok(Outcome::Superseded);
                }
                if let Some(fence) = &self.may_write {
                    // A token first, so nothing slow sits between the fence and
                    // the request it allows.
                    self.client.ready_token().await?;
                    match fence.may_write(step.op()).await {
                        Verdict::Allowed => self.unconfirmed = 0,
                        Verdict::NotLeader => return Ok(Outcome::Fenced),
                        Verdict::Unconfirmed => return Ok(Outcome::Unconfirmed),
                    }
                }
                match self.write(step.clone()).await {
                    Err(e) if e.status() == Some(401) && self.may_write.is_some() && !refreshed => {
                        refreshed = true;
                    }
                    result => {
                        result?;
                        break;
                    }
                }
            }
            self.observed(events).await;
        }
        Ok(Outcome::Converged)
    }

    /// The engine wants something else than `desired` by now.
    fn superseded(&self, desired: &Desired) -> bool {
        self.latest
            .as_ref()
            .is_some_and(|rx| *rx.borrow() != *desired)
    }

    /// Reads the parts of Talkdesk's state we do not know (settings only when
    /// they matter). Returns `false` when a shutdown came first.
    async fn read_unknown(
        &mut self,
        wants_settings: bool,
        events: &mpsc::Sender<Event>,
        shutdown: &CancellationToken,
    ) -> Result<bool, TalkdeskError> {
        let blind_ok = self.status.attempts >= BLIND_AFTER_ATTEMPTS;
        let mut read = false;
        if self.known.enabled.is_none() {
            if shutdown.is_cancelled() {
                return Ok(false);
            }
            match self.client.get_activation().await {
                Ok(e) => {
                    self.known.enabled = Some(e);
                    read = true;
                }
                Err(e) => self.unreadable(e, blind_ok)?,
            }
        }
        if wants_settings && self.known.settings.is_none() {
            if shutdown.is_cancelled() {
                return Ok(false);
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
        Ok(true)
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

    /// Explain the writes before making them: what Talkdesk has, what will
    /// change, and why (the desired state).
    fn explain(&self, desired: &Desired, steps: &[Step]) {
        let steps: Vec<String> = steps.iter().map(Step::to_string).collect();
        tracing::info!(desired = %desired, activation = self.known.activation(), settings_known = self.known.settings.is_some(), plan = %steps.join(", then "), dry_run = self.opts.dry_run, "Applying the desired state to Talkdesk.");
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
    }

    /// Audit a write exactly as it would be sent, without sending it.
    fn audit_dry_run(&self, step: &Step) {
        match step {
            Step::PutSettings(s) => self.client.audit_dry_run(Op::PutSettings, settings_body(s)),
            Step::PutActivation(e) => self
                .client
                .audit_dry_run(Op::PutActivation, activation_body(*e)),
        }
    }

    /// Makes one write and updates what we believe Talkdesk has.
    async fn write(&mut self, step: Step) -> Result<(), TalkdeskError> {
        crate::failpoint::hit("talkdesk.write");
        // Under a fence, the client must not resend a write on its own.
        let client = if self.may_write.is_some() {
            self.client.fenced()
        } else {
            self.client.clone()
        };
        match step {
            Step::PutSettings(sent) => {
                let stored = match client.put_settings(&sent).await {
                    Ok(Some(stored)) => Ok(stored),
                    // No body to compare: read back what was stored.
                    Ok(None) => client.get_settings().await,
                    Err(e) => Err(e),
                };
                let stored = match stored {
                    Ok(stored) => stored,
                    Err(e) => {
                        // A failed PUT may still have been applied: unknown now.
                        self.known.settings = None;
                        return Err(e);
                    }
                };
                self.verify_stored(sent, stored)?;
            }
            Step::PutActivation(enabled) => {
                let stored = match client.set_activation(enabled).await {
                    Ok(Some(stored)) => Ok(stored),
                    // No body to compare: read back what was stored.
                    Ok(None) => client.get_activation().await,
                    Err(e) => Err(e),
                };
                match stored {
                    Ok(stored) => self.verify_activation(enabled, stored)?,
                    Err(e) => {
                        // A failed PUT may still have been applied: unknown now.
                        self.known.enabled = None;
                        return Err(e);
                    }
                }
            }
        }
        Ok(())
    }

    /// What Talkdesk says it stored after an activation write: anything but
    /// what was sent is a failure (retried), however the write was answered.
    fn verify_activation(&mut self, sent: bool, stored: bool) -> Result<(), TalkdeskError> {
        self.known.enabled = Some(stored);
        if stored == sent {
            return Ok(());
        }
        let word = |e: bool| if e { "enabled=true" } else { "enabled=false" };
        Err(TalkdeskError::Mismatch {
            op: Op::PutActivation,
            status: 200,
            sent: word(sent).to_string(),
            stored: word(stored).to_string(),
        })
    }

    /// What Talkdesk says it stored after a settings write: the same, the
    /// same in another form (remembered, so reconciles do not rewrite it),
    /// or different settings, which is a failure (retried) however the write
    /// was answered: callers would go to the wrong place.
    fn verify_stored(
        &mut self,
        sent: FallbackSettings,
        stored: FallbackSettings,
    ) -> Result<(), TalkdeskError> {
        self.known.settings = Some(stored.clone());
        if stored == sent {
            return Ok(());
        }
        if plan::equivalent(&sent, &stored) {
            tracing::info!(sent = %sent, stored = %stored, "Talkdesk stored the settings in another form (formatting only); treating it as equivalent.");
            self.form = Some(StoredForm { sent, stored });
            return Ok(());
        }
        Err(TalkdeskError::Mismatch {
            op: Op::PutSettings,
            status: 200,
            sent: sent.to_string(),
            stored: stored.to_string(),
        })
    }

    /// Talkdesk matches `desired` after an attempt.
    fn converged(&mut self, desired: &Desired) {
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
    }

    /// An attempt failed: report it everywhere, then retry after a backoff
    /// (retryable) or wait for the desired state to change (not retryable).
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
        // A credentials rejection is logged by `call_failed`, once per change.
        self.call_failed(&error);
        if error.is_retryable() && error.rejects_credentials() {
            tracing::debug!(desired = %desired, attempt = attempts, %error, "Talkdesk rejects the credentials; retrying.");
            return Next::Retry(backoff_delay(
                self.opts.backoff_min,
                self.opts.backoff_max,
                attempts,
                error.retry_after(),
            ));
        }
        if error.is_retryable() {
            let delay = backoff_delay(
                self.opts.backoff_min,
                self.opts.backoff_max,
                attempts,
                error.retry_after(),
            );
            if attempts < LOUD_AFTER_ATTEMPTS {
                tracing::warn!(desired = %desired, attempt = attempts, retry_in = %logging::duration(delay), %error, "Talkdesk actuation failed; retrying.");
            } else {
                tracing::error!(desired = %desired, attempt = attempts, diverged_for = %logging::duration(diverged_for), retry_in = %logging::duration(delay), %error, "Talkdesk actuation keeps failing; still retrying.");
            }
            Next::Retry(delay)
        } else {
            // The same request would most likely fail the same way, but a
            // gateway's passing 403 must not leave callers stranded for the
            // whole outage: try again, slowly, while desired and actual differ.
            let delay = backoff_delay(self.opts.rejected_retry, self.opts.rejected_retry, 1, None);
            tracing::error!(desired = %desired, attempt = attempts, %error, fields = %fields.join("; "), retry_in = %logging::duration(delay), "Talkdesk rejected the actuation; retrying slowly until it succeeds or the desired state or the config changes. Fix the cause the error names.");
            self.status.blocked = true;
            Next::Retry(delay)
        }
    }
}
