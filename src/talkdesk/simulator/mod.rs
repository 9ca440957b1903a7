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
//! Control routes, also available in-process on [`Simulator`]:
//! `POST|GET|DELETE /_sim/faults`, `POST /_sim/expire-tokens`,
//! `GET|DELETE /_sim/journal`, `GET|PUT /_sim/state` (change state "as if in
//! the UI").
//!
//! Defaults ([`SimulatorOptions::default`]): client id `demo`, secret
//! `demo-secret`, every continuity scope allowed, tokens valid for one hour.

mod faults;
mod journal;
mod state;

pub use faults::{Fault, FaultOp};
pub use journal::JournalEntry;
pub use state::{MAX_MESSAGE_CHARS, SimState, StateBody, validate_activation, validate_settings};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::{IncomingStream, Listener};
use base64::Engine as _;
use rand::Rng as _;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::domain::{FallbackSettings, Timestamp};
use crate::talkdesk::error::{FieldError, shorten};
use crate::talkdesk::wire::WireSettings;
use faults::Faults;
use journal::Journal;
use state::{TokenCheck, Tokens};

pub const SETTINGS_PATH: &str = "/fallback-experience/settings";
pub const ACTIVATION_PATH: &str = "/fallback-experience/activation";
pub const TOKEN_PATH: &str = "/oauth/token";

pub const SCOPE_SETTINGS_READ: &str = "continuity-settings:read";
pub const SCOPE_SETTINGS_WRITE: &str = "continuity-settings:write";
pub const SCOPE_ACTIVATION_READ: &str = "continuity-settings-activation:read";
pub const SCOPE_ACTIVATION_WRITE: &str = "continuity-settings-activation:write";

/// Documented demo credentials: the simulator protects nothing real.
pub const DEFAULT_CLIENT_ID: &str = "demo";
pub const DEFAULT_CLIENT_SECRET: &str = "demo-secret";
/// Talkdesk does not document the lifetime; an hour is the common OAuth default.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

#[derive(Clone, Debug)]
pub struct SimulatorOptions {
    pub client_id: String,
    pub client_secret: SecretString,
    /// Scopes this client may be granted.
    pub allowed_scopes: Vec<String>,
    /// Lifetime of issued tokens (`expires_in` is its whole seconds).
    pub token_ttl: Duration,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            client_id: DEFAULT_CLIENT_ID.to_string(),
            client_secret: SecretString::from(DEFAULT_CLIENT_SECRET),
            allowed_scopes: [
                SCOPE_SETTINGS_READ,
                SCOPE_SETTINGS_WRITE,
                SCOPE_ACTIVATION_READ,
                SCOPE_ACTIVATION_WRITE,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            token_ttl: DEFAULT_TOKEN_TTL,
        }
    }
}

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
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    opts: SimulatorOptions,
    state: Mutex<SimState>,
    tokens: Mutex<Tokens>,
    faults: Mutex<Faults>,
    journal: Mutex<Journal>,
    quirks: Mutex<Quirks>,
}

/// A poisoned lock only means a handler panicked mid-update of plain data;
/// the simulator keeps serving with whatever is there.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for Simulator {
    /// The documented demo credentials ([`SimulatorOptions::default`]).
    fn default() -> Self {
        Simulator::new(SimulatorOptions::default())
    }
}

impl Simulator {
    pub fn new(opts: SimulatorOptions) -> Simulator {
        Simulator {
            inner: Arc::new(Inner {
                opts,
                state: Mutex::new(SimState::default()),
                tokens: Mutex::new(Tokens::default()),
                faults: Mutex::new(Faults::default()),
                journal: Mutex::new(Journal::default()),
                quirks: Mutex::new(Quirks::default()),
            }),
        }
    }

    pub fn options(&self) -> &SimulatorOptions {
        &self.inner.opts
    }

    pub fn state(&self) -> SimState {
        lock(&self.inner.state).clone()
    }

    /// Replace the state, as an operator editing the Talkdesk UI would.
    pub fn set_state(&self, s: SimState) {
        *lock(&self.inner.state) = s;
    }

