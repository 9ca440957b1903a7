//! Prometheus Alertmanager webhook, payload version 4.
//!
//! One delivery carries a whole group of alerts, each with its own `status`.
//! The key is Alertmanager's `fingerprint` (a hash of the alert's labels), so a
//! repeated notification (every `repeat_interval`) refreshes the same alerts.
//! When a proxy or an old sender drops the fingerprint, a SHA-256 of the sorted
//! labels stands in: still stable, still one alert per label set.
//!
//! Unknown fields are ignored: Alertmanager keeps adding them within version 4
//! (`truncatedAlerts`, v0.32's `notification_reason`, v0.34's `routeLabels`).
//! A different `version` is rejected, since a new version may mean new semantics.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{AlertUpdate, ParseError, Parsed, Source, labels_fingerprint};

/// The group as Alertmanager (v4) and Grafana (v1) send it. Only what we use.
#[derive(Debug, Deserialize)]
pub(super) struct Group {
    #[serde(default)]
    pub version: Option<String>,
    pub alerts: Vec<Alert>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Alert {
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub fingerprint: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Status {
    Firing,
    Resolved,
}

pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    parse_group(body, Source::Alertmanager, "4")
}

/// Parses the Alertmanager-shaped group shared with Grafana.
pub(super) fn parse_group(
    body: &[u8],
    source: Source,
    version: &str,
) -> Result<Parsed, ParseError> {
    let group: Group = serde_json::from_slice(body)?;
    if let Some(v) = &group.version
        && v != version
    {
        return Err(ParseError::Invalid(format!(
            "payload version {v:?} is not supported by the {source} receiver (expected {version:?})"
        )));
    }
    let mut out = Parsed::default();
    for (i, a) in group.alerts.into_iter().enumerate() {
        let id = match a.fingerprint.as_deref().map(str::trim) {
            Some(f) if !f.is_empty() => f.to_string(),
            _ if a.labels.is_empty() => {
                return Err(ParseError::Invalid(format!(
                    "alerts[{i}] has neither a fingerprint nor labels: it cannot be identified"
                )));
            }
            _ => labels_fingerprint(&a.labels),
        };
        let summary = ["summary", "description", "message"]
            .iter()
            .find_map(|k| a.annotations.get(*k))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        out.push(match a.status {
            Status::Firing => AlertUpdate::firing(source, id, a.labels, summary),
            Status::Resolved => AlertUpdate::resolved(source, id, a.labels),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The v4 sample from wire-formats.md, plus fields of newer releases.
    const FIRING: &str = include_str!("../../tests/fixtures/alerts/alertmanager-firing.json");
    const RESOLVED: &str = include_str!("../../tests/fixtures/alerts/alertmanager-resolved.json");

    #[test]
    fn maps_each_alert_with_its_fingerprint() {
        let p = parse(FIRING.as_bytes()).unwrap();
        assert_eq!(p.updates.len(), 1);
        let u = &p.updates[0];
        assert_eq!(u.key, Source::Alertmanager.key("1a30ba71cca2921f"));
        assert!(u.firing);
        assert_eq!(u.labels["severity"], "critical");
        assert_eq!(u.summary.as_deref(), Some("BlackBox Probe Failure"));
        let r = parse(RESOLVED.as_bytes()).unwrap();
        assert_eq!(r.updates[0].key, u.key);
        assert!(!r.updates[0].firing);
    }

    #[test]
    fn mixed_statuses_and_label_hash_fallback() {
        let body = r#"{"version":"4","status":"firing","alerts":[
            {"status":"resolved","labels":{"alertname":"A"},"fingerprint":"aaaa"},
            {"status":"firing","labels":{"alertname":"B","x":"1"}}]}"#;
        let p = parse(body.as_bytes()).unwrap();
        assert!(!p.updates[0].firing);
        assert!(p.updates[1].firing);
        let id = &p.updates[1].key.id;
        assert_eq!(id.len(), 16);
        // Same labels, same id: a re-delivery refreshes the same alert.
        let again = parse(body.as_bytes()).unwrap();
        assert_eq!(&again.updates[1].key.id, id);
    }

    #[test]
    fn rejects_unknown_status_other_version_and_unidentifiable_alerts() {
        for body in [
            r#"{"version":"4","alerts":[{"status":"pending","labels":{"a":"b"}}]}"#,
            r#"{"version":"5","alerts":[]}"#,
            r#"{"alerts":[{"status":"firing","labels":{}}]}"#,
            r#"{"alerts":[{"status":"firing"}]}"#,
            r#"{"alerts":{}}"#,
            r#"{"status":"firing"}"#,
        ] {
            assert!(
                matches!(parse(body.as_bytes()), Err(ParseError::Invalid(_))),
                "{body}"
            );
        }
    }
}
