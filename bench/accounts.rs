//! Several accounts on one replica (issue 16): N Talkdesk accounts (300 by
//! default), each with two profiles and a rule on one shared SIP trunk, in
//! one agent process. Measures the memory each account costs, how long the
//! agent takes to start, how long after the shared trunk dies every
//! account's Talkdesk has the fallback on (and off again after it returns),
//! and the CPU time each of those decisions costs.
//!
//! Everything runs in this process, with real sockets on loopback: the
//! Talkdesk simulator (every account on its own routes and credentials) and
//! the trunk (the SIP responder the probe tests use) on one tokio runtime,
//! the agent (`daemon::run_with`, SQLite in a temporary directory, logs at
//! `info` as JSON formatted into a sink, as a deployment pays for them) on
//! another. The probe and rule timings are those of `tests/accounts.rs`.
//!
//! Run (release profile):
//!   cargo bench --bench accounts                      # 300 accounts
//!   cargo bench --bench accounts -- --accounts 1000   # or BENCH_ACCOUNTS=1000
//!   cargo bench --bench accounts -- --quick           # 30 accounts, a smoke run
//! Other options: `--json` (also print one JSON line), `--reconcile 60s`
//! (each account's `reconcile_interval`, default 60s as in production; or
//! BENCH_RECONCILE), `--store postgres://...` (or BENCH_STORE_URL: an empty
//! database, instead of SQLite in a temporary directory; TMPDIR moves that
//! one, e.g. to /dev/shm to take the disk's fsync out), `--logs` (the
//! agent's logs to stderr instead of a sink).
//! Without `--bench` (`cargo test --benches`) it runs the quick variant.
//! It exits 1 if an account does not converge or ends with the wrong profile.
//!
//! Figures and what they mean: BENCHMARKS.md, "Several accounts on one replica".

#[path = "accounts/converge.rs"]
mod converge;
#[path = "accounts/logs.rs"]
mod logs;
#[path = "accounts/report.rs"]
mod report;
#[path = "accounts/usage.rs"]
mod usage;
#[path = "accounts/world.rs"]
mod world;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use continuity_agent::talkdesk::simulator::AccountHandle;
use report::{Spread, Table, kib, mib, millis, secs};
use serde_json::json;
use usage::{Group, Reading};
use world::{Agent, Outside, Setup};

/// How long the agent sits idle after its start, to measure what N accounts
/// cost when nothing happens (probes, reconcile reads, lease renewals).
/// Longer than tokio's 10 s keep-alive of idle blocking threads.
const IDLE: Duration = Duration::from_secs(12);
/// Between the fallback on everywhere and the trunk's return: the work that
/// follows a write (audit records, snapshots) ends, and is measured apart.
const SETTLE: Duration = Duration::from_secs(3);

struct Options {
    accounts: usize,
    json: bool,
    logs: bool,
    reconcile: String,
    store: Option<String>,
    /// Write the BENCHMARKS.md section here (`bench/run.sh`).
    markdown: Option<String>,
}

impl Options {
    fn parse() -> Result<Options, String> {
        let mut args = std::env::args().skip(1);
        let (mut accounts, mut quick, mut json, mut logs, mut bench) =
            (None, false, false, false, false);
        let mut reconcile = std::env::var("BENCH_RECONCILE").unwrap_or_else(|_| "60s".into());
        let mut store = std::env::var("BENCH_STORE_URL").ok();
        let mut markdown = None;
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--accounts" => {
                    let v = args.next().ok_or("--accounts needs a number")?;
                    accounts = Some(v.parse().map_err(|_| format!("--accounts {v:?}"))?);
                }
                "--reconcile" => reconcile = args.next().ok_or("--reconcile needs a duration")?,
                "--store" => store = Some(args.next().ok_or("--store needs a URL")?),
                "--markdown" => markdown = Some(args.next().ok_or("--markdown needs a file")?),
                "--quick" => quick = true,
                "--json" => json = true,
                "--logs" => logs = true,
                // `cargo bench` adds it; `cargo test --benches` does not.
                "--bench" => bench = true,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        let from_env = std::env::var("BENCH_ACCOUNTS")
            .ok()
            .and_then(|v| v.parse().ok());
        // Explicit first: --accounts, --quick, BENCH_ACCOUNTS; then the
        // quick run under `cargo test`, the full one under `cargo bench`.
        let accounts = match (accounts, quick, from_env) {
            (Some(n), _, _) => n,
            (None, true, _) => 30,
            (None, false, Some(n)) => n,
            (None, false, None) if bench => 300,
            (None, false, None) => 30,
        };
        if accounts == 0 {
            return Err("--accounts must be at least 1".into());
        }
        Ok(Options {
            accounts,
            json,
            logs,
            reconcile,
            store,
            markdown,
        })
    }
}

