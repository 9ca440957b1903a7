//! API tokens with scopes (`read`, `override`, `alerts`). Tokens are compared
//! in constant time, every configured token is checked (no early exit that
//! would reveal which prefix matched), and tokens are never logged.

use axum::http::HeaderMap;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::schema::{ApiTokenConfig, Scope};

/// Configured tokens, resolved from `[api] tokens`.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Vec<(String, secrecy::SecretString, Vec<Scope>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(n, _, s)| (n, s)))
            .finish()
    }
}

impl Tokens {
    pub fn from_config(tokens: &[ApiTokenConfig]) -> Tokens {
        let entries = tokens
            .iter()
            .filter_map(|t| {
                t.token
                    .as_ref()
                    .map(|s| (t.name.clone(), s.clone(), t.scopes.clone()))
            })
            .collect();
        Tokens { entries }
    }

    /// The name of the token presented in `Authorization: Bearer ...`, if it has `scope`.
    /// 401 when missing or unknown, 403 when known but without the scope.
    pub fn authorize(&self, headers: &HeaderMap, scope: Scope) -> Result<String, ApiError> {
        let presented = bearer(headers)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <token>"))?;
        let mut found: Option<&(String, secrecy::SecretString, Vec<Scope>)> = None;
        for entry in &self.entries {
            let eq: bool = entry
                .1
                .expose_secret()
                .as_bytes()
                .ct_eq(presented.as_bytes())
                .into();
            if eq {
                found = Some(entry);
            }
        }
        match found {
            None => Err(ApiError::unauthorized("unknown API token")),
            Some((name, _, scopes)) if scopes.contains(&scope) => Ok(name.clone()),
            Some((name, _, _)) => Err(ApiError::forbidden(
                format!("token {name:?} lacks the {scope:?} scope").to_lowercase(),
            )),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}
