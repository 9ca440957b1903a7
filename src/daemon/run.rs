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

use super::control::{Control, StatusDoc};
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
use crate::telemetry::{AuditRecord, AuditSink, Metrics};

/// Room for bursts (an Alertmanager batch, thousands of probe results)
/// without unbounded memory; producers wait when it is full.
pub const EVENT_QUEUE: usize = 4096;
/// Probe counters change constantly; they are persisted at most this often
/// when nothing else changed (losing them on a crash only restarts counting).
const SNAPSHOT_EVERY: Duration = Duration::from_secs(10);
/// Upper bound on how long the loop sleeps without a deadline.
const MAX_IDLE: Duration = Duration::from_secs(1);

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
    let (engine, mut restore_cmds) = match store.load_snapshot().await? {
        Some(json) => match serde_json::from_value::<Snapshot>(json) {
            Ok(snap) => Engine::restore(spec, snap, now),
            Err(error) => {
                tracing::error!(message = "Stored engine snapshot is unreadable; starting fresh.", %error);
                (Engine::new(spec), Vec::new())
            }
        },
        None => (Engine::new(spec), Vec::new()),
    };
    if restore_cmds.is_empty() {
        // A fresh engine: ask for the initial probe cadences (restore returns them itself).
        restore_cmds = engine.probe_cadences();
    }
    tracing::info!(message = "Engine ready.", desired = %engine.desired(), probes = config.probes.len(), rules = config.rules.len());
    audit_dyn.record(AuditRecord::new(
        now,
        "start",
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
    let actuator_task =
        tokio::spawn(actuator.run(desired_rx, events_tx.clone(), cancel.child_token()));

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
    if !config.raw.engine.self_check.is_empty() {
        let check = SelfCheck::new(&config.raw.engine.self_check).map_err(DaemonError::Probe)?;
        selfcheck::spawn(
            check,
            config.raw.engine.self_check_interval.get(),
            events_tx.clone(),
            cancel.child_token(),
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
        dirty: false,
        last_snapshot: tokio::time::Instant::now(),
    };
    lp.execute(restore_cmds, Timestamp::now()).await;
    lp.persist().await;
    lp.refresh_gauges(Timestamp::now());
    ready.store(true, Ordering::Release);
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
    loop {
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
            Some(c) = control_rx.recv() => lp.control(c).await,
            Some(ev) = events_rx.recv() => lp.handle(ev).await,
            _ = tokio::time::sleep(sleep_for) => lp.handle(Event::Tick).await,
        }
        if lp.dirty && lp.last_snapshot.elapsed() >= SNAPSHOT_EVERY {
            lp.persist().await;
        }
    }

    // Shutdown: stop inputs, let the actuator finish its in-flight call, flush.
    tracing::info!(message = "Shutting down.");
    ready.store(false, Ordering::Release);
    calendar.shutdown().await;
    let _ = actuator_task.await;
    lp.persist().await;
    audit_dyn.record(AuditRecord::new(Timestamp::now(), "stop", "agent stopped"));
    drop(lp);
    drop(audit_dyn);
    drop(audit);
    let _ = audit_writer.await;
    let _ = server_task.await;
    Ok(())
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
    dirty: bool,
    last_snapshot: tokio::time::Instant,
}

impl Loop {
    async fn handle(&mut self, ev: Event) {
        let now = Timestamp::now();
        let cmds = self.engine.step(ev, now);
        self.dirty = true;
        self.execute(cmds, now).await;
    }

    async fn control(&mut self, c: Control) {
        let now = Timestamp::now();
        match c {
            Control::SetOverride { ov, reply } => {
                let cmds = self.engine.step(Event::OverrideSet(ov), now);
                self.execute(cmds, now).await;
                self.persist().await;
                let _ = reply.send(Ok(()));
            }
            Control::ClearOverride {
                actor,
                reason,
                reply,
            } => {
                let had = self.engine.view(now).override_.is_some();
                let cmds = self
                    .engine
                    .step(Event::OverrideCleared { actor, reason }, now);
                self.execute(cmds, now).await;
                self.persist().await;
                let _ = reply.send(Ok(had));
            }
            Control::Status { reply } => {
                let _ = reply.send(self.status(now));
            }
        }
    }

    fn status(&self, now: Timestamp) -> StatusDoc {
        let view = self.engine.view(now);
        let act = self.actuator.status();
        let mode = if view.override_.is_some() {
            "override"
        } else if view.flapping {
            "flapping"
        } else if !view.drills.is_empty() {
            "drill"
        } else if view.blind.is_some() {
            "blind"
        } else if !view.maintenance.is_empty() {
            "maintenance"
        } else {
            "automatic"
        }
        .to_string();
        StatusDoc {
            version: env!("CARGO_PKG_VERSION"),
            mode,
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
                    self.metrics
                        .fallback_desired
                        .set(i64::from(desired.is_active()));
                    self.audit.record(
                        AuditRecord::new(
                            now,
                            "decision",
                            format!("desired {desired} (cause {}): {}", cause.as_str(), reasons_text.join("; ")),
                        )
                            .with_data(serde_json::json!({ "desired": desired, "cause": cause, "reasons": reasons })),
                    );
                    desired_changed = Some(desired);
                }
                Command::ProbeCadence { probe, fast } => {
                    self.scheduler.set_fast(&probe, fast);
                }
                Command::ProbeTransition {
                    probe,
                    from,
                    to,
                    detail,
                } => {
                    tracing::info!(message = "Probe state changed.", probe = %probe, from = %from, to = %to, detail = %detail);
                    if let Some(p) = self.config.probes.iter().find(|p| p.id == probe) {
                        self.metrics
                            .probe_up
                            .with_label_values(&[&probe, p.kind])
                            .set(to.gauge());
                    }
                    self.audit.record(
                        AuditRecord::new(now, "probe", format!("{probe}: {from} -> {to} ({detail})"))
                            .with_data(serde_json::json!({ "probe": probe, "from": from, "to": to, "detail": detail })),
                    );
                }
                Command::RuleTransition { rule, from, to } => {
                    tracing::info!(message = "Rule state changed.", rule = %rule, from = %from, to = %to);
                    self.metrics
                        .rule_state
                        .with_label_values(&[&rule])
                        .set(rule_gauge(&to));
                    self.audit.record(
                        AuditRecord::new(now, "rule", format!("{rule}: {from} -> {to}"))
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
        self.refresh_gauges(now);
    }

    async fn persist(&mut self) {
        let snap = self.engine.snapshot();
        match serde_json::to_value(&snap) {
            Ok(json) => match self.store.save_snapshot(json).await {
                Ok(()) => {
                    self.dirty = false;
                    self.last_snapshot = tokio::time::Instant::now();
                }
                Err(error) => {
                    tracing::error!(message = "Failed to persist the engine snapshot.", %error)
                }
            },
            Err(error) => {
                tracing::error!(message = "Failed to serialize the engine snapshot.", %error)
            }
        }
    }

    fn refresh_gauges(&self, now: Timestamp) {
        let view = self.engine.view(now);
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

/// Creates every series whose labels are known from the configuration, at
/// zero (or -1 for unknown probe health), so dashboards and `absent()` alerts
/// see them before the first event.
fn init_series(m: &Metrics, config: &Config) {
    for to in ["active", "inactive"] {
        for cause in crate::engine::Cause::ALL {
            m.transitions_total.with_label_values(&[to, cause.as_str()]);
        }
    }
    for p in &config.probes {
        m.probe_up.with_label_values(&[&p.id, p.kind]).set(-1);
        m.probe_duration_seconds.with_label_values(&[&p.id, p.kind]);
        for result in ["success", "failure"] {
            m.probe_results_total.with_label_values(&[&p.id, result]);
        }
    }
    for r in &config.rules {
        m.rule_state.with_label_values(&[&r.name]).set(0);
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

fn rule_gauge(state: &str) -> i64 {
    match state {
        "pending" => 1,
        "firing" => 2,
        "clearing" => 3,
        _ => 0,
    }
}
