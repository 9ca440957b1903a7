//! The generic JSON source, for anything that can POST a small document:
//!
//! ```json
//! { "id": "voice-gw-1", "status": "firing", "labels": { "alertname": "TalkdeskVoiceDown" }, "summary": "optional" }
//! ```
//!
//! or an array of those. `status` is `firing` or `resolved`; `labels` is
//! optional (string values only). This is our own format, so it is parsed with
//! `deny_unknown_fields`: a typo like `"stauts"` is a 422, not a silently
//! ignored field.
//!
//! CloudEvents 1.0 in structured mode is accepted on the same route
//! (`Content-Type: application/cloudevents+json`, or
//! `application/cloudevents-batch+json` for an array): `specversion` must be
//! `"1.0"`, `id`, `source` and `type` are required, and `data` is the generic
//! document above. The alert id is `data.id`, or the event's `subject` when
//! `data.id` is absent; the event's `source`+`id` identify the delivery for
//! dedupe. `data_base64` is rejected (the alert must be JSON).
//!
//! CloudEvents binary mode needs nothing special: the body is the generic
//! document with `Content-Type: application/json`, and the `ce-source` and
//! `ce-id` headers identify the delivery for dedupe (see `http.rs`). The
//! webhook validation handshake (`OPTIONS` with `WebHook-Request-Origin`) is
//! answered on this route too.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{AlertUpdate, ParseError, Parsed, Source};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Alert {
    id: String,
    status: Status,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    summary: Option<String>,
}

/// The CloudEvents `data` member: the generic alert, with an optional id.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Data {
    #[serde(default)]
    id: Option<String>,
    status: Status,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    summary: Option<String>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Firing,
    Resolved,
}

/// A structured-mode CloudEvent. Unknown members are extensions (allowed).
#[derive(Debug, Deserialize)]
struct CloudEvent {
    specversion: String,
    id: String,
    source: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    datacontenttype: Option<String>,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    data_base64: Option<serde::de::IgnoredAny>,
}

fn update(
    id: String,
    status: Status,
    labels: BTreeMap<String, String>,
    summary: Option<String>,
) -> AlertUpdate {
    match status {
        Status::Firing => AlertUpdate::firing(Source::Generic, id, labels, summary),
        Status::Resolved => AlertUpdate::resolved(Source::Generic, id, labels),
    }
}

/// `{...}` or `[{...}, ...]`. Looking at the first byte (instead of an
/// untagged enum) keeps serde_json's precise error messages.
pub fn parse(body: &[u8]) -> Result<Parsed, ParseError> {
    let alerts: Vec<Alert> = if first_byte(body) == Some(b'[') {
        serde_json::from_slice(body)?
    } else {
        vec![serde_json::from_slice(body)?]
    };
    let mut out = Parsed::default();
    for a in alerts {
        out.push(update(a.id, a.status, a.labels, a.summary));
    }
    Ok(out)
}

pub fn parse_cloudevent(body: &[u8]) -> Result<Parsed, ParseError> {
    let ev: CloudEvent = serde_json::from_slice(body)?;
    let mut out = Parsed::default();
    let delivery = cloudevent_update(ev, &mut out)?;
    out.delivery_id = Some(delivery);
    Ok(out)
}

/// A batch has no single delivery id; its events are not deduplicated
/// (duplicates are harmless to the engine anyway).
pub fn parse_cloudevent_batch(body: &[u8]) -> Result<Parsed, ParseError> {
    let evs: Vec<CloudEvent> = serde_json::from_slice(body)?;
    let mut out = Parsed::default();
    for ev in evs {
        cloudevent_update(ev, &mut out)?;
    }
    Ok(out)
}

