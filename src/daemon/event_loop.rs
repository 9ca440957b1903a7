//! The event loop: the only code that mutates the engine.
//!
//! Two kinds of input reach it. Probe results, calendar jobs, the self-check
//! and the actuator's observations are `Event`s on one bounded channel.
//! What senders will not repeat (alerts, overrides, flap releases) is in the
//! durable input queue (`store/inputs.rs`), appended by the HTTP handlers of
//! any replica; the loop reads it in id order when woken (this replica's
//! handlers, or `Store::watch_inputs` for other replicas) and at least every
//! second, and applies each input once, a bounded share per turn (then the
//! events queued meanwhile), so a webhook flood cannot starve probe results.
//! API requests that need an answer are `Control` messages.
//!
//! Each event goes through `Engine::step`; the commands it returns are logged,
//! counted and audited; a new desired state is persisted *before* the actuator
//! is told (on a `watch` channel). The snapshot document records the last
//! input applied (`document.rs`) and is handed to the `Persister`'s writer
//! before the loop sleeps again after an input. The loop never waits for the
//! store's write: a new desired state (and the notices announcing it) is
//! held as `Unpublished` until the writer has settled the document holding
//! it, while the loop goes on with probes, inputs and the API.
//!
//! Leadership (`cluster`) decides what the loop's decisions are worth. The
//! leader persists its document and runs the actuator. A follower runs its
//! probes and applies queued inputs to its own engine for display (status,
//! metrics, logs), but persists nothing, audits none of its engine's
//! transitions, answers no `Control::Applied` (the API then reports the input
//! as queued, at once) and runs no actuator. On taking the lease the loop
//! restores the document from the store, i.e. the previous leader's engine
//! and input cursor, written before that leader told its actuator anything,
//! then replays the inputs after that cursor: the new leader starts from the
//! last decision Talkdesk was given, loses no accepted input, and a takeover
//! causes no extra on/off (the same guarantee as a restart after `kill -9`).
//!
//! The leader also tells people (`announce.rs`, `notify`): each decision
//! once it is persisted, the flap latch and the blind guard when the engine
//! audits them, and an actuation stuck longer than a target's `stuck_after`
//! (from the actuator's status). Queuing a notice never waits.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::announce::Announcer;
use super::document::Progress;
use super::gate::StartGate;
use super::inputs::Probes;
use super::persist::Persister;
use super::restore::{Restored, restore};
use super::run::Shared;
use super::supervise::Supervisor;
use crate::calendar::Calendar;
use crate::cluster::Leadership;
use crate::config::Config;
use crate::domain::{Desired, Timestamp};
use crate::engine::{Cause, Command, Engine, Event, Reason};
use crate::notify::{Notice, Notices};
use crate::server::control::{Applied, Control, ReloadError, StatusDoc};
use crate::store::Store;
use crate::store::inputs::{self, Input, StoredInput};
use crate::talkdesk::actuator::ActuatorHandle;
use crate::talkdesk::drift::LastSeen;
use crate::telemetry::{AccountMetrics, AuditKind, AuditRecord, AuditSink, Metrics};

/// Upper bound on how long the loop sleeps without a deadline.
const MAX_IDLE: Duration = Duration::from_secs(1);
/// Events handled per wake-up before the loop looks at timers and the
/// snapshot again.
const BATCH: usize = 256;
/// Outcomes of recently applied inputs kept for `Control::Applied` requests
/// that arrive after the input was applied.
pub const OUTCOMES: usize = 4096;
/// Batches of queued inputs applied per turn of the loop before it serves
/// its other inputs (probe results, ticks, API requests) again.
const FAIR_BATCHES: usize = 4;
/// How often applied inputs older than `inputs::RETENTION` are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What the loop receives: events, API requests that need an answer, and
/// configuration reloads.
pub(super) struct Inbox {
    pub events: mpsc::Receiver<Event>,
    pub control: mpsc::Receiver<Control>,
    /// New inputs in the queue.
    pub wake: Arc<Notify>,
    pub reconfigure: mpsc::Receiver<Reconfigured>,
}

