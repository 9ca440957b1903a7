//! What the CLI prints for each answer of the agent. Every function returns
//! whole lines (each ending in `\n`), so `main` only prints them.

use std::fmt::Write as _;

use crate::domain::{Desired, Timestamp};
use crate::server::wire::{Cleared, OverrideResponse, Released, StatusReport, TalkdeskOutcome};

/// A readable rendering of `/v1/status` for terminals: no JSON, no epoch
/// numbers (times are RFC 3339 with "in 12m" / "3m ago" against the agent's
/// clock), no Rust `Debug` forms.
pub fn status(doc: &StatusReport) -> String {
    let mut out = String::new();
    let now = doc.engine.now;
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
    let _ = writeln!(out, "desired:   {}", desired_text(&doc.desired));
    let _ = writeln!(
        out,
        "talkdesk:  fallback {}{converged}",
        on_off(doc.actual.enabled)
    );
    // An error is news only while Talkdesk does not match: once converged it
    // is history (in the audit log), not a current problem.
    if let (Some(err), false) = (&doc.actuator.last_error, doc.converged) {
        let _ = writeln!(
            out,
            "last error: {} (attempt {}, still retrying)",
            err.message, doc.actuator.attempts
        );
    }
    let engine = &doc.engine;
    if !engine.reasons.is_empty() {
        let _ = writeln!(out, "reasons:");
        for r in &engine.reasons {
            let _ = writeln!(out, "  - {}", r.line());
        }
    }
    if let Some(ov) = &engine.override_ {
        let _ = writeln!(
            out,
            "override:  {} until {}, set by {}: {}",
            override_desired(&ov.desired),
            at(ov.until, now),
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
        let _ = writeln!(out, "  {:<24} {}", r.name, rule_state(r, now));
        for line in &r.progress {
            let _ = writeln!(out, "  {:<24}   {line}", "");
        }
    }
    if !engine.alerts.is_empty() {
        let _ = writeln!(out, "alerts:");
        for a in &engine.alerts {
            let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let summary = a
                .summary
                .as_deref()
                .map(|s| format!(" \"{s}\""))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} from {}{summary} ({}); since {}, expires {}",
                a.key.id,
                a.key.source,
                labels.join(", "),
                at(a.first_seen, now),
                at(a.expires, now)
            );
        }
    }
    out
}

fn desired_text(d: &Desired) -> String {
    match d {
        Desired::Active { profile } => format!("ACTIVE (profile {profile})"),
        Desired::Inactive => "inactive".to_string(),
    }
}

fn override_desired(d: &Desired) -> String {
    match d {
        Desired::Active { profile } => format!("fallback on with profile {profile}"),
        Desired::Inactive => "fallback off".to_string(),
    }
}

fn on_off(enabled: Option<bool>) -> &'static str {
    match enabled {
        Some(true) => "on",
        Some(false) => "off",
        None => "unknown",
    }
}

/// A rule's phase, with what happens next and when.
fn rule_state(r: &crate::server::wire::RuleLine, now: Timestamp) -> String {
    let phase = r.state.as_str();
    match (r.fires_at, r.clears_at) {
        (Some(t), _) => format!("{phase}: fires {} if the condition holds", at(t, now)),
        (_, Some(t)) => format!("{phase}: fallback off {} if it stays clear", at(t, now)),
        _ => phase.to_string(),
    }
}

/// `2026-01-01T00:10:00.000Z (in 12m)`, relative to the agent's `now`.
pub fn at(t: Timestamp, now: Timestamp) -> String {
    let rel = if t == now {
        "now".to_string()
    } else if t > now {
        format!("in {}", span(t.since(now)))
    } else {
        format!("{} ago", span(now.since(t)))
    };
    format!("{} ({rel})", t.to_rfc3339())
}

/// A coarse duration for people: `45s`, `12m`, `3h 5m`, `2d 4h` (also the
/// status page's wording).
pub fn span(d: std::time::Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86400, s % 86400 / 3600),
    }
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
    let what = if ov.receipt.applied {
        "override set"
    } else {
        "override accepted (queued for the engine that decides)"
    };
    format!(
        "{what}: fallback {} {profile}until {} (reason: {})\n",
        ov.state.as_str(),
        ov.until,
        ov.reason
    )
}

