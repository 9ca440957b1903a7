//! The scenario file format and its conversion into timed engine events.
//!
//! ```toml
//! name = "both trunks down for 10s activate backup-site"
//! config = "../config/example.toml"     # or inline [[probes]], [[rules]], [profiles.X], [engine], [alerts]
//!
//! [[input]]
//! at = "0s"
//! probe = "trunk-a"
//! result = "fail"                       # ok | fail
//! detail = "timeout after 2s"           # optional
//! repeat = 5                            # optional, with every
//! every = "1s"
//!
//! [[input]]
//! at = "20s"
//! alert = "firing"                      # firing | resolved
//! source = "alertmanager"               # default "test"
//! id = "abc"
//! labels = { alertname = "TalkdeskVoiceDown", severity = "critical" }
//!
//! # override = "active" (with profile) | "inactive" | "clear"; ttl (default 1h), reason, actor
//! # maintenance = "start" (name, duration) | "end" (name)
//! # drill = "start" (name; profile/duration default to the [[drills]] entry) | "end" (name)
//! # self_check = "ok" | "fail" (detail)
//! # flap_release = true ; tick = true
//! # restart = true: snapshot to JSON and restore, as a daemon restart does
//!
//! [[expect]]
//! at = "15s"
//! desired = "active"                    # active | inactive
//! profile = "backup-site"
//! cause = "rule"
//! rules = { trunks-down = "firing" }
//! probes = { trunk-a = "down" }
//! cadence = { trunk-a = "normal" }      # fast | normal
//! flapping = false
//! blind = false
//! reason_contains = "2 of 2 probes"     # or a list
//! changes = 1                           # SetDesired commands so far
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::config::Dur;
use crate::domain::{AlertKey, Desired, ProbeOutcome, Timestamp};
use crate::engine::event::{Event, Override};
use crate::engine::spec::EngineSpec;

/// Keys of a scenario file that are not config sections.
pub const SCENARIO_KEYS: &[&str] = &[
    "name",
    "description",
    "config",
    "account",
    "input",
    "expect",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub config: Option<String>,
    /// Which account's rules to test, for a configuration with `[[accounts]]`.
    #[serde(default)]
    pub account: Option<String>,
    #[serde(default)]
    pub input: Vec<Input>,
    #[serde(default)]
    pub expect: Vec<Expect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub at: Dur,
    // probe result
    pub probe: Option<String>,
    pub result: Option<String>,
    pub detail: Option<String>,
    pub latency: Option<Dur>,
    pub repeat: Option<u32>,
    pub every: Option<Dur>,
    // alert
    pub alert: Option<String>,
    pub source: Option<String>,
    pub id: Option<String>,
    pub labels: Option<BTreeMap<String, String>>,
    pub summary: Option<String>,
    // override
    #[serde(rename = "override")]
    pub override_: Option<String>,
    pub profile: Option<String>,
    pub ttl: Option<Dur>,
    pub reason: Option<String>,
    pub actor: Option<String>,
    // maintenance / drill
    pub maintenance: Option<String>,
    pub drill: Option<String>,
    pub name: Option<String>,
    pub duration: Option<Dur>,
    // misc
    pub self_check: Option<String>,
    pub flap_release: Option<bool>,
    pub tick: Option<bool>,
    pub restart: Option<bool>,
}

