//! Every precedence case of the decision (DESIGN section 3), as a table.

use super::*;
use crate::domain::Desired::Inactive;

fn cat(parts: Vec<Vec<(i64, Event)>>) -> Vec<(i64, Event)> {
    let mut v: Vec<(i64, Event)> = parts.into_iter().flatten().collect();
    v.sort_by_key(|(at, _)| *at);
    v
}

fn drill(at: i64, profile: &str) -> (i64, Event) {
    (
        at,
        Event::DrillStarted {
            name: "monthly".into(),
            profile: profile.into(),
            until: t(at + 300),
        },
    )
}

fn blind(at: i64) -> (i64, Event) {
    (
        at,
        Event::SelfCheck {
            ok: false,
            detail: "udp://9.9.9.9:53 unreachable".into(),
        },
    )
}

fn maintenance(at: i64) -> (i64, Event) {
    (
        at,
        Event::MaintenanceStarted {
            name: "sunday".into(),
            until: t(at + 3600),
        },
    )
}

/// Each row: events, then the expected desired state and the cause of the
/// last `SetDesired` (`None`: no change ever happened).
#[test]
fn engine_precedence_table() {
    type Row = (&'static str, Vec<(i64, Event)>, Desired, Option<Cause>);
    let rows: Vec<Row> = vec![
        (
            "firing rule selects its profile",
            cat(vec![trunks_fail(0), vec![(20, Event::Tick)]]),
            active("backup"),
            Some(Cause::Rule),
        ),
        (
            "override active wins with no rule firing",
            vec![(0, override_set(active("backup"), 0, 600))],
            active("backup"),
            Some(Cause::Override),
        ),
        (
            "override inactive wins over a firing rule",
            cat(vec![
                trunks_fail(0),
                vec![(20, override_set(Inactive, 20, 600))],
            ]),
            Inactive,
            Some(Cause::Override),
        ),
        (
            "override profile wins over the firing rule's profile",
            cat(vec![
                trunks_fail(0),
                vec![(20, override_set(active("message"), 20, 600))],
            ]),
            active("message"),
            Some(Cause::Override),
        ),
        (
            "expired override hands back to the rules",
            cat(vec![
                trunks_fail(0),
                vec![(20, override_set(Inactive, 20, 60)), (100, Event::Tick)],
            ]),
            active("backup"),
            Some(Cause::OverrideExpired),
        ),
        (
            "cleared override hands back to the rules",
            cat(vec![
                vec![(0, override_set(active("message"), 0, 600))],
                vec![(
                    10,
                    Event::OverrideCleared {
                        actor: "oncall".into(),
                        reason: None,
                    },
                )],
            ]),
            Inactive,
            Some(Cause::Override),
        ),
        (
            "override inactive wins over a drill",
            vec![drill(0, "message"), (5, override_set(Inactive, 5, 600))],
            Inactive,
            Some(Cause::Override),
        ),
        (
            "drill activates its profile with no rule firing",
            vec![drill(0, "message")],
            active("message"),
            Some(Cause::Drill),
        ),
        (
            "drill wins over a firing rule of another profile",
            cat(vec![
                trunks_fail(0),
                vec![(20, Event::Tick), drill(30, "message")],
            ]),
            active("message"),
            Some(Cause::Drill),
        ),
        (
            "drill end hands back to the rules (cause drill)",
            vec![drill(0, "message"), (400, Event::Tick)],
            Inactive,
            Some(Cause::Drill),
        ),
        (
            "drill with an unknown profile is rejected",
            vec![drill(0, "nope")],
            Inactive,
            None,
        ),
        (
            "blind: firing probe rule stays firing when probes recover",
            cat(vec![
                trunks_fail(0),
                vec![(20, Event::Tick), blind(25)],
                trunks_ok(30),
                vec![(1000, Event::Tick)],
            ]),
            active("backup"),
            Some(Cause::Rule),
        ),
        (
            "blind: probes going down cannot newly fire a probe rule",
            cat(vec![
                vec![blind(0)],
                trunk_failures(1),
                vec![(100, Event::Tick)],
            ]),
            Inactive,
            None,
        ),
        (
            "blind: alert leaves still evaluate",
            vec![blind(0), (5, alert("1", "TalkdeskVoiceDown"))],
            active("message"),
            Some(Cause::Rule),
        ),
        (
            "blind: an alert deciding a mixed rule alone still acts",
            cat(vec![
                vec![
                    (0, fail("status", "major_outage")),
                    (0, self_check_ok()),
                    (1, alert("v", "VendorDegraded")),
                    blind(2),
                ],
                vec![(3, resolved("v"))],
            ]),
            Inactive,
            Some(Cause::Rule),
        ),
        (
            "blind: overrides still act",
            vec![blind(0), (5, override_set(active("backup"), 5, 600))],
            active("backup"),
            Some(Cause::Override),
        ),
        (
            "maintenance: probes cannot newly fire a probe rule",
            cat(vec![
                vec![maintenance(0)],
                trunks_fail(1),
                vec![(100, Event::Tick)],
            ]),
            Inactive,
            None,
        ),
        (
            "maintenance: alert rules still fire",
            vec![maintenance(0), (5, alert("1", "TalkdeskVoiceDown"))],
            active("message"),
            Some(Cause::Rule),
        ),
        (
            "maintenance: a rule already firing keeps firing",
            cat(vec![
                trunks_fail(0),
                vec![(20, Event::Tick), maintenance(30), (100, Event::Tick)],
            ]),
            active("backup"),
            Some(Cause::Rule),
        ),
        (
            "maintenance: override still acts",
            vec![maintenance(0), (5, override_set(active("message"), 5, 600))],
            active("message"),
            Some(Cause::Override),
        ),
        (
            "highest priority firing rule selects the profile",
            cat(vec![
                vec![(0, alert("1", "TalkdeskVoiceDown"))],
                trunks_fail(1),
                vec![(30, Event::Tick)],
            ]),
            active("backup"),
            Some(Cause::Rule),
        ),
    ];
    for (name, events, want, want_cause) in rows {
        let mut e = engine();
        let cmds = drive(&mut e, events);
        assert_eq!(e.desired(), &want, "{name}: {:#?}", set_desired(&cmds));
        let last = set_desired(&cmds).last().map(|(_, _, c)| *c);
        assert_eq!(last, want_cause, "{name}");
    }
}

/// Rules with equal priority: config order breaks the tie.
#[test]
fn engine_precedence_priority_tie_uses_rule_order() {
    let src = BASE.replace("priority = 1\n", "priority = 5\n");
    let mut e = Engine::new(spec(&src));
    // Both alert rules fire at once with priority 5: voice-alert is first.
    drive(
        &mut e,
        vec![
            (0, fail("status", "major_outage")),
            (0, self_check_ok()),
            (1, alert("v", "VendorDegraded")),
            (1, alert("t", "TalkdeskVoiceDown")),
        ],
    );
    let view = e.view(t(2));
    assert_eq!(view.desired, active("message"));
    assert!(
        view.reasons[0].text.starts_with("voice-alert:"),
        "{:?}",
        view.reasons
    );
    assert!(
        view.reasons
            .iter()
            .any(|r| r.text.starts_with("status-and-alert: also firing"))
    );
}

/// The flap latch holds the fallback on with the last profile, and lets go
/// when the operator releases it or the window is quiet; an override still wins.
#[test]
fn engine_precedence_flap_latch() {
    let src = BASE.replace(
        "when = { all = [ { down = \"status\" }, { alert = ['alertname=\"VendorDegraded\"'] } ] }",
        "when = { down = \"status\" }",
    );
    let flip = |e: &mut Engine, from: i64, n: i64| {
        let evs = (0..n)
            .map(|i| {
                let at = from + i * 10;
                if i % 2 == 0 {
                    (at, fail("status", "major_outage"))
                } else {
                    (at, ok("status"))
                }
            })
            .collect();
        drive(e, evs)
    };
    let mut e = Engine::new(spec(&src));
    let cmds = flip(&mut e, 0, 6);
    // on, off, on, off (4 = flap_max): allowed; the 5th (on) latches; the 6th (off) is held.
    let changes = set_desired(&cmds);
    assert_eq!(changes.len(), 5, "{changes:#?}");
    assert_eq!(changes[4].2, Cause::Flap);
    assert_eq!(e.desired(), &active("message"));
    let v = e.view(t(60));
    assert!(v.flapping);
    assert!(v.reasons[0].text.contains("flapping"), "{:?}", v.reasons);

    // An override beats the latch.
    let c = e.step(override_set(Inactive, 70, 60), t(70));
    assert!(c.iter().any(|c| matches!(
        c,
        Command::SetDesired {
            desired: Inactive,
            cause: Cause::Override,
            ..
        }
    )));
    let c = drive(&mut e, vec![(200, Event::Tick)]);
    assert_eq!(
        set_desired(&c).last().map(|x| x.2),
        Some(Cause::OverrideExpired)
    );
    assert_eq!(
        e.desired(),
        &active("message"),
        "latch again after the override"
    );

    // Operator release: back to the rules (status is up: inactive).
    let c = e.step(
        Event::FlapRelease {
            actor: "oncall".into(),
        },
        t(210),
    );
    assert!(!e.view(t(210)).flapping);
    assert!(c.iter().any(|c| matches!(
        c,
        Command::SetDesired {
            desired: Inactive,
            cause: Cause::Flap,
            ..
        }
    )));

    // Quiet window: latch again, then 30 minutes without transitions release it.
    let mut e = Engine::new(spec(&src));
    flip(&mut e, 0, 6);
    assert!(e.view(t(60)).flapping);
    let deadline = e.next_deadline();
    assert_eq!(
        deadline,
        Some(t(50 + 1800)),
        "quiet window measured from the last transition"
    );
    let c = drive(&mut e, vec![(2000, Event::Tick)]);
    assert!(!e.view(t(2000)).flapping);
    assert_eq!(
        set_desired(&c).last().map(|x| (x.1.clone(), x.2)),
        Some((Inactive, Cause::Flap))
    );
}

/// `mode` reads the same precedence as the decision (override > drill > flap
/// latch > rules) and, under the rules, reports the blind guard before a
/// maintenance window. Each layer is stacked on the ones below it, then
/// removed again, so every pair is compared.
#[test]
fn engine_mode_follows_the_decision_precedence() {
    use crate::engine::Mode;
    use crate::engine::state::Layer;

    let mut e = engine();
    assert_eq!(e.mode(), Mode::Automatic);
    let steps: Vec<(i64, Event, Mode)> = vec![
        (1, maintenance(1).1, Mode::Maintenance),
        (2, blind(2).1, Mode::Blind),
        (3, drill(3, "message").1, Mode::Drill),
        (4, override_set(Inactive, 4, 60), Mode::Override),
        (
            5,
            Event::OverrideCleared {
                actor: "oncall".into(),
                reason: None,
            },
            Mode::Drill,
        ),
        (
            6,
            Event::DrillEnded {
                name: "monthly".into(),
            },
            Mode::Blind,
        ),
        (
            7,
            Event::SelfCheck {
                ok: true,
                detail: "ok".into(),
            },
            Mode::Maintenance,
        ),
        (
            8,
            Event::MaintenanceEnded {
                name: "sunday".into(),
            },
            Mode::Automatic,
        ),
    ];
    for (at, ev, want) in steps {
        let what = format!("{ev:?}");
        e.step(ev, t(at));
        assert_eq!(e.mode(), want, "after {what}");
        // The decision was taken by the layer the mode names.
        let layer = match want {
            Mode::Override => Layer::Override,
            Mode::Drill => Layer::Drill,
            Mode::Flapping => Layer::Flapping,
            Mode::Blind | Mode::Maintenance | Mode::Automatic => Layer::Rule,
        };
        assert_eq!(e.snapshot().layer, layer, "after {what}");
    }
}

/// The flap latch sits between a drill and the rules, also in `mode`.
#[test]
fn engine_mode_reports_the_flap_latch_below_drills_and_overrides() {
    use crate::engine::Mode;

    let src = BASE.replace(
        "when = { all = [ { down = \"status\" }, { alert = ['alertname=\"VendorDegraded\"'] } ] }",
        "when = { down = \"status\" }",
    );
    let mut e = Engine::new(spec(&src));
    let flips = (0..6)
        .map(|i| {
            let ev = if i % 2 == 0 {
                fail("status", "major_outage")
            } else {
                ok("status")
            };
            (i * 10, ev)
        })
        .collect();
    drive(&mut e, flips);
    e.step(blind(60).1, t(60));
    assert_eq!(e.mode(), Mode::Flapping, "the latch beats the blind guard");
    e.step(drill(61, "backup").1, t(61));
    assert_eq!(e.mode(), Mode::Drill);
    e.step(override_set(Inactive, 62, 60), t(62));
    assert_eq!(e.mode(), Mode::Override);
}

/// The mode is reported with the same strings as before it was typed.
#[test]
fn engine_mode_serializes_as_snake_case_strings() {
    use crate::engine::Mode;

    let all = [
        Mode::Override,
        Mode::Drill,
        Mode::Flapping,
        Mode::Blind,
        Mode::Maintenance,
        Mode::Automatic,
    ];
    let got: Vec<serde_json::Value> = all
        .iter()
        .map(|m| serde_json::to_value(m).unwrap())
        .collect();
    // What the CLI prints is what the API serializes.
    for (m, json) in all.iter().zip(&got) {
        assert_eq!(json, &serde_json::Value::from(m.to_string()));
    }
    assert_eq!(
        got,
        [
            "override",
            "drill",
            "flapping",
            "blind",
            "maintenance",
            "automatic"
        ]
    );
}
