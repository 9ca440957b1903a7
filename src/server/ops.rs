//! What an operator can do, and the status picture, independent of how the
//! request arrived: the JSON API (`api.rs`, bearer tokens) and the status
//! page's forms (`page/`, a session cookie and a CSRF token) both call these,
//! so an override set from a browser takes exactly the path of one set with
//! `PUT /v1/override`: validated against the configuration, appended to the
//! durable input queue before any answer, then (briefly) awaited from this
//! replica's engine, and reported honestly (applied, or queued).

use std::time::Duration;

use axum::http::StatusCode;
use tokio::sync::oneshot;

use super::ApiError;
use super::accounts::AccountApi;
use super::auth::TokenName;
use super::control::{Applied, Control, StatusDoc};
use super::wire::{Cleared, OverrideRequest, OverrideResponse, OverrideState, Receipt, Released};
use crate::config::Dur;
use crate::domain::{Desired, Timestamp};
use crate::engine::Override;
use crate::store::Input;
use crate::store::inputs::APPEND_WITHIN;

/// Shortest override: anything shorter is more likely a typo than intent.
const OVERRIDE_MIN_TTL: Duration = Duration::from_secs(60);
pub const REASON_MAX_CHARS: usize = 500;
/// How long past the queue's own bound (`inputs::APPEND_WITHIN`, after which
/// nothing commits) the answer of a commit already under way is awaited.
/// Past it only a COMMIT whose answer is lost on the network can be
/// pending, and the answer says "unknown". Together with `APPLY_WAIT`
/// under `REQUEST_TIMEOUT`, so the caller hears the outcome from us.
const COMMIT_ANSWER_SLACK: Duration = Duration::from_secs(2);
/// How long a durable change waits for this replica's engine to apply it
/// before the answer says "queued" instead.
const APPLY_WAIT: Duration = Duration::from_secs(2);

/// The whole status document, as the daemon's loop answers it.
pub async fn status(s: &AccountApi) -> Result<StatusDoc, ApiError> {
    let (reply, rx) = oneshot::channel();
    ask(&s.control, Control::Status { reply }).await?;
    rx.await.map_err(|_| shutting_down())
}

/// Sets an override: validate (422 with the reason), append durably, wait up
/// to `wait` for Talkdesk (never past `outcome::WAIT_MAX` after `started`,
/// the request's arrival), and report what happened.
pub async fn set_override(
    s: &AccountApi,
    req: OverrideRequest,
    actor: &TokenName,
    wait: Duration,
    started: tokio::time::Instant,
) -> Result<OverrideResponse, ApiError> {
    let ov = validate_override(s, req, &actor.0, Timestamp::now())?;
    let (receipt, _) = submit(s, Input::OverrideSet(ov.clone())).await?;
    let state = if ov.desired.is_active() {
        OverrideState::Active
    } else {
        OverrideState::Inactive
    };
    // Everything, the wait for Talkdesk included, ends within `WAIT_MAX` of
    // arrival, so the answer beats the server's request timeout.
    let left = super::outcome::WAIT_MAX.saturating_sub(started.elapsed());
    let talkdesk = super::outcome::await_talkdesk(&s.actuator, &ov.desired, wait.min(left)).await;
    Ok(OverrideResponse {
        state,
        profile: ov.desired.profile().map(str::to_string),
        until: ov.until.to_rfc3339(),
        reason: ov.reason,
        actor: ov.actor,
        receipt,
        talkdesk: Some(talkdesk),
    })
}

/// Clears the override (back to automatic).
pub async fn clear_override(
    s: &AccountApi,
    actor: &TokenName,
    reason: Option<String>,
) -> Result<Cleared, ApiError> {
    let input = Input::OverrideCleared {
        actor: actor.0.clone(),
        reason,
    };
    let (receipt, applied) = submit(s, input).await?;
    let cleared = applied.and_then(|a| a.changed).unwrap_or(false);
    Ok(Cleared { cleared, receipt })
}

/// Releases the flap latch: the decision goes back to the rules (and the
/// flap history is forgotten, so it does not re-latch at once).
pub async fn release_flap(s: &AccountApi, actor: &TokenName) -> Result<Released, ApiError> {
    let input = Input::FlapRelease {
        actor: actor.0.clone(),
    };
    let (receipt, applied) = submit(s, input).await?;
    let released = applied.and_then(|a| a.changed).unwrap_or(false);
    Ok(Released { released, receipt })
}

/// 200 when this replica applied the change, 202 when it is queued.
pub fn answer_status(receipt: Receipt) -> StatusCode {
    if receipt.applied {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    }
}

/// Appends an operator's change to the durable input queue, then waits a
/// little for this replica's engine to apply it. Durable first: once this
/// returns Ok, the change survives a crash of any replica; an error means
/// it was not kept and will not take effect later (the queue's appends are
/// bounded and rolled back when late, `store::inputs::Queue`).
async fn submit(s: &AccountApi, input: Input) -> Result<(Receipt, Option<Applied>), ApiError> {
    let bound = APPEND_WITHIN + COMMIT_ANSWER_SLACK;
    let appended = tokio::time::timeout(bound, s.queue.append(vec![input])).await;
    let id = match appended {
        Ok(Ok(ids)) => ids.first().copied().unwrap_or_default(),
        Ok(Err(e)) => {
            return Err(ApiError::Overloaded {
                detail: format!("the store cannot take the change now; nothing was accepted ({e})"),
                retry_after_secs: 5,
            });
        }
        Err(_) => {
            // Only a commit sent to the store whose answer never came back
            // gets here: its outcome is unknown, and the answer says so.
            return Err(ApiError::Overloaded {
                detail: format!(
                    "the store did not confirm the change within {}s; it may still take effect: check GET /v1/status before retrying",
                    bound.as_secs()
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

/// Checks a request against the configuration; 422 with the reason otherwise.
pub fn validate_override(
    s: &AccountApi,
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

/// Sends `c` to a loop (an account's, or the daemon's for a reload): 503
/// when it is busy or shutting down.
pub async fn ask(to: &tokio::sync::mpsc::Sender<Control>, c: Control) -> Result<(), ApiError> {
    match tokio::time::timeout(Duration::from_secs(5), to.send(c)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(shutting_down()),
        Err(_) => Err(ApiError::Overloaded {
            detail: "the agent is busy; retry".into(),
            retry_after_secs: 1,
        }),
    }
}

pub fn shutting_down() -> ApiError {
    ApiError::Overloaded {
        detail: "the agent is shutting down".into(),
        retry_after_secs: 1,
    }
}
