//! The event loop: the only code that mutates the engine (operator changes
//! are stepped by `Persister::step_durably`, on the loop's engine, so that
//! they can be rolled back when they cannot be written).
//!
//! Every input is an `Event` on one bounded channel (or a `Control` request
//! from the API). Each event goes through `Engine::step`; the commands it
//! returns are logged, counted and audited; a new desired state is persisted
//! *before* the actuator is told (on a `watch` channel). What senders will not
//! repeat is persisted before the loop sleeps again (`Persister`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::gate::StartGate;
use super::inputs::Probes;
use super::persist::Persister;
use super::run::Shared;
use super::supervise::Supervisor;
use crate::config::Config;
use crate::domain::{Desired, Timestamp};
use crate::engine::{Command, Engine, Event};
use crate::server::control::{Control, ControlError, StatusDoc};
use crate::talkdesk::actuator::ActuatorHandle;
use crate::telemetry::{AuditKind, AuditRecord, AuditSink, Metrics};

/// Upper bound on how long the loop sleeps without a deadline.
const MAX_IDLE: Duration = Duration::from_secs(1);
/// Events handled per wake-up before the loop looks at timers and the
/// snapshot again.
const BATCH: usize = 256;

/// What the loop receives: events, and API requests that need an answer.
pub(super) struct Inbox {
    pub events: mpsc::Receiver<Event>,
    pub control: mpsc::Receiver<Control>,
}

