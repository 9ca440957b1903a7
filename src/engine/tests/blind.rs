//! The blind guard without a race: a rule due to fire on probe failures
//! waits for a self-check verdict newer than those failures (at most
//! `self_check_wait`, 4 s), then fires (ok, or no answer) or freezes (blind).

use super::*;
use crate::domain::Desired::Inactive;
use crate::engine::RulePhase;
use crate::telemetry::AuditKind;

/// One trunk (rise 2, fall 3), a rule with `for` as given, canaries configured.
fn trunk_engine(for_: &str) -> Engine {
    Engine::new(spec(&format!(
        r#"
[profiles.backup]
default = "+14155550100"
[[probes]]
id = "trunk"
type = "sip"
target = "sip:trunk.example.net"
rise = 2
fall = 3
[[rules]]
name = "trunk-down"
profile = "backup"
for = "{for_}"
when = {{ down = "trunk" }}
[engine]
self_check = ["udp://192.0.2.53:53"]
"#
    )))
}

/// Up at 1, a verdict at 2 (ok, before anything failed), then failures at
/// 10, 11, 12: down at 12.
fn up_then_down() -> Vec<(i64, Event)> {
    vec![
        (0, ok("trunk")),
        (1, ok("trunk")),
        (2, self_check_ok()),
        (10, fail("trunk", "timeout after 2s")),
        (11, fail("trunk", "timeout after 2s")),
        (12, fail("trunk", "timeout after 2s")),
    ]
}

fn blind_verdict() -> Event {
    Event::SelfCheck {
        ok: false,
        detail: "0/1 canaries answered: udp://192.0.2.53:53 failed: no DNS reply".into(),
    }
}

/// The race: `for = 0` would fire at 12, before the self-check the first
/// failure (10) triggered could say the agent is blind (14). Held, it
/// freezes instead, and the fallback never goes on.
#[test]
fn engine_blind_race_rule_waits_for_the_verdict_and_freezes_when_blind() {
    let mut e = trunk_engine("0s");
    let cmds = drive(&mut e, up_then_down());
    assert!(set_desired(&cmds).is_empty(), "{:?}", set_desired(&cmds));
    let v = e.view(t(12));
    assert_eq!(v.rules[0].state, RulePhase::Pending);
    assert!(
        v.rules[0]
            .explanation
            .iter()
            .any(|l| l.contains("waiting for the self-check")),
        "{:?}",
        v.rules[0].explanation
    );
    assert!(cmds.iter().any(|(_, c)| matches!(
        c,
        Command::SelfCheckNeeded { rule } if rule == "trunk-down"
    )));
    assert_eq!(e.next_deadline(), Some(t(16)), "the wait is bounded");
    let cmds = drive(&mut e, vec![(14, blind_verdict()), (300, Event::Tick)]);
    assert!(set_desired(&cmds).is_empty(), "{:?}", set_desired(&cmds));
    assert_eq!(e.desired(), &Inactive);
    assert!(e.view(t(300)).rules[0].frozen);
}

/// The verdict says the agent can reach its canaries: the rule fires at
/// once, on the verdict.
#[test]
fn engine_blind_race_rule_fires_on_an_ok_verdict() {
    let mut e = trunk_engine("0s");
    drive(&mut e, up_then_down());
    let cmds = drive(&mut e, vec![(13, self_check_ok())]);
    assert_eq!(
        set_desired(&cmds),
        vec![(t(13), active("backup"), Cause::Rule)]
    );
}

/// No verdict within the bound (the canary path hangs without the network
/// being gone, or no check ran): the rule fires on the probe evidence when
/// the wait ends, and the audit log says so.
#[test]
fn engine_blind_race_wait_is_bounded() {
    let mut e = trunk_engine("0s");
    drive(&mut e, up_then_down());
    let cmds = drive(&mut e, vec![(60, Event::Tick)]);
    assert_eq!(
        set_desired(&cmds),
        vec![(t(16), active("backup"), Cause::Rule)]
    );
    assert!(cmds.iter().any(|(_, c)| matches!(
        c,
        Command::Audit { kind: AuditKind::Blind, message }
            if message.contains("no self-check verdict within 4s")
    )));
}

/// A verdict that came in after the first failure already vouches for it:
/// no wait.
#[test]
fn engine_blind_race_no_wait_once_a_newer_verdict_is_in() {
    let mut e = trunk_engine("0s");
    let mut evs = up_then_down();
    evs.insert(4, (10, self_check_ok()));
    let cmds = drive(&mut e, evs);
    assert_eq!(
        set_desired(&cmds),
        vec![(t(12), active("backup"), Cause::Rule)]
    );
    assert!(
        !cmds
            .iter()
            .any(|(_, c)| matches!(c, Command::SelfCheckNeeded { .. }))
    );
}

/// With `for`, the wait starts at the `for` deadline (pending since 12,
/// due at 17) and ends with the verdict (18).
#[test]
fn engine_blind_race_holds_a_pending_rule_at_its_for_deadline() {
    let mut e = trunk_engine("5s");
    let cmds = drive(&mut e, up_then_down());
    assert!(set_desired(&cmds).is_empty());
    assert_eq!(e.next_deadline(), Some(t(17)));
    let cmds = drive(&mut e, vec![(17, Event::Tick)]);
    assert!(set_desired(&cmds).is_empty(), "held at the deadline");
    assert_eq!(e.next_deadline(), Some(t(21)));
    let cmds = drive(&mut e, vec![(18, self_check_ok())]);
    assert_eq!(
        set_desired(&cmds),
        vec![(t(18), active("backup"), Cause::Rule)]
    );
}

/// Without canaries the guard is off: nothing waits.
#[test]
fn engine_blind_race_off_without_canaries() {
    let src = spec_without_canaries();
    let mut e = Engine::new(src);
    let cmds = drive(&mut e, up_then_down());
    assert_eq!(
        set_desired(&cmds),
        vec![(t(12), active("backup"), Cause::Rule)]
    );
}

fn spec_without_canaries() -> EngineSpec {
    let mut s = trunk_engine("0s").spec().clone();
    s.self_check = false;
    s
}
