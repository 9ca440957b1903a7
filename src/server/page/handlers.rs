//! The page's routes: `GET /`, sign in and out, and the four actions. Every
//! action goes through `server::ops`, exactly as the JSON API's override
//! and flap routes do, and the page that answers it says what happened.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use super::access::{self, Denied, Viewer};
use super::model::{Notice, Tone, clock};
use super::render::{self, Draft, PageData};
use crate::config::schema::Scope;
use crate::domain::Timestamp;
use crate::server::accounts::AccountApi;
use crate::server::auth::TokenName;
use crate::server::body::{check_content_encoding, read_body};
use crate::server::error::CHALLENGE_BEARER;
use crate::server::events::{Filter, page_where};
use crate::server::wire::{EventItem, OverrideRequest, OverrideResponse};
use crate::server::{ApiError, AppState, REQUEST_TIMEOUT, ops};
use crate::store::StoredEvent;
use crate::telemetry::AuditKind;

/// A form is a few short fields: anything larger is not ours.
const FORM_MAX: usize = 16 * 1024;
/// How long an override from the page waits for Talkdesk before the page
/// answers (with Talkdesk's state either way).
const TALKDESK_WAIT: Duration = Duration::from_secs(5);
/// Timeline length.
const TIMELINE: usize = 30;
/// Audit records one rendering reads at most for its timeline. The page
/// refreshes every few seconds, and on a quiet day most records are routine
/// Talkdesk reads it leaves out: a bounded look back, not the whole log.
const TIMELINE_SCAN: usize = 2000;

/// `GET /`.
pub async fn show(State(s): State<AppState>, headers: HeaderMap) -> Response {
    match access::viewer(&s, &headers, Timestamp::now()) {
        Ok(viewer) => status_page(&s, &viewer, None, &Draft::default(), StatusCode::OK).await,
        Err(denied) => login_response(&denied, &headers),
    }
}

/// `POST /ui/login`: the token, once, in the form body.
pub async fn login(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if let Err(denied) = access::same_origin(&headers) {
        return login_response(&denied, &headers);
    }
    let form = match read_form(&headers, body).await {
        Ok(f) => f,
        Err(e) => return login_response(&api_denied(&e), &headers),
    };
    let presented = form.get("token").map(|t| t.trim()).unwrap_or("");
    let Some(token) = s.tokens.find_secret(presented) else {
        tracing::warn!(message = "Status page sign-in refused: unknown token.");
        let denied = Denied {
            status: StatusCode::UNAUTHORIZED,
            message: "That token is not configured (api.tokens).".into(),
            clear_cookie: false,
        };
        return login_response(&denied, &headers);
    };
    let name = token.name();
    if !token.has(Scope::Read) && !token.has(Scope::Override) {
        tracing::warn!(message = "Status page sign-in refused: the token has neither read nor override.", token = %name);
        let denied = Denied {
            status: StatusCode::FORBIDDEN,
            message: format!(
                "Token {:?} has neither the read nor the override scope.",
                name.0
            ),
            clear_cookie: false,
        };
        return login_response(&denied, &headers);
    }
    tracing::info!(message = "Status page sign-in.", token = %name);
    let cookie = s.sessions.mint(&token, Timestamp::now());
    let mut resp = see_other("/");
    resp.headers_mut()
        .insert(header::SET_COOKIE, access::set_cookie(&cookie));
    resp
}

/// `POST /ui/logout`: ends the session in this browser.
pub async fn logout(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let form = read_form(&headers, body).await.unwrap_or_default();
    let viewer = access::viewer(&s, &headers, Timestamp::now());
    if let Ok(v @ Viewer::Session { .. }) = &viewer
        && let Err(denied) = access::form_session(&s, &headers, v, field(&form, "csrf"))
    {
        return status_page(
            &s,
            v,
            Some(&refusal(&denied)),
            &Draft::default(),
            denied.status,
        )
        .await;
    }
    let mut resp = see_other("/");
    resp.headers_mut()
        .insert(header::SET_COOKIE, access::clear_cookie());
    resp
}

/// `POST /ui/override`: fallback on with a profile, or off, for a while.
pub async fn set_override(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = tokio::time::Instant::now();
    act(&s, &headers, body, |s, actor, form| async move {
        let state = field(&form, "state").unwrap_or("");
        let profile = match state {
            "active" => Some(field(&form, "profile").unwrap_or("")),
            "inactive" => None,
            other => {
                return Err(ApiError::Invalid(format!(
                    "state {other:?}: press Force fallback ON or OFF"
                )));
            }
        };
        let req = OverrideRequest::new(
            profile,
            field(&form, "ttl").unwrap_or(""),
            field(&form, "reason").unwrap_or(""),
        );
        let a = page_account(&s, Some(&actor))?;
        let ov = ops::set_override(&a, req, &actor, TALKDESK_WAIT, started).await?;
        Ok((ops::answer_status(ov.receipt), override_notice(&ov)))
    })
    .await
}

