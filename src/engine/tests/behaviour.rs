//! Engine behaviour end to end: rule timing through `step`, explanations,
//! alerts (dedupe, TTL), cadence commands, deadlines, blind thaw, rejections.

use super::*;
use crate::domain::{Desired::Inactive, ProbeHealth};
use crate::engine::RulePhase;

#[test]
fn engine_trunks_down_fire_after_for_and_explain_why() {
    let mut e = engine();
    let cmds = drive(&mut e, trunks_fail(0));
    assert_eq!(e.desired(), &Inactive, "pending, not yet firing");
    assert_eq!(
        e.next_deadline(),
        Some(t(12)),
        "for = 10s from the step that made it true"
    );
    assert!(cmds.iter().any(|(_, c)| matches!(c, Command::RuleTransition { rule, from: RulePhase::Inactive, to: RulePhase::Pending } if rule == "trunks-down")));
    let cmds = e.step(Event::Tick, t(12));
    let Some(Command::SetDesired {
        desired,
        cause,
        reasons,
    }) = cmds
        .iter()
        .find(|c| matches!(c, Command::SetDesired { .. }))
    else {
        panic!("no SetDesired: {cmds:#?}");
    };
    assert_eq!((desired, *cause), (&active("backup"), Cause::Rule));
    assert_eq!(
        reasons[0].text,
        "trunks-down: 2 of 2 probes matching \"trunk-*\" down (trunk-a: timeout after 2s; trunk-b: 503 Service Unavailable)"
    );
    assert_eq!(reasons[0].source, "trunks-down");
}

#[test]
fn engine_min_active_holds_the_fallback_even_after_clear_for() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0));
    e.step(Event::Tick, t(12)); // fires, fallback on since 12
    drive(&mut e, trunks_ok(20)); // up at 21: clearing
    assert_eq!(e.view(t(21)).rules[0].state.as_str(), "clearing");
    // clear_for (60s) passes at 81, but min_active (300s from 12) holds until 312.
    assert_eq!(e.next_deadline(), Some(t(312)));
    let c = drive(&mut e, vec![(311, Event::Tick)]);
    assert!(set_desired(&c).is_empty());
    assert_eq!(e.desired(), &active("backup"));
    let c = drive(&mut e, vec![(400, Event::Tick)]);
    assert_eq!(set_desired(&c), vec![(t(312), Inactive, Cause::Rule)]);
    let reasons = e.view(t(400)).change_reasons;
    assert!(
        reasons
            .iter()
            .any(|r| r.text.contains("trunks-down: cleared")),
        "{reasons:?}"
    );
}

#[test]
fn engine_clearing_returns_to_firing_when_true_again() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0));
    e.step(Event::Tick, t(12));
    drive(&mut e, trunks_ok(20));
    let c = drive(&mut e, trunks_fail(40));
    assert!(c.iter().any(|(_, c)| matches!(
        c,
        Command::RuleTransition {
            from: RulePhase::Clearing,
            to: RulePhase::Firing,
            ..
        }
    )));
    assert!(set_desired(&c).is_empty(), "no off/on while clearing");
}

#[test]
fn engine_unknown_probe_state_is_not_down() {
    let mut e = engine();
    // Two failures each: still unknown (fall = 3). The rule must not even be pending.
    let c = drive(
        &mut e,
        vec![
            (0, fail("trunk-a", "timeout")),
            (0, fail("trunk-b", "timeout")),
            (1, fail("trunk-a", "timeout")),
            (1, fail("trunk-b", "timeout")),
            (100, Event::Tick),
        ],
    );
    assert!(
        !c.iter()
            .any(|(_, c)| matches!(c, Command::RuleTransition { .. })),
        "{c:#?}"
    );
    assert_eq!(e.view(t(100)).probes[0].health, ProbeHealth::Unknown);
}

