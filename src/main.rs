//! The `continuity-agent` command line. Only argument parsing and dispatch
//! live here; every command is implemented in the library.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 invalid config or usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use continuity_agent::config;
use continuity_agent::server::client::{self, render};
use continuity_agent::telemetry::logging::{self, LogFormat};

/// mimalloc instead of glibc's malloc: at 10,000 SIP probes glibc kept 75-95
/// MB of freed memory in its per-thread arenas (BENCHMARKS.md, "RSS at
/// 10,000"); mimalloc returns freed pages to the system, at once
/// (`allocator.rs`, set first thing in `main`). Built without transparent
/// huge pages (Cargo.toml): they cost 12 MiB of idle RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const EXIT_RUNTIME: u8 = 1;
const DEFAULT_LOG_LEVEL: &str = "info";
const EXIT_CONFIG: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "continuity-agent",
    version,
    about = "Keeps a contact center reachable: probes, decides with hysteresis, drives Talkdesk's Fallback Experience."
)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "CONTINUITY_AGENT_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Log level filter (`info`, `debug`, `continuity_agent=debug,warn`); RUST_LOG wins when set.
    #[arg(
        long,
        global = true,
        default_value = "info",
        env = "CONTINUITY_AGENT_LOG_LEVEL"
    )]
    log_level: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct ConfigArg {
    /// Configuration file. Global, so it is accepted after a nested
    /// subcommand too (`talkdesk get -c FILE`), as after `run -c FILE`.
    #[arg(short = 'c', long = "config", global = true, default_value = config::DEFAULT_PATH)]
    config: PathBuf,
}

#[derive(Args)]
struct ApiArgs {
    /// Base URL of the running agent's API.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8080",
        env = "CONTINUITY_AGENT_URL"
    )]
    url: String,
    /// API token (prefer the environment variable: command lines are visible to other users).
    #[arg(long, env = "CONTINUITY_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the raw JSON document instead of the summary (status, events).
    #[arg(long)]
    json: bool,
    /// The Talkdesk account to act on (an `[[accounts]]` id); without it,
    /// the agent's default account.
    #[arg(long, env = "CONTINUITY_AGENT_ACCOUNT")]
    account: Option<String>,
}

impl ApiArgs {
    fn client(self) -> client::ApiClient {
        client::ApiClient::new(&self.url, self.token).for_account(self.account)
    }
}

