//! Playing a scenario through the engine on virtual time and checking the
//! expectations.
//!
//! Order at each instant: timers due *before* it fire first (a `Tick` at each
//! `next_deadline`), then the inputs at that instant in file order (a `Tick`
//! if there are none), then the expectations at that instant are checked
//! against the engine's view. So `[[expect]] at = "10s"` sees everything
//! that happened at 10s.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::domain::Timestamp;
use crate::engine::{Command, Engine, EngineSpec, EngineView, Event};

use super::file::{Expect, Step};

/// Virtual start: 2026-01-01T00:00:00Z, so absolute times in reasons are readable.
pub const T0: Timestamp = Timestamp(1_767_225_600_000);

/// Guards against a deadline that never moves (a bug, not input): stop rather than spin.
const MAX_TICKS_BETWEEN_INPUTS: usize = 1_000_000;

pub struct Outcome {
    /// One block per failed expectation: `at +45s:` then one line per mismatch.
    pub failures: Vec<String>,
    /// What the engine did, one line per command (cadence changes omitted).
    pub timeline: Vec<String>,
}

pub fn offset(t: Timestamp) -> String {
    let ms = t.as_millis() - T0.as_millis();
    if ms < 0 {
        return format!(
            "-{}",
            super::fmt_offset(Duration::from_millis(ms.unsigned_abs()))
        );
    }
    format!("+{}", super::fmt_offset(Duration::from_millis(ms as u64)))
}

pub fn run(spec: EngineSpec, mut inputs: Vec<(Duration, Step)>, expects: &[Expect]) -> Outcome {
    // Stable: inputs at the same instant keep file order.
    inputs.sort_by_key(|(at, _)| *at);
    let mut instants: BTreeSet<Duration> = inputs.iter().map(|(at, _)| *at).collect();
    instants.extend(expects.iter().map(|e| e.at.get()));

    let mut engine = Engine::new(spec);
    let mut timeline = Vec::new();
    let mut failures = Vec::new();
    let mut changes = 0usize;
    let mut last = T0;
    let mut record = |now: Timestamp, cmds: Vec<Command>, changes: &mut usize| {
        for c in cmds {
            if let Some(line) = describe(&c) {
                timeline.push(format!("{:>8}  {line}", offset(now)));
            }
            if matches!(c, Command::SetDesired { .. }) {
                *changes += 1;
            }
        }
    };
    let mut pending = inputs.into_iter().peekable();
    for at in instants {
        let now = T0.add(at);
        for _ in 0..MAX_TICKS_BETWEEN_INPUTS {
            match engine.next_deadline() {
                Some(d) if d < now => {
                    let t = d.max(last);
                    let cmds = engine.step(Event::Tick, t);
                    last = t;
                    record(t, cmds, &mut changes);
                    if engine.next_deadline() == Some(d) && t == d {
                        break;
                    }
                }
                _ => break,
            }
        }
        let mut any = false;
        while let Some((_, step)) = pending.next_if(|(t, _)| *t == at) {
            let cmds = match step {
                Step::Event(ev) => engine.step(ev, now),
                Step::Restart => match restart(&engine, now) {
                    Ok((restored, cmds)) => {
                        engine = restored;
                        cmds
                    }
                    // Not papered over: a snapshot that does not survive its
                    // own JSON would not survive a real restart either.
                    Err(why) => {
                        failures.push(format!(
                            "at {}: restart: the engine snapshot does not survive JSON: {why}",
                            offset(now)
                        ));
                        Vec::new()
                    }
                },
            };
            record(now, cmds, &mut changes);
            any = true;
        }
        if !any {
            let cmds = engine.step(Event::Tick, now);
            record(now, cmds, &mut changes);
        }
        last = now;
        let view = engine.view(now);
        for e in expects.iter().filter(|e| e.at.get() == at) {
            let diffs = check(e, &view, changes);
            if !diffs.is_empty() {
                let mut block = format!("at {}:", offset(now));
                for d in diffs {
                    block.push_str("\n    ");
                    block.push_str(&d);
                }
                block.push_str("\n    current reasons:");
                for r in &view.reasons {
                    block.push_str("\n      - ");
                    block.push_str(&r.text);
                }
                failures.push(block);
            }
        }
    }
    Outcome { failures, timeline }
}