/// A reload's share for one account (`reload.rs`): its view of the new
/// configuration, the new probes and calendar, the new Talkdesk parts.
/// `done` is answered once the loop and the actuator have them.
pub(super) struct Reconfigured {
    pub config: Arc<Config>,
    pub probes: Probes,
    pub calendar: Option<Calendar>,
    pub talkdesk: crate::talkdesk::actuator::Reconfigure,
    pub done: oneshot::Sender<()>,
}

/// Runs until `cancel` fires or the actuator dies (then returns why). Starts
/// the actuator once this replica leads and the start gate opens.
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
                tracing::info!(message = "Actuator starting after fresh start.", account = %lp.account, desired = %lp.engine.desired());
            }
            supervisor.start();
            lp.announcer.new_term();
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
            Some(r) = inbox.reconfigure.recv() => {
                lp.reconfigure(r.config, r.probes, r.calendar).await;
                supervisor.reconfigure(r.talkdesk).await;
                let _ = r.done.send(());
            }
            _ = inbox.wake.notified() => {
                // A bounded share, then the events queued meanwhile: under a
                // webhook flood the queue never runs dry, and reading it to
                // the end would keep probe results, ticks and snapshots
                // waiting for as long as the flood lasts.
                if lp.catch_up_some(FAIR_BATCHES).await {
                    inbox.wake.notify_one();
                }
                for _ in 0..BATCH {
                    match inbox.events.try_recv() {
                        Ok(ev) => lp.handle(ev).await,
                        Err(_) => break,
                    }
                }
            }
            () = lp.persister.changed() => lp.publish_persisted(),
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
            _ = tokio::time::sleep(sleep_for) => {
                lp.handle(Event::Tick).await;
                // The poll behind notifications: at least once a second.
                if lp.catch_up_some(FAIR_BATCHES).await {
                    inbox.wake.notify_one();
                }
            }
        }
        lp.persister.save_if_due(&lp.engine, &lp.progress);
        lp.prune_if_due().await;
        if lp.announcing() && supervisor.is_running() {
            let actuator = &lp.actuator;
            lp.announcer.actuator(|| actuator.status());
        }
    }
}

pub(super) struct Loop {
    /// The Talkdesk account this loop decides for.
    account: String,
    /// The account's view of the configuration (`Config::for_account`).
    config: Arc<Config>,
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
    /// The series of this loop's account (its engine's gauges and counters).
    account_metrics: AccountMetrics,
    desired_tx: watch::Sender<Desired>,
    probes: Probes,
    /// The account's maintenance windows and drills (none: no scheduler).
    calendar: Option<Calendar>,
    actuator: ActuatorHandle,
    store: Arc<dyn Store>,
    /// Tells people about decisions and trouble (`notify`).
    announcer: Announcer,
    /// The last input applied and the alerts' event-time memory; persisted
    /// with the snapshot.
    progress: Progress,
    /// `Control::Applied` requests for inputs not applied yet, by id.
    waiters: BTreeMap<i64, Vec<oneshot::Sender<Applied>>>,
    /// What the last `OUTCOMES` inputs did, oldest first.
    outcomes: VecDeque<(i64, Applied)>,
    /// Whether the last queue read failed (logged once per outage).
    queue_failing: bool,
    last_prune: Option<Instant>,
    /// A decision waiting for its document to be persisted.
    unpublished: Option<Unpublished>,
}

/// A new desired state held back until the persister has settled the
/// document holding it (`Persister::is_settled`), with the notices that
/// announce it.
struct Unpublished {
    version: u64,
    desired: Desired,
    notices: Vec<Notice>,
}