/// `POST /ui/override/clear`: back to the rules.
pub async fn clear_override(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    act(&s, &headers, body, |s, actor, _form| async move {
        let a = page_account(&s, Some(&actor))?;
        let c = ops::clear_override(&a, &actor, Some("status page".into())).await?;
        let (tone, title) = match (c.receipt.applied, c.cleared) {
            (false, _) => (
                Tone::Info,
                "Clear accepted and queued for the agent that leads.",
            ),
            (true, true) => (Tone::Ok, "Override cleared: the rules decide again."),
            (true, false) => (Tone::Info, "No override was in force: the rules decide."),
        };
        Ok((ops::answer_status(c.receipt), notice(tone, title, vec![])))
    })
    .await
}

/// `POST /ui/flap/release`: release the flap latch.
pub async fn release_flap(State(s): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    act(&s, &headers, body, |s, actor, _form| async move {
        let a = page_account(&s, Some(&actor))?;
        let r = ops::release_flap(&a, &actor).await?;
        let (tone, title) = match (r.receipt.applied, r.released) {
            (false, _) => (
                Tone::Info,
                "Release accepted and queued for the agent that leads.",
            ),
            (true, true) => (Tone::Ok, "Flap latch released: the rules decide again."),
            (true, false) => (
                Tone::Info,
                "The fallback was not latched: nothing to release.",
            ),
        };
        Ok((ops::answer_status(r.receipt), notice(tone, title, vec![])))
    })
    .await
}

type Form = HashMap<String, String>;

/// One action: read the form, check who acts (session, CSRF, origin, scope),
/// do it, and answer with the page and what happened. Nothing is done when
/// any check fails.
async fn act<F, Fut>(s: &AppState, headers: &HeaderMap, body: Body, action: F) -> Response
where
    F: FnOnce(AppState, TokenName, Form) -> Fut,
    Fut: std::future::Future<Output = Result<(StatusCode, Notice), ApiError>>,
{
    let viewer = match access::viewer(s, headers, Timestamp::now()) {
        Ok(v) => v,
        Err(denied) => return login_response(&denied, headers),
    };
    let form = match read_form(headers, body).await {
        Ok(f) => f,
        Err(e) => {
            return status_page(
                s,
                &viewer,
                Some(&failure(&e)),
                &Draft::default(),
                e.status(),
            )
            .await;
        }
    };
    let draft = Draft {
        profile: field(&form, "profile").map(str::to_string),
        ttl: field(&form, "ttl").map(str::to_string),
        reason: field(&form, "reason").map(str::to_string),
    };
    let actor = match access::operator(s, headers, &viewer, field(&form, "csrf")) {
        Ok(a) => a,
        Err(denied) => {
            return status_page(s, &viewer, Some(&refusal(&denied)), &draft, denied.status).await;
        }
    };
    match action(s.clone(), actor, form).await {
        Ok((code, n)) => status_page(s, &viewer, Some(&n), &Draft::default(), code).await,
        Err(e) => status_page(s, &viewer, Some(&failure(&e)), &draft, e.status()).await,
    }
}

/// The account the page shows and acts on: the default one, if `token` (none:
/// the public page) may reach it (`api.tokens.accounts`).
fn page_account(s: &AppState, token: Option<&TokenName>) -> Result<AccountApi, ApiError> {
    let a = s.accounts.default_account()?;
    match token {
        Some(token) if !s.tokens.may_access(token, &a.id) => {
            Err(crate::server::auth::account_forbidden(token, &a.id))
        }
        _ => Ok(a.clone()),
    }
}

/// The status page, read from the same sources as `GET /v1/status` and
/// `GET /v1/events`.
async fn status_page(
    s: &AppState,
    viewer: &Viewer,
    notice: Option<&Notice>,
    draft: &Draft,
    code: StatusCode,
) -> Response {
    let token = match viewer {
        Viewer::Public => None,
        Viewer::Bearer(token) | Viewer::Session { token, .. } => Some(token),
    };
    let doc = match page_account(s, token) {
        Ok(a) => ops::status(&a).await.map(|doc| (doc, a)),
        Err(e) => Err(e),
    };
    let (doc, account) = match doc {
        Ok(doc) => doc,
        Err(e) => {
            let page = render::error_page("The agent cannot answer now", &e.detail());
            return (e.status(), Html(page.into_string())).into_response();
        }
    };
    let timeline = timeline(&*account.store).await;
    let page = render::page(&PageData {
        doc: &doc,
        config: &account.config,
        timeline: &timeline,
        viewer,
        notice,
        draft,
    });
    (code, Html(page.into_string())).into_response()
}

