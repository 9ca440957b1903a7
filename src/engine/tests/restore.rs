//! Snapshot and restore: JSON round trip, timers survive, checksum keying,
//! dropped probes, and no extra on/off on restart.

use super::*;
use crate::domain::Desired::Inactive;
use crate::engine::Snapshot;

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
    assert_eq!(
        r.next_deadline(),
        Some(t(12)),
        "pending `for` survives the restart"
    );
    let c = r.step(Event::Tick, t(12));
    assert!(c.iter().any(|c| matches!(c, Command::SetDesired { .. })));
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
    // trunks-down changed: its pending state is not inherited; it is
    // re-evaluated from the restored probe states and pends from now.
    assert_eq!(v.rules[0].state.as_str(), "pending");
    assert_eq!(v.rules[0].since, Some(t(5)));
    let audit = cmds
        .iter()
        .find_map(|c| match c {
            Command::Audit { kind, message } if kind == "restore" => Some(message.clone()),
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
fn engine_restore_finishes_a_clearing_that_elapsed_while_down() {
    let mut e = engine();
    drive(&mut e, trunks_fail(0));
    e.step(Event::Tick, t(12)); // on since 12
    drive(&mut e, trunks_ok(20)); // clearing since 21; ends at max(81, 312)
    let (r, cmds) = Engine::restore(spec(BASE), e.snapshot(), t(1000));
    assert!(
        cmds.iter().any(|c| matches!(
            c,
            Command::SetDesired {
                desired: Inactive,
                cause: Cause::Restore,
                ..
            }
        )),
        "{cmds:#?}"
    );
    assert_eq!(r.desired(), &Inactive);
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
    assert_eq!(
        r.view(t(30)).rules[0].state.as_str(),
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
