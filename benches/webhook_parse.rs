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

// The ingest benchmark's own payload builder, so both measure one delivery.
#[path = "../bench/common/world.rs"]
mod world;

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
    let am10 = world::alertmanager_payload("HighSipErrorRate", 10, true, 0).into_bytes();
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
