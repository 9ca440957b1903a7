//! The write plan: given what Talkdesk has and what the engine wants, which
//! writes bring Talkdesk there, in which order. Pure: no HTTP, no clock, so
//! every rule below is a row in a table test.
//!
//! - **Write only what differs.** Every write is an idempotent set; a part
//!   that already matches is not written again.
//! - **Settings before activation.** Activating with old settings would send
//!   callers to the wrong number, so a settings write always comes first.
//! - **Deactivation leaves settings alone.** Turning the fallback off only
//!   flips the switch; the settings do not matter while it is off.
//! - **Unknown is different.** A part of Talkdesk's state that could not be
//!   read (`None`) is written, never assumed to match: each write is a set,
//!   so writing blind is safe, and the fallback is what matters.
//! - **Talkdesk's own form counts.** Talkdesk may store settings in a
//!   normalised form (numbers, language tag). When a PUT's reply showed that,
//!   the [`StoredForm`] makes the stored form match what we sent, so a
//!   read-back is not rewritten (or mistaken for drift) every reconcile.

use std::collections::BTreeMap;

use super::error::TalkdeskError;
use crate::domain::{Actual, Desired, FallbackSettings, Profile};

/// One write to Talkdesk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `PUT` the whole settings (replace).
    PutSettings(FallbackSettings),
    /// `PUT {"enabled": bool}`: a set, never a toggle.
    PutActivation(bool),
}

impl Step {
    /// The Talkdesk operation this step is.
    pub fn op(&self) -> super::Op {
        match self {
            Step::PutSettings(_) => super::Op::PutSettings,
            Step::PutActivation(_) => super::Op::PutActivation,
        }
    }
}

impl std::fmt::Display for Step {
    /// How a step reads in logs and audit records.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::PutSettings(_) => f.write_str("write settings"),
            Step::PutActivation(enabled) => write!(f, "set enabled={enabled}"),
        }
    }
}

/// Settings we sent, and the different form Talkdesk said it stored them in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredForm {
    pub sent: FallbackSettings,
    pub stored: FallbackSettings,
}

/// What Talkdesk's settings must be for `desired`: `None` when the fallback
/// is to be off (settings do not matter then).
///
/// Errors with [`TalkdeskError::UnknownProfile`] when `desired` names a
/// profile the configuration does not have.
pub fn target<'a>(
    desired: &Desired,
    profiles: &'a BTreeMap<String, Profile>,
) -> Result<Option<&'a FallbackSettings>, TalkdeskError> {
    match desired {
        Desired::Inactive => Ok(None),
        Desired::Active { profile } => profiles
            .get(profile)
            .map(|p| Some(&p.settings))
            .ok_or_else(|| TalkdeskError::UnknownProfile(profile.clone())),
    }
}

/// The writes that take Talkdesk from `actual` to `desired`, in order.
/// Empty when Talkdesk already matches.
pub fn plan(
    actual: &Actual,
    desired: &Desired,
    profiles: &BTreeMap<String, Profile>,
    form: Option<&StoredForm>,
) -> Result<Vec<Step>, TalkdeskError> {
    let mut steps = Vec::new();
    match target(desired, profiles)? {
        Some(settings) => {
            if !settings_match(actual.settings.as_ref(), settings, form) {
                steps.push(Step::PutSettings(settings.clone()));
            }
            if actual.enabled != Some(true) {
                steps.push(Step::PutActivation(true));
            }
        }
        None => {
            if actual.enabled != Some(false) {
                steps.push(Step::PutActivation(false));
            }
        }
    }
    Ok(steps)
}

/// Talkdesk already has `desired`: nothing to write.
pub fn satisfies(
    actual: &Actual,
    desired: &Desired,
    profiles: &BTreeMap<String, Profile>,
    form: Option<&StoredForm>,
) -> bool {
    plan(actual, desired, profiles, form).is_ok_and(|steps| steps.is_empty())
}

/// Whether `stored` routes callers exactly as `sent` does, allowing only the
/// normalisations a backend may apply: phone numbers compared by their
/// digits and `+` (spaces, dashes, dots and brackets dropped), the language
/// tag case-insensitively. Anything else (another number, another message)
/// is a different setting: a write answered with it did not do what was
/// asked, whatever the status said.
pub fn equivalent(sent: &FallbackSettings, stored: &FallbackSettings) -> bool {
    fn number(n: &str) -> String {
        n.chars()
            .filter(|c| c.is_ascii_digit() || *c == '+')
            .collect()
    }
    let forward = |s: &FallbackSettings| -> BTreeMap<String, String> {
        s.forward
            .iter()
            .map(|(k, v)| (number(k), number(v)))
            .collect()
    };
    let message_same = match (&sent.message, &stored.message) {
        (None, None) => true,
        (Some(a), Some(b)) => {
            a.text.trim() == b.text.trim() && a.language.eq_ignore_ascii_case(&b.language)
        }
        _ => false,
    };
    forward(sent) == forward(stored)
        && sent.default.as_deref().map(number) == stored.default.as_deref().map(number)
        && message_same
}

