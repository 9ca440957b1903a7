//! The HTTP API (axum): alert webhooks, manual override, status, audit
//! events, metrics and health. Handlers never wait on Talkdesk: they talk to
//! the daemon's main loop through channels and answer from what it reports.

pub mod api;
pub mod client;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tower_http::timeout::TimeoutLayer;

use crate::config::Config;
use crate::daemon::control::Control;
use crate::store::Store;
use crate::telemetry::Metrics;

/// One error type and one token check for every route (webhooks included).
pub use crate::alerts::ApiError;
pub use crate::alerts::auth::ApiTokens;

/// Handlers must answer quickly; a stuck handler is cut off.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub tokens: Arc<ApiTokens>,
    pub metrics: Metrics,
    pub store: Arc<dyn Store>,
    pub control: mpsc::Sender<Control>,
    /// Set once the daemon has restored its state and started its components.
    pub ready: Arc<AtomicBool>,
}

impl AppState {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

/// Every route of the contract except the alert webhooks, which are merged in
/// by the caller (`alerts::router`).
pub fn router(state: AppState) -> Router {
    api::routes()
        .with_state(state)
        // Bodies are read and limited by `alerts::read_body` in the handlers.
        .layer(DefaultBodyLimit::disable())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
}

/// Serves `app` on `listener` until `shutdown` completes, then finishes
/// in-flight requests.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