    pub fn set_enabled(&self, enabled: bool) {
        lock(&self.inner.state).enabled = enabled;
    }

    pub fn set_settings(&self, settings: FallbackSettings) {
        lock(&self.inner.state).settings = settings;
    }

    pub fn set_quirks(&self, quirks: Quirks) {
        *lock(&self.inner.quirks) = quirks;
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.inner.faults).add(fault);
    }

    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    pub fn faults(&self) -> Vec<Fault> {
        lock(&self.inner.faults).list()
    }

    /// Every issued token stops working at once (the next API call gets 401).
    pub fn expire_tokens(&self) {
        lock(&self.inner.tokens).expire_all();
    }

    /// Every access token issued so far (the last thousand). For tests that
    /// prove tokens never reach logs or audit records.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.inner.tokens).history()
    }

    pub fn journal(&self) -> Vec<JournalEntry> {
        lock(&self.inner.journal).entries()
    }

    pub fn clear_journal(&self) {
        lock(&self.inner.journal).clear();
    }

    fn record(&self, call: &Call, status: u16, fault: Option<&Fault>) {
        lock(&self.inner.journal).push(JournalEntry {
            seq: 0,
            at: Timestamp::now().to_rfc3339(),
            method: call.method.to_string(),
            path: call.path.clone(),
            op: call.op.as_str().to_string(),
            status,
            body: call.summary.clone(),
            user_agent: call.user_agent.clone(),
            instance: call.instance.clone(),
            fault: fault.map(Fault::label),
        });
    }
}

/// What the journal keeps of one API request.
struct Call {
    method: Method,
    path: String,
    op: FaultOp,
    user_agent: Option<String>,
    instance: Option<String>,
    summary: Option<String>,
}

