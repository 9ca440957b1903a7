//! Snapshot and restore: JSON round trip, timers survive, checksum keying,
//! dropped probes, and no extra on/off on restart.

use super::*;
use crate::domain::Desired::Inactive;
use crate::engine::Snapshot;
use crate::telemetry::AuditKind;

fn json_roundtrip(s: &Snapshot) -> Snapshot {
    let text = serde_json::to_string(s).unwrap_or_default();
    match serde_json::from_str(&text) {
        Ok(s) => s,
        Err(err) => panic!("snapshot does not round-trip: {err}\n{text}"),
    }
}

#[test]
fn engine_snapshot_round_trips_through_json() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0));
    e.step(alert("1", "TalkdeskVoiceDown"), t(3));
    e.step(override_set(active("backup"), 4, 600), t(4));
    e.step(
        Event::MaintenanceStarted {
            name: "w".into(),
            until: t(1000),
        },
        t(5),
    );
    let s = e.snapshot();
    assert_eq!(json_roundtrip(&s), s);
}

#[test]
fn engine_restore_keeps_pending_timer_and_emits_no_set_desired() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0)); // pending since 2, fires at 12
    let (mut r, cmds) = Engine::restore(spec(BASE), json_roundtrip(&e.snapshot()), t(5));
    assert!(set_desired(&cmds.into_iter().map(|c| (t(5), c)).collect::<Vec<_>>()).is_empty());
    // Held until fresh results confirm the restored "down" states...
    assert_eq!(
        r.next_deadline(),
        None,
        "a held rule waits for results, not time"
    );
    assert!(
        r.step(Event::Tick, t(12))
            .iter()
            .all(|c| !matches!(c, Command::SetDesired { .. }))
    );
    // ...which they do: the `for` timer survived the restart (since 2, due at 12).
    drive(
        &mut r,
        vec![
            (13, fail("trunk-a", "timeout")),
            (13, fail("trunk-b", "503")),
        ],
    );
    assert_eq!(
        r.desired(),
        &active("backup"),
        "fires at once: `for` elapsed before the restart"
    );
}

/// The snapshot may be hours old. A rule that was only pending must not fire
/// on the restored (stale) probe states: here the trunks recovered while the
/// agent was down, and the fallback is never switched on.
#[test]
fn engine_stale_evidence_after_a_long_downtime_never_activates() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0)); // pending since 2
    let (mut r, cmds) = Engine::restore(spec(BASE), json_roundtrip(&e.snapshot()), t(7200));
    assert!(
        !cmds.iter().any(|c| matches!(c, Command::SetDesired { .. })),
        "{cmds:#?}"
    );
    assert!(
        r.step(Event::Tick, t(7201))
            .iter()
            .all(|c| !matches!(c, Command::SetDesired { .. }))
    );
    // One success while "down" confirms nothing (rise = 2): still held.
    let c = drive(&mut r, vec![(7202, ok("trunk-a")), (7202, ok("trunk-b"))]);
    assert!(set_desired(&c).is_empty(), "{c:#?}");
    // The second success brings them up: the condition is false, the rule drops.
    let c = drive(
        &mut r,
        vec![
            (7203, ok("trunk-a")),
            (7203, ok("trunk-b")),
            (9000, Event::Tick),
        ],
    );
    assert!(set_desired(&c).is_empty(), "{c:#?}");
    assert_eq!(r.desired(), &Inactive);
    assert_eq!(r.view(t(9000)).rules[0].state.as_str(), "inactive");
}

/// A rule already holding the fallback keeps it on across a restart even
/// before fresh results arrive (no extra off), and fresh failures keep it.
#[test]
fn engine_firing_rule_keeps_holding_on_restored_states() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0));
    e.step(Event::Tick, t(12));
    assert_eq!(e.desired(), &active("backup"));
    let (mut r, _) = Engine::restore(spec(BASE), json_roundtrip(&e.snapshot()), t(7200));
    let c = drive(
        &mut r,
        vec![
            (7300, Event::Tick),
            (7301, fail("trunk-a", "timeout")),
            (9000, Event::Tick),
        ],
    );
    assert!(set_desired(&c).is_empty(), "{c:#?}");
    assert_eq!(r.desired(), &active("backup"));
}

