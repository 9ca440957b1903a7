//! `continuity-agent demo`: zero set-up. Starts the embedded Talkdesk
//! simulator, a local SIP responder standing in for a trunk, and the agent
//! with `config/demo.toml` (embedded in the binary), then plays
//! healthy -> trunk dies -> fallback ON -> trunk recovers -> fallback OFF,
//! printing a timeline of probe states, decisions and Talkdesk API calls.
//! `demo --accounts` plays the same story for two Talkdesk accounts sharing
//! the trunk (`config/demo-accounts.toml`), each switching with its own
//! profile.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::config::{self, Config};
use crate::daemon::{self, Running};
use crate::probe::sip::responder::{Mode, Responder};
use crate::store::StoredEvent;
use crate::talkdesk::simulator::{self, SimAccount, Simulator, SimulatorOptions};
use crate::telemetry::AuditKind;

/// The demo's configuration, embedded so `demo` works from any directory.
pub const DEMO_TOML: &str = include_str!("../config/demo.toml");
/// The two-account demo's configuration.
pub const DEMO_ACCOUNTS_TOML: &str = include_str!("../config/demo-accounts.toml");

/// Which story the demo plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// One Talkdesk account (`config/demo.toml`).
    One,
    /// Two accounts sharing the trunk (`config/demo-accounts.toml`).
    TwoAccounts,
}

impl Variant {
    fn toml(self) -> (&'static str, &'static str) {
        match self {
            Variant::One => (DEMO_TOML, "config/demo.toml (embedded)"),
            Variant::TwoAccounts => (DEMO_ACCOUNTS_TOML, "config/demo-accounts.toml (embedded)"),
        }
    }

    /// The simulator: the documented demo credentials, or each account's.
    fn simulator(self) -> SimulatorOptions {
        match self {
            Variant::One => SimulatorOptions::default(),
            Variant::TwoAccounts => SimulatorOptions {
                accounts: vec![
                    SimAccount::new("acme", "acme-demo", "acme-demo-secret"),
                    SimAccount::new("globex", "globex-demo", "globex-demo-secret"),
                ],
                ..SimulatorOptions::default()
            },
        }
    }

    fn rules(self) -> &'static [&'static str] {
        match self {
            Variant::One => &[
                "rule 'trunk-down': fallback ON when trunk-a is down for 2s; OFF after 5s healthy (min 5s on)",
            ],
            Variant::TwoAccounts => &[
                "account acme, rule 'trunk-down': forward to the backup site when trunk-a is down for 2s",
                "account globex, rule 'trunk-down': play an announcement when trunk-a is down for 3s",
                "both: OFF after 5s healthy (min 5s on); each with its own Talkdesk credentials",
            ],
        }
    }
}
/// The whole demo must finish well within a minute.
const DEADLINE: Duration = Duration::from_secs(55);

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo set-up failed: {0}")]
    Setup(String),
    #[error("demo configuration is invalid: {0}")]
    Config(#[from] config::ConfigErrors),
    #[error("the demo did not reach {0} in time")]
    Timeout(&'static str),
    #[error("the agent failed: {0}")]
    Agent(String),
    #[error("cannot write the timeline: {0}")]
    Io(#[from] std::io::Error),
}

/// What the demo observed, for tests.
#[derive(Debug, Default)]
pub struct DemoSummary {
    pub activated_after: Option<Duration>,
    pub deactivated_after: Option<Duration>,
    pub writes: Vec<String>,
}

/// Plays the one-account story.
pub async fn run(out: &mut (dyn Write + Send)) -> Result<DemoSummary, DemoError> {
    run_variant(out, Variant::One).await
}

/// Plays `variant`'s story.
pub async fn run_variant(
    out: &mut (dyn Write + Send),
    variant: Variant,
) -> Result<DemoSummary, DemoError> {
    let start = Instant::now();
    let state_dir = tempfile::tempdir().map_err(|e| DemoError::Setup(e.to_string()))?;

    // The world: a Talkdesk simulator and a healthy trunk.
    let sim = Simulator::new(variant.simulator());
    let sim_server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().expect("valid addr"))
        .await
        .map_err(|e| DemoError::Setup(format!("simulator: {e}")))?;
    let trunk = Responder::bind(
        "127.0.0.1:0".parse().expect("valid addr"),
        Mode::Answer(200),
    )
    .await
    .map_err(|e| DemoError::Setup(format!("SIP responder: {e}")))?;
    let cfg = variant_config(
        variant,
        &sim_server.base_url(),
        trunk.udp_addr(),
        state_dir.path(),
    )?;

    writeln!(out, "continuity-agent demo")?;
    writeln!(out, "  Talkdesk simulator  {}", sim_server.base_url())?;
    writeln!(
        out,
        "  SIP trunk (local)   sip:{};transport=udp",
        trunk.udp_addr()
    )?;
    for rule in variant.rules() {
        writeln!(out, "  {rule}")?;
    }
    writeln!(out)?;

    let (running, stop_tx, agent) = start_agent(cfg).await?;

    let mut tl = Timeline {
        start,
        last_id: 0,
        running: running.clone(),
        several: variant == Variant::TwoAccounts,
    };
    let mut summary = DemoSummary::default();

    tl.phase(out, "healthy: the trunk answers OPTIONS with 200 OK")?;
    tl.until(out, start + DEADLINE, "trunk-a up", |s| {
        s.probe_up("trunk-a")
    })
    .await?;
    tl.wait(out, Duration::from_secs(2)).await?;

    tl.phase(out, "outage: the trunk stops answering")?;
    let outage = Instant::now();
    trunk.set_mode(Mode::Silent);
    let sim_ref = sim.clone();
    tl.until(
        out,
        start + DEADLINE,
        "the fallback switched on",
        move |_| sim_ref.accounts().iter().all(|a| a.state().enabled),
    )
    .await?;
    summary.activated_after = Some(outage.elapsed());
    tl.wait(out, Duration::from_secs(1)).await?;

    tl.phase(out, "recovery: the trunk answers again")?;
    let recovery = Instant::now();
    trunk.set_mode(Mode::Answer(200));
    let sim_ref = sim.clone();
    tl.until(
        out,
        start + DEADLINE,
        "the fallback switched off",
        move |_| sim_ref.accounts().iter().all(|a| !a.state().enabled),
    )
    .await?;
    summary.deactivated_after = Some(recovery.elapsed());
    tl.wait(out, Duration::from_millis(500)).await?;

    summary.writes = talkdesk_writes(&sim, variant);
    writeln!(out)?;
    writeln!(
        out,
        "fallback ON {:.1}s after the trunk died; OFF {:.1}s after it recovered; Talkdesk writes: {}",
        summary.activated_after.unwrap_or_default().as_secs_f64(),
        summary.deactivated_after.unwrap_or_default().as_secs_f64(),
        summary.writes.join(", ")
    )?;

    let _ = stop_tx.send(());
    match agent.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(DemoError::Agent(e.to_string())),
        Err(e) => return Err(DemoError::Agent(e.to_string())),
    }
    let _ = sim_server.stop().await;
    Ok(summary)
}