/// What Talkdesk did with an override, after `override on|off` waited for
/// it: the line, and whether Talkdesk matches (the command's exit code).
pub fn talkdesk_outcome(t: &TalkdeskOutcome) -> (String, bool) {
    if t.matches {
        return ("Talkdesk now matches\n".to_string(), true);
    }
    let line = if t.dry_run {
        "set; Talkdesk NOT updated: agent.dry_run is on (writes are only logged)\n".to_string()
    } else {
        let error = t.error.as_deref().unwrap_or("no answer from Talkdesk yet");
        let next = if t.retrying {
            "retrying (see `continuity-agent status`)"
        } else {
            "NOT retrying until the decision or the configuration changes"
        };
        format!("set; Talkdesk NOT yet updated: {error}, {next}\n")
    };
    (line, false)
}

/// `override clear`.
pub fn cleared(c: Cleared) -> &'static str {
    if !c.receipt.applied {
        "clear accepted (queued for the engine that decides)\n"
    } else if c.cleared {
        "override cleared; the agent is back to automatic\n"
    } else {
        "no override was in force; the agent is automatic\n"
    }
}

/// `override release-flap`.
pub fn released(r: Released) -> &'static str {
    if !r.receipt.applied {
        "flap release accepted (queued for the engine that decides)\n"
    } else if r.released {
        "flap latch released; the rules decide again\n"
    } else {
        "the fallback was not latched\n"
    }
}

