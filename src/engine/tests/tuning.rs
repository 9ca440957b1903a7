//! The defaults' trade-off, computed over the real engine: how fast a real
//! outage is detected and how often pure packet loss switches calls away,
//! for the default probe and rule settings and some alternatives, at 5%,
//! 20% and 50% i.i.d. loss. The table is `docs/tuning.md`'s; this test
//! fails if the document and the engine disagree.
//!
//! The model: one SIP trunk behind one rule (`when = { down = "trunk" }`),
//! probed like the scheduler does (`probe/scheduler.rs`): an attempt every
//! `interval`, or `fast_interval` while the engine asks; a lost probe and a
//! dead trunk both answer nothing, so their failure arrives `timeout` after
//! the attempt started, which also delays the next attempt; a success
//! arrives at once. The flap latch is left out (it only ever holds the
//! fallback on, so it can only hide activations).
//!
//! False activations are rare events (the target is below one a year), too
//! rare to count in a simulation that runs in a test. So the rate is split
//! where the process renews itself: the trunk is up and settled (no failure
//! pending, normal cadence, rule inactive, fallback off) and a probe fails.
//! - how often such an *excursion* starts is measured by simulating
//!   `HORIZON` seconds of loss (seeded RNG, virtual time);
//! - the probability that an excursion ends with the fallback on is
//!   computed exactly, by exploring every sequence of later results
//!   (failure with probability `loss`) on clones of the engine taken at a
//!   real excursion start, until each sequence activates or renews
//!   (sequences less likely than `PRUNE` are dropped; their total weight
//!   bounds the error and is asserted negligible).
//!
//! Their product is the rate. Where activations are frequent enough to be
//! counted directly in the simulation, the count must agree with it: that
//! checks the decomposition.
//!
//! Detection: at `OUTAGES` instants of the simulation (random phase), a
//! clone of the engine sees every later probe fail; the time until the
//! fallback goes on is the detection time.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::domain::ProbeHealth;
use crate::engine::RulePhase;

/// Simulated seconds of loss per cell.
const HORIZON: i64 = 200_000;
const OUTAGES: i64 = 200;
const PRUNE: f64 = 1e-12;
const YEAR: f64 = 365.0 * 24.0 * 3600.0;
const LOSSES: [f64; 3] = [0.05, 0.20, 0.50];

/// (name, probe keys, rule keys). The first is the shipped defaults.
const CONFIGS: [(&str, &str, &str); 4] = [
    ("defaults (fall 10, for 0s)", "", ""),
    ("before: fall 3, for 0s", "fall = 3", ""),
    ("fall 3, for 30s", "fall = 3", "for = \"30s\""),
    ("fall 8, for 0s", "fall = 8", ""),
];

fn config(probe: &str, rule: &str) -> String {
    format!(
        r#"
[profiles.backup]
default = "+14155550100"
[[probes]]
id = "trunk"
type = "sip"
target = "sip:trunk.example.net"
{probe}
[[rules]]
name = "trunk-down"
profile = "backup"
when = {{ down = "trunk" }}
{rule}
[engine]
flap_max = 1000000
"#
    )
}

/// The engine with the scheduler's timing around it.
#[derive(Clone)]
struct Sim {
    e: Engine,
    /// Milliseconds.
    next_start: i64,
    fast: bool,
    interval: i64,
    fast_interval: i64,
    timeout: i64,
}

