//! Routes: status, override, events, metrics, health. Their JSON bodies are
//! in [`super::wire`], shared with the CLI client; what operator changes do
//! is in [`super::ops`], shared with the status page.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::accounts::AccountApi;
use super::auth::authorize;
use super::body::{json_body, read_body};
use super::control::{AccountSummary, AccountsDoc, Control, ReloadError};
use super::ops;
use super::wire::OverrideRequest;
use super::{ApiError, AppState, REQUEST_TIMEOUT};
use crate::config::Dur;
use crate::config::schema::Scope;
use crate::store::{OpenOutcome, StoreError};

pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/status", get(status))
        .route("/v1/override", put(set_override).delete(clear_override))
        .route("/v1/events", get(super::events::handler))
        .route("/v1/flap", axum::routing::delete(release_flap))
        .route("/openapi.json", get(openapi))
        .route("/-/reload", axum::routing::post(reload))
        .route("/v1/accounts/{account}/status", get(account_status))
        .route(
            "/v1/accounts/{account}/override",
            put(account_set_override).delete(account_clear_override),
        )
        .route(
            "/v1/accounts/{account}/events",
            get(super::events::account_handler),
        )
        .route(
            "/v1/accounts/{account}/flap",
            axum::routing::delete(account_release_flap),
        )
}

/// The token of the request, checked for `scope` and for the account the
/// route acts on (`id`, or the default account): the one place a route
/// learns which account it may touch.
pub(super) fn authorized_account(
    s: &AppState,
    headers: &HeaderMap,
    scope: Scope,
    id: Option<&str>,
) -> Result<(super::auth::TokenName, AccountApi), ApiError> {
    let actor = authorize(headers, &s.tokens, scope)?;
    // Refused before the account is looked up: a token scoped to other
    // accounts learns nothing, not even whether this one exists.
    let named = match id {
        Some(id) => id,
        None => s.accounts.default_account()?.id.as_str(),
    };
    if !s.tokens.may_access(&actor, named) {
        return Err(super::auth::account_forbidden(&actor, named));
    }
    let account = match id {
        Some(id) => s.accounts.get(id)?,
        None => s.accounts.default_account()?,
    };
    Ok((actor, account.clone()))
}

/// The OpenAPI document. Hand-written and kept honest by a test that checks
/// every documented path and method against the live router.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// How long `/readyz` waits for the store's ping.
const READYZ_STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

