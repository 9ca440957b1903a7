//! PagerDuty V3 webhook subscriptions.
//!
//! Each delivery carries exactly one event. `incident.triggered` and
//! `incident.reopened` fire, `incident.resolved` resolves; every other event
//! type (acknowledged, escalated, annotated, `service.*`, `pagey.ping`...) is
//! accepted and ignored, because it does not change whether the incident is
//! open. The key is the incident id (`event.data.id`), the same for every
//! event of one incident.
//!
//! Labels (so rules can match them, e.g. `{ alert = ['source="pagerduty"', 'urgency="high"'] }`):
//! `source="pagerduty"`, `alertname` (the incident title, or
//! `PagerDutyIncident` when untitled), `title`, `service` (service summary),
//! `urgency`, `priority` (priority summary, e.g. `P1`), `incident_key`,
//! `event_type`. Absent values are omitted rather than set to "".
//!
//! Signatures (`X-PagerDuty-Signature: v1=<hex>[,v1=<hex>...]`) are checked in
//! [`super::auth::verify_pagerduty_signature`]; deliveries are deduplicated on
//! `X-Webhook-Id` (PagerDuty delivers at least once and retries for ~20 min).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{AlertUpdate, ParseError, Parsed, Source, put};

pub const SIGNATURE_HEADER: &str = "x-pagerduty-signature";
/// Identifies one delivery; retries of it carry the same value.
pub const WEBHOOK_ID_HEADER: &str = "x-webhook-id";
/// `alertname` of an incident without a title.
pub const DEFAULT_ALERTNAME: &str = "PagerDutyIncident";

#[derive(Debug, Deserialize)]
struct Payload {
    event: Envelope,
}

#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    id: Option<String>,
    event_type: String,
    /// When the change happened (RFC 3339): orders retried deliveries.
    #[serde(default)]
    occurred_at: Option<String>,
    /// Kept untyped until the event type says it is an incident we act on:
    /// ignored events (service updates, pings) have other shapes.
    #[serde(default)]
    data: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Incident {
    id: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    incident_key: Option<String>,
    #[serde(default)]
    urgency: Option<String>,
    #[serde(default)]
    service: Option<Reference>,
    #[serde(default)]
    priority: Option<Reference>,
}

#[derive(Debug, Deserialize)]
struct Reference {
    #[serde(default)]
    summary: Option<String>,
}

pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let p: Payload = serde_json::from_slice(body)?;
    let ev = p.event;
    let mut out = Parsed {
        delivery_id: ev.id.clone().filter(|s| !s.is_empty()),
        ..Parsed::default()
    };
    let firing = match ev.event_type.as_str() {
        "incident.triggered" | "incident.reopened" => true,
        "incident.resolved" => false,
        _ => {
            out.ignored = 1;
            return Ok(out);
        }
    };
    let data = ev
        .data
        .ok_or_else(|| ParseError::Invalid(format!("{}: event.data is missing", ev.event_type)))?;
    let inc: Incident = serde_json::from_value(data)
        .map_err(|e| ParseError::Invalid(format!("{}: event.data: {e}", ev.event_type)))?;

    let mut labels = BTreeMap::new();
    labels.insert("source".to_string(), "pagerduty".to_string());
    labels.insert("event_type".to_string(), ev.event_type.clone());
    let title = inc
        .title
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty());
    labels.insert(
        "alertname".to_string(),
        title.unwrap_or(DEFAULT_ALERTNAME).to_string(),
    );
    put(&mut labels, "title", title);
    put(
        &mut labels,
        "service",
        inc.service.as_ref().and_then(|s| s.summary.as_deref()),
    );
    put(&mut labels, "urgency", inc.urgency.as_deref());
    put(
        &mut labels,
        "priority",
        inc.priority.as_ref().and_then(|s| s.summary.as_deref()),
    );
    put(&mut labels, "incident_key", inc.incident_key.as_deref());
    let at = ev
        .occurred_at
        .as_deref()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| crate::domain::Timestamp(t.timestamp_millis()));
    out.push(
        if firing {
            AlertUpdate::firing(Source::PagerDuty, inc.id, labels, title.map(str::to_string))
        } else {
            AlertUpdate::resolved(Source::PagerDuty, inc.id, labels)
        }
        .at(at),
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRIGGERED: &str = include_str!("../../tests/fixtures/alerts/pagerduty-triggered.json");
    const RESOLVED: &str = include_str!("../../tests/fixtures/alerts/pagerduty-resolved.json");
    const PRIORITY: &str =
        include_str!("../../tests/fixtures/alerts/pagerduty-priority-updated.json");

    #[test]
    fn triggered_fires_with_labels() {
        let p = parse(TRIGGERED.as_bytes()).unwrap();
        assert_eq!(
            p.delivery_id.as_deref(),
            Some("5ac64822-4adc-4fda-ade0-410becf0de4f")
        );
        let u = &p.updates[0];
        assert_eq!(u.key, Source::PagerDuty.key("PGR0VU2"));
        assert!(u.firing);
        let l = &u.labels;
        assert_eq!(l["alertname"], "A little bump in the road");
        assert_eq!(l["service"], "API Service");
        assert_eq!(l["urgency"], "high");
        assert_eq!(l["priority"], "P1");
        assert_eq!(l["source"], "pagerduty");
        assert_eq!(l["event_type"], "incident.triggered");
        assert_eq!(u.summary.as_deref(), Some("A little bump in the road"));
    }

    #[test]
    fn resolved_resolves_same_key_and_null_priority_is_fine() {
        let p = parse(RESOLVED.as_bytes()).unwrap();
        assert_eq!(p.updates[0].key, Source::PagerDuty.key("PGR0VU2"));
        assert!(!p.updates[0].firing);
        assert!(!p.updates[0].labels.contains_key("priority"));
    }

    #[test]
    fn other_event_types_are_ignored() {
        let p = parse(PRIORITY.as_bytes()).unwrap();
        assert!(p.updates.is_empty());
        assert_eq!(p.ignored, 1);
        let ping = r#"{"event":{"id":"x","event_type":"pagey.ping","data":{"weird":[1,2]}}}"#;
        assert_eq!(parse(ping.as_bytes()).unwrap().ignored, 1);
    }

    #[test]
    fn incident_events_need_an_incident_id() {
        for body in [
            r#"{"event":{"event_type":"incident.triggered"}}"#,
            r#"{"event":{"event_type":"incident.triggered","data":{"title":"x"}}}"#,
            r#"{"event":{"event_type":"incident.resolved","data":{"id":7}}}"#,
            r#"{"event":{"event_type":5}}"#,
            r#"{"messages":[]}"#,
        ] {
            assert!(
                matches!(parse(body.as_bytes()), Err(ParseError::Invalid(_))),
                "{body}"
            );
        }
    }
}
