//! Whole-configuration validation. Runs after every section was parsed (or
//! failed to), checks values, syntax and cross references, reads `*_file`
//! secrets and compiles rules. Adds every problem to the context; never stops
//! early.
//!
//! One file per section, each with its own checks; this file runs them in
//! order and assembles the [`Config`]. Probe entries validate themselves
//! (`probe::ProbeConfig::validate`); `probes.rs` only adds what needs the
//! whole list. `condition.rs` compiles rule conditions into the engine's
//! `Expr` (the engine knows nothing of the configuration).

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

use std::collections::BTreeSet;
use std::path::Path;

use crate::config::Strictness;
use crate::config::load::Cx;
use crate::config::load::raw_labels;
use crate::config::schema::*;
use crate::config::{Config, ConfigErrors};
use crate::engine::spec::ProbeSpec;

pub(super) fn validate(
    mut raw: RawConfig,
    cx: &mut Cx,
    base: &Path,
    strictness: Strictness,
) -> Result<Config, ConfigErrors> {
    agent::agent(cx, &mut raw.agent, base);
    store::store(
        cx,
        &mut raw.store,
        raw.cluster.as_ref(),
        raw.talkdesk.request_timeout,
        base,
    );
    talkdesk::talkdesk(cx, &mut raw.talkdesk, base, strictness);
    let profiles = profiles::profiles(cx, &raw.profiles);
    // Names that exist even if their element failed to parse, so that a broken
    // element produces one error, not one more per reference to it.
    let mut profile_names: BTreeSet<String> = profiles.keys().cloned().collect();
    profile_names.extend(raw_labels(cx, "profiles", ""));
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
    let mut probe_ids: Vec<String> = Vec::new();
    for id in raw
        .probes
        .iter()
        .map(|p| p.common.id.clone())
        .chain(raw_labels(cx, "probes", "id"))
    {
        if !probe_ids.contains(&id) {
            probe_ids.push(id);
        }
    }
    let alert_inputs = !raw.webhooks.sources().is_empty()
        || raw
            .api
            .tokens
            .iter()
            .any(|t| t.scopes.contains(&Scope::Alerts));
    let rules = rules::rules(
        cx,
        &raw.rules,
        &profile_names,
        &probe_ids,
        &probe_specs,
        alert_inputs,
    );
    engine::engine(cx, &raw.engine);
    webhooks::alerts(cx, &raw.alerts);
    calendar::calendar(cx, &raw.maintenance, &raw.drills, &profile_names);
    webhooks::webhooks(cx, &mut raw.webhooks, base);
    api::api(cx, &mut raw.api, base);
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
            probes: probe_specs,
            probe_settings,
            rules,
            warnings: std::mem::take(&mut cx.warnings),
        })
    } else {
        Err(ConfigErrors {
            errors: std::mem::take(&mut cx.errors),
            warnings: std::mem::take(&mut cx.warnings),
        })
    }
}
