//! `continuity-agent run`: one process, one event loop.
//!
//! Start-up order: store (restore the engine snapshot) -> engine -> actuator
//! (starts from the restored desired state, so a restart does not toggle
//! anything) -> probes, self-check, calendar -> HTTP API -> ready.
//!
//! The loop: every input is an `Event` on one bounded channel (or a `Control`
//! request from the API). Each event goes through `Engine::step`; when the
//! desired state changes, the snapshot is written durably *before* the
//! actuator is told, then the commands are logged, counted and audited.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use super::control::{Control, ControlError, StatusDoc};
use crate::calendar::Calendar;
use crate::config::Config;
use crate::domain::{Desired, Timestamp};
use crate::engine::{Command, Engine, Event, Snapshot};
use crate::probe::{
    self,
    scheduler::SchedulerHandle,
    selfcheck::{self, SelfCheck},
};
use crate::server::{self, AppState};
use crate::store::{self, Store, StoreAudit};
use crate::talkdesk::actuator::{Actuator, ActuatorHandle, ActuatorOptions};
use crate::talkdesk::client::{Client, ClientConfig};
use crate::telemetry::{AuditKind, AuditRecord, AuditSink, Metrics};

/// Room for bursts (an Alertmanager batch, thousands of probe results)
/// without unbounded memory; producers wait when it is full.
pub const EVENT_QUEUE: usize = 4096;
/// Probe counters change constantly; they are persisted at most this often
/// when nothing else changed (losing them on a crash only restarts counting).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);
/// Upper bound on how long the loop sleeps without a deadline.
const MAX_IDLE: Duration = Duration::from_secs(1);
/// Events handled per wake-up before the loop looks at timers and the
/// snapshot again.
const BATCH: usize = 256;
/// After a fresh start, how long the actuator waits for every probe to leave
/// `unknown` before it applies the engine's decision anyway.
pub const STARTUP_GRACE: Duration = Duration::from_secs(60);
/// Probe-triggered self-checks run at most this often (a storm of failing
/// probes must not turn the canaries into a flood).
const SELF_CHECK_DEBOUNCE: Duration = Duration::from_secs(5);
/// Attempts to write a snapshot before reporting the store as failing.
const PERSIST_ATTEMPTS: u32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("store: {0}")]
    Store(#[from] store::StoreError),
    #[error("talkdesk client: {0}")]
    Talkdesk(String),
    #[error("probes: {0}")]
    Probe(String),
    #[error("calendar: {0}")]
    Calendar(#[from] crate::calendar::CalendarError),
    #[error("http server: {0}")]
    Server(#[from] std::io::Error),
    #[error("actuator: {0}")]
    Actuator(String),
}

/// Handles the running daemon exposes to tests and the demo.
#[derive(Clone)]
pub struct Running {
    pub metrics: Metrics,
    pub store: Arc<dyn Store>,
    /// Probe id -> type, for metric labels.
    pub probe_kinds: std::collections::BTreeMap<String, &'static str>,
    pub actuator: ActuatorHandle,
    pub events: mpsc::Sender<Event>,
    pub addr: std::net::SocketAddr,
}

impl Running {
    /// Whether the engine currently considers probe `id` up.
    pub fn probe_up(&self, id: &str) -> bool {
        self.probe_kinds
            .get(id)
            .is_some_and(|kind| self.metrics.probe_up.with_label_values(&[id, kind]).get() == 1)
    }
}

/// Runs the agent until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let (started_tx, _started_rx) = tokio::sync::oneshot::channel();
    run_with(config, listener, shutdown, started_tx).await
}

/// Like [`run`], reporting its handles once started (tests, demo).
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    started: tokio::sync::oneshot::Sender<Running>,
) -> Result<(), DaemonError> {
    let config = Arc::new(config);
    let cancel = CancellationToken::new();
    let metrics = Metrics::new();
    metrics.leader.set(1);
    init_series(&metrics, &config);
    let addr = listener.local_addr()?;

    // Store and audit first: everything after this is audited.
    let store = store::open(&config.raw.store.url).await?;
    let (audit, audit_writer) = StoreAudit::spawn(store.clone());
    let audit_dyn: Arc<dyn AuditSink> = audit.clone();

    // Engine, restored.
    let spec = config.engine_spec();
    let now = Timestamp::now();
    let (engine, mut restore_cmds, restored) = match store.load_snapshot().await? {
        Some(json) => match serde_json::from_value::<Snapshot>(json) {
            Ok(snap) => {
                let (e, c) = Engine::restore(spec, snap, now);
                (e, c, true)
            }
            Err(error) => {
                tracing::error!(message = "Stored engine snapshot is unreadable; starting fresh (Talkdesk is not changed until the engine has fresh evidence).", %error);
                audit_dyn.record(AuditRecord::new(
                    now,
                    AuditKind::Restore,
                    format!("stored snapshot unreadable ({error}); starting fresh"),
                ));
                (Engine::new(spec), Vec::new(), false)
            }
        },
        None => (Engine::new(spec), Vec::new(), false),
    };
    if restore_cmds.is_empty() {
        // A fresh engine: ask for the initial probe cadences (restore returns them itself).
        restore_cmds = engine.probe_cadences();
    }
    tracing::info!(message = "Engine ready.", desired = %engine.desired(), probes = config.probes.len(), rules = config.rules.len());
    audit_dyn.record(AuditRecord::new(
        now,
        AuditKind::Start,
        format!("agent started; desired state {}", engine.desired()),
    ));

    // Channels.
    let (events_tx, mut events_rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    let (control_tx, mut control_rx) = mpsc::channel::<Control>(64);
    let (desired_tx, desired_rx) = watch::channel(engine.desired().clone());

    // Actuator.
    let td = &config.raw.talkdesk;
    let secret = td
        .client_secret
        .clone()
        .unwrap_or_else(|| secrecy::SecretString::from(String::new()));
    let client_cfg =
        ClientConfig::from_config(td, secret).map_err(|e| DaemonError::Talkdesk(e.to_string()))?;
    let client = Client::new(client_cfg, metrics.clone(), audit_dyn.clone())
        .map_err(|e| DaemonError::Talkdesk(e.to_string()))?;
    let opts = ActuatorOptions {
        dry_run: config.raw.agent.dry_run,
        on_drift: td.on_drift,
        reconcile_interval: td.reconcile_interval.get(),
        adopt_ttl: config.raw.api.override_max_ttl.get(),
        ..ActuatorOptions::default()
    };
    let actuator = Actuator::new(
        client,
        opts,
        config.profiles.clone(),
        metrics.clone(),
        audit_dyn.clone(),
    );
    let actuator_handle = actuator.handle();
    // Started at once after a restore; on a fresh start only once the engine
    // has evidence (see `StartGate`), so a fallback that is on (an outage in
    // progress, a break-glass activation) is not switched off blindly.
    let mut pending_actuator = Some((actuator, desired_rx));
    let mut actuator_task: Option<tokio::task::JoinHandle<()>> = None;
    let (dead_tx, mut dead_rx) = mpsc::channel::<String>(1);
    let longest_for = config
        .rules
        .iter()
        .map(|r| r.for_)
        .max()
        .unwrap_or_default();
    let gate = StartGate {
        restored,
        since: tokio::time::Instant::now(),
        grace: STARTUP_GRACE + longest_for,
    };

    // Probes, self-check, calendar.
    let mut scheduled = Vec::with_capacity(config.raw.probes.len());
    for p in &config.raw.probes {
        scheduled.push(
            probe::build_scheduled(p).map_err(|e| DaemonError::Probe(format!("{}: {e}", p.id)))?,
        );
    }
    let scheduler = probe::scheduler::spawn(
        scheduled,
        events_tx.clone(),
        metrics.clone(),
        cancel.child_token(),
    );
    let self_check_now = Arc::new(tokio::sync::Notify::new());
    if !config.raw.engine.self_check.is_empty() {
        let check = SelfCheck::new(&config.raw.engine.self_check).map_err(DaemonError::Probe)?;
        selfcheck::spawn_with_trigger(
            check,
            config.raw.engine.self_check_interval.get(),
            events_tx.clone(),
            cancel.child_token(),
            self_check_now.clone(),
        );
    }
    let calendar = Calendar::start(
        &config.raw.maintenance,
        &config.raw.drills,
        events_tx.clone(),
    )
    .await?;

    // HTTP API.
    let ready = Arc::new(AtomicBool::new(false));
    let alerts = crate::alerts::AlertsState::new(
        &config,
        events_tx.clone(),
        metrics.clone(),
        Timestamp::now,
    );
    let state = AppState {
        config: config.clone(),
        tokens: alerts.api_tokens(),
        metrics: metrics.clone(),
        store: store.clone(),
        control: control_tx.clone(),
        ready: ready.clone(),
    };
    let app = server::router(state).merge(crate::alerts::router(alerts));
    let server_cancel = cancel.clone();
    let server_task = tokio::spawn(server::serve(listener, app, async move {
        server_cancel.cancelled().await
    }));

    let mut lp = Loop {
        config: config.clone(),
        engine,
        store: store.clone(),
        audit: audit_dyn.clone(),
        metrics: metrics.clone(),
        desired_tx,
        scheduler,
        actuator: actuator_handle.clone(),
        ready: ready.clone(),
        self_check_now,
        last_self_check_trigger: None,
        dirty: false,
        must_persist: false,
        persisted: true,
        last_snapshot: tokio::time::Instant::now(),
    };
    lp.execute(restore_cmds, Timestamp::now()).await;
    lp.persist().await;
    lp.refresh_gauges(Timestamp::now());
    ready.store(lp.persisted, Ordering::Release);
    let probe_kinds = config
        .probes
        .iter()
        .map(|p| (p.id.clone(), p.kind))
        .collect();
    let _ = started.send(Running {
        metrics: metrics.clone(),
        store: store.clone(),
        probe_kinds,
        actuator: actuator_handle,
        events: events_tx.clone(),
        addr,
    });
    tracing::info!(message = "continuity-agent is running.", listen = %addr, dry_run = config.raw.agent.dry_run);

    let stop = cancel.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop.cancel();
    });
    let mut fatal: Option<String> = None;
    loop {
        if pending_actuator.is_some()
            && gate.open(&lp)
            && let Some((actuator, rx)) = pending_actuator.take()
        {
            if !gate.restored {
                tracing::info!(message = "Actuator starting after fresh start.", desired = %lp.engine.desired());
            }
            actuator_task = Some(spawn_supervised(
                actuator,
                rx,
                events_tx.clone(),
                cancel.child_token(),
                dead_tx.clone(),
            ));
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
            _ = cancel.cancelled() => break,
            Some(why) = dead_rx.recv() => {
                tracing::error!(message = "The actuator stopped unexpectedly; exiting so a supervisor restarts the agent.", reason = %why);
                lp.audit.record(AuditRecord::new(Timestamp::now(), AuditKind::Actuation, format!("actuator stopped unexpectedly: {why}")));
                fatal = Some(why);
                break;
            }
            Some(c) = control_rx.recv() => lp.control(c).await,
            Some(ev) = events_rx.recv() => {
                lp.handle(ev).await;
                // Drain what is already queued (an Alertmanager batch, a burst of
                // probe results) before the next snapshot write.
                for _ in 0..BATCH {
                    match events_rx.try_recv() {
                        Ok(ev) => lp.handle(ev).await,
                        Err(_) => break,
                    }
                }
            }
            _ = tokio::time::sleep(sleep_for) => lp.handle(Event::Tick).await,
        }
        if lp.must_persist || (lp.dirty && lp.last_snapshot.elapsed() >= SNAPSHOT_EVERY) {
            lp.persist().await;
        }
    }

    // Shutdown. Inputs stop first; requests already accepted (a webhook that
    // got 202, an override in flight) are still applied and persisted.
    tracing::info!(message = "Shutting down.");
    ready.store(false, Ordering::Release);
    cancel.cancel();
    let mut server_task = server_task;
    loop {
        tokio::select! {
            biased;
            _ = &mut server_task => break,
            Some(c) = control_rx.recv() => lp.control(c).await,
            Some(ev) = events_rx.recv() => lp.handle(ev).await,
        }
    }
    calendar.shutdown().await;
    while let Ok(ev) = events_rx.try_recv() {
        lp.handle(ev).await;
    }
    // The actuator finishes its in-flight Talkdesk call, then returns. One
    // that never started (fresh start, gate still closed) is dropped: it holds
    // an audit handle the writer below waits for.
    drop(pending_actuator);
    if let Some(task) = actuator_task {
        let _ = task.await;
    }
    lp.persist().await;
    audit_dyn.record(AuditRecord::new(
        Timestamp::now(),
        AuditKind::Stop,
        "agent stopped",
    ));
    drop(lp);
    drop(audit_dyn);
    drop(audit);
    let _ = audit_writer.await;
    match fatal {
        Some(why) => Err(DaemonError::Actuator(why)),
        None => Ok(()),
    }
}