#[test]
fn engine_cadence_is_fast_while_transitioning_and_slow_once_settled() {
    let mut e = engine();
    assert!(
        e.probe_cadences()
            .iter()
            .all(|c| matches!(c, Command::ProbeCadence { fast: true, .. }))
    );
    let mut cadence = |ev, at| {
        e.step(ev, t(at))
            .into_iter()
            .filter_map(|c| match c {
                Command::ProbeCadence { fast, .. } => Some(fast),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(
        cadence(ok("trunk-a"), 0),
        Vec::<bool>::new(),
        "still unknown: stays fast"
    );
    assert_eq!(cadence(ok("trunk-a"), 1), vec![false], "up: settled");
    assert_eq!(
        cadence(fail("trunk-a", "timeout"), 2),
        vec![true],
        "failure while up"
    );
    assert_eq!(cadence(ok("trunk-a"), 3), vec![false], "refuted");
}

#[test]
fn engine_duplicate_alerts_change_nothing_and_alerts_expire_after_ttl() {
    let mut e = engine();
    let first = e.step(alert("1", "TalkdeskVoiceDown"), t(0));
    assert!(
        first
            .iter()
            .any(|c| matches!(c, Command::SetDesired { .. }))
    );
    let dup = e.step(alert("1", "TalkdeskVoiceDown"), t(60));
    assert!(dup.is_empty(), "duplicate delivery: {dup:#?}");
    // The refresh moved the expiry to 60s + 15m.
    assert_eq!(e.next_deadline(), Some(t(60 + 900)));
    let c = drive(&mut e, vec![(2000, Event::Tick)]);
    assert_eq!(set_desired(&c), vec![(t(960), Inactive, Cause::Rule)]);
    assert!(
        c.iter().any(
            |(_, c)| matches!(c, Command::Audit { message, .. } if message.contains("expired"))
        )
    );
    // Resolving an unknown alert is a no-op too.
    assert!(e.step(resolved("nope"), t(2001)).is_empty());
}

#[test]
fn engine_alert_reason_names_the_alert_and_labels() {
    let mut e = engine();
    let c = e.step(alert("fp1", "TalkdeskVoiceDown"), t(0));
    let Some(Command::SetDesired { reasons, .. }) =
        c.iter().find(|c| matches!(c, Command::SetDesired { .. }))
    else {
        panic!("{c:#?}");
    };
    assert_eq!(
        reasons[0].text,
        "voice-alert: alert [alertname=\"TalkdeskVoiceDown\"] matched by alertmanager/fp1 {alertname=\"TalkdeskVoiceDown\", severity=\"critical\"}"
    );
}

#[test]
fn engine_override_expiry_emits_override_expired() {
    let mut e = engine();
    e.step(override_set(active("backup"), 0, 60), t(0));
    assert_eq!(e.next_deadline(), Some(t(60)));
    let c = e.step(Event::Tick, t(60));
    let Some(Command::SetDesired {
        desired,
        cause,
        reasons,
    }) = c.iter().find(|c| matches!(c, Command::SetDesired { .. }))
    else {
        panic!("{c:#?}");
    };
    assert_eq!((desired, *cause), (&Inactive, Cause::OverrideExpired));
    assert!(reasons[0].text.contains("expired"), "{reasons:?}");
}

#[test]
fn engine_rejects_invalid_input_without_changing_anything() {
    let mut e = engine();
    let before = e.snapshot();
    let c = e.step(override_set(active("nope"), 0, 60), t(0));
    assert!(matches!(&c[..], [Command::Audit { .. }]), "{c:#?}");
    let c = e.step(override_set(Inactive, -100, 50), t(0));
    assert!(
        matches!(&c[..], [Command::Audit { .. }]),
        "already ended: {c:#?}"
    );
    let c = e.step(fail("no-such-probe", "x"), t(0));
    assert!(matches!(&c[..], [Command::Audit { .. }]), "{c:#?}");
    // Only the clock bookkeeping (time of the last step) moved.
    let after = e.snapshot();
    assert_eq!(after.taken_at, Some(t(0)));
    assert_eq!(
        crate::engine::Snapshot {
            taken_at: None,
            ..after
        },
        before
    );
}

#[test]
fn engine_blind_thaw_restarts_pending_timer() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0)); // pending since 2
    e.step(
        Event::SelfCheck {
            ok: false,
            detail: "canaries unreachable".into(),
        },
        t(5),
    );
    let v = e.view(t(5));
    assert!(v.rules[0].frozen && v.blind.is_some());
    assert_eq!(e.next_deadline(), None, "a frozen rule has no timer");
    let c = drive(&mut e, vec![(100, Event::Tick)]);
    assert!(
        set_desired(&c).is_empty(),
        "blind: the pending rule must not fire"
    );
    e.step(
        Event::SelfCheck {
            ok: true,
            detail: "ok".into(),
        },
        t(200),
    );
    // Time spent blind does not count toward `for`: it restarts at 200.
    assert_eq!(e.next_deadline(), Some(t(210)));
    let c = drive(&mut e, vec![(210, Event::Tick)]);
    assert_eq!(set_desired(&c).len(), 1);
}

#[test]
fn engine_maintenance_drops_pending_probe_rule_and_restarts_after() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0)); // pending since 2
    let c = e.step(
        Event::MaintenanceStarted {
            name: "w".into(),
            until: t(100),
        },
        t(5),
    );
    assert!(c.iter().any(|c| matches!(
        c,
        Command::RuleTransition {
            from: RulePhase::Pending,
            to: RulePhase::Inactive,
            ..
        }
    )));
    // The window ends at 100; trunks are still down: pending again, fires at 110.
    let c = drive(&mut e, vec![(150, Event::Tick)]);
    assert_eq!(
        set_desired(&c),
        vec![(t(110), active("backup"), Cause::Rule)]
    );
}

