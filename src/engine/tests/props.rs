//! Property tests over random event sequences (proptest).

use proptest::prelude::*;

use super::*;
use crate::domain::ProbeHealth;

#[derive(Clone, Debug)]
enum Op {
    Ok(usize),
    Fail(usize),
    Alert(usize, usize),
    Resolve(usize),
    OverrideActive(bool, u16),
    OverrideInactive(u16),
    OverrideClear,
    MaintStart(u16),
    MaintEnd,
    DrillStart(u16),
    DrillEnd,
    SelfCheck(bool),
    FlapRelease,
    Tick,
}

const PROBES: [&str; 3] = ["trunk-a", "trunk-b", "status"];
const ALERTNAMES: [&str; 2] = ["TalkdeskVoiceDown", "VendorDegraded"];

fn op(with_override: bool, with_drill: bool) -> BoxedStrategy<Op> {
    let base = prop_oneof![
        6 => (0..3usize).prop_map(Op::Ok),
        6 => (0..3usize).prop_map(Op::Fail),
        2 => (0..3usize, 0..2usize).prop_map(|(i, n)| Op::Alert(i, n)),
        1 => (0..3usize).prop_map(Op::Resolve),
        1 => (1..3600u16).prop_map(Op::MaintStart),
        1 => Just(Op::MaintEnd),
        1 => any::<bool>().prop_map(Op::SelfCheck),
        1 => Just(Op::FlapRelease),
        2 => Just(Op::Tick),
    ];
    let mut s = base.boxed();
    if with_override {
        s = prop_oneof![
            10 => s,
            1 => (any::<bool>(), 1..3600u16).prop_map(|(b, ttl)| Op::OverrideActive(b, ttl)),
            1 => (1..3600u16).prop_map(Op::OverrideInactive),
            1 => Just(Op::OverrideClear),
        ]
        .boxed();
    }
    if with_drill {
        s = prop_oneof![
            10 => s,
            1 => (1..3600u16).prop_map(Op::DrillStart),
            1 => Just(Op::DrillEnd),
        ]
        .boxed();
    }
    s
}

/// Gaps between events in milliseconds (up to 40 s, so timers do expire).
fn ops(with_override: bool, with_drill: bool) -> impl Strategy<Value = Vec<(u32, Op)>> {
    prop::collection::vec((0..40_000u32, op(with_override, with_drill)), 0..120)
}

fn event(op: &Op, now: Timestamp) -> Event {
    let secs = |s: u16| now.add(std::time::Duration::from_secs(u64::from(s)));
    match op {
        Op::Ok(i) => ok(PROBES[*i]),
        Op::Fail(i) => fail(PROBES[*i], "timeout after 2s"),
        Op::Alert(i, n) => alert(&i.to_string(), ALERTNAMES[*n]),
        Op::Resolve(i) => resolved(&i.to_string()),
        Op::OverrideActive(b, ttl) => Event::OverrideSet(Override {
            desired: active(if *b { "backup" } else { "message" }),
            reason: "prop".into(),
            actor: "prop".into(),
            set_at: now,
            until: secs(*ttl),
        }),
        Op::OverrideInactive(ttl) => Event::OverrideSet(Override {
            desired: Desired::Inactive,
            reason: "prop".into(),
            actor: "prop".into(),
            set_at: now,
            until: secs(*ttl),
        }),
        Op::OverrideClear => Event::OverrideCleared {
            actor: "prop".into(),
            reason: None,
        },
        Op::MaintStart(d) => Event::MaintenanceStarted {
            name: "w".into(),
            until: secs(*d),
        },
        Op::MaintEnd => Event::MaintenanceEnded { name: "w".into() },
        Op::DrillStart(d) => Event::DrillStarted {
            name: "monthly".into(),
            profile: "message".into(),
            until: secs(*d),
        },
        Op::DrillEnd => Event::DrillEnded {
            name: "monthly".into(),
        },
        Op::SelfCheck(ok) => Event::SelfCheck {
            ok: *ok,
            detail: "canary".into(),
        },
        Op::FlapRelease => Event::FlapRelease {
            actor: "prop".into(),
        },
        Op::Tick => Event::Tick,
    }
}

/// Runs the ops from t = 0 and returns (time, commands) per step.
fn run(e: &mut Engine, ops: &[(u32, Op)], start: Timestamp) -> Vec<(Timestamp, Vec<Command>)> {
    let mut now = start;
    ops.iter()
        .map(|(gap, op)| {
            now = Timestamp(now.as_millis() + i64::from(*gap));
            (now, e.step(event(op, now), now))
        })
        .collect()
}

