//! The event loop: the only code that mutates the engine (operator changes
//! are stepped by `Persister::step_durably`, on the loop's engine, so that
//! they can be rolled back when they cannot be written).
//!
//! Every input is an `Event` on one bounded channel (or a `Control` request
//! from the API). Each event goes through `Engine::step`; the commands it
//! returns are logged, counted and audited; a new desired state is persisted
//! *before* the actuator is told (on a `watch` channel). What senders will not
//! repeat is persisted before the loop sleeps again (`Persister`).
//!
//! Leadership (`cluster`) decides what the loop's decisions are worth. The
//! leader persists its snapshot and runs the actuator. A follower runs its
//! probes and steps its own engine for display (status, metrics, logs), but
//! persists nothing, audits none of its engine's transitions, refuses
//! operator changes, and runs no actuator. On taking the lease the loop
//! restores the engine from the store, i.e. the previous leader's snapshot,
//! written before that leader told its actuator anything, so the new leader
//! starts from the last decision Talkdesk was given and a takeover causes no
//! extra on/off (the same guarantee as a restart after `kill -9`).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::gate::StartGate;
use super::inputs::Probes;
use super::persist::Persister;
use super::restore::{Restored, restore};
use super::run::Shared;
use super::supervise::Supervisor;
use crate::cluster::Leadership;
use crate::config::Config;
use crate::domain::{Desired, Timestamp};
use crate::engine::{Command, Engine, Event};
use crate::server::control::{Control, ControlError, StatusDoc};
use crate::store::Store;
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
    leadership: &mut watch::Receiver<Leadership>,
    cancel: &CancellationToken,
) -> Option<String> {
    loop {
        if lp.restore_pending {
            lp.take_over(supervisor).await;
        }
        if supervisor.is_pending() && lp.gate.open(lp) {
            if !lp.gate.restored() {
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
            Ok(()) = leadership.changed() => {
                let lead = leadership.borrow_and_update().clone();
                lp.leadership(lead, supervisor).await;
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
    store: Arc<dyn Store>,
    engine: Engine,
    /// When the actuator may start in this term.
    gate: StartGate,
    /// The lease as last seen.
    lead: Leadership,
    /// The last epoch this replica led with: regaining the lease under the
    /// same epoch (a slow renewal) resumes; a new epoch is a takeover.
    led_epoch: Option<i64>,
    /// A takeover whose restore from the store has not succeeded yet.
    restore_pending: bool,
    persister: Persister,
    audit: Arc<dyn AuditSink>,
    metrics: Metrics,
    desired_tx: watch::Sender<Desired>,
    probes: Probes,
    actuator: ActuatorHandle,
}

impl Loop {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        shared: &Shared,
        store: Arc<dyn Store>,
        restored: Restored,
        lead: Leadership,
        persister: Persister,
        desired_tx: watch::Sender<Desired>,
        probes: Probes,
        actuator: ActuatorHandle,
    ) -> (Loop, Vec<Command>) {
        let gate = StartGate::new(restored.from_snapshot, &shared.config);
        let lp = Loop {
            config: shared.config.clone(),
            store,
            engine: restored.engine,
            gate,
            led_epoch: lead.leader.then_some(lead.epoch),
            lead,
            restore_pending: false,
            persister,
            audit: shared.audit.clone(),
            metrics: shared.metrics.clone(),
            desired_tx,
            probes,
            actuator,
        };
        (lp, restored.commands)
    }

    pub(super) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Starts this replica's role: the leader writes the first snapshot and
    /// may start its actuator; a follower only watches.
    pub(super) fn begin(&mut self, supervisor: &mut Supervisor) {
        self.persister.set_leading(self.lead.leader);
        if self.lead.leader {
            supervisor.lead();
        }
    }

    /// The lease changed hands (or this replica's view of it did).
    pub(super) async fn leadership(&mut self, lead: Leadership, supervisor: &mut Supervisor) {
        let was = std::mem::replace(&mut self.lead, lead);
        let new_term = self.lead.leader && self.led_epoch != Some(self.lead.epoch);
        if new_term {
            if was.leader {
                // A term of ours ended unseen (lost and retaken between two
                // looks): its actuator must not carry over.
                supervisor.follow();
            }
            self.led_epoch = Some(self.lead.epoch);
            self.restore_pending = true;
            self.take_over(supervisor).await;
        } else if self.lead.leader && !was.leader {
            // The same term, renewed late: nothing changed hands.
            tracing::info!(
                message = "Lease renewed again; resuming.",
                epoch = self.lead.epoch
            );
            self.persister.set_leading(true);
            supervisor.lead();
        } else if !self.lead.leader && was.leader {
            tracing::warn!(message = "Not the leader any more: actuator stopped, snapshot writes stopped.", leader = ?self.lead.leader_id, epoch = self.lead.epoch);
            self.restore_pending = false;
            self.persister.set_leading(false);
            supervisor.follow();
        }
    }

    /// A new term: the engine restarts from the store (the previous leader's
    /// snapshot), then the actuator may start. Retried on every loop turn
    /// until the store answers; until then nothing is actuated.
    pub(super) async fn take_over(&mut self, supervisor: &mut Supervisor) {
        match restore(&self.config, &*self.store, &*self.audit).await {
            Ok(restored) => {
                tracing::warn!(message = "Took the lease: engine restored from the store.", epoch = self.lead.epoch, desired = %restored.engine.desired(), from_snapshot = restored.from_snapshot);
                self.restore_pending = false;
                self.engine = restored.engine;
                self.gate = StartGate::new(restored.from_snapshot, &self.config);
                self.persister.set_leading(true);
                self.desired_tx.send_replace(self.engine.desired().clone());
                self.execute(restored.commands, Timestamp::now()).await;
                self.refresh_gauges(Timestamp::now());
                supervisor.lead();
            }
            Err(error) => {
                tracing::error!(message = "Took the lease but cannot read the engine snapshot; not actuating until it can be read.", %error);
            }
        }
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
        let durable = !matches!(
            ev,
            Event::ProbeResult { .. } | Event::Tick | Event::ActualObserved(_)
        );
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

    /// Persisted before it acts, or rolled back and refused. A follower
    /// refuses: only the leader's engine decides.
    async fn apply_durably(&mut self, ev: Event, now: Timestamp) -> Result<(), ControlError> {
        if !self.lead.leader || self.restore_pending {
            return Err(ControlError::Unavailable(format!(
                "this replica ({}) is not the leader; the leader is {}",
                self.config.instance_id(),
                self.lead.leader_id.as_deref().unwrap_or("unknown")
            )));
        }
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
            leader: self.lead.leader,
            leader_id: self.lead.leader_id.clone(),
            epoch: self.lead.epoch,
            instance_id: self.config.instance_id(),
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
                    self.audit_engine(
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
                    self.audit_engine(
                        AuditRecord::new(now, AuditKind::Probe, format!("{probe}: {from} -> {to} ({detail})"))
                            .with_data(serde_json::json!({ "probe": probe, "from": from, "to": to, "detail": detail })),
                    );
                }
                Command::RuleTransition { rule, from, to } => {
                    tracing::info!(message = "Rule state changed.", rule = %rule, from = %from, to = %to);
                    self.audit_engine(
                        AuditRecord::new(now, AuditKind::Rule, format!("{rule}: {from} -> {to}"))
                            .with_data(serde_json::json!({ "rule": rule, "from": from, "to": to })),
                    );
                }
                Command::Audit { kind, message } => {
                    tracing::info!(message = %message, kind = %kind);
                    self.audit_engine(AuditRecord::new(now, kind, message));
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

    /// Audits what the engine did, on the leader only: a follower's engine
    /// decides nothing, and its transitions in the shared audit log would
    /// read as decisions (its logs still show them).
    fn audit_engine(&self, record: AuditRecord) {
        if self.lead.leader {
            self.audit.record(record);
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