/// What `simulate-talkdesk` prints at start: where it listens, the
/// credentials a client needs (the secret too: it protects nothing real, and
/// a user cannot configure an agent against it without it) and the control
/// routes. Documented in `docs/simulator.md`.
pub fn banner(addr: SocketAddr, opts: &SimulatorOptions) -> String {
    let base = format!("http://{addr}");
    format!(
        "Talkdesk API simulator on {base}
  client id:     {id}
  client secret: {secret}
  token URL:     {base}{TOKEN_PATH}
  API:           GET|PUT {SETTINGS_PATH}, GET|PUT {ACTIVATION_PATH}
  control:       POST|GET|DELETE /_sim/faults   inject faults, e.g. {{\"op\":\"put_activation\",\"status\":503,\"count\":2}}
                 POST /_sim/expire-tokens       expire every issued token
                 GET|DELETE /_sim/journal       the calls the simulator saw
                 GET|PUT /_sim/state            read or change the state as if in the Talkdesk UI
  agent config:  [talkdesk] api_base = \"{base}\", token_url = \"{base}{TOKEN_PATH}\"
",
        id = opts.client_id,
        secret = opts.client_secret.expose_secret(),
    )
}

/// Serve the simulator on `listener` until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    sim: Simulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, client_id = %sim.options().client_id, "Talkdesk simulator listening.");
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
    Router::new()
        .route(TOKEN_PATH, post(api_call))
        .route(SETTINGS_PATH, get(api_call).put(api_call))
        .route(ACTIVATION_PATH, get(api_call).put(api_call))
        .route(
            "/_sim/faults",
            post(post_fault).get(list_faults).delete(delete_faults),
        )
        .route("/_sim/expire-tokens", post(expire_tokens))
        .route("/_sim/journal", get(get_journal).delete(delete_journal))
        .route("/_sim/state", get(get_state).put(put_state))
        .with_state(sim)
}

// ---- API routes -------------------------------------------------------------

/// Every API call goes through here: faults first, then the real handler,
/// then the journal, so the journal shows exactly what the client saw.
async fn api_call(
    State(sim): State<Simulator>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    req: Request,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    let op = match (path.as_str(), &method) {
        (TOKEN_PATH, _) => FaultOp::Token,
        (SETTINGS_PATH, &Method::GET) => FaultOp::GetSettings,
        (SETTINGS_PATH, _) => FaultOp::PutSettings,
        (ACTIVATION_PATH, &Method::GET) => FaultOp::GetActivation,
        _ => FaultOp::PutActivation,
    };
    // 64 KiB is far above any valid settings body (1000-char message).
    let body = match axum::body::to_bytes(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(_) => {
            let r = td_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "1413",
                "Payload too large",
                None,
                vec![],
            );
            let call = Call {
                method,
                path,
                op,
                user_agent: user_agent(&headers),
                instance: instance(&headers),
                summary: None,
            };
            sim.record(&call, 413, None);
            return r;
        }
    };
    let call = Call {
        summary: summarize(op, &body),
        user_agent: user_agent(&headers),
        instance: instance(&headers),
        method,
        path,
        op,
    };

    let fault = lock(&sim.inner.faults).take(op);
    if let Some(f) = &fault {
        if let Some(ms) = f.latency_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if f.drop {
            conn.kill();
            sim.record(&call, 0, Some(f));
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        if let Some(status) = f.status {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = if op == FaultOp::Token {
                let error = match status.as_u16() {
                    400 => "invalid_request",
                    401 => "invalid_client",
                    503 => "temporarily_unavailable",
                    _ => "server_error",
                };
                oauth_error(status, error, "injected fault")
            } else {
                td_error(
                    status,
                    &status.as_u16().to_string(),
                    status.canonical_reason().unwrap_or("Error"),
                    Some("injected fault"),
                    vec![],
                )
            };
            if let Some(ra) = &f.retry_after
                && let Ok(v) = HeaderValue::from_str(ra)
            {
                r.headers_mut().insert(header::RETRY_AFTER, v);
            }
            sim.record(&call, status.as_u16(), Some(f));
            return r;
        }
    }

    let resp = match op {
        FaultOp::Token => token(&sim, &headers, &body),
        _ => api(&sim, op, &headers, &body),
    };
    sim.record(&call, resp.status().as_u16(), fault.as_ref());
    resp
}

/// The calling replica (`X-Continuity-Agent-Instance`).
fn instance(headers: &HeaderMap) -> Option<String> {
    headers
        .get(crate::talkdesk::client::INSTANCE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn summarize(op: FaultOp, body: &[u8]) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    if op == FaultOp::Token {
        // Only the form fields we know; never echo anything else.
        let mut parts = Vec::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            if k == "grant_type" || k == "scope" {
                parts.push(format!("{k}={v}"));
            }
        }
        return Some(parts.join("&"));
    }
    Some(shorten(&String::from_utf8_lossy(body), 300))
}

/// A Talkdesk-style error: `{code, message, description, fields}`.
fn td_error(
    status: StatusCode,
    code: &str,
    message: &str,
    description: Option<&str>,
    fields: Vec<FieldError>,
) -> Response {
    let mut body = json!({"code": code, "message": message});
    if let Some(d) = description {
        body["description"] = json!(d);
    }
    if !fields.is_empty() {
        body["fields"] = json!(fields);
    }
    (status, axum::Json(body)).into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn token(sim: &Simulator, headers: &HeaderMap, body: &[u8]) -> Response {
    let opts = &sim.inner.opts;
    let creds = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok());
    let Some((id, secret)) = creds.as_deref().and_then(|c| c.split_once(':')) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "HTTP Basic client credentials are required",
        );
    };
    if id != opts.client_id || secret != opts.client_secret.expose_secret() {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        );
    }
    let form_ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_ct {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "body must be application/x-www-form-urlencoded",
        );
    }
    let mut grant = None;
    let mut scope = None;
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "grant_type" => grant = Some(v.into_owned()),
            "scope" => scope = Some(v.into_owned()),
            _ => {}
        }
    }
    match grant.as_deref() {
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            );
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "grant_type is required",
            );
        }
    }
    let granted: Vec<String> = match scope.as_deref().map(str::trim) {
        None | Some("") => opts.allowed_scopes.clone(),
        Some(req) => req
            .split_whitespace()
            .filter(|s| opts.allowed_scopes.iter().any(|a| a == s))
            .map(str::to_string)
            .collect(),
    };
    if granted.is_empty() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "none of the requested scopes is allowed for this client",
        );
    }
    let bytes: [u8; 32] = rand::rng().random();
    let access_token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    lock(&sim.inner.tokens).issue(
        access_token.clone(),
        granted.clone(),
        Instant::now() + opts.token_ttl,
    );
    let mut reply = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": opts.token_ttl.as_secs(),
        "scope": granted.join(" "),
    });
    if lock(&sim.inner.quirks).omit_expires_in
        && let Some(o) = reply.as_object_mut()
    {
        o.remove("expires_in");
    }
    let mut r = axum::Json(reply).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn api(sim: &Simulator, op: FaultOp, headers: &HeaderMap, body: &[u8]) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let scopes = match lock(&sim.inner.tokens).check(bearer) {
        TokenCheck::Ok(s) => s,
        TokenCheck::Missing => return unauthorized("missing bearer token"),
        TokenCheck::Unknown => return unauthorized("unknown access token"),
        TokenCheck::Expired => return unauthorized("access token expired"),
    };
    let needed: &[&str] = match op {
        FaultOp::GetSettings => &[SCOPE_SETTINGS_READ, SCOPE_SETTINGS_WRITE],
        FaultOp::PutSettings => &[SCOPE_SETTINGS_WRITE],
        FaultOp::GetActivation => &[SCOPE_ACTIVATION_READ, SCOPE_ACTIVATION_WRITE],
        _ => &[SCOPE_ACTIVATION_WRITE],
    };
    if !needed.iter().any(|n| scopes.iter().any(|s| s == n)) {
        return td_error(
            StatusCode::FORBIDDEN,
            "1403",
            "Forbidden",
            Some(&format!(
                "the access token lacks the scope {}",
                needed.join(" or ")
            )),
            vec![],
        );
    }
    match op {
        FaultOp::GetSettings => settings_response(&lock(&sim.inner.state).settings),
        FaultOp::GetActivation => {
            axum::Json(json!({"enabled": lock(&sim.inner.state).enabled})).into_response()
        }
        FaultOp::PutSettings => {
            let value = match parse_json(headers, body) {
                Ok(v) => v,
                Err(r) => return r,
            };
            match validate_settings(&value) {
                Ok(wire) => {
                    let mut settings = FallbackSettings::from(wire);
                    let quirks = *lock(&sim.inner.quirks);
                    if quirks.lowercase_language
                        && let Some(m) = settings.message.as_mut()
                    {
                        m.language = m.language.to_lowercase();
                    }
                    if quirks.mangle_numbers {
                        settings
                            .forward
                            .values_mut()
                            .for_each(|n| *n = MANGLED_NUMBER.into());
                        if let Some(d) = settings.default.as_mut() {
                            *d = MANGLED_NUMBER.into();
                        }
                    }
                    lock(&sim.inner.state).settings = settings.clone();
                    settings_response(&settings)
                }
                Err(fields) => invalid(fields),
            }
        }
        _ => {
            let value = match parse_json(headers, body) {
                Ok(v) => v,
                Err(r) => return r,
            };
            match validate_activation(&value) {
                Ok(enabled) => {
                    lock(&sim.inner.state).enabled = enabled;
                    axum::Json(json!({"enabled": enabled})).into_response()
                }
                Err(fields) => invalid(fields),
            }
        }
    }
}

