//! `continuity-agent run`: the story of one process.
//!
//! [`run_with`] reads top to bottom: open the store -> claim the lease
//! (`cluster`: a lone replica leads at once) -> restore the engine
//! (`restore.rs`) -> build the channels and the actuator -> spawn the inputs
//! (`inputs.rs`: probes, self-check, calendar) -> serve the HTTP API -> run
//! the event loop (`event_loop.rs`) -> drain. The actuator runs only while
//! this replica leads, and every write it makes passes the fence
//! (`cluster::Fence`). It starts from the restored desired state, so a
//! restart or a takeover does not toggle anything; after a fresh start it
//! waits for evidence (`gate.rs`), and it runs supervised (`supervise.rs`:
//! the agent exits 1 if it dies). On shutdown the inputs
//! stop, requests already accepted are still applied, the actuator finishes
//! its in-flight call, then the snapshot and the audit queue are flushed.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::event_loop::{self, Inbox, Loop};
use super::inputs::spawn_inputs;
use super::persist::Persister;
use super::restore::restore;
use super::supervise::Supervisor;
use crate::cluster::{self, Fence, Leadership, LeadershipTask};
use crate::config::Config;
use crate::domain::{Desired, Timestamp};
use crate::engine::{Engine, Event};
use crate::server::control::Control;
use crate::server::{self, AppState};
use crate::store::{self, Store, StoreAudit};
use crate::talkdesk::actuator::{self, Actuator, ActuatorHandle, ActuatorOptions};
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
    // The lease before the engine: a replica that leads restores the
    // leader's snapshot as its own; a follower restores it for display.
    let mut leadership = cluster::spawn(
        store.clone(),
        &shared.config.cluster(),
        shared.metrics.clone(),
        shared.audit.clone(),
        cancel.clone(),
    )
    .await;
    let lead = leadership.rx.borrow_and_update().clone();

    let restored = restore(&shared.config, &*store, &*shared.audit).await?;
    shared.audit.record(AuditRecord::new(
        Timestamp::now(),
        AuditKind::Start,
        format!(
            "agent {} started ({}); desired state {}",
            shared.config.instance_id(),
            role(&lead),
            restored.engine.desired()
        ),
    ));
    let mut built = build(&shared, &restored.engine, &store, &leadership, &cancel)?;
    let inputs = spawn_inputs(&shared.config, &built.events, &shared.metrics, &cancel).await?;
    let persister = Persister::new(store.clone(), shared.audit.clone());
    let server = serve(
        listener,
        &shared,
        &store,
        &built,
        persister.readiness(),
        &cancel,
    );
    // The loop takes the engine over; the agent is ready once the first
    // snapshot is on disk (the leader's) or the lease is known (a follower).
    let (mut lp, commands) = Loop::new(
        &shared,
        store.clone(),
        restored,
        lead,
        persister,
        built.desired,
        inputs.probes,
        built.actuator.clone(),
    );
    lp.begin(&mut built.supervisor);
    lp.start(commands).await;
    let _ = started.send(Running {
        metrics: shared.metrics.clone(),
        store: store.clone(),
        probe_kinds: probe_kinds(&shared.config),
        actuator: built.actuator,
        events: built.events.clone(),
        addr,
    });
    tracing::info!(message = "continuity-agent is running.", listen = %addr, dry_run = shared.config.raw.agent.dry_run, instance_id = %shared.config.instance_id());
    cancel_on(shutdown, cancel.clone());

    // Until shutdown (or the actuator dies), then drain.
    let fatal = event_loop::run(
        &mut lp,
        &mut built.inbox,
        &mut built.supervisor,
        &mut leadership.rx,
        &cancel,
    )
    .await;
    drain(
        &mut lp,
        &mut built.inbox,
        server,
        inputs.calendar,
        built.supervisor,
        &cancel,
    )
    .await;
    // The actuator is done: hand the lease over at once.
    leadership.release().await;

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

