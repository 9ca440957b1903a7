//! The page rendered from real status documents: a real engine stepped
//! through outages, a real actuator status, as the daemon builds them.

use std::collections::BTreeMap;
use std::time::Duration;

use super::access::Viewer;
use super::model::{Tone, banners, callers_now};
use super::render::{Draft, PageData, login_page, page};
use crate::config::Config;
use crate::domain::{Actual, AlertKey, Desired, ProbeOutcome, Timestamp};
use crate::engine::{Engine, Event, Override};
use crate::server::auth::TokenName;
use crate::server::control::StatusDoc;
use crate::server::wire::EventItem;
use crate::store::StoredEvent;
use crate::talkdesk::actuator::{ActuatorStatus, LastError};
use crate::telemetry::{AuditKind, AuditRecord};

const CONFIG: &str = r#"
[profiles.backup]
forward = { "+14155550100" = "+14155559999" }
default = "+14155558888"
message = { text = "We are experiencing technical difficulties.", language = "en-US" }

[profiles.closed]
message = { text = "We are closed.", language = "en-US" }

[[probes]]
id = "trunk-a"
type = "sip"
target = "sip:a.example.net"
rise = 1
fall = 1

[[rules]]
name = "trunk-down"
profile = "backup"
for = "0s"
clear_for = "0s"
min_active = "0s"
when = { down = "trunk-a" }

[engine]
flap_max = 1
"#;

const NOW: Timestamp = Timestamp(1_700_000_000_000);

fn config() -> Config {
    crate::config::from_toml_str(CONFIG, "page-test.toml").unwrap()
}

/// With self-check canaries, so the blind guard can engage.
fn config_with_canaries() -> Config {
    let toml = format!("{CONFIG}self_check = [\"udp://9.9.9.9:53\"]\n");
    crate::config::from_toml_str(&toml, "page-test.toml").unwrap()
}

fn fail(detail: &str) -> Event {
    Event::ProbeResult {
        probe: "trunk-a".into(),
        outcome: ProbeOutcome::failure(detail, None),
    }
}

fn ok() -> Event {
    Event::ProbeResult {
        probe: "trunk-a".into(),
        outcome: ProbeOutcome::success("200 OK", Some(Duration::from_millis(12))),
    }
}

/// A status document exactly as the daemon's loop makes one.
fn doc(engine: &Engine, act: ActuatorStatus, cfg: &Config) -> StatusDoc {
    StatusDoc {
        version: env!("CARGO_PKG_VERSION"),
        account: "default".into(),
        mode: engine.mode(),
        dry_run: cfg.raw.agent.dry_run,
        leader: true,
        leader_id: Some("replica-a".into()),
        epoch: 1,
        instance_id: "replica-a".into(),
        desired: engine.desired().clone(),
        actual: act.actual.clone(),
        converged: act.converged,
        engine: engine.view(NOW),
        actuator: act,
    }
}

fn on_in_talkdesk(cfg: &Config, profile: &str) -> ActuatorStatus {
    ActuatorStatus {
        desired: Some(Desired::Active {
            profile: profile.into(),
        }),
        actual: Actual {
            enabled: Some(true),
            settings: Some(cfg.profiles[profile].settings.clone()),
        },
        converged: true,
        ..ActuatorStatus::default()
    }
}

fn render(doc: &StatusDoc, cfg: &Config, viewer: &Viewer) -> String {
    let timeline = Ok(vec![EventItem::from(StoredEvent {
        id: 1,
        account: crate::store::DEFAULT_ACCOUNT.into(),
        record: AuditRecord::new(
            NOW,
            AuditKind::Decision,
            "fallback -> active(backup) (cause rule)",
        ),
    })]);
    page(&PageData {
        doc,
        config: cfg,
        timeline: &timeline,
        viewer,
        notice: None,
        draft: &Draft::default(),
    })
    .into_string()
}

fn operator() -> Viewer {
    Viewer::Session {
        token: TokenName("oncall".into()),
        can_act: true,
        csrf: "c5rf-token".into(),
        expires: NOW.add(Duration::from_secs(3600)),
    }
}

