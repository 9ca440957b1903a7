//! Who may post alerts: per-source webhook credentials and API tokens.
//!
//! Every secret comparison is constant-time. Secrets of different lengths are
//! first hashed with SHA-256 (so the comparison does not even leak the length),
//! and when several API tokens are configured all of them are compared, so the
//! time taken does not say which one nearly matched. HMAC signatures are
//! checked with `Mac::verify_slice`, which is constant-time too.
//!
//! Nothing here logs or formats a secret: error details say *what* is wrong
//! ("signature does not match"), never the presented or expected value.
//!
//! A source's credentials are *factors*, and every configured factor must
//! pass:
//! - the `Authorization` header: the bearer token **or** HTTP Basic, when either
//!   is configured (a sender sends one `Authorization` header, so these are
//!   alternatives, not a pair);
//! - the custom header (`header_name: header_value`), when configured;
//! - the HMAC signature (Grafana, PagerDuty), when configured; it needs the body,
//!   so it is checked after the body is read.
//!
//! An API token with the `alerts` scope (`Authorization: Bearer <api token>`)
//! replaces all of a source's factors, on every route but Statuspage (whose
//! only credential is its secret URL).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, header};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{ApiError, Challenges};
use crate::config::schema::{ApiTokenConfig, Scope, WebhookConfig};
use crate::domain::Timestamp;

type HmacSha256 = Hmac<Sha256>;

/// Most signatures accepted in one `X-PagerDuty-Signature` header. Rotation
/// needs two or three; the cap bounds the HMAC work a request can cause.
const MAX_SIGNATURES: usize = 8;

/// The name of the API token that authorized a request (for audit records).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenName(pub String);

impl std::fmt::Display for TokenName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Constant-time equality of two secrets of possibly different lengths.
pub fn secret_eq(presented: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(presented);
    let b = Sha256::digest(expected);
    a.ct_eq(&b).into()
}

/// One configured API token, kept only as a SHA-256 digest.
#[derive(Clone)]
struct ApiToken {
    name: String,
    digest: [u8; 32],
    scopes: Vec<Scope>,
}

/// The API tokens of `[api] tokens`, ready for constant-time lookup.
#[derive(Clone, Default)]
pub struct ApiTokens {
    tokens: Vec<ApiToken>,
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: even digests stay out of logs.
        f.debug_list()
            .entries(self.tokens.iter().map(|t| &t.name))
            .finish()
    }
}

/// What a presented bearer token is, as an API token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenCheck {
    /// No bearer token, or one that is no API token.
    Unknown,
    /// A valid token with the required scope.
    Granted(TokenName),
    /// A valid token without the required scope.
    MissingScope(TokenName),
}

impl ApiTokens {
    /// Tokens without a secret (a `token_file` that was not read) are skipped:
    /// `config::load` has already rejected such a configuration.
    pub fn new(tokens: &[ApiTokenConfig]) -> ApiTokens {
        ApiTokens {
            tokens: tokens
                .iter()
                .filter_map(|t| {
                    let secret = t.token.as_ref()?;
                    Some(ApiToken {
                        name: t.name.clone(),
                        digest: Sha256::digest(secret.expose_secret().as_bytes()).into(),
                        scopes: t.scopes.clone(),
                    })
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether any token carries `scope`.
    pub fn any_with(&self, scope: Scope) -> bool {
        self.tokens.iter().any(|t| t.scopes.contains(&scope))
    }

    /// Checks the request's bearer token against every API token.
    pub fn check(&self, headers: &HeaderMap, required: Scope) -> TokenCheck {
        let Some(Credential::Bearer(presented)) = credential(headers) else {
            return TokenCheck::Unknown;
        };
        let digest = Sha256::digest(presented.as_bytes());
        // Compare with every token, without stopping at a match.
        let mut found: Option<&ApiToken> = None;
        for t in &self.tokens {
            if bool::from(t.digest.ct_eq(digest.as_slice())) {
                found = Some(t);
            }
        }
        match found {
            None => TokenCheck::Unknown,
            Some(t) if t.scopes.contains(&required) => {
                TokenCheck::Granted(TokenName(t.name.clone()))
            }
            Some(t) => TokenCheck::MissingScope(TokenName(t.name.clone())),
        }
    }
}

/// Authorizes a request by API token alone (the override and status routes,
/// and the alert routes' alternative to source credentials).
///
/// 401 (with a `Bearer` challenge) when the token is missing or unknown, 403
/// when it is valid but lacks `required`.
pub fn authorize(
    headers: &HeaderMap,
    tokens: &ApiTokens,
    required: Scope,
) -> Result<TokenName, ApiError> {
    let bearer = Challenges {
        bearer: true,
        basic: false,
    };
    match tokens.check(headers, required) {
        TokenCheck::Granted(name) => Ok(name),
        TokenCheck::MissingScope(name) => Err(ApiError::Forbidden(format!(
            "token {name:?} does not have the {} scope",
            scope_name(required)
        ))),
        TokenCheck::Unknown => Err(ApiError::unauthorized(
            match credential(headers) {
                None => "missing credentials: send Authorization: Bearer <token>",
                Some(_) => "invalid credentials",
            },
            bearer,
        )),
    }
}

pub fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::Read => "read",
        Scope::Override => "override",
        Scope::Alerts => "alerts",
    }
}

/// The `Authorization` header, parsed. The secrets stay borrowed from the
/// request and are never formatted.
enum Credential<'a> {
    Bearer(&'a str),
    Basic { user: String, password: String },
    Other,
}

fn credential(headers: &HeaderMap) -> Option<Credential<'_>> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Some(Credential::Bearer(rest))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        Some(match decoded.as_deref().and_then(|s| s.split_once(':')) {
            Some((u, p)) => Credential::Basic {
                user: u.to_string(),
                password: p.to_string(),
            },
            None => Credential::Other,
        })
    } else {
        Some(Credential::Other)
    }
}

