//! `[[notify]]` as operators write it: the target types, the event names of
//! `on`, which events each type can send, and the defaults. Validation (names,
//! secrets, URLs, `on`) is `config/validate/notify.rs`, with the rest of the
//! file's checks.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::config::Dur;

/// Documented defaults, each with its reason.
pub mod defaults {
    use crate::config::Dur;

    /// Two minutes: the actuator retries for at least that long (1 s backoff
    /// doubling to 30 s) before a person is told; a Talkdesk blip that heals
    /// within a few retries is not worth a message.
    pub const STUCK_AFTER: Dur = Dur::from_secs(120);
    /// Where PagerDuty's Events API v2 takes events.
    pub const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
}

fn d_stuck_after() -> Dur {
    defaults::STUCK_AFTER
}

/// Where a notification goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyType {
    /// A Slack incoming webhook (Block Kit message).
    Slack,
    /// A Microsoft Teams Workflows webhook (an Adaptive Card).
    Teams,
    /// PagerDuty Events API v2: trigger and resolve incidents.
    PagerDuty,
    /// A generic JSON webhook, optionally HMAC-signed.
    Webhook,
}

impl NotifyType {
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyType::Slack => "slack",
            NotifyType::Teams => "teams",
            NotifyType::PagerDuty => "pagerduty",
            NotifyType::Webhook => "webhook",
        }
    }

    /// Whether this type can send `event`. PagerDuty cannot send `drift`: an
    /// incident needs an end to resolve it with, and a change made outside
    /// the agent has none (what the agent does about it is a decision, sent
    /// as `activate` or `deactivate`).
    pub fn supports(self, event: NoticeKind) -> bool {
        !(self == NotifyType::PagerDuty && event == NoticeKind::Drift)
    }

    /// The events a target of this type gets when `on` is not set: every
    /// event it can send.
    pub fn default_events(self) -> Vec<NoticeKind> {
        NoticeKind::ALL
            .into_iter()
            .filter(|e| self.supports(*e))
            .collect()
    }
}

impl std::fmt::Display for NotifyType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a notification is about: the names of `on = [...]`, and the `event`
/// field of the webhook payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// The fallback was switched on.
    Activate,
    /// The fallback was switched off.
    Deactivate,
    /// The fallback stays on with another profile.
    Profile,
    /// Talkdesk has not matched the decision for `stuck_after`; and, to the
    /// same targets, when it matches again.
    Stuck,
    /// The flap latch was set, or released.
    Flap,
    /// The blind guard engaged (the agent's own self-check fails), or released.
    Blind,
    /// Talkdesk was changed outside the agent.
    Drift,
}

impl NoticeKind {
    pub const ALL: [NoticeKind; 7] = [
        NoticeKind::Activate,
        NoticeKind::Deactivate,
        NoticeKind::Profile,
        NoticeKind::Stuck,
        NoticeKind::Flap,
        NoticeKind::Blind,
        NoticeKind::Drift,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Activate => "activate",
            NoticeKind::Deactivate => "deactivate",
            NoticeKind::Profile => "profile",
            NoticeKind::Stuck => "stuck",
            NoticeKind::Flap => "flap",
            NoticeKind::Blind => "blind",
            NoticeKind::Drift => "drift",
        }
    }
}

impl std::fmt::Display for NoticeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[notify]]` target. Secrets are read by validation (`*_file`) into
/// the inline fields, and validation sets `name` and `on` when they are left
/// out, so a validated target has both.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    #[serde(rename = "type")]
    pub kind: NotifyType,
    /// The target's name in metrics, logs and the audit log (never its URL:
    /// Slack and Teams URLs carry a secret). Default `<type>-<n>`, the n-th
    /// target of that type.
    #[serde(default)]
    pub name: Option<String>,
    /// Slack, Teams, webhook: where to POST (required). PagerDuty: the Events
    /// API v2 endpoint (default [`defaults::PAGERDUTY_URL`]).
    #[serde(default, skip_serializing)]
    pub url: Option<SecretString>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// PagerDuty: the integration's routing key (required).
    #[serde(default, skip_serializing)]
    pub routing_key: Option<SecretString>,
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    /// Webhook: signs each body (`X-Continuity-Signature`).
    #[serde(default, skip_serializing)]
    pub hmac_secret: Option<SecretString>,
    #[serde(default)]
    pub hmac_secret_file: Option<PathBuf>,
    /// The events this target gets. Default: every event its type can send.
    #[serde(default)]
    pub on: Option<Vec<NoticeKind>>,
    /// How long Talkdesk may differ from the decision before `stuck` is sent.
    #[serde(default = "d_stuck_after")]
    pub stuck_after: Dur,
}

impl NotifyConfig {
    /// The target's name (set by validation when left out).
    pub fn name(&self) -> &str {
        self.name.as_deref().unwrap_or(self.kind.as_str())
    }

    /// The events this target gets.
    pub fn events(&self) -> Vec<NoticeKind> {
        self.on
            .clone()
            .unwrap_or_else(|| self.kind.default_events())
    }

    pub fn stuck_after(&self) -> Duration {
        self.stuck_after.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pagerduty_sends_every_event_but_drift_by_default() {
        assert_eq!(NotifyType::Slack.default_events(), NoticeKind::ALL.to_vec());
        let pd = NotifyType::PagerDuty.default_events();
        assert!(!pd.contains(&NoticeKind::Drift), "{pd:?}");
        assert_eq!(pd.len(), NoticeKind::ALL.len() - 1);
    }

    #[test]
    fn names_are_the_configuration_spelling() {
        for k in NoticeKind::ALL {
            let json = serde_json::to_value(k).unwrap();
            assert_eq!(json, k.as_str());
        }
        for t in [
            NotifyType::Slack,
            NotifyType::Teams,
            NotifyType::PagerDuty,
            NotifyType::Webhook,
        ] {
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
    }
}