impl Sim {
    fn new(src: &str) -> Sim {
        let cfg = match crate::config::from_toml_str(src, "tuning") {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        let p = &cfg.probe_settings[0];
        let ms = |d: std::time::Duration| d.as_millis() as i64;
        Sim {
            e: Engine::new(cfg.engine_spec()),
            next_start: 0,
            fast: true,
            interval: ms(p.cadence.interval),
            fast_interval: ms(p.cadence.fast_interval),
            timeout: ms(p.cadence.timeout),
        }
    }

    /// One probe attempt; returns whether the fallback was switched on.
    fn attempt(&mut self, success: bool) -> bool {
        let start = self.next_start;
        let at = start + if success { 0 } else { self.timeout };
        let mut on = false;
        while let Some(d) = self.e.next_deadline() {
            if d.0 >= at {
                break;
            }
            let cmds = self.e.step(Event::Tick, d);
            on |= self.apply(cmds);
        }
        let ev = if success {
            ok("trunk")
        } else {
            fail("trunk", "timeout after 2s")
        };
        let cmds = self.e.step(ev, Timestamp(at));
        on |= self.apply(cmds);
        let period = if self.fast {
            self.fast_interval
        } else {
            self.interval
        };
        self.next_start = (start + period).max(at);
        on
    }

    fn apply(&mut self, cmds: Vec<Command>) -> bool {
        let mut on = false;
        for c in cmds {
            match c {
                Command::ProbeCadence { fast, .. } => self.fast = fast,
                Command::SetDesired { desired, .. } => on |= desired.is_active(),
                _ => {}
            }
        }
        on
    }

    /// Up and settled, rule inactive, fallback off: where excursions start.
    fn renewed(&self) -> bool {
        let p = &self.e.st.probes[0];
        p.health == ProbeHealth::Up
            && p.failures == 0
            && !self.fast
            && self.e.rules[0].state.phase == RulePhase::Inactive
            && !self.e.desired().is_active()
    }
}

/// P(the excursion that starts with a failure from `start` activates),
/// and the weight of the sequences pruned unresolved.
fn p_activation(start: &Sim, loss: f64) -> (f64, f64) {
    fn go(mut s: Sim, success: bool, w: f64, loss: f64, acc: &mut (f64, f64)) {
        if s.attempt(success) {
            acc.0 += w;
        } else if s.renewed() {
        } else if w < PRUNE {
            acc.1 += w;
        } else {
            go(s.clone(), false, w * loss, loss, acc);
            go(s, true, w * (1.0 - loss), loss, acc);
        }
    }
    let mut acc = (0.0, 0.0);
    go(start.clone(), false, 1.0, loss, &mut acc);
    acc
}

struct Cell {
    detection_mean: f64,
    detection_max: f64,
    per_year: f64,
    direct: u32,
    expected_direct: f64,
    pruned: f64,
}

fn cell(src: &str, loss: f64, seed: u64) -> Cell {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut s = Sim::new(src);
    let (mut excursions, mut direct) = (0u32, 0u32);
    let mut first: Option<Sim> = None;
    let mut detections = Vec::new();
    let mut next_outage = rng.random_range(0..10_000);
    while s.next_start < HORIZON * 1000 {
        if s.next_start >= next_outage {
            if !s.e.desired().is_active() {
                detections.push(detect(&s, next_outage));
            }
            next_outage += HORIZON * 1000 / OUTAGES + rng.random_range(0..10_000);
        }
        let success = !rng.random_bool(loss);
        if !success && s.renewed() {
            excursions += 1;
            first.get_or_insert_with(|| s.clone());
        }
        direct += u32::from(s.attempt(success));
    }
    let Some(first) = first else {
        panic!("no excursion at loss {loss}");
    };
    let (p, pruned) = p_activation(&first, loss);
    let per_second = f64::from(excursions) / HORIZON as f64 * p;
    let n = detections.len() as f64;
    Cell {
        detection_mean: detections.iter().sum::<f64>() / n,
        detection_max: detections.iter().copied().fold(0.0, f64::max),
        per_year: per_second * YEAR,
        direct,
        expected_direct: per_second * HORIZON as f64,
        pruned,
    }
}

/// Seconds from `from` (ms) until the fallback goes on when every later
/// probe fails.
fn detect(s: &Sim, from: i64) -> f64 {
    let mut s = s.clone();
    for _ in 0..1000 {
        if s.attempt(false) {
            break;
        }
    }
    let on = s.e.st.active_since.map_or(i64::MAX, |t| t.0);
    (on - from) as f64 / 1000.0
}

fn per_year(x: f64) -> String {
    match x {
        x if x >= 100.0 => format!("{x:.0}"),
        x if x >= 1.0 => format!("{x:.1}"),
        x => format!("{x:.2}"),
    }
}

#[test]
fn engine_tuning_defaults_cry_wolf_less_than_once_a_year_and_detect_within_30s() {
    let mut rows = vec![
        "| settings | loss | detection mean | detection max | false activations per year |"
            .to_string(),
        "|---|---|---|---|---|".to_string(),
    ];
    let mut cells = Vec::new();
    for (ci, (name, probe, rule)) in CONFIGS.iter().enumerate() {
        for (li, &loss) in LOSSES.iter().enumerate() {
            let c = cell(&config(probe, rule), loss, 0x5EED + (ci * 10 + li) as u64);
            rows.push(format!(
                "| {name} | {:.0}% | {:.1}s | {:.1}s | {} |",
                loss * 100.0,
                c.detection_mean,
                c.detection_max,
                per_year(c.per_year)
            ));
            cells.push((ci, loss, c));
        }
    }
    let table = rows.join("\n");
    eprintln!("{table}");
    for (ci, loss, c) in &cells {
        let what = format!("{} at {loss}", CONFIGS[*ci].0);
        assert!(
            c.pruned * 1e3 < c.per_year / YEAR + 1e-12,
            "{what}: pruned {}",
            c.pruned
        );
        // The decomposition agrees with what the simulation counted directly.
        let sd = c.expected_direct.sqrt();
        assert!(
            (f64::from(c.direct) - c.expected_direct).abs() <= 4.0 * sd + 2.0,
            "{what}: counted {} activations, the rate predicts {:.1}",
            c.direct,
            c.expected_direct
        );
    }
    let (_, _, defaults) = cells
        .iter()
        .find(|(ci, loss, _)| *ci == 0 && *loss == 0.20)
        .expect("defaults at 20%");
    assert!(
        defaults.per_year < 1.0,
        "defaults: {} false activations a year at 20% loss\n{table}",
        defaults.per_year
    );
    assert!(
        defaults.detection_max <= 31.0,
        "defaults: detection up to {}s\n{table}",
        defaults.detection_max
    );
    let doc = include_str!("../../../docs/tuning.md");
    for row in &rows[2..] {
        assert!(
            doc.contains(row.as_str()),
            "docs/tuning.md is not what the engine computes; replace its table with:\n{table}"
        );
    }
}