/// Runs until `cancel` fires or the actuator dies (then returns why). Starts
/// the actuator once the start gate opens.
pub(super) async fn run(
    lp: &mut Loop,
    inbox: &mut Inbox,
    supervisor: &mut Supervisor,
    gate: &StartGate,
    cancel: &CancellationToken,
) -> Option<String> {
    loop {
        if supervisor.is_pending() && gate.open(lp) {
            if !gate.restored() {
                tracing::info!(message = "Actuator starting after fresh start.", desired = %lp.engine.desired());
            }
            supervisor.start();
        }
        let now = Timestamp::now();
        let sleep_for = lp
            .engine
            .next_deadline()
            .map(|d| d.since(now))
            .unwrap_or(MAX_IDLE)
            .min(MAX_IDLE);
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return None,
            Some(why) = supervisor.died() => {
                tracing::error!(message = "The actuator stopped unexpectedly; exiting so a supervisor restarts the agent.", reason = %why);
                lp.audit.record(AuditRecord::new(Timestamp::now(), AuditKind::Actuation, format!("actuator stopped unexpectedly: {why}")));
                return Some(why);
            }
            Some(c) = inbox.control.recv() => lp.control(c).await,
            Some(ev) = inbox.events.recv() => {
                lp.handle(ev).await;
                // Drain what is already queued (an Alertmanager batch, a burst of
                // probe results) before the next snapshot write.
                for _ in 0..BATCH {
                    match inbox.events.try_recv() {
                        Ok(ev) => lp.handle(ev).await,
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep(sleep_for) => lp.handle(Event::Tick).await,
        }
        lp.persister.save_if_due(&lp.engine).await;
    }
}

pub(super) struct Loop {
    config: Arc<Config>,
    engine: Engine,
    persister: Persister,
    audit: Arc<dyn AuditSink>,
    metrics: Metrics,
    desired_tx: watch::Sender<Desired>,
    probes: Probes,
    actuator: ActuatorHandle,
}

impl Loop {
    pub(super) fn new(
        shared: &Shared,
        engine: Engine,
        persister: Persister,
        desired_tx: watch::Sender<Desired>,
        probes: Probes,
        actuator: ActuatorHandle,
    ) -> Loop {
        Loop {
            config: shared.config.clone(),
            engine,
            persister,
            audit: shared.audit.clone(),
            metrics: shared.metrics.clone(),
            desired_tx,
            probes,
            actuator,
        }
    }

    pub(super) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Executes the restored engine's commands, writes the first snapshot
    /// (the agent is ready once it is on disk) and sets the gauges.
    pub(super) async fn start(&mut self, restore_cmds: Vec<Command>) {
        self.execute(restore_cmds, Timestamp::now()).await;
        self.persister.start(&self.engine).await;
        self.refresh_gauges(Timestamp::now());
    }

    /// Shutdown has begun: report not ready.
    pub(super) fn stopping(&self) {
        self.persister.stop();
    }

    /// Shutdown, once every input has stopped: the last snapshot.
    pub(super) async fn flush(&mut self) {
        self.persister.save(&self.engine).await;
    }

    pub(super) async fn handle(&mut self, ev: Event) {
        let now = Timestamp::now();
        // Inputs that senders will not repeat (a PagerDuty "triggered", an
        // override, a calendar job) must survive a crash: written at once.
        // Probe results and ticks only move counters and are written lazily.
        // What Talkdesk has is written when it changes: after a restart the
        // actuator compares it with Talkdesk to find changes made meanwhile.
        let durable = match &ev {
            Event::ProbeResult { .. } | Event::Tick => false,
            Event::ActualObserved(a) => self.engine.view(now).actual.as_ref() != Some(a),
            _ => true,
        };
        let cmds = self.engine.step(ev, now);
        self.persister.stepped(durable);
        self.execute(cmds, now).await;
    }

    /// Applies an operator's request. The change is persisted before anything
    /// acts on it; if it cannot be persisted it is rolled back and refused
    /// (503), so an acknowledged override is never lost.
    pub(super) async fn control(&mut self, c: Control) {
        let now = Timestamp::now();
        match c {
            Control::SetOverride { ov, reply } => {
                let result = self
                    .apply_durably(Event::OverrideSet(ov), now)
                    .await
                    .map(|_| ());
                let _ = reply.send(result);
            }
            Control::ClearOverride {
                actor,
                reason,
                reply,
            } => {
                let had = self.engine.view(now).override_.is_some();
                let result = self
                    .apply_durably(Event::OverrideCleared { actor, reason }, now)
                    .await
                    .map(|_| had);
                let _ = reply.send(result);
            }
            Control::ReleaseFlap { actor, reply } => {
                let was = self.engine.view(now).flapping;
                let result = self
                    .apply_durably(Event::FlapRelease { actor }, now)
                    .await
                    .map(|_| was);
                let _ = reply.send(result);
            }
            Control::Status { reply } => {
                let _ = reply.send(self.status(now));
            }
        }
    }

    /// Persisted before it acts, or rolled back and refused.
    async fn apply_durably(&mut self, ev: Event, now: Timestamp) -> Result<(), ControlError> {
        let cmds = self
            .persister
            .step_durably(&mut self.engine, ev, now)
            .await?;
        self.execute(cmds, now).await;
        Ok(())
    }

    fn status(&self, now: Timestamp) -> StatusDoc {
        let view = self.engine.view(now);
        let act = self.actuator.status();
        StatusDoc {
            version: env!("CARGO_PKG_VERSION"),
            mode: self.engine.mode(),
            dry_run: self.config.raw.agent.dry_run,
            leader: true,
            desired: self.engine.desired().clone(),
            actual: act.actual.clone(),
            converged: act.converged,
            engine: serde_json::to_value(&view).unwrap_or_default(),
            actuator: serde_json::to_value(&act).unwrap_or_default(),
        }
    }

    /// Executes commands. A desired-state change is persisted before the
    /// actuator sees it (see the module docs).
    async fn execute(&mut self, cmds: Vec<Command>, now: Timestamp) {
        if cmds.is_empty() {
            return;
        }
        // Cadence changes alone touch no gauged state: skip building the view.
        let gauged = cmds
            .iter()
            .any(|c| !matches!(c, Command::ProbeCadence { .. }));
        let mut desired_changed = None;
        for cmd in cmds {
            match cmd {
                Command::SetDesired {
                    desired,
                    cause,
                    reasons,
                } => {
                    let reasons_text: Vec<String> = reasons.iter().map(reason_line).collect();
                    tracing::warn!(
                        message = "Desired fallback state changed.",
                        desired = %desired,
                        cause = cause.as_str(),
                        reasons = %reasons_text.join("; "),
                    );
                    let to = if desired.is_active() {
                        "active"
                    } else {
                        "inactive"
                    };
                    self.metrics
                        .transitions_total
                        .with_label_values(&[to, cause.as_str()])
                        .inc();
                    self.audit.record(
                        AuditRecord::new(
                            now,
                            AuditKind::Decision,
                            format!("desired {desired} (cause {}): {}", cause.as_str(), reasons_text.join("; ")),
                        )
                            .with_data(serde_json::json!({ "desired": desired, "cause": cause, "reasons": reasons })),
                    );
                    desired_changed = Some(desired);
                }
                Command::ProbeCadence { probe, fast } => {
                    self.probes.set_fast(&probe, fast);
                }
                Command::ProbeTransition {
                    probe,
                    from,
                    to,
                    detail,
                } => {
                    tracing::info!(message = "Probe state changed.", probe = %probe, from = %from, to = %to, detail = %detail);
                    self.audit.record(
                        AuditRecord::new(now, AuditKind::Probe, format!("{probe}: {from} -> {to} ({detail})"))
                            .with_data(serde_json::json!({ "probe": probe, "from": from, "to": to, "detail": detail })),
                    );
                }
                Command::RuleTransition { rule, from, to } => {
                    tracing::info!(message = "Rule state changed.", rule = %rule, from = %from, to = %to);
                    self.audit.record(
                        AuditRecord::new(now, AuditKind::Rule, format!("{rule}: {from} -> {to}"))
                            .with_data(serde_json::json!({ "rule": rule, "from": from, "to": to })),
                    );
                }
                Command::Audit { kind, message } => {
                    tracing::info!(message = %message, kind = %kind);
                    self.audit.record(AuditRecord::new(now, kind, message));
                }
            }
        }
        if let Some(desired) = desired_changed {
            // Durable before the actuator acts: a crash after this point
            // restores the new desired state, never an older one.
            self.persister.save(&self.engine).await;
            self.desired_tx.send_replace(desired);
        }
        if gauged {
            self.refresh_gauges(now);
        }
    }

    /// Gauges that mirror engine state (probe health, rule state, desired,
    /// alerts, override, flap latch, blind guard): the one place they are
    /// set, from the engine's own view, so they are right after a restore too.
    fn refresh_gauges(&self, now: Timestamp) {
        let view = self.engine.view(now);
        for p in &view.probes {
            self.metrics
                .probe_up
                .with_label_values(&[&p.id, p.kind])
                .set(p.health.gauge());
        }
        for r in &view.rules {
            self.metrics
                .rule_state
                .with_label_values(&[&r.name])
                .set(r.state.gauge());
        }
        self.metrics
            .fallback_desired
            .set(i64::from(self.engine.desired().is_active()));
        self.metrics.alerts_active.set(view.alerts.len() as i64);
        self.metrics
            .override_active
            .set(i64::from(view.override_.is_some()));
        self.metrics.flapping.set(i64::from(view.flapping));
        self.metrics.blind.set(i64::from(view.blind.is_some()));
    }
}

/// `source: text`, without repeating the source when the text starts with it.
fn reason_line(r: &crate::engine::Reason) -> String {
    if r.text.starts_with(&r.source) {
        r.text.clone()
    } else {
        format!("{}: {}", r.source, r.text)
    }
}
