//! Who may call the API: API tokens with scopes and accounts (`[api] tokens`), and the
//! constant-time comparison and `Authorization` parsing every credential check
//! shares (the webhook sources' own checks in `alerts::auth` build on these).
//!
//! Every secret comparison is constant-time. Secrets of different lengths are
//! first hashed with SHA-256 (so the comparison does not even leak the length),
//! and when several API tokens are configured all of them are compared, so the
//! time taken does not say which one nearly matched.
//!
//! Nothing here logs or formats a secret: error details say *what* is wrong
//! ("invalid credentials"), never the presented or expected value.

use axum::http::{HeaderMap, header};
use base64::Engine as _;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{ApiError, Challenges};
use crate::config::schema::{ApiTokenConfig, Scope};

/// The name of the API token that authorized a request (for audit records).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenName(pub String);

impl std::fmt::Display for TokenName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Constant-time equality of two secrets of possibly different lengths.
pub fn secret_eq(presented: &[u8], expected: &[u8]) -> bool {
    let a = Sha256::digest(presented);
    let b = Sha256::digest(expected);
    a.ct_eq(&b).into()
}

/// One configured API token, kept only as a SHA-256 digest.
#[derive(Clone)]
struct ApiToken {
    name: String,
    digest: [u8; 32],
    scopes: Vec<Scope>,
    /// The accounts it may read and act on; `None`: every account.
    accounts: Option<Vec<String>>,
}

/// The API tokens of `[api] tokens`, ready for constant-time lookup.
#[derive(Clone, Default)]
pub struct ApiTokens {
    tokens: Vec<ApiToken>,
}

impl std::fmt::Debug for ApiTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: even digests stay out of logs.
        f.debug_list()
            .entries(self.tokens.iter().map(|t| &t.name))
            .finish()
    }
}

/// What a presented bearer token is, as an API token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenCheck {
    /// No bearer token, or one that is no API token.
    Unknown,
    /// A valid token with the required scope.
    Granted(TokenName),
    /// A valid token without the required scope.
    MissingScope(TokenName),
}

impl ApiTokens {
    /// Tokens without a secret (a `token_file` that was not read) are skipped:
    /// `config::load` has already rejected such a configuration.
    pub fn new(tokens: &[ApiTokenConfig]) -> ApiTokens {
        ApiTokens {
            tokens: tokens
                .iter()
                .filter_map(|t| {
                    let secret = t.token.as_ref()?;
                    Some(ApiToken {
                        name: t.name.clone(),
                        digest: Sha256::digest(secret.expose_secret().as_bytes()).into(),
                        scopes: t.scopes.clone(),
                        accounts: t.accounts.clone(),
                    })
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether any token carries `scope`.
    pub fn any_with(&self, scope: Scope) -> bool {
        self.tokens.iter().any(|t| t.scopes.contains(&scope))
    }

    /// Checks the request's bearer token against every API token.
    pub fn check(&self, headers: &HeaderMap, required: Scope) -> TokenCheck {
        let Some(Credential::Bearer(presented)) = credential(headers) else {
            return TokenCheck::Unknown;
        };
        match self.find_secret(presented) {
            None => TokenCheck::Unknown,
            Some(t) => t.check(required),
        }
    }

    /// The token whose secret is `presented`, compared in constant time with
    /// every configured token (without stopping at a match).
    pub fn find_secret(&self, presented: &str) -> Option<KnownToken<'_>> {
        let digest = Sha256::digest(presented.as_bytes());
        let mut found: Option<&ApiToken> = None;
        for t in &self.tokens {
            if bool::from(t.digest.ct_eq(digest.as_slice())) {
                found = Some(t);
            }
        }
        found.map(KnownToken)
    }

    /// The token named `name` (a status page session names its token).
    pub fn find_name(&self, name: &str) -> Option<KnownToken<'_>> {
        self.tokens.iter().find(|t| t.name == name).map(KnownToken)
    }

    /// Whether the token that authorized a request ([`authorize`] returns
    /// its name) may read and act on `account`. An unknown name may not.
    pub fn may_access(&self, token: &TokenName, account: &str) -> bool {
        self.find_name(&token.0)
            .is_some_and(|t| t.may_access(account))
    }
}

/// A configured API token, found by its secret or its name.
#[derive(Clone, Copy)]
pub struct KnownToken<'a>(&'a ApiToken);

impl KnownToken<'_> {
    pub fn name(&self) -> TokenName {
        TokenName(self.0.name.clone())
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.0.scopes.contains(&scope)
    }

    /// Whether it may read and act on `account` (`[api] tokens.accounts`;
    /// without that key, every account).
    pub fn may_access(&self, account: &str) -> bool {
        match &self.0.accounts {
            None => true,
            Some(list) => list.iter().any(|a| a == account),
        }
    }

    pub fn check(&self, required: Scope) -> TokenCheck {
        if self.has(required) {
            TokenCheck::Granted(self.name())
        } else {
            TokenCheck::MissingScope(self.name())
        }
    }

    /// The SHA-256 of the token's secret. A status page session is signed
    /// over it, so replacing a token's secret (same name) ends the sessions
    /// opened with the old one. Never shown anywhere.
    pub(crate) fn secret_digest(&self) -> &[u8; 32] {
        &self.0.digest
    }
}

