//! Break-glass: `continuity-agent talkdesk get|apply PROFILE|activate|deactivate`.
//!
//! For the moment the Talkdesk UI or the agent itself is unavailable: act on
//! Talkdesk directly with the configured credentials and print what changed
//! (`before -> after`). Same rules as the actuator: read first, write only
//! what differs, and if the read fails, write anyway (every write is a set).
//! Transient failures are retried a few times so one 503 during an outage
//! does not need a second command.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use super::client::Client;
use super::error::{Op, TalkdeskError};
use crate::backoff::backoff_delay;
use crate::domain::{FallbackSettings, Profile};

/// Attempts per call before reporting the error.
pub const ATTEMPTS: u32 = 3;
const BACKOFF_MIN: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(4);

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreakGlass {
    /// Print activation and settings.
    Get,
    /// Write a profile's settings (does not activate).
    Apply { profile: String },
    /// Turn the fallback on (with whatever settings Talkdesk has).
    Activate,
    /// Turn the fallback off (settings stay).
    Deactivate,
}

/// Run one break-glass command and print the outcome to `out`.
pub async fn run(
    cmd: BreakGlass,
    client: &Client,
    profiles: &BTreeMap<String, Profile>,
    out: &mut dyn Write,
) -> Result<(), TalkdeskError> {
    match cmd {
        BreakGlass::Get => {
            let enabled = retry(|| client.get_activation()).await?;
            let settings = retry(|| client.get_settings()).await?;
            let mut s = format!(
                "fallback: {}\n",
                if enabled { "enabled" } else { "disabled" }
            );
            s.push_str(&describe(&settings));
            if let Some(p) = profiles.values().find(|p| p.settings == settings) {
                let _ = writeln!(s, "settings match profile: {}", p.name);
            }
            print(out, &s)
        }
        BreakGlass::Apply { profile } => {
            let p = profiles
                .get(&profile)
                .ok_or_else(|| TalkdeskError::UnknownProfile(profile.clone()))?;
            let before = match retry(|| client.get_settings()).await {
                Ok(s) => Some(s),
                Err(e) => {
                    print(
                        out,
                        &format!("warning: cannot read current settings ({e}); writing anyway\n"),
                    )?;
                    None
                }
            };
            if before.as_ref() == Some(&p.settings) {
                return print(
                    out,
                    &format!("settings already match profile {profile}; nothing written\n"),
                );
            }
            retry(|| client.put_settings(&p.settings)).await?;
            let before = before.map_or_else(|| "  (unknown)\n".to_string(), |b| describe(&b));
            print(
                out,
                &format!(
                    "settings changed to profile {profile}\nbefore:\n{before}after:\n{}",
                    describe(&p.settings)
                ),
            )
        }
        BreakGlass::Activate => set(client, out, true).await,
        BreakGlass::Deactivate => set(client, out, false).await,
    }
}

async fn set(client: &Client, out: &mut dyn Write, enabled: bool) -> Result<(), TalkdeskError> {
    let word = |e: bool| if e { "enabled" } else { "disabled" };
    let before = match retry(|| client.get_activation()).await {
        Ok(b) => Some(b),
        Err(e) => {
            print(
                out,
                &format!("warning: cannot read activation ({e}); writing anyway\n"),
            )?;
            None
        }
    };
    if before == Some(enabled) {
        return print(
            out,
            &format!("fallback already {}; nothing written\n", word(enabled)),
        );
    }
    // Honest: a 200 whose body says the old state is a failure (retried).
    retry(|| async {
        match client.set_activation(enabled).await? {
            Some(stored) if stored != enabled => Err(TalkdeskError::Mismatch {
                op: Op::PutActivation,
                status: 200,
                sent: format!("enabled={enabled}"),
                stored: format!("enabled={stored}"),
            }),
            _ => Ok(()),
        }
    })
    .await?;
    print(
        out,
        &format!(
            "fallback: {} -> {}\n",
            before.map_or("unknown", word),
            word(enabled)
        ),
    )
}

/// Settings as indented lines, for humans.
pub fn describe(s: &FallbackSettings) -> String {
    let mut out = String::new();
    if s.forward.is_empty() {
        out.push_str("  forward: (none)\n");
    }
    for (from, to) in &s.forward {
        let _ = writeln!(out, "  forward {from} -> {to}");
    }
    let _ = writeln!(
        out,
        "  default: {}",
        s.default.as_deref().unwrap_or("(none)")
    );
    match &s.message {
        Some(m) => {
            let _ = writeln!(out, "  message ({}): {}", m.language, m.text);
        }
        None => out.push_str("  message: (none)\n"),
    }
    out
}

fn print(out: &mut dyn Write, s: &str) -> Result<(), TalkdeskError> {
    out.write_all(s.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| TalkdeskError::Output(e.to_string()))
}

async fn retry<T, F, Fut>(mut call: F) -> Result<T, TalkdeskError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, TalkdeskError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                let delay = backoff_delay(BACKOFF_MIN, BACKOFF_MAX, attempt, e.retry_after())
                    .min(BACKOFF_MAX.max(Duration::from_secs(1)));
                tracing::warn!(error = %e, attempt, retry_in = %crate::telemetry::logging::duration(delay), "Talkdesk call failed; retrying.");
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
        }
    }
}
