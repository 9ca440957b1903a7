//! `[[probes]] type = "http"`: the keys, defaults and checks of an HTTP
//! probe, and the endpoint (`url`, `headers`) it shares with the statuspage
//! and agents probes.

use std::collections::BTreeMap;
use std::fmt;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::{ExpectStatus, JsonCondition};
use crate::config::Dur;
use crate::probe::config::{Findings, KindDefaults};

/// Endpoints behind TLS, redirects and a real backend need more than a SIP
/// stack's 2s; 5s tolerates that and stays well under the 10s interval.
pub const DEFAULTS: KindDefaults = KindDefaults {
    interval: Dur::from_secs(10),
    timeout: HTTP_TIMEOUT,
    ..KindDefaults::COMMON
};

/// The default timeout of every probe that speaks HTTP (http, statuspage, agents).
pub const HTTP_TIMEOUT: Dur = Dur::from_secs(5);

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// `http://` or `https://`. Required.
    #[serde(default)]
    pub url: Option<String>,
    /// Acceptable status codes (default any 2xx).
    #[serde(default)]
    pub expect_status: Option<Vec<u16>>,
    /// JSONPath (RFC 9535) that must select at least one node in the body.
    #[serde(default)]
    pub expect_json: Option<String>,
    /// Extra request headers. Values are secrets (often `Authorization`):
    /// redacted in `Debug`, never serialized.
    #[serde(default, skip_serializing)]
    pub headers: Option<BTreeMap<String, SecretString>>,
}

/// A validated HTTP probe.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    pub endpoint: Endpoint,
    pub expect_status: ExpectStatus,
    pub expect_json: Option<JsonCondition>,
}

/// Where an HTTP-speaking probe sends its GET.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub url: String,
    pub headers: Headers,
}

/// Validated request headers. Values are marked sensitive, and `Debug` shows
/// only the names: they often carry tokens.
#[derive(Clone, Default)]
pub struct Headers(pub HeaderMap);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl HttpConfig {
    pub fn validate(&self, found: &mut Findings) -> Option<HttpSettings> {
        let endpoint = endpoint(&self.url, &self.headers, found);
        let expect_status = self.expect_status(found);
        let expect_json = match self.expect_json.as_deref() {
            None => Some(None),
            Some(path) => found
                .check("expect_json", JsonCondition::parse(path))
                .map(Some),
        };
        Some(HttpSettings {
            endpoint: endpoint?,
            expect_status: expect_status?,
            expect_json: expect_json?,
        })
    }

    fn expect_status(&self, found: &mut Findings) -> Option<ExpectStatus> {
        let Some(codes) = &self.expect_status else {
            return Some(ExpectStatus::Any2xx);
        };
        let before = found.errors.len();
        if codes.is_empty() {
            found.err("expect_status", "must list at least one status code");
        }
        for (i, c) in codes.iter().enumerate() {
            if !(100..=599).contains(c) {
                found.err(
                    format!("expect_status[{i}]"),
                    format!("{c} is not an HTTP status code (100-599)"),
                );
            }
        }
        (found.errors.len() == before).then(|| ExpectStatus::OneOf(codes.clone()))
    }
}

/// `url` (required, http or https with a host) and `headers`.
pub(crate) fn endpoint(
    url: &Option<String>,
    headers: &Option<BTreeMap<String, SecretString>>,
    found: &mut Findings,
) -> Option<Endpoint> {
    let url = match url {
        None => {
            found.err("url", "missing: an http:// or https:// URL");
            None
        }
        Some(u) => found.check("url", http_url(u).map(String::from)),
    };
    let headers = found.check("headers", header_map(headers.iter().flatten()));
    Some(Endpoint {
        url: url?,
        headers: headers?,
    })
}

/// An `http://` or `https://` URL with a host.
pub fn http_url(u: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(u).map_err(|e| format!("{u:?} is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(format!("{u:?}: scheme {other:?} is not http or https")),
    }
    if url.host().is_none() {
        return Err(format!("{u:?} has no host"));
    }
    Ok(url)
}

fn header_map<'a>(
    headers: impl Iterator<Item = (&'a String, &'a SecretString)>,
) -> Result<Headers, String> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("\"{k}\" is not a valid header name"))?;
        let mut value = HeaderValue::from_str(v.expose_secret())
            .map_err(|_| format!("the value of header \"{k}\" has invalid characters"))?;
        // Header values often carry tokens; keep them out of debug output.
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(Headers(map))
}
