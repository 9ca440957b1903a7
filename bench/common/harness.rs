//! What every part of the webhook benchmarks shares: the command line
//! (`--quick`, `--markdown FILE`), where the agent binary is, installing a
//! peer tool, the machine's description, CPU time of a process, and
//! percentiles. Included with `#[path]` by `bench/ingest.rs`,
//! `bench/latency.rs` and `bench/detection.rs`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The options every harness takes.
pub struct Options {
    /// Small N, one repetition, no timing assertions (CI's smoke run).
    pub quick: bool,
    /// Where to write this part's section of BENCHMARKS.md.
    pub markdown: Option<PathBuf>,
    /// Arguments the harness did not recognise (its own, e.g. `--serve`).
    pub rest: Vec<String>,
}

impl Options {
    pub fn parse() -> Options {
        let mut args = std::env::args().skip(1);
        let mut o = Options {
            quick: false,
            markdown: None,
            rest: Vec::new(),
        };
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => o.quick = true,
                "--markdown" => o.markdown = args.next().map(PathBuf::from),
                // `cargo bench` adds it.
                "--bench" => {}
                _ => o.rest.push(a),
            }
        }
        // `cargo test --benches` runs harnesses without `--bench`: quick.
        if !std::env::args().any(|a| a == "--bench") && o.markdown.is_none() {
            o.quick = true;
        }
        o
    }

    /// The full value, or the quick one.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick { quick } else { full }
    }
}

/// The agent binary: `CONTINUITY_AGENT_BIN` (set by `bench/run.sh`), else
/// `target/release/continuity-agent`, built if missing.
pub fn agent_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CONTINUITY_AGENT_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/release/continuity-agent");
    if !bin.exists() {
        eprintln!("building the release agent (cargo build --release)...");
        let ok = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--release", "--bin", "continuity-agent"])
            .current_dir(root)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "cargo build --release failed");
    }
    bin
}

/// Makes sure `tool` runs, installing Debian `package` if it does not.
pub fn ensure_tool(tool: &str, package: &str) {
    let present = || {
        Command::new("sh")
            .args(["-c", &format!("command -v {tool} >/dev/null")])
            .status()
            .is_ok_and(|s| s.success())
    };
    if present() {
        return;
    }
    eprintln!("installing {package} for {tool}...");
    let _ = Command::new("apt-get")
        .args(["install", "-y", package])
        .status();
    if !present() {
        let _ = Command::new("apt-get").arg("update").status();
        let _ = Command::new("apt-get")
            .args(["install", "-y", package])
            .status();
    }
    assert!(
        present(),
        "{tool} is missing and {package} could not be installed"
    );
}

/// The first line of `cmd --version`-like output, for the report.
pub fn version_of(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

/// `nproc` and the load average, as the report states them.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, load average {}", load_average())
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// User plus system CPU time of process `pid` so far (/proc/PID/stat).
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // The command name may hold spaces: fields count from after its ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after ')'.
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros((ticks(11) + ticks(12)) * 1_000_000 / hz)
}

/// A TCP and UDP port free on 127.0.0.1 now.
pub fn free_port() -> u16 {
    loop {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = u.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Nearest-rank percentile (a value actually measured).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64) * p / 100.0).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    percentile(&v, 50.0)
}

/// A section of BENCHMARKS.md: heading, how to reproduce, the machine,
/// peers' versions, then tables and notes.
pub struct Section {
    text: String,
}

impl Section {
    pub fn new(heading: &str, command: &str, peers: &[(&str, String)]) -> Section {
        let mut text = format!("## {heading}\n\n`{command}`\n\nMachine: {}.", machine());
        for (name, version) in peers {
            text.push_str(&format!(" {name}: {version}."));
        }
        text.push_str("\n\n");
        Section { text }
    }

    pub fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        self.text.push_str(&format!("| {} |\n", header.join(" | ")));
        self.text
            .push_str(&format!("|{}\n", "---|".repeat(header.len())));
        for r in rows {
            self.text.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        self.text.push('\n');
    }

    pub fn para(&mut self, p: &str) {
        self.text.push_str(p);
        self.text.push_str("\n\n");
    }

    /// Prints the section, and writes it to `--markdown FILE` if given. A
    /// quick run says so: its figures come from a dev build with small sizes.
    pub fn finish(mut self, opts: &Options) {
        if opts.quick {
            self.para(
                "Quick smoke run (`--quick`): small sizes, one repetition, and the agent binary \
                 is whatever `CONTINUITY_AGENT_BIN` names (`bench/run.sh --quick`: the dev build), \
                 so these figures show the harness works; they are not measurements.",
            );
        }
        println!("{}", self.text);
        if let Some(path) = &opts.markdown {
            std::fs::write(path, &self.text).expect("write the markdown section");
        }
    }
}
