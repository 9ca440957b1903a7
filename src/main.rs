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
    /// Configuration file.
    #[arg(short = 'c', long = "config", default_value = config::DEFAULT_PATH)]
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
    /// Print the raw JSON document instead of the summary (status only).
    #[arg(long)]
    json: bool,
}

impl ApiArgs {
    fn client(self) -> client::ApiClient {
        client::ApiClient::new(&self.url, self.token)
    }
}

/// Never print the token (`Debug` is used in diagnostics).
impl std::fmt::Debug for ApiArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiArgs")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
            .field("json", &self.json)
            .finish()
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon.
    Run(ConfigArg),
    /// Validate the configuration: print a summary, or every error (exit 2).
    CheckConfig(ConfigArg),
    /// Run rule scenario tests (promtool style).
    TestRules {
        /// Scenario files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Zero set-up demo: simulator + simulated SIP trunk + agent; plays an outage and recovery.
    Demo,
    /// Print the running agent's status.
    Status(ApiArgs),
    /// Manual override through the running agent's API.
    Override {
        #[command(subcommand)]
        action: OverrideAction,
    },
    /// Break-glass: act on Talkdesk directly with the configured credentials.
    Talkdesk {
        #[command(flatten)]
        config: ConfigArg,
        #[command(subcommand)]
        action: TalkdeskAction,
    },
    /// Run the Talkdesk API simulator alone.
    SimulateTalkdesk {
        #[arg(long, default_value = "127.0.0.1:8099")]
        listen: String,
    },
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
        api: ApiArgs,
    },
    /// Force the fallback off.
    Off {
        #[arg(long, default_value = "30m")]
        ttl: String,
        #[arg(long)]
        reason: String,
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

#[derive(Subcommand, Debug)]
enum TalkdeskAction {
    /// Show the current settings and activation.
    Get,
    /// Write a profile's settings (does not activate).
    Apply { profile: String },
    /// Switch the fallback on.
    Activate,
    /// Switch the fallback off.
    Deactivate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints its own timeline on stdout; logs would interleave with it,
    // so it only logs errors unless a level was asked for explicitly.
    let level = match cli.command {
        Command::Demo if cli.log_level == DEFAULT_LOG_LEVEL => "error",
        _ => cli.log_level.as_str(),
    };
    logging::init(cli.log_format, level);
    match cli.command {
        Command::CheckConfig(c) => check_config(&c.config),
        Command::Status(api) => block_on(status(api)),
        Command::Override { action } => block_on(override_cmd(action)),
        Command::Talkdesk { config, action } => block_on(talkdesk(&config.config, action)),
        Command::SimulateTalkdesk { listen } => block_on(simulate_talkdesk(listen)),
        Command::Run(c) => run(&c.config),
        Command::Demo => block_on(demo()),
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

async fn demo() -> ExitCode {
    let mut out = std::io::stdout();
    match continuity_agent::demo::run(&mut out).await {
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

async fn override_cmd(action: OverrideAction) -> ExitCode {
    let text = match action {
        OverrideAction::On {
            profile,
            ttl,
            reason,
            api,
        } => api
            .client()
            .set_override(Some(&profile), &ttl, &reason)
            .await
            .map(|o| render::override_set(&o)),
        OverrideAction::Off { ttl, reason, api } => api
            .client()
            .set_override(None, &ttl, &reason)
            .await
            .map(|o| render::override_set(&o)),
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

fn check_config(path: &std::path::Path) -> ExitCode {
    match config::load(path) {
        Ok(cfg) => {
            print!("{}", cfg.summary());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprint!("{errors}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

async fn talkdesk(path: &std::path::Path, action: TalkdeskAction) -> ExitCode {
    use continuity_agent::talkdesk::breakglass::{self, BreakGlass};
    use continuity_agent::talkdesk::client::Client;
    use continuity_agent::telemetry::{Metrics, audit::NoAudit};

    let cfg = match config::load(path) {
        Ok(c) => c,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let client = Client::from_config(
        &cfg.raw.talkdesk,
        &cfg.instance_id(),
        Metrics::new(),
        std::sync::Arc::new(NoAudit),
    );
    let client = match client {
        Ok(c) => c,
        Err(e) => {
            eprintln!("continuity-agent: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let cmd = match action {
        TalkdeskAction::Get => BreakGlass::Get,
        TalkdeskAction::Apply { profile } => BreakGlass::Apply { profile },
        TalkdeskAction::Activate => BreakGlass::Activate,
        TalkdeskAction::Deactivate => BreakGlass::Deactivate,
    };
    if cfg.raw.agent.dry_run && cmd != BreakGlass::Get {
        eprintln!(
            "continuity-agent: note: agent.dry_run does not apply to break-glass commands; this changes Talkdesk"
        );
    }
    let mut out = std::io::stdout();
    match breakglass::run(cmd, &client, &cfg.profiles, &mut out).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("continuity-agent: {e}");
            let usage = matches!(
                e,
                continuity_agent::talkdesk::error::TalkdeskError::UnknownProfile(_)
            );
            ExitCode::from(if usage { EXIT_CONFIG } else { EXIT_RUNTIME })
        }
    }
}

async fn simulate_talkdesk(listen: String) -> ExitCode {
    use continuity_agent::talkdesk::simulator::{self, Simulator};
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("continuity-agent: cannot listen on {listen}: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    let sim = Simulator::default();
    let opts = sim.options();
    println!(
        "Talkdesk API simulator on http://{} (client id {:?}, token URL /oauth/token, control routes /_sim/*)",
        listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or(listen.clone()),
        opts.client_id
    );
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