/// What a daemon restart does: persist as JSON, read back, restore.
fn restart(engine: &Engine, now: Timestamp) -> Result<(Engine, Vec<Command>), String> {
    let json = serde_json::to_string(&engine.snapshot()).map_err(|e| e.to_string())?;
    let reread = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    Ok(Engine::restore(engine.spec().clone(), reread, now))
}

fn describe(c: &Command) -> Option<String> {
    Some(match c {
        Command::SetDesired {
            desired,
            cause,
            reasons,
        } => {
            let why: Vec<&str> = reasons.iter().map(|r| r.text.as_str()).collect();
            format!(
                "DESIRED {desired} (cause {}): {}",
                cause.as_str(),
                why.join(" | ")
            )
        }
        Command::ProbeTransition {
            probe,
            from,
            to,
            detail,
        } => format!("probe {probe}: {from} -> {to} ({detail})"),
        Command::RuleTransition { rule, from, to } => format!("rule {rule}: {from} -> {to}"),
        Command::Audit { kind, message } => format!("[{kind}] {message}"),
        Command::SelfCheckNeeded { rule } => {
            format!("rule {rule}: waiting for a self-check verdict")
        }
        Command::ProbeCadence { .. } | Command::AlertDropped { .. } => return None,
    })
}

fn mismatch(out: &mut Vec<String>, what: &str, expected: impl ToString, got: impl ToString) {
    let (e, g) = (expected.to_string(), got.to_string());
    if e != g {
        out.push(format!("{what}: expected {e}, got {g}"));
    }
}

fn check(e: &Expect, v: &EngineView, changes: usize) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(want) = &e.desired {
        let got = if v.desired.is_active() {
            "active"
        } else {
            "inactive"
        };
        mismatch(&mut out, "desired", want, got);
    }
    if let Some(want) = &e.profile {
        mismatch(
            &mut out,
            "profile",
            want,
            v.desired.profile().unwrap_or("(none)"),
        );
    }
    if let Some(want) = &e.cause {
        mismatch(
            &mut out,
            "cause",
            want,
            v.cause.map_or("(none)", |c| c.as_str()),
        );
    }
    for (name, want) in e.rules.iter().flatten() {
        let got = v
            .rules
            .iter()
            .find(|r| &r.name == name)
            .map_or("(no such rule)", |r| r.state.as_str());
        mismatch(&mut out, &format!("rule {name}"), want, got);
    }
    for (id, want) in e.probes.iter().flatten() {
        let got = v
            .probes
            .iter()
            .find(|p| &p.id == id)
            .map_or("(no such probe)".to_string(), |p| p.health.to_string());
        mismatch(&mut out, &format!("probe {id}"), want, got);
    }
    for (id, want) in e.cadence.iter().flatten() {
        let got = v
            .probes
            .iter()
            .find(|p| &p.id == id)
            .map_or(
                "(no such probe)",
                |p| if p.fast { "fast" } else { "normal" },
            );
        mismatch(&mut out, &format!("cadence {id}"), want, got);
    }
    if let Some(want) = e.flapping {
        mismatch(&mut out, "flapping", want, v.flapping);
    }
    if let Some(want) = e.blind {
        mismatch(&mut out, "blind", want, v.blind.is_some());
    }
    if let Some(want) = e.changes {
        mismatch(&mut out, "changes (SetDesired so far)", want, changes);
    }
    if let Some(list) = &e.reason_contains {
        for needle in list.items() {
            let found = v
                .reasons
                .iter()
                .chain(&v.change_reasons)
                .any(|r| r.text.contains(needle));
            if !found {
                out.push(format!("reason_contains: no reason contains {needle:?}"));
            }
        }
    }
    out
}
