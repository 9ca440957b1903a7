//! SIP OPTIONS at many trunks, beside Kamailio (issue 13).
//!
//! N SIP/UDP probes at a 1 s interval, each at its own request URI
//! (`sip:trunk-I@127.0.0.1:PORT`, so N destinations), all answered by one
//! sipp UAS (a scenario that answers OPTIONS with 200). Beside it, in the
//! same run, Kamailio's dispatcher pings the same N destinations at the same
//! rate (`ds_ping_interval = 1`, `ds_probing_mode = 1`) at a sipp of its own.
//! The two peers take turns (agent, then Kamailio, for every repetition and
//! every N): on a 2-core machine running both at once would measure who wins
//! the cores, not what each costs.
//!
//! For each run, after a warm-up, over a measured window:
//! - answered pings/s: 200s sent by that peer's sipp (its `SuccessfulCall`
//!   counter, sampled every second by `-trace_stat`);
//! - CPU per answered ping: utime + stime of the peer's processes (Kamailio:
//!   every process of its tree) over the window, from `/proc/PID/stat`;
//! - memory: the agent's VmRSS; Kamailio's PSS summed over its processes
//!   (they share one big memory segment, which RSS would count N times);
//! - UDP `RcvbufErrors` from `/proc/net/snmp` (the whole host: either the
//!   peer or its sipp dropped datagrams);
//! - the agent's start-up until `/readyz` answers 200.
//!
//! Run: `cargo bench --bench sip -- [--quick] [--markdown FILE]
//! [--trunks 1000,10000] [--reps 3] [--window 10] [--warmup 6] [--soak 600]`.
//! `--quick`: 100 trunks, one repetition, a few seconds each (a smoke run,
//! no assertions). `--soak S`: afterwards the agent runs S seconds at the
//! largest N, its RSS sampled every 10 s (not in `--quick`).
//! The agent binary: `CONTINUITY_AGENT_BIN`, else
//! `target/release/continuity-agent` (built if missing). sipp and Kamailio
//! are installed from Debian (`sip-tester`, `kamailio`) if missing.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

struct Options {
    trunks: Vec<usize>,
    reps: usize,
    warmup: Duration,
    window: Duration,
    soak: Option<Duration>,
    markdown: Option<PathBuf>,
    quick: bool,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut args = std::env::args().skip(1);
        let mut o = Options {
            trunks: vec![1_000, 10_000],
            reps: 3,
            warmup: Duration::from_secs(6),
            window: Duration::from_secs(10),
            soak: None,
            markdown: None,
            quick: false,
        };
        let (mut trunks, mut reps) = (None, None);
        let secs = |v: Option<String>, what: &str| -> Result<Duration, String> {
            let v = v.ok_or(format!("{what} needs a number of seconds"))?;
            v.parse::<u64>()
                .map(Duration::from_secs)
                .map_err(|_| format!("{what} {v:?}"))
        };
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => o.quick = true,
                "--trunks" => {
                    let v = args.next().ok_or("--trunks needs a list")?;
                    let list: Result<Vec<usize>, _> = v
                        .split(',')
                        .map(|n| n.trim().replace('_', "").parse())
                        .collect();
                    trunks = Some(list.map_err(|_| format!("--trunks {v:?}"))?);
                }
                "--reps" => {
                    let v = args.next().ok_or("--reps needs a number")?;
                    reps = Some(v.parse().map_err(|_| format!("--reps {v:?}"))?);
                }
                "--warmup" => o.warmup = secs(args.next(), "--warmup")?,
                "--window" => o.window = secs(args.next(), "--window")?,
                "--soak" => o.soak = Some(secs(args.next(), "--soak")?),
                "--markdown" => {
                    o.markdown = Some(args.next().ok_or("--markdown needs a file")?.into())
                }
                // `cargo bench` adds it.
                "--bench" => {}
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if o.quick {
            o.trunks = vec![100];
            o.reps = 1;
            o.warmup = Duration::from_secs(3);
            o.window = Duration::from_secs(3);
            o.soak = None;
        }
        if let Some(t) = trunks {
            o.trunks = t;
        }
        if let Some(r) = reps {
            o.reps = r;
        }
        if o.trunks.is_empty() || o.trunks.contains(&0) || o.reps == 0 {
            return Err("--trunks and --reps need positive numbers".into());
        }
        Ok(o)
    }
}