#[test]
fn engine_restart_while_active_causes_no_extra_off_on() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0));
    e.step(Event::Tick, t(12));
    assert_eq!(e.desired(), &active("backup"));
    let (r, cmds) = Engine::restore(spec(BASE), json_roundtrip(&e.snapshot()), t(30));
    assert!(
        !cmds.iter().any(|c| matches!(c, Command::SetDesired { .. })),
        "{cmds:#?}"
    );
    assert_eq!(r.desired(), &active("backup"));
    // Cadences for every probe come back so the daemon can schedule them.
    assert_eq!(
        cmds.iter()
            .filter(|c| matches!(c, Command::ProbeCadence { .. }))
            .count(),
        3
    );
}

#[test]
fn engine_restore_applies_expiries_that_fell_due_while_down() {
    let mut e = engine();
    e.step(override_set(active("backup"), 0, 60), t(0));
    let (r, cmds) = Engine::restore(spec(BASE), e.snapshot(), t(120));
    assert!(cmds.iter().any(|c| matches!(
        c,
        Command::SetDesired {
            desired: Inactive,
            cause: Cause::OverrideExpired,
            ..
        }
    )));
    assert_eq!(r.desired(), &Inactive);
}

#[test]
fn engine_restore_resets_changed_rules_and_drops_unknown_probes() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0));
    e.step(fail("status", "major_outage"), t(3));
    // New config: trunks-down edited (for 20s), status probe removed with its rule.
    let edited = BASE.replace("for = \"10s\"", "for = \"20s\"").replace(
        "when = { all = [ { down = \"status\" }, { alert = ['alertname=\"VendorDegraded\"'] } ] }",
        "when = { alert = ['alertname=\"VendorDegraded\"'] }",
    );
    let edited = edited.replace(
        "[[probes]]\nid = \"status\"\ntype = \"statuspage\"\nurl = \"https://status.example.net\"\nrise = 1\nfall = 1\n",
        "",
    );
    let (r, cmds) = Engine::restore(spec(&edited), e.snapshot(), t(5));
    let v = r.view(t(5));
    assert_eq!(v.probes.len(), 2);
    assert_eq!(
        v.probes[0].health.to_string(),
        "down",
        "unchanged probe keeps its state"
    );
    // trunks-down changed: its pending state is not inherited. Time passed
    // since the snapshot, so it waits for fresh results before pending again.
    assert_eq!(v.rules[0].state.as_str(), "inactive");
    let mut r = r;
    drive(
        &mut r,
        vec![(6, fail("trunk-a", "timeout")), (6, fail("trunk-b", "503"))],
    );
    let v = r.view(t(6));
    assert_eq!(
        v.rules[0].state.as_str(),
        "pending",
        "pends from the fresh evidence"
    );
    assert_eq!(v.rules[0].since, Some(t(6)));
    let audit = cmds
        .iter()
        .find_map(|c| match c {
            Command::Audit {
                kind: AuditKind::Restore,
                message,
            } => Some(message.clone()),
            _ => None,
        })
        .unwrap_or_default();
    assert!(audit.contains("rule trunks-down changed"), "{audit}");
    assert!(
        audit.contains("1 probe(s) no longer configured dropped"),
        "{audit}"
    );
}

#[test]
fn engine_restore_finishes_a_clearing_that_elapsed_while_down_once_recovery_is_confirmed() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0));
    e.step(Event::Tick, t(12)); // on since 12
    drive(&mut e, trunks_ok(20)); // clearing since 21; ends at max(81, 312)
    let (mut r, cmds) = Engine::restore(spec(BASE), e.snapshot(), t(1000));
    // The restored "up" states are old: nothing is switched off on them alone.
    assert!(
        !cmds.iter().any(|c| matches!(c, Command::SetDesired { .. })),
        "{cmds:#?}"
    );
    assert_eq!(r.desired(), &active("backup"));
    // Fresh successes confirm the recovery: the elapsed clearing completes.
    let c = drive(&mut r, vec![(1001, ok("trunk-a")), (1001, ok("trunk-b"))]);
    assert_eq!(set_desired(&c), vec![(t(1001), Inactive, Cause::Rule)]);
}

