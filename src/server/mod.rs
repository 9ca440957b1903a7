//! The HTTP API (axum) and its plumbing: manual override, status, audit
//! events, metrics and health ([`api`]), the human status page at `/`
//! ([`page`]; both act through [`ops`]), and what every route shares: the one
//! error type ([`error`]), API tokens and constant-time credential checks
//! ([`auth`]), body reading and JSON checks ([`body`]), the accept loop with
//! its connection cap and deadlines ([`listen`]) and TLS ([`tls`]). The alert webhooks
//! (`alerts`) are one more family of routes on top of this plumbing; the
//! daemon merges their router into this one. Handlers never call Talkdesk:
//! they talk to the daemon's main loop through channels and answer from what
//! it reports; `PUT /v1/override?wait=` may also wait, bounded, for the
//! actuator's status to show the change applied ([`outcome`]).

pub mod accounts;
pub mod api;
pub mod auth;
pub mod body;
pub mod client;
pub mod control;
pub mod error;
pub mod events;
pub mod listen;
pub mod ops;
pub mod outcome;
pub mod page;
pub mod tls;
pub mod wire;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use tokio::sync::mpsc;
use tower_http::timeout::TimeoutLayer;

use crate::config::Config;
use crate::store::Store;
use crate::telemetry::Metrics;
use control::Control;

pub use auth::ApiTokens;
pub use error::ApiError;

/// Handlers must answer quickly; a stuck handler is cut off.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct AppState {
    /// The whole configuration (tokens, limits; each account's view is in
    /// `accounts`).
    pub config: Arc<Config>,
    pub tokens: Arc<ApiTokens>,
    pub metrics: Metrics,
    /// The store as a whole (`/readyz` pings it).
    pub store: Arc<dyn Store>,
    /// Every account's loop, queue, actuator status and rows.
    pub accounts: Arc<accounts::Accounts>,
    /// Configuration reloads (`POST /-/reload`): the daemon applies them to
    /// every account at once.
    pub reload: mpsc::Sender<Control>,
    /// Signs the status page's sessions: one per process, kept across
    /// reloads (a reload does not sign anyone out).
    pub sessions: Arc<page::SessionKey>,
}

impl AppState {
    /// Every account's loop has restored its state and started.
    pub fn is_ready(&self) -> bool {
        self.accounts.iter().all(|a| a.is_ready())
    }
}

/// Every route of the contract except the alert webhooks, which are merged in
/// by the caller (`alerts::router`).
pub fn router(state: AppState) -> Router {
    api::routes()
        .merge(page::routes())
        .with_state(state)
        // Bodies are read and limited by `body::read_body` in the handlers.
        .layer(DefaultBodyLimit::disable())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
}

/// Prefix of the Statuspage webhook route, whose last segment is a secret
/// (`POST /v1/alerts/statuspage/{token}`).
const STATUSPAGE_PREFIX: &str = "/v1/alerts/statuspage/";

/// The request path as it may be logged: the Statuspage route's secret path
/// token is replaced by `<redacted>`. Use it in a `TraceLayer`
/// (`make_span_with`) instead of the raw URI, since the token is a credential.
pub fn loggable_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.strip_prefix(STATUSPAGE_PREFIX) {
        Some(rest) if !rest.is_empty() => format!("{STATUSPAGE_PREFIX}<redacted>").into(),
        _ => path.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuspage_token_never_reaches_logs() {
        assert_eq!(
            loggable_path("/v1/alerts/statuspage/sp-0123456789abcdef"),
            "/v1/alerts/statuspage/<redacted>"
        );
        assert_eq!(
            loggable_path("/v1/alerts/statuspage"),
            "/v1/alerts/statuspage"
        );
        assert_eq!(loggable_path("/v1/alerts/generic"), "/v1/alerts/generic");
    }
}