/// Validates one event, pushes its update, and returns its delivery id.
fn cloudevent_update(ev: CloudEvent, out: &mut Parsed) -> Result<String, ParseError> {
    if ev.specversion != "1.0" {
        return Err(ParseError::Invalid(format!(
            "CloudEvents specversion {:?} is not supported (expected \"1.0\")",
            ev.specversion
        )));
    }
    if ev.id.is_empty() || ev.source.is_empty() || ev.kind.is_empty() {
        return Err(ParseError::Invalid(
            "CloudEvents id, source and type must not be empty".into(),
        ));
    }
    if let Some(ct) = &ev.datacontenttype {
        let essence = ct.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ParseError::Invalid(format!(
                "CloudEvent {}: datacontenttype {essence:?} is not supported (expected application/json)",
                ev.id
            )));
        }
    }
    if ev.data_base64.is_some() {
        return Err(ParseError::Invalid(format!(
            "CloudEvent {}: data_base64 is not supported; send the alert as JSON in data",
            ev.id
        )));
    }
    let Some(data) = ev.data else {
        return Err(ParseError::Invalid(format!(
            "CloudEvent {}: data is missing (expected {{\"id\",\"status\",\"labels\"}})",
            ev.id
        )));
    };
    let Some(id) = data.id.or(ev.subject) else {
        return Err(ParseError::Invalid(format!(
            "CloudEvent {}: no alert id (set data.id or subject)",
            ev.id
        )));
    };
    out.push(update(id, data.status, data.labels, data.summary));
    Ok(format!("{}\n{}", ev.source, ev.id))
}

fn first_byte(body: &[u8]) -> Option<u8> {
    body.iter().copied().find(|b| !b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRING: &str = include_str!("../../tests/fixtures/alerts/generic-firing.json");
    const CLOUDEVENT: &str = include_str!("../../tests/fixtures/alerts/cloudevent.json");

    #[test]
    fn single_and_array() {
        let p = parse(FIRING.as_bytes()).unwrap();
        assert_eq!(p.updates.len(), 1);
        assert_eq!(p.updates[0].key, Source::Generic.key("voice-gw-1"));
        assert_eq!(
            p.updates[0].summary.as_deref(),
            Some("Voice gateway unreachable")
        );
        let arr = r#" [ {"id":"a","status":"firing"}, {"id":"b","status":"resolved","labels":{"x":"y"}} ]"#;
        let p = parse(arr.as_bytes()).unwrap();
        assert_eq!(p.updates.len(), 2);
        assert!(p.updates[0].firing && !p.updates[1].firing);
    }

    #[test]
    fn strict_shape() {
        for body in [
            r#"{"id":"a","status":"pending"}"#,
            r#"{"id":"a","stauts":"firing"}"#,
            r#"{"id":"a","status":"firing","labels":{"x":1}}"#,
            r#"{"id":1,"status":"firing"}"#,
            r#"[{"id":"a","status":"firing"},{"id":"b"}]"#,
            r#""firing""#,
        ] {
            assert!(
                matches!(parse(body.as_bytes()), Err(ParseError::Invalid(_))),
                "{body}"
            );
        }
        assert!(matches!(parse(b"{\"id\":"), Err(ParseError::Malformed(_))));
    }

    #[test]
    fn cloudevents_structured_mode() {
        let p = parse_cloudevent(CLOUDEVENT.as_bytes()).unwrap();
        assert_eq!(p.updates[0].key, Source::Generic.key("voice-gw-1"));
        assert_eq!(
            p.delivery_id.as_deref(),
            Some("/monitors/voice\nC234-1234-1234")
        );
        let subject = r#"{"specversion":"1.0","type":"t","source":"s","id":"1","subject":"gw-2","data":{"status":"resolved"}}"#;
        let p = parse_cloudevent(subject.as_bytes()).unwrap();
        assert_eq!(p.updates[0].key.id, "gw-2");
        let batch = format!("[{CLOUDEVENT},{subject}]");
        assert_eq!(
            parse_cloudevent_batch(batch.as_bytes())
                .unwrap()
                .updates
                .len(),
            2
        );
        for bad in [
            r#"{"specversion":"0.3","type":"t","source":"s","id":"1","data":{"id":"a","status":"firing"}}"#,
            r#"{"specversion":"1.0","type":"t","source":"s","id":"1"}"#,
            r#"{"specversion":"1.0","type":"t","source":"s","id":"1","data":{"status":"firing"}}"#,
            r#"{"specversion":"1.0","type":"t","source":"s","id":"1","data_base64":"eyJ9"}"#,
            r#"{"specversion":"1.0","source":"s","id":"1","data":{"id":"a","status":"firing"}}"#,
        ] {
            assert!(
                matches!(
                    parse_cloudevent(bad.as_bytes()),
                    Err(ParseError::Invalid(_))
                ),
                "{bad}"
            );
        }
    }
}
