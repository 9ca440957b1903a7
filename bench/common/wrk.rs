//! `wrk` as the load tool: a Lua script for the POST body and the bearer
//! token, and its summary parsed (2xx only, latency percentiles).
#![allow(dead_code)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What one `wrk` run measured.
#[derive(Clone, Debug, Default)]
pub struct WrkRun {
    pub requests: u64,
    pub non_2xx: u64,
    pub errors: u64,
    pub seconds: f64,
    /// Latency percentiles (ms): 50, 90, 99.
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

impl WrkRun {
    /// Accepted (2xx) deliveries per second.
    pub fn ok_per_second(&self) -> f64 {
        (self.requests.saturating_sub(self.non_2xx)) as f64 / self.seconds.max(1e-9)
    }
}

/// Writes the Lua script that POSTs `body` with `token` as a bearer.
pub fn script(dir: &Path, body: &str, token: &str) -> std::path::PathBuf {
    let path = dir.join("post.lua");
    let lua = format!(
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n\
         wrk.headers[\"Authorization\"] = \"Bearer {token}\"\nwrk.body = [==[{body}]==]\n"
    );
    std::fs::write(&path, lua).expect("write the wrk script");
    path
}

/// The command for one run against `url`.
pub fn command(url: &str, script: &Path, threads: u32, conns: u32, secs: f64) -> Command {
    let mut c = Command::new("wrk");
    c.arg(format!("-t{threads}"))
        .arg(format!("-c{conns}"))
        .arg(format!("-d{}s", secs.ceil() as u64))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Runs to the end and parses the summary.
pub fn run(
    url: &str,
    script: &Path,
    threads: u32,
    conns: u32,
    secs: f64,
) -> Result<WrkRun, String> {
    let out = command(url, script, threads, conns, secs)
        .output()
        .map_err(|e| format!("wrk: {e}"))?;
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// Starts a run in the background (the isolation part floods while it
/// measures something else).
pub fn start(url: &str, script: &Path, threads: u32, conns: u32, secs: f64) -> Child {
    command(url, script, threads, conns, secs)
        .spawn()
        .expect("spawn wrk")
}

pub fn finish(child: Child) -> Result<WrkRun, String> {
    let out = child.wait_with_output().map_err(|e| format!("wrk: {e}"))?;
    parse(&String::from_utf8_lossy(&out.stdout))
}

/// `wrk --latency` output: "N requests in 10.00s, ...", "Non-2xx or 3xx
/// responses: M", "Socket errors: connect A, read B, write C, timeout D",
/// and the latency distribution lines "  99%    1.23ms".
pub fn parse(text: &str) -> Result<WrkRun, String> {
    let mut r = WrkRun::default();
    let mut found = false;
    for line in text.lines().map(str::trim) {
        if let Some((n, rest)) = line.split_once(" requests in ") {
            r.requests = n.trim().parse().map_err(|_| format!("wrk: {line:?}"))?;
            let secs = rest.split(',').next().unwrap_or("");
            r.seconds = duration_ms(secs).ok_or_else(|| format!("wrk: {line:?}"))? / 1000.0;
            found = true;
        } else if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = n.trim().parse().unwrap_or(0);
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            r.errors = rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        } else if let Some((p, v)) = line.split_once('%') {
            let v = duration_ms(v.trim());
            match (p.trim(), v) {
                ("50", Some(v)) => r.p50 = v,
                ("90", Some(v)) => r.p90 = v,
                ("99", Some(v)) => r.p99 = v,
                _ => {}
            }
        }
    }
    if !found {
        return Err(format!("wrk printed no summary:\n{text}"));
    }
    Ok(r)
}

/// "1.23ms", "456.00us", "1.02s", "2.00m" in milliseconds.
fn duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        "h" => v * 3_600_000.0,
        _ => return None,
    })
}

pub fn wait(d: Duration) {
    std::thread::sleep(d);
}
