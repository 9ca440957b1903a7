//! Engine-level tests: precedence table, explanations, alerts, snapshots,
//! property tests, the flap latch (`flap.rs`), the blind guard's wait for a
//! self-check verdict (`blind.rs`), the statistical false-activation test
//! and the defaults' trade-off table (`tuning.rs`, `docs/tuning.md`). All on
//! virtual time: timestamps are arguments, nothing sleeps.

mod behaviour;
mod blind;
mod flap;
mod precedence;
mod props;
mod restore;
mod stats;
mod tuning;

use std::collections::BTreeMap;

use crate::domain::{AlertKey, Desired, ProbeOutcome, Timestamp};
use crate::ruletest::engine_spec_from_toml;

use super::{Cause, Command, Engine, EngineSpec, Event, Override};

/// Two trunks, a status page, a probe-driven rule (`for` 10s, `clear_for`
/// 60s, `min_active` 300s), a lower-priority alert rule (no hold times), a
/// mixed rule, two profiles, blind-guard canaries and a drill.
pub(super) const BASE: &str = r#"
[profiles.backup]
default = "+14155550100"
[profiles.message]
message = { text = "We are experiencing technical difficulties.", language = "en-US" }

[[probes]]
id = "trunk-a"
type = "sip"
target = "sip:a.example.net"
rise = 2
fall = 3

[[probes]]
id = "trunk-b"
type = "sip"
target = "sip:b.example.net"
rise = 2
fall = 3

[[probes]]
id = "status"
type = "statuspage"
url = "https://status.example.net"
rise = 1
fall = 1

[[rules]]
name = "trunks-down"
profile = "backup"
priority = 10
for = "10s"
clear_for = "60s"
min_active = "300s"
when = { down = "trunk-*", at_least = 2 }

[[rules]]
name = "voice-alert"
profile = "message"
priority = 5
for = "0s"
clear_for = "0s"
min_active = "0s"
when = { alert = ['alertname="TalkdeskVoiceDown"'] }

[[rules]]
name = "status-and-alert"
profile = "message"
priority = 1
for = "0s"
clear_for = "0s"
min_active = "0s"
when = { all = [ { down = "status" }, { alert = ['alertname="VendorDegraded"'] } ] }

[[drills]]
name = "monthly"
cron = "0 0 3 1 * *"
profile = "message"
duration = "5m"

[engine]
flap_max = 4
flap_window = "30m"
self_check = ["udp://9.9.9.9:53"]

[alerts]
ttl = "15m"
"#;

pub(super) fn spec(src: &str) -> EngineSpec {
    match engine_spec_from_toml(src, "test") {
        Ok(s) => s,
        Err(e) => panic!("test config: {e}"),
    }
}

pub(super) fn engine() -> Engine {
    Engine::new(spec(BASE))
}

/// Seconds of virtual time.
pub(super) fn t(s: i64) -> Timestamp {
    Timestamp(s * 1000)
}

pub(super) fn ok(probe: &str) -> Event {
    Event::ProbeResult {
        probe: probe.into(),
        outcome: ProbeOutcome::success("200 OK", None),
    }
}

pub(super) fn fail(probe: &str, detail: &str) -> Event {
    Event::ProbeResult {
        probe: probe.into(),
        outcome: ProbeOutcome::failure(detail, None),
    }
}

pub(super) fn alert(id: &str, alertname: &str) -> Event {
    Event::AlertFiring {
        key: AlertKey {
            source: "alertmanager".into(),
            id: id.into(),
        },
        labels: BTreeMap::from([
            ("alertname".to_string(), alertname.to_string()),
            ("severity".to_string(), "critical".to_string()),
        ]),
        summary: None,
    }
}

pub(super) fn resolved(id: &str) -> Event {
    Event::AlertResolved {
        key: AlertKey {
            source: "alertmanager".into(),
            id: id.into(),
        },
    }
}

pub(super) fn override_set(desired: Desired, at: i64, ttl_s: i64) -> Event {
    Event::OverrideSet(Override {
        desired,
        reason: "break-glass".into(),
        actor: "oncall".into(),
        set_at: t(at),
        until: t(at + ttl_s),
    })
}

pub(super) fn active(p: &str) -> Desired {
    Desired::Active { profile: p.into() }
}

/// Feeds events, ticking at every deadline in between, like the daemon.
pub(super) fn drive(e: &mut Engine, events: Vec<(i64, Event)>) -> Vec<(Timestamp, Command)> {
    let mut all = Vec::new();
    for (at, ev) in events {
        let now = t(at);
        while let Some(d) = e.next_deadline() {
            if d >= now {
                break;
            }
            all.extend(e.step(Event::Tick, d).into_iter().map(|c| (d, c)));
        }
        all.extend(e.step(ev, now).into_iter().map(|c| (now, c)));
    }
    all
}

/// Three failures on both trunks at `at`, `at+1`, `at+2` (both go down at
/// `at+2`), then the self-check those failures triggered answers: the agent
/// itself is fine (so the blind guard does not hold the rule).
pub(super) fn trunks_fail(at: i64) -> Vec<(i64, Event)> {
    let mut evs = trunk_failures(at);
    evs.push((at + 2, self_check_ok()));
    evs
}

/// [`trunks_fail`] without the self-check verdict.
pub(super) fn trunk_failures(at: i64) -> Vec<(i64, Event)> {
    (0..3)
        .flat_map(|i| {
            [
                (at + i, fail("trunk-a", "timeout after 2s")),
                (at + i, fail("trunk-b", "503 Service Unavailable")),
            ]
        })
        .collect()
}

pub(super) fn self_check_ok() -> Event {
    Event::SelfCheck {
        ok: true,
        detail: "1/1 canaries answered".into(),
    }
}

pub(super) fn trunks_ok(at: i64) -> Vec<(i64, Event)> {
    (0..2)
        .flat_map(|i| [(at + i, ok("trunk-a")), (at + i, ok("trunk-b"))])
        .collect()
}

pub(super) fn set_desired(cmds: &[(Timestamp, Command)]) -> Vec<(Timestamp, Desired, Cause)> {
    cmds.iter()
        .filter_map(|(at, c)| match c {
            Command::SetDesired { desired, cause, .. } => Some((*at, desired.clone(), *cause)),
            _ => None,
        })
        .collect()
}
