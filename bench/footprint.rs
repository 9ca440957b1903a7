//! Footprint (issue 13): the release binary's size, the agent's resident
//! memory once it is ready and idle with `config/example.toml`, and the time
//! from exec to ready (`/readyz` 200), beside Prometheus blackbox_exporter
//! (Debian `prometheus-blackbox-exporter`, installed when missing) started
//! with its Debian configuration, as the peer a monitoring agent is compared
//! with.
//!
//! The agent runs as a process of its own against the Talkdesk simulator
//! (in this process, on its own runtime): `config/example.toml` with only
//! what must point elsewhere set by environment variables (the API port, the
//! SQLite file in a temporary directory, `[talkdesk]` at the simulator). Its
//! probes aim at example.net hosts, as shipped: they fail, which is the
//! agent's ordinary idle work (timers, DNS, retries), not a special case.
//!
//! Run: `cargo bench --bench footprint -- [--quick] [--markdown FILE]
//! [--reps N] [--idle SECONDS]`. Figures are medians over `--reps` runs
//! (default 5; `--quick`: one, 2 s idle, and no timing claim).

#[path = "footprint/common.rs"]
mod common;

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

use common::{Args, Proc, Talkdesk, median, mib};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench footprint: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One start of a process: time to ready, then memory and CPU while idle.
#[derive(Clone, Copy, Debug)]
struct Start {
    ready: Duration,
    rss: u64,
    threads: u64,
    /// CPU time over the idle window, as a share of one core.
    idle_cpu: f64,
}

fn run() -> Result<(), String> {
    let args = Args::parse(&["--reps", "--idle"])?;
    let reps: usize = args.get("--reps", if args.quick { 1 } else { 5 })?;
    let idle = Duration::from_secs_f64(args.get("--idle", if args.quick { 2.0 } else { 10.0 })?);
    let machine = common::machine();
    let agent = common::agent_bin()?;
    let blackbox = common::ensure_installed(
        "prometheus-blackbox-exporter",
        "prometheus-blackbox-exporter",
    )?;
    let talkdesk = Talkdesk::start()?;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");

    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let a = start_agent(&agent, &example, &talkdesk, idle)?;
        let b = start_blackbox(&blackbox, idle)?;
        eprintln!("rep {}: agent {a:?}; blackbox_exporter {b:?}", rep + 1);
        ours.push(a);
        peer.push(b);
    }

    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let med = |v: &[Start], f: fn(&Start) -> f64| median(&v.iter().map(f).collect::<Vec<_>>());
    let row = |what: &str, f: fn(&Start) -> f64, show: &dyn Fn(f64) -> String| {
        let (a, b) = (med(&ours, f), med(&peer, f));
        format!(
            "| {what} | {} | {} | {} |\n",
            a.map_or("-".into(), show),
            b.map_or("-".into(), show),
            ratio(a, b)
        )
    };
    let (ours_size, peer_size) = (size(&agent), size(&blackbox));
    let mut table =
        String::from("| | continuity-agent | blackbox_exporter | ratio |\n|---|---|---|---|\n");
    table += &format!(
        "| binary size | {} ({ours_size} bytes) | {} | {} |\n",
        mib(ours_size),
        mib(peer_size),
        ratio(Some(ours_size as f64), Some(peer_size as f64))
    );
    table += &row("resident memory, ready and idle", |s| s.rss as f64, &|v| {
        mib(v as u64)
    });
    table += &row("start until ready", |s| s.ready.as_secs_f64(), &|v| {
        format!("{:.0} ms", v * 1000.0)
    });
    table += &row("threads", |s| s.threads as f64, &|v| format!("{v:.0}"));
    table += &row("CPU while idle", |s| s.idle_cpu, &|v| {
        format!("{:.2} % of a core", v * 100.0)
    });

    let section = format!(
        "## Footprint: binary size, idle memory, start-up\n\n\
`cargo bench --bench footprint{quick}` (binary: `{bin}`). Machine: {machine}. Peer: {peer_version}.\n\n\
The agent runs `config/example.toml` (6 probes at example.net hosts, 3 rules, 4 notification targets) \
against the Talkdesk simulator, with only the API port, the SQLite file and the Talkdesk URLs and \
credentials set by environment variables; blackbox_exporter runs its Debian configuration \
(`/etc/prometheus/blackbox.yml`) and is probed by nobody. \"Ready\" is the first 200 from the agent's \
`/readyz` (blackbox_exporter: `/-/ready`), timed from the exec; memory (`VmRSS`), threads and CPU \
(utime+stime from `/proc/PID/stat`) are read after {idle:?} idle. Medians of {reps} run{s}.\n\n{table}",
        quick = if args.quick { " -- --quick" } else { "" },
        bin = agent.display(),
        peer_version = common::version(&blackbox),
        s = if reps == 1 { "" } else { "s" },
    );
    common::write_section(args.markdown.as_deref(), &section)
}

fn ratio(ours: Option<f64>, peer: Option<f64>) -> String {
    match (ours, peer) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".into(),
    }
}

fn start_agent(
    bin: &Path,
    config: &Path,
    talkdesk: &Talkdesk,
    idle: Duration,
) -> Result<Start, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let port = common::free_port();
    let log = std::fs::File::create(dir.path().join("agent.log")).map_err(|e| e.to_string())?;
    let mut cmd = Command::new(bin);
    cmd.args(["run", "-c"])
        .arg(config)
        .envs(talkdesk.env())
        .env(
            "CONTINUITY_AGENT_AGENT__LISTEN",
            format!("127.0.0.1:{port}"),
        )
        .env(
            "CONTINUITY_AGENT_STORE__URL",
            format!("sqlite://{}", dir.path().join("state.db").display()),
        )
        .stderr(log);
    let proc = Proc::spawn(&mut cmd)?;
    let measured = measure(&proc, &format!("http://127.0.0.1:{port}/readyz"), idle);
    if measured.is_err() {
        let log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap_or_default();
        eprintln!("agent log:\n{log}");
    }
    proc.stop();
    measured
}

fn start_blackbox(bin: &Path, idle: Duration) -> Result<Start, String> {
    let port = common::free_port();
    let mut cmd = Command::new(bin);
    cmd.arg("--config.file=/etc/prometheus/blackbox.yml")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stderr(std::process::Stdio::null());
    let proc = Proc::spawn(&mut cmd)?;
    let measured = measure(&proc, &format!("http://127.0.0.1:{port}/-/ready"), idle);
    proc.stop();
    measured
}

fn measure(proc: &Proc, ready_url: &str, idle: Duration) -> Result<Start, String> {
    let ready = common::wait_ok(ready_url, proc.started, Duration::from_secs(30))?;
    let before = proc.usage();
    std::thread::sleep(idle);
    let after = proc.usage();
    Ok(Start {
        ready,
        rss: after.rss,
        threads: after.threads,
        idle_cpu: (after.cpu - before.cpu).as_secs_f64() / idle.as_secs_f64(),
    })
}