/// What `Loop::new` needs besides the restored engine and the lease.
pub(super) struct Parts {
    pub account: String,
    pub persister: Persister,
    pub desired_tx: watch::Sender<Desired>,
    pub probes: Probes,
    pub calendar: Option<Calendar>,
    pub actuator: ActuatorHandle,
    pub store: Arc<dyn Store>,
    pub notices: Notices,
}

impl Loop {
    /// The loop around the restored engine, and the commands to run first
    /// (see [`Loop::start`]).
    pub(super) fn new(
        shared: &Shared,
        restored: Restored,
        lead: Leadership,
        parts: Parts,
    ) -> (Loop, Vec<Command>) {
        let lp = Loop {
            account: parts.account,
            config: shared.config.clone(),
            engine: restored.engine,
            gate: StartGate::new(restored.from_snapshot, &shared.config),
            led_epoch: lead.leader.then_some(lead.epoch),
            lead,
            restore_pending: false,
            persister: parts.persister,
            audit: shared.audit.clone(),
            metrics: shared.metrics.clone(),
            account_metrics: shared.account_metrics.clone(),
            desired_tx: parts.desired_tx,
            probes: parts.probes,
            calendar: parts.calendar,
            actuator: parts.actuator,
            store: parts.store,
            announcer: Announcer::new(parts.notices, restored.seen),
            progress: restored.progress,
            waiters: BTreeMap::new(),
            outcomes: VecDeque::new(),
            queue_failing: false,
            last_prune: None,
            unpublished: None,
        };
        (lp, restored.commands)
    }

    pub(super) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Shutdown: the calendar stops sending (the caller drains what it sent).
    pub(super) async fn stop_calendar(&mut self) {
        if let Some(calendar) = self.calendar.take() {
            calendar.shutdown().await;
        }
    }

    /// Starts this replica's role: the leader writes the first snapshot and
    /// may start its actuator; a follower only watches.
    pub(super) fn begin(&mut self, supervisor: &mut Supervisor) {
        self.persister.set_leading(self.lead.leader);
        if self.lead.leader {
            supervisor.lead(self.last_seen());
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
            // Nothing of this engine is written before it is restored: another
            // leader may have written since.
            self.persister.set_leading(false);
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
            supervisor.lead(self.last_seen());
        } else if !self.lead.leader && was.leader {
            tracing::warn!(message = "Not the leader any more: actuator stopped, snapshot writes stopped.", leader = ?self.lead.leader_id, epoch = self.lead.epoch);
            self.restore_pending = false;
            self.persister.set_leading(false);
            supervisor.follow();
            // Their inputs are the next leader's to apply: answered "queued".
            self.waiters.clear();
        }
    }

    /// A new term: the document (engine, input cursor, alert order) restarts
    /// from the store (the previous leader's), the inputs after its cursor are
    /// replayed, then the actuator may start. Retried on every loop turn until
    /// the store answers; until then nothing is actuated or written.
    pub(super) async fn take_over(&mut self, supervisor: &mut Supervisor) {
        match restore(&self.config, &*self.store, &*self.audit).await {
            Ok(restored) => {
                tracing::warn!(message = "Took the lease: engine restored from the store.", epoch = self.lead.epoch, desired = %restored.engine.desired(), from_snapshot = restored.from_snapshot, inputs_applied = restored.progress.inputs_applied);
                let now = Timestamp::now();
                self.restore_pending = false;
                self.engine = restored.engine;
                self.progress = restored.progress;
                self.announcer.restored(restored.seen);
                // What the display engine did is not what this term does.
                self.outcomes.clear();
                self.gate = StartGate::new(restored.from_snapshot, &self.config);
                self.persister.set_leading(true);
                // The restored decision is the stored one: nothing to wait for,
                // and what the display engine held back is not this term's.
                self.unpublished = None;
                self.desired_tx.send_replace(self.engine.desired().clone());
                self.execute(restored.commands, now).await;
                self.refresh_gauges();
                supervisor.lead(self.last_seen());
                self.catch_up().await;
            }
            Err(error) => {
                tracing::error!(message = "Took the lease but cannot read the engine snapshot; not actuating until it can be read.", %error);
            }
        }
    }