/// Talkdesk has `target`, as sent or in the form it stored it.
fn settings_match(
    actual: Option<&FallbackSettings>,
    target: &FallbackSettings,
    form: Option<&StoredForm>,
) -> bool {
    actual.is_some_and(|actual| {
        actual == target || form.is_some_and(|f| &f.sent == target && &f.stored == actual)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(default: &str) -> FallbackSettings {
        FallbackSettings {
            default: Some(default.to_string()),
            ..FallbackSettings::default()
        }
    }

    fn profiles() -> BTreeMap<String, Profile> {
        ["backup", "other"]
            .into_iter()
            .zip(["+14155558888", "+442071234567"])
            .map(|(name, number)| {
                let p = Profile {
                    name: name.to_string(),
                    settings: settings(number),
                };
                (name.to_string(), p)
            })
            .collect()
    }

    fn active(profile: &str) -> Desired {
        Desired::Active {
            profile: profile.to_string(),
        }
    }

    fn actual(enabled: Option<bool>, settings: Option<FallbackSettings>) -> Actual {
        Actual { enabled, settings }
    }

    /// We sent `+14155558888`; Talkdesk stored it as `+1 415 555 8888`.
    fn normalised() -> StoredForm {
        StoredForm {
            sent: settings("+14155558888"),
            stored: settings("+1 415 555 8888"),
        }
    }

    /// (name, what Talkdesk has, what is wanted, stored form, expected writes)
    type Case<'a> = (&'a str, Actual, Desired, Option<&'a StoredForm>, Vec<Step>);

    #[test]
    fn only_formatting_and_tag_case_are_equivalent() {
        use crate::domain::Message;
        let msg = |text: &str, lang: &str| {
            Some(Message {
                text: text.to_string(),
                language: lang.to_string(),
            })
        };
        let mut sent = settings("+14155558888");
        sent.forward
            .insert("+14155550100".into(), "+14155559999".into());
        sent.message = msg("We are sorry.", "en-US");
        let mut formatted = settings("+1 (415) 555-8888");
        formatted
            .forward
            .insert("+1 415 555 0100".into(), "+1.415.555.9999".into());
        formatted.message = msg("We are sorry. ", "en-us");
        assert!(equivalent(&sent, &formatted));

        let mut other_number = formatted.clone();
        other_number.default = Some("+14155550000".into());
        assert!(!equivalent(&sent, &other_number));
        let mut other_target = formatted.clone();
        other_target
            .forward
            .insert("+14155550100".into(), "+19990000000".into());
        assert!(!equivalent(&sent, &other_target));
        let mut dropped = formatted.clone();
        dropped.forward.clear();
        assert!(!equivalent(&sent, &dropped));
        let mut other_text = formatted.clone();
        other_text.message = msg("All fine.", "en-US");
        assert!(!equivalent(&sent, &other_text));
        let mut no_message = formatted;
        no_message.message = None;
        assert!(!equivalent(&sent, &no_message));
    }

    #[test]
    fn plan_table() {
        let backup = settings("+14155558888");
        let other = settings("+442071234567");
        let stored = normalised().stored;
        let form = normalised();
        #[rustfmt::skip]
        let table: Vec<Case> = vec![
            ("on, already converged",
                actual(Some(true), Some(backup.clone())), active("backup"), None, vec![]),
            ("off, already converged",
                actual(Some(false), Some(other.clone())), Desired::Inactive, None, vec![]),
            ("settings differ: settings, then activation",
                actual(Some(false), Some(other.clone())), active("backup"), None,
                vec![Step::PutSettings(backup.clone()), Step::PutActivation(true)]),
            ("switching profiles while on rewrites settings only",
                actual(Some(true), Some(other.clone())), active("backup"), None,
                vec![Step::PutSettings(backup.clone())]),
            ("only activation differs",
                actual(Some(false), Some(backup.clone())), active("backup"), None,
                vec![Step::PutActivation(true)]),
            ("deactivation leaves settings alone",
                actual(Some(true), Some(other.clone())), Desired::Inactive, None,
                vec![Step::PutActivation(false)]),
            ("Talkdesk's stored form of what we sent matches",
                actual(Some(true), Some(stored.clone())), active("backup"), Some(&form), vec![]),
            ("a stored form matches only the settings it was sent for",
                actual(Some(true), Some(stored.clone())), active("other"), Some(&form),
                vec![Step::PutSettings(other.clone())]),
            ("without a stored form, another form differs",
                actual(Some(true), Some(stored.clone())), active("backup"), None,
                vec![Step::PutSettings(backup.clone())]),
            ("unknown actual, on: write everything",
                actual(None, None), active("backup"), None,
                vec![Step::PutSettings(backup.clone()), Step::PutActivation(true)]),
            ("unknown settings are written even when enabled",
                actual(Some(true), None), active("backup"), None,
                vec![Step::PutSettings(backup.clone())]),
            ("unknown activation is set",
                actual(None, Some(backup.clone())), active("backup"), None,
                vec![Step::PutActivation(true)]),
            ("unknown actual, off: only the switch",
                actual(None, None), Desired::Inactive, None,
                vec![Step::PutActivation(false)]),
        ];
        for (name, actual, desired, form, want) in table {
            let got = plan(&actual, &desired, &profiles(), form).expect(name);
            assert_eq!(got, want, "{name}");
            assert_eq!(
                satisfies(&actual, &desired, &profiles(), form),
                want.is_empty(),
                "{name}: satisfies agrees with the plan"
            );
        }
    }

    #[test]
    fn an_unknown_profile_is_an_error_and_never_satisfied() {
        let on = actual(Some(true), Some(settings("+14155558888")));
        let err = plan(&on, &active("gone"), &profiles(), None).unwrap_err();
        assert!(matches!(err, TalkdeskError::UnknownProfile(p) if p == "gone"));
        assert!(!satisfies(&on, &active("gone"), &profiles(), None));
    }

    #[test]
    fn steps_read_as_the_audit_log_shows_them() {
        assert_eq!(
            Step::PutSettings(FallbackSettings::default()).to_string(),
            "write settings"
        );
        assert_eq!(Step::PutActivation(true).to_string(), "set enabled=true");
    }
}