/// BASE with every rule holding the fallback at least `min_active`.
fn min_active_spec(secs: u32) -> EngineSpec {
    let src = BASE
        .replace(
            "min_active = \"300s\"",
            &format!("min_active = \"{secs}s\""),
        )
        .replace("min_active = \"0s\"", &format!("min_active = \"{secs}s\""));
    spec(&src)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// Same events at the same times give the same commands and the same state.
    #[test]
    fn engine_prop_deterministic(ops in ops(true, true)) {
        let (mut a, mut b) = (engine(), engine());
        let ca = run(&mut a, &ops, Timestamp(0));
        let cb = run(&mut b, &ops, Timestamp(0));
        prop_assert_eq!(ca, cb);
        prop_assert_eq!(a.snapshot(), b.snapshot());
    }

    /// Without an operator forcing it off, the fallback never goes inactive
    /// before it has been on for `min_active`.
    #[test]
    fn engine_prop_never_inactive_before_min_active(ops in ops(false, false), min_active in 1u32..200) {
        let mut e = Engine::new(min_active_spec(min_active));
        let mut on_since: Option<Timestamp> = None;
        for (now, cmds) in run(&mut e, &ops, Timestamp(0)) {
            for c in cmds {
                if let Command::SetDesired { desired, .. } = c {
                    match (desired.is_active(), on_since) {
                        (true, None) => on_since = Some(now),
                        (false, Some(since)) => {
                            prop_assert!(
                                now.since(since) >= std::time::Duration::from_secs(u64::from(min_active)),
                                "off at {:?}, on since {:?}", now, since
                            );
                            on_since = None;
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// A probe never goes down on fewer than `fall` consecutive failures, nor
    /// up on fewer than `rise` consecutive successes.
    #[test]
    fn engine_prop_probe_needs_fall_consecutive_failures(
        results in prop::collection::vec(prop::bool::weighted(0.6), 0..300),
        rise in 1u32..6,
        fall in 1u32..6,
    ) {
        let src = BASE
            .replacen("rise = 2\nfall = 3", &format!("rise = {rise}\nfall = {fall}"), 1);
        let mut e = Engine::new(spec(&src));
        let (mut fails, mut oks) = (0u32, 0u32);
        for (i, success) in results.iter().enumerate() {
            if *success { oks += 1; fails = 0; } else { fails += 1; oks = 0; }
            let ev = if *success { ok("trunk-a") } else { fail("trunk-a", "timeout") };
            for c in e.step(ev, t(i as i64)) {
                if let Command::ProbeTransition { to, .. } = c {
                    match to {
                        ProbeHealth::Down => prop_assert!(fails >= fall, "down after {} failures, fall {}", fails, fall),
                        ProbeHealth::Up => prop_assert!(oks >= rise, "up after {} successes, rise {}", oks, rise),
                        ProbeHealth::Unknown => prop_assert!(false, "never back to unknown"),
                    }
                }
            }
        }
    }

    /// While an override is unexpired (and not cleared), the desired state is
    /// the override's, whatever else happens.
    #[test]
    fn engine_prop_unexpired_override_always_wins(
        before in ops(false, true),
        after in ops(false, true),
        on in any::<bool>(),
        ttl in 1u32..600,
    ) {
        let mut e = engine();
        let mut now = run(&mut e, &before, Timestamp(0)).last().map_or(Timestamp(0), |(t, _)| *t);
        let desired = if on { active("backup") } else { Desired::Inactive };
        let until = now.add(std::time::Duration::from_secs(u64::from(ttl)));
        e.step(Event::OverrideSet(Override {
            desired: desired.clone(),
            reason: "prop".into(),
            actor: "prop".into(),
            set_at: now,
            until,
        }), now);
        prop_assert_eq!(e.desired(), &desired);
        for (gap, op) in &after {
            now = Timestamp(now.as_millis() + i64::from(*gap));
            e.step(event(op, now), now);
            if now < until {
                prop_assert_eq!(e.desired(), &desired, "at {:?}", now);
            }
        }
    }

    /// An engine restored from its JSON snapshot behaves exactly like the
    /// original for every later event.
    #[test]
    fn engine_prop_restore_behaves_identically(ops in ops(true, true), split in 0usize..120) {
        let split = split.min(ops.len());
        let mut a = engine();
        let first = run(&mut a, &ops[..split], Timestamp(0));
        let at = first.last().map_or(Timestamp(0), |(t, _)| *t);
        let json = serde_json::to_string(&a.snapshot()).unwrap_or_default();
        let snap = serde_json::from_str(&json);
        prop_assert!(snap.is_ok(), "snapshot JSON does not parse: {}", json);
        let (mut b, restore_cmds) = Engine::restore(spec(BASE), snap.unwrap_or_else(|_| a.snapshot()), at);
        prop_assert!(!restore_cmds.iter().any(|c| matches!(c, Command::SetDesired { .. } | Command::RuleTransition { .. })),
            "restore at the same instant changes nothing: {:?}", restore_cmds);
        let ra = run(&mut a, &ops[split..], at);
        let rb = run(&mut b, &ops[split..], at);
        prop_assert_eq!(ra, rb);
        prop_assert_eq!(a.snapshot(), b.snapshot());
    }
}
