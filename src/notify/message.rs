//! What a notice says to people, whatever carries it: a title, what changed,
//! why, what callers now get, when, which instance, the status page link and
//! whether this is a dry run. Each target type lays this [`Message`] out in
//! its own format (`slack.rs`, `teams.rs`, `pagerduty.rs`, `webhook.rs`).

use std::collections::BTreeMap;

use crate::config::Config;
use crate::config::schema::ProfileConfig;
use crate::domain::{Desired, Timestamp};
use crate::engine::Reason;

use super::config::NoticeKind;
use super::notice::{DriftAction, Notice, StuckPhase, What};

/// Shown in every message sent while `agent.dry_run` is on.
pub const DRY_RUN_NOTE: &str = "dry run: Talkdesk not changed";

/// What every message needs besides the notice, from the configuration.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// `cluster.instance_id` (the host name by default).
    pub instance: String,
    /// `talkdesk.account`.
    pub account: Option<String>,
    pub dry_run: bool,
    /// `agent.public_url`: the status page.
    pub public_url: Option<String>,
    /// For what callers get under each profile.
    pub profiles: BTreeMap<String, ProfileConfig>,
}

impl Context {
    pub fn from_config(config: &Config) -> Context {
        Context {
            instance: config.instance_id(),
            account: config.raw.talkdesk.account.clone(),
            dry_run: config.raw.agent.dry_run,
            public_url: config.raw.agent.public_url.clone(),
            profiles: config.raw.profiles.clone(),
        }
    }
}

/// How bad it is: colours in chat, PagerDuty's severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Calls are being diverted, or the decision cannot be applied.
    Critical,
    /// Worth a look: flapping, blind, a profile change, a change made outside the agent.
    Warning,
    /// Something ended well: the fallback is off, Talkdesk matches again, a latch released.
    Resolved,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Resolved => "resolved",
        }
    }
}

/// A notice in words, the same for every target.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Unique per notice (the same for every target and every retry): lets a
    /// receiver drop a duplicate.
    pub id: String,
    pub event: NoticeKind,
    /// It ends what an earlier notice started (see `Notice::resolved`).
    pub resolved: bool,
    pub severity: Severity,
    /// One line.
    pub title: String,
    /// What changed, one or two sentences.
    pub changed: String,
    /// Why: one line per reason.
    pub why: Vec<String>,
    /// What callers get now.
    pub callers: String,
    pub at: Timestamp,
    pub instance: String,
    pub account: Option<String>,
    pub dry_run: bool,
    /// The status page.
    pub link: Option<String>,
    /// What this notice opens or closes, the same in every process: the
    /// activation, the stuck actuation, the latch, the blind episode.
    /// PagerDuty's `dedup_key`.
    pub incident: String,
}

impl Message {
    pub fn new(notice: &Notice, cx: &Context, id: String) -> Message {
        let event = notice.kind();
        let words = words(notice, cx);
        Message {
            id,
            event,
            resolved: notice.resolved(),
            severity: words.severity,
            title: words.title,
            changed: words.changed,
            why: words.why,
            callers: words.callers,
            at: notice.at,
            instance: cx.instance.clone(),
            account: cx.account.clone(),
            dry_run: cx.dry_run,
            link: cx.public_url.clone(),
            incident: incident(notice, cx),
        }
    }
}

/// The parts of a message that depend on what happened.
struct Words {
    severity: Severity,
    title: String,
    changed: String,
    why: Vec<String>,
    callers: String,
}

fn words(notice: &Notice, cx: &Context) -> Words {
    let desired = &notice.desired;
    match &notice.what {
        What::Decision {
            previous,
            cause,
            reasons,
            activation,
        } => decision(
            notice.kind(),
            previous,
            desired,
            cause.as_str(),
            reasons,
            *activation,
            cx,
        ),
        What::Stuck {
            phase,
            after,
            since,
            attempts,
            last_error,
            blocked,
            talkdesk_enabled,
        } => match phase {
            StuckPhase::Started => stuck(
                desired,
                (*after, *since, *attempts),
                (last_error.as_deref(), *blocked, *talkdesk_enabled),
            ),
            StuckPhase::Ended | StuckPhase::Settled => Words {
                severity: Severity::Resolved,
                title: format!("Talkdesk updated: the fallback is {}", state(desired)),
                changed: format!(
                    "Talkdesk matches the decision again: fallback {}{}.",
                    state(desired),
                    since.map_or_else(String::new, |t| format!("; it differed since {t}"))
                ),
                why: vec![],
                callers: callers(desired, cx),
            },
        },
        What::Flap {
            since,
            profile,
            detail,
            resolved,
        } => flap(*since, profile, detail, *resolved, callers(desired, cx)),
        What::Blind {
            since,
            detail,
            resolved,
        } => blind(*since, detail, *resolved, callers(desired, cx)),
        What::Drift {
            action,
            talkdesk,
            until,
        } => drift(*action, talkdesk.enabled, *until, desired, cx),
    }
}

