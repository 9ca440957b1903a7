//! Status page sessions: the API token is typed once into the login form,
//! and the browser then holds a signed session cookie, never the token.
//!
//! A session cookie is `NAME.EXPIRES.MAC`: the token's name (base64url), the
//! expiry (epoch milliseconds), and an HMAC-SHA256 over both and over the
//! digest of the token's secret, under a key drawn at random when the process
//! starts. So a session
//! - cannot be forged or extended without the key;
//! - ends when it expires ([`SESSION_TTL`]), when the agent restarts (new
//!   key), and when the token's secret is replaced or the token removed from
//!   the configuration (the MAC no longer verifies against it);
//! - carries no scopes: they are read from the running configuration on
//!   every request, so a reload that takes a scope away takes it at once.
//!
//! The CSRF token of a session is an HMAC of its cookie under the same key,
//! so it needs no server-side state either; every form carries it and every
//! action checks it in constant time.
//!
//! The key lives as long as the process (it is kept across configuration
//! reloads) and is never logged, printed or stored.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::Rng as _;
use sha2::Sha256;

use crate::domain::Timestamp;
use crate::server::auth::{ApiTokens, KnownToken, secret_eq};

type HmacSha256 = Hmac<Sha256>;

/// How long a session lasts: an on-call shift. Signing in again is cheap.
pub const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(12 * 3600);

/// The session cookie's name. `__Host-` makes browsers insist on `Secure`,
/// `Path=/` and no `Domain`, so no other host (a sibling subdomain) can set
/// or shadow it.
pub const COOKIE: &str = "__Host-continuity-session";

/// The per-process signing key of sessions and CSRF tokens.
pub struct SessionKey {
    key: [u8; 32],
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey([REDACTED])")
    }
}

impl Default for SessionKey {
    fn default() -> Self {
        SessionKey::random()
    }
}

/// Why a presented session cookie was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("the session cookie is malformed")]
    Malformed,
    /// A wrong MAC: another process's key (a restart), a replaced token
    /// secret, or tampering.
    #[error("the session is no longer valid (the agent restarted or the token changed)")]
    BadSignature,
    #[error("the session expired")]
    Expired,
    #[error("the session's token is no longer configured")]
    UnknownToken,
}

/// A verified session.
pub struct Session<'a> {
    pub token: KnownToken<'a>,
    pub expires: Timestamp,
}

impl SessionKey {
    pub fn random() -> SessionKey {
        SessionKey {
            key: rand::rng().random(),
        }
    }

    /// A new session cookie value for `token`, valid until `now + SESSION_TTL`.
    pub fn mint(&self, token: &KnownToken<'_>, now: Timestamp) -> String {
        let name = token.name().0;
        let expires = now.add(SESSION_TTL).as_millis();
        let mac = self.session_mac(&name, expires, token.secret_digest());
        let name = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(name);
        format!("{name}.{expires}.{}", hex::encode(mac))
    }

