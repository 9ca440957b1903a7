//! The `continuity-agent` command line. Only argument parsing and dispatch
//! live here; every command is implemented in the library.
//!
//! Exit codes: 0 ok, 1 runtime failure, 2 invalid config or usage.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use continuity_agent::config;
use continuity_agent::telemetry::logging::{self, LogFormat};

const EXIT_RUNTIME: u8 = 1;
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
}

/// Never print the token (`Debug` is used in diagnostics).
impl std::fmt::Debug for ApiArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiArgs")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "[REDACTED]"))
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
    logging::init(cli.log_format, &cli.log_level);
    match cli.command {
        Command::CheckConfig(c) => check_config(&c.config),
        other => not_yet(&other),
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

fn not_yet(cmd: &Command) -> ExitCode {
    let name = format!("{cmd:?}");
    let name = name.split(['(', ' ', '{']).next().unwrap_or("this command");
    eprintln!("continuity-agent: `{name}` is not available yet in this build");
    ExitCode::from(EXIT_RUNTIME)
}