/// A dead trunk: the banner says ON with the profile and the engine's
/// reason; callers get the profile's forwards, default and message; the
/// probe table shows the failure; the timeline shows the decision.
#[test]
fn an_outage_reads_as_on_with_why_and_what_callers_get() {
    let cfg = config();
    let mut engine = Engine::new(cfg.engine_spec());
    engine.step(fail("timeout after 2s"), NOW);
    assert!(engine.desired().is_active());
    let doc = doc(&engine, on_in_talkdesk(&cfg, "backup"), &cfg);
    let html = render(&doc, &cfg, &operator());
    for want in [
        "Fallback ON",
        "profile <strong>backup</strong>",
        "trunk-down",
        "timeout after 2s",
        "with the settings of profile backup",
        "+14155550100 forwarded to +14155559999",
        "every other number forwarded to +14155558888",
        "others hear (en-US): &quot;We are experiencing technical difficulties.&quot;",
        "fallback -&gt; active(backup) (cause rule)",
        "<span class=\"pill bad\">down</span>",
    ] {
        assert!(html.contains(want), "missing {want:?} in\n{html}");
    }
    assert!(!html.contains("Fallback OFF"));
}

/// Text from outside (a SIP reason phrase, alert labels, an override
/// reason) is escaped: it shows as text and never becomes markup.
#[test]
fn outside_text_renders_as_text() {
    let cfg = config();
    let mut engine = Engine::new(cfg.engine_spec());
    engine.step(fail("503 <script>alert(1)</script>"), NOW);
    engine.step(
        Event::AlertFiring {
            key: AlertKey {
                source: "generic".into(),
                id: "a\"><img src=x onerror=alert(2)>".into(),
            },
            labels: BTreeMap::from([("alertname".into(), "<b>Voice</b>".into())]),
            summary: Some("<iframe src=//evil>".into()),
        },
        NOW,
    );
    engine.step(
        Event::OverrideSet(Override {
            desired: Desired::Inactive,
            reason: "<svg onload=alert(3)>".into(),
            actor: "oncall".into(),
            set_at: NOW,
            until: NOW.add(Duration::from_secs(600)),
        }),
        NOW,
    );
    let doc = doc(&engine, ActuatorStatus::default(), &cfg);
    let html = render(&doc, &cfg, &Viewer::Public);
    for want in [
        "503 &lt;script&gt;alert(1)&lt;/script&gt;",
        "&lt;b&gt;Voice&lt;/b&gt;",
        "&lt;iframe src=//evil&gt;",
        "&lt;svg onload=alert(3)&gt;",
    ] {
        assert!(html.contains(want), "missing {want:?}");
    }
    for never in ["<script>alert", "<b>Voice", "<iframe", "<svg", "<img src=x"] {
        assert!(!html.contains(never), "{never:?} became markup");
    }
    // The only script is the page's own, from its own route.
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains("<script src=\"/ui/refresh.js\" defer></script>"));
}

/// Every condition that changes what the agent does raises its banner.
#[test]
fn banners_name_every_condition() {
    let mut cfg = config_with_canaries();
    cfg.raw.agent.dry_run = true;
    let mut engine = Engine::new(cfg.engine_spec());
    engine.step(
        Event::MaintenanceStarted {
            name: "sunday".into(),
            until: NOW.add(Duration::from_secs(3600)),
        },
        NOW,
    );
    engine.step(
        Event::DrillStarted {
            name: "monthly".into(),
            profile: "closed".into(),
            until: NOW.add(Duration::from_secs(300)),
        },
        NOW,
    );
    engine.step(
        Event::SelfCheck {
            ok: false,
            detail: "udp://9.9.9.9:53 unreachable".into(),
        },
        NOW,
    );
    engine.step(
        Event::OverrideSet(Override {
            desired: Desired::Active {
                profile: "backup".into(),
            },
            reason: "carrier maintenance".into(),
            actor: "oncall".into(),
            set_at: NOW,
            until: NOW.add(Duration::from_secs(1800)),
        }),
        NOW,
    );
    let act = ActuatorStatus {
        blocked: true,
        last_error: Some(LastError {
            at: NOW,
            message: "Talkdesk answered 400: invalid number".into(),
            kind: "invalid".into(),
            status: Some(400),
            retryable: false,
            fields: Vec::new(),
        }),
        ..ActuatorStatus::default()
    };
    let mut d = doc(&engine, act, &cfg);
    d.leader = false;
    let got: Vec<(Tone, String)> = banners(&d).into_iter().map(|b| (b.tone, b.title)).collect();
    for want in [
        (Tone::Alert, "Talkdesk refused the change"),
        (
            Tone::Warn,
            "Blind: the agent cannot reach its self-check canaries",
        ),
        (Tone::Warn, "Drill"),
        (Tone::Info, "Maintenance window"),
        (Tone::Warn, "Manual override"),
        (Tone::Warn, "Dry run"),
        (Tone::Info, "Follower"),
    ] {
        assert!(
            got.contains(&(want.0, want.1.to_string())),
            "missing {want:?} in {got:?}"
        );
    }
    let html = render(&d, &cfg, &operator());
    assert!(html.contains("carrier maintenance"));
    assert!(html.contains("udp://9.9.9.9:53 unreachable"));
    assert!(html.contains("Talkdesk has the fallback <strong>unknown</strong>: not applied yet"));
    assert!(html.contains("not retrying"));
}