/// When the actuator may start. After a restore at once (the restored
/// decision is what Talkdesk was last told). After a fresh start (no or an
/// unreadable snapshot) only once the engine has evidence, so a fallback that
/// is on (an outage in progress, a break-glass activation) is not switched
/// off only to be switched on again seconds later: a decision to switch on,
/// or `Engine::has_fresh_evidence` (every probe out of `unknown`, no rule
/// pending), or the grace period (`STARTUP_GRACE` plus the longest rule
/// `for`) passed.
struct StartGate {
    restored: bool,
    since: tokio::time::Instant,
    grace: Duration,
}

impl StartGate {
    fn open(&self, lp: &Loop) -> bool {
        self.restored
            || lp.engine.desired().is_active()
            || lp.engine.has_fresh_evidence()
            || self.since.elapsed() >= self.grace
    }
}

/// Runs the actuator and reports on `dead` if it ends while the agent is not
/// shutting down (a panic or an early return): the agent must not keep
/// deciding while nothing applies the decisions.
fn spawn_supervised(
    actuator: Actuator,
    desired: watch::Receiver<Desired>,
    events: mpsc::Sender<Event>,
    token: CancellationToken,
    dead: mpsc::Sender<String>,
) -> tokio::task::JoinHandle<()> {
    let watch_token = token.clone();
    tokio::spawn(async move {
        let result = tokio::spawn(actuator.run(desired, events, token)).await;
        if !watch_token.is_cancelled() {
            let why = match result {
                Ok(()) => "the actuator returned".to_string(),
                Err(e) if e.is_panic() => "the actuator panicked".to_string(),
                Err(e) => format!("the actuator task failed: {e}"),
            };
            let _ = dead.send(why).await;
        }
    })
}

