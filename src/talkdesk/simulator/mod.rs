//! A faithful, in-memory Talkdesk for tests, the demo and
//! `continuity-agent simulate-talkdesk --listen ADDR`.
//!
//! It serves what the client uses, with Talkdesk's rules:
//! - `POST /oauth/token`: HTTP Basic client credentials, form
//!   `grant_type=client_credentials&scope=...`; grants requested ∩ allowed
//!   scopes (all allowed when none are requested); tokens really expire
//!   after `token_ttl`.
//! - `GET|PUT /fallback-experience/settings` and
//!   `GET|PUT /fallback-experience/activation`: Bearer token checked (401 when
//!   missing, unknown or expired; 403 when the scope is missing), bodies
//!   validated (E.164 numbers, language tag, message length, JSON shape) with
//!   Talkdesk-style 400 errors `{code, message, description, fields}`.
//!
//! It serves one or several accounts ([`SimulatorOptions::accounts`]), each
//! with its own client credentials, state, tokens, faults, quirks and
//! journal. The routes above serve every account (the credentials say
//! which); the same routes under `/accounts/{id}` serve only that one, like
//! an account with its own `token_url` and `api_base` (see `api.rs`).
//!
//! Control routes, also available in-process on [`Simulator`] (first
//! account) and [`AccountHandle`] (any account):
//! `POST|GET|DELETE /_sim/faults`, `POST /_sim/expire-tokens`,
//! `GET|DELETE /_sim/journal`, `GET|PUT /_sim/state` (change state "as if in
//! the UI") act on the first account; `/_sim/accounts/{id}/...` on any.
//!
//! Defaults ([`SimulatorOptions::default`]): one account, `default`, client
//! id `demo`, secret `demo-secret`, every continuity scope allowed, tokens
//! valid for one hour.

mod account;
mod api;
mod conn;
mod control;
mod faults;
mod journal;
mod options;
mod state;

pub use account::AccountHandle;
pub use conn::Conn;
pub use faults::{Fault, FaultOp, Mix};
pub use journal::JournalEntry;
pub use options::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_TOKEN_TTL, OptionsError, SimAccount,
    SimulatorOptions,
};
pub use state::{MAX_MESSAGE_CHARS, SimState, StateBody, validate_activation, validate_settings};

use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::domain::FallbackSettings;
use account::AccountState;
use conn::KillableListener;

pub const SETTINGS_PATH: &str = "/fallback-experience/settings";
pub const ACTIVATION_PATH: &str = "/fallback-experience/activation";
pub const TOKEN_PATH: &str = "/oauth/token";

pub const SCOPE_SETTINGS_READ: &str = "continuity-settings:read";
pub const SCOPE_SETTINGS_WRITE: &str = "continuity-settings:write";
pub const SCOPE_ACTIVATION_READ: &str = "continuity-settings-activation:read";
pub const SCOPE_ACTIVATION_WRITE: &str = "continuity-settings-activation:write";

/// Ways the real API may differ from the documented contract, switchable to
/// test that the agent copes. All off by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quirks {
    /// Store (and echo, and return) the message language lower-cased, as a
    /// backend that normalizes tags might.
    pub lowercase_language: bool,
    /// Store (and echo) every external number of a settings write as
    /// `+15550000000`, answering 200: a backend that does not store what it
    /// is given. The agent must treat such a write as failed.
    pub mangle_numbers: bool,
    /// Leave `expires_in` out of token replies (RFC 6749 allows it).
    pub omit_expires_in: bool,
}

/// The number [`Quirks::mangle_numbers`] stores instead of the real ones.
pub const MANGLED_NUMBER: &str = "+15550000000";

/// Handle to the simulator's state; cheap to clone, shared with the server.
/// Its methods act on the first (for most users the only) account; use
/// [`Simulator::account`] for the others.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    opts: SimulatorOptions,
    /// In the order of [`SimulatorOptions::account_list`]; never empty.
    accounts: Vec<Arc<AccountState>>,
}

impl Default for Simulator {
    /// The documented demo credentials ([`SimulatorOptions::default`]).
    fn default() -> Self {
        Simulator::new(SimulatorOptions::default())
    }
}

impl Simulator {
    /// # Panics
    /// When `opts` are invalid ([`SimulatorOptions::validate`]): options
    /// written in code are a programmer's mistake; use [`Simulator::try_new`]
    /// for options a user typed.
    pub fn new(opts: SimulatorOptions) -> Simulator {
        Simulator::try_new(opts).unwrap_or_else(|e| panic!("invalid simulator options: {e}"))
    }

    pub fn try_new(opts: SimulatorOptions) -> Result<Simulator, OptionsError> {
        opts.validate()?;
        let accounts = opts
            .account_list()
            .into_iter()
            .map(|a| Arc::new(AccountState::new(a)))
            .collect();
        Ok(Simulator {
            inner: Arc::new(Inner { opts, accounts }),
        })
    }

    pub fn options(&self) -> &SimulatorOptions {
        &self.inner.opts
    }

    /// The account `id`, if this simulator serves it.
    pub fn account(&self, id: &str) -> Option<AccountHandle> {
        self.account_state(id)
            .map(|account| AccountHandle { account })
    }

    /// Every account served, in order.
    pub fn accounts(&self) -> Vec<AccountHandle> {
        self.inner
            .accounts
            .iter()
            .map(|a| AccountHandle { account: a.clone() })
            .collect()
    }

