//! The simulator's memory: the continuity settings, the activation flag, the
//! issued tokens, and the request validation Talkdesk would apply.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Instant;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::FallbackSettings;
use crate::talkdesk::error::FieldError;
use crate::talkdesk::wire::{DEFAULT_KEY, WireMessage, WireSettings};

/// E.164: a plus, a non-zero digit, at most 15 digits in all.
static E164: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^\+[1-9]\d{1,14}$").expect("valid regex"));
/// BCP 47 shape (`en`, `en-US`, `pt-BR`, `zh-Hant-TW`); not the full registry.
static LANGUAGE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$").expect("valid regex"));

/// Longest accepted downtime message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// What Talkdesk currently has, as an operator would see it in the UI.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimState {
    pub enabled: bool,
    pub settings: FallbackSettings,
}

/// `GET|PUT /_sim/state` body: settings in wire form; PUT may send either part.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<Value>,
}

pub(crate) struct IssuedToken {
    pub scopes: Vec<String>,
    pub expires_at: Instant,
}

#[derive(Default)]
pub(crate) struct Tokens {
    map: HashMap<String, IssuedToken>,
    /// Every token ever issued (bounded), so tests can prove none leaked.
    history: Vec<String>,
}

/// Bound of [`Tokens::history`].
const MAX_HISTORY: usize = 1000;

/// Why a bearer token was refused.
pub(crate) enum TokenCheck {
    Ok(Vec<String>),
    Missing,
    Unknown,
    Expired,
}

impl Tokens {
    pub fn issue(&mut self, token: String, scopes: Vec<String>, expires_at: Instant) {
        // Forget expired tokens so a long demo does not grow without bound.
        let now = Instant::now();
        self.map.retain(|_, t| t.expires_at > now);
        if self.history.len() >= MAX_HISTORY {
            self.history.remove(0);
        }
        self.history.push(token.clone());
        self.map.insert(token, IssuedToken { scopes, expires_at });
    }

    pub fn history(&self) -> Vec<String> {
        self.history.clone()
    }

    pub fn check(&self, token: Option<&str>) -> TokenCheck {
        let Some(token) = token else {
            return TokenCheck::Missing;
        };
        match self.map.get(token) {
            None => TokenCheck::Unknown,
            Some(t) if Instant::now() >= t.expires_at => TokenCheck::Expired,
            Some(t) => TokenCheck::Ok(t.scopes.clone()),
        }
    }

    /// Whether this store ever issued `token` (live, expired or forgotten
    /// by [`Tokens::expire_all`]): tells which account a bearer belongs to.
    pub fn issued(&self, token: &str) -> bool {
        self.map.contains_key(token) || self.history.iter().any(|t| t == token)
    }

    pub fn expire_all(&mut self) {
        self.map.clear();
    }
}

fn field(name: impl Into<String>, description: impl Into<String>) -> FieldError {
    FieldError {
        name: name.into(),
        description: description.into(),
    }
}

/// Validate a settings body the way Talkdesk would, collecting every problem.
pub fn validate_settings(body: &Value) -> Result<WireSettings, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(obj) = body.as_object() else {
        return Err(vec![field("body", "must be a JSON object")]);
    };
    for key in obj.keys() {
        if key != "forward" && key != "message" {
            errors.push(field(key.clone(), "is not a known field"));
        }
    }
    let mut forward = None;
    match obj.get("forward") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            let mut out = std::collections::BTreeMap::new();
            for (k, v) in map {
                let name = format!("forward.{k}");
                if k != DEFAULT_KEY && !E164.is_match(k) {
                    errors.push(field(
                        name.clone(),
                        "key must be \"default\" or an E.164 number like +14155550100",
                    ));
                }
                match v.as_str() {
                    Some(s) if E164.is_match(s) => {
                        out.insert(k.clone(), s.to_string());
                    }
                    _ => errors.push(field(name, "must be an E.164 number like +14155550100")),
                }
            }
            forward = Some(out);
        }
        Some(_) => errors.push(field("forward", "must be an object")),
    }
    let mut message = None;
    match obj.get("message") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for key in m.keys() {
                if key != "downtime_message" && key != "language" {
                    errors.push(field(format!("message.{key}"), "is not a known field"));
                }
            }
            let text = match m.get("downtime_message").and_then(Value::as_str) {
                Some(t) if t.trim().is_empty() => {
                    errors.push(field("message.downtime_message", "must not be empty"));
                    None
                }
                Some(t) if t.chars().count() > MAX_MESSAGE_CHARS => {
                    errors.push(field(
                        "message.downtime_message",
                        format!("must be at most {MAX_MESSAGE_CHARS} characters"),
                    ));
                    None
                }
                Some(t) => Some(t.to_string()),
                None => {
                    errors.push(field("message.downtime_message", "is required (string)"));
                    None
                }
            };
            let language = match m.get("language").and_then(Value::as_str) {
                Some(l) if LANGUAGE.is_match(l) => Some(l.to_string()),
                Some(_) => {
                    errors.push(field(
                        "message.language",
                        "must be a language tag like en-US",
                    ));
                    None
                }
                None => {
                    errors.push(field("message.language", "is required (string)"));
                    None
                }
            };
            if let (Some(downtime_message), Some(language)) = (text, language) {
                message = Some(WireMessage {
                    downtime_message,
                    language,
                });
            }
        }
        Some(_) => errors.push(field("message", "must be an object")),
    }
    if errors.is_empty() {
        Ok(WireSettings { forward, message })
    } else {
        Err(errors)
    }
}

/// Validate an activation body: exactly `{"enabled": bool}`.
pub fn validate_activation(body: &Value) -> Result<bool, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![field("body", "must be a JSON object")]);
    };
    let mut errors: Vec<FieldError> = obj
        .keys()
        .filter(|k| k.as_str() != "enabled")
        .map(|k| field(k.clone(), "is not a known field"))
        .collect();
    let enabled = obj.get("enabled").and_then(Value::as_bool);
    if enabled.is_none() {
        errors.push(field("enabled", "is required (boolean)"));
    }
    match enabled {
        Some(e) if errors.is_empty() => Ok(e),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accepts_the_documented_example() {
        let w = validate_settings(&json!({
            "forward": {"+123123456789": "+987987654321", "default": "+456456123789"},
            "message": {"downtime_message": "Please try again later", "language": "en-US"}
        }))
        .unwrap();
        assert_eq!(w.forward.unwrap().len(), 2);
    }

    #[test]
    fn reports_every_bad_field() {
        let errs = validate_settings(&json!({
            "forward": {"4155550100": "+1", "default": 5},
            "message": {"downtime_message": "", "language": "english please"},
            "extra": true
        }))
        .unwrap_err();
        let names: Vec<_> = errs.iter().map(|e| e.name.as_str()).collect();
        for n in [
            "extra",
            "forward.4155550100",
            "forward.default",
            "message.downtime_message",
            "message.language",
        ] {
            assert!(names.contains(&n), "{n} missing from {names:?}");
        }
        let long = "x".repeat(MAX_MESSAGE_CHARS + 1);
        assert!(
            validate_settings(&json!({"message": {"downtime_message": long, "language": "en"}}))
                .is_err()
        );
        assert!(validate_settings(&json!([])).is_err());
    }

    #[test]
    fn activation_body_is_exactly_enabled() {
        assert_eq!(validate_activation(&json!({"enabled": true})), Ok(true));
        assert!(validate_activation(&json!({"enabled": "yes"})).is_err());
        assert!(validate_activation(&json!({"enabled": true, "x": 1})).is_err());
    }
}