fn settings_response(s: &FallbackSettings) -> Response {
    axum::Json(WireSettings::from(s)).into_response()
}

fn unauthorized(why: &str) -> Response {
    td_error(
        StatusCode::UNAUTHORIZED,
        "1401",
        "Unauthorized",
        Some(why),
        vec![],
    )
}

fn invalid(fields: Vec<FieldError>) -> Response {
    td_error(
        StatusCode::BAD_REQUEST,
        "1400",
        "Invalid request",
        Some("the request body failed validation"),
        fields,
    )
}

#[allow(clippy::result_large_err)]
fn parse_json(headers: &HeaderMap, body: &[u8]) -> Result<Value, Response> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return Err(td_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "1415",
            "Unsupported media type",
            Some("send application/json"),
            vec![],
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        invalid(vec![FieldError {
            name: "body".into(),
            description: format!("is not valid JSON: {e}"),
        }])
    })
}

// ---- control routes ---------------------------------------------------------

async fn post_fault(State(sim): State<Simulator>, body: Bytes) -> Response {
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid fault", "detail": e.to_string()})),
            )
                .into_response();
        }
    };
    if let Err(detail) = fault.validate() {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": "invalid fault", "detail": detail})),
        )
            .into_response();
    }
    sim.inject(fault.clone());
    (StatusCode::CREATED, axum::Json(fault)).into_response()
}

