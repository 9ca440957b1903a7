//! The JSON bodies of the API routes, one type each, shared by the handlers
//! (which serialize them) and the CLI client (which deserializes them), so a
//! field renamed on one side is renamed on the other, or fails to compile.
//!
//! `GET /v1/status` is the one document the two sides do not share as a
//! type: [`StatusDoc`](super::control::StatusDoc) embeds the engine's and the
//! actuator's views as opaque JSON. The client reads the fields it prints
//! through [`StatusReport`], made of the engine's and the domain's own types
//! where they deserialize; a test builds a document from a real engine and a
//! real actuator status, exactly as the daemon does, and checks that every
//! printed field arrives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{Actual, AlertKey, Desired, ProbeHealth};
use crate::engine::{Override, Reason, RulePhase};
use crate::store::StoredEvent;

/// `PUT /v1/override`: the request.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideRequest {
    pub state: OverrideState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub ttl: String,
    pub reason: String,
}

impl OverrideRequest {
    /// Fallback on with `active_profile`, or off when `None`.
    pub fn new(active_profile: Option<&str>, ttl: &str, reason: &str) -> OverrideRequest {
        OverrideRequest {
            state: match active_profile {
                Some(_) => OverrideState::Active,
                None => OverrideState::Inactive,
            },
            profile: active_profile.map(str::to_string),
            ttl: ttl.to_string(),
            reason: reason.to_string(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OverrideState {
    Active,
    Inactive,
}

impl OverrideState {
    pub fn as_str(self) -> &'static str {
        match self {
            OverrideState::Active => "active",
            OverrideState::Inactive => "inactive",
        }
    }
}

/// `PUT /v1/override`: the override now in force.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct OverrideResponse {
    pub state: OverrideState,
    pub profile: Option<String>,
    /// RFC 3339.
    pub until: String,
    pub reason: String,
    pub actor: String,
}

/// `DELETE /v1/override`: whether an override was in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Cleared {
    pub cleared: bool,
}

/// `DELETE /v1/flap`: whether the flap latch was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Released {
    pub released: bool,
}

/// `GET /v1/events`: one page of the audit log, newest first.
#[derive(Debug, Serialize)]
pub struct EventsPage {
    pub events: Vec<StoredEvent>,
    /// Pass as `before` to get the next page; `None` on the last page.
    pub next_before: Option<i64>,
}

/// What the CLI reads of `GET /v1/status`: the fields `status` prints.
/// Unknown fields are ignored (the document carries much more).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct StatusReport {
    pub mode: crate::engine::Mode,
    pub dry_run: bool,
    /// Leadership (`#[serde(default)]`: an agent older than `[cluster]`).
    #[serde(default)]
    pub leader: bool,
    #[serde(default)]
    pub leader_id: Option<String>,
    #[serde(default)]
    pub epoch: i64,
    #[serde(default)]
    pub instance_id: String,
    pub desired: Desired,
    pub actual: Actual,
    pub converged: bool,
    pub engine: EngineReport,
    pub actuator: ActuatorReport,
}

/// The printed part of the engine's view (`engine::EngineView`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct EngineReport {
    pub reasons: Vec<Reason>,
    #[serde(rename = "override")]
    pub override_: Option<Override>,
    pub probes: Vec<ProbeLine>,
    pub rules: Vec<RuleLine>,
    pub alerts: Vec<AlertLine>,
}

/// The printed part of `engine::view::ProbeView`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ProbeLine {
    pub id: String,
    pub health: ProbeHealth,
    pub last_detail: Option<String>,
}

/// The printed part of `engine::view::RuleView`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RuleLine {
    pub name: String,
    pub state: RulePhase,
}

/// The printed part of `engine::view::AlertView`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AlertLine {
    /// `source` and `id`.
    #[serde(flatten)]
    pub key: AlertKey,
    pub labels: BTreeMap<String, String>,
}

/// The printed part of the actuator's status (`talkdesk::actuator::ActuatorStatus`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ActuatorReport {
    pub attempts: u32,
    pub last_error: Option<ErrorLine>,
}

/// The printed part of `talkdesk::actuator::LastError`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ErrorLine {
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the client sends for `override on` and `override off` is what the
    /// handler accepts (it denies unknown fields), and `off` sends no profile.
    #[test]
    fn override_requests_round_trip() {
        for (profile, json) in [
            (
                Some("backup"),
                r#"{"state":"active","profile":"backup","ttl":"10m","reason":"r"}"#,
            ),
            (None, r#"{"state":"inactive","ttl":"10m","reason":"r"}"#),
        ] {
            let req = OverrideRequest::new(profile, "10m", "r");
            assert_eq!(serde_json::to_string(&req).unwrap(), json);
            let back: OverrideRequest = serde_json::from_str(json).unwrap();
            assert_eq!(back.profile.as_deref(), profile);
            assert_eq!(back.state, req.state);
        }
    }
}
