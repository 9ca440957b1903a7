//! `check-config --online`: prove that the `[talkdesk]` section works before
//! an outage needs it. Fetches a token and reads the settings and the
//! activation (read-only: nothing is written), and says which key to check
//! when something fails.

use super::client::Client;
use super::error::TalkdeskError;
use crate::config::schema::TalkdeskConfig;

/// What the online check found: the text to print, or the failure.
#[derive(Debug, thiserror::Error)]
#[error("talkdesk: {error}; check {check}")]
pub struct OnlineError {
    pub error: TalkdeskError,
    /// The configuration keys to look at.
    pub check: &'static str,
}

impl OnlineError {
    /// The configuration is wrong (exit 2), rather than Talkdesk unavailable
    /// right now (exit 1).
    pub fn is_config(&self) -> bool {
        self.error.rejects_credentials()
            || matches!(self.error.status(), Some(400 | 401 | 403 | 404 | 405))
    }
}

/// Runs the read-only check; on success, the lines to print.
pub async fn check(client: &Client, cfg: &TalkdeskConfig) -> Result<String, OnlineError> {
    client.get_settings().await.map_err(|error| {
        let check = keys(&error, "talkdesk.settings_path (and api_base)");
        OnlineError { error, check }
    })?;
    let enabled = client.get_activation().await.map_err(|error| {
        let check = keys(&error, "talkdesk.activation_path (and api_base)");
        OnlineError { error, check }
    })?;
    Ok(format!(
        "online: token OK; settings readable at {}; activation readable at {}: fallback {} (nothing written)\n",
        cfg.settings_path,
        cfg.activation_path,
        if enabled { "on" } else { "off" },
    ))
}

/// Which keys explain `error` (a call to a path described by `path_keys`).
fn keys(error: &TalkdeskError, path_keys: &'static str) -> &'static str {
    match error {
        TalkdeskError::Token { .. } if error.rejects_credentials() => {
            "talkdesk.client_id and talkdesk.client_secret (or client_secret_file)"
        }
        TalkdeskError::Token { .. } => {
            "talkdesk.token_url (or region and account) and talkdesk.scopes"
        }
        TalkdeskError::Api { status: 403, .. } => {
            "talkdesk.scopes and the OAuth app's granted scopes"
        }
        TalkdeskError::Api {
            status: 404 | 405, ..
        } => path_keys,
        TalkdeskError::Connection { .. } | TalkdeskError::Timeout { .. } => {
            "talkdesk.api_base / token_url (or region and account), and the network"
        }
        _ => path_keys,
    }
}
