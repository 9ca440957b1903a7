//! `continuity-agent run`: the story of one process.
//!
//! [`run_with`] reads top to bottom: open the store -> restore the engine
//! (`restore.rs`) -> build the channels and the actuator -> spawn the inputs
//! (`inputs.rs`: probes, self-check, calendar) -> serve the HTTP API (its
//! webhooks and operator changes go to the store's input queue, then wake the
//! loop) -> run the event loop (`event_loop.rs`) -> drain. The actuator starts from the
//! restored desired state, so a restart does not toggle anything; after a
//! fresh start it waits for evidence (`gate.rs`), and it runs supervised
//! (`supervise.rs`: the agent exits 1 if it dies). SIGHUP and
//! `POST /-/reload` reload the configuration in the loop (`reload.rs`); the
//! HTTP API is served behind a front that a reload can swap it in. On
//! shutdown the inputs stop, requests already accepted are still applied,
//! the actuator finishes its in-flight call, then the snapshot and the audit
//! queue are flushed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::event_loop::{self, Inbox, Loop, Parts};
use super::gate::StartGate;
use super::inputs::spawn_inputs;
use super::persist::Persister;
use super::reload::Reloader;
use super::restore::{Restored, restore};
use super::supervise::Supervisor;
use crate::config::Config;
use crate::domain::{Desired, Timestamp};
use crate::engine::{Engine, Event};
use crate::server::control::{Control, ReloadError};
use crate::server::{self, AppState};
use crate::store::{self, Store, StoreAudit};
use crate::talkdesk::actuator::{Actuator, ActuatorHandle, ActuatorOptions, Reconfigure};
use crate::talkdesk::client::Client;
use crate::telemetry::{AuditKind, AuditRecord, AuditSink, KnownLabels, Metrics};

/// Room for bursts (an Alertmanager batch, thousands of probe results)
/// without unbounded memory; producers wait when it is full.
pub const EVENT_QUEUE: usize = 4096;
/// API requests waiting for the loop; handlers wait when it is full.
const CONTROL_QUEUE: usize = 64;

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

/// What every component is handed: the configuration, the metrics, the audit
/// sink.
pub(super) struct Shared {
    pub config: Arc<Config>,
    pub metrics: Metrics,
    pub audit: Arc<dyn AuditSink>,
}

/// Runs the agent until `shutdown` completes.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let (started_tx, _started_rx) = oneshot::channel();
    run_with(config, listener, shutdown, started_tx).await
}

/// Like [`run`], reporting its handles once started (tests, demo).
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    started: oneshot::Sender<Running>,
) -> Result<(), DaemonError> {
    let addr = listener.local_addr()?;
    let metrics = Metrics::new();
    metrics.leader.set(1);
    metrics.init_series(&known_labels(&config));

    // Store and audit first: everything after this is audited.
    let store = store::open(&config.raw.store).await?;
    let (audit, audit_writer) = StoreAudit::spawn(store.clone());
    let shared = Shared {
        config: Arc::new(config),
        metrics,
        audit: audit.clone(),
    };
    let cancel = CancellationToken::new();

    let Restored {
        engine,
        commands,
        from_snapshot,
        progress,
    } = restore(&shared.config, &*store, &*shared.audit).await?;
    let mut built = build(&shared, &engine, from_snapshot, &cancel)?;
    // Inputs other replicas append wake this loop too.
    store.watch_inputs(built.inbox.wake.clone(), cancel.clone());
    let inputs = spawn_inputs(&shared.config, &built.events, &shared.metrics, &cancel).await?;
    let persister = Persister::new(store.clone(), shared.audit.clone());
    let api_parts = ApiParts {
        store: store.clone(),
        // Webhooks and operator changes are durable in the store before their 2xx.
        queue: store::inputs::Queue::new(store.clone(), built.inbox.wake.clone()),
        control: built.control.clone(),
        actuator: built.actuator.clone(),
        ready: persister.readiness(),
        metrics: shared.metrics.clone(),
    };
    let (server, api) = serve(listener, &shared.config, &api_parts, &cancel);
    let mut reloader = Reloader {
        events: built.events.clone(),
        cancel: cancel.clone(),
        inputs_stop: inputs.stop,
        calendar: inputs.calendar,
        actuator: built.reconfigure.clone(),
        api,
        api_parts,
    };
    reload_on_sighup(built.control.clone(), &cancel);
    // The loop takes the engine over; the agent is ready once the first
    // snapshot is on disk.
    let mut lp = Loop::new(
        &shared,
        engine,
        Parts {
            persister,
            desired_tx: built.desired,
            probes: inputs.probes,
            actuator: built.actuator.clone(),
            store: store.clone(),
            progress,
        },
    );
    lp.start(commands).await;
    let _ = started.send(Running {
        metrics: shared.metrics.clone(),
        store: store.clone(),
        probe_kinds: probe_kinds(&shared.config),
        actuator: built.actuator,
        events: built.events.clone(),
        addr,
    });
    tracing::info!(message = "continuity-agent is running.", listen = %addr, dry_run = shared.config.raw.agent.dry_run);
    cancel_on(shutdown, cancel.clone());

    // Until shutdown (or the actuator dies), then drain.
    let fatal = event_loop::run(
        &mut lp,
        &mut built.inbox,
        &mut built.supervisor,
        &built.gate,
        &mut reloader,
        &cancel,
    )
    .await;
    drain(
        &mut lp,
        &mut built.inbox,
        server,
        reloader.into_calendar(),
        built.supervisor,
        &cancel,
    )
    .await;

    shared.audit.record(AuditRecord::new(
        Timestamp::now(),
        AuditKind::Stop,
        "agent stopped",
    ));
    // The audit writer ends once every handle on the queue is gone.
    drop(lp);
    drop(shared);
    drop(audit);
    let _ = audit_writer.await;
    match fatal {
        Some(why) => Err(DaemonError::Actuator(why)),
        None => Ok(()),
    }
}