struct Loop {
    config: Arc<Config>,
    engine: Engine,
    store: Arc<dyn Store>,
    audit: Arc<dyn AuditSink>,
    metrics: Metrics,
    desired_tx: watch::Sender<Desired>,
    scheduler: SchedulerHandle,
    actuator: ActuatorHandle,
    /// `/readyz`: false while the snapshot cannot be written.
    ready: Arc<AtomicBool>,
    /// Wakes the self-check when a probe starts failing (debounced).
    self_check_now: Arc<tokio::sync::Notify>,
    last_self_check_trigger: Option<tokio::time::Instant>,
    /// State changed since the last snapshot (probe counters: written lazily).
    dirty: bool,
    /// An input that must survive a crash changed (alert, override, window,
    /// drill, blind guard, flap release): write the snapshot now.
    must_persist: bool,
    /// Whether the last snapshot write succeeded.
    persisted: bool,
    last_snapshot: tokio::time::Instant,
}

impl Loop {
    async fn handle(&mut self, ev: Event) {
        let now = Timestamp::now();
        // Inputs that senders will not repeat (a PagerDuty "triggered", an
        // override, a calendar job) must survive a crash: written at once.
        // Probe results and ticks only move counters and are written lazily.
        let durable = !matches!(
            ev,
            Event::ProbeResult { .. } | Event::Tick | Event::ActualObserved(_)
        );
        let cmds = self.engine.step(ev, now);
        self.dirty = true;
        self.must_persist |= durable;
        self.execute(cmds, now).await;
    }