/// Authorizes a request by API token alone (the override and status routes,
/// and the alert routes' alternative to source credentials).
///
/// 401 (with a `Bearer` challenge) when the token is missing or unknown, 403
/// when it is valid but lacks `required`.
pub fn authorize(
    headers: &HeaderMap,
    tokens: &ApiTokens,
    required: Scope,
) -> Result<TokenName, ApiError> {
    let bearer = Challenges {
        bearer: true,
        basic: false,
    };
    match tokens.check(headers, required) {
        TokenCheck::Granted(name) => Ok(name),
        TokenCheck::MissingScope(name) => Err(missing_scope(&name, required)),
        TokenCheck::Unknown => Err(ApiError::unauthorized(
            match credential(headers) {
                None => "missing credentials: send Authorization: Bearer <token>",
                Some(_) => "invalid credentials",
            },
            bearer,
        )),
    }
}

/// 403 for a valid token that lacks `scope`. The detail names the token (not
/// its secret) so the operator knows which one to give the scope to.
pub fn missing_scope(name: &TokenName, scope: Scope) -> ApiError {
    ApiError::Forbidden(format!(
        "token {:?} does not have the {} scope",
        name.0,
        scope_name(scope)
    ))
}

/// 403 for a valid token that is not for `account`. Like
/// [`missing_scope`], it names the token so the operator knows which one
/// to extend; the account was named by the caller, so naming it leaks nothing.
pub fn account_forbidden(name: &TokenName, account: &str) -> ApiError {
    ApiError::Forbidden(format!(
        "token {:?} may not read or act on account {account:?}",
        name.0
    ))
}

pub fn scope_name(s: Scope) -> &'static str {
    match s {
        Scope::Read => "read",
        Scope::Override => "override",
        Scope::Alerts => "alerts",
        Scope::Admin => "admin",
    }
}

/// The `Authorization` header, parsed. The secrets stay borrowed from the
/// request (or owned by this value) and are never formatted: no `Debug`.
pub(crate) enum Credential<'a> {
    Bearer(&'a str),
    Basic {
        user: String,
        password: String,
    },
    /// Another scheme, or a Basic value that does not decode to `user:password`.
    Other,
}

/// The request's `Authorization` credential, if it sent one.
pub(crate) fn credential(headers: &HeaderMap) -> Option<Credential<'_>> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Some(Credential::Bearer(rest))
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok());
        Some(match decoded.as_deref().and_then(|s| s.split_once(':')) {
            Some((u, p)) => Credential::Basic {
                user: u.to_string(),
                password: p.to_string(),
            },
            None => Credential::Other,
        })
    } else {
        Some(Credential::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use secrecy::SecretString;

    fn headers(kv: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in kv {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn secret_eq_handles_lengths() {
        assert!(secret_eq(b"abc", b"abc"));
        assert!(!secret_eq(b"abc", b"abcd"));
        assert!(!secret_eq(b"", b"a"));
    }

    #[test]
    fn api_tokens_and_scopes() {
        let cfg = vec![
            ApiTokenConfig {
                name: "pager".into(),
                token: Some(SecretString::from("tok-alerts")),
                token_file: None,
                scopes: vec![Scope::Alerts],
                accounts: None,
            },
            ApiTokenConfig {
                name: "viewer".into(),
                token: Some(SecretString::from("tok-read")),
                token_file: None,
                scopes: vec![Scope::Read],
                accounts: None,
            },
        ];
        let t = ApiTokens::new(&cfg);
        let h = headers(&[("authorization", "Bearer tok-alerts")]);
        assert_eq!(
            authorize(&h, &t, Scope::Alerts),
            Ok(TokenName("pager".into()))
        );
        let h = headers(&[("authorization", "bearer tok-read")]);
        assert_eq!(
            authorize(&h, &t, Scope::Alerts),
            Err(ApiError::Forbidden(
                r#"token "viewer" does not have the alerts scope"#.into()
            ))
        );
        for h in [
            headers(&[]),
            headers(&[("authorization", "Bearer nope")]),
            headers(&[("authorization", "Basic dG9rLWFsZXJ0czp4")]),
        ] {
            assert!(matches!(
                authorize(&h, &t, Scope::Alerts),
                Err(ApiError::Unauthorized { .. })
            ));
        }
        // Debug shows names only.
        assert_eq!(format!("{t:?}"), r#"["pager", "viewer"]"#);
    }

    #[test]
    fn a_token_may_access_only_the_accounts_it_lists() {
        let token = |name: &str, accounts: Option<&[&str]>| ApiTokenConfig {
            name: name.into(),
            token: Some(SecretString::from(format!("tok-{name}"))),
            token_file: None,
            scopes: vec![Scope::Read, Scope::Override],
            accounts: accounts.map(|a| a.iter().map(|s| s.to_string()).collect()),
        };
        let t = ApiTokens::new(&[
            token("everyone", None),
            token("acme-oncall", Some(&["acme"])),
            token("two", Some(&["acme", "globex"])),
        ]);
        let name = |n: &str| TokenName(n.into());
        assert!(t.may_access(&name("everyone"), "acme"));
        assert!(t.may_access(&name("everyone"), "default"));
        assert!(t.may_access(&name("acme-oncall"), "acme"));
        assert!(!t.may_access(&name("acme-oncall"), "globex"));
        assert!(!t.may_access(&name("acme-oncall"), "default"));
        assert!(t.may_access(&name("two"), "globex"));
        assert!(!t.may_access(&name("two"), "initech"));
        assert!(!t.may_access(&name("nobody"), "acme"), "unknown token");
        // Found by its secret, as a request presents it.
        let found = t.find_secret("tok-acme-oncall").unwrap();
        assert!(found.may_access("acme") && !found.may_access("globex"));
        assert_eq!(
            account_forbidden(&name("acme-oncall"), "globex"),
            ApiError::Forbidden(
                r#"token "acme-oncall" may not read or act on account "globex""#.into()
            )
        );
    }
}
