//! What a simulator serves: its accounts (each with its own client
//! credentials), the scopes a client may be granted and how long tokens live.
//!
//! One deployment of the agent may drive several Talkdesk accounts (issue
//! 16), so one simulator serves several: each account has its own client id
//! and its own memory. Without `accounts` it serves exactly one, as it always
//! did, under the daemon's default account id.

use std::str::FromStr;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::config::DEFAULT_ACCOUNT;

use super::{
    SCOPE_ACTIVATION_READ, SCOPE_ACTIVATION_WRITE, SCOPE_SETTINGS_READ, SCOPE_SETTINGS_WRITE,
};

/// Documented demo credentials: the simulator protects nothing real.
pub const DEFAULT_CLIENT_ID: &str = "demo";
pub const DEFAULT_CLIENT_SECRET: &str = "demo-secret";
/// Talkdesk does not document the lifetime; an hour is the common OAuth default.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// One Talkdesk account the simulator serves.
#[derive(Clone, Debug)]
pub struct SimAccount {
    /// Names the account in journal entries and in the `/accounts/{id}/...`
    /// and `/_sim/accounts/{id}/...` routes.
    pub id: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

impl SimAccount {
    pub fn new(
        id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> SimAccount {
        SimAccount {
            id: id.into(),
            client_id: client_id.into(),
            client_secret: SecretString::from(client_secret.into()),
        }
    }

    fn validate(&self) -> Result<(), OptionsError> {
        let id_ok = !self.id.is_empty()
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !id_ok {
            return Err(OptionsError::BadId(self.id.clone()));
        }
        // HTTP Basic splits `id:secret` at the first colon, so a colon in
        // the client id could never authenticate.
        if self.client_id.is_empty() || self.client_id.contains(':') {
            return Err(OptionsError::BadClientId(self.id.clone()));
        }
        if self.client_secret.expose_secret().is_empty() {
            return Err(OptionsError::EmptySecret(self.id.clone()));
        }
        Ok(())
    }
}

/// `ID:CLIENT_ID:CLIENT_SECRET`, the `simulate-talkdesk --account` value.
/// The secret is everything after the second colon, so it may hold colons.
impl FromStr for SimAccount {
    type Err = OptionsError;

    fn from_str(s: &str) -> Result<SimAccount, OptionsError> {
        let mut parts = s.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(client_id), Some(secret)) => {
                let account = SimAccount::new(id, client_id, secret);
                account.validate()?;
                Ok(account)
            }
            // Never echo the value: it may be a secret typed in the wrong place.
            _ => Err(OptionsError::Syntax),
        }
    }
}

/// Why a simulator cannot be built from its options. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionsError {
    #[error("an account is ID:CLIENT_ID:CLIENT_SECRET (three parts separated by ':')")]
    Syntax,
    #[error(
        "account id {0:?} is invalid: use letters, digits, '.', '_' or '-' (it appears in URLs)"
    )]
    BadId(String),
    #[error("account {0:?}: the client id must be non-empty and must not contain ':'")]
    BadClientId(String),
    #[error("account {0:?}: the client secret is empty")]
    EmptySecret(String),
    #[error("account id {0:?} is listed twice")]
    DuplicateId(String),
    #[error(
        "accounts {first:?} and {second:?} share the client id {client_id:?}: a token request could not tell them apart"
    )]
    DuplicateClientId {
        first: String,
        second: String,
        client_id: String,
    },
}

#[derive(Clone, Debug)]
pub struct SimulatorOptions {
    /// The client id of the single account served when `accounts` is empty.
    pub client_id: String,
    /// The client secret of the single account served when `accounts` is empty.
    pub client_secret: SecretString,
    /// Scopes a client may be granted (every account alike).
    pub allowed_scopes: Vec<String>,
    /// Lifetime of issued tokens (`expires_in` is its whole seconds).
    pub token_ttl: Duration,
    /// The accounts served, in order; the first is the one [`super::Simulator`]'s
    /// own methods and the `/_sim/...` routes act on. Empty (the default):
    /// one account, [`DEFAULT_ACCOUNT`], with `client_id` and `client_secret`.
    pub accounts: Vec<SimAccount>,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        SimulatorOptions {
            client_id: DEFAULT_CLIENT_ID.to_string(),
            client_secret: SecretString::from(DEFAULT_CLIENT_SECRET),
            allowed_scopes: [
                SCOPE_SETTINGS_READ,
                SCOPE_SETTINGS_WRITE,
                SCOPE_ACTIVATION_READ,
                SCOPE_ACTIVATION_WRITE,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            token_ttl: DEFAULT_TOKEN_TTL,
            accounts: Vec::new(),
        }
    }
}

