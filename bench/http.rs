//! HTTP probes (issue 13): the agent probing one local HTTP target N times
//! a second (default 200 probes at a 1 s interval), beside Prometheus
//! blackbox_exporter (Debian `prometheus-blackbox-exporter`, installed when
//! missing) probing the same target at the same rate, driven the way
//! Prometheus drives it: a GET of `/probe?target=...&module=http_2xx` for
//! each probe.
//!
//! Both run at once, as processes of their own; the target (a small axum
//! server), the driver and the Talkdesk simulator run in this process on
//! runtimes of their own, so their CPU is nobody's. Per window, each peer's
//! CPU time (utime+stime of every thread, `/proc/PID/stat`) is divided by
//! the requests the target received from it (told apart by `User-Agent`),
//! and the connections it opened (distinct client ports) by the same: 1.0
//! is a fresh connection per probe. Medians over the windows.
//!
//! Run: `cargo bench --bench http -- [--quick] [--markdown FILE]
//! [--probes N] [--interval SECONDS] [--window SECONDS] [--reps N]`.
//! `--quick`: 20 probes, one 3 s window, no timing claim.

#[path = "footprint/common.rs"]
mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use common::{Args, Proc, Talkdesk, median, mib};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench http: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Who {
    Agent,
    Blackbox,
}

/// What the target saw from each peer: requests, and the client ports they
/// came from (one per connection: loopback does not reuse a port within a
/// window while the old connection is in TIME_WAIT).
#[derive(Default)]
struct Seen {
    requests: BTreeMap<Who, u64>,
    ports: BTreeMap<Who, HashSet<u16>>,
}

impl Seen {
    fn take(&mut self) -> Seen {
        std::mem::take(self)
    }
    fn requests(&self, who: Who) -> u64 {
        self.requests.get(&who).copied().unwrap_or(0)
    }
    fn connections(&self, who: Who) -> u64 {
        self.ports.get(&who).map_or(0, |p| p.len() as u64)
    }
}

/// One measured window.
#[derive(Debug)]
struct Window {
    /// Per peer: probes per second, CPU per probe (us), connections per probe.
    agent: (f64, f64, f64),
    blackbox: (f64, f64, f64),
}

fn run() -> Result<(), String> {
    let args = Args::parse(&["--probes", "--interval", "--window", "--reps"])?;
    let probes: usize = args.get("--probes", if args.quick { 20 } else { 200 })?;
    let interval: f64 = args.get("--interval", 1.0)?;
    let window =
        Duration::from_secs_f64(args.get("--window", if args.quick { 3.0 } else { 10.0 })?);
    let reps: usize = args.get("--reps", if args.quick { 1 } else { 5 })?;
    let rate = probes as f64 / interval;
    let machine = common::machine();
    let agent_bin = common::agent_bin()?;
    let blackbox_bin = common::ensure_installed(
        "prometheus-blackbox-exporter",
        "prometheus-blackbox-exporter",
    )?;
    let talkdesk = Talkdesk::start()?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("harness")
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let target = rt.block_on(serve_target(seen.clone()))?;
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;

    // The agent: N http probes of the target.
    let agent_port = common::free_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        agent_config(agent_port, dir.path(), &target, probes, interval),
    )
    .map_err(|e| e.to_string())?;
    let log = std::fs::File::create(dir.path().join("agent.log")).map_err(|e| e.to_string())?;
    let agent = Proc::spawn(
        Command::new(&agent_bin)
            .args(["run", "-c"])
            .arg(&config)
            .envs(talkdesk.env())
            .stderr(log),
    )?;
    common::wait_ok(
        &format!("http://127.0.0.1:{agent_port}/readyz"),
        agent.started,
        Duration::from_secs(30),
    )
    .inspect_err(|_| {
        let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
        eprintln!("agent log:\n{log}");
    })?;

    // blackbox_exporter with one module, driven at the same rate.
    let bb_port = common::free_port();
    let bb_config = dir.path().join("blackbox.yml");
    std::fs::write(
        &bb_config,
        "modules:\n  http_2xx:\n    prober: http\n    timeout: 2s\n    http:\n      preferred_ip_protocol: ip4\n",
    )
    .map_err(|e| e.to_string())?;
    let blackbox = Proc::spawn(
        Command::new(&blackbox_bin)
            .arg(format!("--config.file={}", bb_config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{bb_port}"))
            .stderr(std::process::Stdio::null()),
    )?;
    common::wait_ok(
        &format!("http://127.0.0.1:{bb_port}/-/ready"),
        blackbox.started,
        Duration::from_secs(30),
    )?;
    let probe_url = format!(
        "http://127.0.0.1:{bb_port}/probe?target={}&module=http_2xx",
        url_encode(&target)
    );
    let failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let driver = rt.spawn(drive(probe_url, rate, failed.clone()));

    // Warm up: every probe has started (start jitter spreads them over an
    // interval) and both sides are at their steady rate.
    std::thread::sleep(Duration::from_secs_f64(2.0 * interval + 1.0));
    let mut windows = Vec::new();
    for rep in 0..reps {
        seen.lock().unwrap().take();
        let (a0, b0, t0) = (agent.usage(), blackbox.usage(), Instant::now());
        std::thread::sleep(window);
        let (a1, b1, secs) = (agent.usage(), blackbox.usage(), t0.elapsed().as_secs_f64());
        let got = seen.lock().unwrap().take();
        let per = |who: Who, cpu: Duration| {
            let n = got.requests(who) as f64;
            (
                n / secs,
                cpu.as_secs_f64() * 1e6 / n,
                got.connections(who) as f64 / n,
            )
        };
        let w = Window {
            agent: per(Who::Agent, a1.cpu - a0.cpu),
            blackbox: per(Who::Blackbox, b1.cpu - b0.cpu),
        };
        eprintln!("window {}: {w:?}", rep + 1);
        windows.push(w);
    }
    let (agent_usage, blackbox_usage) = (agent.usage(), blackbox.usage());
    driver.abort();
    agent.stop();
    blackbox.stop();
    let failed = failed.load(std::sync::atomic::Ordering::Relaxed);

    let col = |f: fn(&Window) -> f64| median(&windows.iter().map(f).collect::<Vec<_>>());
    let cell = |v: Option<f64>, digits: usize| v.map_or("-".into(), |v| format!("{v:.digits$}"));
    let (a_cpu, b_cpu) = (col(|w| w.agent.1), col(|w| w.blackbox.1));
    let ratio = match (a_cpu, b_cpu) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    };
    let table = format!(
        "| | continuity-agent | blackbox_exporter | ratio |\n|---|---|---|---|\n\
| probes per second (target {rate:.0}) | {} | {} | |\n\
| **CPU per probe** | **{} us** | **{} us** | **{ratio}** |\n\
| new connections per probe | {} | {} | |\n\
| resident memory at the end | {} | {} | |\n\
| threads | {} | {} | |\n",
        cell(col(|w| w.agent.0), 0),
        cell(col(|w| w.blackbox.0), 0),
        cell(a_cpu, 0),
        cell(b_cpu, 0),
        cell(col(|w| w.agent.2), 2),
        cell(col(|w| w.blackbox.2), 2),
        mib(agent_usage.rss),
        mib(blackbox_usage.rss),
        agent_usage.threads,
        blackbox_usage.threads,
    );
    let section = format!(
        "## HTTP probes beside blackbox_exporter\n\n\
`cargo bench --bench http{quick}` (binary: `{bin}`). Machine: {machine}. Peer: {peer}.\n\n\
{probes} HTTP probes at a {interval} s interval against one local target (a small axum server \
answering `200 ok`), and blackbox_exporter's `http_2xx` module probing the same target at the same \
rate, driven like Prometheus drives it (a GET of `/probe?target=...` per probe; {failed} of them \
failed), both at once. CPU per probe is each process's CPU time (utime+stime, `/proc/PID/stat`) over \
a {window:?} window divided by the requests the target received from it; the agent's includes \
everything it does besides (the engine step of each result, metrics, its idle work). Medians of \
{reps} window{s}.\n\n{table}",
        quick = if args.quick { " -- --quick" } else { "" },
        bin = agent_bin.display(),
        peer = common::version(&blackbox_bin),
        s = if reps == 1 { "" } else { "s" },
    );
    common::write_section(args.markdown.as_deref(), &section)
}