#[test]
fn engine_view_serializes_for_the_status_api() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0));
    e.step(alert("1", "TalkdeskVoiceDown"), t(3));
    let v = e.view(t(4));
    let json = serde_json::to_value(&v).unwrap_or_default();
    assert_eq!(json["desired"]["state"], "active");
    assert_eq!(json["probes"][0]["health"], "down");
    assert_eq!(json["probes"][0]["consecutive_failures"], 3);
    assert_eq!(json["probes"][0]["last_detail"], "timeout after 2s");
    assert_eq!(json["rules"][0]["state"], "pending");
    assert_eq!(json["rules"][1]["state"], "firing");
    assert_eq!(
        json["alerts"][0]["labels"]["alertname"],
        "TalkdeskVoiceDown"
    );
    assert_eq!(json["flapping"], false);
    assert!(
        json["rules"][0]["explanation"][0]
            .as_str()
            .unwrap_or("")
            .contains("2 of 2 probes")
    );
}

/// Senders that only notify on change (PagerDuty, Opsgenie, Statuspage,
/// Datadog) never refresh a firing alert; their alerts must outlive
/// `alerts.ttl`, or a still-open incident would switch calls back after 15m.
#[test]
fn engine_change_only_sources_keep_alerts_past_the_global_ttl() {
    let src = format!(
        "{BASE}\n[webhooks.alertmanager]\nbearer_token = \"am-token-0123456789\"\n\
         [webhooks.pagerduty]\nhmac_secret = \"pd-secret-0123456789\"\n\
         [webhooks.opsgenie]\nbearer_token = \"og-token-0123456789\"\nttl = \"2h\"\n"
    );
    let s = spec(&src);
    assert_eq!(
        s.alert_ttl("alertmanager"),
        std::time::Duration::from_secs(900),
        "re-sending source: alerts.ttl"
    );
    assert_eq!(
        s.alert_ttl("pagerduty"),
        std::time::Duration::from_secs(24 * 3600),
        "change-only default"
    );
    assert_eq!(
        s.alert_ttl("opsgenie"),
        std::time::Duration::from_secs(2 * 3600),
        "explicit ttl wins"
    );

    let mut e = Engine::new(s);
    let incident = Event::AlertFiring {
        key: AlertKey {
            source: "pagerduty".into(),
            id: "PGR0VU2".into(),
        },
        labels: BTreeMap::from([("alertname".to_string(), "TalkdeskVoiceDown".to_string())]),
        summary: None,
    };
    e.step(incident, t(0));
    assert_eq!(e.desired(), &active("message"));
    // Two hours later, with no news from PagerDuty, the incident still holds.
    let c = drive(&mut e, vec![(7200, Event::Tick)]);
    assert!(set_desired(&c).is_empty(), "{c:#?}");
    assert_eq!(e.desired(), &active("message"));
    // After a day without a word it expires, and says which TTL applied.
    let c = drive(&mut e, vec![(24 * 3600 + 1, Event::Tick)]);
    assert_eq!(set_desired(&c), vec![(t(24 * 3600), Inactive, Cause::Rule)]);
    assert!(c.iter().any(|(_, c)| matches!(c, Command::Audit { message, .. } if message.contains("not refreshed within 1d"))), "{c:#?}");
}

/// Fresh evidence: every probe out of `unknown` and no rule pending. This is
/// what lets the daemon start the actuator after a fresh start.
#[test]
fn engine_has_fresh_evidence_once_every_probe_is_known_and_no_rule_pending() {
    let mut e = engine();
    assert!(!e.has_fresh_evidence(), "a fresh engine knows nothing");
    drive(&mut e, trunks_ok(0));
    assert!(!e.has_fresh_evidence(), "status is still unknown");
    drive(&mut e, vec![(2, fail("status", "major_outage"))]);
    assert!(e.has_fresh_evidence(), "down is evidence too");

    drive(&mut e, trunks_fail(10));
    assert_eq!(e.view(t(12)).rules[0].state, RulePhase::Pending);
    assert!(
        !e.has_fresh_evidence(),
        "a pending rule is a decision in progress"
    );
    drive(&mut e, vec![(22, Event::Tick)]);
    assert_eq!(e.view(t(22)).rules[0].state, RulePhase::Firing);
    assert!(e.has_fresh_evidence());
}

