//! The CLI side of the API: `status` and `override on|off|clear` talk to a
//! running agent over HTTP with an API token.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::Value;

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
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base: &str, token: Option<String>) -> ApiClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("continuity-agent-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        ApiClient {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, ClientError> {
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
        let json: Value = serde_json::from_str(&text)
            .map_err(|_| ClientError::Protocol(format!("{status}: {text}")))?;
        if status >= 400 {
            let field = |k: &str| {
                json.get(k)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            return Err(ClientError::Api {
                status,
                error: field("error"),
                detail: field("detail"),
            });
        }
        Ok(json)
    }

    pub async fn status(&self) -> Result<Value, ClientError> {
        self.send(self.http.get(format!("{}/v1/status", self.base)))
            .await
    }

    pub async fn set_override(
        &self,
        active_profile: Option<&str>,
        ttl: &str,
        reason: &str,
    ) -> Result<Value, ClientError> {
        let body = match active_profile {
            Some(p) => {
                serde_json::json!({ "state": "active", "profile": p, "ttl": ttl, "reason": reason })
            }
            None => serde_json::json!({ "state": "inactive", "ttl": ttl, "reason": reason }),
        };
        self.send(
            self.http
                .put(format!("{}/v1/override", self.base))
                .json(&body),
        )
        .await
    }

    pub async fn release_flap(&self) -> Result<Value, ClientError> {
        self.send(self.http.delete(format!("{}/v1/flap", self.base)))
            .await
    }

    pub async fn clear_override(&self, reason: Option<&str>) -> Result<Value, ClientError> {
        let mut req = self.http.delete(format!("{}/v1/override", self.base));
        if let Some(r) = reason {
            req = req.query(&[("reason", r)]);
        }
        self.send(req).await
    }
}

/// A readable rendering of `/v1/status` for terminals.
pub fn render_status(doc: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_string(),
        other => other.to_string(),
    };
    let mut out = String::new();
    let desired = &doc["desired"];
    let desired_text = match desired["state"].as_str() {
        Some("active") => format!("ACTIVE (profile {})", s(&desired["profile"])),
        Some(other) => other.to_string(),
        None => s(desired),
    };
    let actual = match doc["actual"]["enabled"].as_bool() {
        Some(true) => "on",
        Some(false) => "off",
        None => "unknown",
    };
    let _ = writeln!(
        out,
        "mode:      {}{}",
        s(&doc["mode"]),
        if doc["dry_run"] == Value::Bool(true) {
            " (dry run)"
        } else {
            ""
        }
    );
    let _ = writeln!(out, "desired:   {desired_text}");
    let _ = writeln!(
        out,
        "talkdesk:  fallback {actual}{}",
        if doc["converged"] == Value::Bool(true) {
            ", converged"
        } else {
            ", NOT converged"
        }
    );
    if let Some(err) = doc["actuator"]["last_error"].as_object() {
        let _ = writeln!(
            out,
            "last error: {} ({})",
            s(&err["message"]),
            s(&doc["actuator"]["attempts"])
        );
    }
    let engine = &doc["engine"];
    if let Some(reasons) = engine["reasons"].as_array().filter(|r| !r.is_empty()) {
        let _ = writeln!(out, "reasons:");
        for r in reasons {
            let _ = writeln!(out, "  - {}: {}", s(&r["source"]), s(&r["text"]));
        }
    }
    if let Some(ov) = engine["override"].as_object() {
        let _ = writeln!(
            out,
            "override:  {} until {} by {}: {}",
            s(&ov["desired"]),
            s(&ov["until"]),
            s(&ov["actor"]),
            s(&ov["reason"])
        );
    }
    if let Some(probes) = engine["probes"].as_array() {
        let _ = writeln!(out, "probes:");
        for p in probes {
            let _ = writeln!(
                out,
                "  {:<24} {:<8} {}",
                s(&p["id"]),
                s(&p["health"]),
                s(&p["last_detail"])
            );
        }
    }
    if let Some(rules) = engine["rules"].as_array() {
        let _ = writeln!(out, "rules:");
        for r in rules {
            let _ = writeln!(out, "  {:<24} {}", s(&r["name"]), s(&r["state"]));
        }
    }
    if let Some(alerts) = engine["alerts"].as_array().filter(|a| !a.is_empty()) {
        let _ = writeln!(out, "alerts:");
        for a in alerts {
            let _ = writeln!(out, "  {} {}", s(&a["key"]), a["labels"]);
        }
    }
    out
}
