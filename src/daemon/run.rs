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
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::account::{Account, Opened};
use super::inputs::spawn_inputs;
use super::reload::Reloader;
use crate::cluster::{self, LeadershipTask};
use crate::config::Config;
use crate::domain::Timestamp;
use crate::engine::Event;
use crate::server::control::{Control, ReloadError};
use crate::server::{self, AppState};
use crate::store::{self, Store, StoreAudit};
use crate::talkdesk::actuator::{ActuatorHandle, ActuatorOptions, Reconfigure};
use crate::talkdesk::client::Client;
use crate::telemetry::{AccountMetrics, AuditKind, AuditRecord, AuditSink, KnownLabels, Metrics};

/// Room for bursts (an Alertmanager batch, thousands of probe results)
/// without unbounded memory; producers wait when it is full.
pub const EVENT_QUEUE: usize = 4096;
/// API requests waiting for the loop; handlers wait when it is full.
pub(super) const CONTROL_QUEUE: usize = 64;
/// How long notifications still queued at shutdown may take to go out (a
/// supervisor's stop timeout is usually 10 s or more; the lease is released
/// already, so this delays nothing another replica does).
pub(super) const NOTIFY_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

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

/// Handles the running daemon exposes to tests and the demo. `store`,
/// `actuator` and `events` are the first account's (the only one of a
/// configuration without `[[accounts]]`); `accounts` has each one's.
#[derive(Clone)]
pub struct Running {
    pub metrics: Metrics,
    pub store: Arc<dyn Store>,
    pub actuator: ActuatorHandle,
    /// Where the shared inputs send: every account's loop gets the event.
    pub events: mpsc::Sender<Event>,
    pub addr: std::net::SocketAddr,
    pub accounts: Vec<RunningAccount>,
}

/// One account's handles.
#[derive(Clone)]
pub struct RunningAccount {
    pub id: String,
    pub store: Arc<dyn Store>,
    pub actuator: ActuatorHandle,
}

impl Running {
    /// Whether the engine currently considers probe `id` up.
    pub fn probe_up(&self, id: &str) -> bool {
        self.metrics.probes.up(id) == Some(1)
    }
}

/// What every component of one account is handed: the account's view of the
/// configuration, the metrics, the account's audit sink.
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
    metrics.init_series(&known_labels(&config, &config.account_ids()));
    let config = Arc::new(config);
    let cancel = CancellationToken::new();

    // Store and audit first: everything after this is audited. Then the
    // leases: a replica that leads an account restores the leader's
    // document as its own; a follower restores it for display.
    let root = store::open(&config.raw.store).await?;
    let opened = open_accounts(&config, &root, &metrics)?;
    audit_recovery(&root, &opened, &metrics);
    let leases = lead(&config, &root, &opened, &metrics, &cancel).await;
    let mut built = Vec::with_capacity(opened.len());
    for (opened, lease) in opened.into_iter().zip(leases) {
        built.push(Account::build(opened, lease, &cancel).await?);
    }

    // The probes and the self-check are shared: each account's engine gets
    // every result.
    let probe_events = fan_out(built.iter().map(|a| a.events.clone()).collect());
    let inputs = spawn_inputs(&config, &probe_events, &metrics, &cancel).await?;
    let mut accounts = Vec::with_capacity(built.len());
    for (index, account) in built.into_iter().enumerate() {
        accounts.push(account.start(inputs.probes.for_account(index)).await?);
    }
    let (reload_tx, reload_rx) = mpsc::channel::<Control>(CONTROL_QUEUE);
    let api_parts = ApiParts::new(&root, &metrics, &accounts, reload_tx.clone());
    let (server, reloader) = serve_reloadable(
        (listener, front),
        (&config, &metrics),
        api_parts,
        (probe_events.clone(), inputs.stop),
        &accounts,
        (reload_tx, &cancel),
    );
    let _ = started.send(running(&metrics, &accounts, probe_events, addr));
    tracing::info!(message = "continuity-agent is running.", listen = %addr, accounts = accounts.len(), dry_run = config.raw.agent.dry_run, instance_id = %config.instance_id());
    cancel_on(shutdown, cancel.clone());

    // Each account's loop runs in its own task until shutdown (or until an
    // actuator dies); this task applies reloads meanwhile. Then drain.
    let server_done = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    for account in accounts {
        // Every log line of an account's loop and actuator names it.
        let span = tracing::info_span!("account", account = %account.id);
        let run = account.run(cancel.clone(), server_done.clone());
        tasks.spawn(tracing::Instrument::instrument(run, span));
    }
    let mut fatal = coordinate(reloader, reload_rx, &mut tasks, &cancel).await;
    tracing::info!(message = "Shutting down.");
    cancel.cancel();
    let _ = server.await;
    server_done.cancel();
    while let Some(ended) = tasks.join_next().await {
        if let Ok(Some(why)) = ended {
            fatal.get_or_insert(why);
        }
    }
    match fatal {
        Some(why) => Err(DaemonError::Actuator(why)),
        None => Ok(()),
    }
}