/// The agent on a free port, in-process: its handles, what stops it, its task.
async fn start_agent(
    cfg: Config,
) -> Result<
    (
        Running,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<(), daemon::DaemonError>>,
    ),
    DemoError,
> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| DemoError::Setup(e.to_string()))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let agent = tokio::spawn(daemon::run_with(
        cfg,
        listener,
        async move {
            let _ = stop_rx.await;
        },
        started_tx,
    ));
    let running: Running = started_rx
        .await
        .map_err(|_| DemoError::Agent("the agent did not start".into()))?;
    Ok((running, stop_tx, agent))
}

/// Every write the simulator received, in order per account (named when
/// there are several).
fn talkdesk_writes(sim: &Simulator, variant: Variant) -> Vec<String> {
    sim.accounts()
        .iter()
        .flat_map(|a| a.journal())
        .filter(|e| e.is_write())
        .map(|e| match variant {
            Variant::One => format!("{} {}", e.method, e.path),
            Variant::TwoAccounts => format!("{} {} {}", e.account, e.method, e.path),
        })
        .collect()
}

/// The embedded demo configuration, pointed at the local simulator and trunk.
pub fn demo_config(
    sim_base: &str,
    trunk: SocketAddr,
    state_dir: &std::path::Path,
) -> Result<Config, DemoError> {
    variant_config(Variant::One, sim_base, trunk, state_dir)
}

/// `variant`'s embedded configuration, pointed at the local simulator and trunk.
pub fn variant_config(
    variant: Variant,
    sim_base: &str,
    trunk: SocketAddr,
    state_dir: &std::path::Path,
) -> Result<Config, DemoError> {
    let (toml, origin) = variant.toml();
    let src = toml
        .replace("http://127.0.0.1:8099", sim_base)
        .replace(
            "sip:127.0.0.1:5060;transport=udp",
            &format!("sip:{trunk};transport=udp"),
        )
        .replace(
            "sqlite://state/demo.db",
            &format!("sqlite://{}", state_dir.join("demo.db").display()),
        );
    Ok(config::from_toml_str_strict(
        &src,
        origin,
        std::path::Path::new("."),
        false,
    )?)
}

struct Timeline {
    start: Instant,
    last_id: i64,
    running: Running,
    /// Lines name their account.
    several: bool,
}

impl Timeline {
    fn phase(&self, out: &mut (dyn Write + Send), text: &str) -> std::io::Result<()> {
        writeln!(
            out,
            "[{:>5.1}s] ==> {text}",
            self.start.elapsed().as_secs_f64()
        )
    }

    async fn drain(&mut self, out: &mut (dyn Write + Send)) -> std::io::Result<()> {
        // Every account's records, in the order they were written.
        let mut fresh: Vec<StoredEvent> = self
            .running
            .store
            .events_for(None, 200, None)
            .await
            .unwrap_or_default();
        fresh.retain(|e| e.id > self.last_id);
        fresh.reverse();
        for e in fresh {
            self.last_id = e.id;
            // Reconcile reads every few seconds would drown the story; failures still show.
            let routine_read = e.record.kind == AuditKind::Talkdesk
                && e.record.message.starts_with("GET")
                && e.record.message.contains("-> 200");
            if e.record.kind == AuditKind::Start || routine_read {
                continue;
            }
            let account = if self.several {
                format!("{:<7}", e.account)
            } else {
                String::new()
            };
            writeln!(
                out,
                "[{:>5.1}s]     {account}{:<9} {}",
                self.start.elapsed().as_secs_f64(),
                e.record.kind,
                e.record.message
            )?;
        }
        Ok(())
    }

    async fn wait(&mut self, out: &mut (dyn Write + Send), d: Duration) -> Result<(), DemoError> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(100)).await;
            self.drain(out).await?;
        }
        Ok(())
    }

    async fn until(
        &mut self,
        out: &mut (dyn Write + Send),
        deadline: Instant,
        what: &'static str,
        cond: impl Fn(&Running) -> bool,
    ) -> Result<(), DemoError> {
        loop {
            self.drain(out).await?;
            if cond(&self.running) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(DemoError::Timeout(what));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
