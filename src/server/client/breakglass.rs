//! Break-glass, agent first: `talkdesk activate|deactivate` set an override
//! through the running agent when it answers, so the agent and the human
//! agree (and the agent, not the human, writes Talkdesk); only when no agent
//! answers do they act on Talkdesk directly
//! ([`talkdesk::breakglass`](crate::talkdesk::breakglass)), and then say what
//! the agent will do with that change when it is back (`talkdesk.on_drift`).
//!
//! The agent is `--url` (or `CONTINUITY_AGENT_URL`), else the configuration's
//! `agent.listen`; the token is `--token` (or `CONTINUITY_AGENT_TOKEN`), else
//! the first configured API token with the `override` scope. An agent that
//! answers but refuses (wrong token, invalid request) is an error, not a
//! reason to go around it: two writers fighting is what this avoids.
//! `get` and `apply` (settings only) always act directly.

use std::io::Write;
use std::net::SocketAddr;

use secrecy::ExposeSecret as _;

use super::{ApiClient, ClientError, render};
use crate::config::Config;
use crate::config::schema::{OnDrift, Scope};
use crate::server::outcome::WAIT_MAX;
use crate::talkdesk::breakglass::{self as direct, BreakGlass};
use crate::talkdesk::client::Client;
use crate::talkdesk::error::TalkdeskError;

#[derive(Debug, thiserror::Error)]
pub enum BreakGlassError {
    #[error(
        "the running agent refused the override ({0}); fix the request or the token (--token, with the override scope), or stop the agent to act on Talkdesk directly"
    )]
    Agent(ClientError),
    #[error("{0}")]
    Talkdesk(#[from] TalkdeskError),
    #[error(
        "several profiles are configured ({0}): pass --profile to say which one the agent should switch on"
    )]
    WhichProfile(String),
    #[error("cannot write the answer: {0}")]
    Output(String),
}

impl BreakGlassError {
    /// The operator's mistake (exit 2) rather than a runtime failure.
    pub fn is_usage(&self) -> bool {
        match self {
            BreakGlassError::Agent(e) => e.is_usage(),
            BreakGlassError::Talkdesk(e) => matches!(e, TalkdeskError::UnknownProfile(_)),
            BreakGlassError::WhichProfile(_) => true,
            BreakGlassError::Output(_) => false,
        }
    }
}

/// Where the running agent is, and how to speak to it.
pub struct AgentTarget {
    /// `--url`, when given.
    pub url: Option<String>,
    /// `--token`, when given.
    pub token: Option<String>,
    /// `activate --profile`, when given.
    pub profile: Option<String>,
    /// `--account`: the agent's route for that account (`None`: its default).
    pub account: Option<String>,
}

/// Runs one break-glass command. `out` gets the result; `notes` what the
/// operator should know about the route taken. Returns whether Talkdesk
/// matches what was asked (an override that Talkdesk has not applied yet is
/// set, but not a success).
pub async fn run(
    cmd: BreakGlass,
    cfg: &Config,
    target: AgentTarget,
    client: &Client,
    out: &mut dyn Write,
    notes: &mut dyn Write,
) -> Result<bool, BreakGlassError> {
    let active = match &cmd {
        BreakGlass::Activate => true,
        BreakGlass::Deactivate => false,
        BreakGlass::Get | BreakGlass::Apply { .. } => {
            direct::run(cmd.clone(), client, &cfg.profiles, out).await?;
            if matches!(cmd, BreakGlass::Apply { .. }) {
                note(notes, &after_direct(cfg, None))?;
            }
            return Ok(true);
        }
    };
    let profile = if active {
        Some(profile_to_activate(cfg, target.profile.as_deref())?)
    } else {
        None
    };
    let Some(url) = target.url.clone().or_else(|| listen_url(cfg)) else {
        return go_direct(cmd, cfg, client, out, notes, None).await;
    };
    let token = target.token.clone().or_else(|| override_token(cfg));
    let agent = ApiClient::new(&url, token).for_account(target.account.clone());
    // As long as a change made directly would be adopted for, within what
    // the API accepts.
    let ttl = cfg
        .raw
        .talkdesk
        .drift_override_ttl
        .get()
        .min(cfg.raw.api.override_max_ttl.get());
    let ttl = format!("{}s", ttl.as_secs());
    let reason = format!(
        "break-glass: continuity-agent talkdesk {}",
        if active { "activate" } else { "deactivate" }
    );
    match agent
        .set_override(profile.as_deref(), &ttl, &reason, Some(WAIT_MAX))
        .await
    {
        Ok(ov) => {
            let mut text = format!("through the running agent at {url}: ");
            text.push_str(&render::override_set(&ov));
            let matches = match &ov.talkdesk {
                Some(t) => {
                    let (line, matches) = render::talkdesk_outcome(t);
                    text.push_str(&line);
                    matches
                }
                None => true,
            };
            text.push_str(
                "(`continuity-agent override clear` hands the decision back to the rules)\n",
            );
            write(out, &text)?;
            Ok(matches)
        }
        Err(ClientError::Unreachable { .. }) => {
            go_direct(cmd, cfg, client, out, notes, Some(&url)).await
        }
        Err(e) => Err(BreakGlassError::Agent(e)),
    }
}

