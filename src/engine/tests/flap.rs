//! The flap latch: what counts as a transition, what status and the audit
//! log say while it holds, and why its defaults never trap an ordinary
//! incident (the table in `docs/tuning.md`).

use super::*;
use crate::domain::Desired::Inactive;
use crate::engine::view::EngineView;
use crate::telemetry::AuditKind;

/// Two alert rules with different profiles and no hold times.
const TWO_PROFILES: &str = r#"
[profiles.backup]
default = "+14155550100"
[profiles.message]
message = { text = "We are experiencing technical difficulties.", language = "en-US" }

[[rules]]
name = "site-down"
profile = "backup"
priority = 10
for = "0s"
clear_for = "0s"
min_active = "0s"
when = { alert = ['alertname="SiteDown"'] }

[[rules]]
name = "voice-alert"
profile = "message"
priority = 5
for = "0s"
clear_for = "0s"
min_active = "0s"
when = { alert = ['alertname="TalkdeskVoiceDown"'] }

[engine]
flap_max = 3
flap_window = "30m"
"#;

fn flap_audits(cmds: &[(Timestamp, Command)]) -> Vec<String> {
    cmds.iter()
        .filter_map(|(_, c)| match c {
            Command::Audit {
                kind: AuditKind::Flap,
                message,
            } => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// Profile switches while the fallback stays on are not flapping: only the
/// automatic on/off transitions count.
#[test]
fn engine_flap_profile_switches_do_not_count() {
    let mut e = Engine::new(spec(TWO_PROFILES));
    let mut evs = vec![(0, alert("v", "TalkdeskVoiceDown"))];
    for i in 0..8 {
        let at = 60 + i * 60;
        evs.push((
            at,
            if i % 2 == 0 {
                alert("s", "SiteDown")
            } else {
                resolved("s")
            },
        ));
    }
    let cmds = drive(&mut e, evs);
    let changes = set_desired(&cmds);
    assert_eq!(changes.len(), 9, "one on, eight profile switches");
    assert!(flap_audits(&cmds).is_empty(), "{:?}", flap_audits(&cmds));
    let v = e.view(t(600));
    assert!(!v.flapping);
    assert_eq!(v.flap.transitions_in_window, 1, "only the first on counts");
    assert_eq!(e.desired(), &active("message"));
}

/// A latch that engages on an automatic *off* keeps the fallback on: nothing
/// changes on the wire, but the decision now belongs to the latch, so its
/// cause is `flap`, and status and the audit log say why, until when and
/// how to release it.
#[test]
fn engine_flap_latch_on_an_off_transition_is_the_decision_and_explains_itself() {
    let mut e = Engine::new(spec(TWO_PROFILES));
    // on, off, on, off: the fourth exceeds flap_max = 3 and is held.
    let cmds = drive(
        &mut e,
        vec![
            (0, alert("v", "TalkdeskVoiceDown")),
            (60, resolved("v")),
            (120, alert("v", "TalkdeskVoiceDown")),
            (180, resolved("v")),
        ],
    );
    assert_eq!(set_desired(&cmds).len(), 3, "the fourth change is held");
    assert_eq!(e.desired(), &active("message"));
    let v: EngineView = e.view(t(200));
    assert!(v.flapping);
    assert_eq!(v.cause, Some(Cause::Flap), "the latch decides now");
    let until = t(180 + 1800);
    assert_eq!(v.flap.until, Some(until));
    assert_eq!(e.next_deadline(), Some(until));
    for text in [
        v.reasons[0].text.as_str(),
        v.change_reasons[0].text.as_str(),
        v.flap.reason.as_deref().unwrap_or_default(),
    ] {
        assert!(
            text.contains("more than 3 automatic on/off transitions within 30m")
                && text.contains(&until.to_string())
                && text.contains("continuity-agent override release-flap"),
            "{text}"
        );
    }
    let audits = flap_audits(&cmds);
    assert_eq!(audits.len(), 1, "{audits:?}");
    assert!(
        audits[0].contains("flap latch set")
            && audits[0].contains(&until.to_string())
            && audits[0].contains("continuity-agent override release-flap"),
        "{}",
        audits[0]
    );

    // Released by the operator: the rules decide again (off), cause `flap`.
    let c = e.step(
        Event::FlapRelease {
            actor: "oncall".into(),
        },
        t(300),
    );
    assert!(c.iter().any(|c| matches!(
        c,
        Command::SetDesired {
            desired: Inactive,
            cause: Cause::Flap,
            ..
        }
    )));
    assert_eq!(e.view(t(300)).flap.until, None);
}

/// A released latch whose rules still want the same profile on hands the
/// decision back to the rules: the cause says so.
#[test]
fn engine_flap_release_while_rules_hold_the_same_profile_gives_the_decision_back() {
    let mut e = Engine::new(spec(TWO_PROFILES));
    drive(
        &mut e,
        vec![
            (0, alert("v", "TalkdeskVoiceDown")),
            (60, resolved("v")),
            (120, alert("v", "TalkdeskVoiceDown")),
            (180, resolved("v")),
            (240, alert("v", "TalkdeskVoiceDown")),
        ],
    );
    assert!(e.view(t(250)).flapping);
    let c = e.step(
        Event::FlapRelease {
            actor: "oncall".into(),
        },
        t(300),
    );
    assert!(set_desired(&c.into_iter().map(|c| (t(300), c)).collect::<Vec<_>>()).is_empty());
    let v = e.view(t(300));
    assert!(!v.flapping);
    assert_eq!(v.cause, Some(Cause::Rule));
    assert!(
        v.change_reasons[0].text.starts_with("voice-alert"),
        "{:?}",
        v.change_reasons
    );
}

/// One trunk, every default but the flap settings under test. Results every
/// 2 s (the fast cadence); `down` lists the outages as [start, end) seconds.
fn trunk_scenario(engine_section: &str, down: &[(i64, i64)], until: i64) -> (usize, Option<i64>) {
    let src = format!(
        r#"
[profiles.backup]
default = "+14155550100"
[[probes]]
id = "trunk"
type = "sip"
target = "sip:trunk.example.net"
[[rules]]
name = "trunk-down"
profile = "backup"
when = {{ down = "trunk" }}
{engine_section}
"#
    );
    let mut e = Engine::new(spec(&src));
    let evs = (0..until / 2)
        .map(|i| {
            let at = i * 2;
            if down.iter().any(|&(a, b)| (a..b).contains(&at)) {
                (at, fail("trunk", "timeout after 2s"))
            } else {
                (at, ok("trunk"))
            }
        })
        .collect();
    let cmds = drive(&mut e, evs);
    let transitions = set_desired(&cmds).len();
    let latched_at = cmds.iter().find_map(|(at, c)| match c {
        Command::Audit {
            kind: AuditKind::Flap,
            message,
        } if message.starts_with("flap latch set") => Some(at.0 / 1000),
        _ => None,
    });
    (transitions, latched_at)
}

/// The argument for the defaults (`flap_max = 4` within `flap_window = 30m`),
/// with the default rule hold times (`clear_for` 2m, `min_active` 5m): an
/// ordinary outage makes 2 automatic transitions, an outage with one relapse
/// makes 4, so neither can latch; a trunk that fails for a minute every 8
/// minutes makes a 5th within 30 minutes and latches on its third failure.
/// `flap_max = 2` would trap the outage with one relapse; `flap_max = 8`
/// would never catch that flapping trunk. The table is `docs/tuning.md`'s.
#[test]
fn engine_flap_defaults_never_trap_an_outage_with_one_relapse() {
    let scenarios: [(&str, Vec<(i64, i64)>); 3] = [
        ("single outage (10m)", vec![(60, 660)]),
        (
            "outage with one relapse (10m, up 5m, down 5m)",
            vec![(60, 660), (960, 1260)],
        ),
        (
            "flapping trunk (down 1m every 8m)",
            (0..8).map(|k| (60 + 480 * k, 120 + 480 * k)).collect(),
        ),
    ];
    let configs = [
        ("defaults (4 in 30m)", ""),
        ("flap_max 2", "[engine]\nflap_max = 2\n"),
        ("flap_max 8", "[engine]\nflap_max = 8\n"),
    ];
    let mut table = vec![format!(
        "| scenario (1 hour) | automatic on/off transitions | {} |",
        configs.map(|c| c.0).join(" | ")
    )];
    let mut latched = Vec::new();
    for (name, down) in &scenarios {
        let mut cells = String::new();
        let mut transitions = 0;
        for (_, section) in &configs {
            // Counted where nothing latches (the last configuration).
            let (n, at) = trunk_scenario(section, down, 3600);
            transitions = n;
            cells.push_str(&match at {
                Some(s) => format!(" latches at {}m{:02}s |", s / 60, s % 60),
                None => " never latches |".to_string(),
            });
            latched.push(at.is_some());
        }
        table.push(format!("| {name} | {transitions} |{cells}"));
    }
    eprintln!("{}", table.join("\n"));
    let doc = include_str!("../../../docs/tuning.md");
    for row in &table[1..] {
        assert!(
            doc.contains(row.as_str()),
            "docs/tuning.md is not what the engine computes; replace its flap table with:\n{}",
            table.join("\n")
        );
    }
    assert_eq!(
        latched,
        [
            false, false, false, // single outage
            false, true, false, // one relapse: only flap_max 2 traps it
            true, true, false, // flapping: flap_max 8 never catches it
        ],
        "{}",
        table.join("\n")
    );
}

/// The cause is written `flap`; snapshots that wrote `flapping` still restore.
#[test]
fn engine_flap_cause_is_written_flap_and_reads_its_old_name() {
    assert_eq!(serde_json::to_string(&Cause::Flap).unwrap(), "\"flap\"");
    assert_eq!(Cause::Flap.as_str(), "flap");
    assert_eq!(
        serde_json::from_str::<Cause>("\"flapping\"").unwrap(),
        Cause::Flap
    );
}