    /// What Talkdesk had when the engine last saw it (from the restored
    /// snapshot, or the actuator's observations since) and what the agent
    /// decided since: the new actuator applies `on_drift` to a change made
    /// while none was running, and takes its own late writes for what they are.
    fn last_seen(&self) -> Option<LastSeen> {
        let actual = self.engine.view(Timestamp::now()).actual?;
        Some(LastSeen {
            actual,
            decided: self.engine.unseen().to_vec(),
        })
    }

    /// A configuration reload (`reload.rs`): the engine is rebuilt from the
    /// new spec and its own snapshot, exactly as after a restart, so state
    /// carries over and nothing switches by itself; the new probes take over
    /// (the engine's commands give them their cadence).
    pub(super) async fn reconfigure(
        &mut self,
        config: Arc<Config>,
        probes: Probes,
        calendar: Option<Calendar>,
    ) {
        let now = Timestamp::now();
        if let Some(old) = std::mem::replace(&mut self.calendar, calendar) {
            old.shutdown().await;
        }
        let snapshot = self.engine.snapshot();
        let (engine, cmds) = Engine::restore(config.engine_spec(), snapshot, now);
        self.forget_series(&config);
        self.engine = engine;
        self.probes = probes;
        self.announcer.reconfigure(&config);
        self.config = config;
        self.persister.stepped(true);
        self.execute(cmds, now).await;
        self.persister.save(&self.engine, &self.progress);
        self.refresh_gauges();
    }

    /// Executes the restored engine's commands, writes the first snapshot
    /// (the agent is ready once it is on disk) and sets the gauges.
    /// Inputs queued before this start (accepted while no loop ran, or not
    /// yet in the restored snapshot) are applied next, by `catch_up`.
    pub(super) async fn start(&mut self, restore_cmds: Vec<Command>) {
        self.execute(restore_cmds, Timestamp::now()).await;
        self.persister.start(&self.engine, &self.progress).await;
        self.publish_persisted();
        self.refresh_gauges();
        self.catch_up().await;
        self.persister.save_if_due(&self.engine, &self.progress);
    }

    /// Set once the first snapshot is written (or the lease is known).
    pub(super) fn readiness(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.persister.readiness()
    }

    /// Shutdown has begun: report not ready.
    pub(super) fn stopping(&self) {
        self.persister.stop();
    }

    /// Shutdown, once every input has stopped: the last snapshot, awaited.
    pub(super) async fn flush(&mut self) {
        self.catch_up().await;
        self.persister.flush(&self.engine, &self.progress).await;
        self.publish_persisted();
    }

    /// Returns when the persister has settled another document (the loop
    /// then calls [`Loop::publish_persisted`]).
    pub(super) async fn persisted(&mut self) {
        self.persister.changed().await;
    }

    /// Whether a decision is held back until its document is saved.
    pub(super) fn holds_unpublished(&self) -> bool {
        self.unpublished.is_some()
    }

    /// Tells the actuator (and people) the decision held back, once the
    /// document holding it is settled.
    pub(super) fn publish_persisted(&mut self) {
        let Some(held) = self
            .unpublished
            .take_if(|u| self.persister.is_settled(u.version))
        else {
            return;
        };
        self.desired_tx.send_replace(held.desired);
        self.announcer.send(held.notices);
    }

    /// Applies every queued input after the last one applied, in id order.
    /// A store that cannot be read is retried at the next wake-up or poll.
    pub(super) async fn catch_up(&mut self) {
        while self.catch_up_some(usize::MAX).await {}
    }

