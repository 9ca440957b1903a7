//! Everything the benchmark runs, in one process: the Talkdesk simulator
//! serving every account and the trunk (the in-process SIP responder) on
//! one runtime (`sim-*` threads), the agent (`daemon::run_with`, SQLite in a
//! temporary directory) on another (`agent-*` threads), so `usage.rs` can
//! tell their CPU time apart.

use std::net::SocketAddr;
use std::time::Duration;

use continuity_agent::config::{self, Config};
use continuity_agent::daemon::{self, Running};
use continuity_agent::probe::sip::{Mode, Responder};
use continuity_agent::talkdesk::simulator::{self, SimAccount, SimServer, Simulator};
use continuity_agent::talkdesk::simulator::{AccountHandle, SimulatorOptions};
use continuity_agent::telemetry::AccountMetrics;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;

/// The probe every account's rule watches.
pub const TRUNK: &str = "trunk";

/// A runtime as `continuity-agent run` builds it (tokio's defaults), whose
/// threads, blocking ones included, are named `prefix-N`.
pub fn runtime(prefix: &'static str, workers: Option<usize>) -> Runtime {
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        b.worker_threads(n);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    b.enable_all()
        .thread_name_fn(move || {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{prefix}-{n}")
        })
        .build()
        .expect("a tokio runtime")
}

pub fn account_id(i: usize) -> String {
    format!("acct-{i:04}")
}

/// Which of the two profiles account `i`'s rule selects: half the accounts
/// forward calls, half play a message, so both kinds of settings are written.
pub fn profile_of(i: usize) -> &'static str {
    if i.is_multiple_of(2) {
        "backup"
    } else {
        "closed"
    }
}

/// The simulator, the trunk and what the agent needs to reach them.
pub struct Outside {
    pub sim: Simulator,
    server: SimServer,
    trunk: Option<Responder>,
    trunk_addr: SocketAddr,
}

impl Outside {
    /// Serves `n` accounts and a trunk that answers 200. Call inside the
    /// simulator's runtime: their tasks run where they are spawned.
    pub async fn start(n: usize) -> Outside {
        let accounts = (0..n)
            .map(|i| {
                let id = account_id(i);
                SimAccount::new(
                    &id,
                    format!("{id}-client"),
                    format!("{id}-secret-0123456789"),
                )
            })
            .collect();
        let sim = Simulator::new(SimulatorOptions::with_accounts(accounts));
        let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().expect("address"))
            .await
            .expect("simulator listens");
        let trunk = Responder::bind("127.0.0.1:0".parse().expect("address"), Mode::Answer(200))
            .await
            .expect("trunk listens");
        Outside {
            sim,
            trunk_addr: trunk.udp_addr(),
            server,
            trunk: Some(trunk),
        }
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub fn trunk_addr(&self) -> SocketAddr {
        self.trunk_addr
    }

    /// The trunk's process dies: its port closes, so probes fail at once
    /// (ICMP port unreachable), as with a carrier's SBC that went away.
    pub fn kill_trunk(&mut self) {
        if let Some(t) = self.trunk.take() {
            t.stop();
        }
    }

    /// The trunk comes back on the same address (retrying while the old
    /// socket is still closing).
    pub async fn revive_trunk(&mut self) {
        for _ in 0..100 {
            if let Ok(t) = Responder::bind(self.trunk_addr, Mode::Answer(200)).await {
                self.trunk = Some(t);
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the trunk could not listen on {} again", self.trunk_addr);
    }

    pub fn handles(&self, n: usize) -> Vec<AccountHandle> {
        (0..n)
            .map(|i| self.sim.account(&account_id(i)).expect("served account"))
            .collect()
    }
}

/// What the generated configuration leaves open.
pub struct Setup {
    /// `talkdesk.reconcile_interval` of every account (the background reads).
    pub reconcile: String,
    /// `store.url`; `None`: SQLite in the temporary directory.
    pub store: Option<String>,
}

/// `n` accounts, each with two profiles and one rule on the shared trunk.
/// The probe and rule timings are those of `tests/accounts.rs`, so the
/// figures compare with the single-account end-to-end ones in BENCHMARKS.md;
/// `min_active` is short (as in `tests/e2e_sip.rs`, default 5m) so the
/// fallback can go off again within the run.
pub fn config(n: usize, sim: &str, trunk: SocketAddr, dir: &std::path::Path, t: &Setup) -> Config {
    let store = match &t.store {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", dir.join("state.db").display()),
    };
    let mut src = format!(
        r#"
[store]
url = "{store}"
[[probes]]
id = "{TRUNK}"
type = "sip"
target = "sip:{trunk}"
interval = "1s"
fast_interval = "500ms"
timeout = "1s"
rise = 2
fall = 2
"#
    );
    for i in 0..n {
        let id = account_id(i);
        src.push_str(&format!(
            r#"
[[accounts]]
id = "{id}"
[accounts.talkdesk]
account = "{id}"
api_base = "{sim}/accounts/{id}"
token_url = "{sim}/accounts/{id}/oauth/token"
client_id = "{id}-client"
client_secret = "{id}-secret-0123456789"
reconcile_interval = "{reconcile}"
request_timeout = "5s"
[accounts.profiles.backup]
forward = {{ "+14155550100" = "+14155559999" }}
default = "+14155558888"
[accounts.profiles.closed]
message = {{ text = "{id} is closed today.", language = "en-US" }}
[[accounts.rules]]
name = "trunk-down"
profile = "{profile}"
for = "1s"
clear_for = "2s"
min_active = "1s"
when = {{ down = "{TRUNK}" }}
"#,
            reconcile = t.reconcile,
            profile = profile_of(i),
        ));
    }
    config::from_toml_str_strict(&src, "bench-accounts.toml", dir, false)
        .unwrap_or_else(|e| panic!("generated configuration is invalid: {e}"))
}

/// The agent running on the current runtime.
pub struct Agent {
    pub base: String,
    pub running: Running,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
}

impl Agent {
    /// Starts the agent and waits until it serves (not until it is ready).
    pub async fn start(cfg: Config) -> Agent {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("agent listens");
        let (stop, stop_rx) = oneshot::channel::<()>();
        let (started_tx, started_rx) = oneshot::channel();
        let task = tokio::spawn(daemon::run_with(
            cfg,
            listener,
            async move {
                let _ = stop_rx.await;
            },
            started_tx,
        ));
        let running = started_rx.await.expect("agent started");
        Agent {
            base: format!("http://{}", running.addr),
            running,
            stop: Some(stop),
            task,
        }
    }

    /// Each account's series, in configuration order.
    pub fn metrics(&self) -> Vec<AccountMetrics> {
        self.running
            .accounts
            .iter()
            .map(|a| self.running.metrics.account(&a.id))
            .collect()
    }

    /// `GET /readyz` answers 200: every account restored its state and started.
    pub async fn ready(&self, http: &reqwest::Client) -> bool {
        http.get(format!("{}/readyz", self.base))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// Graceful shutdown; panics if the agent failed.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
            .await
            .expect("agent task")
            .expect("agent exited cleanly");
    }
}