/// Recent decisions, probe changes, alerts, overrides and Talkdesk calls,
/// newest first; routine successful reads of Talkdesk are left out.
async fn timeline(store: &dyn crate::store::Store) -> Result<Vec<EventItem>, String> {
    let filter = Filter {
        limit: TIMELINE,
        before: None,
        since: None,
        kinds: vec![
            AuditKind::Decision,
            AuditKind::Override,
            AuditKind::Flap,
            AuditKind::Blind,
            AuditKind::Maintenance,
            AuditKind::Drill,
            AuditKind::Drift,
            AuditKind::Actuation,
            AuditKind::Talkdesk,
            AuditKind::Probe,
            AuditKind::Alert,
        ],
    };
    page_where(store, &filter, TIMELINE_SCAN, |e| !routine_read(e))
        .await
        .map(|p| p.events)
        .map_err(|e| e.to_string())
}

/// A Talkdesk read that succeeded: the reconcile loop makes one every
/// `reconcile_interval`, which would drown the timeline.
fn routine_read(e: &StoredEvent) -> bool {
    let d = &e.record.data;
    e.record.kind == AuditKind::Talkdesk
        && d.get("method").and_then(|m| m.as_str()) == Some("GET")
        && d.get("error").is_none_or(|err| err.is_null())
}

/// The login page with `denied`'s status and message.
fn login_response(denied: &Denied, headers: &HeaderMap) -> Response {
    let hint = (!access::cookie_can_stick(headers)).then_some(
        "This page was reached over plain HTTP at a non-local address: browsers refuse the \
         secure session cookie there, so signing in will not stick. Serve the agent behind TLS \
         (a reverse proxy that sets X-Forwarded-Proto: https), or open it on localhost.",
    );
    let page = render::login_page(&denied.message, hint);
    let mut resp = (denied.status, Html(page.into_string())).into_response();
    if denied.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(CHALLENGE_BEARER),
        );
    }
    if denied.clear_cookie {
        resp.headers_mut()
            .insert(header::SET_COOKIE, access::clear_cookie());
    }
    resp
}

fn see_other(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

/// Reads an `application/x-www-form-urlencoded` body (415 otherwise, 413
/// past [`FORM_MAX`]). The first value of a repeated field counts.
async fn read_form(headers: &HeaderMap, body: Body) -> Result<Form, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(ApiError::UnsupportedMediaType(
            "send the form as application/x-www-form-urlencoded".into(),
        ));
    }
    check_content_encoding(headers)?;
    let bytes = read_body(body, headers, FORM_MAX, REQUEST_TIMEOUT).await?;
    let mut form = Form::new();
    for (k, v) in url::form_urlencoded::parse(&bytes) {
        form.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    Ok(form)
}

fn field<'a>(form: &'a Form, name: &str) -> Option<&'a str> {
    form.get(name).map(String::as_str)
}

fn notice(tone: Tone, title: &str, lines: Vec<String>) -> Notice {
    Notice {
        tone,
        title: title.to_string(),
        lines,
    }
}

/// A refused action (who may act): nothing was done.
fn refusal(denied: &Denied) -> Notice {
    notice(Tone::Alert, "Refused", vec![denied.message.clone()])
}

/// An action the agent did not take, with the API's own explanation.
fn failure(e: &ApiError) -> Notice {
    let title = if e.status().is_client_error() {
        "Refused: nothing was changed"
    } else {
        "Not done"
    };
    notice(Tone::Alert, title, vec![e.detail()])
}

fn api_denied(e: &ApiError) -> Denied {
    Denied {
        status: e.status(),
        message: e.detail(),
        clear_cookie: false,
    }
}

/// What an override did: taken (or queued), and what Talkdesk has.
fn override_notice(ov: &OverrideResponse) -> Notice {
    let what = match &ov.profile {
        Some(p) => format!("fallback ON with profile {p}"),
        None => "fallback OFF".to_string(),
    };
    let until = chrono::DateTime::parse_from_rfc3339(&ov.until)
        .map(|t| {
            let t = Timestamp::from_millis(t.timestamp_millis());
            clock(t, Timestamp::now())
        })
        .unwrap_or_else(|_| ov.until.clone());
    let title = if ov.receipt.applied {
        format!("Override set: {what} until {until}.")
    } else {
        format!(
            "Override accepted: {what} until {until}. It is queued for the agent that leads, which applies it within about a second."
        )
    };
    let (tone, line) = match &ov.talkdesk {
        Some(t) if t.matches => (Tone::Ok, "Talkdesk now matches.".to_string()),
        Some(t) if t.dry_run => (
            Tone::Warn,
            "Talkdesk was not changed: agent.dry_run is on (writes are only logged).".to_string(),
        ),
        Some(t) => {
            let error = t.error.as_deref().unwrap_or("no answer from Talkdesk yet");
            let next = if t.retrying {
                "the agent keeps retrying"
            } else {
                "the agent does not retry until the decision or the configuration changes"
            };
            (
                Tone::Warn,
                format!("Talkdesk does not match yet ({error}); {next}."),
            )
        }
        None => (Tone::Info, String::new()),
    };
    let lines = if line.is_empty() { vec![] } else { vec![line] };
    Notice { tone, title, lines }
}
