//! Who is looking at the status page, and who may act through it.
//!
//! Reading needs an API token with `read` (a session cookie from the login
//! form, or `Authorization: Bearer` for scripts), unless
//! `api.public_status = true`. Acting needs a session whose token has
//! `override`, the session's CSRF token in the form, and no cross-origin
//! `Origin`: the cookie is `SameSite=Strict` already, the CSRF token and the
//! origin check make a forged request fail even where that is not enough.
//! The JSON API never looks at the cookie: it stays header-authenticated, so
//! the CSRF surface is these few form routes.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};

use super::session::{COOKIE, SESSION_TTL, SessionError};
use crate::config::schema::Scope;
use crate::domain::Timestamp;
use crate::server::AppState;
use crate::server::auth::{self, TokenCheck, TokenName};

/// Who is reading the page.
#[derive(Clone, PartialEq, Eq)]
pub enum Viewer {
    /// No credentials; the page is public (`api.public_status`).
    Public,
    /// `Authorization: Bearer` with a `read` token (scripts, curl): read only,
    /// since forms need a session.
    Bearer(TokenName),
    /// Signed in through the login form.
    Session {
        token: TokenName,
        /// The token has the `override` scope.
        can_act: bool,
        /// This session's CSRF token, for the forms.
        csrf: String,
        expires: Timestamp,
    },
}

/// The CSRF token is a credential of the session: never in `Debug`.
impl std::fmt::Debug for Viewer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Viewer::Public => f.write_str("Public"),
            Viewer::Bearer(t) => f.debug_tuple("Bearer").field(&t.0).finish(),
            Viewer::Session {
                token,
                can_act,
                expires,
                ..
            } => f
                .debug_struct("Session")
                .field("token", &token.0)
                .field("can_act", can_act)
                .field("csrf", &"[REDACTED]")
                .field("expires", expires)
                .finish(),
        }
    }
}

/// Why a request was turned away: the login page says it with this status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    pub status: StatusCode,
    pub message: String,
    /// Also clear the session cookie (it is no longer good).
    pub clear_cookie: bool,
}

impl Denied {
    fn unauthorized(message: impl Into<String>, clear_cookie: bool) -> Denied {
        Denied {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
            clear_cookie,
        }
    }

    fn forbidden(message: impl Into<String>, clear_cookie: bool) -> Denied {
        Denied {
            status: StatusCode::FORBIDDEN,
            message: message.into(),
            clear_cookie,
        }
    }
}

/// Who is reading, or why they may not.
pub fn viewer(s: &AppState, headers: &HeaderMap, now: Timestamp) -> Result<Viewer, Denied> {
    let public = s.config.raw.api.public_status;
    if auth::credential(headers).is_some() {
        return match s.tokens.check(headers, Scope::Read) {
            TokenCheck::Granted(name) => Ok(Viewer::Bearer(name)),
            TokenCheck::MissingScope(_) if public => Ok(Viewer::Public),
            TokenCheck::MissingScope(name) => Err(Denied::forbidden(
                auth::missing_scope(&name, Scope::Read).detail(),
                false,
            )),
            TokenCheck::Unknown => Err(Denied::unauthorized("invalid credentials", false)),
        };
    }
    let Some(cookie) = session_cookie(headers) else {
        return if public {
            Ok(Viewer::Public)
        } else {
            Err(Denied::unauthorized(
                "Sign in with an API token that has the read scope.",
                false,
            ))
        };
    };
    match s.sessions.verify(cookie, &s.tokens, now) {
        Ok(session) if session.token.has(Scope::Read) || public => Ok(Viewer::Session {
            token: session.token.name(),
            can_act: session.token.has(Scope::Override),
            csrf: s.sessions.csrf(cookie),
            expires: session.expires,
        }),
        Ok(session) => Err(Denied::forbidden(
            format!(
                "{}; sign in with another token.",
                auth::missing_scope(&session.token.name(), Scope::Read).detail()
            ),
            true,
        )),
        Err(_) if public => Ok(Viewer::Public),
        Err(e) => Err(Denied::unauthorized(
            format!("{}: sign in again.", capitalized(&e)),
            true,
        )),
    }
}

/// The token an action is done under: a session with `override`, the
/// session's CSRF token in the form, and a same-origin request. Nothing is
/// done otherwise.
pub fn operator(
    s: &AppState,
    headers: &HeaderMap,
    viewer: &Viewer,
    csrf: Option<&str>,
) -> Result<TokenName, Denied> {
    let (token, can_act) = form_session(s, headers, viewer, csrf)?;
    if !can_act {
        return Err(Denied::forbidden(
            format!(
                "{}; nothing was changed.",
                auth::missing_scope(token, Scope::Override).detail()
            ),
            false,
        ));
    }
    Ok(token.clone())
}