#[test]
fn flapping_holds_on_and_says_so() {
    let cfg = config();
    let mut engine = Engine::new(cfg.engine_spec());
    let mut t = NOW;
    for ev in [fail("timeout"), ok(), fail("timeout"), ok()] {
        engine.step(ev, t);
        t = t.add(Duration::from_secs(1));
    }
    let view = engine.view(t);
    assert!(view.flapping, "the test set-up flaps");
    let d = doc(&engine, ActuatorStatus::default(), &cfg);
    let b = banners(&d);
    assert!(
        b.iter()
            .any(|b| b.tone == Tone::Alert && b.title.starts_with("Flapping")),
        "{b:?}"
    );
}

/// What callers get follows what Talkdesk has, not what the engine wants.
#[test]
fn callers_get_what_talkdesk_has() {
    let cfg = config();
    let engine = Engine::new(cfg.engine_spec());
    let mut d = doc(&engine, ActuatorStatus::default(), &cfg);
    assert!(callers_now(&d, &cfg).headline.starts_with("Unknown"));

    d.actual.enabled = Some(false);
    let c = callers_now(&d, &cfg);
    assert!(c.headline.starts_with("Normal routing"), "{c:?}");
    assert!(c.items.is_empty());

    // On, with settings changed in the Talkdesk UI.
    let mut changed = cfg.profiles["closed"].settings.clone();
    changed.default = Some("+15550001111".into());
    d.actual = Actual {
        enabled: Some(true),
        settings: Some(changed),
    };
    let c = callers_now(&d, &cfg);
    assert!(c.headline.contains("settings no profile has"), "{c:?}");
    assert_eq!(
        c.items,
        [
            "every number forwarded to +15550001111",
            "others hear (en-US): \"We are closed.\""
        ]
    );

    // On, settings not read back: the desired profile's.
    d.actual.settings = None;
    d.desired = Desired::Active {
        profile: "closed".into(),
    };
    let c = callers_now(&d, &cfg);
    assert!(c.headline.contains("Profile closed gives"), "{c:?}");
    assert_eq!(c.items, ["callers hear (en-US): \"We are closed.\""]);
}

/// Forms: an operator gets them with the session's CSRF token in each; a
/// reader who cannot act, the public and a bearer reader get none.
#[test]
fn forms_carry_the_csrf_token_and_only_operators_get_them() {
    let cfg = config();
    let engine = Engine::new(cfg.engine_spec());
    let d = doc(&engine, ActuatorStatus::default(), &cfg);
    let html = render(&d, &cfg, &operator());
    for action in [
        "/ui/override",
        "/ui/override/clear",
        "/ui/flap/release",
        "/ui/logout",
    ] {
        assert!(
            html.contains(&format!("action=\"{action}\"")),
            "no {action} form"
        );
    }
    assert_eq!(
        html.matches("name=\"csrf\" value=\"c5rf-token\"").count(),
        4,
        "every form carries the CSRF token"
    );
    assert!(html.contains("<option value=\"backup\">backup</option>"));

    let reader = Viewer::Session {
        token: TokenName("dashboards".into()),
        can_act: false,
        csrf: "c5rf-token".into(),
        expires: NOW,
    };
    for viewer in [
        reader,
        Viewer::Public,
        Viewer::Bearer(TokenName("d".into())),
    ] {
        let html = render(&d, &cfg, &viewer);
        assert!(!html.contains("action=\"/ui/override\""), "{viewer:?}");
    }
    let html = render(&d, &cfg, &Viewer::Public);
    assert!(html.contains("action=\"/ui/login\""));
    assert!(html.contains("type=\"password\" name=\"token\""));
}

#[test]
fn the_login_page_warns_when_the_cookie_cannot_stick() {
    let html = login_page("Sign in.", Some("plain HTTP <warning>")).into_string();
    assert!(html.contains("action=\"/ui/login\""));
    assert!(html.contains("plain HTTP &lt;warning&gt;"));
}