    /// Applies at most `batches` batches of queued inputs, in id order.
    /// Returns whether more may be waiting (the last batch was full).
    async fn catch_up_some(&mut self, batches: usize) -> bool {
        for _ in 0..batches {
            let batch = match self
                .store
                .inputs_after(self.progress.inputs_applied, BATCH)
                .await
            {
                Ok(batch) => batch,
                Err(error) => {
                    if !self.queue_failing {
                        tracing::error!(message = "Cannot read the input queue; retrying every second.", %error);
                    }
                    self.queue_failing = true;
                    return false;
                }
            };
            if self.queue_failing {
                tracing::info!(message = "The input queue can be read again.");
                self.queue_failing = false;
            }
            let full = batch.len() == BATCH;
            for input in batch {
                self.apply(input).await;
            }
            if !full {
                return false;
            }
        }
        true
    }

    /// Applies one queued input: the alert's event time is checked against
    /// the newest one applied (a sender's late retry is ignored, see
    /// `alerts::order`), the engine steps, and whoever waits for it hears
    /// what it did.
    async fn apply(&mut self, stored: StoredInput) {
        let now = Timestamp::now();
        let StoredInput { id, input, .. } = stored;
        let changed = match &input {
            Input::OverrideCleared { .. } => self.engine.view(now).override_.is_some(),
            Input::FlapRelease { .. } => self.engine.view(now).flapping,
            _ => true,
        };
        let stale = input
            .event_time()
            .map(|(key, at)| (key.clone(), at))
            .filter(|(key, at)| {
                let stale = self.progress.alert_order.is_stale(key, *at);
                if !stale {
                    self.progress.alert_order.record(key, *at, now);
                }
                stale
            });
        self.progress.inputs_applied = id;
        self.persister.stepped(true);
        if let Some((key, at)) = stale {
            tracing::info!(message = "Ignored an alert update older than one already applied.", alert = %key, event_time = %at.to_rfc3339());
            self.audit_engine(AuditRecord::new(
                now,
                AuditKind::Alert,
                format!(
                    "{key}: ignored an update dated {} (a newer one was already applied)",
                    at.to_rfc3339()
                ),
            ));
        } else {
            let cmds = self.engine.step(input.into_event(), now);
            self.execute(cmds, now).await;
        }
        self.answer(
            id,
            Applied {
                changed: Some(changed),
            },
        );
    }

    /// Records what input `id` did and answers whoever waits for it (or for
    /// an earlier input, which this one is past).
    fn answer(&mut self, id: i64, applied: Applied) {
        self.outcomes.push_back((id, applied));
        if self.outcomes.len() > OUTCOMES {
            self.outcomes.pop_front();
        }
        let later = self.waiters.split_off(&(id + 1));
        for (waited, replies) in std::mem::replace(&mut self.waiters, later) {
            let applied = if waited == id {
                applied
            } else {
                self.outcome(waited)
            };
            for reply in replies {
                let _ = reply.send(applied);
            }
        }
    }

