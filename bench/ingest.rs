//! Webhook ingest (issue 13): `POST /v1/alerts/alertmanager` with a
//! realistic 10-alert Alertmanager delivery, driven by `wrk` at full speed,
//! against the release agent binary and, in the same run, against a bare
//! axum handler that returns 202 (this harness re-executed with
//! `--serve-bare PORT`: its own process, the agent's runtime settings: a
//! default multi-threaded tokio runtime). Only 2xx answers count.
//!
//! Three servers take turns, each for `--seconds` per repetition: the bare
//! handler, the agent with its SQLite store on disk (`synchronous = FULL`:
//! a delivery is answered once its group commit is on disk), and the agent
//! with the store on tmpfs (`/dev/shm`: the same code without the disk's
//! fsync), which shows what durability costs. Medians over the repetitions.
//!
//!   cargo bench --bench ingest -- [--quick] [--markdown FILE] [--seconds S] [--reps N]

#[path = "common/harness.rs"]
mod harness;
#[path = "common/world.rs"]
mod world;
#[path = "common/wrk.rs"]
mod wrk;

use std::process::{Child, Command, ExitCode, Stdio};
use std::time::Duration;

use harness::{Options, Section, median};
use world::{Agent, TOKEN, Talkdesk, alertmanager_payload, config_head};

/// wrk's threads and connections, the same for every server.
const THREADS: u32 = 2;
const CONNS: u32 = 32;

