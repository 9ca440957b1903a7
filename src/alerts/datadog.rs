//! Datadog webhooks integration.
//!
//! Datadog posts whatever template the user writes, so the template is part
//! of our contract. Paste this as the webhook's payload (README):
//!
//! ```json
//! {"id":"$ALERT_ID","cycle":"$ALERT_CYCLE_KEY","transition":"$ALERT_TRANSITION","title":"$EVENT_TITLE","priority":"$ALERT_PRIORITY","scope":"$ALERT_SCOPE","body":"$TEXT_ONLY_MSG","link":"$LINK","date":"$DATE_POSIX","tags":"$TAGS"}
//! ```
//!
//! Required: `id` (monitor id, string or number) and `transition`. The others
//! are optional. A value still reading `$SOMETHING` means the template was
//! pasted into a place where Datadog does not substitute, and is rejected (422).
//!
//! Key: the monitor id, plus the scope when there is one (`1234567/host:pbx-1`):
//! a multi-alert monitor triggers and recovers per group, and one group's
//! recovery must not resolve another group's alert.
//!
//! `transition` (case-insensitive):
//! - `Triggered`, `Re-Triggered`: fire;
//! - `Recovered`: resolve;
//! - `Warn`, `Re-Warn`, `No Data`, `Re-No Data`: accepted and ignored (202, no
//!   change). A warning threshold is not an outage, and "no data" says the
//!   monitor cannot see, not that calls fail; a monitor that must act on them
//!   should alert instead (Datadog's "notify on no data" as an alert). An alert
//!   that de-escalates to Warn stays firing until `Recovered` (or `alerts.ttl`).
//! - anything else: 422, listing the accepted values.
//!
//! Labels: `source="datadog"`, `alertname` (title, or `DatadogMonitor`),
//! `title`, `monitor_id`, `transition`, `cycle`, `priority`, `scope`, `tags`
//! (the raw list), and one label per `key:value` tag (key sanitized to
//! `[a-zA-Z0-9_]`; it never overrides the labels above).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::de::{opt_string_or_number, string_or_number};
use super::{AlertUpdate, ParseError, Parsed, Source, put};

/// `alertname` of a monitor notification without a title.
pub const DEFAULT_ALERTNAME: &str = "DatadogMonitor";
/// The template users paste (README; kept here so tests check it parses).
pub const TEMPLATE: &str = r#"{"id":"$ALERT_ID","cycle":"$ALERT_CYCLE_KEY","transition":"$ALERT_TRANSITION","title":"$EVENT_TITLE","priority":"$ALERT_PRIORITY","scope":"$ALERT_SCOPE","body":"$TEXT_ONLY_MSG","link":"$LINK","date":"$DATE_POSIX","tags":"$TAGS"}"#;

#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(deserialize_with = "string_or_number")]
    id: String,
    transition: String,
    #[serde(default, deserialize_with = "opt_string_or_number")]
    cycle: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    tags: Option<String>,
    /// `$DATE_POSIX`: when the transition happened (orders retried deliveries).
    #[serde(default)]
    date: Option<serde_json::Value>,
}

enum Action {
    Fire,
    Resolve,
    Ignore,
}

fn action(transition: &str) -> Option<Action> {
    let t = transition.trim().to_ascii_lowercase();
    Some(match t.as_str() {
        "triggered" | "re-triggered" => Action::Fire,
        "recovered" => Action::Resolve,
        "warn" | "re-warn" | "no data" | "re-no data" => Action::Ignore,
        _ => return None,
    })
}

pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let p: Payload = serde_json::from_slice(body)?;
    let id = p.id.trim();
    if unsubstituted(id) || unsubstituted(&p.transition) {
        return Err(ParseError::Invalid(
            "template variables were not substituted (id or transition still reads $...): \
             paste the template into the webhook's Payload field"
                .into(),
        ));
    }
    let Some(action) = action(&p.transition) else {
        return Err(ParseError::Invalid(format!(
            "transition {:?} is not one of Triggered, Re-Triggered, Recovered, Warn, Re-Warn, No Data, Re-No Data",
            super::truncate(&p.transition, 64)
        )));
    };
    let mut out = Parsed::default();
    if matches!(action, Action::Ignore) {
        out.ignored = 1;
        return Ok(out);
    }
    let scope = p
        .scope
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty() && !unsubstituted(s));
    let key = match scope {
        Some(s) => format!("{id}/{s}"),
        None => id.to_string(),
    };

    let mut labels = BTreeMap::new();
    // Tags first, so the fixed labels below win on a clash.
    if let Some(tags) = p.tags.as_deref() {
        for tag in tags.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            if let Some((k, v)) = tag.split_once(':') {
                let k = sanitize(k);
                if !k.is_empty() {
                    labels.insert(k, v.to_string());
                }
            }
        }
    }
    let title = p.title.as_deref().map(str::trim).filter(|t| !t.is_empty());
    labels.insert("source".into(), "datadog".into());
    labels.insert(
        "alertname".into(),
        title.unwrap_or(DEFAULT_ALERTNAME).to_string(),
    );
    labels.insert("monitor_id".into(), id.to_string());
    labels.insert("transition".into(), p.transition.trim().to_string());
    put(&mut labels, "title", title);
    put(&mut labels, "cycle", p.cycle.as_deref());
    put(&mut labels, "priority", p.priority.as_deref());
    put(&mut labels, "scope", scope);
    put(&mut labels, "tags", p.tags.as_deref());

    let at = super::epoch_time(p.date.as_ref());
    out.push(
        match action {
            Action::Fire => {
                let summary = title
                    .or(p.body.as_deref().map(str::trim).filter(|b| !b.is_empty()))
                    .map(|s| super::truncate(s, super::MAX_LABEL_LEN).to_string());
                AlertUpdate::firing(Source::Datadog, key, labels, summary)
            }
            _ => AlertUpdate::resolved(Source::Datadog, key, labels),
        }
        .at(at),
    );
    Ok(out)
}

/// `$ALERT_ID` and friends left as is.
fn unsubstituted(v: &str) -> bool {
    let v = v.trim();
    v.starts_with('$') && v.len() > 1 && v[1..].bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
}

/// A tag key as a label name: `[a-zA-Z0-9_]`, other characters become `_`.
fn sanitize(k: &str) -> String {
    k.trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIGGERED: &str = include_str!("../../tests/fixtures/alerts/datadog-triggered.json");
    const RECOVERED: &str = include_str!("../../tests/fixtures/alerts/datadog-recovered.json");

    #[test]
    fn triggered_then_recovered_same_key() {
        let t = parse(TRIGGERED.as_bytes()).unwrap();
        let u = &t.updates[0];
        assert_eq!(u.key, Source::Datadog.key("1234567/host:pbx-1"));
        assert!(u.firing);
        assert_eq!(u.labels["env"], "prod");
        assert_eq!(u.labels["service"], "voice");
        assert_eq!(u.labels["source"], "datadog");
        assert_eq!(u.labels["cycle"], "7185498462893948329");
        assert_eq!(u.labels["transition"], "Triggered");
        let r = parse(RECOVERED.as_bytes()).unwrap();
        assert_eq!(r.updates[0].key, u.key);
        assert!(!r.updates[0].firing);
    }

    #[test]
    fn warn_and_no_data_are_ignored() {
        for t in ["Warn", "Re-Warn", "No Data", "re-no data"] {
            let body = format!(r#"{{"id":12,"transition":"{t}"}}"#);
            let p = parse(body.as_bytes()).unwrap();
            assert!(p.updates.is_empty());
            assert_eq!(p.ignored, 1);
        }
        let p = parse(br#"{"id":12,"transition":"Re-Triggered"}"#).unwrap();
        assert_eq!(p.updates[0].key.id, "12");
    }

    #[test]
    fn unknown_transitions_and_raw_templates_are_invalid() {
        assert!(matches!(
            parse(TEMPLATE.as_bytes()),
            Err(ParseError::Invalid(_))
        ));
        for body in [
            r#"{"id":"1","transition":"Exploded"}"#,
            r#"{"id":"1"}"#,
            r#"{"transition":"Triggered"}"#,
            r#"{"id":[1],"transition":"Triggered"}"#,
        ] {
            assert!(
                matches!(parse(body.as_bytes()), Err(ParseError::Invalid(_))),
                "{body}"
            );
        }
    }
}
