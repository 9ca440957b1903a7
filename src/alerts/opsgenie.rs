//! Opsgenie outgoing webhook integration.
//!
//! `action` `Create` fires; `Close` and `Delete` resolve. Every other action
//! (`Acknowledge`, `UnAcknowledge`, `AddNote`, `Escalate`, custom actions...)
//! is accepted and ignored: it does not change whether the alert is open.
//!
//! Key: `alert.alertId`, or `alert.alias` when there is no alertId. The alias
//! is also a label, so rules can match it.
//!
//! Labels: `source="opsgenie"`, `alertname` (the message, or
//! `OpsgenieAlert`), `message`, `alias`, `priority`, `entity`, `tags` and
//! `teams` (comma-joined), `integration` (`integrationName`), and one label per
//! `key:value` tag (key sanitized to `[a-zA-Z0-9_]`; never overriding the above).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{AlertUpdate, ParseError, Parsed, Source, put};

/// `alertname` of an alert without a message.
pub const DEFAULT_ALERTNAME: &str = "OpsgenieAlert";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    action: String,
    alert: Alert,
    #[serde(default)]
    integration_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Alert {
    #[serde(default)]
    alert_id: Option<String>,
    #[serde(default)]
    alias: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    teams: Vec<Team>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    entity: Option<String>,
    /// When the alert last changed (nanoseconds in Opsgenie's samples).
    #[serde(default)]
    updated_at: Option<serde_json::Value>,
    #[serde(default)]
    created_at: Option<serde_json::Value>,
}

/// Samples send team names; some payloads send team objects. Take both.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Team {
    Name(String),
    Ref {
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        id: Option<String>,
    },
}

pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let p: Payload = serde_json::from_slice(body)?;
    let mut out = Parsed::default();
    let firing = match p.action.to_ascii_lowercase().as_str() {
        "create" => true,
        // A deleted alert is gone as surely as a closed one; ignoring it would
        // hold the fallback on until `alerts.ttl`.
        "close" | "delete" => false,
        _ => {
            out.ignored = 1;
            return Ok(out);
        }
    };
    let a = p.alert;
    let at = super::epoch_time(a.updated_at.as_ref())
        .or_else(|| super::epoch_time(a.created_at.as_ref()));
    let nonblank = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let Some(id) = nonblank(&a.alert_id).or_else(|| nonblank(&a.alias)) else {
        return Err(ParseError::Invalid(format!(
            "{} action: alert has neither alertId nor alias",
            p.action
        )));
    };

    let mut labels = BTreeMap::new();
    for tag in &a.tags {
        if let Some((k, v)) = tag.split_once(':') {
            let k: String = k
                .trim()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if !k.is_empty() {
                labels.insert(k, v.trim().to_string());
            }
        }
    }
    let message = nonblank(&a.message);
    labels.insert("source".into(), "opsgenie".into());
    labels.insert(
        "alertname".into(),
        message.clone().unwrap_or_else(|| DEFAULT_ALERTNAME.into()),
    );
    put(&mut labels, "message", message.as_deref());
    put(&mut labels, "alias", a.alias.as_deref());
    put(&mut labels, "priority", a.priority.as_deref());
    put(&mut labels, "entity", a.entity.as_deref());
    put(&mut labels, "integration", p.integration_name.as_deref());
    put(&mut labels, "tags", Some(&a.tags.join(",")));
    let teams: Vec<String> = a
        .teams
        .into_iter()
        .filter_map(|t| match t {
            Team::Name(n) => Some(n),
            Team::Ref { name, id } => name.or(id),
        })
        .collect();
    put(&mut labels, "teams", Some(&teams.join(",")));

    out.push(
        if firing {
            AlertUpdate::firing(Source::Opsgenie, id, labels, message)
        } else {
            AlertUpdate::resolved(Source::Opsgenie, id, labels)
        }
        .at(at),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATE: &str = include_str!("../../tests/fixtures/alerts/opsgenie-create.json");
    const CLOSE: &str = include_str!("../../tests/fixtures/alerts/opsgenie-close.json");
    const ACK: &str = include_str!("../../tests/fixtures/alerts/opsgenie-acknowledge.json");

    #[test]
    fn create_fires_close_resolves_ack_ignored() {
        let c = parse(CREATE.as_bytes()).unwrap();
        let u = &c.updates[0];
        assert_eq!(
            u.key,
            Source::Opsgenie.key("052652ac-5d1c-464a-812a-7dd18bbfba8c")
        );
        assert!(u.firing);
        assert_eq!(u.labels["alias"], "aliastest");
        assert_eq!(u.labels["tags"], "tag1,tag2");
        assert_eq!(u.labels["teams"], "team1");
        assert_eq!(u.labels["priority"], "P1");
        assert_eq!(u.labels["alertname"], "test alert");
        assert!(!u.labels.contains_key("entity"), "blank entity omitted");
        let r = parse(CLOSE.as_bytes()).unwrap();
        assert_eq!(r.updates[0].key, u.key);
        assert!(!r.updates[0].firing);
        let d = parse(CLOSE.replace("\"Close\"", "\"Delete\"").as_bytes()).unwrap();
        assert!(!d.updates[0].firing);
        let a = parse(ACK.as_bytes()).unwrap();
        assert!(a.updates.is_empty());
        assert_eq!(a.ignored, 1);
    }

    #[test]
    fn alias_fallback_and_invalid_shapes() {
        let p = parse(br#"{"action":"Create","alert":{"alias":"voice-down","teams":[{"name":"noc"}],"tags":["env:prod"]}}"#).unwrap();
        assert_eq!(p.updates[0].key.id, "voice-down");
        assert_eq!(p.updates[0].labels["teams"], "noc");
        assert_eq!(p.updates[0].labels["env"], "prod");
        for body in [
            r#"{"action":"Create","alert":{}}"#,
            r#"{"action":"Create"}"#,
            r#"{"alert":{"alertId":"x"}}"#,
            r#"{"action":"Create","alert":{"alertId":"x","tags":"a,b"}}"#,
        ] {
            assert!(
                matches!(parse(body.as_bytes()), Err(ParseError::Invalid(_))),
                "{body}"
            );
        }
    }
}
