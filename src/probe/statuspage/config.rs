//! `[[probes]] type = "statuspage"`: the keys, defaults and checks of a
//! status page probe.

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::{Format, Level};
use crate::config::Dur;
use crate::probe::config::{Findings, KindDefaults};
use crate::probe::http::config::{Endpoint, HTTP_TIMEOUT, endpoint};

/// Status pages update every minute at best; polling them faster only adds load.
pub const DEFAULTS: KindDefaults = KindDefaults {
    interval: Dur::from_secs(60),
    timeout: HTTP_TIMEOUT,
    ..KindDefaults::COMMON
};

/// A major outage is what justifies forwarding calls; lesser levels are opt-in.
pub const DEFAULT_DOWN_AT: Level = Level::Major;

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPageConfig {
    /// The page's JSON document (`summary.json`, ...). Required.
    #[serde(default)]
    pub url: Option<String>,
    /// Component names to watch; empty watches the page indicator.
    #[serde(default)]
    pub components: Option<Vec<String>>,
    /// `degraded_performance` | `partial_outage` | `major_outage` (default).
    #[serde(default)]
    pub down_at: Option<String>,
    /// `statuspage` (Atlassian) | `incidentio` | `instatus`; detected from the body if absent.
    #[serde(default)]
    pub format: Option<String>,
    /// Extra request headers; values are secrets.
    #[serde(default, skip_serializing)]
    pub headers: Option<BTreeMap<String, SecretString>>,
}

/// A validated status page probe.
#[derive(Clone, Debug)]
pub struct StatusPageSettings {
    pub endpoint: Endpoint,
    pub components: Vec<String>,
    pub down_at: Level,
    pub format: Option<Format>,
}

impl StatusPageConfig {
    pub fn validate(&self, found: &mut Findings) -> Option<StatusPageSettings> {
        let endpoint = endpoint(&self.url, &self.headers, found);
        let down_at = match self.down_at.as_deref() {
            None => Some(DEFAULT_DOWN_AT),
            Some(d) => found.check("down_at", Level::parse_down_at(d)),
        };
        let format = match self.format.as_deref() {
            None => Some(None),
            Some(f) => found.check("format", Format::parse(f)).map(Some),
        };
        let components = self.components.clone().unwrap_or_default();
        let before = found.errors.len();
        for (i, c) in components.iter().enumerate() {
            if c.trim().is_empty() {
                found.err(
                    format!("components[{i}]"),
                    "component name must not be empty",
                );
            }
        }
        let components = (found.errors.len() == before).then_some(components);
        Some(StatusPageSettings {
            endpoint: endpoint?,
            components: components?,
            down_at: down_at?,
            format: format?,
        })
    }
}
