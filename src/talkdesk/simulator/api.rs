//! The API routes the agent uses (`/oauth/token`, the fallback-experience
//! settings and activation), with Talkdesk's rules, for whichever account a
//! call is for.
//!
//! Which account: under `/accounts/{id}/...` the path says (an account with
//! its own `token_url` and `api_base`); on the shared routes the credentials
//! do, as on Talkdesk's shared API host: a token request's client id, the
//! account that issued a bearer token. A call whose credentials name no
//! account goes to the first account, which refuses it (401) and journals
//! it, exactly as a single-account simulator always has. A token is only
//! good for the account that issued it: another account's route answers it
//! 401 "unknown access token".

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use rand::Rng as _;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::domain::FallbackSettings;
use crate::talkdesk::error::{FieldError, shorten};
use crate::talkdesk::wire::WireSettings;

use super::account::{AccountState, Call, lock};
use super::conn::Conn;
use super::state::TokenCheck;
use super::{
    FaultOp, MANGLED_NUMBER, SCOPE_ACTIVATION_READ, SCOPE_ACTIVATION_WRITE, SCOPE_SETTINGS_READ,
    SCOPE_SETTINGS_WRITE, SETTINGS_PATH, Simulator, SimulatorOptions, TOKEN_PATH,
    validate_activation, validate_settings,
};

/// Largest accepted request body: far above any valid settings body
/// (a 1000-character message).
const MAX_BODY: usize = 64 * 1024;

/// Every API call goes through here: the account first, then its faults,
/// then the real handler, then its journal, so the journal shows exactly
/// what the client saw. `prefix` is the `{id}` of `/accounts/{id}/...`.
pub(super) async fn api_call(
    State(sim): State<Simulator>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    prefix: Option<Path<String>>,
    req: Request,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let headers = req.headers().clone();
    // The router only sends the three API paths here, bare or under
    // `/accounts/{id}` (ids hold no '/'), so the suffix names the operation.
    let get = method == Method::GET;
    let op = if path.ends_with(TOKEN_PATH) {
        FaultOp::Token
    } else if path.ends_with(SETTINGS_PATH) {
        if get {
            FaultOp::GetSettings
        } else {
            FaultOp::PutSettings
        }
    } else if get {
        FaultOp::GetActivation
    } else {
        FaultOp::PutActivation
    };
    let account = match prefix {
        Some(Path(id)) => match sim.account_state(&id) {
            Some(a) => a,
            None => return unknown_account(&id),
        },
        None => account_for(&sim, op, &headers),
    };
    let mut call = Call {
        method: method.to_string(),
        path,
        op,
        user_agent: user_agent(&headers),
        instance: instance(&headers),
        summary: None,
    };
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            account.record(&call, 413, None);
            return td_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "1413",
                "Payload too large",
                None,
                vec![],
            );
        }
    };
    call.summary = summarize(op, &body);

    let fault = lock(&account.faults).take(op);
    if let Some(f) = &fault {
        if let Some(ms) = f.latency_ms {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if f.drop {
            conn.kill();
            account.record(&call, 0, Some(f));
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
            account.record(&call, status.as_u16(), Some(f));
            return r;
        }
        if f.wrong_body {
            account.record(&call, 200, Some(f));
            return wrong_body(&account, op);
        }
    }

    let resp = match op {
        FaultOp::Token => token(sim.options(), &account, &headers, &body),
        _ => api(&account, op, &headers, &body),
    };
    account.record(&call, resp.status().as_u16(), fault.as_ref());
    resp
}

/// The account a call on the shared routes is for (see the module docs).
fn account_for(sim: &Simulator, op: FaultOp, headers: &HeaderMap) -> Arc<AccountState> {
    let named = if op == FaultOp::Token {
        basic_credentials(headers).and_then(|(id, _)| {
            sim.account_states()
                .iter()
                .find(|a| a.client_id == id)
                .cloned()
        })
    } else {
        bearer(headers).and_then(|t| {
            sim.account_states()
                .iter()
                .find(|a| lock(&a.tokens).issued(t))
                .cloned()
        })
    };
    named.unwrap_or_else(|| sim.first_state())
}

/// A route under an account the simulator does not serve.
pub(super) fn unknown_account(id: &str) -> Response {
    td_error(
        StatusCode::NOT_FOUND,
        "1404",
        "Not found",
        Some(&format!("no simulated account {id:?}")),
        vec![],
    )
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
pub(super) fn td_error(
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

/// HTTP Basic `client_id:secret`, when present and well formed.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let raw = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())?;
    let (id, secret) = raw.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
}

fn token(
    opts: &SimulatorOptions,
    account: &AccountState,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let Some((id, secret)) = basic_credentials(headers) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "HTTP Basic client credentials are required",
        );
    };
    if id != account.client_id || secret != account.client_secret.expose_secret() {
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
    lock(&account.tokens).issue(
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
    if lock(&account.quirks).omit_expires_in
        && let Some(o) = reply.as_object_mut()
    {
        o.remove("expires_in");
    }
    let mut r = axum::Json(reply).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn api(account: &AccountState, op: FaultOp, headers: &HeaderMap, body: &[u8]) -> Response {
    let scopes = match lock(&account.tokens).check(bearer(headers)) {
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
        FaultOp::GetSettings => settings_response(&lock(&account.state).settings),
        FaultOp::GetActivation => {
            axum::Json(json!({"enabled": lock(&account.state).enabled})).into_response()
        }
        FaultOp::PutSettings => {
            let value = match parse_json(headers, body) {
                Ok(v) => v,
                Err(r) => return r,
            };
            match validate_settings(&value) {
                Ok(wire) => {
                    let mut settings = FallbackSettings::from(wire);
                    let quirks = *lock(&account.quirks);
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
                    lock(&account.state).settings = settings.clone();
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
                    lock(&account.state).enabled = enabled;
                    axum::Json(json!({"enabled": enabled})).into_response()
                }
                Err(fields) => invalid(fields),
            }
        }
    }
}

/// `200 OK` with the wrong body (`Fault::wrong_body`): a write is not
/// applied and its reply shows what the account still has; a read (or a
/// token request) gets a page that is not the API's JSON.
fn wrong_body(account: &AccountState, op: FaultOp) -> Response {
    match op {
        FaultOp::PutSettings => settings_response(&lock(&account.state).settings),
        FaultOp::PutActivation => {
            axum::Json(json!({"enabled": lock(&account.state).enabled})).into_response()
        }
        _ => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body>This service has moved.</body></html>",
        )
            .into_response(),
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

pub(super) fn invalid(fields: Vec<FieldError>) -> Response {
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