    /// Applies an operator's request. The change is persisted before anything
    /// acts on it; if it cannot be persisted it is rolled back and refused
    /// (503), so an acknowledged override is never lost.
    async fn control(&mut self, c: Control) {
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

    async fn apply_durably(&mut self, ev: Event, now: Timestamp) -> Result<(), ControlError> {
        let before = self.engine.clone();
        let cmds = self.engine.step(ev, now);
        if !self.persist().await {
            self.engine = before;
            return Err(ControlError::Unavailable(
                "the change could not be written to the store; nothing was applied".into(),
            ));
        }
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
                    self.scheduler.set_fast(&probe, fast);
                    if fast {
                        self.trigger_self_check();
                    }
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
            self.persist().await;
            self.desired_tx.send_replace(desired);
        }
        if gauged {
            self.refresh_gauges(now);
        }
    }

    /// A probe started changing state: confirm at once that the agent can
    /// still reach its canaries, at most once per `SELF_CHECK_DEBOUNCE`.
    fn trigger_self_check(&mut self) {
        let due = self
            .last_self_check_trigger
            .is_none_or(|t| t.elapsed() >= SELF_CHECK_DEBOUNCE);
        if due {
            self.last_self_check_trigger = Some(tokio::time::Instant::now());
            self.self_check_now.notify_one();
        }
    }

