//! What each fuzz target checks, in one place: the cargo-fuzz targets
//! (`fuzz_targets/*.rs`) run these under libFuzzer, and the test suite
//! (`tests/fuzz_corpus.rs`) replays every committed corpus through them, so
//! CI checks the corpora without an instrumented build. Each function must
//! not panic for any input; the assertions are the targets' invariants.

use continuity_agent::alerts::Source;
use continuity_agent::probe::call::{dialog, digest, rtp, sdp};
use continuity_agent::probe::sip::{parse_response, parse_target};
use continuity_agent::server::body::MediaType;

/// A webhook parser never panics; an accepted body gives updates within the
/// documented bounds, named after their source.
fn webhook(source: Source, name: &str, data: &[u8]) {
    if let Ok(parsed) = source.parse(data, MediaType::Json) {
        for u in &parsed.updates {
            assert!(u.validate().is_ok());
            assert_eq!(u.key.source, name);
        }
    }
}

pub fn alertmanager(data: &[u8]) {
    webhook(Source::Alertmanager, "alertmanager", data);
}

pub fn datadog(data: &[u8]) {
    webhook(Source::Datadog, "datadog", data);
}

pub fn generic(data: &[u8]) {
    webhook(Source::Generic, "generic", data);
}

pub fn grafana(data: &[u8]) {
    webhook(Source::Grafana, "grafana", data);
}

pub fn opsgenie(data: &[u8]) {
    webhook(Source::Opsgenie, "opsgenie", data);
}

pub fn pagerduty(data: &[u8]) {
    webhook(Source::PagerDuty, "pagerduty", data);
}

pub fn statuspage(data: &[u8]) {
    webhook(Source::Statuspage, "statuspage", data);
}

/// CloudEvents, structured and batched, through the generic source.
pub fn cloudevents(data: &[u8]) {
    for media in [MediaType::CloudEvent, MediaType::CloudEventBatch] {
        if let Ok(parsed) = Source::Generic.parse(data, media) {
            for u in &parsed.updates {
                assert!(u.validate().is_ok());
            }
        }
    }
}

/// Loading a configuration never panics: every problem is an error naming
/// its key.
pub fn config(data: &[u8]) {
    if let Ok(src) = std::str::from_utf8(data)
        && let Err(e) = continuity_agent::config::from_toml_str(src, "fuzz.toml")
    {
        assert!(!e.errors.is_empty());
    }
}

/// The SIP response and target parsers never panic.
pub fn sip_response(data: &[u8]) {
    let _ = parse_response(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_target(s);
    }
}

/// The call probe's parsers (dialog, SDP answer, digest challenge, RTP)
/// never panic, and RTP loss stays a fraction.
pub fn call_answer(data: &[u8]) {
    if let Ok(dialog::Incoming::Response(r)) = dialog::parse_incoming(data) {
        let _ = sdp::parse_answer(&r.body);
    }
    let _ = sdp::parse_answer(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = digest::parse_challenge(s);
    }
    if let Some(h) = rtp::parse(data) {
        let mut rx = rtp::Receiver::default();
        rx.on_packet(&h, std::time::Duration::from_millis(20));
        rx.on_packet(&h, std::time::Duration::ZERO);
        let s = rx.stats();
        assert!((0.0..=1.0).contains(&s.loss));
    }
}

/// A target's checks, run on one input.
pub type Check = fn(&[u8]);

/// Every target by name (the corpus directory of each is `corpus/<name>`).
pub const TARGETS: &[(&str, Check)] = &[
    ("alertmanager", alertmanager),
    ("call_answer", call_answer),
    ("cloudevents", cloudevents),
    ("config", config),
    ("datadog", datadog),
    ("generic", generic),
    ("grafana", grafana),
    ("opsgenie", opsgenie),
    ("pagerduty", pagerduty),
    ("sip_response", sip_response),
    ("statuspage", statuspage),
];