fn agent_config(port: u16, dir: &Path, target: &str, probes: usize, interval: f64) -> String {
    let mut s = format!(
        r#"[agent]
listen = "127.0.0.1:{port}"
[store]
url = "sqlite://{db}"
[talkdesk]
account = "bench"
client_id = "set-by-the-environment"
client_secret = "set-by-the-environment"
[profiles.backup]
default = "+14155558888"
[[rules]]
name = "web-down"
profile = "backup"
when = {{ down = "web-*" }}
"#,
        db = dir.join("state.db").display()
    );
    for i in 0..probes {
        s += &format!(
            "[[probes]]\nid = \"web-{i}\"\ntype = \"http\"\nurl = \"{target}\"\ninterval = \"{}ms\"\ntimeout = \"2s\"\n",
            (interval * 1000.0) as u64
        );
    }
    s
}

/// The target: `GET /health` answers `200 ok`, counting who asked.
async fn serve_target(seen: Arc<Mutex<Seen>>) -> Result<String, String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let app = axum::Router::new().route(
        "/health",
        axum::routing::get(
            move |ConnectInfo(peer): ConnectInfo<SocketAddr>, headers: HeaderMap| {
                let seen = seen.clone();
                async move {
                    let agent = headers
                        .get("user-agent")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|ua| ua.starts_with("continuity-agent"));
                    let who = if agent { Who::Agent } else { Who::Blackbox };
                    let mut seen = seen.lock().unwrap();
                    *seen.requests.entry(who).or_default() += 1;
                    seen.ports.entry(who).or_default().insert(peer.port());
                    "ok\n"
                }
            },
        ),
    );
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    Ok(format!("http://{addr}/health"))
}

/// Asks blackbox_exporter for `rate` probes a second, each on its own task
/// (a slow probe does not hold the next), over one kept-alive connection
/// pool as Prometheus does.
async fn drive(url: String, rate: f64, failed: Arc<std::sync::atomic::AtomicU64>) {
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("a plain HTTP client");
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    loop {
        tick.tick().await;
        let (client, url, failed) = (client.clone(), url.clone(), failed.clone());
        tokio::spawn(async move {
            let ok = match client.get(&url).send().await {
                Ok(r) => r.text().await.is_ok_and(|t| t.contains("probe_success 1")),
                Err(_) => false,
            };
            if !ok {
                failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
