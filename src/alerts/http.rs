//! The webhook routes: `POST /v1/alerts/{source}` and
//! `POST /v1/alerts/statuspage/{token}`.
//!
//! Each delivery goes through the same gate, in this order, and each step can
//! only refuse:
//!
//! | step | refusal |
//! |---|---|
//! | source known and configured | 404 (the same for both, to not reveal which sources are on) |
//! | per-client rate limit | 429 + `Retry-After` |
//! | header credentials / API token / path token | 401 (+ `WWW-Authenticate`), 403 |
//! | exactly one `Content-Type`, JSON, and no `Content-Encoding` | 415 |
//! | body within `agent.max_body`, read within the timeout | 413, 408 |
//! | HMAC signature over the body (Grafana, PagerDuty) | 401 |
//! | parse + validate *every* alert | 400 malformed, 422 invalid |
//! | delivery id not seen before | 202 `duplicate` (nothing emitted) |
//! | no event time beyond the source's `max_skew` in the future | 422 invalid |
//! | *all* events durably in the input queue | 503 + `Retry-After` (nothing accepted) |
//!
//! Authentication comes before the media type and body so an unauthenticated
//! client learns nothing and cannot make us read a megabyte; the signature
//! needs the body, so it comes after. The answer never waits on Talkdesk or the
//! engine, only on the store: the 202 is sent once the whole delivery is in
//! the durable input queue ([`Intake`], one transaction), so an accepted alert
//! survives a `kill -9` and a delivery is never half-accepted. Out-of-order
//! retries are ignored where inputs are applied (`order.rs`), not here.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;

use super::auth::{self, SourceAuth};
use super::dedupe::Dedupe;
use super::intake::Intake;
use super::ratelimit::{RateLimit, RateLimiter, UNAUTHENTICATED};
use super::{AlertUpdate, Parsed, Source, pagerduty};
use crate::config::Config;
use crate::config::schema::Scope;
use crate::domain::Timestamp;
use crate::server::auth::{ApiTokens, TokenCheck, TokenName, missing_scope};
use crate::server::body::{check_content_encoding, media_type, read_body};
use crate::server::error::{ApiError, Challenges, truncate};
use crate::telemetry::metrics::Metrics;

/// A slow client must not hold a connection (and a body buffer) for long.
/// Senders post small bodies on fast networks; PagerDuty itself gives up after 5s.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// `Retry-After` when the engine queue is full: the engine drains it in
/// milliseconds, so a short wait is enough.
const OVERLOADED_RETRY_AFTER_SECS: u64 = 1;
/// How far in the future an event time may be for a source without a
/// configured `max_skew` (the configuration always sets one).
const FUTURE_SKEW: Duration = Duration::from_secs(300);
/// Keys listed in one log line at most.
const MAX_LOGGED_KEYS: usize = 20;

/// The `result` label values of `continuity_alerts_received_total`.
pub const RESULTS: [&str; 13] = [
    "accepted",
    "duplicate",
    "ignored",
    "unauthorized",
    "forbidden",
    "invalid",
    "malformed",
    "too_large",
    "unsupported_media_type",
    "rate_limited",
    "overloaded",
    "timeout",
    "internal",
];

/// Wall clock for signature timestamps and dedupe ages (injectable for tests).
pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// Everything the webhook routes need. Cheap to clone.
#[derive(Clone)]
pub struct AlertsState {
    sources: Arc<HashMap<Source, SourceAuth>>,
    tokens: Arc<ApiTokens>,
    intake: Arc<dyn Intake>,
    metrics: Metrics,
    clock: Clock,
    max_body: usize,
    body_timeout: Duration,
    dedupe: Arc<Dedupe>,
    /// Per source: how far in the future an event time may be.
    max_skew: Arc<HashMap<Source, Duration>>,
    /// Per credential, after authentication.
    limiter: Arc<RateLimiter<String>>,
    /// Per client IP, charged for failed authentications only.
    unauthenticated: Arc<RateLimiter>,
}

