//! `continuity-agent run`: the story of one process.
//!
//! [`run_with`] reads top to bottom: open the store -> claim the lease
//! (`cluster`: a lone replica leads at once) -> restore the engine
//! (`restore.rs`) -> build the channels and the actuator factory -> spawn the
//! inputs (`inputs.rs`: probes, self-check, calendar) -> serve the HTTP API
//! (its webhooks and operator changes go to the store's input queue, then
//! wake the loop) -> run the event loop (`event_loop.rs`) -> drain -> release
//! the lease. The actuator runs only while this replica leads, and every
//! write it makes passes the fence (`cluster::Fence`). It starts from the
//! restored desired state, so a restart or a takeover does not toggle
//! anything; after a fresh start it waits for evidence (`gate.rs`), and it
//! runs supervised (`supervise.rs`: the agent exits 1 if it dies). SIGHUP and
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
use super::inputs::spawn_inputs;
use super::persist::Persister;
use super::reload::Reloader;
use super::restore::restore;
use super::supervise::{MakeActuator, Supervisor};
use crate::cluster::{self, Fence, Leadership, LeadershipTask};
use crate::config::Config;
use crate::domain::{Desired, Timestamp};
use crate::engine::Event;
use crate::notify::Notices;
use crate::server::control::{Control, ReloadError};
use crate::server::{self, AppState};
use crate::store::{self, Store, StoreAudit};
use crate::talkdesk::actuator::{self, Actuator, ActuatorHandle, ActuatorOptions, Reconfigure};
use crate::talkdesk::client::Client;
use crate::telemetry::{AccountMetrics, AuditKind, AuditRecord, AuditSink, KnownLabels, Metrics};

/// Room for bursts (an Alertmanager batch, thousands of probe results)
/// without unbounded memory; producers wait when it is full.
pub const EVENT_QUEUE: usize = 4096;
/// API requests waiting for the loop; handlers wait when it is full.
const CONTROL_QUEUE: usize = 64;
/// How long notifications still queued at shutdown may take to go out (a
/// supervisor's stop timeout is usually 10 s or more; the lease is released
/// already, so this delays nothing another replica does).
const NOTIFY_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

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
    #[error("API TLS: {0}")]
    Tls(String),
    #[error("http server: {0}")]
    Server(#[from] std::io::Error),
    #[error("actuator: {0}")]
    Actuator(String),
    #[error("notifications: {0}")]
    Notify(String),
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
    /// The series of the account this loop and actuator decide for.
    pub account_metrics: AccountMetrics,
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
    // Before anything is spawned: a TLS pair that no longer loads stops
    // the start cleanly.
    let front = front_options(&config, super::rlimit::raise_nofile())?;
    let metrics = Metrics::new();
    let accounts = config.account_ids();
    metrics.init_series(&known_labels(&config, &accounts));

    // Store and audit first: everything after this is audited.
    let store = store::open(&config.raw.store).await?;
    let (audit, audit_writer) = StoreAudit::spawn(store.clone());
    let shared = Shared {
        config: Arc::new(config),
        account_metrics: metrics.account(crate::config::DEFAULT_ACCOUNT),
        metrics,
        audit: audit.clone(),
    };
    let cancel = CancellationToken::new();
    // The lease before the engine: a replica that leads restores the
    // leader's document as its own; a follower restores it for display.
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
    audit_start(&shared, &lead, restored.engine.desired());
    let (mut built, notices) = build(
        &shared,
        restored.engine.desired(),
        &store,
        &leadership,
        &cancel,
    )?;
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
        sessions: Arc::new(server::page::SessionKey::random()),
    };
    let (server, mut reloader) = serve_reloadable(
        (listener, front),
        &shared,
        &built,
        api_parts,
        (inputs.stop, inputs.calendar),
        &cancel,
    );
    // The loop takes the engine over; the agent is ready once the first
    // snapshot is on disk (the leader's) or the lease is known (a follower).
    let (mut lp, commands) = Loop::new(
        &shared,
        restored,
        lead,
        Parts {
            persister,
            desired_tx: built.desired,
            probes: inputs.probes,
            actuator: built.actuator.clone(),
            store: store.clone(),
            notices: notices.clone(),
        },
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
        &mut reloader,
        &mut leadership.rx,
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
    // The actuator is done: hand the lease over at once.
    leadership.release().await;
    // The last notices (a deactivation on the way out) still go; then this
    // handle goes, or the audit writer below would wait for it forever.
    notices.stop(NOTIFY_GRACE).await;

    close_audit(lp, shared, audit, audit_writer).await;
    match fatal {
        Some(why) => Err(DaemonError::Actuator(why)),
        None => Ok(()),
    }
}

