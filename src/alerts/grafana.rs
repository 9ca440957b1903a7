//! Grafana unified alerting webhook contact point.
//!
//! The body is Alertmanager's group shape with `"version": "1"` plus `orgId`,
//! `title`, `state` and `message`; each alert carries Grafana's `fingerprint`,
//! which is the key. Legacy (pre-unified) Grafana alerting sends a different
//! body without `alerts` and is rejected with 422.
//!
//! The optional HMAC signature (`X-Grafana-Alerting-Signature`, with an
//! optional signed timestamp for replay protection) is checked in
//! [`super::auth::verify_grafana_signature`] before this parser runs.

use super::alertmanager::parse_group;
use super::{ParseError, Parsed, Source};

/// Grafana's default signature header.
pub const SIGNATURE_HEADER: &str = "x-grafana-alerting-signature";

pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    parse_group(body, Source::Grafana, "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRING: &str = include_str!("../../tests/fixtures/alerts/grafana-firing.json");
    const RESOLVED: &str = include_str!("../../tests/fixtures/alerts/grafana-resolved.json");

    #[test]
    fn firing_and_resolved_share_the_fingerprint_key() {
        let f = parse(FIRING.as_bytes()).unwrap();
        let r = parse(RESOLVED.as_bytes()).unwrap();
        assert_eq!(f.updates.len(), 1);
        assert_eq!(f.updates[0].key, Source::Grafana.key("57c6d9296de2ad39"));
        assert!(f.updates[0].firing);
        assert_eq!(f.updates[0].labels["alertname"], "TalkdeskVoiceDown");
        assert_eq!(r.updates[0].key, f.updates[0].key);
        assert!(!r.updates[0].firing);
    }

    #[test]
    fn rejects_legacy_and_alertmanager_versions() {
        let legacy = r#"{"ruleName":"x","state":"alerting","evalMatches":[]}"#;
        assert!(matches!(
            parse(legacy.as_bytes()),
            Err(ParseError::Invalid(_))
        ));
        let am = r#"{"version":"4","alerts":[]}"#;
        assert!(matches!(parse(am.as_bytes()), Err(ParseError::Invalid(_))));
    }
}