fn main() -> ExitCode {
    let opts = match Options::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench accounts: {e}");
            return ExitCode::from(2);
        }
    };
    usage::name_this_thread();
    logs::init(opts.logs);
    let mut table = Table::default();
    // The store's kind only: a PostgreSQL URL may hold a password.
    let store = if opts.store.is_some() {
        "PostgreSQL"
    } else {
        "SQLite"
    };
    let mut doc =
        json!({ "accounts": opts.accounts, "store": store, "reconcile_interval": opts.reconcile });
    let outcome = run(&opts, &mut table, &mut doc);
    // What was measured is printed even when a step failed.
    let title = format!(
        "continuity-agent: {} accounts x 2 profiles, one shared SIP trunk, one replica ({store}), reconcile_interval {}",
        opts.accounts, opts.reconcile
    );
    table.print(&title);
    if let Some(path) = &opts.markdown {
        let section = format!(
            "## Several accounts on one replica: the suite's run\n\n`bench/run.sh accounts` \
             (`cargo bench --bench accounts -- --accounts {n}`), one run, {machine}.\n\n{}",
            table.render(&title),
            n = opts.accounts,
            machine = report::machine(),
        );
        if let Err(e) = std::fs::write(path, section) {
            eprintln!("bench accounts: cannot write {path}: {e}");
            return ExitCode::FAILURE;
        }
    }
    if opts.json {
        println!("{doc}");
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench accounts: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(opts: &Options, table: &mut Table, doc: &mut serde_json::Value) -> Result<(), String> {
    let n = opts.accounts;
    // The outside world first, then the baseline: what the agent adds is
    // measured over a process that already serves N simulated accounts.
    let sim_rt = world::runtime("sim", Some(2));
    let agent_rt = world::runtime("agent", None);
    let mut outside = sim_rt.block_on(Outside::start(n));
    let talkdesk = outside.handles(n);
    std::thread::sleep(Duration::from_millis(500));
    let baseline = Reading::now();
    let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let setup = Setup {
        reconcile: opts.reconcile.clone(),
        store: opts.store.clone(),
    };
    let loaded = Instant::now();
    let cfg = world::config(
        n,
        &outside.base_url(),
        outside.trunk_addr(),
        dir.path(),
        &setup,
    );
    table.row("configuration parse", millis(loaded.elapsed()));
    doc["config_parse_s"] = json!(loaded.elapsed().as_secs_f64());

    let limit = Duration::from_secs(120) + Duration::from_millis(100) * n as u32;
    let agent = start(&agent_rt, cfg, limit, &baseline, n, table, doc)?;
    let metrics = agent.metrics();
    let idle = idle(table, doc);

    // The shared trunk dies: every account switches on.
    let t = Transition {
        on: true,
        limit,
        metrics: &metrics,
        talkdesk: &talkdesk,
    };
    let on = transition(t, || outside.kill_trunk())?;
    on.report(("on", "trunk dies"), n, &idle, table, doc);
    let warned = logs::take_warnings();
    doc["warnings"]["on"] = table.warnings("trunk dies, until all on and settled", warned);
    check_profiles(&talkdesk)?;

    // It comes back: every account switches off.
    let t = Transition {
        on: false,
        limit,
        metrics: &metrics,
        talkdesk: &talkdesk,
    };
    let off = transition(t, || sim_rt.block_on(outside.revive_trunk()))?;
    off.report(("off", "trunk returns"), n, &idle, table, doc);
    let warned = logs::take_warnings();
    doc["warnings"]["off"] = table.warnings("trunk returns, until all off and settled", warned);

    let end = Reading::now();
    table.row("peak RSS", mib(end.peak_rss));
    doc["peak_rss_bytes"] = json!(end.peak_rss);
    let stopping = Instant::now();
    agent_rt.block_on(agent.stop());
    table.row("graceful stop", secs(stopping.elapsed()));
    doc["stop_s"] = json!(stopping.elapsed().as_secs_f64());
    Ok(())
}

/// Starts the agent and waits until every account's actuator has read its
/// Talkdesk back (which it does only once the engine saw the trunk up).
fn start(
    agent_rt: &tokio::runtime::Runtime,
    cfg: continuity_agent::config::Config,
    limit: Duration,
    baseline: &Reading,
    n: usize,
    table: &mut Table,
    doc: &mut serde_json::Value,
) -> Result<Agent, String> {
    let started = Instant::now();
    let agent = agent_rt.block_on(Agent::start(cfg));
    let serving = started.elapsed();
    let metrics = agent.metrics();
    let http = reqwest::Client::new();
    while !(agent_rt.block_on(agent.ready(&http)) && converge::all_observed_off(&metrics)) {
        if started.elapsed() > limit {
            return Err(format!("the agent was not ready after {limit:?}"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let ready = started.elapsed();
    let now = Reading::now();
    let per_account = now.rss.saturating_sub(baseline.rss) / n as u64;
    table.row("RSS before the agent (simulator, trunk)", mib(baseline.rss));
    table.row("RSS after start", mib(now.rss));
    table.row("RSS per account", kib(per_account));
    table.row("threads after start", now.threads.to_string());
    table.row("start until the API serves", secs(serving));
    table.row("start until every account is ready", secs(ready));
    doc["rss_baseline_bytes"] = json!(baseline.rss);
    doc["rss_after_start_bytes"] = json!(now.rss);
    doc["rss_per_account_bytes"] = json!(per_account);
    doc["threads_after_start"] = json!(now.threads);
    doc["start_serving_s"] = json!(serving.as_secs_f64());
    doc["start_ready_s"] = json!(ready.as_secs_f64());
    doc["warnings"] = json!({});
    doc["warnings"]["start"] = table.warnings("start", logs::take_warnings());
    Ok(agent)
}

/// What N accounts cost while nothing happens.
fn idle(table: &mut Table, doc: &mut serde_json::Value) -> Idle {
    let from = Reading::now();
    std::thread::sleep(IDLE);
    let to = Reading::now();
    doc["warnings"]["idle"] = table.warnings("idle", logs::take_warnings());
    let process = to.cpu.saturating_sub(from.cpu);
    let agent = to.group_since(&from, Group::Agent);
    let share = |cpu: Duration| 100.0 * cpu.as_secs_f64() / IDLE.as_secs_f64();
    table.row(
        "idle CPU, process / agent (% of one core)",
        format!("{:.1} % / {:.1} %", share(process), share(agent)),
    );
    // Tokio ends blocking threads (SQLite calls run on them) idle for 10 s:
    // what is left is what a replica holds between outages.
    table.row(
        &format!("RSS / threads after {} s idle", IDLE.as_secs()),
        format!("{} / {}", mib(to.rss), to.threads),
    );
    doc["rss_after_idle_bytes"] = json!(to.rss);
    doc["threads_after_idle"] = json!(to.threads);
    doc["idle_cpu_percent"] = json!(share(process));
    doc["idle_cpu_agent_percent"] = json!(share(agent));
    Idle {
        process: process.as_secs_f64() / IDLE.as_secs_f64(),
        agent: agent.as_secs_f64() / IDLE.as_secs_f64(),
    }
}

struct Transition<'a> {
    on: bool,
    limit: Duration,
    metrics: &'a [continuity_agent::telemetry::AccountMetrics],
    talkdesk: &'a [AccountHandle],
}

/// CPU seconds per second while nothing happens, to take out of a window's
/// CPU what would have been spent anyway (probes, reconcile reads, lease
/// renewals): a long window (one slow account) would otherwise inflate
/// every decision's share.
struct Idle {
    process: f64,
    agent: f64,
}

/// What one change of the trunk cost, and how fast every account followed.
struct Measured {
    converged: converge::Converged,
    /// From the trunk's change until the last account was applied.
    window: Duration,
    /// CPU from the trunk's change until the last account was applied.
    cpu: Duration,
    cpu_agent: Duration,
    cpu_sim: Duration,
    cpu_bench: Duration,
    /// CPU in the `SETTLE` after that (trailing audit and snapshot writes,
    /// plus whatever idle costs).
    tail: Duration,
}

/// Changes the trunk with `change` and measures until every account's
/// Talkdesk follows, then `SETTLE`s.
fn transition(t: Transition<'_>, change: impl FnOnce()) -> Result<Measured, String> {
    let before = Reading::now();
    let since = Instant::now();
    change();
    let converged = converge::wait(since, t.limit, t.on, t.metrics, t.talkdesk)?;
    let after = Reading::now();
    let window = since.elapsed();
    std::thread::sleep(SETTLE);
    let settled = Reading::now();
    Ok(Measured {
        converged,
        window,
        cpu: after.cpu.saturating_sub(before.cpu),
        cpu_agent: after.group_since(&before, Group::Agent),
        cpu_sim: after.group_since(&before, Group::Simulator),
        cpu_bench: after.group_since(&before, Group::Bench),
        tail: settled.cpu.saturating_sub(after.cpu),
    })
}

impl Measured {
    fn report(
        &self,
        (to, what): (&str, &str),
        n: usize,
        idle: &Idle,
        table: &mut Table,
        doc: &mut serde_json::Value,
    ) {
        let decided = Spread::of(&self.converged.decided);
        let applied = Spread::of(&self.converged.applied);
        let per = |d: Duration| d / n as u32;
        let net = |d: Duration, rate: f64| d.saturating_sub(self.window.mul_f64(rate)) / n as u32;
        if let (Some(decided), Some(applied)) = (decided, applied) {
            table.row(
                &format!("{what} -> every engine decided {to}, p50 / p99 / max"),
                decided.text(),
            );
            table.row(
                &format!("{what} -> Talkdesk {to}, p50 / p99 / max"),
                applied.text(),
            );
            doc[format!("{to}_decided")] = decided.json();
            doc[format!("{to}_applied")] = applied.json();
        }
        table.row(
            &format!("CPU until all {to}: process / agent / simulator / harness"),
            format!(
                "{} / {} / {} / {}",
                millis(self.cpu),
                millis(self.cpu_agent),
                millis(self.cpu_sim),
                millis(self.cpu_bench)
            ),
        );
        table.row(
            &format!("CPU per decision {to}: process / agent"),
            format!(
                "{} / {}",
                millis(per(self.cpu)),
                millis(per(self.cpu_agent))
            ),
        );
        table.row(
            &format!("CPU per decision {to}, net of idle: process / agent"),
            format!(
                "{} / {}",
                millis(net(self.cpu, idle.process)),
                millis(net(self.cpu_agent, idle.agent))
            ),
        );
        table.row(
            &format!("CPU in the {}s after all {to} (process)", SETTLE.as_secs()),
            millis(self.tail),
        );
        doc[format!("{to}_cpu_s")] = json!(self.cpu.as_secs_f64());
        doc[format!("{to}_cpu_agent_s")] = json!(self.cpu_agent.as_secs_f64());
        doc[format!("{to}_cpu_simulator_s")] = json!(self.cpu_sim.as_secs_f64());
        doc[format!("{to}_cpu_harness_s")] = json!(self.cpu_bench.as_secs_f64());
        doc[format!("{to}_cpu_per_decision_s")] = json!(per(self.cpu).as_secs_f64());
        doc[format!("{to}_cpu_agent_per_decision_s")] = json!(per(self.cpu_agent).as_secs_f64());
        doc[format!("{to}_cpu_net_per_decision_s")] =
            json!(net(self.cpu, idle.process).as_secs_f64());
        doc[format!("{to}_cpu_agent_net_per_decision_s")] =
            json!(net(self.cpu_agent, idle.agent).as_secs_f64());
        doc[format!("{to}_window_s")] = json!(self.window.as_secs_f64());
        doc[format!("{to}_cpu_tail_s")] = json!(self.tail.as_secs_f64());
    }
}

/// Each account got its own rule's profile: half forward, half a message.
fn check_profiles(talkdesk: &[AccountHandle]) -> Result<(), String> {
    for (i, a) in talkdesk.iter().enumerate() {
        let s = a.state().settings;
        let ok = match world::profile_of(i) {
            "backup" => s.default.as_deref() == Some("+14155558888") && s.message.is_none(),
            _ => s.default.is_none() && s.message.as_ref().is_some_and(|m| m.text.contains(a.id())),
        };
        if !ok {
            return Err(format!("account {} has the wrong settings: {s:?}", a.id()));
        }
    }
    Ok(())
}