/// The last audit record of a run, then every record still queued is
/// written: the writer ends once every handle on its queue is gone.
async fn close_audit(lp: Loop, shared: Shared, audit: Arc<StoreAudit>, writer: JoinHandle<()>) {
    shared.audit.record(AuditRecord::new(
        Timestamp::now(),
        AuditKind::Stop,
        "agent stopped",
    ));
    drop(lp);
    drop(shared);
    drop(audit);
    let _ = writer.await;
}

/// The first audit record of a run: which replica, in which role, deciding what.
fn audit_start(shared: &Shared, lead: &Leadership, desired: &Desired) {
    shared.audit.record(AuditRecord::new(
        Timestamp::now(),
        AuditKind::Start,
        format!(
            "agent {} started ({}); desired state {desired}",
            shared.config.instance_id(),
            role(lead),
        ),
    ));
}

/// Serves the API and returns the `Reloader` that can rebuild it (and the
/// inputs) from a new configuration, on SIGHUP or `POST /-/reload`.
fn serve_reloadable(
    (listener, front): (TcpListener, FrontOptions),
    shared: &Shared,
    built: &Built,
    api_parts: ApiParts,
    (inputs_stop, calendar): (CancellationToken, crate::calendar::Calendar),
    cancel: &CancellationToken,
) -> (JoinHandle<std::io::Result<()>>, Reloader) {
    let (server, api) = serve(listener, front, &shared.config, &api_parts, cancel);
    reload_on_sighup(built.control.clone(), cancel);
    let reloader = Reloader {
        events: built.events.clone(),
        cancel: cancel.clone(),
        inputs_stop,
        calendar,
        api,
        api_parts,
    };
    (server, reloader)
}

fn role(lead: &Leadership) -> String {
    match (&lead.leader_id, lead.leader) {
        (_, true) => format!("leader, epoch {}", lead.epoch),
        (Some(id), false) => format!("follower of {id}, epoch {}", lead.epoch),
        (None, false) => "follower, leader unknown".to_string(),
    }
}

/// The channels and the (not yet started) actuator around the restored
/// engine. `build` also starts the notification targets (the loop announces,
/// each term's actuator reports drift), returned beside it so that shutdown
/// can let go of them before the audit writer closes.
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
    desired: &Desired,
    store: &Arc<dyn Store>,
    leadership: &LeadershipTask,
    cancel: &CancellationToken,
) -> Result<(Built, Notices), DaemonError> {
    let (events_tx, events_rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    let (control_tx, control_rx) = mpsc::channel::<Control>(CONTROL_QUEUE);
    let (desired_tx, desired_rx) = watch::channel(desired.clone());
    let (status_tx, handle) = actuator::status_channel();
    let notices = Notices::start(&shared.config, shared.metrics.clone(), shared.audit.clone())
        .map_err(|e| DaemonError::Notify(e.to_string()))?;
    let make = actuator_factory(shared, store, leadership, (status_tx, notices.clone()));
    // Started while this replica leads: at once after a restore, after a
    // fresh start only once the engine has evidence (see `StartGate`), so a
    // fallback that is on (an outage in progress, a break-glass activation)
    // is not switched off blindly.
    let supervisor = Supervisor::new(
        make,
        talkdesk_parts(
            &shared.config,
            shared.account_metrics.clone(),
            shared.audit.clone(),
        )
        .map_err(|e| DaemonError::Talkdesk(e.to_string()))?,
        desired_rx,
        events_tx.clone(),
        cancel.clone(),
    );
    let built = Built {
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
    };
    Ok((built, notices))
}

/// The Talkdesk client, options and profiles from the `[talkdesk]` section:
/// the one place they are built, at start and on a reload (`reload.rs`). The
/// client (token cache, connections) is shared by every term until a reload
/// replaces it.
pub(super) fn talkdesk_parts(
    config: &Config,
    metrics: AccountMetrics,
    audit: Arc<dyn AuditSink>,
) -> Result<Reconfigure, crate::talkdesk::TalkdeskError> {
    let td = &config.raw.talkdesk;
    Ok(Reconfigure {
        client: Client::from_config(td, &config.instance_id(), metrics, audit)?,
        opts: ActuatorOptions::from_config(td, config.raw.agent.dry_run),
        profiles: config.profiles.clone(),
    })
}

/// Builds the actuator of each leadership term from the current Talkdesk
/// parts, fenced by the lease, reporting to one status channel and telling
/// the notification targets about drift.
fn actuator_factory(
    shared: &Shared,
    store: &Arc<dyn Store>,
    leadership: &LeadershipTask,
    (status, notices): (watch::Sender<actuator::ActuatorStatus>, Notices),
) -> MakeActuator {
    let (store, rx, claim) = (
        store.clone(),
        leadership.rx.clone(),
        leadership.claim.clone(),
    );
    // The fence's margin: the lease must outlive a whole request.
    let request_timeout = shared.config.raw.talkdesk.request_timeout.get();
    let (metrics, audit) = (shared.account_metrics.clone(), shared.audit.clone());
    Box::new(move |parts: Reconfigure| {
        let fence = Fence::new(
            store.clone(),
            rx.clone(),
            claim.clone(),
            request_timeout,
            audit.clone(),
        );
        Actuator::new(
            parts.client,
            parts.opts,
            parts.profiles,
            metrics.clone(),
            audit.clone(),
        )
        .with_may_write(Arc::new(fence))
        .with_notices(notices.clone())
        .reporting_to(status.clone())
    })
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
    /// The status page's session key, drawn once per process.
    pub sessions: Arc<server::page::SessionKey>,
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
            sessions: self.sessions.clone(),
        };
        server::router(state).merge(crate::alerts::router(alerts))
    }
}

