//! Atlassian Statuspage (and Instatus, which copies the shape) subscriber
//! webhooks.
//!
//! Statuspage neither signs nor authenticates its webhooks, and its source IPs
//! change, so the only protection is a secret URL:
//! `POST /v1/alerts/statuspage/{path_token}`, compared in constant time.
//!
//! A body has no type field. It is:
//! - a **component** change when it has `component` (or, failing that,
//!   `component_update` with `component_id` and `new_status`):
//!   key = component id; fires while `status` is not `operational`,
//!   resolves when it is. Labels: `source="statuspage"`, `kind="component"`,
//!   `alertname` (component name), `component`, `status`, `page` (page id).
//! - an **incident** when it has `incident`; a **maintenance** when that
//!   incident has `scheduled_for` or `scheduled_until` set. Key = incident id;
//!   fires while `status` is not `resolved`, `postmortem` or `completed`.
//!   Labels: `source="statuspage"`, `kind` (`incident` or `maintenance`),
//!   `alertname` and `name` (incident name), `status`, `impact`, `page`.
//!
//! Unknown status values count as degraded (firing): Atlassian's own sample
//! uses `"high"`, and a status we do not understand must not hide an outage.
//! The `status` label carries the raw value, so rules can still exclude, say,
//! `under_maintenance` or `kind="maintenance"`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{AlertUpdate, ParseError, Parsed, Source, put};

#[derive(Debug, Deserialize)]
struct Payload {
    #[serde(default)]
    page: Option<Page>,
    #[serde(default)]
    component: Option<Component>,
    #[serde(default)]
    component_update: Option<ComponentUpdate>,
    #[serde(default)]
    incident: Option<Incident>,
}

