//! OAuth 2.0 client credentials, by hand on reqwest (the `oauth2` crate pins
//! an older reqwest, and the grant is one form POST).
//!
//! `POST {token_url}` with HTTP Basic `client_id:client_secret` and the form
//! `grant_type=client_credentials&scope=<space separated>`. The token is cached
//! until shortly before `expires_in` (margin: min(60 s, 10 % of the lifetime);
//! a reply without it is trusted for [`ASSUMED_TOKEN_LIFETIME`]),
//! so a token is never used in its last moments where clock skew or a slow
//! request would make it expire in flight.
//!
//! Refreshes are single-flight: the cache sits behind a tokio `Mutex` that is
//! held across the token request, so twenty concurrent callers that all find
//! the cache empty cause exactly one request and then share its result.
//!
//! A 401 from the API invalidates the token *by generation*: only the token
//! that was actually rejected is dropped, so a burst of 401s racing with a
//! refresh does not throw away the fresh token and refresh again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use super::error::{Op, TalkdeskError};
use super::observe::{CallOutcome, Observer};
use super::wire::{TokenErrorBody, TokenResponse};

/// Longest token lifetime we believe (`expires_in` is capped to it).
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 24 * 3600;

/// The lifetime assumed when a token reply has no `expires_in`: an OAuth
/// server may omit it (RFC 6749 5.1 makes it RECOMMENDED, not required).
/// Treating that as "expires now" asked for a token before every call; a
/// 401 still drops the token at once, so assuming a while costs nothing.
pub const ASSUMED_TOKEN_LIFETIME: Duration = Duration::from_secs(300);

/// Never refresh earlier than this before expiry (long-lived tokens).
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// An access token plus the generation that identifies it in the cache.
#[derive(Clone)]
pub struct AccessToken {
    secret: SecretString,
    generation: u64,
}

impl AccessToken {
    pub(crate) fn expose(&self) -> &str {
        self.secret.expose_secret()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("secret", &"[REDACTED]")
            .field("generation", &self.generation)
            .finish()
    }
}

struct Cached {
    token: AccessToken,
    /// Start trying to replace the token from here on.
    refresh_at: Instant,
    /// The server stops accepting it here (by its `expires_in`).
    expires_at: Instant,
}

pub(crate) struct TokenSource {
    http: reqwest::Client,
    token_url: String,
    client_id: String,
    client_secret: SecretString,
    scopes: Vec<String>,
    timeout: Duration,
    observer: Observer,
    cache: Mutex<Option<Cached>>,
    generations: AtomicU64,
}

/// How long before expiry a token is refreshed.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    MAX_REFRESH_MARGIN.min(lifetime / 10)
}

impl TokenSource {
    pub fn new(
        http: reqwest::Client,
        token_url: String,
        client_id: String,
        client_secret: SecretString,
        scopes: Vec<String>,
        timeout: Duration,
        observer: Observer,
    ) -> TokenSource {
        TokenSource {
            http,
            token_url,
            client_id,
            client_secret,
            scopes,
            timeout,
            observer,
            cache: Mutex::new(None),
            generations: AtomicU64::new(0),
        }
    }

