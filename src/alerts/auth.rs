//! Who may post alerts: per-source webhook credentials. API tokens, the
//! `Authorization` parsing and the constant-time comparison are the server's
//! (`server::auth`); this module adds what only webhook senders use.
//!
//! Every secret comparison is constant-time (`server::auth::secret_eq`). HMAC
//! signatures are checked with `Mac::verify_slice`, which is constant-time too.
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

use axum::http::{HeaderMap, HeaderName};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::config::schema::WebhookConfig;
use crate::domain::Timestamp;
use crate::server::auth::{Credential, credential, secret_eq};
use crate::server::error::Challenges;

type HmacSha256 = Hmac<Sha256>;

/// Most signatures accepted in one `X-PagerDuty-Signature` header. Rotation
/// needs two or three; the cap bounds the HMAC work a request can cause.
const MAX_SIGNATURES: usize = 8;

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