/// One timed thing to do to the engine.
#[derive(Clone, Debug)]
pub enum Step {
    Event(Event),
    /// Persist the engine to JSON and restore it (a daemon restart).
    Restart,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn items(&self) -> Vec<&str> {
        match self {
            OneOrMany::One(s) => vec![s.as_str()],
            OneOrMany::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    pub at: Dur,
    pub desired: Option<String>,
    pub profile: Option<String>,
    pub cause: Option<String>,
    pub rules: Option<BTreeMap<String, String>>,
    pub probes: Option<BTreeMap<String, String>>,
    /// Probe id -> `fast` | `normal` (polling cadence the engine asked for).
    pub cadence: Option<BTreeMap<String, String>>,
    pub flapping: Option<bool>,
    pub blind: Option<bool>,
    pub reason_contains: Option<OneOrMany>,
    pub changes: Option<usize>,
}

/// Largest `repeat`: a scenario is a readable story, not a load test.
const MAX_REPEAT: u32 = 100_000;
const DEFAULT_OVERRIDE_TTL: Duration = Duration::from_secs(3600);

/// Expands one `[[input]]` into timed events (offsets from the scenario start).
pub fn events(
    i: &Input,
    idx: usize,
    spec: &EngineSpec,
    t0: Timestamp,
) -> Result<Vec<(Duration, Step)>, String> {
    if i.restart.is_some() {
        let others = [
            i.probe.is_some(),
            i.alert.is_some(),
            i.override_.is_some(),
            i.maintenance.is_some(),
            i.drill.is_some(),
            i.self_check.is_some(),
            i.flap_release.is_some(),
            i.tick.is_some(),
        ];
        if others.iter().any(|&x| x) {
            return Err(format!(
                "input[{idx}]: restart cannot be combined with another input"
            ));
        }
        return Ok(vec![(i.at.get(), Step::Restart)]);
    }
    Ok(event_list(i, idx, spec, t0)?
        .into_iter()
        .map(|(at, e)| (at, Step::Event(e)))
        .collect())
}

fn event_list(
    i: &Input,
    idx: usize,
    spec: &EngineSpec,
    t0: Timestamp,
) -> Result<Vec<(Duration, Event)>, String> {
    let path = format!("input[{idx}]");
    let kind = one_kind(i, &path)?;
    let cx = InputCx {
        i,
        path,
        kind,
        at: i.at.get(),
        t0,
    };
    let event = match kind {
        "probe" => return probe_events(&cx, spec),
        "alert" => alert_event(&cx)?,
        "override" => override_event(&cx)?,
        "maintenance" => maintenance_event(&cx)?,
        "drill" => drill_event(&cx, spec)?,
        "self_check" => self_check_event(&cx)?,
        "flap_release" => Event::FlapRelease {
            actor: i.actor.clone().unwrap_or_else(|| "test-rules".into()),
        },
        _ => Event::Tick,
    };
    Ok(vec![(cx.at, event)])
}

/// The one kind of input an `[[input]]` is (restart is handled before).
fn one_kind(i: &Input, path: &str) -> Result<&'static str, String> {
    let kinds: Vec<&'static str> = [
        ("probe", i.probe.is_some()),
        ("alert", i.alert.is_some()),
        ("override", i.override_.is_some()),
        ("maintenance", i.maintenance.is_some()),
        ("drill", i.drill.is_some()),
        ("self_check", i.self_check.is_some()),
        ("flap_release", i.flap_release.is_some()),
        ("tick", i.tick.is_some()),
    ]
    .into_iter()
    .filter_map(|(k, set)| set.then_some(k))
    .collect();
    match kinds.as_slice() {
        [kind] => Ok(kind),
        _ => Err(format!(
            "{path}: needs exactly one of probe, alert, override, maintenance, drill, self_check, flap_release, tick, restart (found: {})",
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(", ")
            }
        )),
    }
}

/// One input being expanded: where it is in the file and when it happens.
struct InputCx<'a> {
    i: &'a Input,
    path: String,
    kind: &'static str,
    /// Offset from the scenario start.
    at: Duration,
    t0: Timestamp,
}

impl InputCx<'_> {
    /// The absolute time `d` after this input.
    fn abs(&self, d: Duration) -> Timestamp {
        self.t0.add(self.at).add(d)
    }

    /// A key this kind of input needs.
    fn req(&self, v: &Option<String>, key: &str) -> Result<String, String> {
        v.clone()
            .ok_or_else(|| format!("{}: {} needs `{key}`", self.path, self.kind))
    }
}

fn probe_events(cx: &InputCx, spec: &EngineSpec) -> Result<Vec<(Duration, Event)>, String> {
    let (i, path) = (cx.i, &cx.path);
    let probe = cx.req(&i.probe, "probe")?;
    if !spec.probes.iter().any(|p| p.id == probe) {
        return Err(format!("{path}.probe: unknown probe {probe:?}"));
    }
    let success = match cx.req(&i.result, "result")?.as_str() {
        "ok" | "success" => true,
        "fail" | "failure" => false,
        other => return Err(format!("{path}.result: {other:?} is not ok or fail")),
    };
    let detail = i.detail.clone().unwrap_or_else(|| {
        if success {
            "ok".into()
        } else {
            "timeout".into()
        }
    });
    let repeat = i.repeat.unwrap_or(1);
    if repeat == 0 || repeat > MAX_REPEAT {
        return Err(format!("{path}.repeat: must be 1..={MAX_REPEAT}"));
    }
    let every = match (repeat, i.every) {
        (1, e) => e.map_or(Duration::ZERO, Dur::get),
        (_, Some(e)) if !e.get().is_zero() => e.get(),
        _ => return Err(format!("{path}: repeat needs a non-zero `every`")),
    };
    let latency = i.latency.map(Dur::get);
    let outcome = if success {
        ProbeOutcome::success(detail, latency)
    } else {
        ProbeOutcome::failure(detail, latency)
    };
    Ok((0..repeat)
        .map(|n| {
            (
                cx.at + every * n,
                Event::ProbeResult {
                    probe: probe.clone(),
                    outcome: outcome.clone(),
                },
            )
        })
        .collect())
}

