//! The JSON Talkdesk speaks, kept apart from `domain` so a vendor quirk never
//! leaks into the engine.
//!
//! The quirk that matters: on the wire the default external number lives
//! *inside* `forward` under the key `"default"`, next to the per-number
//! entries (`{"forward": {"+1555...": "+1555...", "default": "+1555..."}}`),
//! while `domain::FallbackSettings` keeps it in its own field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::{FallbackSettings, Message};

/// Key of the default external number inside `forward`.
pub const DEFAULT_KEY: &str = "default";

/// Body of `GET|PUT /fallback-experience/settings` (request and response share it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<WireMessage>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMessage {
    pub downtime_message: String,
    pub language: String,
}

impl From<&FallbackSettings> for WireSettings {
    fn from(s: &FallbackSettings) -> Self {
        let mut forward = s.forward.clone();
        if let Some(default) = &s.default {
            forward.insert(DEFAULT_KEY.to_string(), default.clone());
        }
        WireSettings {
            // An empty map and an absent one mean the same ("forward nothing");
            // send the explicit empty object so a PUT clears old entries.
            forward: Some(forward),
            message: s.message.as_ref().map(|m| WireMessage {
                downtime_message: m.text.clone(),
                language: m.language.clone(),
            }),
        }
    }
}

impl From<WireSettings> for FallbackSettings {
    fn from(w: WireSettings) -> Self {
        let mut forward = w.forward.unwrap_or_default();
        let default = forward.remove(DEFAULT_KEY);
        FallbackSettings {
            forward,
            default,
            message: w.message.map(|m| Message {
                text: m.downtime_message,
                language: m.language,
            }),
        }
    }
}

/// Body of `GET|PUT /fallback-experience/activation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    pub enabled: bool,
}

/// Success reply of the token endpoint.
#[derive(Clone, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
    #[serde(default)]
    pub scope: Option<String>,
}

// The token must never be printed, even by a stray `{:?}`.
impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"[REDACTED]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Error reply of the token endpoint (RFC 6749 5.2).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TokenErrorBody {
    #[serde(default)]
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_number_lives_inside_forward_on_the_wire() {
        let s = FallbackSettings {
            forward: BTreeMap::from([("+14155550100".into(), "+14155559999".into())]),
            default: Some("+14155558888".into()),
            message: Some(Message {
                text: "Sorry".into(),
                language: "en-US".into(),
            }),
        };
        let json = serde_json::to_value(WireSettings::from(&s)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "forward": {"+14155550100": "+14155559999", "default": "+14155558888"},
                "message": {"downtime_message": "Sorry", "language": "en-US"}
            })
        );
        let back: WireSettings = serde_json::from_value(json).unwrap();
        assert_eq!(FallbackSettings::from(back), s);
    }

    #[test]
    fn absent_parts_map_to_empty_settings() {
        let w: WireSettings = serde_json::from_str("{}").unwrap();
        assert_eq!(FallbackSettings::from(w), FallbackSettings::default());
    }

    #[test]
    fn token_debug_hides_the_token() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"s3cr3t","expires_in":60}"#).unwrap();
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }
}
