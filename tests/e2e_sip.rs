//! End to end with real parts: the agent binary, the Talkdesk simulator over
//! real HTTP, and sipp as the SIP trunk. A dead trunk switches the fallback
//! on (settings, then activation); its recovery switches it off after
//! `clear_for`; `kill -9` while the fallback is on causes no extra on/off.
//!
//! Timings (config below): interval 1s, fast_interval 500ms, timeout 1s,
//! rise 2, fall 3, for 2s, clear_for 3s, min_active 1s.

mod support;

use std::path::Path;
use std::time::Duration;

use continuity_agent::talkdesk::simulator::{self, JournalEntry, SimServer, Simulator};
use support::agent::AgentProcess;
use support::sipp::Sipp;
use tokio::time::Instant;

const INTERVAL: f64 = 1.0;
const FAST: f64 = 0.5;
const TIMEOUT: f64 = 1.0;
const FALL: f64 = 3.0;
const RISE: f64 = 2.0;
const FOR: f64 = 2.0;
const CLEAR_FOR: f64 = 3.0;
/// Scheduling, process start-up and a loaded CI machine: generous on purpose.
const MARGIN: f64 = 4.0;

fn config(sim: &str, target: &str, port: u16, dir: &Path) -> String {
    format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
{head}[profiles.backup]
forward = {{ "+14155550100" = "+14155559999" }}
default = "+14155558888"
message = {{ text = "We are experiencing technical difficulties.", language = "en-US" }}
[[probes]]
id = "trunk-a"
type = "sip"
target = "{target}"
interval = "{INTERVAL}s"
fast_interval = "{fast}ms"
timeout = "{TIMEOUT}s"
rise = {RISE}
fall = {FALL}
[[rules]]
name = "trunk-down"
profile = "backup"
for = "{FOR}s"
clear_for = "{CLEAR_FOR}s"
min_active = "1s"
when = {{ down = "trunk-a" }}
"#,
        head = support::store_and_talkdesk(dir, sim),
        fast = (FAST * 1000.0) as u64,
    )
}

struct World {
    sim: Simulator,
    _server: SimServer,
    dir: tempfile::TempDir,
    port: u16,
    cfg: std::path::PathBuf,
}

async fn world(target: &str) -> World {
    let sim = Simulator::default();
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, config(&server.base_url(), target, port, dir.path())).unwrap();
    World {
        sim,
        _server: server,
        dir,
        port,
        cfg,
    }
}

impl World {
    fn agent(&self) -> AgentProcess {
        AgentProcess::spawn(&self.cfg, self.port, &self.dir.path().join("agent.log"))
    }
    fn writes(&self) -> Vec<JournalEntry> {
        self.sim
            .journal()
            .into_iter()
            .filter(|e| e.is_write())
            .collect()
    }
}

async fn wait_for(
    what: &str,
    limit: Duration,
    agent: &AgentProcess,
    mut cond: impl FnMut() -> bool,
) -> Instant {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return Instant::now();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; agent log:\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_probe_up(agent: &AgentProcess) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while agent
        .metric("continuity_probe_up{probe=\"trunk-a\",type=\"sip\"}")
        .await
        != Some(1.0)
    {
        assert!(
            Instant::now() < deadline,
            "trunk-a never came up; log:\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_activation(e: &JournalEntry, on: bool) -> bool {
    e.op == "put_activation"
        && e.status == 200
        && e.body
            .as_deref()
            .is_some_and(|b| b.contains(if on { "true" } else { "false" }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_trunk_switches_the_fallback_on_and_recovery_switches_it_off() {
    let port = support::free_port();
    let sipp = Sipp::start_on("options-uas.xml", false, port).await;
    let w = world(&sipp.target()).await;
    let mut agent = w.agent();
    agent.wait_ready().await;
    wait_probe_up(&agent).await;
    support::several_reconciles().await;
    assert!(
        w.writes().is_empty(),
        "a healthy start writes nothing: {:?}",
        w.writes()
    );

    // The trunk dies.
    let died = Instant::now();
    sipp.kill();
    let on_at = wait_for("activation", Duration::from_secs(30), &agent, || {
        w.writes().iter().any(|e| is_activation(e, true))
    })
    .await;
    let took = on_at.duration_since(died).as_secs_f64();
    let bound = INTERVAL + TIMEOUT + (FALL - 1.0) * FAST + FOR + MARGIN;
    assert!(
        took <= bound,
        "activation took {took:.2}s, bound {bound:.2}s"
    );
    assert!(
        took >= FOR,
        "activation after {took:.2}s is earlier than `for` ({FOR}s)"
    );
    let writes = w.writes();
    let ops: Vec<&str> = writes.iter().map(|e| e.op.as_str()).collect();
    assert_eq!(
        ops,
        ["put_settings", "put_activation"],
        "settings first, then activation, once each"
    );
    assert!(w.sim.state().enabled);
    assert_eq!(
        w.sim.state().settings.default.as_deref(),
        Some("+14155558888")
    );

    // The trunk recovers on the same address.
    let _sipp = Sipp::start_on("options-uas.xml", false, port).await;
    let back = Instant::now();
    let off_at = wait_for("deactivation", Duration::from_secs(30), &agent, || {
        w.writes().iter().any(|e| is_activation(e, false))
    })
    .await;
    let took = off_at.duration_since(back).as_secs_f64();
    assert!(
        took >= CLEAR_FOR,
        "deactivated {took:.2}s after recovery, before clear_for ({CLEAR_FOR}s)"
    );
    let bound = CLEAR_FOR + INTERVAL + (RISE - 1.0) * FAST + MARGIN;
    assert!(
        took <= bound,
        "deactivation took {took:.2}s, bound {bound:.2}s"
    );
    let ops: Vec<String> = w.writes().iter().map(|e| e.op.clone()).collect();
    assert_eq!(
        ops,
        ["put_settings", "put_activation", "put_activation"],
        "deactivation leaves settings alone"
    );

    let status = agent.terminate();
    assert!(
        status.success(),
        "graceful shutdown exit: {status}; log:\n{}",
        agent.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_while_active_causes_no_extra_on_or_off() {
    let sipp = Sipp::start("options-uas.xml", false).await;
    let w = world(&sipp.target()).await;
    let mut agent = w.agent();
    agent.wait_ready().await;
    wait_probe_up(&agent).await;
    sipp.kill();
    wait_for("activation", Duration::from_secs(30), &agent, || {
        w.writes().iter().any(|e| is_activation(e, true))
    })
    .await;
    // Let the decision settle (snapshot written, actuator converged).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = w.writes().len();

    agent.kill9();
    let mut agent = w.agent();
    agent.wait_ready().await;
    agent
        .assert_restored_before_probes_decide("trunk-a", "trunk-down", FALL as u32)
        .await;
    // Several reconcile intervals and probe cycles with the trunk still dead.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = w.writes();
    assert_eq!(
        after.len(),
        before,
        "restart after kill -9 wrote to Talkdesk: {:?}",
        &after[before..]
    );
    assert!(w.sim.state().enabled, "the fallback is still on");
    assert_eq!(agent.metric("continuity_fallback_desired").await, Some(1.0));
    assert_eq!(agent.metric("continuity_fallback_actual").await, Some(1.0));
}