async fn list_faults(State(sim): State<Simulator>) -> Response {
    axum::Json(sim.faults()).into_response()
}

async fn delete_faults(State(sim): State<Simulator>) -> StatusCode {
    sim.clear_faults();
    StatusCode::NO_CONTENT
}

async fn expire_tokens(State(sim): State<Simulator>) -> StatusCode {
    sim.expire_tokens();
    StatusCode::NO_CONTENT
}

async fn get_journal(State(sim): State<Simulator>) -> Response {
    axum::Json(sim.journal()).into_response()
}

async fn delete_journal(State(sim): State<Simulator>) -> StatusCode {
    sim.clear_journal();
    StatusCode::NO_CONTENT
}

async fn get_state(State(sim): State<Simulator>) -> Response {
    let s = sim.state();
    axum::Json(json!({"enabled": s.enabled, "settings": WireSettings::from(&s.settings)}))
        .into_response()
}

async fn put_state(State(sim): State<Simulator>, body: Bytes) -> Response {
    let change: StateBody = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                axum::Json(json!({"error": "invalid state", "detail": e.to_string()})),
            )
                .into_response();
        }
    };
    let settings = match change.settings.as_ref().map(validate_settings) {
        Some(Err(fields)) => return invalid(fields),
        Some(Ok(w)) => Some(FallbackSettings::from(w)),
        None => None,
    };
    {
        let mut s = lock(&sim.inner.state);
        if let Some(e) = change.enabled {
            s.enabled = e;
        }
        if let Some(settings) = settings {
            s.settings = settings;
        }
    }
    get_state(State(sim)).await
}

// ---- connections that a fault can drop --------------------------------------

/// Per-connection info handed to handlers: the peer and a kill switch that
/// makes the connection fail on its next read or write, so hyper closes it
/// without sending the response (a "dropped connection" fault).
#[derive(Clone, Debug)]
pub struct Conn {
    pub remote: SocketAddr,
    killed: Arc<AtomicBool>,
}

impl Conn {
    fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
    }
}

impl Connected<IncomingStream<'_, KillableListener>> for Conn {
    fn connect_info(stream: IncomingStream<'_, KillableListener>) -> Self {
        stream.remote_addr().clone()
    }
}

struct KillableListener(TcpListener);

impl Listener for KillableListener {
    type Io = KillableStream;
    type Addr = Conn;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, remote)) => {
                    let killed = Arc::new(AtomicBool::new(false));
                    return (
                        KillableStream {
                            inner: stream,
                            killed: killed.clone(),
                        },
                        Conn { remote, killed },
                    );
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(e) => {
                    tracing::warn!(error = %e, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(Conn {
            remote: self.0.local_addr()?,
            killed: Arc::new(AtomicBool::new(false)),
        })
    }
}

struct KillableStream {
    inner: TcpStream,
    killed: Arc<AtomicBool>,
}

impl KillableStream {
    fn check(&self) -> io::Result<()> {
        if self.killed.load(Ordering::SeqCst) {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "dropped by fault injection",
            ))
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
