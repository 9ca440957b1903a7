//! Properties every parser must have, whatever the input.

use proptest::prelude::*;

use super::{MediaType, ParseError, Source};

const MEDIA: [MediaType; 3] = [
    MediaType::Json,
    MediaType::CloudEvent,
    MediaType::CloudEventBatch,
];

fn parse_all(body: &[u8]) {
    for s in Source::ALL {
        for m in MEDIA {
            // Any result is fine; a panic is not.
            let _ = s.parse(body, m);
        }
    }
}

/// serde_json stops at 128 levels: a 10,000-deep body is a 400 for every
/// source, not a stack overflow, whether the nesting sits at the top or
/// inside an ignored or free-form field.
#[test]
fn deep_nesting_is_malformed_not_a_crash() {
    let deep = |open: &str, close: &str| format!("{}{}", open.repeat(10_000), close.repeat(10_000));
    let arrays = deep("[", "]");
    let objects = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let bodies = [
        arrays.clone(),
        format!("{{\"ignored\":{arrays},\"alerts\":[]}}"),
        format!("{{\"event\":{{\"event_type\":\"x\",\"data\":{arrays}}}}}"),
        format!(
            "{{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"s\",\"type\":\"t\",\"ext\":{arrays}}}"
        ),
        objects,
    ];
    for body in &bodies {
        for s in Source::ALL {
            for m in MEDIA {
                match s.parse(body.as_bytes(), m) {
                    Err(ParseError::Malformed(_)) => {}
                    other => panic!("{s} {m:?}: expected Malformed, got {other:?}"),
                }
            }
        }
    }
}

#[test]
fn brackets_in_strings_do_not_nest_and_syntax_comes_first() {
    // The depth limit itself is tested in `server::body`.
    let s = format!(
        "{{\"id\":\"{}\",\"status\":\"firing\"}}",
        "[{\\\"".repeat(100)
    );
    assert!(Source::Generic.parse(s.as_bytes(), MediaType::Json).is_ok());
    // A type error early and a syntax error late: the syntax error wins (400).
    let body = br#"{"id":1,"status":"firing",}"#;
    assert!(matches!(
        Source::Generic.parse(body, MediaType::Json),
        Err(ParseError::Malformed(_))
    ));
}

#[test]
fn long_summaries_are_cut_long_ids_rejected() {
    let body = format!(
        r#"{{"id":"a","status":"firing","summary":"{}"}}"#,
        "é".repeat(10_000)
    );
    let p = Source::Generic
        .parse(body.as_bytes(), MediaType::Json)
        .unwrap();
    let s = p.updates[0].summary.as_deref().unwrap();
    assert!(
        s.len() <= super::MAX_LABEL_LEN && s.ends_with('…'),
        "{}",
        s.len()
    );
    let body = format!(
        r#"{{"id":"{}","status":"firing"}}"#,
        "x".repeat(super::MAX_ID_LEN + 1)
    );
    assert!(matches!(
        Source::Generic.parse(body.as_bytes(), MediaType::Json),
        Err(ParseError::Invalid(_))
    ));
    let labels: Vec<String> = (0..=super::MAX_LABELS)
        .map(|i| format!("\"l{i}\":\"v\""))
        .collect();
    let body = format!(
        r#"{{"id":"a","status":"firing","labels":{{{}}}}}"#,
        labels.join(",")
    );
    assert!(matches!(
        Source::Generic.parse(body.as_bytes(), MediaType::Json),
        Err(ParseError::Invalid(_))
    ));
}

/// Every fixture with the source that receives it.
const FIXTURES: &[(Source, MediaType, &str)] = &[
    (
        Source::Alertmanager,
        MediaType::Json,
        include_str!("../../tests/fixtures/alerts/alertmanager-firing.json"),
    ),
    (
        Source::Grafana,
        MediaType::Json,
        include_str!("../../tests/fixtures/alerts/grafana-firing.json"),
    ),
    (
        Source::PagerDuty,
        MediaType::Json,
        include_str!("../../tests/fixtures/alerts/pagerduty-triggered.json"),
    ),
    (
        Source::Datadog,
        MediaType::Json,
        include_str!("../../tests/fixtures/alerts/datadog-triggered.json"),
    ),
    (
        Source::Opsgenie,
        MediaType::Json,
        include_str!("../../tests/fixtures/alerts/opsgenie-create.json"),
    ),
    (
        Source::Statuspage,
        MediaType::Json,
        include_str!("../../tests/fixtures/alerts/statuspage-incident.json"),
    ),
    (
        Source::Generic,
        MediaType::Json,
        include_str!("../../tests/fixtures/alerts/generic-firing.json"),
    ),
    (
        Source::Generic,
        MediaType::CloudEvent,
        include_str!("../../tests/fixtures/alerts/cloudevent.json"),
    ),
];