/// No agent answered: act on Talkdesk directly, then say what the agent will
/// do with the change.
async fn go_direct(
    cmd: BreakGlass,
    cfg: &Config,
    client: &Client,
    out: &mut dyn Write,
    notes: &mut dyn Write,
    tried: Option<&str>,
) -> Result<bool, BreakGlassError> {
    direct::run(cmd, client, &cfg.profiles, out).await?;
    note(notes, &after_direct(cfg, tried))?;
    Ok(true)
}

/// What the agent will do with a change made directly (`talkdesk.on_drift`).
fn after_direct(cfg: &Config, tried: Option<&str>) -> String {
    let who = match tried {
        Some(url) => {
            format!("the agent at {url} did not answer, so Talkdesk was changed directly. ")
        }
        None => "Talkdesk was changed directly. ".to_string(),
    };
    let what = match cfg.raw.talkdesk.on_drift {
        OnDrift::Respect => format!(
            "A running agent (now, or when it starts again with its saved state) will adopt this change as an override for {} (talkdesk.on_drift = \"respect\", talkdesk.drift_override_ttl), then the rules decide again.",
            cfg.raw.talkdesk.drift_override_ttl
        ),
        OnDrift::Correct => "A running agent (now, or when it starts again with its saved state) will UNDO this change (talkdesk.on_drift = \"correct\"); set an override through the agent instead, or stop it.".to_string(),
    };
    format!("note: {who}{what}\n")
}

/// The profile an agent override switches on: `--profile`, or the only one.
fn profile_to_activate(cfg: &Config, given: Option<&str>) -> Result<String, BreakGlassError> {
    if let Some(p) = given {
        if !cfg.profiles.contains_key(p) {
            return Err(TalkdeskError::UnknownProfile(p.to_string()).into());
        }
        return Ok(p.to_string());
    }
    let mut names = cfg.profiles.keys();
    match (names.next(), names.next()) {
        (Some(only), None) => Ok(only.clone()),
        _ => Err(BreakGlassError::WhichProfile(
            cfg.profiles.keys().cloned().collect::<Vec<_>>().join(", "),
        )),
    }
}

/// `http://` + `agent.listen`, with an unspecified address (`0.0.0.0`, `::`)
/// replaced by loopback; `None` for port 0 (nothing to connect to).
fn listen_url(cfg: &Config) -> Option<String> {
    let addr: SocketAddr = cfg.raw.agent.listen.parse().ok()?;
    if addr.port() == 0 {
        return None;
    }
    let ip = match addr.ip() {
        ip if !ip.is_unspecified() => ip,
        std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
    };
    Some(format!("http://{}", SocketAddr::new(ip, addr.port())))
}

/// The first configured API token with the `override` scope.
fn override_token(cfg: &Config) -> Option<String> {
    cfg.raw
        .api
        .tokens
        .iter()
        .filter(|t| t.scopes.contains(&Scope::Override))
        .find_map(|t| t.token.as_ref())
        .map(|t| t.expose_secret().to_string())
}

fn note(notes: &mut dyn Write, text: &str) -> Result<(), BreakGlassError> {
    write(notes, text)
}

fn write(w: &mut dyn Write, text: &str) -> Result<(), BreakGlassError> {
    w.write_all(text.as_bytes())
        .and_then(|()| w.flush())
        .map_err(|e| BreakGlassError::Output(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, profiles: &[&str]) -> Config {
        let mut src = format!(
            r#"
[agent]
listen = "{listen}"
[talkdesk]
account = "acme"
client_id = "id"
client_secret = "secret"
[api]
tokens = [
  {{ name = "dash", token = "read-token-0123456789abcdef", scopes = ["read"] }},
  {{ name = "oncall", token = "override-token-0123456789ab", scopes = ["read", "override"] }},
]
"#
        );
        for p in profiles {
            src.push_str(&format!("[profiles.{p}]\ndefault = \"+14155558888\"\n"));
        }
        crate::config::from_toml_str(&src, "test").unwrap()
    }

    #[test]
    fn the_agent_is_found_from_the_configuration() {
        let table = [
            ("127.0.0.1:8080", Some("http://127.0.0.1:8080")),
            ("0.0.0.0:9000", Some("http://127.0.0.1:9000")),
            ("[::]:9000", Some("http://[::1]:9000")),
            ("127.0.0.1:0", None),
        ];
        for (listen, want) in table {
            let cfg = config(listen, &["backup"]);
            assert_eq!(listen_url(&cfg).as_deref(), want, "{listen}");
        }
        let cfg = config("127.0.0.1:8080", &["backup"]);
        assert_eq!(
            override_token(&cfg).as_deref(),
            Some("override-token-0123456789ab"),
            "the first token with the override scope, not the first token"
        );
    }

    #[test]
    fn activate_names_a_profile_only_when_it_is_unambiguous() {
        let one = config("127.0.0.1:8080", &["backup"]);
        assert_eq!(profile_to_activate(&one, None).unwrap(), "backup");
        let two = config("127.0.0.1:8080", &["backup", "other"]);
        let err = profile_to_activate(&two, None).unwrap_err();
        assert!(
            err.is_usage() && err.to_string().contains("--profile"),
            "{err}"
        );
        assert_eq!(profile_to_activate(&two, Some("other")).unwrap(), "other");
        let err = profile_to_activate(&two, Some("ghost")).unwrap_err();
        assert!(err.is_usage(), "{err}");
    }
}
