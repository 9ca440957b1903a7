//! Detection and isolation (issue 13): a sipp trunk stops answering ->
//! the Talkdesk simulator sees the fallback switched on; first alone, then
//! while `wrk` floods the agent's Alertmanager webhook at full speed.
//!
//! Two sipp UASes answer OPTIONS: `trunk-a` is stopped (SIGSTOP: its socket
//! stays open and nothing answers, as a hung trunk) and continued (SIGCONT)
//! for each trial; `trunk-b` is never touched, and its message log
//! (`-trace_msg`) gives the probe cadence the agent actually kept. Each
//! trial stops trunk-a at a random phase of its probe schedule, waits for
//! the activation write, continues it and waits for the deactivation.
//!
//! The bound, from the probe and rule timings: at most `interval + timeout +
//! (fall-1) x fast_interval + for` after the stop (the stop lands right
//! after a probe was answered), and at least `(fall-1) x fast_interval +
//! for` (it cannot confirm `fall` failures any sooner).
//!
//!   cargo bench --bench detection -- [--quick] [--markdown FILE] [--trials N] [--flood S]
//!
//! Full: 30 trials alone, then a 30 s flood with trials back to back.
//! `--quick`: 3 trials, a 5 s flood, no timing assertions.

#[path = "common/harness.rs"]
mod harness;
#[path = "common/world.rs"]
mod world;
#[path = "common/wrk.rs"]
mod wrk;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use harness::{Options, Section, percentile};
use world::{Agent, TOKEN, Talkdesk, activation, alertmanager_payload, config_head};

const INTERVAL: f64 = 1.0;
/// Not above `FAST`: a probe reports a failure only at its timeout, so with
/// `timeout > fast_interval` the failures after the first are `timeout`
/// apart, not `fast_interval` (the bound's `(fall-1) x fast_interval` then
/// becomes `(fall-1) x timeout`; see `upper_bound`).
const TIMEOUT: f64 = 0.25;
const FAST: f64 = 0.25;
const FALL: f64 = 3.0;
const RISE: u32 = 2;
const FOR: f64 = 0.5;

fn upper_bound() -> f64 {
    INTERVAL + TIMEOUT + (FALL - 1.0) * FAST.max(TIMEOUT) + FOR
}

fn lower_bound() -> f64 {
    (FALL - 1.0) * FAST.max(TIMEOUT) + FOR
}