    /// Checks a cookie value against the key, the clock and the tokens of
    /// the running configuration.
    pub fn verify<'t>(
        &self,
        cookie: &str,
        tokens: &'t ApiTokens,
        now: Timestamp,
    ) -> Result<Session<'t>, SessionError> {
        let mut parts = cookie.split('.');
        let (Some(name), Some(expires), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SessionError::Malformed);
        };
        let name = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(name)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(SessionError::Malformed)?;
        let expires: i64 = expires.parse().map_err(|_| SessionError::Malformed)?;
        let mac = hex::decode(mac).map_err(|_| SessionError::Malformed)?;
        // An unknown name still costs one MAC, against a dummy digest, so
        // timing does not tell which token names exist.
        let token = tokens.find_name(&name);
        let digest = token.map(|t| *t.secret_digest()).unwrap_or([0; 32]);
        let expected = self.session_mac(&name, expires, &digest);
        if !secret_eq(&mac, &expected) {
            return Err(match token {
                None => SessionError::UnknownToken,
                Some(_) => SessionError::BadSignature,
            });
        }
        let token = token.ok_or(SessionError::UnknownToken)?;
        let expires = Timestamp::from_millis(expires);
        if expires <= now {
            return Err(SessionError::Expired);
        }
        Ok(Session { token, expires })
    }

    /// The CSRF token of the session whose cookie value is `cookie`.
    pub fn csrf(&self, cookie: &str) -> String {
        let mut mac = self.mac();
        mac.update(b"csrf\0");
        mac.update(cookie.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Whether `presented` is the CSRF token of the session `cookie`
    /// (constant-time).
    pub fn csrf_ok(&self, cookie: &str, presented: &str) -> bool {
        secret_eq(presented.as_bytes(), self.csrf(cookie).as_bytes())
    }

    fn session_mac(&self, name: &str, expires: i64, digest: &[u8; 32]) -> Vec<u8> {
        let mut mac = self.mac();
        mac.update(b"session\0");
        mac.update(name.as_bytes());
        mac.update(b"\0");
        mac.update(expires.to_string().as_bytes());
        mac.update(b"\0");
        mac.update(digest);
        mac.finalize().into_bytes().to_vec()
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.key).expect("HMAC takes a key of any length")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::schema::{ApiTokenConfig, Scope};
    use secrecy::SecretString;

    fn tokens(secret: &str) -> ApiTokens {
        ApiTokens::new(&[ApiTokenConfig {
            name: "oncall".into(),
            token: Some(SecretString::from(secret.to_string())),
            token_file: None,
            scopes: vec![Scope::Read, Scope::Override],
            accounts: None,
        }])
    }

    const NOW: Timestamp = Timestamp(1_700_000_000_000);

    #[test]
    fn a_minted_session_verifies_until_it_expires() {
        let key = SessionKey::random();
        let t = tokens("secret-0123456789abcdef");
        let tok = t.find_name("oncall").unwrap();
        let cookie = key.mint(&tok, NOW);
        assert!(
            !cookie.contains("secret-0123456789abcdef"),
            "the token is not in the cookie"
        );
        let s = key.verify(&cookie, &t, NOW).unwrap();
        assert_eq!(s.token.name().0, "oncall");
        assert_eq!(s.expires, NOW.add(SESSION_TTL));
        let late = NOW.add(SESSION_TTL);
        assert_eq!(
            key.verify(&cookie, &t, late).err(),
            Some(SessionError::Expired)
        );
    }

    #[test]
    fn a_session_ends_with_a_new_key_a_new_secret_or_tampering() {
        let key = SessionKey::random();
        let t = tokens("secret-0123456789abcdef");
        let cookie = key.mint(&t.find_name("oncall").unwrap(), NOW);
        // A restart draws a new key.
        assert_eq!(
            SessionKey::random().verify(&cookie, &t, NOW).err(),
            Some(SessionError::BadSignature)
        );
        // The token's secret was replaced (same name).
        let rotated = tokens("another-secret-0123456789");
        assert_eq!(
            key.verify(&cookie, &rotated, NOW).err(),
            Some(SessionError::BadSignature)
        );
        // The token was removed.
        assert_eq!(
            key.verify(&cookie, &ApiTokens::default(), NOW).err(),
            Some(SessionError::UnknownToken)
        );
        // A later expiry without the key.
        let mut parts: Vec<String> = cookie.split('.').map(str::to_string).collect();
        parts[1] = (NOW.as_millis() + 100 * 3_600_000).to_string();
        assert_eq!(
            key.verify(&parts.join("."), &t, NOW).err(),
            Some(SessionError::BadSignature)
        );
        for bad in ["", "a.b", "a.b.c.d", "!!.1.00", "b25jYWxs.x.00"] {
            assert_eq!(
                key.verify(bad, &t, NOW).err(),
                Some(SessionError::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let key = SessionKey::random();
        let t = tokens("secret-0123456789abcdef");
        let tok = t.find_name("oncall").unwrap();
        let a = key.mint(&tok, NOW);
        let b = key.mint(&tok, NOW.add(std::time::Duration::from_secs(1)));
        let csrf = key.csrf(&a);
        assert!(key.csrf_ok(&a, &csrf));
        assert!(!key.csrf_ok(&b, &csrf), "another session's token");
        assert!(!key.csrf_ok(&a, ""));
        assert!(!SessionKey::random().csrf_ok(&a, &csrf), "another key");
        assert_eq!(format!("{key:?}"), "SessionKey([REDACTED])");
    }
}