/// `continuity-agent events`: one line per record, oldest first (like a log),
/// `TIME  KIND  MESSAGE`; the structured `data` is left to `--json`.
pub fn events(page: &super::super::wire::EventsPage) -> String {
    use std::fmt::Write;
    if page.events.is_empty() {
        return "no events\n".to_string();
    }
    let mut s = String::new();
    for e in page.events.iter().rev() {
        let _ = writeln!(
            s,
            "{}  {:<11}  {}",
            e.time,
            e.record.kind.as_str(),
            e.record.message
        );
    }
    if page.next_before.is_some() {
        let _ = writeln!(s, "(older events exist: widen --since or raise --limit)");
    }
    s
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::domain::{AlertKey, ProbeOutcome, Timestamp};
    use crate::engine::{Engine, Event, Override};
    use crate::server::control::StatusDoc;
    use crate::server::wire::{OverrideState, Receipt};
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

[[probes]]
id = "trunk-b"
type = "sip"
target = "sip:b.example.net"
rise = 1
fall = 1

[[rules]]
name = "both-trunks"
profile = "backup"
when = { down = "trunk-*", at_least = 2 }

[[rules]]
name = "slow-trunk"
profile = "backup"
for = "30s"
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
            account: "default".into(),
            mode: engine.mode(),
            dry_run: true,
            leader: true,
            leader_id: Some("replica-a".into()),
            epoch: 3,
            instance_id: "replica-a".into(),
            desired: engine.desired().clone(),
            actual: act.actual.clone(),
            converged: act.converged,
            engine: engine.view(now),
            actuator: act,
        };
        let text = serde_json::to_string(&doc).unwrap();
        let report = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        (report, engine, now)
    }

    /// Every field `status` prints reaches it from a real document: a field
    /// renamed in the engine's or actuator's view fails here. Times are
    /// RFC 3339 with a relative part, never epoch numbers or JSON.
    #[test]
    fn status_prints_every_field_of_a_real_document() {
        let (report, engine, now) = report();
        let out = status(&report);
        let view = engine.view(now);
        let rfc = |t: Timestamp| t.to_rfc3339();
        let until = view.override_.as_ref().unwrap().until;
        for line in [
            "mode:      override (dry run)\n".to_string(),
            "replica:   replica-a (leader, epoch 3)\n".to_string(),
            "desired:   ACTIVE (profile backup)\n".to_string(),
            "talkdesk:  fallback unknown, NOT converged\n".to_string(),
            "last error: Talkdesk answered 503 (attempt 3, still retrying)\n".to_string(),
            "reasons:\n  - ".to_string(),
            format!(
                "override:  fallback on with profile backup until {} (in 10m), set by cli: drill by hand\n",
                rfc(until)
            ),
            "probes:\n  trunk-a                  down     timeout after 2s\n".to_string(),
            format!("  {:<24} firing\n", "trunk-down"),
            format!(
                "  {:<24} pending: fires {} (in 30s) if the condition holds\n",
                "slow-trunk",
                rfc(now.add(Duration::from_secs(30)))
            ),
            format!(
                "  {:<24} inactive\n  {:<24}   1 of 2 probes matching \"trunk-*\" down; needs 2\n",
                "both-trunks", ""
            ),
            format!(
                "alerts:\n  fp1 from alertmanager (alertname=VoiceDown); since {} (now), expires {} (in 15m)\n",
                rfc(now),
                rfc(view.alerts[0].expires)
            ),
        ] {
            assert!(out.contains(&line), "missing {line:?} in:\n{out}");
        }
        for r in &view.reasons {
            let doubled = format!("{0}: {0}:", r.source);
            assert!(
                !out.contains(&doubled),
                "doubled name {doubled:?} in:\n{out}"
            );
        }
        for debug in ["{\"", "Some(", "None", &now.as_millis().to_string()] {
            assert!(!out.contains(debug), "{debug:?} in:\n{out}");
        }
    }

    #[test]
    fn a_clearing_rule_shows_when_the_fallback_goes_off() {
        let rule = crate::server::wire::RuleLine {
            name: "trunk-down".into(),
            state: crate::engine::RulePhase::Clearing,
            progress: vec![],
            fires_at: None,
            clears_at: Some(Timestamp::from_millis(1_700_000_120_000)),
        };
        assert_eq!(
            rule_state(&rule, Timestamp::from_millis(1_700_000_000_000)),
            "clearing: fallback off 2023-11-14T22:15:20.000Z (in 2m) if it stays clear"
        );
        assert_eq!(
            at(
                Timestamp::from_millis(1_700_000_000_000),
                Timestamp::from_millis(1_700_000_180_000)
            ),
            "2023-11-14T22:13:20.000Z (3m ago)"
        );
    }

    #[test]
    fn an_error_already_repaired_is_not_shown() {
        let (mut report, ..) = report();
        report.converged = true;
        assert!(!status(&report).contains("last error"));
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

    const APPLIED: Receipt = Receipt {
        input_id: 1,
        applied: true,
    };

    #[test]
    fn queued_changes_say_so() {
        let queued = Receipt {
            input_id: 2,
            applied: false,
        };
        assert!(
            cleared(Cleared {
                cleared: false,
                receipt: queued
            })
            .contains("queued")
        );
        assert!(
            released(Released {
                released: false,
                receipt: queued
            })
            .contains("queued")
        );
    }

    #[test]
    fn override_answers() {
        let on = OverrideResponse {
            state: OverrideState::Active,
            profile: Some("backup".into()),
            until: "2026-01-01T00:10:00Z".into(),
            reason: "drill".into(),
            actor: "cli".into(),
            receipt: APPLIED,
            talkdesk: None,
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
        let outcome = TalkdeskOutcome {
            matches: true,
            actual: crate::domain::Actual::default(),
            attempts: 0,
            error: None,
            retrying: false,
            dry_run: false,
        };
        assert_eq!(
            talkdesk_outcome(&outcome),
            ("Talkdesk now matches\n".to_string(), true)
        );
        let failing = TalkdeskOutcome {
            matches: false,
            attempts: 2,
            error: Some("Talkdesk answered 503".into()),
            retrying: true,
            ..outcome
        };
        let (line, ok) = talkdesk_outcome(&failing);
        assert!(!ok);
        assert!(
            line.starts_with("set; Talkdesk NOT yet updated: Talkdesk answered 503, retrying"),
            "{line}"
        );
        assert!(
            cleared(Cleared {
                cleared: true,
                receipt: APPLIED
            })
            .contains("back to automatic")
        );
        assert!(
            cleared(Cleared {
                cleared: false,
                receipt: APPLIED
            })
            .contains("no override was in force")
        );
        assert!(
            released(Released {
                released: true,
                receipt: APPLIED
            })
            .contains("flap latch released")
        );
        assert!(
            released(Released {
                released: false,
                receipt: APPLIED
            })
            .contains("not latched")
        );
    }
}