fn main() -> ExitCode {
    let opts = Options::parse();
    if let Some(i) = opts.rest.iter().position(|a| a == "--serve-bare") {
        let port: u16 = opts.rest[i + 1].parse().expect("--serve-bare PORT");
        serve_bare(port);
        return ExitCode::SUCCESS;
    }
    let mut seconds = opts.pick(10.0, 2.0);
    let mut reps = opts.pick(5, 1);
    let mut it = opts.rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(seconds),
            "--reps" => reps = it.next().and_then(|v| v.parse().ok()).unwrap_or(reps),
            _ => {}
        }
    }
    harness::ensure_tool("wrk", "wrk");
    match run(seconds, reps) {
        Ok(results) => {
            report(&opts, seconds, reps, &results);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench ingest: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The peer: the smallest axum server that takes the same POST and answers
/// 202, on the runtime the agent's `main` builds.
fn serve_bare(port: u16) {
    use axum::routing::post;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let app = axum::Router::new().route(
            "/v1/alerts/alertmanager",
            post(|_body: axum::body::Bytes| async { axum::http::StatusCode::ACCEPTED }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("bind");
        axum::serve(listener, app).await.expect("serve");
    });
}

/// One server under test.
#[derive(Clone, Copy, PartialEq)]
enum Server {
    Bare,
    AgentDisk,
    AgentTmpfs,
}

impl Server {
    const ALL: [Server; 3] = [Server::Bare, Server::AgentDisk, Server::AgentTmpfs];

    fn name(self) -> &'static str {
        match self {
            Server::Bare => "bare axum handler (202)",
            Server::AgentDisk => "agent, SQLite on disk",
            Server::AgentTmpfs => "agent, SQLite on tmpfs",
        }
    }
}

/// Per server: each repetition's wrk run and CPU per accepted delivery (us).
struct Results {
    runs: Vec<(Server, Vec<(wrk::WrkRun, f64)>)>,
}

/// A running server: the process and where to POST.
struct Running {
    _agent: Option<Agent>,
    bare: Option<Child>,
    pid: u32,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(c) = &mut self.bare {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn start(server: Server, rt: &tokio::runtime::Runtime, sim: &str) -> Running {
    let port = harness::free_port();
    let dir = match server {
        Server::AgentTmpfs => tempfile::tempdir_in("/dev/shm"),
        _ => tempfile::tempdir(),
    }
    .expect("temporary directory");
    let url = format!("http://127.0.0.1:{port}/v1/alerts/alertmanager");
    if server == Server::Bare {
        let child = Command::new(std::env::current_exe().expect("this harness"))
            .args(["--serve-bare", &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("start the bare server");
        let pid = child.id();
        wait_port(port);
        return Running {
            _agent: None,
            bare: Some(child),
            pid,
            url,
            _dir: dir,
        };
    }
    let toml = format!(
        r#"{head}
[[rules]]
name = "voice-down"
profile = "backup"
for = "0s"
when = {{ alert = ['alertname="TalkdeskVoiceDown"'] }}
"#,
        head = config_head(port, dir.path(), sim),
    );
    let mut agent = Agent::spawn(&harness::agent_bin(), dir.path(), port, &toml);
    rt.block_on(agent.wait_ready(&reqwest::Client::new()));
    Running {
        pid: agent.pid(),
        _agent: Some(agent),
        bare: None,
        url,
        _dir: dir,
    }
}

fn wait_port(port: u16) {
    for _ in 0..500 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("nothing listens on {port}");
}

fn run(seconds: f64, reps: usize) -> Result<Results, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let talkdesk = rt.block_on(Talkdesk::start());
    let scripts = tempfile::tempdir().map_err(|e| e.to_string())?;
    // Another alert than the rule's: the flood is ingest, not actuation.
    let body = alertmanager_payload("HighSipErrorRate", 10, true, 0);
    let script = wrk::script(scripts.path(), &body, TOKEN);
    let mut results = Results {
        runs: Server::ALL.iter().map(|s| (*s, Vec::new())).collect(),
    };
    // Interleaved: every repetition runs each server once, so a change in
    // the machine's load touches all of them alike.
    for rep in 0..reps {
        for (server, runs) in &mut results.runs {
            let running = start(*server, &rt, &talkdesk.base_url());
            // A short warm-up (connections, caches, the store's first pages).
            wrk::run(&running.url, &script, THREADS, CONNS, 1.0)?;
            let cpu0 = harness::cpu_time(running.pid);
            let r = wrk::run(&running.url, &script, THREADS, CONNS, seconds)?;
            let cpu = harness::cpu_time(running.pid).saturating_sub(cpu0);
            let ok = r.requests.saturating_sub(r.non_2xx).max(1);
            let cpu_us = cpu.as_secs_f64() * 1e6 / ok as f64;
            eprintln!(
                "rep {rep} {}: {:.0} 2xx/s ({} non-2xx, {} socket errors), p99 {:.2} ms, {cpu_us:.0} us CPU per delivery",
                server.name(),
                r.ok_per_second(),
                r.non_2xx,
                r.errors,
                r.p99
            );
            if r.non_2xx * 100 > r.requests {
                return Err(format!(
                    "{}: {} of {} answers were not 2xx",
                    server.name(),
                    r.non_2xx,
                    r.requests
                ));
            }
            runs.push((r, cpu_us));
        }
    }
    Ok(results)
}

fn report(opts: &Options, seconds: f64, reps: usize, res: &Results) {
    let med = |s: Server, f: &dyn Fn(&(wrk::WrkRun, f64)) -> f64| {
        let runs = &res.runs.iter().find(|(x, _)| *x == s).expect("server").1;
        median(&runs.iter().map(f).collect::<Vec<_>>())
    };
    let bare_rate = med(Server::Bare, &|r| r.0.ok_per_second());
    let rows: Vec<Vec<String>> = Server::ALL
        .iter()
        .map(|&s| {
            let rate = med(s, &|r| r.0.ok_per_second());
            vec![
                s.name().to_string(),
                format!("{rate:.0}"),
                format!("{:.2}x", rate / bare_rate),
                format!("{:.2} ms", med(s, &|r| r.0.p50)),
                format!("{:.2} ms", med(s, &|r| r.0.p99)),
                format!("{:.0} us", med(s, &|r| r.1)),
            ]
        })
        .collect();
    let mut sec = Section::new(
        "Webhook ingest: Alertmanager deliveries per second",
        &format!(
            "cargo bench --bench ingest --{}",
            if opts.quick { " --quick" } else { "" }
        ),
        &[("wrk", harness::version_of("wrk", &["-v"]))],
    );
    sec.para(&format!(
        "`wrk -t{THREADS} -c{CONNS}` POSTs the same 10-alert Alertmanager delivery (about {} bytes, \
         bearer token) for {seconds} s per server and repetition, {reps} repetition(s), servers \
         interleaved; medians. Only 2xx answers count. The bare handler is a default axum server \
         answering 202 in its own process; the agent is the release binary with logs at `info` \
         (one line per delivery), each delivery parsed, authenticated and appended to the durable \
         input queue before its 202 (group commit: deliveries waiting while a transaction commits \
         share the next one). CPU is the server process's (utime + stime) per accepted delivery. \
         Target: the agent on disk >= 0.8x the bare handler.",
        alertmanager_payload("HighSipErrorRate", 10, true, 0).len()
    ));
    sec.table(
        &["server", "2xx/s", "ratio", "p50", "p99", "CPU per delivery"],
        &rows,
    );
    sec.finish(opts);
}
