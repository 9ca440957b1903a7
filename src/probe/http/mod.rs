//! HTTP probe: an endpoint answers with an expected status, and optionally a
//! JSON body on which a JSONPath (RFC 9535) selects at least one node.
//!
//! `expect_status` defaults to any 2xx. `expect_json = "$[?@.status == 'UP']"`
//! succeeds when the filter selects something, so it reads as a condition.
//! Details: `200 OK in 12ms`, `503 Service Unavailable (expected 200)`,
//! `body did not match $.status`, `timeout after 2s`.

pub mod config;
pub mod fetch;

#[cfg(test)]
mod tests;

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::Client;
use serde_json_path::JsonPath;

use crate::domain::ProbeOutcome;

pub use config::{Endpoint, HttpConfig, HttpSettings};

use super::{Probe, ProbeBuildError, fmt_latency, timeout_detail};

/// Status codes that count as success.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectStatus {
    Any2xx,
    OneOf(Vec<u16>),
}

impl ExpectStatus {
    pub fn matches(&self, code: u16) -> bool {
        match self {
            ExpectStatus::Any2xx => (200..300).contains(&code),
            ExpectStatus::OneOf(list) => list.contains(&code),
        }
    }

    fn describe(&self) -> String {
        match self {
            ExpectStatus::Any2xx => "2xx".into(),
            ExpectStatus::OneOf(list) => list
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" or "),
        }
    }
}

/// A compiled JSONPath with its source text (for details).
#[derive(Clone, Debug)]
pub struct JsonCondition {
    pub text: String,
    pub path: JsonPath,
}

impl JsonCondition {
    pub fn parse(text: &str) -> Result<JsonCondition, String> {
        JsonPath::parse(text)
            .map(|path| JsonCondition {
                text: text.to_string(),
                path,
            })
            .map_err(|e| format!("{text:?} is not a JSONPath (RFC 9535) expression: {e}"))
    }

    /// Whether the path selects at least one node.
    ///
    /// RFC 9535 applies a root filter (`$[?...]`) to the root's *children*,
    /// so `$[?@.status == 'UP']` never matches `{"status": "UP"}` although
    /// that is what operators mean (Gatus' `[BODY].status == UP`). A root
    /// filter is therefore also tried on the root object itself (as if it
    /// were wrapped in a one-element array). Only filters get this: a plain
    /// `$[0]` or `$[*]` would otherwise select the wrapper and always match.
    pub fn matches(&self, body: &serde_json::Value) -> bool {
        if !self.path.query(body).is_empty() {
            return true;
        }
        body.is_object()
            && self.text.trim_start().starts_with("$[?")
            && !self
                .path
                .query(&serde_json::Value::Array(vec![body.clone()]))
                .is_empty()
    }
}

pub struct HttpProbe {
    id: String,
    url: String,
    client: Client,
    expect_status: ExpectStatus,
    expect_json: Option<JsonCondition>,
    timeout: Duration,
}

impl HttpProbe {
    /// The probe a validated `[[probes]]` entry describes. Fails only if
    /// the HTTP client cannot be built (TLS initialisation).
    pub fn new(
        id: impl Into<String>,
        s: &HttpSettings,
        timeout: Duration,
    ) -> Result<HttpProbe, ProbeBuildError> {
        let id = id.into();
        Ok(HttpProbe {
            client: client(&id, &s.endpoint, timeout)?,
            id,
            url: s.endpoint.url.clone(),
            expect_status: s.expect_status.clone(),
            expect_json: s.expect_json.clone(),
            timeout,
        })
    }

    async fn attempt(&self) -> ProbeOutcome {
        let got = match fetch::get(&self.client, &self.url, self.expect_json.is_some()).await {
            Ok(g) => g,
            Err(outcome) => return outcome,
        };
        let status = fetch::status_text(got.status);
        let latency = Some(got.latency);
        if !self.expect_status.matches(got.status.as_u16()) {
            return ProbeOutcome::failure(
                format!("{status} (expected {})", self.expect_status.describe()),
                latency,
            );
        }
        if let Some(cond) = &self.expect_json {
            let body: serde_json::Value = match serde_json::from_slice(&got.body) {
                Ok(v) => v,
                Err(e) => {
                    return ProbeOutcome::failure(
                        format!("{status} but the body is not JSON: {e}"),
                        latency,
                    );
                }
            };
            if !cond.matches(&body) {
                return ProbeOutcome::failure(format!("body did not match {}", cond.text), latency);
            }
        }
        ProbeOutcome::success(format!("{status} in {}", fmt_latency(got.latency)), latency)
    }
}

/// The client of an HTTP-speaking probe: its headers and timeout.
pub(crate) fn client(
    id: &str,
    endpoint: &Endpoint,
    timeout: Duration,
) -> Result<Client, ProbeBuildError> {
    fetch::client(timeout, &endpoint.headers.0).map_err(|reason| ProbeBuildError::Client {
        id: id.to_string(),
        reason,
    })
}

/// Run `f` under the probe timeout, turning expiry into the standard detail.
pub(crate) async fn with_timeout(
    timeout: Duration,
    f: impl std::future::Future<Output = ProbeOutcome>,
) -> ProbeOutcome {
    tokio::time::timeout(timeout, f)
        .await
        .unwrap_or_else(|_| ProbeOutcome::failure(timeout_detail(timeout), None))
}

impl Probe for HttpProbe {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    fn check(&self) -> BoxFuture<'_, ProbeOutcome> {
        Box::pin(with_timeout(self.timeout, self.attempt()))
    }
}
