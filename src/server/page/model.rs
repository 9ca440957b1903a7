//! What the status page says, derived from the status document (the same
//! one `GET /v1/status` serves) and the configuration: the page's few
//! judgements (what callers get now, which banners to raise, how times read)
//! kept apart from the markup, so tests check them without parsing HTML.
//! Everything is read from typed fields; nothing is re-derived from text.

use crate::config::Config;
use crate::config::schema::ProfileConfig;
use crate::domain::{Desired, Timestamp};
use crate::engine::Mode;
use crate::server::client::render::span;
use crate::server::control::StatusDoc;

/// How loud a banner or notice is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Ok,
    Info,
    Warn,
    Alert,
}

impl Tone {
    /// The CSS class.
    pub fn class(self) -> &'static str {
        match self {
            Tone::Ok => "ok",
            Tone::Info => "info",
            Tone::Warn => "warn",
            Tone::Alert => "alert",
        }
    }
}

/// A line across the page about a condition that changes what the agent
/// does (flapping, blind, maintenance, drill, override, dry run, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Banner {
    pub tone: Tone,
    pub title: String,
    pub text: String,
}

/// What callers get now, from what Talkdesk was last seen to have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callers {
    pub headline: String,
    /// One item per forwarded number, the default, the message.
    pub items: Vec<String>,
}

/// The outcome of an operator's action, shown once above the page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub tone: Tone,
    pub title: String,
    pub lines: Vec<String>,
}

/// `ON, profile backup` or `OFF`.
pub fn desired_text(d: &Desired) -> String {
    match d {
        Desired::Active { profile } => format!("ON, profile {profile}"),
        Desired::Inactive => "OFF".to_string(),
    }
}

/// The engine's reasons for the current decision, worded as the CLI words them.
pub fn reasons(doc: &StatusDoc) -> Vec<String> {
    doc.engine
        .reasons
        .iter()
        .map(crate::engine::Reason::line)
        .collect()
}

/// What callers get now. Talkdesk's last known state decides, not the
/// engine's wish: while the two differ, callers get what Talkdesk has.
pub fn callers_now(doc: &StatusDoc, config: &Config) -> Callers {
    let lines = |p: &ProfileConfig| {
        let parts = p.callers_get_parts();
        if parts.is_empty() {
            vec![p.callers_get()]
        } else {
            parts
        }
    };
    match (doc.actual.enabled, &doc.actual.settings) {
        (Some(false), _) => Callers {
            headline: "Normal routing: the Fallback Experience is off in Talkdesk.".into(),
            items: Vec::new(),
        },
        (None, _) => Callers {
            headline: "Unknown: the agent has not read Talkdesk's state yet.".into(),
            items: Vec::new(),
        },
        (Some(true), Some(settings)) => {
            let named = config
                .profiles
                .iter()
                .find(|(_, p)| &p.settings == settings)
                .map(|(name, _)| name);
            let headline = match named {
                Some(name) => format!(
                    "The Fallback Experience is ON in Talkdesk, with the settings of profile {name}:"
                ),
                None => "The Fallback Experience is ON in Talkdesk, with settings no profile has \
                         (changed outside the agent?):"
                    .to_string(),
            };
            Callers {
                headline,
                items: lines(&ProfileConfig::from(settings)),
            }
        }
        (Some(true), None) => {
            let profile = doc
                .desired
                .profile()
                .and_then(|p| config.raw.profiles.get(p).map(|c| (p, c)));
            match profile {
                Some((name, p)) => Callers {
                    headline: format!(
                        "The Fallback Experience is ON in Talkdesk; its settings were not read \
                         back. Profile {name} gives:"
                    ),
                    items: lines(p),
                },
                None => Callers {
                    headline: "The Fallback Experience is ON in Talkdesk; its settings were not \
                               read back."
                        .into(),
                    items: Vec::new(),
                },
            }
        }
    }
}