fn main() -> ExitCode {
    let opts = match Options::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench sip: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench sip: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Options) -> Result<(), String> {
    ensure_tool("sipp", "sip-tester")?;
    ensure_tool("kamailio", "kamailio")?;
    let bin = agent_binary()?;
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let scenario = dir.path().join("uas-options.xml");
    std::fs::write(&scenario, UAS_SCENARIO).map_err(|e| e.to_string())?;
    let sim = Simulator::start(&bin, dir.path())?;

    let mut rows = Vec::new();
    for &n in &opts.trunks {
        let mut agent = Vec::new();
        let mut kamailio = Vec::new();
        for rep in 0..opts.reps {
            let a = measure_agent(&bin, &sim, &scenario, dir.path(), n, opts)?;
            eprintln!("N={n} rep {rep}: agent    {a}");
            agent.push(a);
            let k = measure_kamailio(&scenario, dir.path(), n, opts)?;
            eprintln!("N={n} rep {rep}: kamailio {k}");
            kamailio.push(k);
        }
        rows.push(Row {
            n,
            agent: Run::median(&agent),
            kamailio: Run::median(&kamailio),
        });
    }
    let soak = match (opts.soak, opts.trunks.iter().max()) {
        (Some(d), Some(&n)) => Some(soak(&bin, &sim, &scenario, dir.path(), n, d)?),
        _ => None,
    };
    let md = markdown(opts, &rows, soak.as_ref());
    println!("{md}");
    if let Some(path) = &opts.markdown {
        std::fs::write(path, &md).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// One peer's figures over one measured window.
#[derive(Clone, Debug, Default)]
struct Run {
    /// 200s the peer's sipp sent per second.
    answered: f64,
    /// OPTIONS the peer's sipp received per second (new transactions).
    offered: f64,
    cpu_us_per_ping: f64,
    /// Share of one core.
    cpu_share: f64,
    /// Agent: VmRSS; Kamailio: PSS of its process tree.
    mem: u64,
    rcvbuf_errors: u64,
    /// Agent only: start until `/readyz` answered 200.
    ready: Option<Duration>,
    /// Agent only: results counted by the agent over its whole run, by result.
    results: Option<Results>,
}

#[derive(Clone, Copy, Debug, Default)]
struct Results {
    success: f64,
    failure: f64,
    inconclusive: f64,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "answered {:.0}/s of {:.0}/s offered, {:.1} us/ping, {:.1} % of a core, {}, RcvbufErrors {}",
            self.answered,
            self.offered,
            self.cpu_us_per_ping,
            100.0 * self.cpu_share,
            mib(self.mem),
            self.rcvbuf_errors
        )?;
        if let Some(r) = self.ready {
            write!(f, ", ready in {:.0} ms", r.as_secs_f64() * 1e3)?;
        }
        if let Some(r) = self.results {
            write!(
                f,
                ", results success {} failure {} inconclusive {}",
                r.success, r.failure, r.inconclusive
            )?;
        }
        Ok(())
    }
}