fn alert_event(cx: &InputCx) -> Result<Event, String> {
    let i = cx.i;
    let key = AlertKey {
        source: i.source.clone().unwrap_or_else(|| "test".into()),
        id: cx.req(&i.id, "id")?,
    };
    match cx.req(&i.alert, "alert")?.as_str() {
        "firing" => Ok(Event::AlertFiring {
            key,
            labels: i.labels.clone().unwrap_or_default(),
            summary: i.summary.clone(),
        }),
        "resolved" => Ok(Event::AlertResolved { key }),
        other => Err(format!(
            "{}.alert: {other:?} is not firing or resolved",
            cx.path
        )),
    }
}

fn override_event(cx: &InputCx) -> Result<Event, String> {
    let i = cx.i;
    let actor = i.actor.clone().unwrap_or_else(|| "test-rules".into());
    let desired = match cx.req(&i.override_, "override")?.as_str() {
        "clear" => {
            return Ok(Event::OverrideCleared {
                actor,
                reason: i.reason.clone(),
            });
        }
        "active" => Desired::Active {
            profile: cx.req(&i.profile, "profile")?,
        },
        "inactive" => Desired::Inactive,
        other => {
            return Err(format!(
                "{}.override: {other:?} is not active, inactive or clear",
                cx.path
            ));
        }
    };
    let ttl = i.ttl.map_or(DEFAULT_OVERRIDE_TTL, Dur::get);
    Ok(Event::OverrideSet(Override {
        desired,
        reason: i.reason.clone().unwrap_or_else(|| "scenario".into()),
        actor,
        set_at: cx.abs(Duration::ZERO),
        until: cx.abs(ttl),
    }))
}

fn maintenance_event(cx: &InputCx) -> Result<Event, String> {
    let (i, path) = (cx.i, &cx.path);
    let name = cx.req(&i.name, "name")?;
    match cx.req(&i.maintenance, "maintenance")?.as_str() {
        "start" => {
            let d = i
                .duration
                .ok_or_else(|| format!("{path}: maintenance start needs `duration`"))?;
            Ok(Event::MaintenanceStarted {
                name,
                until: cx.abs(d.get()),
            })
        }
        "end" => Ok(Event::MaintenanceEnded { name }),
        other => Err(format!("{path}.maintenance: {other:?} is not start or end")),
    }
}

fn drill_event(cx: &InputCx, spec: &EngineSpec) -> Result<Event, String> {
    let (i, path) = (cx.i, &cx.path);
    let name = cx.req(&i.name, "name")?;
    match cx.req(&i.drill, "drill")?.as_str() {
        "start" => {
            // A configured drill gives the defaults; the input may override them.
            let configured = spec.drills.get(&name);
            let profile = i
                .profile
                .clone()
                .or_else(|| configured.map(|d| d.profile.clone()))
                .ok_or_else(|| {
                    format!("{path}: drill {name:?} is not configured; give `profile`")
                })?;
            let duration = i
                .duration
                .map(Dur::get)
                .or_else(|| configured.map(|d| d.duration))
                .ok_or_else(|| {
                    format!("{path}: drill {name:?} is not configured; give `duration`")
                })?;
            Ok(Event::DrillStarted {
                name,
                profile,
                until: cx.abs(duration),
            })
        }
        "end" => Ok(Event::DrillEnded { name }),
        other => Err(format!("{path}.drill: {other:?} is not start or end")),
    }
}

fn self_check_event(cx: &InputCx) -> Result<Event, String> {
    let i = cx.i;
    let ok = match cx.req(&i.self_check, "self_check")?.as_str() {
        "ok" => true,
        "fail" => false,
        other => {
            return Err(format!(
                "{}.self_check: {other:?} is not ok or fail",
                cx.path
            ));
        }
    };
    Ok(Event::SelfCheck {
        ok,
        detail: i.detail.clone().unwrap_or_else(|| {
            if ok {
                "canaries reachable".into()
            } else {
                "canaries unreachable".into()
            }
        }),
    })
}
