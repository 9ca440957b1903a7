//! `[api]`: tokens and override limits.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::secrets::{MIN_SECRET_CHARS, secret};
use super::shared::duration_range;
use crate::config::load::Cx;
use crate::config::schema::*;

pub(super) fn api(cx: &mut Cx, a: &mut ApiConfig, base: &Path) {
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
    }
    duration_range(
        cx,
        "api.override_max_ttl",
        a.override_max_ttl.get(),
        Duration::from_secs(60),
        Duration::from_secs(30 * 24 * 3600),
    );
}
