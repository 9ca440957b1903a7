//! The per-probe families, `continuity_probe_up{probe,type}`,
//! `continuity_probe_duration_seconds{probe,type}` and
//! `continuity_probe_results_total{probe,result}`, as one compact collector
//! instead of three `prometheus` vectors.
//!
//! Why: a child of a `prometheus` vector keeps its own copy of its family's
//! description (name, help, label names) and its own label pairs, and a
//! histogram child two shards of buckets. With five children per probe, at
//! 10,000 SIP probes they were about 27 MB of the heap (heaptrack,
//! BENCHMARKS.md "RSS at 10,000"). Here a probe is one [`ProbeCell`]: its
//! type and a few counters behind an uncontended lock (a probe records one
//! result per interval). The exposition's structures exist only while
//! `/metrics` is being scraped.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use crate::domain::ProbeResult;

/// Probe round trips range from sub-millisecond (loopback) to the timeout.
const PROBE_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const UP: &str = "continuity_probe_up";
const DURATION: &str = "continuity_probe_duration_seconds";
const RESULTS: &str = "continuity_probe_results_total";
const UP_HELP: &str = "Probe health: 1 up, 0 down, -1 unknown.";
const DURATION_HELP: &str = "Duration of probe attempts.";
const RESULTS_HELP: &str = "Probe attempts by result.";

/// One probe's series.
#[derive(Debug)]
pub struct ProbeCell {
    kind: Box<str>,
    values: Mutex<Values>,
}

#[derive(Debug, Default)]
struct Values {
    /// `continuity_probe_up`; `None`: no series (never set, or forgotten).
    up: Option<i64>,
    /// By [`ProbeResult`] in `ALL` order.
    results: [u64; 3],
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    buckets: [u64; PROBE_BUCKETS.len() + 1],
    sum: f64,
}

impl ProbeCell {
    fn new(kind: &str) -> ProbeCell {
        ProbeCell {
            kind: kind.into(),
            values: Mutex::default(),
        }
    }

    fn values(&self) -> std::sync::MutexGuard<'_, Values> {
        // A panic while holding this lock leaves plain numbers behind, still
        // valid: keep counting.
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one attempt: its duration and its result.
    pub fn record(&self, seconds: f64, result: ProbeResult) {
        let bucket = PROBE_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(PROBE_BUCKETS.len());
        let mut v = self.values();
        v.buckets[bucket] += 1;
        v.sum += seconds;
        v.results[result as usize] += 1;
    }

    /// Attempts counted with `result`.
    pub fn results(&self, result: ProbeResult) -> u64 {
        self.values().results[result as usize]
    }

    /// Attempts observed by the duration histogram.
    #[cfg(test)]
    fn observed(&self) -> u64 {
        self.values().buckets.iter().sum()
    }
}

/// The three families, every probe's cell by id.
#[derive(Clone)]
pub struct ProbeFamilies {
    cells: Arc<RwLock<BTreeMap<Box<str>, Arc<ProbeCell>>>>,
    descs: Arc<[Desc; 3]>,
}

impl std::fmt::Debug for ProbeFamilies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeFamilies").finish_non_exhaustive()
    }
}

impl ProbeFamilies {
    pub(super) fn new() -> ProbeFamilies {
        let desc = |name: &str, help: &str, labels: [&str; 2]| {
            Desc::new(
                name.into(),
                help.into(),
                labels.iter().map(|l| l.to_string()).collect(),
                Default::default(),
            )
            .expect("a valid metric description")
        };
        ProbeFamilies {
            cells: Arc::default(),
            descs: Arc::new([
                desc(UP, UP_HELP, ["probe", "type"]),
                desc(DURATION, DURATION_HELP, ["probe", "type"]),
                desc(RESULTS, RESULTS_HELP, ["probe", "result"]),
            ]),
        }
    }

