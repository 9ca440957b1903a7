//! The human status page at `/`: server-rendered HTML from the binary (no
//! CDN, no external fonts, readable without JavaScript; a small script from
//! `/ui/refresh.js` refreshes it), and a few forms to act.
//!
//! - [`model`]: the page's judgements (what callers get now, banners, times),
//!   from the same `StatusDoc` as `GET /v1/status` and the same audit log as
//!   `GET /v1/events`.
//! - [`render`]: the markup (maud: compile-time checked, every splice escaped).
//! - [`access`]: who reads (`read`, or anyone with `api.public_status`) and
//!   who acts (a session with `override`, its CSRF token, same origin).
//! - [`session`]: signed session cookies and CSRF tokens; the API token is
//!   typed once into the login form and never stored in the browser.
//! - [`handlers`]: the routes; actions call `server::ops`, the code path of
//!   `PUT/DELETE /v1/override` and `DELETE /v1/flap`.
//!
//! Every answer carries a strict `Content-Security-Policy` (scripts and
//! styles only from this origin, no inline code, no framing, forms only to
//! this origin), `X-Frame-Options: DENY` and `Cache-Control: no-store`.

pub mod access;
mod handlers;
pub mod model;
pub mod render;
pub mod session;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower_http::sensitive_headers::{
    SetSensitiveRequestHeadersLayer, SetSensitiveResponseHeadersLayer,
};

use super::AppState;

pub use session::SessionKey;

const CSS: &str = include_str!("assets/page.css");
const JS: &str = include_str!("assets/refresh.js");

/// The policy every page answer carries. `connect-src 'self'` lets the
/// refresh script fetch `/`; nothing else may load or run.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
     base-uri 'none'";

/// The page's routes, merged into the API's router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(handlers::show))
        .route("/ui/login", post(handlers::login))
        .route("/ui/logout", post(handlers::logout))
        .route("/ui/override", post(handlers::set_override))
        .route("/ui/override/clear", post(handlers::clear_override))
        .route("/ui/flap/release", post(handlers::release_flap))
        .route("/ui/page.css", get(css))
        .route("/ui/refresh.js", get(js))
        .layer(axum::middleware::map_response(security_headers))
        // The session cookie is a credential: traces never print it.
        .layer(SetSensitiveRequestHeadersLayer::new([header::COOKIE]))
        .layer(SetSensitiveResponseHeadersLayer::new([header::SET_COOKIE]))
}

async fn css() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
}

async fn js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        JS,
    )
        .into_response()
}

async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it a browser sends `Origin: null` with the
    // page's own form posts, and the origin check could not tell them apart.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    resp
}

#[cfg(test)]
mod tests;
