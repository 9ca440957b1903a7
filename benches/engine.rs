//! Cost of one `Engine::step` at scale: 10,000 probes and 100 rules.
//!
//! Each rule watches its own group of 100 probes (`down = "grp-K-*",
//! at_least = 2`) or an alert, like a large multi-site deployment. Cases:
//! - `probe_result_no_change`: a success for a probe that is already up (the
//!   common case: most results change nothing);
//! - `probe_result_flip`: results that flip a probe up/down every step
//!   (rise = fall = 1), forcing its rule to be re-evaluated;
//! - `tick`: a timer tick with nothing due;
//! - `one_glob`: the SIP benchmark's shape (`bench/sip.rs`): one rule over
//!   all 10,000 probes (`down = "trunk-*"`), a result that changes nothing,
//!   then `next_deadline`, as the daemon's loop does after every step.
//!
//! Run: `cargo bench --bench engine`.
//!
//! Measured once on the shared 2-core build machine (release, criterion
//! median): no change 428 ns, flip 684 ns, tick 387 ns per step.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use continuity_agent::domain::{ProbeHealth, ProbeOutcome, Timestamp};
use continuity_agent::engine::matcher::Matcher;
use continuity_agent::engine::{Engine, EngineSpec, Event, Expr, ProbeSpec, RuleSpec};
use criterion::{Criterion, criterion_group, criterion_main};

const GROUPS: usize = 100;
const PER_GROUP: usize = 100;

fn spec() -> EngineSpec {
    let mut probes = Vec::with_capacity(GROUPS * PER_GROUP);
    let mut rules = Vec::with_capacity(GROUPS);
    for g in 0..GROUPS {
        let ids: Vec<String> = (0..PER_GROUP).map(|i| format!("grp-{g}-{i}")).collect();
        probes.extend(ids.iter().map(|id| ProbeSpec {
            id: id.clone(),
            kind: "sip",
            rise: 1,
            fall: 1,
        }));
        let leaf = Expr::Probes {
            state: ProbeHealth::Down,
            glob: format!("grp-{g}-*"),
            probes: ids,
            at_least: Some(2),
        };
        let alert = Matcher::parse(&format!("alertname=\"SiteDown{g}\""))
            .map(|m| Expr::Alert { matchers: vec![m] })
            .unwrap_or(Expr::All(vec![]));
        rules.push(RuleSpec {
            name: format!("site-{g}"),
            profile: "backup".into(),
            priority: g as i32,
            for_: Duration::from_secs(10),
            clear_for: Duration::from_secs(120),
            min_active: Duration::from_secs(300),
            when: Expr::Any(vec![leaf, alert]),
            checksum: format!("{g}"),
        });
    }
    EngineSpec {
        probes: probes.into(),
        rules,
        profiles: vec!["backup".into()],
        drills: BTreeMap::new(),
        flap_max: 4,
        flap_window: Duration::from_secs(1800),
        alerts_ttl: Duration::from_secs(900),
        alerts_max_active: 1_000,
        alert_ttls: Default::default(),
        self_check: true,
        self_check_wait: continuity_agent::probe::selfcheck::VERDICT_WITHIN,
    }
}

/// An engine with every probe up.
fn warm() -> (Engine, i64) {
    let mut e = Engine::new(spec());
    let ids: Vec<String> = e.spec().probes.iter().map(|p| p.id.clone()).collect();
    let mut now = 0;
    for id in ids {
        now += 1;
        e.step(result(&id, true), Timestamp(now));
    }
    (e, now)
}

fn result(probe: &str, success: bool) -> Event {
    Event::ProbeResult {
        probe: probe.to_string(),
        outcome: if success {
            ProbeOutcome::success("200 OK", None)
        } else {
            ProbeOutcome::failure("timeout after 2s", None)
        },
    }
}

/// One rule reading every probe through one glob (`down = "trunk-*"`).
fn one_glob_spec() -> EngineSpec {
    let mut s = spec();
    let ids: Vec<String> = s.probes.iter().map(|p| p.id.clone()).collect();
    let first = s.rules.swap_remove(0);
    s.rules = vec![RuleSpec {
        name: "trunks-down".into(),
        when: Expr::Probes {
            state: ProbeHealth::Down,
            glob: "*".into(),
            probes: ids,
            at_least: None,
        },
        ..first
    }];
    s
}

fn bench(c: &mut Criterion) {
    let ids: Vec<String> = spec().probes.iter().map(|p| p.id.clone()).collect();

    let (mut e, mut now) = warm();
    let mut i = 0usize;
    c.bench_function("step/probe_result_no_change (10k probes, 100 rules)", |b| {
        b.iter(|| {
            i = (i + 1) % ids.len();
            now += 1;
            black_box(e.step(result(&ids[i], true), Timestamp(now)))
        })
    });

    let (mut e, mut now) = warm();
    let mut n = 0u64;
    c.bench_function("step/probe_result_flip (10k probes, 100 rules)", |b| {
        b.iter(|| {
            n += 1;
            // Walk the groups so each flip hits a different rule; fail then recover.
            let id = &ids[((n / 2) as usize * PER_GROUP) % ids.len()];
            now += 1;
            black_box(e.step(result(id, n % 2 == 1), Timestamp(now)))
        })
    });

    let mut e = Engine::new(one_glob_spec());
    let mut now = 0;
    for id in &ids {
        now += 1;
        e.step(result(id, true), Timestamp(now));
    }
    let mut i = 0usize;
    c.bench_function(
        "step+next_deadline/probe_result_no_change (10k probes in one glob rule)",
        |b| {
            b.iter(|| {
                i = (i + 1) % ids.len();
                now += 1;
                black_box(e.step(result(&ids[i], true), Timestamp(now)));
                black_box(e.next_deadline())
            })
        },
    );

    let (mut e, mut now) = warm();
    c.bench_function("step/tick (10k probes, 100 rules)", |b| {
        b.iter(|| {
            now += 1;
            black_box(e.step(Event::Tick, Timestamp(now)))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