impl Run {
    /// Each figure's median over the repetitions.
    fn median(runs: &[Run]) -> Run {
        let med = |f: &dyn Fn(&Run) -> f64| -> f64 {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        Run {
            answered: med(&|r| r.answered),
            offered: med(&|r| r.offered),
            cpu_us_per_ping: med(&|r| r.cpu_us_per_ping),
            cpu_share: med(&|r| r.cpu_share),
            mem: med(&|r| r.mem as f64) as u64,
            rcvbuf_errors: med(&|r| r.rcvbuf_errors as f64) as u64,
            ready: runs.iter().all(|r| r.ready.is_some()).then(|| {
                Duration::from_secs_f64(med(&|r| r.ready.unwrap_or_default().as_secs_f64()))
            }),
            results: None,
        }
    }
}

struct Row {
    n: usize,
    agent: Run,
    kamailio: Run,
}

// ---------------------------------------------------------------- the peers

fn measure_agent(
    bin: &Path,
    sim: &Simulator,
    scenario: &Path,
    dir: &Path,
    n: usize,
    opts: &Options,
) -> Result<Run, String> {
    let uas = Sipp::start(scenario, dir, "agent")?;
    let agent = Agent::start(bin, sim, uas.port, dir, n)?;
    std::thread::sleep(opts.warmup);
    let mut run = window(&[agent.pid()], &uas, opts.window)?;
    run.mem = rss(agent.pid());
    run.ready = Some(agent.ready);
    run.results = Some(agent.results()?);
    Ok(run)
}

fn measure_kamailio(scenario: &Path, dir: &Path, n: usize, opts: &Options) -> Result<Run, String> {
    let uas = Sipp::start(scenario, dir, "kamailio")?;
    let kamailio = Kamailio::start(dir, uas.port, n)?;
    std::thread::sleep(opts.warmup);
    let pids = kamailio.pids();
    let mut run = window(&pids, &uas, opts.window)?;
    run.mem = pids.iter().map(|&p| pss(p)).sum();
    Ok(run)
}

/// CPU of `pids`, the sipp's counters and the host's receive buffer drops
/// over `length`.
fn window(pids: &[u32], uas: &Sipp, length: Duration) -> Result<Run, String> {
    let (cpu0, stat0, drops0) = (cpu(pids), uas.counters()?, rcvbuf_errors());
    let t0 = Instant::now();
    std::thread::sleep(length);
    let (cpu1, stat1, drops1) = (cpu(pids), uas.counters()?, rcvbuf_errors());
    let elapsed = t0.elapsed().as_secs_f64();
    // sipp writes its counters once a second: rates over its own lines.
    let secs = (stat1.lines - stat0.lines).max(1) as f64;
    let answered = (stat1.successful - stat0.successful) as f64 / secs;
    let offered = (stat1.created - stat0.created) as f64 / secs;
    let cpu = (cpu1 - cpu0).as_secs_f64();
    Ok(Run {
        answered,
        offered,
        cpu_us_per_ping: if answered > 0.0 {
            1e6 * cpu / (answered * elapsed)
        } else {
            f64::INFINITY
        },
        cpu_share: cpu / elapsed,
        rcvbuf_errors: drops1.saturating_sub(drops0),
        ..Run::default()
    })
}

/// The agent alone at `n` trunks for `length`, RSS sampled every 10 s.
struct Soak {
    n: usize,
    samples: Vec<(Duration, u64)>,
    run: Run,
}

fn soak(
    bin: &Path,
    sim: &Simulator,
    scenario: &Path,
    dir: &Path,
    n: usize,
    length: Duration,
) -> Result<Soak, String> {
    let uas = Sipp::start(scenario, dir, "soak")?;
    let agent = Agent::start(bin, sim, uas.port, dir, n)?;
    let started = Instant::now();
    let (cpu0, stat0) = (cpu(&[agent.pid()]), uas.counters()?);
    let mut samples = vec![(Duration::ZERO, rss(agent.pid()))];
    while started.elapsed() < length {
        std::thread::sleep(Duration::from_secs(10).min(length));
        samples.push((started.elapsed(), rss(agent.pid())));
        eprintln!(
            "soak N={n}: {:?} RSS {}",
            started.elapsed(),
            mib(rss(agent.pid()))
        );
    }
    let (cpu1, stat1) = (cpu(&[agent.pid()]), uas.counters()?);
    let secs = (stat1.lines - stat0.lines).max(1) as f64;
    let answered = (stat1.successful - stat0.successful) as f64 / secs;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = (cpu1 - cpu0).as_secs_f64();
    let run = Run {
        answered,
        offered: (stat1.created - stat0.created) as f64 / secs,
        cpu_us_per_ping: 1e6 * cpu / (answered.max(1.0) * elapsed),
        cpu_share: cpu / elapsed,
        mem: rss(agent.pid()),
        results: Some(agent.results()?),
        ..Run::default()
    };
    Ok(Soak { n, samples, run })
}

/// Answers every OPTIONS with 200, echoing what makes it the answer.
const UAS_SCENARIO: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="OPTIONS 200">
  <recv request="OPTIONS" crlf="true"/>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

    ]]>
  </send>