    /// The first account: the one this handle's own methods and `/_sim/...` act on.
    pub fn first(&self) -> AccountHandle {
        AccountHandle {
            account: self.first_state(),
        }
    }

    fn account_state(&self, id: &str) -> Option<Arc<AccountState>> {
        self.inner.accounts.iter().find(|a| a.id == id).cloned()
    }

    fn account_states(&self) -> &[Arc<AccountState>] {
        &self.inner.accounts
    }

    fn first_state(&self) -> Arc<AccountState> {
        // `try_new` builds at least one account.
        self.inner.accounts[0].clone()
    }

    pub fn state(&self) -> SimState {
        self.first().state()
    }

    /// Replace the state, as an operator editing the Talkdesk UI would.
    pub fn set_state(&self, s: SimState) {
        self.first().set_state(s);
    }

    pub fn set_enabled(&self, enabled: bool) {
        self.first().set_enabled(enabled);
    }

    pub fn set_settings(&self, settings: FallbackSettings) {
        self.first().set_settings(settings);
    }

    pub fn set_quirks(&self, quirks: Quirks) {
        self.first().set_quirks(quirks);
    }

    pub fn inject(&self, fault: Fault) {
        self.first().inject(fault);
    }

    pub fn clear_faults(&self) {
        self.first().clear_faults();
    }

    pub fn faults(&self) -> Vec<Fault> {
        self.first().faults()
    }

    /// Every issued token stops working at once (the next API call gets 401).
    pub fn expire_tokens(&self) {
        self.first().expire_tokens();
    }

    /// Every access token issued so far (the last thousand). For tests that
    /// prove tokens never reach logs or audit records.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.first().issued_tokens()
    }

    pub fn journal(&self) -> Vec<JournalEntry> {
        self.first().journal()
    }

    pub fn clear_journal(&self) {
        self.first().clear_journal();
    }

    pub fn journal_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.first().journal_watch()
    }
}

/// What `simulate-talkdesk` prints at start: where it listens, the
/// credentials a client needs for each account (the secrets too: they
/// protect nothing real, and a user cannot configure an agent against the
/// simulator without them) and the control routes. Documented in
/// `docs/simulator.md`.
pub fn banner(addr: SocketAddr, opts: &SimulatorOptions) -> String {
    let base = format!("http://{addr}");
    let accounts = opts.account_list();
    let mut out = format!("Talkdesk API simulator on {base}\n");
    for a in &accounts {
        // Writing to a String cannot fail.
        let _ = write!(
            out,
            "  account:       {id}\n  client id:     {client}\n  client secret: {secret}\n",
            id = a.id,
            client = a.client_id,
            secret = a.client_secret.expose_secret(),
        );
    }
    let first = &accounts[0].id;
    let _ = write!(
        out,
        "  token URL:     {base}{TOKEN_PATH}
  API:           GET|PUT {SETTINGS_PATH}, GET|PUT {ACTIVATION_PATH}
  one account:   {base}/accounts/ID as api_base and {base}/accounts/ID{TOKEN_PATH} serve account ID only
  control:       POST|GET|DELETE /_sim/faults   inject faults, e.g. {{\"op\":\"put_activation\",\"status\":503,\"count\":2}}
                 POST /_sim/expire-tokens       expire every issued token
                 GET|DELETE /_sim/journal       the calls the simulator saw
                 GET|PUT /_sim/state            read or change the state as if in the Talkdesk UI
                 (these act on account {first}; /_sim/accounts/ID/... on account ID)
  agent config:  [talkdesk] api_base = \"{base}\", token_url = \"{base}{TOKEN_PATH}\"
"
    );
    out
}

/// Serve the simulator on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    sim: Simulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        let accounts: Vec<String> = sim.accounts().iter().map(|a| a.id().to_string()).collect();
        tracing::info!(%addr, accounts = %accounts.join(","), "Talkdesk simulator listening.");
    }
    let app = router(sim).into_make_service_with_connect_info::<Conn>();
    axum::serve(KillableListener(listener), app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A simulator running on a background task; stops when dropped.
pub struct SimServer {
    pub addr: SocketAddr,
    pub sim: Simulator,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<io::Result<()>>>,
}

impl SimServer {
    /// `http://127.0.0.1:PORT`, the API base and token host of this simulator.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/accounts/ID`: the API base (and, with
    /// `/oauth/token`, the token host) that serves account `id` only.
    pub fn account_url(&self, id: &str) -> String {
        format!("http://{}/accounts/{id}", self.addr)
    }

    /// Stop serving and wait for open connections to finish.
    pub async fn stop(mut self) -> io::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(t) => t.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Bind `addr` (use `127.0.0.1:0` for a free port) and serve in the background.
pub async fn spawn(sim: Simulator, addr: SocketAddr) -> io::Result<SimServer> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(run(
        listener,
        sim.clone(),
        async move { stop.cancelled().await },
    ));
    Ok(SimServer {
        addr,
        sim,
        shutdown,
        task: Some(task),
    })
}

pub fn router(sim: Simulator) -> Router {
    let api = Router::new()
        .route(TOKEN_PATH, post(api::api_call))
        .route(SETTINGS_PATH, get(api::api_call).put(api::api_call))
        .route(ACTIVATION_PATH, get(api::api_call).put(api::api_call));
    Router::new()
        .merge(api.clone())
        .nest("/accounts/{id}", api)
        .nest("/_sim", control::routes())
        .nest("/_sim/accounts/{id}", control::routes())
        .with_state(sim)
}
