//! Turning measurements into the printed table (Markdown, to paste into
//! BENCHMARKS.md) and the JSON line.

use std::time::Duration;

use serde_json::{Value, json};

/// p50, p99 and max of per-account times (nearest rank: a value that was
/// actually measured, never an interpolation).
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Spread {
    /// `None` when nothing was measured.
    pub fn of(times: &[Duration]) -> Option<Spread> {
        let mut sorted = times.to_vec();
        sorted.sort();
        let rank = |p: usize| sorted[(sorted.len() * p).div_ceil(100).max(1) - 1];
        Some(Spread {
            p50: rank(50),
            p99: rank(99),
            max: *sorted.last()?,
        })
    }

    pub fn text(&self) -> String {
        format!(
            "{} / {} / {}",
            secs(self.p50),
            secs(self.p99),
            secs(self.max)
        )
    }

    pub fn json(&self) -> Value {
        json!({
            "p50_s": self.p50.as_secs_f64(),
            "p99_s": self.p99.as_secs_f64(),
            "max_s": self.max.as_secs_f64(),
        })
    }
}

pub fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

pub fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

pub fn kib(bytes: u64) -> String {
    format!("{:.0} KiB", bytes as f64 / 1024.0)
}

/// The machine a run measured: cores and load average at the end of it (the
/// figures are only comparable between runs on a similarly quiet machine).
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    format!("{cores} cores, load average {load}")
}

/// Rows of a two-column Markdown table, then the WARN and ERROR lines the
/// agent logged in each phase.
#[derive(Default)]
pub struct Table {
    rows: Vec<(String, String)>,
    warnings: Vec<(String, Vec<(String, u64)>)>,
}

impl Table {
    pub fn row(&mut self, what: &str, value: String) {
        self.rows.push((what.to_string(), value));
    }

    /// The WARN and ERROR lines of `phase`, by message, with their counts.
    pub fn warnings(&mut self, phase: &str, seen: Vec<(String, u64)>) -> Value {
        let doc = seen.iter().map(|(m, n)| (m.clone(), json!(n))).collect();
        self.warnings.push((phase.to_string(), seen));
        Value::Object(doc)
    }

    pub fn print(&self, title: &str) {
        print!("{}", self.render(title));
    }

    /// The table as Markdown: the title, the rows, then the warnings.
    pub fn render(&self, title: &str) -> String {
        use std::fmt::Write;
        let mut out = format!("{title}\n\n| measure | value |\n|---|---|\n");
        for (what, value) in &self.rows {
            let _ = writeln!(out, "| {what} | {value} |");
        }
        out.push_str("\nWARN and ERROR lines logged by the agent:\n");
        for (phase, seen) in &self.warnings {
            let _ = writeln!(out, "- {phase}:");
            if seen.is_empty() {
                out.push_str("  none\n");
            }
            for (message, n) in seen {
                let _ = writeln!(out, "  {n} x {message}");
            }
        }
        out
    }
}
