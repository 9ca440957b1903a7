//! Agents probe: are enough agents available to take calls?
//!
//! Reads a number from an HTTP JSON endpoint with a JSONPath (`value`, e.g.
//! `$.available`) and succeeds when it is at least `min` (default 1). The
//! path must select exactly one node: a number, or a string holding one.
//!
//! # Feeding it from Talkdesk
//!
//! Talkdesk has no endpoint that returns "agents available now" (see
//! `reference/talkdesk-api.md` section 4): the Live API streams query results
//! over SSE with unconfirmed query names, and the Presence API answers one
//! user per call. So the probe reads a number that something else publishes:
//!
//! - **A wallboard or BI tool** that already shows available agents (Talkdesk
//!   Live, a Grafana panel, a WFM tool) and can expose it as JSON: point `url`
//!   at it and `value` at the field.
//! - **A small exporter** that subscribes to a Talkdesk Live query
//!   (`POST /live-subscriptions`, then `GET /live-subscriptions/{id}/stream`)
//!   for the ring groups that matter, and serves the latest value as
//!   `{"available": 7, "updated_at": "..."}`. Have it return an error status
//!   (e.g. 503) when its data is stale, so the probe fails instead of
//!   trusting an old number.
//! - **Presence polling** for small teams: an exporter that calls
//!   `GET /users/{id}/presence` for each agent of a queue and counts
//!   `status == "available"` (mind the rate limits).
//!
//! Example:
//! ```toml
//! [[probes]]
//! id = "agents-us"
//! type = "agents"
//! url = "http://agent-exporter:9110/available?ring_group=support"
//! value = "$.available"
//! min = 2
//! headers = { Authorization = "Bearer ..." }
//! ```

pub mod config;
#[cfg(test)]
mod tests;

use std::time::Duration;

use futures::future::BoxFuture;
use reqwest::Client;
use serde_json::Value;

use crate::domain::ProbeOutcome;

pub use config::{AgentsConfig, AgentsSettings, DEFAULT_MIN};

use super::http::{JsonCondition, client, fetch, with_timeout};
use super::{Probe, ProbeBuildError};

pub struct AgentsProbe {
    id: String,
    url: String,
    client: Client,
    value: JsonCondition,
    min: u64,
    timeout: Duration,
}

impl AgentsProbe {
    /// The probe a validated `[[probes]]` entry describes. Fails only if
    /// the HTTP client cannot be built (TLS initialisation).
    pub fn new(
        id: impl Into<String>,
        s: &AgentsSettings,
        timeout: Duration,
    ) -> Result<AgentsProbe, ProbeBuildError> {
        let id = id.into();
        Ok(AgentsProbe {
            client: client(&id, &s.endpoint, timeout)?,
            id,
            url: s.endpoint.url.clone(),
            value: s.value.clone(),
            min: s.min,
            timeout,
        })
    }

    async fn attempt(&self) -> ProbeOutcome {
        let got = match fetch::get_ok(&self.client, &self.url, |s| {
            format!("{s} from the agents source")
        })
        .await
        {
            Ok(g) => g,
            Err(failure) => return failure,
        };
        let latency = Some(got.latency);
        let body: Value = match serde_json::from_slice(&got.body) {
            Ok(v) => v,
            Err(e) => return ProbeOutcome::failure(format!("body is not JSON: {e}"), latency),
        };
        let count = match read_count(&self.value, &body) {
            Ok(n) => n,
            Err(e) => return ProbeOutcome::failure(e, latency),
        };
        let detail = format!("{count} available (min {})", self.min);
        if count >= self.min {
            ProbeOutcome::success(detail, latency)
        } else {
            ProbeOutcome::failure(detail, latency)
        }
    }
}

/// The number at `path`: exactly one node, a non-negative integer (or a
/// string holding one; exporters sometimes quote numbers).
pub fn read_count(path: &JsonCondition, body: &Value) -> Result<u64, String> {
    let nodes = path.path.query(body).all();
    let node = match nodes.as_slice() {
        [one] => *one,
        [] => return Err(format!("{} selected nothing", path.text)),
        many => {
            return Err(format!(
                "{} selected {} values; it must select exactly one",
                path.text,
                many.len()
            ));
        }
    };
    let n = match node {
        Value::Number(n) => n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f <= u64::MAX as f64)
                .map(|f| f as u64)
        }),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.ok_or_else(|| format!("{} is {node}, not a count of agents", path.text))
}

impl Probe for AgentsProbe {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "agents"
    }

    fn check(&self) -> BoxFuture<'_, ProbeOutcome> {
        Box::pin(with_timeout(self.timeout, self.attempt()))
    }
}