/// The channels and the (not yet started) actuator around the restored engine.
struct Built {
    /// Every input sends here.
    events: mpsc::Sender<Event>,
    /// API requests that need an answer (the server's end).
    control: mpsc::Sender<Control>,
    inbox: Inbox,
    /// The loop publishes the desired state here, after persisting it.
    desired: watch::Sender<Desired>,
    supervisor: Supervisor,
    actuator: ActuatorHandle,
    /// A reload hands the running actuator its new client, options, profiles.
    reconfigure: mpsc::Sender<Reconfigure>,
    gate: StartGate,
}

fn build(
    shared: &Shared,
    engine: &Engine,
    from_snapshot: bool,
    cancel: &CancellationToken,
) -> Result<Built, DaemonError> {
    let (events_tx, events_rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    let (control_tx, control_rx) = mpsc::channel::<Control>(CONTROL_QUEUE);
    let (desired_tx, desired_rx) = watch::channel(engine.desired().clone());
    let (reconfigure_tx, reconfigure_rx) = mpsc::channel(1);
    // After a restore, what Talkdesk had when the agent last saw it: the
    // actuator applies `on_drift` to a change made while it was away.
    let last_seen = from_snapshot
        .then(|| engine.view(Timestamp::now()).actual)
        .flatten();
    let actuator = build_actuator(shared)?
        .with_reconfigure(reconfigure_rx)
        .with_last_seen(last_seen);
    let handle = actuator.handle();
    // Started at once after a restore; on a fresh start only once the engine
    // has evidence (see `StartGate`), so a fallback that is on (an outage in
    // progress, a break-glass activation) is not switched off blindly.
    let supervisor = Supervisor::new(actuator, desired_rx, events_tx.clone(), cancel.clone());
    Ok(Built {
        events: events_tx,
        control: control_tx,
        inbox: Inbox {
            events: events_rx,
            control: control_rx,
            wake: Arc::new(Notify::new()),
        },
        desired: desired_tx,
        supervisor,
        actuator: handle,
        reconfigure: reconfigure_tx,
        gate: StartGate::new(from_snapshot, &shared.config),
    })
}

/// The actuator with its Talkdesk client, from the `[talkdesk]` section.
fn build_actuator(shared: &Shared) -> Result<Actuator, DaemonError> {
    let config = &shared.config;
    let td = &config.raw.talkdesk;
    let client = Client::from_config(td, shared.metrics.clone(), shared.audit.clone())
        .map_err(|e| DaemonError::Talkdesk(e.to_string()))?;
    let opts = ActuatorOptions::from_config(td, config.raw.agent.dry_run);
    Ok(Actuator::new(
        client,
        opts,
        config.profiles.clone(),
        shared.metrics.clone(),
        shared.audit.clone(),
    ))
}

/// What the HTTP API is built from besides the configuration, kept so a
/// reload can build it again.
pub(super) struct ApiParts {
    pub store: Arc<dyn Store>,
    pub queue: store::inputs::Queue,
    pub control: mpsc::Sender<Control>,
    pub actuator: ActuatorHandle,
    pub ready: Arc<AtomicBool>,
    pub metrics: Metrics,
}

impl ApiParts {
    /// The rest of the API and the webhook receivers under `config` (tokens,
    /// webhook credentials, limits).
    pub(super) fn router(&self, config: &Arc<Config>) -> Router {
        let alerts = crate::alerts::AlertsState::new(
            config,
            self.queue.clone(),
            self.metrics.clone(),
            Timestamp::now,
        );
        let state = AppState {
            config: config.clone(),
            tokens: alerts.api_tokens(),
            metrics: self.metrics.clone(),
            store: self.store.clone(),
            control: self.control.clone(),
            queue: self.queue.clone(),
            ready: self.ready.clone(),
            actuator: self.actuator.clone(),
        };
        server::router(state).merge(crate::alerts::router(alerts))
    }
}

/// Starts the HTTP API; it stops accepting when `cancel` fires and ends once
/// accepted requests are answered. Each request is served by the API last
/// sent on the returned channel, so a reload swaps it without closing the
/// socket (requests in flight finish on the API they started on).
fn serve(
    listener: TcpListener,
    config: &Arc<Config>,
    parts: &ApiParts,
    cancel: &CancellationToken,
) -> (JoinHandle<std::io::Result<()>>, watch::Sender<Router>) {
    let (api_tx, api_rx) = watch::channel(parts.router(config));
    let front = Router::new().fallback(move |req: axum::extract::Request| {
        let mut api = api_rx.borrow().clone();
        async move {
            use tower_service::Service;
            match api.call(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }
    });
    let cancel = cancel.clone();
    let task = tokio::spawn(server::serve(listener, front, async move {
        cancel.cancelled().await
    }));
    (task, api_tx)
}

/// SIGHUP asks the loop for a reload, like `POST /-/reload` (the result is
/// logged, counted and audited there).
fn reload_on_sighup(control: mpsc::Sender<Control>, cancel: &CancellationToken) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(error) => {
                tracing::warn!(message = "Cannot listen for SIGHUP; reload with POST /-/reload.", %error);
                return;
            }
        };
        let cancel = cancel.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    Some(()) = hup.recv() => {
                        let (reply, rx) = oneshot::channel();
                        let actor = "SIGHUP".to_string();
                        if control.send(Control::Reload { actor, reply }).await.is_err() {
                            break;
                        }
                        let _: Result<Result<_, ReloadError>, _> = rx.await;
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (control, cancel);
}

/// Cancels everything once `shutdown` completes.
fn cancel_on(shutdown: impl Future<Output = ()> + Send + 'static, cancel: CancellationToken) {
    tokio::spawn(async move {
        shutdown.await;
        cancel.cancel();
    });
}

/// Shutdown. Inputs stop first; requests already accepted (a webhook that got
/// 202, an override in flight) are still applied and persisted. Then the
/// actuator finishes its in-flight call and the snapshot is written.
async fn drain(
    lp: &mut Loop,
    inbox: &mut Inbox,
    mut server: JoinHandle<std::io::Result<()>>,
    calendar: crate::calendar::Calendar,
    supervisor: Supervisor,
    cancel: &CancellationToken,
) {
    tracing::info!(message = "Shutting down.");
    lp.stopping();
    cancel.cancel();
    loop {
        tokio::select! {
            biased;
            _ = &mut server => break,
            Some(c) = inbox.control.recv() => lp.control(c).await,
            Some(ev) = inbox.events.recv() => lp.handle(ev).await,
        }
    }
    calendar.shutdown().await;
    while let Ok(ev) = inbox.events.try_recv() {
        lp.handle(ev).await;
    }
    supervisor.finish().await;
    lp.flush().await;
}

fn probe_kinds(config: &Config) -> std::collections::BTreeMap<String, &'static str> {
    config
        .probes
        .iter()
        .map(|p| (p.id.clone(), p.kind))
        .collect()
}

/// The metric label values the configuration fixes, so every series exists
/// (at zero) before the first event.
pub(super) fn known_labels(config: &Config) -> KnownLabels<'_> {
    KnownLabels {
        probes: config
            .probes
            .iter()
            .map(|p| (p.id.as_str(), p.kind))
            .collect(),
        causes: crate::engine::Cause::ALL.map(|c| c.as_str()).to_vec(),
        webhook_sources: config
            .raw
            .webhooks
            .sources()
            .into_iter()
            .map(|(source, _)| source)
            .collect(),
        talkdesk_ops: crate::talkdesk::Op::ALL.map(|op| op.as_str()).to_vec(),
    }
}
