//! The JSON bodies of the API routes, one type each, shared by the handlers
//! (which serialize them) and the CLI client (which deserializes them), so a
//! field renamed on one side is renamed on the other, or fails to compile.
//!
//! `GET /v1/status` is the one document the two sides do not share as a
//! type: [`StatusDoc`](super::control::StatusDoc) embeds the engine's and the
//! actuator's views, which serialize but do not deserialize (the status page
//! reads them typed, in-process). The client reads the fields it prints
//! through [`StatusReport`], made of the engine's and the domain's own types
//! where they deserialize; a test builds a document from a real engine and a
//! real actuator status, exactly as the daemon does, and checks that every
//! printed field arrives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{Actual, AlertKey, Desired, ProbeHealth, Timestamp};
use crate::engine::{Override, Reason, RulePhase};
use crate::store::StoredEvent;
use crate::telemetry::AuditRecord;

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
    #[serde(flatten)]
    pub receipt: Receipt,
    /// What Talkdesk did with it when the answer was sent (after `?wait=`).
    #[serde(default)]
    pub talkdesk: Option<TalkdeskOutcome>,
}

/// The actuator's state as it concerns one operator change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct TalkdeskOutcome {
    /// Talkdesk has the state the change asks for.
    pub matches: bool,
    /// What Talkdesk was last seen to have.
    pub actual: Actual,
    /// Failed attempts so far (0 once it matches).
    pub attempts: u32,
    /// The error of the last attempt for this change, while it does not match.
    pub error: Option<String>,
    /// The actuator keeps trying (false when Talkdesk refused for good, in a
    /// dry run, or on a replica that may not write).
    pub retrying: bool,
    pub dry_run: bool,
}

/// How an operator change was taken. Every change is in the durable input
/// queue before the answer; `applied` says whether this replica's engine
/// also applied it before answering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Receipt {
    /// The change's id in the input queue.
    pub input_id: i64,
    /// `true`: applied by this replica's engine (200). `false`: accepted and
    /// queued for the engine that decides (202); it applies it within about
    /// a second.
    pub applied: bool,
}

/// `DELETE /v1/override`: whether an override was in force (known only when
/// `applied`; `false` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Cleared {
    pub cleared: bool,
    #[serde(flatten)]
    pub receipt: Receipt,
}

/// `DELETE /v1/flap`: whether the flap latch was set (known only when
/// `applied`; `false` otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub struct Released {
    pub released: bool,
    #[serde(flatten)]
    pub receipt: Receipt,
}

/// `GET /v1/events`: one page of the audit log, newest first.
#[derive(Debug, Serialize, Deserialize)]
pub struct EventsPage {
    pub events: Vec<EventItem>,
    /// Pass as `before` to get the next page; `None` on the last page.
    pub next_before: Option<i64>,
}

/// One audit record as served: `at` stays epoch milliseconds (compatible);
/// `time` is the same instant in RFC 3339.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EventItem {
    pub id: i64,
    /// The Talkdesk account the record belongs to (`default` for a
    /// configuration without `[[accounts]]`; absent from older agents).
    #[serde(default)]
    pub account: String,
    #[serde(flatten)]
    pub record: AuditRecord,
    pub time: String,
}

impl From<StoredEvent> for EventItem {
    fn from(e: StoredEvent) -> Self {
        EventItem {
            id: e.id,
            account: e.account,
            time: e.record.at.to_rfc3339(),
            record: e.record,
        }
    }
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
    /// The agent's clock when the document was made: relative times
    /// ("in 12m", "3m ago") are computed against it, not the CLI's clock.
    pub now: Timestamp,
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
    #[serde(default)]
    pub progress: Vec<String>,
    #[serde(default)]
    pub fires_at: Option<Timestamp>,
    #[serde(default)]
    pub clears_at: Option<Timestamp>,
}

/// The printed part of `engine::view::AlertView`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AlertLine {
    /// `source` and `id`.
    #[serde(flatten)]
    pub key: AlertKey,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub summary: Option<String>,
    pub first_seen: Timestamp,
    pub expires: Timestamp,
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
