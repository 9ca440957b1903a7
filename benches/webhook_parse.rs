//! Cost of turning a webhook body into alert updates, per delivery, without
//! HTTP or the store: the CPU part of `/v1/alerts/<source>` that grows with
//! the payload.
//!
//! Cases:
//! - `well_formed/alertmanager_10`: the JSON pre-check every body passes
//!   before a parser sees it (depth and syntax, `server::body`);
//! - `parse/alertmanager_10`: `Source::parse` on the ingest benchmark's
//!   payload (`bench/ingest.rs`): ten firing alerts with seven labels and
//!   three annotations each, as Alertmanager sends them;
//! - `parse/<fixture>`: each source's recorded payload in
//!   `tests/fixtures/alerts/` (one alert each), so a regression in one
//!   source's parser shows by name.
//!
//! Run: `cargo bench --bench webhook_parse` (`bench/run.sh webhook_parse`
//! adds it to BENCHMARKS.md's criterion table).

use std::hint::black_box;
use std::path::Path;

use continuity_agent::alerts::Source;
use continuity_agent::server::body::{MediaType, check_well_formed};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;

/// The ingest benchmark's delivery: `n` firing alerts of one group.
fn alertmanager_payload(n: usize) -> Vec<u8> {
    let alerts: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            json!({
                "status": "firing",
                "labels": {
                    "alertname": "HighSipErrorRate",
                    "severity": "critical",
                    "team": "voice",
                    "region": "us-east-1",
                    "job": "blackbox-sip",
                    "instance": format!("sip-edge-{i:02}.voice.example.net:5060"),
                    "env": "production",
                },
                "annotations": {
                    "summary": format!("SIP trunk sip-edge-{i:02} is not answering OPTIONS"),
                    "description": format!("probe_success == 0 for 2m on sip-edge-{i:02}"),
                    "runbook_url": "https://runbooks.example.net/voice/sip-trunk-down",
                },
                "startsAt": "2026-12-01T08:00:00.000Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus-0.monitoring.example.net:9090/graph?g0.expr=probe_success",
                "fingerprint": format!("{:016x}", 0x5eed_0000_u64 + i as u64),
            })
        })
        .collect();
    serde_json::to_vec(&json!({
        "receiver": "continuity-agent",
        "status": "firing",
        "alerts": alerts,
        "groupLabels": {"alertname": "HighSipErrorRate"},
        "commonLabels": {"alertname": "HighSipErrorRate", "severity": "critical"},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager-0.monitoring.example.net:9093",
        "version": "4",
        "groupKey": "{}:{alertname=\"HighSipErrorRate\"}",
        "truncatedAlerts": 0,
    }))
    .expect("payload serializes")
}

/// Each recorded fixture with the source whose route receives it (the file
/// name starts with the source's name).
fn fixtures() -> Vec<(String, Source, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/alerts");
    let mut out: Vec<(String, Source, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("fixtures directory")
        .map(|e| e.expect("fixture entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| {
            let stem = p.file_stem()?.to_str()?.to_string();
            // cloudevent.json is a CloudEvent for the generic route.
            let source = match stem.split('-').next()? {
                "cloudevent" => return None,
                name => Source::from_name(name)?,
            };
            Some((stem, source, std::fs::read(&p).expect("fixture reads")))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn bench(c: &mut Criterion) {
    let am10 = alertmanager_payload(10);
    let parsed = Source::Alertmanager
        .parse(&am10, MediaType::Json)
        .expect("the 10-alert payload parses");
    assert_eq!(parsed.updates.len(), 10, "one update per alert");

    c.bench_function("well_formed/alertmanager_10", |b| {
        b.iter(|| black_box(check_well_formed(black_box(&am10))))
    });
    c.bench_function("parse/alertmanager_10", |b| {
        b.iter(|| black_box(Source::Alertmanager.parse(black_box(&am10), MediaType::Json)))
    });
    let fixtures = fixtures();
    assert!(fixtures.len() >= 7, "every source has a fixture");
    for (name, source, body) in &fixtures {
        assert!(
            source.parse(body, MediaType::Json).is_ok(),
            "fixture {name} parses"
        );
        c.bench_function(&format!("parse/{name}"), |b| {
            b.iter(|| black_box(source.parse(black_box(body), MediaType::Json)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