async fn readyz(State(s): State<AppState>) -> Response {
    // First: a store opened read-only does not become ready by waiting.
    if let OpenOutcome::ReadOnly { reason } = s.store.open_outcome() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{}\n", StoreError::ReadOnly(reason)),
        )
            .into_response();
    }
    if !s.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
    }
    for a in s.accounts.iter() {
        if let Some(error) = a.actuator.status().credentials_rejected {
            let section = if s.accounts.len() == 1 {
                "talkdesk".to_string()
            } else {
                format!("accounts.{}.talkdesk", a.id)
            };
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                format!("talkdesk credentials rejected ({error}): check {section}.client_id and {section}.client_secret\n"),
            )
                .into_response();
        }
    }
    // A store that does not answer promptly (a write lock held elsewhere,
    // a slow server) is not ready: say so, rather than a 408 later.
    let ping = tokio::time::timeout(READYZ_STORE_WAIT, s.store.ping()).await;
    match ping.unwrap_or_else(|_| {
        Err(StoreError::Unsupported(format!(
            "no answer within {}s",
            READYZ_STORE_WAIT.as_secs()
        )))
    }) {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store unavailable: {e}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

async fn status(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    status_of(s, headers, None).await
}

async fn account_status(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    status_of(s, headers, Some(id)).await
}

async fn status_of(
    s: AppState,
    headers: HeaderMap,
    id: Option<String>,
) -> Result<Response, ApiError> {
    if id.is_none() && s.accounts.default_account().is_err() {
        return Ok(Json(accounts_status(&s, &headers).await?).into_response());
    }
    let (_, a) = authorized_account(&s, &headers, Scope::Read, id.as_deref())?;
    Ok(Json(ops::status(&a).await?).into_response())
}

/// Several accounts, none of them the default: a line for each account the
/// token may read.
async fn accounts_status(s: &AppState, headers: &HeaderMap) -> Result<AccountsDoc, ApiError> {
    let actor = authorize(headers, &s.tokens, Scope::Read)?;
    let mut accounts = Vec::new();
    for a in s.accounts.iter() {
        if s.tokens.may_access(&actor, &a.id) {
            accounts.push(AccountSummary::from(&ops::status(a).await?));
        }
    }
    Ok(AccountsDoc {
        version: env!("CARGO_PKG_VERSION"),
        instance_id: s.config.instance_id(),
        accounts,
    })
}

#[derive(Debug, Deserialize)]
struct WaitQuery {
    /// How long to wait for Talkdesk before answering (at most `outcome::WAIT_MAX`).
    #[serde(default)]
    wait: Option<String>,
}

async fn set_override(
    State(s): State<AppState>,
    headers: HeaderMap,
    q: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    set_override_of(s, headers, None, q, body).await
}

async fn account_set_override(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    set_override_of(s, headers, Some(id), q, body).await
}

async fn set_override_of(
    s: AppState,
    headers: HeaderMap,
    id: Option<String>,
    q: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    let started = tokio::time::Instant::now();
    let (actor, a) = authorized_account(&s, &headers, Scope::Override, id.as_deref())?;
    let wait = wait_param(q)?;
    let max = s.config.raw.agent.max_body.0 as usize;
    let bytes = read_body(body, &headers, max, REQUEST_TIMEOUT).await?;
    let req: OverrideRequest = json_body(&headers, &bytes)?;
    let body = ops::set_override(&a, req, &actor, wait, started).await?;
    Ok((ops::answer_status(body.receipt), Json(body)).into_response())
}

/// `?wait=DURATION` (0 when absent), at most `outcome::WAIT_MAX`.
fn wait_param(
    q: Result<Query<WaitQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Duration, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::Malformed(e.body_text()))?;
    let Some(text) = q.wait else {
        return Ok(Duration::ZERO);
    };
    let wait: Dur = text
        .parse()
        .map_err(|e: String| ApiError::Invalid(format!("wait: {e}")))?;
    let max = super::outcome::WAIT_MAX;
    if wait.get() > max {
        return Err(ApiError::Invalid(format!(
            "wait {wait} is longer than {}s",
            max.as_secs()
        )));
    }
    Ok(wait.get())
}

#[derive(Debug, Deserialize)]
struct ClearQuery {
    #[serde(default)]
    reason: Option<String>,
}

async fn clear_override(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ClearQuery>,
) -> Result<Response, ApiError> {
    clear_override_of(s, headers, None, q).await
}

async fn account_clear_override(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(q): Query<ClearQuery>,
) -> Result<Response, ApiError> {
    clear_override_of(s, headers, Some(id), q).await
}

async fn clear_override_of(
    s: AppState,
    headers: HeaderMap,
    id: Option<String>,
    q: ClearQuery,
) -> Result<Response, ApiError> {
    let (actor, a) = authorized_account(&s, &headers, Scope::Override, id.as_deref())?;
    let cleared = ops::clear_override(&a, &actor, q.reason).await?;
    Ok((ops::answer_status(cleared.receipt), Json(cleared)).into_response())
}

/// `DELETE /v1/flap`: release the flap latch.
async fn release_flap(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    release_flap_of(s, headers, None).await
}

async fn account_release_flap(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    release_flap_of(s, headers, Some(id)).await
}

async fn release_flap_of(
    s: AppState,
    headers: HeaderMap,
    id: Option<String>,
) -> Result<Response, ApiError> {
    let (actor, a) = authorized_account(&s, &headers, Scope::Override, id.as_deref())?;
    let released = ops::release_flap(&a, &actor).await?;
    Ok((ops::answer_status(released.receipt), Json(released)).into_response())
}

/// `POST /-/reload`: 200 with what changed, or 422 with every reason the new
/// file was refused (the running configuration is kept).
async fn reload(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let actor = authorize(&headers, &s.tokens, Scope::Admin)?;
    let (reply, rx) = oneshot::channel();
    ops::ask(
        &s.reload,
        Control::Reload {
            actor: actor.0,
            reply,
        },
    )
    .await?;
    match rx.await.map_err(|_| ops::shutting_down())? {
        Ok(done) => Ok(Json(serde_json::json!({
            "result": "ok",
            "origin": done.origin,
            "changed": done.changed,
        }))
        .into_response()),
        Err(ReloadError::ShuttingDown) => Err(ops::shutting_down()),
        Err(e) => Ok((
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(serde_json::json!({
                "result": "refused",
                "error": e.to_string(),
                "errors": e.errors(),
            })),
        )
            .into_response()),
    }
}