    /// A valid token: the cached one, or a fresh one (one request at a time).
    pub async fn token(&self) -> Result<AccessToken, TalkdeskError> {
        let mut cache = self.cache.lock().await;
        if let Some(c) = cache.as_ref()
            && Instant::now() < c.refresh_at
        {
            return Ok(c.token.clone());
        }
        // Holding the lock across the request is the single-flight: everyone
        // else waits here and then finds the fresh token in the cache.
        match self.fetch().await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                *cache = Some(fresh);
                Ok(token)
            }
            // A refresh inside the margin failed, but the old token is still
            // valid: keep using it rather than fail a call over a token
            // endpoint blip. The next call tries to refresh again.
            Err(error) => match cache.as_ref() {
                Some(c) if Instant::now() < c.expires_at => {
                    tracing::warn!(%error, "Token refresh failed; using the current token until it expires.");
                    Ok(c.token.clone())
                }
                _ => Err(error),
            },
        }
    }

    /// Drop `stale` from the cache if it is still the cached token.
    pub async fn invalidate(&self, stale: &AccessToken) {
        let mut cache = self.cache.lock().await;
        if cache
            .as_ref()
            .is_some_and(|c| c.token.generation == stale.generation)
        {
            *cache = None;
        }
    }

    async fn fetch(&self) -> Result<Cached, TalkdeskError> {
        let op = Op::Token;
        let mut form = vec![("grant_type", "client_credentials".to_string())];
        if !self.scopes.is_empty() {
            form.push(("scope", self.scopes.join(" ")));
        }
        let summary =
            serde_json::json!({"grant_type": "client_credentials", "scope": self.scopes.join(" ")});
        let started = Instant::now();
        let sent = self
            .http
            .post(&self.token_url)
            .basic_auth(&self.client_id, Some(self.client_secret.expose_secret()))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .timeout(self.timeout)
            .send();
        let super::client::Raw {
            status,
            retry_after,
            body,
        } = match super::client::exchange(sent, op, self.timeout).await {
            Ok(raw) => raw,
            Err(err) => {
                self.record(CallOutcome::Failed(&err), started, summary);
                return Err(err);
            }
        };
        if !(200..300).contains(&status) {
            let parsed: TokenErrorBody = serde_json::from_slice(&body).unwrap_or_default();
            let err = TalkdeskError::Token {
                status,
                error: if parsed.error.is_empty() {
                    "unknown_error".to_string()
                } else {
                    parsed.error
                },
                description: parsed.error_description,
                retry_after,
            };
            self.record(CallOutcome::Status(status, Some(&err)), started, summary);
            return Err(err);
        }
        let parsed: TokenResponse = match serde_json::from_slice::<TokenResponse>(&body) {
            Ok(t) if !t.access_token.is_empty() => t,
            Ok(_) => {
                let err = TalkdeskError::Decode {
                    op,
                    status,
                    detail: "token reply has an empty access_token".into(),
                };
                self.record(CallOutcome::Status(status, Some(&err)), started, summary);
                return Err(err);
            }
            Err(e) => {
                // serde's message names the field, never the value.
                let err = TalkdeskError::Decode {
                    op,
                    status,
                    detail: format!("token reply is not {{access_token, expires_in, ...}}: {e}"),
                };
                self.record(CallOutcome::Status(status, Some(&err)), started, summary);
                return Err(err);
            }
        };
        self.record(CallOutcome::Status(status, None), started, summary);
        if let Some(tt) = &parsed.token_type
            && !tt.eq_ignore_ascii_case("bearer")
        {
            tracing::warn!(token_type = %tt, "Talkdesk issued a non-Bearer token; sending it as Bearer anyway.");
        }
        if let Some(granted) = &parsed.scope {
            let granted: Vec<&str> = granted.split_whitespace().collect();
            let missing: Vec<&str> = self
                .scopes
                .iter()
                .map(String::as_str)
                .filter(|s| !granted.contains(s))
                .collect();
            if !missing.is_empty() {
                // Not fatal here: the API answers 403 for what is really missing,
                // with a precise message. This line tells operators why early.
                tracing::warn!(missing = %missing.join(", "), "Talkdesk did not grant every requested scope.");
            }
        }
        // Bounded: a bogus `expires_in` (a proxy, a mock, u64::MAX) must not
        // overflow the clock arithmetic below, and no token is trusted for
        // more than a day without asking again.
        let lifetime = match parsed.expires_in {
            Some(secs) => Duration::from_secs(secs.min(MAX_TOKEN_LIFETIME_SECS)),
            None => ASSUMED_TOKEN_LIFETIME,
        };
        let generation = self.generations.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(Cached {
            token: AccessToken {
                secret: SecretString::from(parsed.access_token),
                generation,
            },
            // Measured from when the request was sent: the server's clock
            // started before our response arrived.
            refresh_at: started + lifetime.saturating_sub(refresh_margin(lifetime)),
            expires_at: started + lifetime,
        })
    }

    fn record(&self, outcome: CallOutcome<'_>, started: Instant, summary: serde_json::Value) {
        self.observer.call(
            Op::Token,
            "POST",
            &self.token_url,
            outcome,
            started.elapsed(),
            Some(summary),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margin_is_ten_percent_capped_at_a_minute() {
        assert_eq!(
            refresh_margin(Duration::from_secs(3600)),
            Duration::from_secs(60)
        );
        assert_eq!(
            refresh_margin(Duration::from_secs(100)),
            Duration::from_secs(10)
        );
        assert_eq!(refresh_margin(Duration::ZERO), Duration::ZERO);
    }
}