fn main() -> ExitCode {
    let opts = Options::parse();
    let mut trials = opts.pick(30, 3);
    let mut flood = opts.pick(30.0, 5.0);
    let mut it = opts.rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--trials" => trials = it.next().and_then(|v| v.parse().ok()).unwrap_or(trials),
            "--flood" => flood = it.next().and_then(|v| v.parse().ok()).unwrap_or(flood),
            _ => {}
        }
    }
    harness::ensure_tool("wrk", "wrk");
    harness::ensure_tool("sipp", "sip-tester");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(run(trials, flood)) {
        Ok(m) => {
            report(&opts, &m);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench detection: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A sipp UAS answering OPTIONS with 200, logging every message.
struct Sipp {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Sipp {
    fn start(dir: &Path, name: &str) -> Sipp {
        let port = harness::free_port();
        let scenario = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sipp/options-uas.xml");
        let log = dir.join(format!("{name}-messages.log"));
        let child = Command::new("sipp")
            .arg("-sf")
            .arg(&scenario)
            .args(["-i", "127.0.0.1", "-p", &port.to_string(), "-t", "u1"])
            .args(["-nostdin", "-trace_msg", "-message_file"])
            .arg(&log)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sipp");
        Sipp { child, port, log }
    }

    fn target(&self) -> String {
        format!("sip:127.0.0.1:{}", self.port)
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, sig);
        }
    }

    /// When each OPTIONS arrived (seconds of the day), from the message log.
    fn received(&self) -> Vec<f64> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = Vec::new();
        let mut lines = text.lines().peekable();
        while let Some(l) = lines.next() {
            let Some(stamp) = l.strip_prefix("-----------------------------------------------")
            else {
                continue;
            };
            if !lines.peek().is_some_and(|n| n.contains("message received")) {
                continue;
            }
            let Some(time) = stamp.split_whitespace().last() else {
                continue;
            };
            let parts: Vec<f64> = time.split(':').filter_map(|p| p.parse().ok()).collect();
            if let [h, m, s] = parts[..] {
                out.push(h * 3600.0 + m * 60.0 + s);
            }
        }
        out
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        self.signal(libc::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Measured {
    alone: Vec<f64>,
    flooded: Vec<f64>,
    /// Gaps between trunk-b's OPTIONS (s), outside and during the flood.
    cadence_alone: Vec<f64>,
    cadence_flooded: Vec<f64>,
    flood: wrk::WrkRun,
    flood_secs: f64,
}

async fn run(trials: usize, flood_secs: f64) -> Result<Measured, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let a = Sipp::start(dir.path(), "trunk-a");
    let b = Sipp::start(dir.path(), "trunk-b");
    let mut talkdesk = Talkdesk::start().await;
    let port = harness::free_port();
    let probe = |id: &str, target: &str| {
        format!(
            "[[probes]]\nid = \"{id}\"\ntype = \"sip\"\ntarget = \"{target}\"\ninterval = \"{INTERVAL}s\"\n\
             fast_interval = \"{}ms\"\ntimeout = \"{}ms\"\nrise = {RISE}\nfall = {FALL}\n",
            (FAST * 1000.0) as u64,
            (TIMEOUT * 1000.0) as u64
        )
    };
    let toml = format!(
        "{head}\n{pa}\n{pb}\n[[rules]]\nname = \"trunk-a-down\"\nprofile = \"backup\"\nfor = \"{}ms\"\n\
         clear_for = \"0s\"\nmin_active = \"0s\"\nwhen = {{ down = \"trunk-a\" }}\n",
        (FOR * 1000.0) as u64,
        head = config_head(port, dir.path(), &talkdesk.base_url()),
        pa = probe("trunk-a", &a.target()),
        pb = probe("trunk-b", &b.target()),
    );
    let mut agent = Agent::spawn(&harness::agent_bin(), dir.path(), port, &toml);
    agent.wait_ready(&reqwest::Client::new()).await;
    // Both trunks up (rise) before the first trial.
    tokio::time::sleep(Duration::from_secs_f64(INTERVAL * (RISE as f64 + 1.0))).await;

    let day = || {
        let now = chrono::Utc::now();
        let t = now.time();
        use chrono::Timelike;
        t.num_seconds_from_midnight() as f64 + t.nanosecond() as f64 / 1e9
    };
    let alone_from = day();
    let mut alone = Vec::new();
    for i in 0..trials {
        alone.push(trial(&a, &mut talkdesk, &agent, i).await?);
    }
    let alone_to = day();

    let scripts = tempfile::tempdir().map_err(|e| e.to_string())?;
    let body = alertmanager_payload("HighSipErrorRate", 10, true, 0);
    let script = wrk::script(scripts.path(), &body, TOKEN);
    let url = format!("{}/v1/alerts/alertmanager", agent.base());
    let flood_from = day();
    let started = Instant::now();
    let wrk = wrk::start(&url, &script, 2, 32, flood_secs);
    let mut flooded = Vec::new();
    // Leave the end of the flood to finish a trial that started in it.
    let last_start = Duration::from_secs_f64((flood_secs - upper_bound() - 1.0).max(0.5));
    let mut i = 0;
    let mut failed = None;
    while started.elapsed() < last_start || flooded.is_empty() {
        match trial(&a, &mut talkdesk, &agent, i).await {
            Ok(t) => flooded.push(t),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
        i += 1;
    }
    let flood_to = day();
    // wrk is waited for on every path, a failed trial included.
    let flood = wrk::finish(wrk)?;
    if let Some(e) = failed {
        return Err(e);
    }
    drop(agent);

    let gaps = |from: f64, to: f64| {
        let times: Vec<f64> = b
            .received()
            .into_iter()
            .filter(|t| *t >= from && *t <= to)
            .collect();
        times.windows(2).map(|w| w[1] - w[0]).collect::<Vec<f64>>()
    };
    Ok(Measured {
        alone,
        flooded,
        cadence_alone: gaps(alone_from, alone_to),
        cadence_flooded: gaps(flood_from, flood_to),
        flood,
        flood_secs,
    })
}

/// One trial: stop trunk-a at a random phase, time the activation, continue
/// it and wait until the fallback is off again. Returns seconds to on.
async fn trial(a: &Sipp, talkdesk: &mut Talkdesk, agent: &Agent, i: usize) -> Result<f64, String> {
    // A random phase of the probe schedule.
    tokio::time::sleep(Duration::from_secs_f64(rand::random::<f64>() * INTERVAL)).await;
    talkdesk.sim.clear_journal();
    let stopped = Instant::now();
    a.signal(libc::SIGSTOP);
    let limit = Duration::from_secs_f64(upper_bound() + 10.0);
    let on = talkdesk.wait_call(limit, |e| activation(e, true)).await;
    a.signal(libc::SIGCONT);
    let Some(on) = on else {
        return Err(format!("trial {i}: never switched on:\n{}", agent.logs()));
    };
    let took = on.duration_since(stopped).as_secs_f64();
    eprintln!("trial {i}: on after {took:.3} s");
    talkdesk.sim.clear_journal();
    if talkdesk
        .wait_call(limit, |e| activation(e, false))
        .await
        .is_none()
    {
        return Err(format!("trial {i}: never switched off"));
    }
    // trunk-a back at its normal interval before the next stop.
    tokio::time::sleep(Duration::from_secs_f64(INTERVAL)).await;
    Ok(took)
}

fn report(opts: &Options, m: &Measured) {
    let dist = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        let p = |q: f64| format!("{:.3} s", percentile(&s, q));
        (p(0.0001), p(50.0), p(99.0), p(100.0))
    };
    let mut sec = Section::new(
        "Detection: a SIP trunk stops answering -> Talkdesk on, alone and under a webhook flood",
        &format!(
            "cargo bench --bench detection --{}",
            if opts.quick { " --quick" } else { "" }
        ),
        &[
            ("sipp", harness::version_of("sipp", &["-v"])),
            ("wrk", harness::version_of("wrk", &["-v"])),
        ],
    );
    sec.para(&format!(
        "Release agent binary, two SIP OPTIONS probes (interval {INTERVAL} s, timeout {TIMEOUT} s, \
         fast_interval {FAST} s, fall {FALL}, rise {RISE}) on two sipp UASes, rule `for = {FOR}s`. \
         Each trial SIGSTOPs trunk-a at a random phase and times until the Talkdesk simulator \
         has the activation write. Bound: at most interval + timeout + (fall-1) x fast_interval \
         + for = {:.2} s (+ 100 ms allowed), at least (fall-1) x fast_interval + for = {:.2} s. \
         Under the flood, `wrk -t2 -c32` POSTs 10-alert deliveries at full speed for {} s \
         ({:.0} accepted/s, {} non-2xx) while trials run back to back. Cadence: the gaps \
         between the OPTIONS the untouched trunk-b received (its interval is {INTERVAL} s).",
        upper_bound(),
        lower_bound(),
        m.flood_secs,
        m.flood.ok_per_second(),
        m.flood.non_2xx,
    ));
    let row = |name: &str, v: &[f64]| {
        let (min, p50, p99, max) = dist(v);
        let within = v
            .iter()
            .filter(|t| **t <= upper_bound() + 0.1 && **t >= lower_bound())
            .count();
        vec![
            name.to_string(),
            v.len().to_string(),
            min,
            p50,
            p99,
            max,
            format!("{within}/{}", v.len()),
        ]
    };
    sec.table(
        &[
            "trunk stops -> Talkdesk on",
            "trials",
            "min",
            "p50",
            "p99",
            "max",
            "within bounds",
        ],
        &[row("alone", &m.alone), row("during the flood", &m.flooded)],
    );
    let cad = |name: &str, v: &[f64]| {
        let (min, p50, p99, max) = dist(v);
        vec![name.to_string(), v.len().to_string(), min, p50, p99, max]
    };
    sec.table(
        &[
            "trunk-b probe cadence (gap between OPTIONS)",
            "gaps",
            "min",
            "p50",
            "p99",
            "max",
        ],
        &[
            cad("alone", &m.cadence_alone),
            cad("during the flood", &m.cadence_flooded),
        ],
    );
    sec.finish(opts);
}
