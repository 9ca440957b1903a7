//! Routes: status, override, events, metrics, health. Their JSON bodies are
//! in [`super::wire`], shared with the CLI client.

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
use super::control::{Applied, Control, ReloadError};
use super::wire::{Cleared, OverrideRequest, OverrideResponse, OverrideState, Receipt, Released};
use super::{ApiError, AppState, REQUEST_TIMEOUT};
use crate::config::Dur;
use crate::config::schema::Scope;
use crate::domain::{Desired, Timestamp};
use crate::engine::Override;
use crate::store::Input;

/// Shortest override: anything shorter is more likely a typo than intent.
const OVERRIDE_MIN_TTL: Duration = Duration::from_secs(60);
const REASON_MAX_CHARS: usize = 500;
/// How long an operator change may take to reach the store. Shorter than
/// `REQUEST_TIMEOUT`, so the caller hears the outcome from us.
const APPEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a durable change waits for this replica's engine to apply it
/// before the answer says "queued" instead.
const APPLY_WAIT: Duration = Duration::from_secs(2);

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
    let (reply, rx) = oneshot::channel();
    ask(&s, Control::Status { reply }).await?;
    let doc = rx.await.map_err(|_| shutting_down())?;
    Ok(Json(doc).into_response())
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
    // Everything, the wait for Talkdesk included, ends within `WAIT_MAX` of
    // arrival, so the answer beats the server's request timeout.
    let started = tokio::time::Instant::now();
    let actor = authorize(&headers, &s.tokens, Scope::Override)?;
    let wait = wait_param(q)?;
    let max = s.config.raw.agent.max_body.0 as usize;
    let bytes = read_body(body, &headers, max, REQUEST_TIMEOUT).await?;
    let req: OverrideRequest = json_body(&headers, &bytes)?;
    let ov = validate_override(&s, req, &actor.0, Timestamp::now())?;
    let (receipt, _) = submit(&s, Input::OverrideSet(ov.clone())).await?;
    let state = if ov.desired.is_active() {
        OverrideState::Active
    } else {
        OverrideState::Inactive
    };
    let left = super::outcome::WAIT_MAX.saturating_sub(started.elapsed());
    let talkdesk = super::outcome::await_talkdesk(&s.actuator, &ov.desired, wait.min(left)).await;
    let body = OverrideResponse {
        state,
        profile: ov.desired.profile().map(str::to_string),
        until: ov.until.to_rfc3339(),
        reason: ov.reason,
        actor: ov.actor,
        receipt,
        talkdesk: Some(talkdesk),
    };
    Ok((answer_status(receipt), Json(body)).into_response())
}

/// Appends an operator's change to the durable input queue, then waits a
/// little for this replica's engine to apply it. Durable first: once this
/// returns Ok, the change survives a crash of any replica.
async fn submit(s: &AppState, input: Input) -> Result<(Receipt, Option<Applied>), ApiError> {
    let appended = tokio::time::timeout(APPEND_TIMEOUT, s.queue.append(vec![input])).await;
    let id = match appended {
        Ok(Ok(ids)) => ids.first().copied().unwrap_or_default(),
        Ok(Err(e)) => {
            return Err(ApiError::Overloaded {
                detail: format!("the store cannot take the change now; nothing was accepted ({e})"),
                retry_after_secs: 5,
            });
        }
        Err(_) => {
            // The write may still commit: say so instead of pretending it failed.
            return Err(ApiError::Overloaded {
                detail: format!(
                    "the store did not confirm the change within {}s; it may still take effect: check GET /v1/status before retrying",
                    APPEND_TIMEOUT.as_secs()
                ),
                retry_after_secs: 5,
            });
        }
    };
    let (reply, rx) = oneshot::channel();
    let applied = tokio::time::timeout(APPLY_WAIT, async {
        s.control.send(Control::Applied { id, reply }).await.ok()?;
        rx.await.ok()
    })
    .await
    .ok()
    .flatten();
    let receipt = Receipt {
        input_id: id,
        applied: applied.is_some(),
    };
    Ok((receipt, applied))
}