/// Every condition that changes what the agent does, loudest first.
pub fn banners(doc: &StatusDoc) -> Vec<Banner> {
    let now = doc.engine.now;
    let e = &doc.engine;
    let a = &doc.actuator;
    let mut out = Vec::new();
    let mut add = |tone, title: &str, text: String| {
        out.push(Banner {
            tone,
            title: title.to_string(),
            text,
        })
    };
    if let Some(why) = &a.credentials_rejected {
        add(
            Tone::Alert,
            "Talkdesk rejects the agent's credentials",
            format!("{why}. Check talkdesk.client_id and talkdesk.client_secret."),
        );
    }
    if a.blocked
        && let Some(err) = &a.last_error
    {
        add(
            Tone::Alert,
            "Talkdesk refused the change",
            format!(
                "{}. The agent does not retry until the decision or the configuration changes.",
                err.message
            ),
        );
    }
    if e.flapping {
        let text = e.flap.reason.clone().unwrap_or_else(|| {
            "the rules switched the fallback on and off too often; it is held on".into()
        });
        add(Tone::Alert, "Flapping: the fallback is held on", text);
    }
    if let Some(b) = &e.blind {
        add(
            Tone::Warn,
            "Blind: the agent cannot reach its self-check canaries",
            format!(
                "{} (since {}). Rules that read probes are frozen; alerts and overrides still act.",
                b.detail,
                relative(b.since, now)
            ),
        );
    }
    for d in &e.drills {
        add(
            Tone::Warn,
            "Drill",
            format!(
                "{}: fallback on with profile {} until {} ({}).",
                d.name,
                d.profile,
                clock(d.until, now),
                relative(d.until, now)
            ),
        );
    }
    for w in &e.maintenance {
        add(
            Tone::Info,
            "Maintenance window",
            format!(
                "{} until {} ({}): probes cannot newly switch the fallback on; alerts and overrides still act.",
                w.name,
                clock(w.until, now),
                relative(w.until, now)
            ),
        );
    }
    if let Some(ov) = &e.override_ {
        let what = match &ov.desired {
            Desired::Active { profile } => format!("fallback forced ON with profile {profile}"),
            Desired::Inactive => "fallback forced OFF".to_string(),
        };
        add(
            Tone::Warn,
            "Manual override",
            format!(
                "{what} until {} ({}), set by {}: {}",
                clock(ov.until, now),
                relative(ov.until, now),
                ov.actor,
                ov.reason
            ),
        );
    }
    if doc.dry_run {
        add(
            Tone::Warn,
            "Dry run",
            "agent.dry_run is on: writes to Talkdesk are logged and audited, not sent.".into(),
        );
    }
    if !doc.leader {
        let leader = doc.leader_id.as_deref().unwrap_or("unknown");
        add(
            Tone::Info,
            "Follower",
            format!(
                "This replica ({}) does not lead (leader: {leader}); it shows its own view, and changes made here are queued for the leader.",
                doc.instance_id
            ),
        );
    }
    out
}

/// The mode as people read it.
pub fn mode_text(m: Mode) -> &'static str {
    match m {
        Mode::Override => "manual override",
        Mode::Drill => "drill",
        Mode::Flapping => "flapping (held on)",
        Mode::Blind => "blind (probe rules frozen)",
        Mode::Maintenance => "maintenance window",
        Mode::Automatic => "automatic",
    }
}

/// `14:05:07 UTC` on the agent's current day, `2026-11-30 14:05 UTC` otherwise.
pub fn clock(t: Timestamp, now: Timestamp) -> String {
    let (Some(at), Some(today)) = (utc(t), utc(now)) else {
        return t.to_rfc3339();
    };
    if at.date_naive() == today.date_naive() {
        at.format("%H:%M:%S UTC").to_string()
    } else {
        at.format("%Y-%m-%d %H:%M UTC").to_string()
    }
}

/// `3m ago`, `in 12m`, `now`.
pub fn relative(t: Timestamp, now: Timestamp) -> String {
    if t.since(now).as_secs() == 0 && now.since(t).as_secs() == 0 {
        "now".to_string()
    } else if t > now {
        format!("in {}", span(t.since(now)))
    } else {
        format!("{} ago", span(now.since(t)))
    }
}

fn utc(t: Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_a_clock_and_a_distance() {
        let now = Timestamp(1_700_000_000_000); // 2023-11-14T22:13:20Z
        assert_eq!(clock(now, now), "22:13:20 UTC");
        assert_eq!(
            clock(now.add(std::time::Duration::from_secs(3 * 3600)), now),
            "2023-11-15 01:13 UTC"
        );
        assert_eq!(relative(now, now), "now");
        assert_eq!(
            relative(now.add(std::time::Duration::from_secs(720)), now),
            "in 12m"
        );
        assert_eq!(
            relative(now.sub(std::time::Duration::from_secs(45)), now),
            "45s ago"
        );
    }
}
