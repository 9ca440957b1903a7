//! `[profiles.NAME]`: numbers, messages and languages, compiled into
//! `domain::Profile`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;

use super::shared::IDENT;
use crate::config::load::Cx;
use crate::config::schema::*;
use crate::domain::{FallbackSettings, Message, Profile};

/// E.164: `+`, country code not starting with 0, at most 15 digits.
static E164: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\+[1-9][0-9]{1,14}$").expect("valid regex"));

/// Talkdesk's TTS message: long enough for a real announcement, short enough to
/// be spoken in well under a minute (about 150 words per minute).
const MESSAGE_MAX_CHARS: usize = 1000;

pub(super) fn profiles(
    cx: &mut Cx,
    raw: &BTreeMap<String, ProfileConfig>,
) -> BTreeMap<String, Profile> {
    let mut out = BTreeMap::new();
    for (name, p) in raw {
        let key = format!("profiles.{name}");
        let before = cx.errors.len();
        if !IDENT.is_match(name) {
            cx.err(
                &key,
                format!("profile name {name:?} must be 1-64 letters, digits, '.', '_' or '-'"),
            );
        }
        for (from, to) in &p.forward {
            if from == "default" {
                cx.err(
                    format!("{key}.forward.default"),
                    "write `default = \"+1...\"` beside `forward`, not inside it",
                );
                continue;
            }
            if !E164.is_match(from) {
                cx.err(
                    format!("{key}.forward.\"{from}\""),
                    format!("{from:?} is not an E.164 number (like +14155550100)"),
                );
            }
            if !E164.is_match(to) {
                cx.err(
                    format!("{key}.forward.\"{from}\""),
                    format!("target {to:?} is not an E.164 number (like +14155559999)"),
                );
            }
            if from == to {
                cx.err(
                    format!("{key}.forward.\"{from}\""),
                    "forwards a number to itself: calls would loop",
                );
            }
        }
        if let Some(d) = &p.default
            && !E164.is_match(d)
        {
            cx.err(
                format!("{key}.default"),
                format!("{d:?} is not an E.164 number (like +14155558888)"),
            );
        }
        if let Some(m) = &p.message {
            let chars = m.text.trim().chars().count();
            if chars == 0 {
                cx.err(format!("{key}.message.text"), "must not be empty");
            } else if chars > MESSAGE_MAX_CHARS {
                cx.err(
                    format!("{key}.message.text"),
                    format!("{chars} characters; at most {MESSAGE_MAX_CHARS}"),
                );
            }
            if let Err(why) = check_language(&m.language) {
                cx.err(format!("{key}.message.language"), why);
            }
        }
        if p.forward.is_empty() && p.default.is_none() && p.message.is_none() {
            cx.err(&key, "does nothing: set forward, default or message");
        }
        if cx.errors.len() == before {
            let settings = FallbackSettings {
                forward: p.forward.clone(),
                default: p.default.clone(),
                message: p.message.as_ref().map(|m| Message {
                    text: m.text.trim().to_string(),
                    language: m.language.clone(),
                }),
            };
            out.insert(
                name.clone(),
                Profile {
                    name: name.clone(),
                    settings,
                },
            );
        }
    }
    out
}

/// BCP 47, checked against the IANA registry (language-tags' embedded copy).
fn check_language(tag: &str) -> Result<(), String> {
    let parsed = language_tags::LanguageTag::parse(tag)
        .map_err(|e| format!("{tag:?} is not a BCP 47 language tag (like en-US): {e}"))?;
    parsed
        .validate()
        .map_err(|e| format!("{tag:?} is not a valid BCP 47 language tag: {e}"))
}