/// Signature settings of a source (`hmac_secret`, `timestamp_header`, `max_skew`).
#[derive(Clone)]
pub struct HmacKey {
    secret: SecretString,
    timestamp_header: Option<HeaderName>,
    max_skew: Duration,
}

/// The credentials one source accepts, from its `[webhooks.NAME]` section.
#[derive(Clone, Default)]
pub struct SourceAuth {
    bearer: Option<SecretString>,
    basic: Option<(String, SecretString)>,
    header: Option<(HeaderName, SecretString)>,
    hmac: Option<HmacKey>,
    path_token: Option<SecretString>,
    /// A configured header name that is not a valid HTTP header name. Config
    /// validation rejects this; should it slip through, the source fails closed.
    broken: bool,
}

impl std::fmt::Debug for SourceAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SourceAuth")
            .field("bearer", &self.bearer.is_some())
            .field("basic", &self.basic.as_ref().map(|(u, _)| u))
            .field("header", &self.header.as_ref().map(|(n, _)| n))
            .field("hmac", &self.hmac.is_some())
            .field("path_token", &self.path_token.is_some())
            .finish()
    }
}

/// Why source credentials were refused (a 401 detail; never a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl SourceAuth {
    pub fn new(c: &WebhookConfig) -> SourceAuth {
        // An unparsable header name (custom or timestamp) marks the source
        // broken: better to refuse every delivery than to skip a check.
        let mut broken = false;
        let mut name = |n: &str| match HeaderName::from_bytes(n.as_bytes()) {
            Ok(h) => Some(h),
            Err(_) => {
                broken = true;
                None
            }
        };
        let header = match (&c.header_name, &c.header_value) {
            (Some(n), Some(v)) => name(n).map(|n| (n, v.clone())),
            _ => None,
        };
        let hmac = c.hmac_secret.as_ref().map(|s| HmacKey {
            secret: s.clone(),
            timestamp_header: c.timestamp_header.as_deref().and_then(&mut name),
            max_skew: c.max_skew.get(),
        });
        SourceAuth {
            bearer: c.bearer_token.clone(),
            basic: match (&c.basic_user, &c.basic_password) {
                (Some(u), Some(p)) => Some((u.clone(), p.clone())),
                _ => None,
            },
            header,
            hmac,
            path_token: c.path_token.clone(),
            broken,
        }
    }

    pub fn hmac(&self) -> Option<&HmacKey> {
        self.hmac.as_ref()
    }

    pub fn path_token(&self) -> Option<&SecretString> {
        self.path_token.as_ref()
    }

    /// The custom header's name, to mark it sensitive in traces.
    pub fn header_name(&self) -> Option<&HeaderName> {
        self.header.as_ref().map(|(n, _)| n)
    }

    /// Challenges a 401 on this route offers.
    pub fn challenges(&self) -> Challenges {
        Challenges {
            bearer: true,
            basic: self.basic.is_some(),
        }
    }

    /// Whether any credential at all is configured (an open source is refused:
    /// config validation forbids it, and this fails closed if it slips through).
    fn has_any(&self) -> bool {
        self.bearer.is_some()
            || self.basic.is_some()
            || self.header.is_some()
            || self.hmac.is_some()
    }

    /// Checks the factors carried in headers (`Authorization`, custom header).
    /// The HMAC factor is checked later, with the body.
    pub fn check_headers(&self, headers: &HeaderMap) -> Result<(), Refused> {
        if self.broken || !self.has_any() {
            return Err(Refused(
                "this source has no usable credential configured".into(),
            ));
        }
        if self.bearer.is_some() || self.basic.is_some() {
            let ok = match credential(headers) {
                None => return Err(Refused("missing Authorization header".into())),
                Some(Credential::Bearer(t)) => self
                    .bearer
                    .as_ref()
                    .is_some_and(|b| secret_eq(t.as_bytes(), b.expose_secret().as_bytes())),
                Some(Credential::Basic { user, password }) => {
                    self.basic.as_ref().is_some_and(|(u, p)| {
                        // Both halves are compared, always.
                        let user_ok = secret_eq(user.as_bytes(), u.as_bytes());
                        let pass_ok = secret_eq(password.as_bytes(), p.expose_secret().as_bytes());
                        user_ok & pass_ok
                    })
                }
                Some(Credential::Other) => false,
            };
            if !ok {
                return Err(Refused("invalid credentials".into()));
            }
        }
        if let Some((name, value)) = &self.header {
            // The header's name is not echoed: it is half of the credential's
            // shape, and a caller who does not know it has no business asking.
            let Some(v) = headers.get(name) else {
                return Err(Refused("missing credential header".into()));
            };
            if !secret_eq(v.as_bytes(), value.expose_secret().as_bytes()) {
                return Err(Refused("invalid credential header".into()));
            }
        }
        Ok(())
    }

    /// Checks the secret path segment of the Statuspage route.
    pub fn check_path_token(&self, presented: Option<&str>) -> Result<(), Refused> {
        match (&self.path_token, presented) {
            (None, _) => Err(Refused("this source has no path token configured".into())),
            (Some(_), None) => Err(Refused(
                "missing path token: POST /v1/alerts/statuspage/<token>".into(),
            )),
            (Some(t), Some(p)) if secret_eq(p.as_bytes(), t.expose_secret().as_bytes()) => Ok(()),
            (Some(_), Some(_)) => Err(Refused("invalid path token".into())),
        }
    }
}

