//! `[[probes]] type = "agents"`: the keys, defaults and checks of an agents
//! probe.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::Dur;
use crate::probe::config::{Findings, KindDefaults};
use crate::probe::http::JsonCondition;
use crate::probe::http::config::{Endpoint, HTTP_TIMEOUT, endpoint};

/// Same cadence as the other HTTP probes.
pub const DEFAULTS: KindDefaults = KindDefaults {
    interval: Dur::from_secs(10),
    timeout: HTTP_TIMEOUT,
    ..KindDefaults::COMMON
};

/// With no `min`, one available agent is enough to keep answering calls.
pub const DEFAULT_MIN: u64 = 1;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AgentsConfig {
    /// The JSON endpoint publishing the count. Required.
    #[serde(default)]
    pub url: Option<String>,
    /// JSONPath to the number of available agents, e.g. `$.available`. Required.
    #[serde(default)]
    pub value: Option<String>,
    /// Fewer available agents than this is a failure (default [`DEFAULT_MIN`]).
    #[serde(default)]
    pub min: Option<u64>,
    /// Extra request headers; values are secrets.
    #[serde(default, skip_serializing)]
    pub headers: Option<BTreeMap<String, SecretString>>,
}

/// A validated agents probe.
#[derive(Clone, Debug)]
pub struct AgentsSettings {
    pub endpoint: Endpoint,
    pub value: JsonCondition,
    pub min: u64,
}

impl AgentsConfig {
    pub fn validate(&self, found: &mut Findings) -> Option<AgentsSettings> {
        let endpoint = endpoint(&self.url, &self.headers, found);
        let value = match &self.value {
            None => {
                found.err(
                    "value",
                    "missing: a JSONPath to the number of available agents, e.g. \"$.available\"",
                );
                None
            }
            Some(v) => found.check("value", JsonCondition::parse(v)),
        };
        Some(AgentsSettings {
            endpoint: endpoint?,
            value: value?,
            min: self.min.unwrap_or(DEFAULT_MIN),
        })
    }
}