/// How the API's socket is served: its limits and TLS.
struct FrontOptions {
    limits: server::listen::Limits,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// `[agent]`'s limits, the cap held to the descriptor budget `nofile`, and
/// the TLS pair loaded (validation loaded it too; it may have changed since).
fn front_options(config: &Config, nofile: Option<u64>) -> Result<FrontOptions, DaemonError> {
    let agent = &config.raw.agent;
    let limits = server::listen::Limits::capped(
        agent.max_connections,
        agent.header_read_timeout.get(),
        nofile,
    );
    let tls = match (&agent.tls_cert_file, &agent.tls_key_file) {
        (Some(cert), Some(key)) => Some(tokio_rustls::TlsAcceptor::from(
            server::tls::server_config(cert, key).map_err(DaemonError::Tls)?,
        )),
        _ => None,
    };
    tracing::info!(
        message = "API limits.",
        max_connections = limits.max_connections,
        header_read_timeout = ?limits.header_read_timeout,
        tls = tls.is_some()
    );
    Ok(FrontOptions { limits, tls })
}

/// Starts the HTTP API; it stops accepting when `cancel` fires and ends once
/// accepted requests are answered. Each request is served by the API last
/// sent on the returned channel, so a reload swaps it without closing the
/// socket (requests in flight finish on the API they started on).
fn serve(
    listener: TcpListener,
    front: FrontOptions,
    config: &Arc<Config>,
    parts: &ApiParts,
    cancel: &CancellationToken,
) -> (JoinHandle<std::io::Result<()>>, watch::Sender<Router>) {
    let (api_tx, api_rx) = watch::channel(parts.router(config));
    let app = Router::new().fallback(move |req: axum::extract::Request| {
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
    let task = tokio::spawn(server::listen::serve(
        listener,
        app,
        front.limits,
        front.tls,
        parts.metrics.clone(),
        async move { cancel.cancelled().await },
    ));
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
/// (at zero) before the first event. `accounts` is `config.account_ids()`
/// (owned there, borrowed here).
pub(super) fn known_labels<'a>(config: &'a Config, accounts: &'a [String]) -> KnownLabels<'a> {
    KnownLabels {
        accounts: accounts.iter().map(String::as_str).collect(),
        probes: config
            .probes
            .iter()
            .map(|p| (p.id.as_str(), p.kind))
            .collect(),
        causes: crate::engine::Cause::ALL.map(|c| c.as_str()).to_vec(),
        // Every source, configured or not: `/metrics` needs no credentials,
        // and must not tell which webhooks are enabled when an unconfigured
        // route answers 404 like an unknown one.
        webhook_sources: crate::config::schema::WebhooksConfig::ALL.to_vec(),
        talkdesk_ops: crate::talkdesk::Op::ALL.map(|op| op.as_str()).to_vec(),
        notify_targets: config.raw.notify.iter().map(|n| n.name()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `/metrics` needs no credentials: its series must not tell which
    /// webhook sources are configured (an unconfigured one answers 404 like
    /// an unknown route), so every source's series exists either way.
    #[test]
    fn metrics_do_not_reveal_which_webhook_sources_are_configured() {
        let src = r#"
[talkdesk]
account = "acme"
client_id = "id"
client_secret = "secret-0123456789"
[profiles.backup]
default = "+14155558888"
[[probes]]
id = "trunk-a"
type = "sip"
target = "sip:192.0.2.1"
[[rules]]
name = "down"
profile = "backup"
when = { down = "trunk-a" }
[webhooks.alertmanager]
bearer_token = "am-token-0123456789"
"#;
        let config = crate::config::from_toml_str(src, "test.toml").unwrap();
        let metrics = Metrics::new();
        metrics.init_series(&known_labels(&config, &config.account_ids()));
        let text = metrics.render();
        for source in crate::config::schema::WebhooksConfig::ALL {
            assert!(
                text.contains(&format!(
                    "continuity_alerts_received_total{{result=\"accepted\",source=\"{source}\"}} 0"
                )),
                "{source} missing:\n{text}"
            );
        }
    }
}