    /// Writes the snapshot, retrying briefly. On failure the agent reports
    /// not ready (`/readyz` 503) and audits it; decisions still reach Talkdesk
    /// (dropping calls because a disk is full would be worse), but operator
    /// changes are refused until the store works again.
    async fn persist(&mut self) -> bool {
        let json = match serde_json::to_value(self.engine.snapshot()) {
            Ok(j) => j,
            Err(error) => {
                tracing::error!(message = "Failed to serialize the engine snapshot.", %error);
                return false;
            }
        };
        let mut last_error = String::new();
        for attempt in 0..PERSIST_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
            }
            match self.store.save_snapshot(json.clone()).await {
                Ok(()) => {
                    self.dirty = false;
                    self.must_persist = false;
                    self.last_snapshot = tokio::time::Instant::now();
                    if !self.persisted {
                        tracing::info!(message = "The store accepts writes again.");
                        self.ready.store(true, Ordering::Release);
                    }
                    self.persisted = true;
                    return true;
                }
                Err(error) => last_error = error.to_string(),
            }
        }
        if self.persisted {
            tracing::error!(message = "Failed to persist the engine snapshot; reporting not ready.", error = %last_error);
            self.audit.record(AuditRecord::new(
                Timestamp::now(),
                AuditKind::Store,
                format!("engine snapshot not persisted: {last_error}"),
            ));
        }
        self.persisted = false;
        self.ready.store(false, Ordering::Release);
        false
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

/// Creates every counter and histogram series whose labels are known from the
/// configuration, at zero, so dashboards and `absent()` alerts see them before
/// the first event.
fn init_series(m: &Metrics, config: &Config) {
    for to in ["active", "inactive"] {
        for cause in crate::engine::Cause::ALL {
            m.transitions_total.with_label_values(&[to, cause.as_str()]);
        }
    }
    // probe_up and rule_state are set from the engine at start (refresh_gauges).
    for p in &config.probes {
        m.probe_duration_seconds.with_label_values(&[&p.id, p.kind]);
        for result in ["success", "failure"] {
            m.probe_results_total.with_label_values(&[&p.id, result]);
        }
    }
    for (source, _) in config.raw.webhooks.sources() {
        m.alerts_received_total
            .with_label_values(&[source, "accepted"]);
    }
    for op in [
        "token",
        "get_settings",
        "put_settings",
        "get_activation",
        "put_activation",
    ] {
        m.talkdesk_request_duration_seconds.with_label_values(&[op]);
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