fn role(lead: &Leadership) -> String {
    match (&lead.leader_id, lead.leader) {
        (_, true) => format!("leader, epoch {}", lead.epoch),
        (Some(id), false) => format!("follower of {id}, epoch {}", lead.epoch),
        (None, false) => "follower, leader unknown".to_string(),
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
    /// Follows the actuator of each leadership term.
    actuator: ActuatorHandle,
}

fn build(
    shared: &Shared,
    engine: &Engine,
    store: &Arc<dyn Store>,
    leadership: &LeadershipTask,
    cancel: &CancellationToken,
) -> Result<Built, DaemonError> {
    let (events_tx, events_rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    let (control_tx, control_rx) = mpsc::channel::<Control>(CONTROL_QUEUE);
    let (desired_tx, desired_rx) = watch::channel(engine.desired().clone());
    let (status_tx, handle) = actuator::status_channel();
    let make = actuator_factory(shared, store, leadership, status_tx)?;
    // Started while this replica leads: at once after a restore, after a
    // fresh start only once the engine has evidence (see `StartGate`), so a
    // fallback that is on (an outage in progress, a break-glass activation)
    // is not switched off blindly.
    let supervisor = Supervisor::new(make, desired_rx, events_tx.clone(), cancel.clone());
    Ok(Built {
        events: events_tx,
        control: control_tx,
        inbox: Inbox {
            events: events_rx,
            control: control_rx,
        },
        desired: desired_tx,
        supervisor,
        actuator: handle,
    })
}

/// Builds the actuator of each leadership term, from the `[talkdesk]`
/// section, fenced by the lease, reporting to one status channel. The client
/// (token cache, connections) is built once and shared by every term.
fn actuator_factory(
    shared: &Shared,
    store: &Arc<dyn Store>,
    leadership: &LeadershipTask,
    status: watch::Sender<actuator::ActuatorStatus>,
) -> Result<super::supervise::MakeActuator, DaemonError> {
    let config = shared.config.clone();
    let td = &config.raw.talkdesk;
    let client = Client::from_config(
        td,
        &config.instance_id(),
        shared.metrics.clone(),
        shared.audit.clone(),
    )
    .map_err(|e| DaemonError::Talkdesk(e.to_string()))?;
    let opts = ActuatorOptions::from_config(
        td,
        config.raw.agent.dry_run,
        config.raw.api.override_max_ttl.get(),
    );
    let (store, rx, claim) = (
        store.clone(),
        leadership.rx.clone(),
        leadership.claim.clone(),
    );
    let (metrics, audit) = (shared.metrics.clone(), shared.audit.clone());
    Ok(Box::new(move || {
        let fence = Fence::new(
            store.clone(),
            rx.clone(),
            claim.clone(),
            config.raw.talkdesk.request_timeout.get(),
            audit.clone(),
        );
        Actuator::new(
            client.clone(),
            opts.clone(),
            config.profiles.clone(),
            metrics.clone(),
            audit.clone(),
        )
        .with_may_write(Arc::new(fence))
        .reporting_to(status.clone())
    }))
}

/// Starts the HTTP API (the rest of the API and the webhook receivers); it
/// stops accepting when `cancel` fires and ends once accepted requests are
/// answered.
fn serve(
    listener: TcpListener,
    shared: &Shared,
    store: &Arc<dyn Store>,
    built: &Built,
    ready: Arc<AtomicBool>,
    cancel: &CancellationToken,
) -> JoinHandle<std::io::Result<()>> {
    let alerts = crate::alerts::AlertsState::new(
        &shared.config,
        built.events.clone(),
        shared.metrics.clone(),
        Timestamp::now,
    );
    let state = AppState {
        config: shared.config.clone(),
        tokens: alerts.api_tokens(),
        metrics: shared.metrics.clone(),
        store: store.clone(),
        control: built.control.clone(),
        ready,
    };
    let app = server::router(state).merge(crate::alerts::router(alerts));
    let cancel = cancel.clone();
    tokio::spawn(server::serve(listener, app, async move {
        cancel.cancelled().await
    }))
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
fn known_labels(config: &Config) -> KnownLabels<'_> {
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