impl AlertsState {
    /// Builds the state from a loaded configuration (`*_file` secrets already
    /// read): one [`SourceAuth`] per configured `[webhooks.NAME]`, the API
    /// tokens, `agent.max_body`, and the per-credential rate limit
    /// `alerts.rate_per_second`/`rate_burst` (see `ratelimit.rs`).
    pub fn new(
        cfg: &Config,
        intake: impl Intake,
        metrics: Metrics,
        clock: impl Fn() -> Timestamp + Send + Sync + 'static,
    ) -> AlertsState {
        let sources: HashMap<Source, SourceAuth> = cfg
            .raw
            .webhooks
            .sources()
            .into_iter()
            .filter_map(|(name, c)| Some((Source::from_name(name)?, SourceAuth::new(c))))
            .collect();
        let max_skew = cfg
            .raw
            .webhooks
            .sources()
            .into_iter()
            .filter_map(|(name, c)| Some((Source::from_name(name)?, c.max_skew.get())))
            .collect();
        // Every result of every configured source starts at 0, so dashboards
        // and `rate()` see a series before its first increment.
        for s in sources.keys() {
            for result in RESULTS {
                metrics
                    .alerts_received_total
                    .with_label_values(&[s.as_str(), result]);
            }
        }
        AlertsState {
            sources: Arc::new(sources),
            tokens: Arc::new(ApiTokens::new(&cfg.raw.api.tokens)),
            intake: Arc::new(intake),
            metrics,
            clock: Arc::new(clock),
            max_body: usize::try_from(cfg.raw.agent.max_body.0).unwrap_or(usize::MAX),
            body_timeout: DEFAULT_BODY_TIMEOUT,
            dedupe: Arc::new(Dedupe::default()),
            max_skew: Arc::new(max_skew),
            limiter: Arc::new(RateLimiter::new(Some(RateLimit {
                burst: cfg.raw.alerts.rate_burst,
                per_second: cfg.raw.alerts.rate_per_second,
            }))),
            unauthenticated: Arc::new(RateLimiter::new(Some(UNAUTHENTICATED))),
        }
    }

    /// Per-credential rate limit; `None` disables it.
    pub fn with_rate_limit(mut self, limit: Option<RateLimit>) -> AlertsState {
        self.limiter = Arc::new(RateLimiter::new(limit));
        self
    }

    /// How long a client may take to send its body (408 after that).
    pub fn with_body_timeout(mut self, timeout: Duration) -> AlertsState {
        self.body_timeout = timeout;
        self
    }

    /// The API tokens, for the other routes' `server::auth::authorize` calls.
    pub fn api_tokens(&self) -> Arc<ApiTokens> {
        self.tokens.clone()
    }

    /// Request headers that carry credentials on these routes. Wrap the whole
    /// server (outside any `TraceLayer`) in `SetSensitiveRequestHeadersLayer`
    /// with these, so traces never print them.
    pub fn sensitive_headers(&self) -> Vec<HeaderName> {
        let mut v = vec![
            header::AUTHORIZATION,
            HeaderName::from_static(super::grafana::SIGNATURE_HEADER),
            HeaderName::from_static(pagerduty::SIGNATURE_HEADER),
        ];
        for a in self.sources.values() {
            if let Some(h) = a.header_name() {
                v.push(h.clone());
            }
        }
        v.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        v.dedup();
        v
    }
}

/// The webhook routes, to be `.merge()`d into the main server.
pub fn router(state: AlertsState) -> Router {
    let sensitive = state.sensitive_headers();
    Router::new()
        .route("/v1/alerts/{source}", post(receive).options(handshake))
        .route("/v1/alerts/statuspage/{token}", post(receive_statuspage))
        .layer(SetSensitiveRequestHeadersLayer::new(sensitive))
        .with_state(state)
}

async fn receive(
    State(st): State<AlertsState>,
    Path(source): Path<String>,
    req: Request,
) -> Response {
    handle(&st, &source, None, req).await
}