/// 200 when this replica applied the change, 202 when it is queued.
fn answer_status(receipt: Receipt) -> StatusCode {
    if receipt.applied {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    }
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

/// Checks a request against the configuration; 422 with the reason otherwise.
pub fn validate_override(
    s: &AppState,
    req: OverrideRequest,
    actor: &str,
    now: Timestamp,
) -> Result<Override, ApiError> {
    let reason = req.reason.trim().to_string();
    if reason.is_empty() {
        return Err(ApiError::Invalid(
            "reason is required: say why calls are being moved".into(),
        ));
    }
    if reason.chars().count() > REASON_MAX_CHARS {
        return Err(ApiError::Invalid(format!(
            "reason is longer than {REASON_MAX_CHARS} characters"
        )));
    }
    let ttl: Dur = req
        .ttl
        .parse()
        .map_err(|e: String| ApiError::Invalid(format!("ttl: {e}")))?;
    let max = s.config.raw.api.override_max_ttl;
    if ttl.get() < OVERRIDE_MIN_TTL || ttl > max {
        return Err(ApiError::Invalid(format!(
            "ttl {ttl} is out of range (1m to {max}, api.override_max_ttl)"
        )));
    }
    let desired = match (req.state, req.profile) {
        (OverrideState::Active, Some(p)) if s.config.profiles.contains_key(&p) => {
            Desired::Active { profile: p }
        }
        (OverrideState::Active, Some(p)) => {
            let known: Vec<&str> = s.config.profiles.keys().map(String::as_str).collect();
            return Err(ApiError::Invalid(format!(
                "unknown profile {p:?} (profiles: {})",
                known.join(", ")
            )));
        }
        (OverrideState::Active, None) => {
            return Err(ApiError::Invalid(
                "profile is required when state is active".into(),
            ));
        }
        (OverrideState::Inactive, Some(_)) => {
            return Err(ApiError::Invalid(
                "profile must not be set when state is inactive".into(),
            ));
        }
        (OverrideState::Inactive, None) => Desired::Inactive,
    };
    Ok(Override {
        desired,
        reason,
        actor: actor.to_string(),
        set_at: now,
        until: now.add(ttl.get()),
    })
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
    let input = Input::OverrideCleared {
        actor: actor.0,
        reason: q.reason,
    };
    let (receipt, applied) = submit(&s, input).await?;
    let cleared = applied.and_then(|a| a.changed).unwrap_or(false);
    Ok((answer_status(receipt), Json(Cleared { cleared, receipt })).into_response())
}

/// `DELETE /v1/flap`: release the flap latch. The decision goes back to the
/// rules (and the flap history is forgotten, so it does not re-latch at once).
async fn release_flap(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let actor = authorize(&headers, &s.tokens, Scope::Override)?;
    let (receipt, applied) = submit(&s, Input::FlapRelease { actor: actor.0 }).await?;
    let released = applied.and_then(|a| a.changed).unwrap_or(false);
    Ok((answer_status(receipt), Json(Released { released, receipt })).into_response())
}

/// `POST /-/reload`: 200 with what changed, or 422 with every reason the new
/// file was refused (the running configuration is kept).
async fn reload(State(s): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let actor = authorize(&headers, &s.tokens, Scope::Admin)?;
    let (reply, rx) = oneshot::channel();
    ask(
        &s,
        Control::Reload {
            actor: actor.0,
            reply,
        },
    )
    .await?;
    match rx.await.map_err(|_| shutting_down())? {
        Ok(done) => Ok(Json(serde_json::json!({
            "result": "ok",
            "origin": done.origin,
            "changed": done.changed,
        }))
        .into_response()),
        Err(ReloadError::ShuttingDown) => Err(shutting_down()),
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

async fn ask(s: &AppState, c: Control) -> Result<(), ApiError> {
    match tokio::time::timeout(Duration::from_secs(5), s.control.send(c)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(shutting_down()),
        Err(_) => Err(ApiError::Overloaded {
            detail: "the agent is busy; retry".into(),
            retry_after_secs: 1,
        }),
    }
}

fn shutting_down() -> ApiError {
    ApiError::Overloaded {
        detail: "the agent is shutting down".into(),
        retry_after_secs: 1,
    }
}