/// Never print the token (`Debug` is used in diagnostics).
impl std::fmt::Debug for ApiArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiArgs")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("json", &self.json)
            .field("account", &self.account)
            .finish()
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon.
    Run(ConfigArg),
    /// Validate the configuration: print a summary, or every error (exit 2).
    CheckConfig {
        #[command(flatten)]
        config: ConfigArg,
        /// Also fetch a Talkdesk token and read the settings and activation
        /// (read-only) to prove the credentials and paths work.
        #[arg(long)]
        online: bool,
    },
    /// Run rule scenario tests (promtool style).
    TestRules {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Zero set-up demo: simulator + simulated SIP trunk + agent; plays an outage and recovery.
    Demo {
        /// Two Talkdesk accounts sharing the trunk, each with its own profile.
        #[arg(long)]
        accounts: bool,
    },
    /// Print the running agent's status.
    Status(ApiArgs),
    /// Print the running agent's audit log (oldest first; `--json` for the raw page).
    Events {
        /// How far back: a duration (`1h`, `30m`) or an RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only these kinds, comma-separated (decision, talkdesk, override, alert, reload, ...).
        #[arg(long)]
        kind: Option<String>,
        /// At most this many records (1 to 1000), the newest.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Manual override through the running agent's API.
    Override {
        #[command(subcommand)]
        action: OverrideAction,
    },
    /// Break-glass: switch the fallback through the running agent, or, when
    /// no agent answers, on Talkdesk directly with the configured credentials.
    Talkdesk {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        agent: AgentArgs,
        #[command(subcommand)]
        action: TalkdeskAction,
    },
    /// Run the Talkdesk API simulator alone.
    SimulateTalkdesk {
        #[arg(long, default_value = "127.0.0.1:8099")]
        listen: String,
        /// Serve this account (repeatable), each with its own credentials and
        /// state; the first is the one `/_sim/...` acts on. Without it: one
        /// account with the demo credentials (`demo` / `demo-secret`).
        // A String, parsed in `simulate_talkdesk`: clap would echo a
        // malformed value, secret included.
        #[arg(long = "account", value_name = "ID:CLIENT_ID:CLIENT_SECRET")]
        accounts: Vec<String>,
    },
}

#[derive(Args, Debug)]
struct WaitArg {
    /// Answer as soon as the override is recorded, without waiting (up to
    /// 10 s) for Talkdesk to match; the exit code then says nothing about Talkdesk.
    #[arg(long)]
    no_wait: bool,
}

impl WaitArg {
    fn wait(&self) -> Option<std::time::Duration> {
        (!self.no_wait).then_some(continuity_agent::server::outcome::WAIT_MAX)
    }
}

#[derive(Subcommand, Debug)]
enum OverrideAction {
    /// Force the fallback on with a profile.
    On {
        #[arg(long)]
        profile: String,
        #[arg(long, default_value = "30m")]
        ttl: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        wait: WaitArg,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Force the fallback off.
    Off {
        #[arg(long, default_value = "30m")]
        ttl: String,
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        wait: WaitArg,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Release the flap latch (after checking the probes): back to the rules.
    ReleaseFlap {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Remove the override: back to automatic.
    Clear {
        #[arg(long)]
        reason: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// The running agent the break-glass commands try first.
#[derive(Args)]
struct AgentArgs {
    /// The running agent's API (default: from the config's `agent.listen`).
    #[arg(long, global = true, env = "CONTINUITY_AGENT_URL")]
    url: Option<String>,
    /// API token with the `override` scope (default: the config's first such token).
    #[arg(
        long,
        global = true,
        env = "CONTINUITY_AGENT_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// The Talkdesk account to act on (an `[[accounts]]` id); required when
    /// the configuration has several.
    #[arg(long, global = true, env = "CONTINUITY_AGENT_ACCOUNT")]
    account: Option<String>,
}

/// Never print the token (`Debug` is used in diagnostics).
impl std::fmt::Debug for AgentArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentArgs")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .finish()
    }
}

#[derive(Subcommand, Debug)]
enum TalkdeskAction {
    /// Show the current settings and activation (directly from Talkdesk).
    Get,
    /// Write a profile's settings (does not activate; directly to Talkdesk).
    Apply { profile: String },
    /// Switch the fallback on: an override through the running agent, else directly.
    Activate {
        /// The profile the agent's override switches on (needed when several are configured).
        #[arg(long)]
        profile: Option<String>,
    },
    /// Switch the fallback off: an override through the running agent, else directly.
    Deactivate,
}

fn main() -> ExitCode {
    continuity_agent::allocator::return_freed_memory();
    let cli = Cli::parse();
    // The demo prints its own timeline on stdout; logs would interleave with it,
    // so it only logs errors unless a level was asked for explicitly.
    let level = match cli.command {
        Command::Demo { .. } if cli.log_level == DEFAULT_LOG_LEVEL => "error",
        _ => cli.log_level.as_str(),
    };
    logging::init(cli.log_format, level);
    match cli.command {
        Command::CheckConfig { config, online } => check_config(&config.config, online),
        Command::Status(api) => block_on(status(api)),
        Command::Events {
            since,
            kind,
            limit,
            api,
        } => block_on(events(since, kind, limit, api)),
        Command::Override { action } => block_on(override_cmd(action)),
        Command::Talkdesk {
            config,
            agent,
            action,
        } => block_on(talkdesk(&config.config, agent, action)),
        Command::SimulateTalkdesk { listen, accounts } => {
            block_on(simulate_talkdesk(listen, accounts))
        }
        Command::Run(c) => run(&c.config),
        Command::Demo { accounts } => block_on(demo(accounts)),
        Command::TestRules { files } => test_rules(&files),
    }
}

fn run(path: &std::path::Path) -> ExitCode {
    let cfg = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    for w in &cfg.warnings {
        tracing::warn!(message = "Configuration warning.", warning = %w);
    }
    block_on(async move {
        let listen = cfg.raw.agent.listen.clone();
        let listener = match tokio::net::TcpListener::bind(&listen).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("continuity-agent: cannot listen on {listen}: {e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        match continuity_agent::daemon::run(cfg, listener, shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(message = "The agent failed.", error = %e);
                eprintln!("continuity-agent: {e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    })
}

async fn demo(accounts: bool) -> ExitCode {
    use continuity_agent::demo::{self, Variant};
    let mut out = std::io::stdout();
    let variant = if accounts {
        Variant::TwoAccounts
    } else {
        Variant::One
    };
    match demo::run_variant(&mut out, variant).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("continuity-agent: demo failed: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

fn test_rules(files: &[PathBuf]) -> ExitCode {
    let mut out = std::io::stdout();
    match continuity_agent::ruletest::run_files(files, &mut out) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_RUNTIME),
        Err(e) => {
            eprintln!("continuity-agent: {e}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Runs an async command on a fresh multi-threaded runtime.
fn block_on(f: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(f),
        Err(e) => {
            eprintln!("continuity-agent: cannot start the async runtime: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

async fn status(api: ApiArgs) -> ExitCode {
    let json = api.json;
    let c = api.client();
    let text = if json {
        c.status_document().await.map(|d| render::status_json(&d))
    } else {
        c.status().await.map(|s| render::status(&s))
    };
    print_answer(text)
}

async fn events(
    since: Option<String>,
    kind: Option<String>,
    limit: usize,
    api: ApiArgs,
) -> ExitCode {
    let json = api.json;
    let page = api
        .client()
        .events(since.as_deref(), kind.as_deref(), limit)
        .await;
    let text = page.map(|p| {
        if json {
            serde_json::to_string_pretty(&p).unwrap_or_default() + "\n"
        } else {
            render::events(&p)
        }
    });
    print_answer(text)
}

async fn override_cmd(action: OverrideAction) -> ExitCode {
    let text = match action {
        OverrideAction::On {
            profile,
            ttl,
            reason,
            wait,
            api,
        } => {
            let answer = api
                .client()
                .set_override(Some(&profile), &ttl, &reason, wait.wait())
                .await;
            return override_answer(answer, wait.no_wait);
        }
        OverrideAction::Off {
            ttl,
            reason,
            wait,
            api,
        } => {
            let answer = api
                .client()
                .set_override(None, &ttl, &reason, wait.wait())
                .await;
            return override_answer(answer, wait.no_wait);
        }
        OverrideAction::ReleaseFlap { api } => api
            .client()
            .release_flap()
            .await
            .map(|r| render::released(r).to_string()),
        OverrideAction::Clear { reason, api } => api
            .client()
            .clear_override(reason.as_deref())
            .await
            .map(|c| render::cleared(c).to_string()),
    };
    print_answer(text)
}

/// Prints an override's answer and, unless `--no-wait`, what Talkdesk did:
/// exit 1 when Talkdesk does not match (the override is set either way).
fn override_answer(
    answer: Result<continuity_agent::server::wire::OverrideResponse, client::ClientError>,
    no_wait: bool,
) -> ExitCode {
    let ov = match answer {
        Ok(ov) => ov,
        Err(e) => return print_answer(Err(e)),
    };
    print!("{}", render::override_set(&ov));
    match (&ov.talkdesk, no_wait) {
        (Some(t), false) => {
            let (line, matches) = render::talkdesk_outcome(t);
            print!("{line}");
            if matches {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_RUNTIME)
            }
        }
        _ => ExitCode::SUCCESS,
    }
}

/// Prints a client command's answer, or its error with the matching exit code.
fn print_answer(text: Result<String, client::ClientError>) -> ExitCode {
    match text {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("continuity-agent: {e}");
            ExitCode::from(if e.is_usage() {
                EXIT_CONFIG
            } else {
                EXIT_RUNTIME
            })
        }
    }
}

fn check_config(path: &std::path::Path, online: bool) -> ExitCode {
    let cfg = match config::load(path) {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    print!("{}", cfg.summary());
    if online {
        return block_on(check_online(cfg));
    }
    ExitCode::SUCCESS
}

/// `check-config --online`: the read-only Talkdesk check, for every account.
async fn check_online(cfg: config::Config) -> ExitCode {
    let ids = cfg.account_ids();
    let mut worst = ExitCode::SUCCESS;
    for id in &ids {
        let Some(view) = cfg.for_account(id) else {
            continue;
        };
        if ids.len() > 1 {
            println!("account {id}:");
        }
        let code = check_account_online(view).await;
        if code != ExitCode::SUCCESS {
            worst = code;
        }
    }
    worst
}

/// One account's read-only Talkdesk check.
async fn check_account_online(cfg: config::Config) -> ExitCode {
    use continuity_agent::talkdesk::client::Client;
    use continuity_agent::telemetry::{Metrics, audit::NoAudit};
    let td = &cfg.raw.talkdesk;
    let client = match Client::from_config(
        td,
        &cfg.instance_id(),
        // A command of its own: these series are never exported.
        Metrics::new().account(config::DEFAULT_ACCOUNT),
        std::sync::Arc::new(NoAudit),
    ) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("continuity-agent: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match continuity_agent::talkdesk::online::check(&client, td).await {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("continuity-agent: {e}");
            ExitCode::from(if e.is_config() {
                EXIT_CONFIG
            } else {
                EXIT_RUNTIME
            })
        }
    }
}

async fn talkdesk(path: &std::path::Path, agent: AgentArgs, action: TalkdeskAction) -> ExitCode {
    use continuity_agent::server::client::breakglass::{self, AgentTarget};
    use continuity_agent::talkdesk::breakglass::BreakGlass;
    use continuity_agent::talkdesk::client::Client;
    use continuity_agent::telemetry::{Metrics, audit::NoAudit};

    let cfg = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let cfg = match cfg.account_view(agent.account.as_deref()) {
        Ok(view) => view,
        Err(why) => {
            eprintln!("continuity-agent: {why} with --account ID");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let client = Client::from_config(
        &cfg.raw.talkdesk,
        &cfg.instance_id(),
        // A command of its own: these series are never exported.
        Metrics::new().account(config::DEFAULT_ACCOUNT),
        std::sync::Arc::new(NoAudit),
    );
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            eprintln!("continuity-agent: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut profile = None;
    let cmd = match action {
        TalkdeskAction::Get => BreakGlass::Get,
        TalkdeskAction::Apply { profile } => BreakGlass::Apply { profile },
        TalkdeskAction::Activate { profile: p } => {
            profile = p;
            BreakGlass::Activate
        }
        TalkdeskAction::Deactivate => BreakGlass::Deactivate,
    };
    if cfg.raw.agent.dry_run && cmd != BreakGlass::Get {
        eprintln!(
            "continuity-agent: note: agent.dry_run does not apply to break-glass commands; this changes Talkdesk"
        );
    }
    let target = AgentTarget {
        url: agent.url,
        token: agent.token,
        profile,
        account: agent.account,
    };
    let (mut out, mut notes) = (std::io::stdout(), std::io::stderr());
    match breakglass::run(cmd, &cfg, target, &client, &mut out, &mut notes).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_RUNTIME),
        Err(e) => {
            eprintln!("continuity-agent: {e}");
            ExitCode::from(if e.is_usage() {
                EXIT_CONFIG
            } else {
                EXIT_RUNTIME
            })
        }
    }
}

async fn simulate_talkdesk(listen: String, accounts: Vec<String>) -> ExitCode {
    use continuity_agent::talkdesk::simulator::{self, SimAccount, Simulator, SimulatorOptions};
    let accounts = accounts
        .iter()
        .map(|a| a.parse::<SimAccount>())
        .collect::<Result<Vec<_>, _>>();
    let sim = match accounts.and_then(|a| Simulator::try_new(SimulatorOptions::with_accounts(a))) {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("continuity-agent: --account: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("continuity-agent: cannot listen on {listen}: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    match listener.local_addr() {
        Ok(addr) => print!("{}", simulator::banner(addr, sim.options())),
        Err(e) => eprintln!("continuity-agent: cannot read the listening address: {e}"),
    }
    match simulator::run(listener, sim, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("continuity-agent: simulator failed: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
