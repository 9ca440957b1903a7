//! Whole-configuration validation. Runs after every section was parsed (or
//! failed to), checks values, syntax and cross references, reads `*_file`
//! secrets and compiles rules. Adds every problem to the context; never stops
//! early.
//!
//! One file per section, each with its own checks; this file runs them in
//! order and assembles the [`Config`]. The sections an account has of its
//! own are validated once per account (`accounts.rs`), by the same code
//! whether they are written at the top level or in `[[accounts]]`. Probe entries validate themselves
//! (`probe::ProbeConfig::validate`); `probes.rs` only adds what needs the
//! whole list. `condition.rs` compiles rule conditions into the engine's
//! `Expr` (the engine knows nothing of the configuration).

mod accounts;
mod agent;
mod api;
mod calendar;
mod condition;
mod engine;
mod notify;
mod probes;
mod profiles;
mod rules;
mod secrets;
mod shared;
mod store;
mod talkdesk;
mod webhooks;

use std::path::Path;

pub(super) use accounts::account_key;

use crate::config::load::Cx;
use crate::config::load::raw_labels;
use crate::config::schema::*;
use crate::config::{Account, Config, ConfigErrors, DEFAULT_ACCOUNT, Strictness};
use crate::engine::spec::ProbeSpec;

/// `ids` without repeats, in first-seen order. A set, not `Vec::contains`:
/// with 10,000 probes the quadratic scan alone took a second of start-up
/// (issue 13, perf: 74 % of `check-config` in `slice::contains`).
fn unique(ids: impl Iterator<Item = String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    ids.filter(|id| seen.insert(id.clone())).collect()
}

pub(super) fn validate(
    mut raw: RawConfig,
    cx: &mut Cx,
    base: &Path,
    strictness: Strictness,
) -> Result<Config, ConfigErrors> {
    agent::agent(cx, &mut raw.agent, base);
    store::store(cx, &mut raw.store, raw.cluster.as_ref(), base);
    let probe_settings = probes::probes(cx, &raw.probes, base);
    let probe_specs: Vec<ProbeSpec> = probe_settings
        .iter()
        .map(|s| ProbeSpec {
            id: s.id.clone(),
            kind: s.type_name,
            rise: s.rise,
            fall: s.fall,
        })
        .collect();
    // Ids that exist even if their element failed to parse, so that a broken
    // element produces one error, not one more per reference to it.
    let probe_ids = unique(
        raw.probes
            .iter()
            .map(|p| p.common.id.clone())
            .chain(raw_labels(cx, "probes", "id")),
    );
    let alert_inputs = !raw.webhooks.sources().is_empty()
        || raw
            .api
            .tokens
            .iter()
            .any(|t| t.scopes.contains(&Scope::Alerts));
    let shared = accounts::Shared {
        probe_ids: &probe_ids,
        probe_specs: &probe_specs,
        alert_inputs,
        cluster: raw.cluster.as_ref(),
        base,
        strictness,
    };
    let (profiles, rules, compiled) = if !cx.has_accounts {
        // One account, written at the top level: the same validators, the
        // same key paths as ever (`talkdesk.client_id`, `rules[0]`).
        let mut own = AccountConfig {
            id: DEFAULT_ACCOUNT.to_string(),
            talkdesk: std::mem::take(&mut raw.talkdesk),
            profiles: std::mem::take(&mut raw.profiles),
            rules: std::mem::take(&mut raw.rules),
            maintenance: std::mem::take(&mut raw.maintenance),
            drills: std::mem::take(&mut raw.drills),
        };
        let (profiles, rules) = accounts::account(cx, &mut own, &shared);
        raw.talkdesk = own.talkdesk;
        raw.profiles = own.profiles;
        raw.rules = own.rules;
        raw.maintenance = own.maintenance;
        raw.drills = own.drills;
        (profiles, rules, Vec::new())
    } else {
        // Several: the top-level account sections are absent (load refuses
        // the mix) and stay empty; each account is compiled on its own.
        let mut compiled = Vec::new();
        for (i, a) in raw.accounts.iter_mut().enumerate() {
            let (profiles, rules) = cx.in_account(i, |cx| accounts::account(cx, a, &shared));
            compiled.push(Account {
                id: a.id.clone(),
                profiles,
                rules,
            });
        }
        accounts::same_talkdesk(cx, &raw.accounts);
        (Default::default(), Vec::new(), compiled)
    };
    // Every configured account, and those whose element failed to parse
    // (not reported again as unknown where a token names them).
    let configured: Vec<String> = if !cx.has_accounts {
        vec![DEFAULT_ACCOUNT.to_string()]
    } else {
        raw.accounts.iter().map(|a| a.id.clone()).collect()
    };
    let account_ids = unique(
        configured
            .into_iter()
            .chain(raw_labels(cx, "accounts", "id"))
            .filter(|id| !id.is_empty()),
    );
    engine::engine(cx, &raw.engine);
    webhooks::alerts(cx, &raw.alerts);
    webhooks::webhooks(cx, &mut raw.webhooks, base);
    api::api(cx, &mut raw.api, base, &account_ids);
    notify::notify(cx, &mut raw.notify, base);
    if raw.agent.dry_run {
        cx.warn(
            "agent.dry_run",
            "dry_run is on: Talkdesk calls are logged and audited but not made",
        );
    }

    if cx.errors.is_empty() {
        Ok(Config {
            origin: cx.origin().to_string(),
            path: None,
            raw,
            profiles,
            probes: probe_specs.into(),
            probe_settings: probe_settings.into(),
            rules,
            accounts: compiled,
            warnings: std::mem::take(&mut cx.warnings),
        })
    } else {
        Err(ConfigErrors {
            errors: std::mem::take(&mut cx.errors),
            warnings: std::mem::take(&mut cx.warnings),
        })
    }
}
