//! The `/_sim` control routes tests, the demo and shell scripts use: faults,
//! token expiry, the journal and the state "as if in the Talkdesk UI". Served
//! twice: at `/_sim/...` for the first account (what a single-account
//! simulator always had) and at `/_sim/accounts/{id}/...` for any account.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::domain::FallbackSettings;
use crate::talkdesk::wire::WireSettings;

use super::account::{AccountHandle, lock};
use super::api::{invalid, unknown_account};
use super::{Fault, Simulator, StateBody, validate_settings};

/// The control routes of one account, to nest under `/_sim` and
/// `/_sim/accounts/{id}`.
pub(super) fn routes() -> Router<Simulator> {
    Router::new()
        .route(
            "/faults",
            post(post_fault).get(list_faults).delete(delete_faults),
        )
        .route("/expire-tokens", post(expire_tokens))
        .route("/journal", get(get_journal).delete(delete_journal))
        .route("/state", get(get_state).put(put_state))
}

/// The account a control route acts on: `{id}` when nested under
/// `/_sim/accounts/{id}` (404 when not served), else the first.
struct Target(AccountHandle);

impl FromRequestParts<Simulator> for Target {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, sim: &Simulator) -> Result<Target, Response> {
        match Option::<Path<String>>::from_request_parts(parts, sim).await {
            Ok(None) => Ok(Target(sim.first())),
            Ok(Some(Path(id))) => sim
                .account(&id)
                .map(Target)
                .ok_or_else(|| unknown_account(&id)),
            Err(rejection) => Err(rejection.into_response()),
        }
    }
}

fn bad_request(error: &str, detail: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": error, "detail": detail})),
    )
        .into_response()
}

async fn post_fault(Target(account): Target, body: Bytes) -> Response {
    let fault: Fault = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => return bad_request("invalid fault", e.to_string()),
    };
    if let Err(detail) = fault.validate() {
        return bad_request("invalid fault", detail);
    }
    account.inject(fault.clone());
    (StatusCode::CREATED, axum::Json(fault)).into_response()
}

async fn list_faults(Target(account): Target) -> Response {
    axum::Json(account.faults()).into_response()
}

async fn delete_faults(Target(account): Target) -> StatusCode {
    account.clear_faults();
    StatusCode::NO_CONTENT
}

async fn expire_tokens(Target(account): Target) -> StatusCode {
    account.expire_tokens();
    StatusCode::NO_CONTENT
}

async fn get_journal(Target(account): Target) -> Response {
    axum::Json(account.journal()).into_response()
}

async fn delete_journal(Target(account): Target) -> StatusCode {
    account.clear_journal();
    StatusCode::NO_CONTENT
}

fn state_response(account: &AccountHandle) -> Response {
    let s = account.state();
    axum::Json(json!({"enabled": s.enabled, "settings": WireSettings::from(&s.settings)}))
        .into_response()
}

async fn get_state(Target(account): Target) -> Response {
    state_response(&account)
}

async fn put_state(Target(account): Target, body: Bytes) -> Response {
    let change: StateBody = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => return bad_request("invalid state", e.to_string()),
    };
    let settings = match change.settings.as_ref().map(validate_settings) {
        Some(Err(fields)) => return invalid(fields),
        Some(Ok(w)) => Some(FallbackSettings::from(w)),
        None => None,
    };
    // One lock for both parts: a reader never sees half a change.
    {
        let mut s = lock(&account.account.state);
        if let Some(e) = change.enabled {
            s.enabled = e;
        }
        if let Some(settings) = settings {
            s.settings = settings;
        }
    }
    state_response(&account)
}