/// Until shutdown: applies reloads (SIGHUP, `POST /-/reload`) to every
/// account, and watches the account loops. An account whose actuator died
/// ends the agent (exit 1, so its supervisor restarts it): it must not keep
/// deciding while nothing applies its decisions.
async fn coordinate(
    mut reloader: Reloader,
    mut reload_rx: mpsc::Receiver<Control>,
    tasks: &mut tokio::task::JoinSet<Option<String>>,
    cancel: &CancellationToken,
) -> Option<String> {
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => return None,
            Some(ended) = tasks.join_next() => match ended {
                Ok(Some(why)) => return Some(why),
                Ok(None) => {}
                Err(error) => return Some(format!("an account's loop ended: {error}")),
            },
            Some(c) = reload_rx.recv() => {
                if let Control::Reload { actor, reply } = c {
                    let _ = reply.send(reloader.reload(&actor).await);
                }
            }
        }
    }
}

/// The handles tests and the demo get.
fn running(
    metrics: &Metrics,
    accounts: &[Account],
    events: mpsc::Sender<Event>,
    addr: std::net::SocketAddr,
) -> Running {
    let list: Vec<RunningAccount> = accounts
        .iter()
        .map(|a| RunningAccount {
            id: a.id.clone(),
            store: a.store.clone(),
            actuator: a.actuator.clone(),
        })
        .collect();
    Running {
        metrics: metrics.clone(),
        store: list[0].store.clone(),
        actuator: list[0].actuator.clone(),
        events,
        addr,
        accounts: list,
    }
}

/// Each account's store handle (sharing the connections) and audit queue.
fn open_accounts(
    config: &Arc<Config>,
    root: &Arc<dyn Store>,
    metrics: &Metrics,
) -> Result<Vec<Opened>, DaemonError> {
    config
        .account_ids()
        .into_iter()
        .map(|id| {
            let view = config.for_account(&id).ok_or_else(|| {
                DaemonError::Store(store::StoreError::Unsupported(format!(
                    "account {id} has no configuration"
                )))
            })?;
            let store = root.for_account(&id);
            let (audit, writer) = StoreAudit::spawn(store.clone());
            let account_metrics = metrics.account(&id);
            Ok(Opened {
                id,
                shared: Shared {
                    config: Arc::new(view),
                    account_metrics,
                    metrics: metrics.clone(),
                    audit: audit.clone(),
                },
                store,
                audit: (audit, writer),
            })
        })
        .collect()
}

/// A damaged store file was moved aside and this store is fresh (logged by
/// the store, `store/sqlite/open.rs`): each account's audit log says so,
/// since each lost its stored decision, audit records and queued inputs to
/// the moved file, and it is counted. A read-only store needs nothing here:
/// its writes fail, the audit's included; `/readyz` says it.
fn audit_recovery(root: &Arc<dyn Store>, opened: &[Opened], metrics: &Metrics) {
    let store::OpenOutcome::Recovered {
        path,
        moved_to,
        reason,
    } = root.open_outcome()
    else {
        return;
    };
    metrics.store_recovered_total.inc();
    for account in opened {
        account.shared.audit.record(
            AuditRecord::new(
                Timestamp::now(),
                AuditKind::Store,
                format!(
                    "store file {} was damaged ({reason}); moved aside to {}; started with a fresh store",
                    path.display(),
                    moved_to.display()
                ),
            )
            .with_data(serde_json::json!({
                "path": path.display().to_string(),
                "moved_to": moved_to.display().to_string(),
                "reason": reason,
            })),
        );
    }
}

/// Claims every account's lease once (a lone replica leads each at once;
/// several share the accounts by a balanced assignment, `cluster`), then
/// keeps them in the background.
async fn lead(
    config: &Config,
    root: &Arc<dyn Store>,
    opened: &[Opened],
    metrics: &Metrics,
    cancel: &CancellationToken,
) -> Vec<LeadershipTask> {
    let accounts = opened
        .iter()
        .map(|o| cluster::ShardAccount {
            id: o.id.clone(),
            store: o.store.clone(),
            audit: o.shared.audit.clone(),
        })
        .collect();
    cluster::spawn_sharded(
        root.clone(),
        accounts,
        &config.cluster(),
        metrics.clone(),
        cancel.clone(),
    )
    .await
}