/// Talkdesk has differed from the decision for `after`.
fn stuck(
    desired: &Desired,
    (after, since, attempts): (std::time::Duration, Option<Timestamp>, u32),
    (last_error, blocked, talkdesk_enabled): (Option<&str>, bool, Option<bool>),
) -> Words {
    Words {
        severity: Severity::Critical,
        title: format!(
            "Talkdesk not updated for {}: the fallback should be {}",
            fmt_dur(after),
            state(desired)
        ),
        changed: format!(
            "Talkdesk does not have the decided state, fallback {}, since {}: {} failed attempt(s); {}.",
            state(desired),
            since.map_or_else(|| "an unknown time".to_string(), |t| t.to_string()),
            attempts,
            if blocked {
                "not retrying until the decision or the configuration changes"
            } else {
                "still retrying"
            }
        ),
        why: vec![match last_error {
            Some(e) => format!("last error: {e}"),
            None => "no error reported yet (the attempt may still be in flight)".to_string(),
        }],
        callers: stuck_callers(talkdesk_enabled),
    }
}

fn flap(since: Timestamp, profile: &str, detail: &str, resolved: bool, callers: String) -> Words {
    if resolved {
        return Words {
            severity: Severity::Resolved,
            title: "Flap latch released: the rules decide again".to_string(),
            changed: format!(
                "The flap latch (profile {profile}, set at {since}) was released; the rules decide again."
            ),
            why: vec![detail.to_string()],
            callers,
        };
    }
    Words {
        severity: Severity::Warning,
        title: format!("Flapping: the fallback is held ON ({profile})"),
        changed: format!(
            "The flap latch holds the fallback ON with profile {profile} since {since}; the rules no longer switch it until it is released."
        ),
        why: vec![detail.to_string()],
        callers,
    }
}

fn blind(since: Timestamp, detail: &str, resolved: bool, callers: String) -> Words {
    if resolved {
        return Words {
            severity: Severity::Resolved,
            title: "Self-check ok again: probe-driven rules act again".to_string(),
            changed: format!(
                "The agent can reach its canaries again (blind since {since}); probe-driven rules act again."
            ),
            why: vec![detail.to_string()],
            callers,
        };
    }
    Words {
        severity: Severity::Warning,
        title: "Blind: the agent's own self-check fails; probe-driven rules are frozen".to_string(),
        changed: format!(
            "The agent cannot reach its own canaries since {since}: probe failures may be its own, so rules that read probes are frozen (alerts and overrides still act)."
        ),
        why: vec![detail.to_string()],
        callers,
    }
}

fn decision(
    event: NoticeKind,
    previous: &Desired,
    desired: &Desired,
    cause: &str,
    reasons: &[Reason],
    activation: Option<Timestamp>,
    cx: &Context,
) -> Words {
    let (severity, title, changed) = match (event, previous.profile(), desired.profile()) {
        (NoticeKind::Profile, Some(from), Some(to)) => (
            Severity::Warning,
            format!("Fallback profile changed: {from} -> {to}"),
            format!(
                "The fallback stays ON; its profile changed from {from} to {to} (cause: {cause})."
            ),
        ),
        (_, _, Some(to)) => (
            Severity::Critical,
            format!("Fallback ON: {to}"),
            format!("The fallback was switched ON with profile {to} (cause: {cause})."),
        ),
        (_, from, None) => (
            Severity::Resolved,
            "Fallback OFF".to_string(),
            format!(
                "The fallback was switched OFF{}{} (cause: {cause}).",
                from.map_or_else(String::new, |p| format!("; it was ON with profile {p}")),
                activation.map_or_else(String::new, |t| format!(" since {t}"))
            ),
        ),
    };
    Words {
        severity,
        title,
        changed,
        why: reasons.iter().map(Reason::line).collect(),
        callers: callers(desired, cx),
    }
}

