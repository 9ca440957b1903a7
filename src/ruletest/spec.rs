//! Building the engine's spec from config TOML for scenarios.
//!
//! `engine_spec_from_toml` is the one seam between `test-rules` and the
//! config loader: it is meant to become
//! `config::from_toml_str(src, origin)?.engine_spec()` once the loader lands.
//! Until then this minimal builder compiles what the engine needs (probes,
//! rules, profiles, drills, engine and alerts sections) and collects every
//! error it finds. It ignores sections the engine does not read (talkdesk,
//! webhooks, api...), so scenario files need no credentials.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::config::schema::{RawConfig, defaults};
use crate::engine::expr;
use crate::engine::spec::{DrillSpec, EngineSpec, ProbeSpec, RuleSpec};

/// Parses config TOML and builds the engine spec; errors are one per line.
pub fn engine_spec_from_toml(src: &str, origin: &str) -> Result<EngineSpec, String> {
    let raw: RawConfig = toml::from_str(src).map_err(|e| format!("{origin}: {e}"))?;
    engine_spec_from_raw(&raw).map_err(|errs| {
        errs.iter()
            .map(|e| format!("{origin}: {e}"))
            .collect::<Vec<_>>()
            .join("\n")
    })
}

pub fn engine_spec_from_raw(raw: &RawConfig) -> Result<EngineSpec, Vec<String>> {
    let mut errors = Vec::new();
    let probes: Vec<ProbeSpec> = raw
        .probes
        .iter()
        .map(|p| ProbeSpec {
            id: p.id.clone(),
            kind: p.kind.as_str(),
            rise: p.rise.unwrap_or(defaults::RISE),
            fall: p.fall.unwrap_or(defaults::FALL),
        })
        .collect();
    let ids: Vec<&str> = probes.iter().map(|p| p.id.as_str()).collect();
    let mut rules = Vec::new();
    for (i, r) in raw.rules.iter().enumerate() {
        if !raw.profiles.contains_key(&r.profile) {
            errors.push(format!(
                "rules[{i}].profile: unknown profile {:?}",
                r.profile
            ));
        }
        match expr::compile(&r.when, &format!("rules[{i}].when"), &ids) {
            Ok(when) => rules.push(RuleSpec {
                name: r.name.clone(),
                profile: r.profile.clone(),
                priority: r.priority,
                for_: r.for_.get(),
                clear_for: r.clear_for.get(),
                min_active: r.min_active.get(),
                when,
                checksum: checksum(r),
            }),
            Err(errs) => errors.extend(
                errs.into_iter()
                    .map(|e| format!("{}: {}", e.path, e.reason)),
            ),
        }
    }
    let mut drills = BTreeMap::new();
    for (i, d) in raw.drills.iter().enumerate() {
        if !raw.profiles.contains_key(&d.profile) {
            errors.push(format!(
                "drills[{i}].profile: unknown profile {:?}",
                d.profile
            ));
        }
        drills.insert(
            d.name.clone(),
            DrillSpec {
                name: d.name.clone(),
                profile: d.profile.clone(),
                duration: d.duration.get(),
            },
        );
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(EngineSpec {
        probes,
        rules,
        profiles: raw.profiles.keys().cloned().collect(),
        drills,
        flap_max: raw.engine.flap_max,
        flap_window: raw.engine.flap_window.get(),
        alerts_ttl: raw.alerts.ttl.get(),
        self_check: !raw.engine.self_check.is_empty(),
    })
}

/// SHA-256 of the rule as configured (canonical JSON of the parsed section).
fn checksum(r: &crate::config::schema::RuleConfig) -> String {
    let json = serde_json::to_string(r).unwrap_or_default();
    hex::encode(Sha256::digest(json.as_bytes()))
}