#[test]
fn every_fixture_fires_exactly_one_alert_of_its_source() {
    for (source, media, body) in FIXTURES {
        let p = source.parse(body.as_bytes(), *media).unwrap();
        assert_eq!(p.updates.len(), 1, "{source}");
        assert!(p.updates[0].firing, "{source}");
        assert_eq!(p.updates[0].key.source, source.as_str());
    }
}

proptest! {
    // 256 cases by default; PROPTEST_CASES=100000 for a longer soak.
    #![proptest_config(ProptestConfig::default())]

    /// Real payloads with a few bytes changed: close to valid, so the typed
    /// paths deep inside each parser are reached. Whatever comes back obeys
    /// the bounds, and nothing panics.
    #[test]
    fn mutated_fixtures_never_panic(
        which in 0..FIXTURES.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6),
    ) {
        let (source, media, body) = FIXTURES[which];
        let mut bytes = body.as_bytes().to_vec();
        for (at, byte, op) in edits {
            if bytes.is_empty() { break; }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = byte,
                1 => { bytes.remove(i); }
                _ => bytes.insert(i, byte),
            }
        }
        if let Ok(p) = source.parse(&bytes, media) {
            for u in &p.updates {
                prop_assert!(u.validate().is_ok());
                prop_assert_eq!(&u.key.source, source.as_str());
            }
        }
    }

    /// The generic format round-trips: what a sender writes is what the engine gets.
    #[test]
    fn generic_round_trip(
        alerts in proptest::collection::vec(
            (
                "[a-zA-Z0-9._:/-]{1,40}",
                any::<bool>(),
                proptest::collection::btree_map("[a-z_]{1,12}", ".{0,20}", 0..6),
                proptest::option::of(".{1,40}"),
            ),
            1..8,
        )
    ) {
        let docs: Vec<serde_json::Value> = alerts
            .iter()
            .map(|(id, firing, labels, summary)| serde_json::json!({
                "id": id,
                "status": if *firing { "firing" } else { "resolved" },
                "labels": labels,
                "summary": summary,
            }))
            .collect();
        let body = serde_json::to_vec(&docs).unwrap();
        let p = Source::Generic.parse(&body, MediaType::Json).unwrap();
        prop_assert_eq!(p.updates.len(), alerts.len());
        for (u, (id, firing, labels, summary)) in p.updates.iter().zip(&alerts) {
            prop_assert_eq!(&u.key.id, id);
            prop_assert_eq!(u.firing, *firing);
            prop_assert_eq!(&u.labels, labels);
            if *firing {
                prop_assert_eq!(&u.summary, summary);
            }
        }
    }

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        parse_all(&body);
    }

    /// Random JSON values, shaped like the payloads, exercise the typed paths.
    #[test]
    fn random_json_never_panics(v in json_value(4)) {
        let body = serde_json::to_vec(&v).unwrap();
        parse_all(&body);
        for wrap in ["alerts", "event", "alert", "component", "incident", "data"] {
            let body = serde_json::to_vec(&serde_json::json!({ wrap: v.clone() })).unwrap();
            parse_all(&body);
        }
    }
}

fn json_value(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            Just("firing"),
            Just("resolved"),
            Just("Create"),
            Just("Close"),
            Just("incident.triggered"),
            Just("incident.resolved"),
            Just("Triggered"),
            Just("Recovered"),
            Just("operational"),
            Just("4"),
            Just("1"),
            Just("1.0"),
            Just(""),
        ]
        .prop_map(|s| Value::String(s.to_string())),
        "[a-z$ :_.-]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, 64, 8, |inner| {
        let key = prop_oneof![
            Just("id"),
            Just("status"),
            Just("labels"),
            Just("alerts"),
            Just("fingerprint"),
            Just("version"),
            Just("event"),
            Just("event_type"),
            Just("data"),
            Just("action"),
            Just("alert"),
            Just("alertId"),
            Just("alias"),
            Just("tags"),
            Just("teams"),
            Just("transition"),
            Just("scope"),
            Just("component"),
            Just("incident"),
            Just("specversion"),
            Just("source"),
            Just("type"),
            Just("subject"),
            Just("x"),
        ]
        .prop_map(str::to_string);
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(key, inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