    /// Probe `id`'s cell, created at zero if it has none. A probe whose type
    /// changed (a reload) starts a new cell: its series have other labels.
    pub fn cell(&self, id: &str, kind: &str) -> Arc<ProbeCell> {
        if let Some(cell) = self.read().get(id).filter(|c| *c.kind == *kind) {
            return Arc::clone(cell);
        }
        let mut cells = self.cells.write().unwrap_or_else(|e| e.into_inner());
        let cell = cells
            .entry(id.into())
            .and_modify(|c| {
                if *c.kind != *kind {
                    *c = Arc::new(ProbeCell::new(kind));
                }
            })
            .or_insert_with(|| Arc::new(ProbeCell::new(kind)));
        Arc::clone(cell)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Box<str>, Arc<ProbeCell>>> {
        self.cells.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets `continuity_probe_up{probe=id,type=kind}`.
    pub fn set_up(&self, id: &str, kind: &str, value: i64) {
        self.cell(id, kind).values().up = Some(value);
    }

    /// `continuity_probe_up` of probe `id`, if it has the series.
    pub fn up(&self, id: &str) -> Option<i64> {
        self.read().get(id).and_then(|c| c.values().up)
    }

    /// Removes `continuity_probe_up{probe=id,type=kind}` (a reload removed
    /// the probe, or changed its type): a gauge would otherwise show its
    /// last value forever. A cell of another type is another series and
    /// stays. Counters stay, as counters do.
    pub fn forget_up(&self, id: &str, kind: &str) {
        if let Some(cell) = self.read().get(id).filter(|c| *c.kind == *kind) {
            cell.values().up = None;
        }
    }

    /// Attempts of probe `id` counted with `result` (0 for an unknown id).
    pub fn results(&self, id: &str, result: ProbeResult) -> u64 {
        self.read().get(id).map_or(0, |c| c.results(result))
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn family(desc: &Desc, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(desc.fq_name.clone());
    f.set_help(desc.help.clone());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

impl Collector for ProbeFamilies {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    /// Built at each scrape, in id order (the registry sorts again).
    fn collect(&self) -> Vec<MetricFamily> {
        let cells = self.read();
        let mut up = Vec::new();
        let mut durations = Vec::with_capacity(cells.len());
        let mut results = Vec::with_capacity(cells.len() * ProbeResult::ALL.len());
        for (id, cell) in cells.iter() {
            let v = cell.values();
            if let Some(value) = v.up {
                let mut g = Gauge::default();
                g.set_value(value as f64);
                let mut m = Metric::from_gauge(g);
                m.set_label(vec![label("probe", id), label("type", &cell.kind)]);
                up.push(m);
            }
            let mut h = Histogram::default();
            let mut cumulative = 0;
            let buckets = PROBE_BUCKETS
                .iter()
                .zip(v.buckets)
                .map(|(bound, n)| {
                    cumulative += n;
                    let mut b = Bucket::default();
                    b.set_upper_bound(*bound);
                    b.set_cumulative_count(cumulative);
                    b
                })
                .collect();
            h.set_bucket(buckets);
            h.set_sample_count(v.buckets.iter().sum());
            h.set_sample_sum(v.sum);
            let mut m = Metric::default();
            m.set_label(vec![label("probe", id), label("type", &cell.kind)]);
            m.set_histogram(h);
            durations.push(m);
            for r in ProbeResult::ALL {
                let mut c = Counter::default();
                c.set_value(v.results[r as usize] as f64);
                let mut m = Metric::default();
                m.set_label(vec![label("probe", id), label("result", r.label())]);
                m.set_counter(c);
                results.push(m);
            }
        }
        let [d_up, d_duration, d_results] = &*self.descs;
        vec![
            family(d_up, MetricType::GAUGE, up),
            family(d_duration, MetricType::HISTOGRAM, durations),
            family(d_results, MetricType::COUNTER, results),
        ]
    }
}

#[cfg(test)]
mod tests {
    use prometheus::{
        Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
        TextEncoder,
    };

    use super::*;

    fn render(registry: &Registry) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut buf)
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    /// The exposition is byte for byte what the three `prometheus` vectors
    /// this collector replaced write for the same observations.
    #[test]
    fn the_exposition_is_what_prometheus_vectors_would_write() {
        let reference = Registry::new();
        let up = IntGaugeVec::new(Opts::new(UP, UP_HELP), &["probe", "type"]).unwrap();
        let duration = HistogramVec::new(
            HistogramOpts::new(DURATION, DURATION_HELP).buckets(PROBE_BUCKETS.to_vec()),
            &["probe", "type"],
        )
        .unwrap();
        let results =
            IntCounterVec::new(Opts::new(RESULTS, RESULTS_HELP), &["probe", "result"]).unwrap();
        reference.register(Box::new(up.clone())).unwrap();
        reference.register(Box::new(duration.clone())).unwrap();
        reference.register(Box::new(results.clone())).unwrap();

        let ours = Registry::new();
        let families = ProbeFamilies::new();
        ours.register(Box::new(families.clone())).unwrap();

        // Values on bucket bounds, between them, beyond the last; three
        // probes, one never set up, one created with no attempt.
        let attempts = [
            ("trunk-b", "sip", 0.001, ProbeResult::Success),
            ("trunk-b", "sip", 0.0031, ProbeResult::Failure),
            ("trunk-b", "sip", 12.5, ProbeResult::Inconclusive),
            ("trunk-a", "http", 0.5, ProbeResult::Success),
            ("trunk-a", "http", 0.75, ProbeResult::Success),
        ];
        for (id, kind, seconds, result) in attempts {
            duration.with_label_values(&[id, kind]).observe(seconds);
            for r in ProbeResult::ALL {
                results.with_label_values(&[id, r.label()]);
            }
            results.with_label_values(&[id, result.label()]).inc();
            families.cell(id, kind).record(seconds, result);
        }
        duration.with_label_values(&["idle", "agents"]);
        for r in ProbeResult::ALL {
            results.with_label_values(&["idle", r.label()]);
        }
        families.cell("idle", "agents");
        up.with_label_values(&["trunk-a", "http"]).set(1);
        up.with_label_values(&["idle", "agents"]).set(-1);
        families.set_up("trunk-a", "http", 1);
        families.set_up("idle", "agents", -1);

        let want = render(&reference);
        assert!(want.contains(
            r#"continuity_probe_duration_seconds_bucket{probe="trunk-b",type="sip",le="0.005"} 2"#
        ));
        assert_eq!(render(&ours), want);
        assert_eq!(families.results("trunk-a", ProbeResult::Success), 2);
        assert_eq!(families.results("nope", ProbeResult::Success), 0);
        assert_eq!(families.cell("trunk-b", "sip").observed(), 3);
    }

    #[test]
    fn up_exists_once_set_and_goes_when_forgotten() {
        let families = ProbeFamilies::new();
        let registry = Registry::new();
        registry.register(Box::new(families.clone())).unwrap();
        families.cell("trunk-a", "sip");
        assert_eq!(families.up("trunk-a"), None);
        assert!(!render(&registry).contains("continuity_probe_up"));

        families.set_up("trunk-a", "sip", 0);
        assert_eq!(families.up("trunk-a"), Some(0));
        assert!(render(&registry).contains(r#"continuity_probe_up{probe="trunk-a",type="sip"} 0"#));

        families.forget_up("trunk-a", "http");
        assert_eq!(families.up("trunk-a"), Some(0), "another type's series");
        families.forget_up("trunk-a", "sip");
        assert_eq!(families.up("trunk-a"), None);
        let text = render(&registry);
        assert!(!text.contains("continuity_probe_up"), "{text}");
        assert!(
            text.contains(r#"continuity_probe_results_total{probe="trunk-a",result="success"} 0"#)
        );
    }

    /// A reload that changes a probe's type gives it new series: the old
    /// type's would carry the wrong label.
    #[test]
    fn a_probe_whose_type_changed_starts_new_series() {
        let families = ProbeFamilies::new();
        let old = families.cell("trunk-a", "sip");
        old.record(0.01, ProbeResult::Failure);
        assert!(Arc::ptr_eq(&old, &families.cell("trunk-a", "sip")));

        let new = families.cell("trunk-a", "http");
        assert!(!Arc::ptr_eq(&old, &new));
        assert_eq!(families.results("trunk-a", ProbeResult::Failure), 0);
        // Forgetting the old type's gauge leaves the new one's.
        families.set_up("trunk-a", "http", 1);
        families.forget_up("trunk-a", "sip");
        assert_eq!(families.up("trunk-a"), Some(1));
        let text = {
            let registry = Registry::new();
            registry.register(Box::new(families.clone())).unwrap();
            render(&registry)
        };
        assert!(
            text.contains(
                r#"continuity_probe_duration_seconds_count{probe="trunk-a",type="http"} 0"#
            )
        );
        assert!(!text.contains(r#"type="sip""#), "{text}");
    }
}