async fn receive_statuspage(
    State(st): State<AlertsState>,
    Path(token): Path<String>,
    req: Request,
) -> Response {
    handle(&st, "statuspage", Some(token), req).await
}

/// CloudEvents webhook validation handshake (cloudevents/spec
/// http-webhook.md §4), on the generic route only: a sender asks with
/// `OPTIONS` and `WebHook-Request-Origin` whether it may deliver; we grant
/// that origin and report our per-client rate (`WebHook-Allowed-Rate`, per
/// minute). Granting is not authenticating: every delivery still needs its
/// credentials.
async fn handshake(
    State(st): State<AlertsState>,
    Path(source): Path<String>,
    headers: HeaderMap,
) -> Response {
    if source != Source::Generic.as_str() || !st.sources.contains_key(&Source::Generic) {
        return ApiError::NotFound(format!("no alert source {:?}", truncate(&source, 64)))
            .into_response();
    }
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
    if let Some(origin) = headers.get("webhook-request-origin") {
        h.insert("webhook-allowed-origin", origin.clone());
        let rate = match st.limiter.limit() {
            Some(l) => HeaderValue::from(u64::from(l.per_second) * 60),
            None => HeaderValue::from_static("*"),
        };
        h.insert("webhook-allowed-rate", rate);
    }
    resp
}