/// A form posted from this page by a signed-in browser: same origin, a
/// session, and that session's CSRF token. Returns the session's token and
/// whether it may act.
pub fn form_session<'v>(
    s: &AppState,
    headers: &HeaderMap,
    viewer: &'v Viewer,
    csrf: Option<&str>,
) -> Result<(&'v TokenName, bool), Denied> {
    same_origin(headers)?;
    let (Viewer::Session { token, can_act, .. }, Some(cookie)) = (viewer, session_cookie(headers))
    else {
        return Err(Denied::unauthorized(
            "Sign in with a token that has the override scope to act; nothing was changed.",
            false,
        ));
    };
    if !csrf.is_some_and(|c| s.sessions.csrf_ok(cookie, c)) {
        return Err(Denied::forbidden(
            "The form's CSRF token is missing or wrong (an old page, or a request from another \
             site); nothing was changed. Reload the page and try again.",
            false,
        ));
    }
    Ok((token, *can_act))
}

/// Refuses a request that a browser says comes from another origin: an
/// `Origin` header whose host is not this request's `Host` (the scheme is
/// not compared: behind a TLS proxy the browser says https and we see http),
/// or `Sec-Fetch-Site: cross-site`/`same-site`. Clients that send neither
/// (curl) are not browsers and carry no ambient cookie by accident.
pub fn same_origin(headers: &HeaderMap) -> Result<(), Denied> {
    let refused = || Denied::forbidden("Cross-origin request refused; nothing was changed.", false);
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, rest)| rest);
        match (origin_host, host) {
            (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => {}
            _ => return Err(refused()),
        }
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && !matches!(site, "same-origin" | "none")
    {
        return Err(refused());
    }
    Ok(())
}

/// The session cookie's value, if the request carries one.
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a new session. `Secure` always: browsers keep it over
/// https and on http://localhost / 127.0.0.1 (a secure context); over plain
/// http to another address they refuse it, and the login page says why.
pub fn set_cookie(value: &str) -> HeaderValue {
    let v = format!(
        "{COOKIE}={value}; Path=/; Max-Age={}; HttpOnly; Secure; SameSite=Strict",
        SESSION_TTL.as_secs()
    );
    HeaderValue::from_str(&v).expect("the cookie value is base64url, digits, dots and hex")
}

/// `Set-Cookie` that ends the session in the browser.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_str(&format!(
        "{COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
    ))
    .expect("static cookie")
}

/// Whether a browser can keep the `Secure` cookie from this request: the
/// agent itself speaks plain http, so that is true behind a TLS proxy
/// (`X-Forwarded-Proto: https`) or on a loopback host name.
pub fn cookie_can_stick(headers: &HeaderMap) -> bool {
    let proxied_tls = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"));
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    proxied_tls
        || name.eq_ignore_ascii_case("localhost")
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn capitalized(e: &SessionError) -> String {
    let text = e.to_string();
    let mut chars = text.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(kv: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in kv {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn cross_origin_requests_are_refused() {
        let same = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(same_origin(&same).is_ok());
        // Behind a TLS proxy the browser says https.
        let proxied = headers(&[
            ("host", "agent.example"),
            ("origin", "https://agent.example"),
        ]);
        assert!(same_origin(&proxied).is_ok());
        assert!(same_origin(&headers(&[("host", "127.0.0.1:8080")])).is_ok());
        for bad in [
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:9999"),
            ]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            headers(&[("origin", "http://127.0.0.1:8080")]),
            headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "cross-site")]),
            headers(&[("host", "127.0.0.1:8080"), ("sec-fetch-site", "same-site")]),
        ] {
            let denied = same_origin(&bad).unwrap_err();
            assert_eq!(denied.status, StatusCode::FORBIDDEN, "{bad:?}");
        }
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[
            ("cookie", "a=1; __Host-continuity-session=abc.1.ff; b=2"),
            ("cookie", "c=3"),
        ]);
        assert_eq!(session_cookie(&h), Some("abc.1.ff"));
        assert_eq!(session_cookie(&headers(&[("cookie", "a=1")])), None);
        let set = set_cookie("abc.1.ff");
        let set = set.to_str().unwrap();
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=43200",
        ] {
            assert!(set.contains(attr), "{set}");
        }
        assert!(clear_cookie().to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn debug_hides_the_csrf_token() {
        let v = Viewer::Session {
            token: TokenName("oncall".into()),
            can_act: true,
            csrf: "c5rf-0123456789".into(),
            expires: Timestamp(0),
        };
        let text = format!("{v:?}");
        assert!(!text.contains("c5rf-0123456789"), "{text}");
        assert!(text.contains("oncall"), "{text}");
    }

    #[test]
    fn a_secure_cookie_sticks_on_loopback_or_behind_tls() {
        for (kv, ok) in [
            (vec![("host", "127.0.0.1:8080")], true),
            (vec![("host", "localhost:8080")], true),
            (vec![("host", "[::1]:8080")], true),
            (vec![("host", "10.0.0.5:8080")], false),
            (vec![("host", "agent.example")], false),
            (
                vec![("host", "agent.example"), ("x-forwarded-proto", "https")],
                true,
            ),
        ] {
            assert_eq!(cookie_can_stick(&headers(&kv)), ok, "{kv:?}");
        }
    }
}