#[test]
fn engine_restore_reads_a_minimal_older_snapshot() {
    let json = r#"{"version": 1, "desired": {"state": "active", "profile": "backup"}}"#;
    let snap: Snapshot = match serde_json::from_str(json) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    // No rule holds it and nothing else persisted: the engine decides afresh.
    let (r, cmds) = Engine::restore(spec(BASE), snap, t(0));
    assert_eq!(r.desired(), &Inactive);
    assert!(cmds.iter().any(|c| matches!(
        c,
        Command::SetDesired {
            cause: Cause::Restore,
            ..
        }
    )));
}

#[test]
fn engine_restore_edited_rule_that_holds_the_fallback_causes_no_off() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0));
    e.step(Event::Tick, t(12)); // firing, on since 12
    let edited = BASE.replace("clear_for = \"60s\"", "clear_for = \"90s\"");
    let (mut r, cmds) = Engine::restore(spec(&edited), e.snapshot(), t(30));
    assert!(
        !cmds.iter().any(|c| matches!(c, Command::SetDesired { .. })),
        "{cmds:#?}"
    );
    // It restarts clearing (holding the fallback on) and, held on stale
    // states, goes back to firing once fresh failures confirm the outage.
    assert_eq!(r.view(t(30)).rules[0].state.as_str(), "clearing");
    drive(
        &mut r,
        vec![
            (31, fail("trunk-a", "timeout")),
            (31, fail("trunk-b", "503")),
        ],
    );
    assert_eq!(
        r.view(t(31)).rules[0].state.as_str(),
        "firing",
        "condition still true"
    );
    // Recovery then follows the new clear_for (90s) and min_active (from 12s).
    drive(&mut r, trunks_ok(40)); // clearing since 41
    assert_eq!(r.next_deadline(), Some(t(312)));
    let (r2, cmds) = Engine::restore(
        spec(&edited.replace("clear_for = \"90s\"", "clear_for = \"100s\"")),
        r.snapshot(),
        t(50),
    );
    assert!(
        !cmds.iter().any(|c| matches!(c, Command::SetDesired { .. })),
        "{cmds:#?}"
    );
    let v = r2.view(t(50));
    assert_eq!(v.rules[0].state.as_str(), "clearing");
    assert_eq!(
        v.rules[0].since,
        Some(t(50)),
        "clearing restarts under the new timers"
    );
}

/// A clearing rule whose timers ran out while the agent was down does not
/// switch the fallback off on the restored "up" states: the outage may have
/// come back meanwhile. Fresh failures confirm it did: the rule fires again
/// and the fallback never went off (no extra off/on).
#[test]
fn engine_clearing_rule_is_held_until_fresh_results_after_a_restart() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0));
    e.step(Event::Tick, t(12)); // firing, active since 12
    drive(&mut e, trunks_ok(400)); // up at 401: clearing (clear_for 60s, min_active 300s)
    assert_eq!(e.view(t(402)).rules[0].state.as_str(), "clearing");
    let (mut r, cmds) = Engine::restore(spec(BASE), json_roundtrip(&e.snapshot()), t(7200));
    assert!(
        !cmds.iter().any(|c| matches!(c, Command::SetDesired { .. })),
        "{cmds:#?}"
    );
    assert_eq!(r.desired(), &active("backup"));
    assert_eq!(r.next_deadline(), None, "held: waits for results, not time");
    // The trunks failed again while the agent was down: fresh failures.
    let c = drive(&mut r, trunks_fail(7201));
    assert!(set_desired(&c).is_empty(), "no extra off/on: {c:#?}");
    assert_eq!(r.view(t(7204)).rules[0].state.as_str(), "firing");
    assert_eq!(r.desired(), &active("backup"));
}

/// ...and when fresh results confirm the recovery, clearing completes at once
/// (its timers ran out long ago).
#[test]
fn engine_held_clearing_rule_completes_once_recovery_is_confirmed() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0));
    e.step(Event::Tick, t(12));
    drive(&mut e, trunks_ok(400));
    let (mut r, _) = Engine::restore(spec(BASE), json_roundtrip(&e.snapshot()), t(7200));
    let c = drive(&mut r, vec![(7201, ok("trunk-a")), (7201, ok("trunk-b"))]);
    assert_eq!(set_desired(&c), vec![(t(7201), Inactive, Cause::Rule)]);
}

