//! Routes: status, override, events, metrics, health. Their JSON bodies are
//! in [`super::wire`], shared with the CLI client; what operator changes do
//! is in [`super::ops`], shared with the status page.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Deserialize;
use tokio::sync::oneshot;

use super::auth::authorize;
use super::body::{json_body, read_body};
use super::control::{Control, ReloadError};
use super::ops;
use super::wire::OverrideRequest;
use super::{ApiError, AppState, REQUEST_TIMEOUT};
use crate::config::Dur;
use crate::config::schema::Scope;

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

async fn readyz(State(s): State<AppState>) -> Response {
    if !s.is_ready() {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response();
    }
    if let Some(error) = s.actuator.status().credentials_rejected {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("talkdesk credentials rejected ({error}): check talkdesk.client_id and talkdesk.client_secret\n"),
        )
            .into_response();
    }
    match s.store.ping().await {
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
    authorize(&headers, &s.tokens, Scope::Read)?;
    Ok(Json(ops::status(&s).await?).into_response())
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
    let started = tokio::time::Instant::now();
    let actor = authorize(&headers, &s.tokens, Scope::Override)?;
    let wait = wait_param(q)?;
    let max = s.config.raw.agent.max_body.0 as usize;
    let bytes = read_body(body, &headers, max, REQUEST_TIMEOUT).await?;
    let req: OverrideRequest = json_body(&headers, &bytes)?;
    let body = ops::set_override(&s, req, &actor, wait, started).await?;
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
    let actor = authorize(&headers, &s.tokens, Scope::Override)?;
    let cleared = ops::clear_override(&s, &actor, q.reason).await?;
    Ok((ops::answer_status(cleared.receipt), Json(cleared)).into_response())
}

/// `DELETE /v1/flap`: release the flap latch.
async fn release_flap(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let actor = authorize(&headers, &s.tokens, Scope::Override)?;
    let released = ops::release_flap(&s, &actor).await?;
    Ok((ops::answer_status(released.receipt), Json(released)).into_response())
}

/// `POST /-/reload`: 200 with what changed, or 422 with every reason the new
/// file was refused (the running configuration is kept).
async fn reload(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let actor = authorize(&headers, &s.tokens, Scope::Admin)?;
    let (reply, rx) = oneshot::channel();
    ops::ask(
        &s,
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
