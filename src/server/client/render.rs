//! What the CLI prints for each answer of the agent. Every function returns
//! whole lines (each ending in `\n`), so `main` only prints them.

use std::fmt::Write as _;

use crate::domain::Desired;
use crate::server::wire::{Cleared, OverrideResponse, Released, StatusReport};

/// A readable rendering of `/v1/status` for terminals.
pub fn status(doc: &StatusReport) -> String {
    let mut out = String::new();
    let desired = match &doc.desired {
        Desired::Active { profile } => format!("ACTIVE (profile {profile})"),
        Desired::Inactive => "inactive".to_string(),
    };
    let actual = match doc.actual.enabled {
        Some(true) => "on",
        Some(false) => "off",
        None => "unknown",
    };
    let dry_run = if doc.dry_run { " (dry run)" } else { "" };
    let converged = if doc.converged {
        ", converged"
    } else {
        ", NOT converged"
    };
    let _ = writeln!(out, "mode:      {}{dry_run}", doc.mode);
    let role = match (doc.leader, doc.leader_id.as_deref()) {
        (true, _) => format!("leader, epoch {}", doc.epoch),
        (false, Some(leader)) => format!("follower of {leader}, epoch {}", doc.epoch),
        (false, None) => "follower, leader unknown".to_string(),
    };
    let _ = writeln!(out, "replica:   {} ({role})", doc.instance_id);
    let _ = writeln!(out, "desired:   {desired}");
    let _ = writeln!(out, "talkdesk:  fallback {actual}{converged}");
    if let Some(err) = &doc.actuator.last_error {
        let _ = writeln!(
            out,
            "last error: {} ({})",
            err.message, doc.actuator.attempts
        );
    }
    let engine = &doc.engine;
    if !engine.reasons.is_empty() {
        let _ = writeln!(out, "reasons:");
        for r in &engine.reasons {
            let _ = writeln!(out, "  - {}: {}", r.source, r.text);
        }
    }
    if let Some(ov) = &engine.override_ {
        // The desired state as JSON and `until` in epoch milliseconds, as
        // this line has always shown them.
        let desired = serde_json::to_value(&ov.desired).unwrap_or_default();
        let _ = writeln!(
            out,
            "override:  {desired} until {} by {}: {}",
            ov.until.as_millis(),
            ov.actor,
            ov.reason
        );
    }
    let _ = writeln!(out, "probes:");
    for p in &engine.probes {
        let _ = writeln!(
            out,
            "  {:<24} {:<8} {}",
            p.id,
            p.health.to_string(),
            p.last_detail.as_deref().unwrap_or("-")
        );
    }
    let _ = writeln!(out, "rules:");
    for r in &engine.rules {
        let _ = writeln!(out, "  {:<24} {}", r.name, r.state.as_str());
    }
    if !engine.alerts.is_empty() {
        let _ = writeln!(out, "alerts:");
        for a in &engine.alerts {
            let labels = serde_json::to_string(&a.labels).unwrap_or_default();
            let _ = writeln!(out, "  {} {labels}", a.key);
        }
    }
    out
}

/// The whole status document, pretty-printed (`status --json`).
pub fn status_json(doc: &serde_json::Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(doc).unwrap_or_default()
    )
}

/// `override on|off`.
pub fn override_set(ov: &OverrideResponse) -> String {
    let profile = ov
        .profile
        .as_ref()
        .map(|p| format!("with profile {p} "))
        .unwrap_or_default();
    format!(
        "override set: fallback {} {profile}until {} (reason: {})\n",
        ov.state.as_str(),
        ov.until,
        ov.reason
    )
}

/// `override clear`.
pub fn cleared(c: Cleared) -> &'static str {
    if c.cleared {
        "override cleared; the agent is back to automatic\n"
    } else {
        "no override was in force; the agent is automatic\n"
    }
}

