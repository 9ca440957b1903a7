//! `[api]`: tokens (their scopes and accounts) and override limits.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::secrets::{MIN_SECRET_CHARS, secret};
use super::shared::duration_range;
use crate::config::load::Cx;
use crate::config::schema::*;

/// `account_ids`: every configured account (`default` for a file without
/// `[[accounts]]`), which a token's `accounts` may name.
pub(super) fn api(cx: &mut Cx, a: &mut ApiConfig, base: &Path, account_ids: &[String]) {
    let mut names = BTreeSet::new();
    for (i, t) in a.tokens.iter_mut().enumerate() {
        let key = format!("api.tokens[{i}] ({})", t.name);
        if !names.insert(t.name.clone()) {
            cx.err(
                format!("{key}.name"),
                format!("duplicate token name {:?}", t.name),
            );
        }
        secret(
            cx,
            &format!("{key}.token"),
            &mut t.token,
            &t.token_file,
            base,
            true,
        );
        if let Some(tok) = &t.token
            && tok.expose_secret().len() < MIN_SECRET_CHARS
        {
            cx.err(
                format!("{key}.token"),
                format!("must be at least {MIN_SECRET_CHARS} characters"),
            );
        }
        if t.scopes.is_empty() {
            cx.err(
                format!("{key}.scopes"),
                "must list at least one of read, override, alerts, admin",
            );
        }
        match &t.accounts {
            Some(list) if list.is_empty() => cx.err(
                format!("{key}.accounts"),
                "lists no account: name at least one, or leave accounts out for every account",
            ),
            Some(list) => {
                for (j, id) in list.iter().enumerate() {
                    if !account_ids.contains(id) {
                        cx.err(
                            format!("{key}.accounts[{j}]"),
                            format!(
                                "unknown account {id:?} (accounts: {})",
                                account_ids.join(", ")
                            ),
                        );
                    }
                }
            }
            None => {}
        }
    }
    duration_range(
        cx,
        "api.override_max_ttl",
        a.override_max_ttl.get(),
        Duration::from_secs(60),
        Duration::from_secs(30 * 24 * 3600),
    );
}