</scenario>
"#;

/// A sipp UAS on a free loopback port, counting to a stat file every second.
struct Sipp {
    child: Child,
    port: u16,
    stat: PathBuf,
}

struct SippCounters {
    lines: usize,
    created: u64,
    successful: u64,
}

impl Sipp {
    fn start(scenario: &Path, dir: &Path, name: &str) -> Result<Sipp, String> {
        let port = free_udp_port()?;
        let stat = dir.join(format!("sipp-{name}-{port}.csv"));
        let child = Command::new("sipp")
            .args(["-sf"])
            .arg(scenario)
            .args(["-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-nostdin", "-trace_stat", "-fd", "1", "-stf"])
            .arg(&stat)
            // Room for a burst of 10,000 answers at once.
            .args(["-buff_size", "8388608", "-max_recv_loops", "100000"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("sipp: {e}"))?;
        let uas = Sipp { child, port, stat };
        let t0 = Instant::now();
        while uas.counters().map(|c| c.lines).unwrap_or(0) == 0 {
            if t0.elapsed() > Duration::from_secs(10) {
                return Err("sipp wrote no statistics within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(uas)
    }

    /// The last line of the stat file: cumulative incoming and successful calls.
    fn counters(&self) -> Result<SippCounters, String> {
        let text = std::fs::read_to_string(&self.stat).unwrap_or_default();
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let Some(header) = lines.next() else {
            return Ok(SippCounters {
                lines: 0,
                created: 0,
                successful: 0,
            });
        };
        let cols: Vec<&str> = header.split(';').collect();
        let col = |name: &str| {
            cols.iter()
                .position(|c| *c == name)
                .ok_or(format!("sipp statistics have no {name} column"))
        };
        let (created, successful) = (col("TotalCallCreated")?, col("SuccessfulCall(C)")?);
        let rows: Vec<&str> = lines.collect();
        let last: Vec<&str> = rows
            .last()
            .map(|l| l.split(';').collect())
            .unwrap_or_default();
        let num = |i: usize| last.get(i).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
        Ok(SippCounters {
            lines: rows.len(),
            created: num(created),
            successful: num(successful),
        })
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The project's Talkdesk simulator, one account, for the agent's actuator.
struct Simulator {
    child: Child,
    base: String,
}

impl Simulator {
    fn start(bin: &Path, dir: &Path) -> Result<Simulator, String> {
        let port = free_tcp_port()?;
        let child = Command::new(bin)
            .args([
                "simulate-talkdesk",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--account", "bench:bench-client:bench-secret-0123456789"])
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let t0 = Instant::now();
        while TcpStream::connect(addr).is_err() {
            if t0.elapsed() > Duration::from_secs(10) {
                return Err("the Talkdesk simulator did not listen within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Simulator {
            child,
            base: format!("http://127.0.0.1:{port}"),
        })
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `continuity-agent run` with `n` SIP/UDP probes at the sipp on `sip_port`.
struct Agent {
    child: Child,
    addr: SocketAddr,
    ready: Duration,
}

impl Agent {
    fn start(
        bin: &Path,
        sim: &Simulator,
        sip_port: u16,
        dir: &Path,
        n: usize,
    ) -> Result<Agent, String> {
        let port = free_tcp_port()?;
        let state = tempfile::tempdir_in(dir).map_err(|e| e.to_string())?.keep();
        let config = state.join("agent.toml");
        std::fs::write(&config, agent_config(&sim.base, port, sip_port, &state, n))
            .map_err(|e| e.to_string())?;
        let started = Instant::now();
        let child = Command::new(bin)
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(state.join("agent.log")).map_err(|e| e.to_string())?,
            ))
            .spawn()
            .map_err(|e| format!("{}: {e}", bin.display()))?;
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let mut agent = Agent {
            child,
            addr,
            ready: Duration::ZERO,
        };
        loop {
            if http_get(addr, "/readyz").is_some_and(|(code, _)| code == 200) {
                agent.ready = started.elapsed();
                return Ok(agent);
            }
            if let Ok(Some(status)) = agent.child.try_wait() {
                return Err(format!(
                    "the agent exited ({status}) before it was ready; its log: {}",
                    state.join("agent.log").display()
                ));
            }
            if started.elapsed() > Duration::from_secs(60) {
                return Err("the agent was not ready within 60 s".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `continuity_probe_results_total` summed over every probe.
    fn results(&self) -> Result<Results, String> {
        let (_, body) = http_get(self.addr, "/metrics").ok_or("GET /metrics failed")?;
        let mut r = Results::default();
        for line in body
            .lines()
            .filter(|l| l.starts_with("continuity_probe_results_total{"))
        {
            let value: f64 = line
                .rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            if line.contains("result=\"success\"") {
                r.success += value;
            } else if line.contains("result=\"failure\"") {
                r.failure += value;
            } else if line.contains("result=\"inconclusive\"") {
                r.inconclusive += value;
            }
        }
        Ok(r)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SIGTERM: a graceful stop, as a supervisor would.
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn trunk_id(i: usize) -> String {
    format!("trunk-{i:05}")
}

fn agent_config(sim: &str, port: u16, sip_port: u16, state: &Path, n: usize) -> String {
    let mut s = format!(
        r#"[agent]
listen = "127.0.0.1:{port}"
[store]
url = "sqlite://{db}"
[talkdesk]
account = "bench"
api_base = "{sim}/accounts/bench"
token_url = "{sim}/accounts/bench/oauth/token"
client_id = "bench-client"
client_secret = "bench-secret-0123456789"
[profiles.backup]
default = "+14155558888"
[[rules]]
name = "trunks-down"
profile = "backup"
for = "10s"
when = {{ down = "trunk-*" }}
"#,
        db = state.join("state.db").display()
    );
    for i in 0..n {
        // fast_interval = interval: a probe that goes down does not change
        // the offered rate.
        let _ = write!(
            s,
            r#"
[[probes]]
id = "{id}"
type = "sip"
target = "sip:{id}@127.0.0.1:{sip_port}"
interval = "1s"
fast_interval = "1s"
timeout = "1s"
"#,
            id = trunk_id(i)
        );
    }
    s
}

/// Kamailio 5.6's dispatcher pinging `n` destinations every second.
struct Kamailio {
    child: Child,
}

impl Kamailio {
    fn start(dir: &Path, sip_port: u16, n: usize) -> Result<Kamailio, String> {
        let port = free_udp_port()?;
        let run = tempfile::tempdir_in(dir).map_err(|e| e.to_string())?.keep();
        let list = run.join("dispatcher.list");
        let mut l = String::new();
        for i in 0..n {
            let _ = writeln!(l, "1 sip:{}@127.0.0.1:{sip_port} 0 0", trunk_id(i));
        }
        std::fs::write(&list, l).map_err(|e| e.to_string())?;
        let cfg = run.join("kamailio.cfg");
        std::fs::write(&cfg, kamailio_config(port, &list)).map_err(|e| e.to_string())?;
        let child = Command::new("kamailio")
            .arg("-f")
            .arg(&cfg)
            // Foreground, children forked; logs to stderr; shared memory
            // enough for 10,000 transactions in flight.
            .args(["-DD", "-E", "-m", "512", "-M", "32", "-Y"])
            .arg(&run)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(run.join("kamailio.log")).map_err(|e| e.to_string())?,
            ))
            .spawn()
            .map_err(|e| format!("kamailio: {e}"))?;
        let mut k = Kamailio { child };
        std::thread::sleep(Duration::from_millis(500));
        if let Ok(Some(status)) = k.child.try_wait() {
            return Err(format!(
                "kamailio exited ({status}); its log: {}",
                run.join("kamailio.log").display()
            ));
        }
        Ok(k)
    }

    /// The main process and every process it forked.
    fn pids(&self) -> Vec<u32> {
        descendants(self.child.id())
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SAFETY: plain kill(2) on our own child's pid; it stops its children.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn kamailio_config(port: u16, list: &Path) -> String {
    format!(
        r#"#!KAMAILIO
debug=1
log_stderror=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "kex.so"
loadmodule "corex.so"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "dispatcher.so"
modparam("dispatcher", "list_file", "{list}")
modparam("dispatcher", "ds_ping_method", "OPTIONS")
modparam("dispatcher", "ds_ping_from", "sip:kamailio@127.0.0.1")
modparam("dispatcher", "ds_ping_interval", 1)
modparam("dispatcher", "ds_probing_mode", 1)
request_route {{
    drop;
}}
"#,
        list = list.display()
    )
}

// ------------------------------------------------------------ measurements

/// utime + stime of `pids` (clock ticks from `/proc/PID/stat`).
fn cpu(pids: &[u32]) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks: u64 = pids
        .iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .map(|s| {
            // Fields after the command (which may hold spaces) in parentheses.
            let rest = s.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<&str> = rest.split_whitespace().collect();
            // utime and stime are fields 14 and 15; `rest` starts at field 3.
            let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            num(11) + num(12)
        })
        .sum();
    Duration::from_secs_f64(ticks as f64 / hz)
}

fn status_kib(pid: u32, key: &str, file: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

fn rss(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:", "status")
}

fn pss(pid: u32) -> u64 {
    status_kib(pid, "Pss:", "smaps_rollup")
}

/// `root` and every process below it.
fn descendants(root: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter_map(|pid| {
                    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                    let rest = s.rsplit_once(')')?.1;
                    let ppid = rest.split_whitespace().nth(1)?.parse().ok()?;
                    Some((pid, ppid))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// `RcvbufErrors` of the host's UDP counters.
fn rcvbuf_errors() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp: "));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// A bare HTTP/1.0 GET: status code and body.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp);
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

fn free_udp_port() -> Result<u16, String> {
    let s = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(s.local_addr().map_err(|e| e.to_string())?.port())
}

fn free_tcp_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

// ------------------------------------------------------------ environment

/// Installs `package` from Debian when `tool` is not on the PATH.
fn ensure_tool(tool: &str, package: &str) -> Result<(), String> {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Ok(());
    }
    eprintln!("bench sip: installing {package} for {tool}");
    let ok = Command::new("apt-get")
        .args(["install", "-y", package])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{tool} is missing and `apt-get install -y {package}` failed"
        ))
    }
}

/// `CONTINUITY_AGENT_BIN`, else the release binary (built if missing).
fn agent_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("CONTINUITY_AGENT_BIN") {
        return Ok(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let bin = root.join("target/release/continuity-agent");
    if !bin.exists() {
        let ok = Command::new(env!("CARGO"))
            .args(["build", "--release", "--bin", "continuity-agent"])
            .current_dir(root)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err("cargo build --release failed".into());
        }
    }
    Ok(bin)
}

fn version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stdout).to_string()
                + &String::from_utf8_lossy(&o.stderr);
            text.lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("?")
                .to_string()
        })
        .unwrap_or_else(|_| "?".into())
}

// ------------------------------------------------------------ the report

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn markdown(opts: &Options, rows: &[Row], soak: Option<&Soak>) -> String {
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let trunks: Vec<String> = opts.trunks.iter().map(usize::to_string).collect();
    let mut md = String::new();
    let _ = writeln!(md, "## SIP OPTIONS: many trunks, beside Kamailio\n");
    let _ = writeln!(
        md,
        "`cargo bench --bench sip -- --trunks {} --reps {} --warmup {} --window {}{}{}`\n",
        trunks.join(","),
        opts.reps,
        opts.warmup.as_secs(),
        opts.window.as_secs(),
        opts.soak
            .map(|d| format!(" --soak {}", d.as_secs()))
            .unwrap_or_default(),
        if opts.quick { " --quick" } else { "" },
    );
    let _ = writeln!(
        md,
        "Machine: {nproc} cores, load average {} at the end of the run. Peers: {}; {}; \
         each N trunks at a 1 s interval against its own sipp UAS on loopback, the agent and \
         Kamailio's dispatcher (`ds_ping_interval=1`, `ds_probing_mode=1`, 2 children) taking \
         turns in the same run. Medians of {} repetitions, each a {} s window after a {} s \
         warm-up. CPU: utime+stime of the peer's processes over the window, per 200 answered \
         by its sipp. Memory: the agent's RSS; Kamailio's PSS summed over its processes. \
         RcvbufErrors: host-wide UDP drops in the window (peer or sipp).\n",
        load.join(" "),
        version("kamailio", "-v"),
        version("sipp", "-v"),
        opts.reps,
        opts.window.as_secs(),
        opts.warmup.as_secs(),
    );
    let _ = writeln!(
        md,
        "| trunks | answered/s: agent / Kamailio | CPU per answered ping: agent / Kamailio (ratio) | share of one core: agent / Kamailio | memory: agent RSS / Kamailio PSS | RcvbufErrors: agent / Kamailio | agent start to `/readyz` 200 |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            md,
            "| {} | {:.0} / {:.0} | {:.1} us / {:.1} us ({:.2}x) | {:.1} % / {:.1} % | {} / {} | {} / {} | {} |",
            r.n,
            r.agent.answered,
            r.kamailio.answered,
            r.agent.cpu_us_per_ping,
            r.kamailio.cpu_us_per_ping,
            r.agent.cpu_us_per_ping / r.kamailio.cpu_us_per_ping,
            100.0 * r.agent.cpu_share,
            100.0 * r.kamailio.cpu_share,
            mib(r.agent.mem),
            mib(r.kamailio.mem),
            r.agent.rcvbuf_errors,
            r.kamailio.rcvbuf_errors,
            r.agent
                .ready
                .map(|d| format!("{:.0} ms", d.as_secs_f64() * 1e3))
                .unwrap_or_default(),
        );
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last())
        && rows.len() > 1
    {
        let _ = writeln!(
            md,
            "\nAgent cost per ping at {} trunks / at {}: {:.2}x (flat scaling is 1.0x).",
            last.n,
            first.n,
            last.agent.cpu_us_per_ping / first.agent.cpu_us_per_ping
        );
    }
    if let Some(s) = soak {
        let rss: Vec<u64> = s.samples.iter().map(|(_, r)| *r).collect();
        let first_min = s
            .samples
            .iter()
            .find(|(t, _)| *t >= Duration::from_secs(60));
        let _ = writeln!(
            md,
            "\nSoak: the agent alone at {} trunks for {} s: {:.0} answered/s, {:.1} us per ping, \
             {:.1} % of one core; RSS sampled every 10 s: first {}, after 1 min {}, last {}, max {}.",
            s.n,
            s.samples.last().map_or(0, |(t, _)| t.as_secs()),
            s.run.answered,
            s.run.cpu_us_per_ping,
            100.0 * s.run.cpu_share,
            mib(rss.first().copied().unwrap_or(0)),
            mib(first_min.map_or(0, |(_, r)| *r)),
            mib(rss.last().copied().unwrap_or(0)),
            mib(rss.iter().copied().max().unwrap_or(0)),
        );
        if let Some(r) = s.run.results {
            let _ = writeln!(
                md,
                "Results the agent counted over the soak's whole run: {} success, {} failure, {} inconclusive.",
                r.success, r.failure, r.inconclusive
            );
        }
    }
    md
}