fn drift(
    action: DriftAction,
    enabled: Option<bool>,
    until: Option<Timestamp>,
    desired: &Desired,
    cx: &Context,
) -> Words {
    let has = match enabled {
        Some(true) => "ON",
        Some(false) => "OFF",
        None => "in an unknown state",
    };
    let until = until.map_or_else(String::new, |t| format!(" until {t}"));
    let (changed, callers) = match action {
        DriftAction::Corrected => (
            format!(
                "Talkdesk's fallback was found {has}, not as decided (fallback {}); the agent is correcting it (talkdesk.on_drift = \"correct\").",
                state(desired)
            ),
            format!("once corrected: {}", self::callers(desired, cx)),
        ),
        DriftAction::Adopted => (
            format!(
                "The fallback was switched {has} in Talkdesk outside the agent (the Talkdesk UI, break-glass or another tool); adopted as an override{until} (talkdesk.on_drift = \"respect\")."
            ),
            self::callers(desired, cx),
        ),
        DriftAction::SettingsKept => (
            format!(
                "Talkdesk's fallback settings were edited outside the agent; kept{until} (talkdesk.on_drift = \"respect\"); on/off still follows the decisions."
            ),
            "the settings as edited in Talkdesk".to_string(),
        ),
    };
    Words {
        severity: Severity::Warning,
        title: "Talkdesk changed outside the agent".to_string(),
        changed,
        why: vec![],
        callers,
    }
}

/// `ON (profile backup-site)` or `OFF`.
pub fn state(d: &Desired) -> String {
    match d {
        Desired::Active { profile } => format!("ON (profile {profile})"),
        Desired::Inactive => "OFF".to_string(),
    }
}

/// What callers get under `desired`, in `ProfileConfig::callers_get`'s words.
fn callers(desired: &Desired, cx: &Context) -> String {
    match desired {
        Desired::Inactive => "normal call handling (the fallback is off)".to_string(),
        Desired::Active { profile } => match cx.profiles.get(profile) {
            Some(p) => p.callers_get(),
            None => format!("the settings of profile {profile} (not in this configuration)"),
        },
    }
}

/// What callers get while Talkdesk has not followed the decision.
fn stuck_callers(enabled: Option<bool>) -> String {
    match enabled {
        Some(true) => {
            "Talkdesk still has the fallback ON: callers get its current fallback settings"
                .to_string()
        }
        Some(false) => {
            "Talkdesk still has the fallback OFF: callers get normal call handling".to_string()
        }
        None => "unknown: Talkdesk's current state cannot be read".to_string(),
    }
}

/// The incident a notice opens or closes, the same in every process:
/// `continuity-agent/<account>/<topic>[/<start in ms>]`. An activation is
/// named by when the fallback went on (persisted by the engine), the flap
/// latch and the blind guard by when they started (persisted too); a stuck
/// actuation is one per account at a time, so a process that finds Talkdesk
/// matching can close one a previous process opened.
pub fn incident(notice: &Notice, cx: &Context) -> String {
    let account = cx.account.as_deref().unwrap_or("default");
    let topic = match &notice.what {
        What::Decision { activation, .. } => {
            format!("fallback/{}", activation.unwrap_or(notice.at).as_millis())
        }
        What::Stuck { .. } => "stuck".to_string(),
        What::Flap { since, .. } => format!("flap/{}", since.as_millis()),
        What::Blind { since, .. } => format!("blind/{}", since.as_millis()),
        What::Drift { .. } => format!("drift/{}", notice.at.as_millis()),
    };
    format!("continuity-agent/{account}/{topic}")
}

/// `2m`, `1h 30m`.
pub fn fmt_dur(d: std::time::Duration) -> String {
    humantime::format_duration(std::time::Duration::from_secs(d.as_secs().max(1))).to_string()
}

