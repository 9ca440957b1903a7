//! The CLI side of the API: `status`, `events` and
//! `override on|off|clear|release-flap` talk to a running agent over HTTP
//! with an API token; the break-glass `talkdesk` commands try the agent
//! first ([`breakglass`]). Answers are decoded
//! into the handlers' own types ([`super::wire`]) and printed by [`render`].

pub mod breakglass;
pub mod render;

use std::time::Duration;

use serde::de::DeserializeOwned;

use super::error::ErrorBody;
use super::wire::{Cleared, EventsPage, OverrideRequest, OverrideResponse, Released, StatusReport};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the agent at {url}: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    /// The agent answered with an error document.
    #[error("the agent answered {status}: {error}: {detail}")]
    Api {
        status: u16,
        error: String,
        detail: String,
    },
    #[error("unexpected answer from the agent: {0}")]
    Protocol(String),
}

impl ClientError {
    /// 4xx answers are the caller's mistake (exit 2); the rest are runtime failures.
    pub fn is_usage(&self) -> bool {
        matches!(self, ClientError::Api { status, .. } if (400..500).contains(status) && *status != 429)
    }
}

pub struct ApiClient {
    base: String,
    token: Option<String>,
    /// The account the routes act on (`/v1/accounts/{id}/...`); `None`: the
    /// agent's default account.
    account: Option<String>,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str, token: Option<String>) -> ApiClient {
        let http = crate::tls::http_client_builder()
            .unwrap_or_else(|_| reqwest::Client::builder())
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("continuity-agent-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            account: None,
            http,
        }
    }

    /// Acts on `account` (an `[[accounts]]` id) instead of the default one.
    pub fn for_account(mut self, account: Option<String>) -> ApiClient {
        self.account = account;
        self
    }

    /// The URL of an account route (`status`, `override`, `events`, `flap`).
    fn url(&self, route: &str) -> String {
        match &self.account {
            // Ids are validated to `[a-z0-9_-]`; anything else is still
            // kept inside one path segment.
            Some(id) => format!(
                "{}/v1/accounts/{}/{route}",
                self.base,
                url::form_urlencoded::byte_serialize(id.as_bytes()).collect::<String>()
            ),
            None => format!("{}/v1/{route}", self.base),
        }
    }

    /// Sends `req` and decodes the answer: `T` on success, the agent's
    /// [`ErrorBody`] as [`ClientError::Api`] on 4xx/5xx.
    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, ClientError> {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let resp = req
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
        let unexpected = |_| ClientError::Protocol(format!("{status}: {text}"));
        if status >= 400 {
            let ErrorBody { error, detail } = serde_json::from_str(&text).map_err(unexpected)?;
            return Err(ClientError::Api {
                status,
                error,
                detail,
            });
        }
        serde_json::from_str(&text).map_err(unexpected)
    }

    /// `GET /v1/status`, the fields the CLI prints.
    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        self.send(self.http.get(self.url("status"))).await
    }

    /// `GET /v1/status`, the whole document as the agent wrote it (`--json`).
    pub async fn status_document(&self) -> Result<serde_json::Value, ClientError> {
        self.send(self.http.get(self.url("status"))).await
    }

    /// `PUT /v1/override`: fallback on with `active_profile`, or off when
    /// `None`. With `wait`, the agent answers once Talkdesk matches or `wait`
    /// passed (at most `outcome::WAIT_MAX`), with what Talkdesk did.
    pub async fn set_override(
        &self,
        active_profile: Option<&str>,
        ttl: &str,
        reason: &str,
        wait: Option<Duration>,
    ) -> Result<OverrideResponse, ClientError> {
        let body = OverrideRequest::new(active_profile, ttl, reason);
        let mut req = self.http.put(self.url("override")).json(&body);
        if let Some(wait) = wait {
            req = req.query(&[("wait", format!("{}ms", wait.as_millis()))]);
        }
        self.send(req).await
    }

    /// `GET /v1/events` with its filters (`since`: `1h` or RFC 3339; `kind`:
    /// comma-separated kinds), newest first.
    pub async fn events(
        &self,
        since: Option<&str>,
        kind: Option<&str>,
        limit: usize,
    ) -> Result<EventsPage, ClientError> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(s) = since {
            query.push(("since", s.to_string()));
        }
        if let Some(k) = kind {
            query.push(("kind", k.to_string()));
        }
        self.send(self.http.get(self.url("events")).query(&query))
            .await
    }

    /// `DELETE /v1/flap`.
    pub async fn release_flap(&self) -> Result<Released, ClientError> {
        self.send(self.http.delete(self.url("flap"))).await
    }

    /// `DELETE /v1/override`.
    pub async fn clear_override(&self, reason: Option<&str>) -> Result<Cleared, ClientError> {
        let mut req = self.http.delete(self.url("override"));
        if let Some(r) = reason {
            req = req.query(&[("reason", r)]);
        }
        self.send(req).await
    }
}