fn mac(key: &HmacKey) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key.secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

/// Grafana: `X-Grafana-Alerting-Signature: <hex HMAC-SHA256>`. With a
/// configured `timestamp_header`, the header is required, the signature covers
/// `timestamp + ":" + body`, and the timestamp (Unix seconds, or milliseconds:
/// detected by magnitude) must be within `max_skew` of `now`, so a captured
/// delivery cannot be replayed later.
pub fn verify_grafana_signature(
    key: &HmacKey,
    headers: &HeaderMap,
    body: &[u8],
    now: Timestamp,
) -> Result<(), Refused> {
    let sig = headers
        .get(super::grafana::SIGNATURE_HEADER)
        .ok_or_else(|| Refused("missing X-Grafana-Alerting-Signature header".into()))?;
    let sig = hex::decode(sig.as_bytes().trim_ascii())
        .map_err(|_| Refused("X-Grafana-Alerting-Signature is not hex".into()))?;
    let mut m = mac(key);
    if let Some(th) = &key.timestamp_header {
        let raw = headers
            .get(th)
            .ok_or_else(|| Refused(format!("missing {th} header (signed timestamp)")))?;
        let raw = raw.as_bytes().trim_ascii();
        let at =
            parse_timestamp(raw).ok_or_else(|| Refused(format!("{th} is not a Unix timestamp")))?;
        let skew = (now.as_millis() as i128 - at.as_millis() as i128).unsigned_abs();
        if skew > key.max_skew.as_millis() {
            return Err(Refused(format!(
                "{th} is {}s away from now (max {}s): stale or replayed delivery",
                skew / 1000,
                key.max_skew.as_secs()
            )));
        }
        m.update(raw);
        m.update(b":");
    }
    m.update(body);
    m.verify_slice(&sig)
        .map_err(|_| Refused("signature does not match".into()))
}