/// A drill removed from the configuration does not come back from the
/// snapshot after a restart and keep moving calls.
#[test]
fn engine_restore_drops_a_drill_no_longer_configured() {
    let mut e = engine();
    e.step(
        Event::DrillStarted {
            name: "monthly".into(),
            profile: "message".into(),
            until: t(300),
        },
        t(0),
    );
    assert_eq!(e.desired(), &active("message"));
    let without = BASE.replace("[[drills]]\nname = \"monthly\"\ncron = \"0 0 3 1 * *\"\nprofile = \"message\"\nduration = \"5m\"\n", "");
    assert_ne!(without, BASE, "the drill block was removed");
    let (r, cmds) = Engine::restore(spec(&without), json_roundtrip(&e.snapshot()), t(10));
    assert_eq!(r.desired(), &Inactive);
    assert!(cmds.iter().any(|c| matches!(c, Command::Audit { message, .. } if message.contains("drill monthly no longer configured"))), "{cmds:#?}");
}

/// Restored probe states are evidence from before the restart: not fresh
/// until a new result confirms them. A restore at the snapshot's own instant
/// (no time passed) keeps the evidence fresh.
#[test]
fn engine_restored_probe_states_are_not_fresh_evidence_until_confirmed() {
    let mut e = engine();
    drive(
        &mut e,
        vec![
            (0, ok("trunk-a")),
            (0, ok("trunk-b")),
            (0, ok("status")),
            (1, ok("trunk-a")),
            (1, ok("trunk-b")),
        ],
    );
    assert!(e.has_fresh_evidence());
    let snap = e.snapshot();

    let (same, _) = Engine::restore(spec(BASE), snap.clone(), t(1));
    assert!(same.has_fresh_evidence(), "no time passed");

    let (mut later, _) = Engine::restore(spec(BASE), snap, t(3600));
    assert!(
        !later.has_fresh_evidence(),
        "hours-old states are not fresh"
    );
    later.step(ok("trunk-a"), t(3601));
    later.step(ok("trunk-b"), t(3601));
    assert!(!later.has_fresh_evidence(), "status not confirmed yet");
    later.step(ok("status"), t(3602));
    assert!(later.has_fresh_evidence());
}

/// The decisions since Talkdesk was last observed (`unseen`): a write of
/// any of them may land after a `kill -9`, so a restart must know them all,
/// not only the last (the fallback otherwise stayed on after a superseded
/// "on" write landed: tests/crash_cycles.rs).
#[test]
fn engine_remembers_every_decision_since_talkdesk_was_last_seen() {
    let mut e = engine();
    let off = crate::domain::Actual {
        enabled: Some(false),
        settings: None,
    };
    e.step(Event::ActualObserved(off.clone()), t(1));
    assert_eq!(e.unseen(), &[Inactive]);
    e.step(override_set(active("backup"), 2, 600), t(2));
    e.step(
        Event::OverrideCleared {
            actor: "oncall".into(),
            reason: None,
        },
        t(3),
    );
    e.step(override_set(active("backup"), 4, 600), t(4));
    assert_eq!(
        e.unseen(),
        &[Inactive, active("backup")],
        "each decision once, in order"
    );
    // Kept across a restart...
    let (r, _) = Engine::restore(spec(BASE), json_roundtrip(&e.snapshot()), t(5));
    assert_eq!(r.unseen(), e.unseen());
    // ...and forgotten once Talkdesk is seen again.
    e.step(Event::ActualObserved(off), t(6));
    assert_eq!(e.unseen(), &[active("backup")]);

    // A snapshot written before `unseen` existed: its decision stands for it.
    let mut old = serde_json::to_value(e.snapshot()).unwrap();
    old.as_object_mut().unwrap().remove("unseen");
    let (r, _) = Engine::restore(spec(BASE), serde_json::from_value(old).unwrap(), t(7));
    assert_eq!(r.unseen(), &[active("backup")]);
}
