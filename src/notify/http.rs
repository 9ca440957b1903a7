//! The transport of the running agent: one HTTPS POST per attempt (rustls),
//! bounded by [`REQUEST_TIMEOUT`], redirects not followed; webhook targets
//! get their event, delivery id, timestamp and signature headers. An answer
//! is classified for the retry policy, and described without the URL.

use std::sync::OnceLock;
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
///
/// The client is built on the first delivery: every account has a
/// transport, most have no notification target, and an idle client still
/// holds its connector and pool (a reload that adds targets gets one then).
pub struct Http {
    client: OnceLock<Result<reqwest::Client, String>>,
}

impl Http {
    /// Fails when the process's TLS configuration cannot be built (no OS
    /// trust store): at start, not at the first notification.
    pub fn new() -> Result<Http, crate::tls::TlsError> {
        crate::tls::http_config()?;
        Ok(Http {
            client: OnceLock::new(),
        })
    }

    /// Whether a client exists yet (built by the first delivery).
    pub fn has_client(&self) -> bool {
        self.client.get().is_some()
    }

    fn client(&self) -> Result<&reqwest::Client, SendError> {
        let built = self.client.get_or_init(|| {
            crate::tls::http_client_builder()
                .map_err(|e| e.to_string())?
                .timeout(REQUEST_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("continuity-agent/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("cannot build HTTP client: {e}"))
        });
        built.as_ref().map_err(|message| SendError {
            message: message.clone(),
            retryable: false,
            retry_after: None,
        })
    }
}

impl Transport for Http {
    fn post<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let t = &d.target;
            let mut req = self
                .client()?
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::time::Instant;

    use super::*;
    use crate::notify::config::{NoticeKind, NotifyConfig};

    #[tokio::test]
    async fn the_client_is_built_by_the_first_delivery_and_then_delivers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Headers and the small body arrive together on loopback; read
            // until the body's closing brace.
            while !request.ends_with(b"}") {
                let n = conn.read(&mut buf).await.unwrap();
                assert!(n > 0, "the request ended early");
                request.extend_from_slice(&buf[..n]);
            }
            conn.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        let c: NotifyConfig =
            serde_json::from_value(json!({"type": "webhook", "name": "t", "url": url})).unwrap();
        let delivery = Delivery {
            target: Arc::new(Target::from_config(&c)),
            id: "d1".into(),
            event: NoticeKind::Activate,
            title: "on".into(),
            body: br#"{"event":"activate"}"#.to_vec(),
            queued: Instant::now(),
        };
        let http = Http::new().unwrap();
        assert!(
            !http.has_client(),
            "a transport without deliveries holds no client"
        );
        http.post(&delivery).await.unwrap();
        assert!(http.has_client());
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /hook HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("x-continuity-delivery: d1"), "{request}");
    }
}