/// 202 body.
#[derive(Debug, Serialize)]
struct Accepted {
    accepted: usize,
    ignored: usize,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

async fn handle(
    st: &AlertsState,
    name: &str,
    path_token: Option<String>,
    req: Request,
) -> Response {
    // Unknown and unconfigured sources get the same answer, and are not
    // counted: a metric label per probed path would let anyone grow the registry.
    let Some((source, auth)) =
        Source::from_name(name).and_then(|s| st.sources.get(&s).map(|a| (s, a)))
    else {
        return ApiError::NotFound(format!("no alert source {:?}", truncate(name, 64)))
            .into_response();
    };
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    match process(st, source, auth, path_token.as_deref(), client, req).await {
        Ok(done) => {
            done.emit(source, client, &st.metrics);
            let body = Accepted {
                accepted: done.accepted,
                ignored: done.ignored,
                duplicate: done.duplicate,
            };
            (StatusCode::ACCEPTED, axum::Json(body)).into_response()
        }
        Err(e) => {
            Rejected {
                source,
                client,
                error: &e,
            }
            .emit(&st.metrics);
            e.into_response()
        }
    }
}

async fn process(
    st: &AlertsState,
    source: Source,
    auth: &SourceAuth,
    path_token: Option<&str>,
    client: Option<IpAddr>,
    req: Request,
) -> Result<Delivered, ApiError> {
    // This address failed to authenticate too often: still served if its
    // credentials are right (never charged then), refused otherwise.
    let throttled = st.unauthenticated.peek(&client, Instant::now()).err();

    let (parts, body) = req.into_parts();
    let headers = &parts.headers;

    let token = credentials(st, source, auth, path_token, client, headers)?;
    let signed_only = !matches!(token, TokenCheck::Granted(_)) && auth.hmac().is_some();
    if let (Some(wait), true) = (throttled, signed_only) {
        // Its proof is a signature over the body: not read for a client
        // that keeps failing.
        return Err(rate_limited(wait));
    }

    let media = media_type(headers)?;
    check_content_encoding(headers)?;
    let body = read_body(body, headers, st.max_body, st.body_timeout).await?;
    let now = (st.clock)();

    // The signature factor, unless an API token stands in for the source's credentials.
    if !matches!(token, TokenCheck::Granted(_))
        && let Some(key) = auth.hmac()
    {
        let verified = match source {
            Source::Grafana => auth::verify_grafana_signature(key, headers, &body, now),
            Source::PagerDuty => auth::verify_pagerduty_signature(key, headers, &body),
            _ => Err(auth::Refused(format!(
                "{source} deliveries cannot be signed; remove hmac_secret"
            ))),
        };
        verified.map_err(|r| failed_auth(st, client, refusal(&token, r, auth)))?;
    }
    let credential = match &token {
        TokenCheck::Granted(name) => format!("token:{name}"),
        _ => format!("source:{source}"),
    };
    st.limiter
        .check(credential, Instant::now())
        .map_err(rate_limited)?;

    let parsed = source.parse(&body, media)?;

    let delivery_id = delivery_id(source, headers, &parsed);
    if let Some(id) = &delivery_id
        && st.dedupe.seen(id, now)
    {
        return Ok(Delivered {
            accepted: 0,
            ignored: 0,
            duplicate: true,
            keys: Vec::new(),
            via: via(&token),
        });
    }

    let Parsed {
        updates, ignored, ..
    } = parsed;
    // An event time beyond the clock skew we accept is a sender's broken
    // clock: remembered, it would make the real "resolved" look older.
    let horizon = now.add(st.max_skew.get(&source).copied().unwrap_or(FUTURE_SKEW));
    if let Some(u) = updates.iter().find(|u| u.at.is_some_and(|at| at > horizon)) {
        return Err(ApiError::Invalid(format!(
            "alert {:?} is dated {}, in the future beyond max_skew; check the sender's clock",
            truncate(&u.key.id, 64),
            u.at.map(|at| at.to_rfc3339()).unwrap_or_default()
        )));
    }
    let accepted = updates.len();
    let keys: Vec<String> = updates
        .iter()
        .take(MAX_LOGGED_KEYS)
        .map(|u| format!("{}{}", if u.firing { "+" } else { "-" }, u.key.id))
        .collect();
    if accepted > 0 {
        let max = st.intake.max_batch();
        if accepted > max {
            return Err(ApiError::Invalid(format!(
                "{accepted} alerts in one delivery; at most {max} are accepted at once (lower the sender's max_alerts)"
            )));
        }
        // All or nothing, and durable before the answer. Whether an update is
        // older than one already applied (a sender's retry) is decided where
        // inputs are applied, in order (see `order`).
        let inputs = updates.into_iter().map(AlertUpdate::into_input).collect();
        st.intake
            .accept(inputs)
            .await
            .map_err(|e| ApiError::Overloaded {
                detail: e.to_string(),
                retry_after_secs: OVERLOADED_RETRY_AFTER_SECS,
            })?;
    }
    if let Some(id) = &delivery_id {
        st.dedupe.record(id, now);
    }
    Ok(Delivered {
        accepted,
        ignored,
        duplicate: false,
        keys,
        via: via(&token),
    })
}

/// 403 if the caller presented an API token that lacks the `alerts` scope,
/// else 401 with the route's challenges.
/// Credentials carried in headers or the path: the API token they name (or
/// `Unknown` when the source's own credential passed). A failure is charged
/// to the client's budget of failed authentications.
fn credentials(
    st: &AlertsState,
    source: Source,
    auth: &SourceAuth,
    path_token: Option<&str>,
    client: Option<IpAddr>,
    headers: &HeaderMap,
) -> Result<TokenCheck, ApiError> {
    if source == Source::Statuspage {
        // Its secret URL is its only credential: API tokens do not apply, and
        // a wrong token gets no challenge (there is no scheme to offer).
        auth.check_path_token(path_token).map_err(|r| {
            failed_auth(
                st,
                client,
                ApiError::unauthorized(r.0, Challenges::default()),
            )
        })?;
        return Ok(TokenCheck::Unknown);
    }
    let token = st.tokens.check(headers, Scope::Alerts);
    if !matches!(token, TokenCheck::Granted(_))
        && let Err(r) = auth.check_headers(headers)
    {
        return Err(failed_auth(st, client, refusal(&token, r, auth)));
    }
    Ok(token)
}

/// A failed authentication is charged to the client's small budget; once it
/// is spent the answer is 429 (with when to come back), not another 401.
fn failed_auth(st: &AlertsState, client: Option<IpAddr>, e: ApiError) -> ApiError {
    match st.unauthenticated.check(client, Instant::now()) {
        Ok(()) => e,
        Err(wait) => rate_limited(wait),
    }
}

fn rate_limited(wait: Duration) -> ApiError {
    ApiError::RateLimited {
        retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
}

fn refusal(token: &TokenCheck, r: auth::Refused, auth: &SourceAuth) -> ApiError {
    match token {
        TokenCheck::MissingScope(name) => missing_scope(name, Scope::Alerts),
        _ => ApiError::unauthorized(r.0, auth.challenges()),
    }
}

fn via(token: &TokenCheck) -> Option<TokenName> {
    match token {
        TokenCheck::Granted(n) => Some(n.clone()),
        _ => None,
    }
}

/// The id a sender reuses when it retries a delivery, namespaced by source.
fn delivery_id(source: Source, headers: &HeaderMap, parsed: &Parsed) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let header_id = match source {
        Source::PagerDuty => header(pagerduty::WEBHOOK_ID_HEADER).map(str::to_string),
        // CloudEvents binary mode: the body is the generic alert, the event's
        // identity is in `ce-source` + `ce-id` (same form as structured mode).
        Source::Generic => match (header("ce-source"), header("ce-id")) {
            (Some(src), Some(id)) => Some(format!("{src}\n{id}")),
            _ => None,
        },
        _ => None,
    };
    header_id
        .or_else(|| parsed.delivery_id.clone())
        .map(|id| format!("{source}\n{id}"))
}

/// A delivery that reached the engine (or was a known duplicate).
struct Delivered {
    accepted: usize,
    ignored: usize,
    duplicate: bool,
    /// `+id` firing, `-id` resolved; the first few only.
    keys: Vec<String>,
    /// The API token used instead of source credentials, if any.
    via: Option<TokenName>,
}

impl Delivered {
    /// One log line and one counter increment per delivery, from one place so
    /// they never disagree.
    fn emit(&self, source: Source, client: Option<IpAddr>, metrics: &Metrics) {
        let result = if self.duplicate {
            "duplicate"
        } else if self.accepted == 0 && self.ignored > 0 {
            "ignored"
        } else {
            "accepted"
        };
        metrics
            .alerts_received_total
            .with_label_values(&[source.as_str(), result])
            .inc();
        let client = client.map(|c| c.to_string()).unwrap_or_default();
        let via = self
            .via
            .as_ref()
            .map(|t| t.0.as_str())
            .unwrap_or("source credentials");
        tracing::info!(
            source = source.as_str(),
            result,
            accepted = self.accepted,
            ignored = self.ignored,
            keys = %self.keys.join(","),
            client = %client,
            via,
            "Alert delivery {result}."
        );
    }
}

/// A refused delivery: one warning line (never a credential) and one counter.
struct Rejected<'a> {
    source: Source,
    client: Option<IpAddr>,
    error: &'a ApiError,
}

impl Rejected<'_> {
    fn emit(&self, metrics: &Metrics) {
        let result = self.error.code();
        metrics
            .alerts_received_total
            .with_label_values(&[self.source.as_str(), result])
            .inc();
        let client = self.client.map(|c| c.to_string()).unwrap_or_default();
        tracing::warn!(
            source = self.source.as_str(),
            result,
            status = self.error.status().as_u16(),
            detail = %truncate(&self.error.detail(), 300),
            client = %client,
            "Alert delivery refused."
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counted_error_code_is_a_known_result() {
        let errors = [
            ApiError::Malformed(String::new()),
            ApiError::unauthorized("", Challenges::default()),
            ApiError::Forbidden(String::new()),
            ApiError::Timeout(String::new()),
            ApiError::TooLarge(String::new()),
            ApiError::UnsupportedMediaType(String::new()),
            ApiError::Invalid(String::new()),
            ApiError::RateLimited {
                retry_after_secs: 1,
            },
            ApiError::Overloaded {
                detail: String::new(),
                retry_after_secs: 1,
            },
            ApiError::Internal(String::new()),
        ];
        for e in errors {
            assert!(RESULTS.contains(&e.code()), "{}", e.code());
        }
    }
}