impl SimulatorOptions {
    /// The defaults, serving exactly `accounts` (or the default account when empty).
    pub fn with_accounts(accounts: Vec<SimAccount>) -> SimulatorOptions {
        SimulatorOptions {
            accounts,
            ..SimulatorOptions::default()
        }
    }

    /// The accounts served, in order: `accounts`, or the single default one.
    pub fn account_list(&self) -> Vec<SimAccount> {
        if self.accounts.is_empty() {
            vec![SimAccount {
                id: DEFAULT_ACCOUNT.to_string(),
                client_id: self.client_id.clone(),
                client_secret: self.client_secret.clone(),
            }]
        } else {
            self.accounts.clone()
        }
    }

    /// Every account well formed; ids and client ids unique (a token
    /// request names its account by client id alone).
    pub fn validate(&self) -> Result<(), OptionsError> {
        let accounts = self.account_list();
        for (i, a) in accounts.iter().enumerate() {
            a.validate()?;
            for earlier in &accounts[..i] {
                if earlier.id == a.id {
                    return Err(OptionsError::DuplicateId(a.id.clone()));
                }
                if earlier.client_id == a.client_id {
                    return Err(OptionsError::DuplicateClientId {
                        first: earlier.id.clone(),
                        second: a.id.clone(),
                        client_id: a.client_id.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_accounts_the_single_default_account_keeps_the_old_credentials() {
        let opts = SimulatorOptions {
            client_id: "legacy".into(),
            ..SimulatorOptions::default()
        };
        let list = opts.account_list();
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].id.as_str(), list[0].client_id.as_str()),
            (DEFAULT_ACCOUNT, "legacy")
        );
        assert_eq!(list[0].client_secret.expose_secret(), DEFAULT_CLIENT_SECRET);
        assert_eq!(opts.validate(), Ok(()));
    }

    #[test]
    fn account_flag_value_keeps_colons_in_the_secret_and_never_echoes_it() {
        let a: SimAccount = "acme:acme-client:se:cr:et".parse().unwrap();
        assert_eq!(
            (a.id.as_str(), a.client_id.as_str()),
            ("acme", "acme-client")
        );
        assert_eq!(a.client_secret.expose_secret(), "se:cr:et");
        assert!(
            !format!("{a:?}").contains("se:cr:et"),
            "Debug shows the secret"
        );

        let err = "only-a-secret-value".parse::<SimAccount>().unwrap_err();
        assert_eq!(err, OptionsError::Syntax);
        assert!(!err.to_string().contains("only-a-secret-value"));
        assert_eq!(
            "a b:c:d".parse::<SimAccount>().unwrap_err(),
            OptionsError::BadId("a b".into())
        );
        assert_eq!(
            "a::d".parse::<SimAccount>().unwrap_err(),
            OptionsError::BadClientId("a".into())
        );
        assert_eq!(
            "a:c:".parse::<SimAccount>().unwrap_err(),
            OptionsError::EmptySecret("a".into())
        );
    }

    #[test]
    fn account_ids_and_client_ids_are_unique() {
        let dup_id = SimulatorOptions::with_accounts(vec![
            SimAccount::new("a", "c1", "s"),
            SimAccount::new("a", "c2", "s"),
        ]);
        assert_eq!(
            dup_id.validate(),
            Err(OptionsError::DuplicateId("a".into()))
        );
        let dup_client = SimulatorOptions::with_accounts(vec![
            SimAccount::new("a", "c", "s1"),
            SimAccount::new("b", "c", "s2"),
        ]);
        assert_eq!(
            dup_client.validate(),
            Err(OptionsError::DuplicateClientId {
                first: "a".into(),
                second: "b".into(),
                client_id: "c".into()
            })
        );
        let fine = SimulatorOptions::with_accounts(vec![
            SimAccount::new("a", "c1", "s"),
            SimAccount::new("b", "c2", "s"),
        ]);
        assert_eq!(fine.validate(), Ok(()));
    }
}
