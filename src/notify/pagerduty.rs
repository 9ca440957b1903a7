//! PagerDuty Events API v2 (`POST https://events.pagerduty.com/v2/enqueue`):
//! the failover pages the on-call person by itself.
//!
//! - `activate` and `profile` **trigger** the activation's incident,
//!   `deactivate` **resolves** it. Both name it by the same `dedup_key`:
//!   `continuity-agent/<account>/fallback/<ms>`, from when the fallback went
//!   on. The engine persists that instant with its snapshot and every
//!   process restores it (after a restart, and another replica after a
//!   takeover), so the process that resolves an incident names it exactly as
//!   the one that opened it, and a repeated trigger only adds to it.
//! - `stuck` triggers `continuity-agent/<account>/stuck` (one per account at
//!   a time) and resolves it when Talkdesk matches again; a process that
//!   finds Talkdesk matching when its leadership term starts resolves it too,
//!   closing one a previous process may have left open.
//! - `flap` and `blind` trigger when the latch or the guard engages and
//!   resolve when it releases, keyed by when it engaged (persisted too).
//!
//! PagerDuty answers `202` with `{"status":"success","dedup_key":...}`, `400`
//! for an invalid event (not retried), `429` when rate limited (retried).

use serde_json::{Value, json};

use super::message::{Message, Severity, truncate};

/// PagerDuty's limit on `payload.summary`.
const SUMMARY_MAX: usize = 1024;

pub fn payload(m: &Message, routing_key: &str) -> Value {
    if m.resolved || m.severity == Severity::Resolved {
        return json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": m.incident,
        });
    }
    let severity = match m.severity {
        Severity::Critical => "critical",
        Severity::Warning | Severity::Resolved => "warning",
    };
    let mut details = json!({
        "what changed": m.changed,
        "why": m.why,
        "callers now get": m.callers,
        "instance": m.instance,
    });
    if m.dry_run {
        details["dry run"] = json!(super::message::DRY_RUN_NOTE);
    }
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": m.incident,
        "client": "continuity-agent",
        "payload": {
            "summary": truncate(&format!("{} — {}", m.title, m.changed), SUMMARY_MAX),
            "source": m.instance,
            "severity": severity,
            "timestamp": m.at.to_string(),
            "component": "talkdesk-fallback",
            "group": m.account.as_deref().unwrap_or("default"),
            "class": m.event.as_str(),
            "custom_details": details,
        },
    });
    if let Some(link) = &m.link {
        event["client_url"] = json!(link);
        event["links"] = json!([{"href": link, "text": "Status page"}]);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::tests::{activation, context, deactivation};

    #[test]
    fn an_activation_triggers_and_its_deactivation_resolves_the_same_incident() {
        let cx = context();
        let on = payload(&Message::new(&activation(), &cx, String::new()), "R0UT1NG");
        let want = json!({
            "routing_key": "R0UT1NG",
            "event_action": "trigger",
            "dedup_key": "continuity-agent/acme/fallback/1764540000000",
            "client": "continuity-agent",
            "client_url": "https://continuity.example.net/",
            "links": [{"href": "https://continuity.example.net/", "text": "Status page"}],
            "payload": {
                "summary": "Fallback ON: backup — The fallback was switched ON with profile backup (cause: rule).",
                "source": "replica-a",
                "severity": "critical",
                "timestamp": "2025-11-30T22:00:00.000Z",
                "component": "talkdesk-fallback",
                "group": "acme",
                "class": "activate",
                "custom_details": {
                    "what changed": "The fallback was switched ON with profile backup (cause: rule).",
                    "why": ["trunks-down: 2 of 2 probes matching \"trunk-*\" down"],
                    "callers now get": "+14155550100 forwarded to +14155559999; every other number forwarded to +14155558888; others hear (en-US): \"We are sorry\"",
                    "instance": "replica-a",
                },
            },
        });
        assert_eq!(on, want);
        let off = payload(
            &Message::new(&deactivation(), &cx, String::new()),
            "R0UT1NG",
        );
        assert_eq!(
            off,
            json!({
                "routing_key": "R0UT1NG",
                "event_action": "resolve",
                "dedup_key": "continuity-agent/acme/fallback/1764540000000",
            })
        );
    }
}