/// At most `max` characters, with `…` when cut (chat services refuse longer
/// fields; the whole text is in the audit log and the status page).
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
pub(super) mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::schema::MessageConfig;
    use crate::domain::Actual;
    use crate::engine::Cause;

    pub fn context() -> Context {
        let mut profiles = BTreeMap::new();
        profiles.insert(
            "backup".to_string(),
            ProfileConfig {
                forward: [("+14155550100".to_string(), "+14155559999".to_string())].into(),
                default: Some("+14155558888".to_string()),
                message: Some(MessageConfig {
                    text: "We are sorry".into(),
                    language: "en-US".into(),
                }),
            },
        );
        Context {
            instance: "replica-a".into(),
            account: Some("acme".into()),
            dry_run: false,
            public_url: Some("https://continuity.example.net/".into()),
            profiles,
        }
    }

    pub fn on(p: &str) -> Desired {
        Desired::Active {
            profile: p.to_string(),
        }
    }

    pub fn activation() -> Notice {
        Notice {
            at: Timestamp::from_millis(1_764_540_000_000),
            desired: on("backup"),
            what: What::Decision {
                previous: Desired::Inactive,
                cause: Cause::Rule,
                reasons: vec![Reason {
                    source: "trunks-down".into(),
                    text: "trunks-down: 2 of 2 probes matching \"trunk-*\" down".into(),
                }],
                activation: Some(Timestamp::from_millis(1_764_540_000_000)),
            },
        }
    }

    pub fn deactivation() -> Notice {
        Notice {
            at: Timestamp::from_millis(1_764_540_600_000),
            desired: Desired::Inactive,
            what: What::Decision {
                previous: on("backup"),
                cause: Cause::Rule,
                reasons: vec![Reason {
                    source: "rules".into(),
                    text: "no rule is firing".into(),
                }],
                activation: Some(Timestamp::from_millis(1_764_540_000_000)),
            },
        }
    }

    #[test]
    fn an_activation_says_what_why_what_callers_get_and_names_its_incident() {
        let m = Message::new(&activation(), &context(), "id-1".into());
        assert_eq!(m.title, "Fallback ON: backup");
        assert_eq!(
            m.changed,
            "The fallback was switched ON with profile backup (cause: rule)."
        );
        assert_eq!(
            m.why,
            ["trunks-down: 2 of 2 probes matching \"trunk-*\" down"]
        );
        assert_eq!(
            m.callers,
            "+14155550100 forwarded to +14155559999; every other number forwarded to +14155558888; others hear (en-US): \"We are sorry\""
        );
        assert_eq!(m.severity, Severity::Critical);
        assert_eq!(m.incident, "continuity-agent/acme/fallback/1764540000000");
        assert_eq!(m.link.as_deref(), Some("https://continuity.example.net/"));
    }

    #[test]
    fn a_deactivation_closes_the_incident_its_activation_opened() {
        let (cx, id) = (context(), String::new);
        let on = Message::new(&activation(), &cx, id());
        let off = Message::new(&deactivation(), &cx, id());
        assert_eq!(off.incident, on.incident);
        assert_eq!(off.title, "Fallback OFF");
        assert_eq!(off.callers, "normal call handling (the fallback is off)");
        assert!(
            off.changed
                .contains("it was ON with profile backup since 2025-11-30T22:00:00.000Z"),
            "{}",
            off.changed
        );
    }

    #[test]
    fn stuck_says_how_long_the_last_error_and_what_talkdesk_still_does() {
        let n = Notice {
            at: Timestamp::from_millis(1_764_540_120_000),
            desired: on("backup"),
            what: What::Stuck {
                phase: StuckPhase::Started,
                after: Duration::from_secs(120),
                since: Some(Timestamp::from_millis(1_764_540_000_000)),
                attempts: 7,
                last_error: Some("HTTP 503 from put_activation".into()),
                blocked: false,
                talkdesk_enabled: Some(false),
            },
        };
        let m = Message::new(&n, &context(), String::new());
        assert_eq!(
            m.title,
            "Talkdesk not updated for 2m: the fallback should be ON (profile backup)"
        );
        assert!(
            m.changed.contains("7 failed attempt(s); still retrying"),
            "{}",
            m.changed
        );
        assert_eq!(m.why, ["last error: HTTP 503 from put_activation"]);
        assert_eq!(
            m.callers,
            "Talkdesk still has the fallback OFF: callers get normal call handling"
        );
        assert_eq!(m.incident, "continuity-agent/acme/stuck");
        assert!(!m.resolved);
    }

    #[test]
    fn drift_says_what_on_drift_did() {
        let n = Notice {
            at: Timestamp::from_millis(1_764_540_000_000),
            desired: Desired::Inactive,
            what: What::Drift {
                action: DriftAction::Adopted,
                talkdesk: Actual {
                    enabled: Some(false),
                    settings: None,
                },
                until: Some(Timestamp::from_millis(1_764_543_600_000)),
            },
        };
        let m = Message::new(&n, &context(), String::new());
        assert_eq!(m.event, NoticeKind::Drift);
        assert!(
            m.changed
                .starts_with("The fallback was switched OFF in Talkdesk outside the agent")
                && m.changed.contains("until 2025-11-30T23:00:00.000Z"),
            "{}",
            m.changed
        );
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }
}