/// One sender for the shared inputs: each event goes to every account's
/// loop, in order (a loop that falls behind holds the others back only once
/// its queue of `EVENT_QUEUE` is full). One account needs no forwarder.
fn fan_out(mut accounts: Vec<mpsc::Sender<Event>>) -> mpsc::Sender<Event> {
    if accounts.len() == 1 {
        return accounts.remove(0);
    }
    let (tx, mut rx) = mpsc::channel::<Event>(EVENT_QUEUE);
    tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            for account in &accounts {
                let _ = account.send(ev.clone()).await;
            }
        }
    });
    tx
}

/// Serves the API and returns the `Reloader` that can rebuild it (and the
/// inputs) from a new configuration, on SIGHUP or `POST /-/reload`.
fn serve_reloadable(
    (listener, front): (TcpListener, FrontOptions),
    (config, metrics): (&Arc<Config>, &Metrics),
    api_parts: ApiParts,
    (probe_events, inputs_stop): (mpsc::Sender<Event>, CancellationToken),
    accounts: &[Account],
    (reload, cancel): (mpsc::Sender<Control>, &CancellationToken),
) -> (JoinHandle<std::io::Result<()>>, Reloader) {
    let (server, api) = serve(listener, front, config, &api_parts, cancel);
    reload_on_sighup(reload, cancel);
    let reloader = Reloader {
        config: config.clone(),
        metrics: metrics.clone(),
        probe_events,
        cancel: cancel.clone(),
        inputs_stop,
        api,
        api_parts,
        accounts: accounts.iter().map(Account::reload_handle).collect(),
    };
    (server, reloader)
}

/// The Talkdesk client, options and profiles from an account's `[talkdesk]`
/// section: the one place they are built, at start and on a reload
/// (`reload.rs`). The client (token cache, connections) is shared by every
/// term until a reload replaces it.
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

/// What the HTTP API is built from besides the configuration, kept so a
/// reload can build it again.
pub(super) struct ApiParts {
    /// The store as a whole (`/readyz`).
    pub store: Arc<dyn Store>,
    pub metrics: Metrics,
    /// Where alerts go: every account's rules see them.
    pub alerts: store::inputs::Queue,
    pub accounts: Vec<AccountParts>,
    /// Reloads go to the daemon, which applies them to every account.
    pub reload: mpsc::Sender<Control>,
    /// The status page's session key, drawn once per process.
    pub sessions: Arc<server::page::SessionKey>,
}

/// One account's handles for the API.
pub(super) struct AccountParts {
    pub id: String,
    /// The account's view at start, kept if a new file lacked it (a reload
    /// that removes an account is refused before the API is rebuilt).
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub queue: store::inputs::Queue,
    pub control: mpsc::Sender<Control>,
    pub actuator: ActuatorHandle,
    pub ready: Arc<AtomicBool>,
}

impl ApiParts {
    fn new(
        root: &Arc<dyn Store>,
        metrics: &Metrics,
        accounts: &[Account],
        reload: mpsc::Sender<Control>,
    ) -> ApiParts {
        let wakes = accounts.iter().map(Account::wake).collect();
        let accounts: Vec<AccountParts> = accounts.iter().map(Account::api_parts).collect();
        ApiParts {
            store: root.clone(),
            metrics: metrics.clone(),
            // Alerts are durable for every account before their 202.
            alerts: store::inputs::Queue::shared(root.clone(), wakes),
            accounts,
            reload,
            sessions: Arc::new(server::page::SessionKey::random()),
        }
    }

    /// The rest of the API and the webhook receivers under `config` (tokens,
    /// webhook credentials, limits, each account's view).
    pub(super) fn router(&self, config: &Arc<Config>) -> Router {
        let alerts = crate::alerts::AlertsState::new(
            config,
            self.alerts.clone(),
            self.metrics.clone(),
            Timestamp::now,
        );
        let accounts = self
            .accounts
            .iter()
            .map(|p| server::accounts::AccountApi {
                id: p.id.clone(),
                config: config
                    .for_account(&p.id)
                    .map(Arc::new)
                    .unwrap_or_else(|| p.config.clone()),
                store: p.store.clone(),
                control: p.control.clone(),
                queue: p.queue.clone(),
                actuator: p.actuator.clone(),
                ready: p.ready.clone(),
            })
            .collect();
        let state = AppState {
            config: config.clone(),
            tokens: alerts.api_tokens(),
            metrics: self.metrics.clone(),
            store: self.store.clone(),
            accounts: Arc::new(server::accounts::Accounts::new(accounts)),
            reload: self.reload.clone(),
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