/// `override release-flap`.
pub fn released(r: Released) -> &'static str {
    if r.released {
        "flap latch released; the rules decide again\n"
    } else {
        "the fallback was not latched\n"
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::domain::{AlertKey, ProbeOutcome, Timestamp};
    use crate::engine::{Engine, Event, Override};
    use crate::server::control::StatusDoc;
    use crate::server::wire::OverrideState;
    use crate::talkdesk::actuator::{ActuatorStatus, LastError};

    const CONFIG: &str = r#"
[profiles.backup]
default = "+14155550100"

[[probes]]
id = "trunk-a"
type = "sip"
target = "sip:a.example.net"
rise = 1
fall = 1

[[rules]]
name = "trunk-down"
profile = "backup"
priority = 10
for = "0s"
clear_for = "0s"
min_active = "0s"
when = { down = "trunk-a" }

[[rules]]
name = "voice-alert"
profile = "backup"
priority = 5
for = "0s"
clear_for = "0s"
min_active = "0s"
when = { alert = ['alertname="VoiceDown"'] }
"#;

    /// A status document built the way the daemon builds it, from a real
    /// engine (a failing probe, a firing alert, an override) and a real
    /// actuator status, then sent through JSON as the agent sends it.
    fn report() -> (StatusReport, Engine, Timestamp) {
        let spec = crate::ruletest::engine_spec_from_toml(CONFIG, "test").unwrap();
        let mut engine = Engine::new(spec);
        let now = Timestamp::from_millis(1_700_000_000_000);
        engine.step(
            Event::ProbeResult {
                probe: "trunk-a".into(),
                outcome: ProbeOutcome::failure("timeout after 2s", None),
            },
            now,
        );
        engine.step(
            Event::AlertFiring {
                key: AlertKey {
                    source: "alertmanager".into(),
                    id: "fp1".into(),
                },
                labels: BTreeMap::from([("alertname".into(), "VoiceDown".into())]),
                summary: None,
            },
            now,
        );
        engine.step(
            Event::OverrideSet(Override {
                desired: Desired::Active {
                    profile: "backup".into(),
                },
                reason: "drill by hand".into(),
                actor: "cli".into(),
                set_at: now,
                until: now.add(Duration::from_secs(600)),
            }),
            now,
        );
        let act = ActuatorStatus {
            attempts: 3,
            last_error: Some(LastError {
                at: now,
                message: "Talkdesk answered 503".into(),
                kind: "server_error".into(),
                status: Some(503),
                retryable: true,
                fields: Vec::new(),
            }),
            ..ActuatorStatus::default()
        };
        let doc = StatusDoc {
            version: env!("CARGO_PKG_VERSION"),
            mode: engine.mode(),
            dry_run: true,
            leader: true,
            leader_id: Some("replica-a".into()),
            epoch: 3,
            instance_id: "replica-a".into(),
            desired: engine.desired().clone(),
            actual: act.actual.clone(),
            converged: act.converged,
            engine: serde_json::to_value(engine.view(now)).unwrap(),
            actuator: serde_json::to_value(&act).unwrap(),
        };
        let text = serde_json::to_string(&doc).unwrap();
        let report = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (report, engine, now)
    }

    /// Every field `status` prints reaches it from a real document: a field
    /// renamed in the engine's or actuator's view fails here.
    #[test]
    fn status_prints_every_field_of_a_real_document() {
        let (report, engine, now) = report();
        let out = status(&report);
        let view = engine.view(now);
        let rule = |name: &str| {
            let r = view.rules.iter().find(|r| r.name == name).unwrap();
            format!("  {:<24} {}\n", r.name, r.state.as_str())
        };
        let reason = &view.reasons[0];
        let until = view.override_.as_ref().unwrap().until.as_millis();
        for line in [
            "mode:      override (dry run)\n".to_string(),
            "replica:   replica-a (leader, epoch 3)\n".to_string(),
            "desired:   ACTIVE (profile backup)\n".to_string(),
            "talkdesk:  fallback unknown, NOT converged\n".to_string(),
            "last error: Talkdesk answered 503 (3)\n".to_string(),
            format!("reasons:\n  - {}: {}\n", reason.source, reason.text),
            format!(
                "override:  {{\"profile\":\"backup\",\"state\":\"active\"}} until {until} by cli: drill by hand\n"
            ),
            "probes:\n  trunk-a                  down     timeout after 2s\n".to_string(),
            rule("trunk-down"),
            rule("voice-alert"),
            "alerts:\n  alertmanager/fp1 {\"alertname\":\"VoiceDown\"}\n".to_string(),
        ] {
            assert!(out.contains(&line), "missing {line:?} in:\n{out}");
        }
    }

    #[test]
    fn a_quiet_agent_prints_no_optional_sections() {
        let (mut report, ..) = report();
        report.engine.reasons.clear();
        report.engine.override_ = None;
        report.engine.alerts.clear();
        report.actuator.last_error = None;
        report.dry_run = false;
        report.desired = Desired::Inactive;
        report.actual.enabled = Some(false);
        report.converged = true;
        let out = status(&report);
        assert!(
            out.starts_with(
                "mode:      override\nreplica:   replica-a (leader, epoch 3)\ndesired:   inactive\ntalkdesk:  fallback off, converged\nprobes:\n"
            ),
            "{out}"
        );
        for absent in ["last error", "reasons:", "override:", "alerts:"] {
            assert!(!out.contains(absent), "{absent} in:\n{out}");
        }
    }

    #[test]
    fn override_answers() {
        let on = OverrideResponse {
            state: OverrideState::Active,
            profile: Some("backup".into()),
            until: "2026-01-01T00:10:00Z".into(),
            reason: "drill".into(),
            actor: "cli".into(),
        };
        assert_eq!(
            override_set(&on),
            "override set: fallback active with profile backup until 2026-01-01T00:10:00Z (reason: drill)\n"
        );
        let off = OverrideResponse {
            state: OverrideState::Inactive,
            profile: None,
            ..on
        };
        assert_eq!(
            override_set(&off),
            "override set: fallback inactive until 2026-01-01T00:10:00Z (reason: drill)\n"
        );
        assert!(cleared(Cleared { cleared: true }).contains("back to automatic"));
        assert!(cleared(Cleared { cleared: false }).contains("no override was in force"));
        assert!(released(Released { released: true }).contains("flap latch released"));
        assert!(released(Released { released: false }).contains("not latched"));
    }
}
