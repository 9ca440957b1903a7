//! The transport of the running agent: one HTTPS POST per attempt (rustls),
//! bounded by [`REQUEST_TIMEOUT`], redirects not followed; webhook targets
//! get their event, delivery id, timestamp and signature headers. An answer
//! is classified for the retry policy, and described without the URL.

use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::ExposeSecret;

use super::config::NotifyType;
use super::deliver::{Delivery, SendError, Target, Transport};
use super::message::truncate;
use super::webhook;
use crate::backoff::parse_retry_after;

/// Each attempt is bounded: a receiver that hangs must not hold the queue.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// HTTPS POST with rustls, no redirects (a webhook that moved is a
/// configuration error, not something to follow with a signed body).
pub struct Http {
    client: reqwest::Client,
}

impl Http {
    pub fn new() -> Result<Http, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("continuity-agent/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Http { client })
    }
}

impl Transport for Http {
    fn post<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let t = &d.target;
            let mut req = self
                .client
                .post(t.url.expose_secret())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(d.body.clone());
            if t.kind == NotifyType::Webhook {
                let now = chrono::Utc::now().timestamp();
                req = req
                    .header("X-Continuity-Event", d.event.as_str())
                    .header("X-Continuity-Delivery", &d.id)
                    .header(webhook::TIMESTAMP_HEADER, now.to_string());
                if let Some(secret) = &t.hmac_secret {
                    let sig = webhook::signature(secret.expose_secret().as_bytes(), now, &d.body);
                    req = req.header(webhook::SIGNATURE_HEADER, sig);
                }
            }
            match req.send().await {
                Ok(resp) => answered(resp, t).await,
                Err(e) => Err(unanswered(&e, t)),
            }
        })
    }
}

/// A 2xx is delivered; 408, 429 and 5xx are retried (after `Retry-After`);
/// anything else (a 4xx: a revoked webhook, an invalid routing key; a 3xx)
/// would fail the same way again.
async fn answered(resp: reqwest::Response, t: &Target) -> Result<(), SendError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, chrono::Utc::now()));
    let body = resp.text().await.unwrap_or_default();
    let body = truncate(body.trim(), 200);
    let code = status.as_u16();
    Err(SendError {
        message: t.redact(&if body.is_empty() {
            format!("HTTP {code}")
        } else {
            format!("HTTP {code}: {body}")
        }),
        retryable: code == 408 || code == 429 || status.is_server_error(),
        retry_after,
    })
}

/// No answer: a timeout, a refused or dropped connection. reqwest's own
/// message names the URL (a secret for Slack and Teams), so only its kind
/// and its causes are kept.
fn unanswered(e: &reqwest::Error, t: &Target) -> SendError {
    let mut message = if e.is_timeout() {
        format!("no answer within {}s", REQUEST_TIMEOUT.as_secs())
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    SendError {
        message: t.redact(&message),
        retryable: true,
        retry_after: None,
    }
}