/// `alerts.max_active`: a flood of new fingerprints is dropped beyond the
/// bound (counted per alert, audited once per episode), the alerts already
/// active keep deciding, refreshes of them still work, and room made by a
/// resolve lets a new alert in again.
#[test]
fn engine_active_alerts_are_bounded_and_overflow_is_counted_and_audited_once() {
    let mut e = Engine::new(spec(&BASE.replace(
        "[alerts]\nttl = \"15m\"",
        "[alerts]\nttl = \"15m\"\nmax_active = 3",
    )));
    assert_eq!(e.spec().alerts_max_active, 3);
    let on = e.step(alert("real", "TalkdeskVoiceDown"), t(0));
    assert!(on.iter().any(|c| matches!(c, Command::SetDesired { .. })));
    e.step(alert("noise-1", "Noise"), t(1));
    e.step(alert("noise-2", "Noise"), t(1));
    let mut dropped = 0;
    let mut audits = 0;
    for i in 0..500 {
        for c in e.step(alert(&format!("flood-{i}"), "Noise"), t(2)) {
            match c {
                Command::AlertDropped { .. } => dropped += 1,
                Command::Audit { message, .. } => {
                    assert!(message.contains("max_active"), "{message}");
                    audits += 1;
                }
                other => panic!("a dropped alert changed something: {other:?}"),
            }
        }
    }
    assert_eq!((dropped, audits), (500, 1));
    assert_eq!(e.view(t(2)).alerts.len(), 3);
    // The real alert still holds the fallback on, and refreshing it works.
    assert!(e.desired().is_active());
    assert!(e.step(alert("real", "TalkdeskVoiceDown"), t(3)).is_empty());
    // Room again: the next new alert is taken, and a later overflow is a
    // new episode, audited again.
    e.step(resolved("noise-1"), t(4));
    let taken = e.step(alert("late", "Noise"), t(5));
    assert!(
        !taken
            .iter()
            .any(|c| matches!(c, Command::AlertDropped { .. }))
    );
    let again = e.step(alert("later", "Noise"), t(6));
    assert!(
        again
            .iter()
            .any(|c| matches!(c, Command::AlertDropped { .. }))
    );
    assert!(again.iter().any(|c| matches!(c, Command::Audit { .. })));
}

/// The cheap gauge figures say what the full view says.
#[test]
fn engine_gauges_agree_with_the_view() {
    let mut e = engine();
    e.step(alert("1", "TalkdeskVoiceDown"), t(0));
    e.step(fail("trunk-a", "timeout"), t(1));
    let g = e.gauges();
    let v = e.view(t(1));
    let probes: Vec<_> = v
        .probes
        .iter()
        .map(|p| (p.id.as_str(), p.kind, p.health))
        .collect();
    let rules: Vec<_> = v.rules.iter().map(|r| (r.name.as_str(), r.state)).collect();
    assert_eq!(e.probe_gauges().collect::<Vec<_>>(), probes);
    for (id, kind, health) in &probes {
        assert_eq!(e.probe_gauge(id), Some((*kind, *health)));
    }
    assert_eq!(e.probe_gauge("no-such-probe"), None);
    assert_eq!(g.rules, rules);
    assert_eq!(g.alerts, v.alerts.len());
    assert_eq!(g.alerts, 1);
    assert_eq!(g.override_active, v.override_.is_some());
    assert_eq!((g.flapping, g.blind), (v.flapping, v.blind.is_some()));
    assert!(
        rules
            .iter()
            .any(|(_, phase)| *phase != crate::engine::rule::RulePhase::Inactive)
    );
}

/// An alert's audit line names it; it does not copy whatever labels the
/// sender chose (100 labels of 1,000 characters stay a short line).
#[test]
fn engine_alert_audit_lines_are_bounded_whatever_the_labels() {
    let mut e = engine();
    let labels: BTreeMap<String, String> = (0..100)
        .map(|i| (format!("label{i:03}"), "x".repeat(1000)))
        .chain([("alertname".to_string(), "Noise".to_string())])
        .collect();
    let cmds = e.step(
        Event::AlertFiring {
            key: AlertKey {
                source: "alertmanager".into(),
                id: "huge".into(),
            },
            labels,
            summary: None,
        },
        t(0),
    );
    let line = cmds
        .iter()
        .find_map(|c| match c {
            Command::Audit { message, .. } if message.contains("huge") => Some(message.clone()),
            _ => None,
        })
        .expect("the alert is audited");
    assert!(line.len() < 1_200, "{} bytes: {line}", line.len());
    assert!(line.contains("alertname=\"Noise\""), "{line}");
    assert!(line.contains("… 93 more"), "{line}");
}
