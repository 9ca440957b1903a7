//! Shared harness of the alert webhook tests: a real server on 127.0.0.1:0,
//! the engine channel's receiver, the metrics, and request helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use continuity_agent::alerts::ratelimit::RateLimit;
use continuity_agent::alerts::{AlertsState, router};
use continuity_agent::config;
use continuity_agent::domain::{AlertKey, Timestamp};
use continuity_agent::engine::event::Event;
use continuity_agent::telemetry::metrics::Metrics;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::mpsc;

pub const CONFIG: &str = r#"
[agent]
max_body = "64KiB"

[webhooks.alertmanager]
bearer_token = "am-token-0123456789abcdef"
basic_user = "am"
basic_password = "am-pass-0123456789abcdef"

[webhooks.grafana]
basic_user = "gf"
basic_password = "gf-pass-0123456789abcdef"
hmac_secret = "gf-hmac-0123456789abcdef"
timestamp_header = "X-Grafana-Alerting-Signature-Timestamp"
max_skew = "5m"

[webhooks.pagerduty]
hmac_secret = "pd-hmac-0123456789abcdef"

[webhooks.datadog]
header_name = "X-Continuity-Key"
header_value = "dd-secret-0123456789abcdef"

[webhooks.opsgenie]
bearer_token = "og-token-0123456789abcdef"

[webhooks.statuspage]
path_token = "sp-0123456789abcdef"

[webhooks.generic]
bearer_token = "gen-token-0123456789abcdef"

[api]
tokens = [
  { name = "pager", token = "api-alerts-0123456789", scopes = ["alerts"] },
  { name = "viewer", token = "api-read-0123456789", scopes = ["read"] },
]
"#;

/// 2025-01-01T00:00:00Z: after every fixture's event time (event times in
/// the future are refused).
pub const NOW_MS: i64 = 1_735_689_600_000;

pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/fixtures/alerts/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub struct Agent {
    pub base: String,
    pub rx: mpsc::Receiver<Event>,
    pub metrics: Metrics,
    pub client: reqwest::Client,
}

pub struct Opts {
    pub config: &'static str,
    pub capacity: usize,
    pub rate: Option<RateLimit>,
    pub body_timeout: Duration,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            config: CONFIG,
            capacity: 64,
            rate: None,
            body_timeout: Duration::from_secs(5),
        }
    }
}

pub async fn start(opts: Opts) -> Agent {
    let cfg = config::from_toml_str(opts.config, "alerts-test.toml").expect("valid config");
    let (tx, rx) = mpsc::channel(opts.capacity);
    let metrics = Metrics::new();
    let clock = Arc::new(AtomicI64::new(NOW_MS));
    let state = AlertsState::new(&cfg, tx, metrics.clone(), move || {
        Timestamp::from_millis(clock.load(Ordering::Relaxed))
    })
    .with_rate_limit(opts.rate)
    .with_body_timeout(opts.body_timeout);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    Agent {
        base: format!("http://{addr}"),
        rx,
        metrics,
        client: reqwest::Client::new(),
    }
}

impl Agent {
    pub fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        self.post_as(path, body, "application/json")
    }

    pub fn post_as(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        content_type: &str,
    ) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
    }

    /// Every event emitted so far (none are in flight: the handler sends
    /// before it answers).
    pub fn drain(&mut self) -> Vec<Event> {
        let mut v = Vec::new();
        while let Ok(e) = self.rx.try_recv() {
            v.push(e);
        }
        v
    }

    pub fn count(&self, source: &str, result: &str) -> u64 {
        self.metrics
            .alerts_received_total
            .with_label_values(&[source, result])
            .get()
    }
}

pub fn key(source: &str, id: &str) -> AlertKey {
    AlertKey {
        source: source.into(),
        id: id.into(),
    }
}

pub fn firing_key(e: &Event) -> Option<&AlertKey> {
    match e {
        Event::AlertFiring { key, .. } => Some(key),
        _ => None,
    }
}

pub async fn json(resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let v = resp.json::<Value>().await.unwrap_or(Value::Null);
    (status, v)
}

/// Asserts an error answer: status, `error` code, a non-empty detail.
pub async fn expect_error(resp: reqwest::Response, status: StatusCode, code: &str) -> Value {
    let (s, v) = json(resp).await;
    assert_eq!(s, status, "{v}");
    assert_eq!(v["error"], code, "{v}");
    assert!(v["detail"].as_str().is_some_and(|d| !d.is_empty()), "{v}");
    v
}

/// Writes a raw HTTP/1.1 request (ignoring write errors: the server may answer
/// and close early) and returns the start of the answer.
pub async fn raw_request(base: &str, head: &str, body: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://").to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(head.as_bytes()).await;
    let _ = s.write_all(body).await;
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("answered before the test timeout")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