/// The change record sent beside `component`; used alone when a sender
/// (or a proxy) drops `component`.
#[derive(Debug, Deserialize)]
struct ComponentUpdate {
    component_id: String,
    new_status: String,
    #[serde(default)]
    created_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Component {
    id: String,
    status: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Incident {
    id: String,
    status: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    impact: Option<String>,
    #[serde(default)]
    scheduled_for: Option<String>,
    #[serde(default)]
    scheduled_until: Option<String>,
    #[serde(default)]
    updated_at: Option<String>,
}

/// Incident and maintenance states after which nothing is wrong any more.
const CLOSED_INCIDENT: [&str; 3] = ["resolved", "postmortem", "completed"];

pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let p: Payload = serde_json::from_slice(body)?;
    let page = p.page.and_then(|p| p.id);
    // When the component changed: the change record's time orders retries.
    let component_at = p
        .component_update
        .as_ref()
        .and_then(|u| super::rfc3339_time(u.created_at.as_deref()));
    let component = p.component.or_else(|| {
        p.component_update.map(|u| Component {
            id: u.component_id,
            status: u.new_status,
            name: None,
        })
    });
    if component.is_none() && p.incident.is_none() {
        return Err(ParseError::Invalid(
            "neither component nor incident: not a Statuspage subscriber notification".into(),
        ));
    }
    let mut out = Parsed::default();
    if let Some(c) = component {
        let status = c.status.trim().to_ascii_lowercase();
        let mut labels = base_labels("component", page.as_deref());
        let name = c.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
        labels.insert("alertname".into(), name.unwrap_or(&c.id).to_string());
        put(&mut labels, "component", name);
        labels.insert("status".into(), status.clone());
        out.push(
            if status == "operational" {
                AlertUpdate::resolved(Source::Statuspage, c.id, labels)
            } else {
                let summary = format!("{} is {status}", name.unwrap_or(&c.id));
                AlertUpdate::firing(Source::Statuspage, c.id, labels, Some(summary))
            }
            .at(component_at),
        );
    }
    if let Some(i) = p.incident {
        let status = i.status.trim().to_ascii_lowercase();
        let scheduled = [&i.scheduled_for, &i.scheduled_until]
            .iter()
            .any(|s| s.as_deref().is_some_and(|s| !s.trim().is_empty()));
        let kind = if scheduled { "maintenance" } else { "incident" };
        let mut labels = base_labels(kind, page.as_deref());
        let name = i.name.as_deref().map(str::trim).filter(|n| !n.is_empty());
        labels.insert("alertname".into(), name.unwrap_or(&i.id).to_string());
        put(&mut labels, "name", name);
        put(&mut labels, "impact", i.impact.as_deref());
        labels.insert("status".into(), status.clone());
        let at = super::rfc3339_time(i.updated_at.as_deref());
        out.push(
            if CLOSED_INCIDENT.contains(&status.as_str()) {
                AlertUpdate::resolved(Source::Statuspage, i.id, labels)
            } else {
                let summary = name.map(|n| format!("{n} ({status})"));
                AlertUpdate::firing(Source::Statuspage, i.id, labels, summary)
            }
            .at(at),
        );
    }
    Ok(out)
}

fn base_labels(kind: &str, page: Option<&str>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    labels.insert("source".into(), "statuspage".into());
    labels.insert("kind".into(), kind.into());
    put(&mut labels, "page", page);
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENT: &str = include_str!("../../tests/fixtures/alerts/statuspage-component.json");
    const COMPONENT_OK: &str =
        include_str!("../../tests/fixtures/alerts/statuspage-component-operational.json");
    const INCIDENT: &str = include_str!("../../tests/fixtures/alerts/statuspage-incident.json");
    const INCIDENT_RESOLVED: &str =
        include_str!("../../tests/fixtures/alerts/statuspage-incident-resolved.json");

    #[test]
    fn component_fires_until_operational() {
        let f = parse(COMPONENT.as_bytes()).unwrap();
        let u = &f.updates[0];
        assert_eq!(u.key, Source::Statuspage.key("rb5wq1dczvbm"));
        assert!(u.firing);
        assert_eq!(u.labels["status"], "major_outage");
        assert_eq!(u.labels["component"], "Some Component");
        assert_eq!(u.labels["page"], "j2mfxwj97wnj");
        assert_eq!(u.labels["kind"], "component");
        let r = parse(COMPONENT_OK.as_bytes()).unwrap();
        assert_eq!(r.updates[0].key, u.key);
        assert!(!r.updates[0].firing);
    }

    #[test]
    fn incident_fires_until_resolved() {
        let f = parse(INCIDENT.as_bytes()).unwrap();
        let u = &f.updates[0];
        assert_eq!(u.key, Source::Statuspage.key("lbkhbwn21v5q"));
        assert!(u.firing);
        assert_eq!(u.labels["impact"], "critical");
        assert_eq!(u.labels["name"], "Virginia Is Down");
        assert_eq!(u.labels["kind"], "incident");
        let r = parse(INCIDENT_RESOLVED.as_bytes()).unwrap();
        assert_eq!(r.updates[0].key, u.key);
        assert!(!r.updates[0].firing);
    }

    #[test]
    fn maintenance_unknown_values_and_bad_shapes() {
        let m = parse(br#"{"incident":{"id":"m1","status":"in_progress","scheduled_for":"2026-11-24T08:00:00Z","impact":"maintenance","name":"DB upgrade"}}"#).unwrap();
        assert_eq!(m.updates[0].labels["kind"], "maintenance");
        assert!(m.updates[0].firing);
        let done = parse(br#"{"incident":{"id":"m1","status":"completed","scheduled_for":"2026-11-24T08:00:00Z"}}"#).unwrap();
        assert!(!done.updates[0].firing);
        let bare = parse(br#"{"component_update":{"component_id":"c9","new_status":"partial_outage","old_status":"operational"}}"#).unwrap();
        assert_eq!(bare.updates[0].key.id, "c9");
        assert!(bare.updates[0].firing);
        // Instatus sends upper case.
        let up = parse(br#"{"component":{"id":"c1","status":"OPERATIONAL"}}"#).unwrap();
        assert!(!up.updates[0].firing);
        // Unknown values are degraded.
        let odd = parse(br#"{"component":{"id":"c1","status":"high"}}"#).unwrap();
        assert!(odd.updates[0].firing);
        for body in [
            r#"{"page":{"id":"p"}}"#,
            r#"{"component":{"id":"c1"}}"#,
            r#"{"incident":{"status":"resolved"}}"#,
            r#"{"component":{"id":5,"status":"operational"}}"#,
            r#"[]"#,
        ] {
            assert!(
                matches!(parse(body.as_bytes()), Err(ParseError::Invalid(_))),
                "{body}"
            );
        }
    }
}