    /// What an applied input did, if still remembered.
    fn outcome(&self, id: i64) -> Applied {
        self.outcomes
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, a)| *a)
            .unwrap_or(Applied { changed: None })
    }

    /// Deletes applied inputs older than the retention, at most hourly. Only
    /// inputs a written snapshot records as applied are pruned.
    async fn prune_if_due(&mut self) {
        // The leader's document is the one whose cursor counts.
        if !self.lead.leader {
            return;
        }
        if self.last_prune.is_some_and(|t| t.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.last_prune = Some(Instant::now());
        let before = Timestamp::now().sub(inputs::RETENTION);
        match self
            .store
            .prune_inputs(self.persister.saved_inputs(), before)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(message = "Pruned applied inputs.", count = n),
            Err(error) => tracing::warn!(message = "Could not prune applied inputs.", %error),
        }
        self.progress.alert_order.forget_before(before);
        let audit_before = Timestamp::now().sub(self.config.raw.store.audit_retention.get());
        match self.store.prune_audit(audit_before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                message = "Pruned audit records past store.audit_retention.",
                count = n
            ),
            Err(error) => tracing::warn!(message = "Could not prune the audit log.", %error),
        }
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

    /// Answers an API request.
    pub(super) async fn control(&mut self, c: Control) {
        let now = Timestamp::now();
        match c {
            Control::Applied { id, reply } => {
                if !self.lead.leader || self.restore_pending {
                    // Only the leader's engine applies inputs for real: the
                    // reply is dropped, so the API answers "queued" at once.
                    drop(reply);
                } else if id <= self.progress.inputs_applied {
                    let _ = reply.send(self.outcome(id));
                } else {
                    self.waiters.entry(id).or_default().push(reply);
                    self.catch_up().await;
                }
            }
            Control::Status { reply } => {
                let _ = reply.send(self.status(now));
            }
            // The daemon's, not an account's (`reload.rs`): not sent here.
            Control::Reload { reply, .. } => {
                let _ = reply.send(Err(ReloadError::ShuttingDown));
            }
        }
    }

    fn status(&self, now: Timestamp) -> StatusDoc {
        let view = self.engine.view(now);
        let act = self.actuator.status();
        StatusDoc {
            version: env!("CARGO_PKG_VERSION"),
            account: self.account.clone(),
            mode: self.engine.mode(),
            dry_run: self.config.raw.agent.dry_run,
            leader: self.lead.leader,
            leader_id: self.lead.leader_id.clone(),
            epoch: self.lead.epoch,
            instance_id: self.config.instance_id(),
            desired: self.engine.desired().clone(),
            actual: act.actual.clone(),
            converged: act.converged,
            engine: view,
            actuator: act,
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
        // The engine's own words for the flap latch and the blind guard,
        // when it audited them in this step (see `Announcer::conditions`).
        let (mut flap_words, mut blind_words, mut conditions) = (None, None, false);
        // Sent once the decisions they announce are persisted.
        let mut notices = Vec::new();
        // Probes whose health gauge this step changed.
        let mut moved = Vec::new();
        for cmd in cmds {
            match cmd {
                Command::SetDesired {
                    desired,
                    cause,
                    reasons,
                } => {
                    notices.extend(self.decided(&desired, cause, &reasons, now));
                    desired_changed = Some(desired);
                }
                Command::ProbeCadence { probe, fast } => {
                    self.probes.set_fast(&probe, fast);
                }
                Command::SelfCheckNeeded { rule } => {
                    tracing::info!(message = "Rule due to fire is waiting for a self-check verdict.", rule = %rule);
                    self.probes.check_self_now();
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
                    moved.push(probe);
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
                    match kind {
                        AuditKind::Flap => flap_words = Some(message.clone()),
                        AuditKind::Blind => blind_words = Some(message.clone()),
                        _ => {}
                    }
                    conditions |= matches!(
                        kind,
                        AuditKind::Flap | AuditKind::Blind | AuditKind::Restore
                    );
                    self.audit_engine(AuditRecord::new(now, kind, message));
                }
                Command::AlertDropped { key } => {
                    // The first of an episode is audited (and logged) by the
                    // engine; each is counted, none logged above debug.
                    tracing::debug!(message = "Alert dropped: alerts.max_active reached.", alert = %key);
                    self.account_metrics.alerts_dropped_total.inc();
                }
            }
        }
        if conditions {
            notices.extend(self.announcer.conditions(
                &self.engine,
                (flap_words.as_deref(), blind_words.as_deref()),
                now,
                self.announcing(),
            ));
        }
        if let Some(desired) = desired_changed {
            // Durable before the actuator acts: a crash before the document
            // is written restores the old desired state, which is what
            // Talkdesk was told; after, the new one. A decision still held
            // back is replaced (this document holds the newer one), and its
            // notices go out with this one's.
            let version = self.persister.save(&self.engine, &self.progress);
            let mut held = self
                .unpublished
                .take()
                .map(|u| u.notices)
                .unwrap_or_default();
            held.extend(notices);
            self.unpublished = Some(Unpublished {
                version,
                desired,
                notices: held,
            });
            self.publish_persisted();
        } else {
            self.announcer.send(notices);
        }
        if gauged {
            self.refresh_gauges_after(&moved);
        }
    }

    /// A new desired state: logged with its reasons, counted, audited, and
    /// the notice announcing it (sent by the caller once it is persisted).
    fn decided(
        &mut self,
        desired: &Desired,
        cause: Cause,
        reasons: &[Reason],
        now: Timestamp,
    ) -> Option<Notice> {
        let reasons_text: Vec<String> = reasons.iter().map(Reason::line).collect();
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
        self.account_metrics
            .transitions_total
            .with_label_values(&[to, cause.as_str()])
            .inc();
        self.audit_engine(
            AuditRecord::new(
                now,
                AuditKind::Decision,
                format!(
                    "desired {desired} (cause {}): {}",
                    cause.as_str(),
                    reasons_text.join("; ")
                ),
            )
            .with_data(
                serde_json::json!({ "desired": desired, "cause": cause, "reasons": reasons }),
            ),
        );
        let announcing = self.announcing();
        self.announcer
            .decision(&self.engine, (desired, cause, reasons), now, announcing)
    }

    /// Whether this replica tells people what its engine does: the leader,
    /// once its engine is the restored leader's (a follower's engine decides
    /// nothing; see the module docs).
    fn announcing(&self) -> bool {
        self.lead.leader && !self.restore_pending
    }

    /// Audits what the engine did, on the leader only: a follower's engine
    /// decides nothing, and its transitions in the shared audit log would
    /// read as decisions (its logs still show them).
    fn audit_engine(&self, record: AuditRecord) {
        if self.lead.leader {
            self.audit.record(record);
        }
    }

    /// Probes and rules the new configuration no longer has: their gauges go,
    /// rather than showing a last value forever.
    fn forget_series(&self, new: &Config) {
        for p in self.config.probes.iter() {
            if !new.probes.iter().any(|n| n.id == p.id && n.kind == p.kind) {
                self.metrics.probes.forget_up(&p.id, p.kind);
            }
        }
        for r in &self.config.rules {
            if !new.rules.iter().any(|n| n.name == r.name) {
                let _ = self
                    .account_metrics
                    .rule_state
                    .remove_label_values(&[&r.name]);
            }
        }
    }

    /// Gauges that mirror engine state (probe health, rule state, desired,
    /// alerts, override, flap latch, blind guard): the one place they are
    /// set, from the engine's own view, so they are right after a restore too.
    fn refresh_gauges(&self) {
        for (id, kind, health) in self.engine.probe_gauges() {
            self.metrics.probes.set_up(id, kind, health.gauge());
        }
        self.refresh_engine_gauges();
    }

    /// After a step: the gauges of the probes it moved, and the rest. Work
    /// per step grows with the rules, never with the probes (at 10,000
    /// trunks, setting every probe's gauge on each of the 10,000 transitions
    /// of a start-up kept the loop busy for seconds while probe results
    /// queued up and the probes, blocked on the full channel, stopped).
    fn refresh_gauges_after(&self, moved: &[String]) {
        for id in moved {
            if let Some((kind, health)) = self.engine.probe_gauge(id) {
                self.metrics.probes.set_up(id, kind, health.gauge());
            }
        }
        self.refresh_engine_gauges();
    }

    /// Every gauge but the probes'.
    fn refresh_engine_gauges(&self) {
        // Not `Engine::view`: that clones every alert and explains every
        // rule, work that grew with the alert set on every step.
        let g = self.engine.gauges();
        let m = &self.account_metrics;
        for (name, phase) in g.rules {
            m.rule_state.with_label_values(&[name]).set(phase.gauge());
        }
        m.fallback_desired
            .set(i64::from(self.engine.desired().is_active()));
        m.alerts_active.set(g.alerts as i64);
        m.override_active.set(i64::from(g.override_active));
        m.flapping.set(i64::from(g.flapping));
        m.blind.set(i64::from(g.blind));
    }
}