/// `1700000000` (seconds) or `1700000000000` (milliseconds). Anything above
/// 10^11 is taken as milliseconds: as seconds it would be the year 5138.
pub fn parse_timestamp(raw: &[u8]) -> Option<Timestamp> {
    if raw.is_empty() || raw.len() > 16 || !raw.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: i64 = std::str::from_utf8(raw).ok()?.parse().ok()?;
    Some(if n > 100_000_000_000 {
        Timestamp::from_millis(n)
    } else {
        Timestamp::from_millis(n.checked_mul(1000)?)
    })
}

/// PagerDuty: `X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]`, the HMAC-SHA256
/// of the raw body. During a secret rotation several signatures come; the
/// delivery is accepted if any of them matches. Every candidate is verified
/// (no early exit), each in constant time.
pub fn verify_pagerduty_signature(
    key: &HmacKey,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Refused> {
    let raw = headers
        .get(super::pagerduty::SIGNATURE_HEADER)
        .ok_or_else(|| Refused("missing X-PagerDuty-Signature header".into()))?;
    let raw = raw
        .to_str()
        .map_err(|_| Refused("X-PagerDuty-Signature is not ASCII".into()))?;
    let mut base = mac(key);
    base.update(body);
    let mut any = false;
    let mut candidates = 0;
    for part in raw.split(',') {
        let Some(hexsig) = part.trim().strip_prefix("v1=") else {
            continue; // a future scheme version; not ours to judge
        };
        candidates += 1;
        if candidates > MAX_SIGNATURES {
            break;
        }
        if let Ok(sig) = hex::decode(hexsig) {
            any |= base.clone().verify_slice(&sig).is_ok();
        }
    }
    if candidates == 0 {
        return Err(Refused("X-PagerDuty-Signature has no v1= signature".into()));
    }
    if any {
        Ok(())
    } else {
        Err(Refused("signature does not match".into()))
    }
}

/// Hex HMAC-SHA256 of `parts` concatenated (for tests and the docs' examples).
pub fn sign_hex(secret: &str, parts: &[&[u8]]) -> String {
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for p in parts {
        m.update(p);
    }
    hex::encode(m.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn key(ts: Option<&str>) -> HmacKey {
        HmacKey {
            secret: SecretString::from("k3y"),
            timestamp_header: ts.map(|t| HeaderName::from_bytes(t.as_bytes()).unwrap()),
            max_skew: Duration::from_secs(300),
        }
    }

    fn headers(kv: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in kv {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn secret_eq_handles_lengths() {
        assert!(secret_eq(b"abc", b"abc"));
        assert!(!secret_eq(b"abc", b"abcd"));
        assert!(!secret_eq(b"", b"a"));
    }

    #[test]
    fn api_tokens_and_scopes() {
        let cfg = vec![
            ApiTokenConfig {
                name: "pager".into(),
                token: Some(SecretString::from("tok-alerts")),
                token_file: None,
                scopes: vec![Scope::Alerts],
            },
            ApiTokenConfig {
                name: "viewer".into(),
                token: Some(SecretString::from("tok-read")),
                token_file: None,
                scopes: vec![Scope::Read],
            },
        ];
        let t = ApiTokens::new(&cfg);
        let h = headers(&[("authorization", "Bearer tok-alerts")]);
        assert_eq!(
            authorize(&h, &t, Scope::Alerts),
            Ok(TokenName("pager".into()))
        );
        let h = headers(&[("authorization", "bearer tok-read")]);
        assert!(matches!(
            authorize(&h, &t, Scope::Alerts),
            Err(ApiError::Forbidden(_))
        ));
        for h in [
            headers(&[]),
            headers(&[("authorization", "Bearer nope")]),
            headers(&[("authorization", "Basic dG9rLWFsZXJ0czp4")]),
        ] {
            assert!(matches!(
                authorize(&h, &t, Scope::Alerts),
                Err(ApiError::Unauthorized { .. })
            ));
        }
        // Debug shows names only.
        assert_eq!(format!("{t:?}"), r#"["pager", "viewer"]"#);
    }

    #[test]
    fn grafana_signature_with_and_without_timestamp() {
        let body = br#"{"x":1}"#;
        let now = Timestamp::from_millis(1_700_000_000_000);
        let sig = sign_hex("k3y", &[body]);
        let h = headers(&[("x-grafana-alerting-signature", &sig)]);
        assert!(verify_grafana_signature(&key(None), &h, body, now).is_ok());
        assert!(verify_grafana_signature(&key(None), &h, b"{}", now).is_err());

        let k = key(Some("x-grafana-alerting-signature-timestamp"));
        let ts = "1700000010";
        let sig = sign_hex("k3y", &[ts.as_bytes(), b":", body]);
        let h = headers(&[
            ("x-grafana-alerting-signature", &sig),
            ("x-grafana-alerting-signature-timestamp", ts),
        ]);
        assert!(verify_grafana_signature(&k, &h, body, now).is_ok());
        // Same delivery an hour later: a replay.
        let later = Timestamp::from_millis(now.as_millis() + 3_600_000);
        let e = verify_grafana_signature(&k, &h, body, later).unwrap_err();
        assert!(e.0.contains("replayed"), "{e:?}");
        // Timestamp header required once configured; signature over body alone refused.
        let sig_body = sign_hex("k3y", &[body]);
        let h = headers(&[("x-grafana-alerting-signature", &sig_body)]);
        assert!(verify_grafana_signature(&k, &h, body, now).is_err());
        // Milliseconds are detected.
        let ts_ms = "1700000010000";
        let sig = sign_hex("k3y", &[ts_ms.as_bytes(), b":", body]);
        let h = headers(&[
            ("x-grafana-alerting-signature", &sig),
            ("x-grafana-alerting-signature-timestamp", ts_ms),
        ]);
        assert!(verify_grafana_signature(&k, &h, body, now).is_ok());
    }

    #[test]
    fn pagerduty_rotation_accepts_any_matching_signature() {
        let body = br#"{"event":{}}"#;
        let good = sign_hex("k3y", &[body]);
        let bad = sign_hex("old", &[body]);
        let k = key(None);
        for (v, ok) in [
            (format!("v1={good}"), true),
            (format!("v1={bad},v1={good}"), true),
            (format!("v1={bad}, v1={good}"), true),
            (format!("v1={bad}"), false),
            (format!("v2={good}"), false),
            ("v1=zz".to_string(), false),
            (String::new(), false),
        ] {
            let h = headers(&[("x-pagerduty-signature", &v)]);
            assert_eq!(verify_pagerduty_signature(&k, &h, body).is_ok(), ok, "{v}");
        }
        assert!(verify_pagerduty_signature(&k, &HeaderMap::new(), body).is_err());
    }

    #[test]
    fn source_factors_all_must_pass() {
        let c = WebhookConfig {
            bearer_token: Some(SecretString::from("am-token")),
            basic_user: Some("am".into()),
            basic_password: Some(SecretString::from("pw")),
            ..WebhookConfig::default()
        };
        let a = SourceAuth::new(&c);
        assert!(
            a.check_headers(&headers(&[("authorization", "Bearer am-token")]))
                .is_ok()
        );
        // base64("am:pw") = YW06cHc=
        assert!(
            a.check_headers(&headers(&[("authorization", "Basic YW06cHc=")]))
                .is_ok()
        );
        assert!(
            a.check_headers(&headers(&[("authorization", "Basic YW06cHg=")]))
                .is_err()
        );
        assert!(
            a.check_headers(&headers(&[("authorization", "Bearer am-tokenX")]))
                .is_err()
        );
        assert!(a.check_headers(&headers(&[])).is_err());

        let c = WebhookConfig {
            header_name: Some("X-Continuity-Key".into()),
            header_value: Some(SecretString::from("dd-secret")),
            ..WebhookConfig::default()
        };
        let a = SourceAuth::new(&c);
        assert!(
            a.check_headers(&headers(&[("x-continuity-key", "dd-secret")]))
                .is_ok()
        );
        assert!(
            a.check_headers(&headers(&[("x-continuity-key", "dd-secreT")]))
                .is_err()
        );
        assert!(a.check_headers(&headers(&[])).is_err());

        // An invalid header name (config validation forbids it): fail closed.
        let c = WebhookConfig {
            header_name: Some("bad header".into()),
            header_value: Some(SecretString::from("v")),
            bearer_token: Some(SecretString::from("t")),
            ..WebhookConfig::default()
        };
        assert!(
            SourceAuth::new(&c)
                .check_headers(&headers(&[("authorization", "Bearer t")]))
                .is_err()
        );
        // Nothing configured: fail closed.
        assert!(
            SourceAuth::new(&WebhookConfig::default())
                .check_headers(&headers(&[]))
                .is_err()
        );
    }
}
