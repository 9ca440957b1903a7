//! `[[rules]]`: references, timings and the compiled condition.

use std::collections::BTreeSet;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::condition;
use super::shared::{IDENT, duration_range, unknown_profile};
use crate::config::load::Cx;
use crate::config::schema::*;
use crate::domain::ProbeHealth;
use crate::engine::expr::Expr;
use crate::engine::spec::{ProbeSpec, RuleSpec};

pub(super) fn rules(
    cx: &mut Cx,
    raw: &[RuleConfig],
    profile_names: &BTreeSet<String>,
    probe_ids: &[String],
    probe_specs: &[ProbeSpec],
    alert_inputs: bool,
) -> Vec<RuleSpec> {
    let ids: Vec<&str> = probe_ids.iter().map(String::as_str).collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("rules[{}] ({})", cx.index("rules", i), r.name);
        if !IDENT.is_match(&r.name) {
            cx.err(
                format!("{key}.name"),
                "must be 1-64 letters, digits, '.', '_' or '-'",
            );
        }
        if !seen.insert(r.name.clone()) {
            cx.err(
                format!("{key}.name"),
                format!("duplicate rule name {:?}", r.name),
            );
        }
        if !profile_names.contains(&r.profile) {
            cx.err(
                format!("{key}.profile"),
                unknown_profile(&r.profile, profile_names),
            );
        }
        duration_range(
            cx,
            &format!("{key}.for"),
            r.for_.get(),
            Duration::ZERO,
            Duration::from_secs(3600),
        );
        duration_range(
            cx,
            &format!("{key}.clear_for"),
            r.clear_for.get(),
            Duration::ZERO,
            Duration::from_secs(24 * 3600),
        );
        duration_range(
            cx,
            &format!("{key}.min_active"),
            r.min_active.get(),
            Duration::ZERO,
            Duration::from_secs(24 * 3600),
        );
        if r.clear_for.get().is_zero() {
            cx.warn(format!("{key}.clear_for"), "0s: calls come back the instant the condition clears, with no proof the recovery holds");
        }
        match condition::compile(&r.when, &format!("{key}.when"), &ids) {
            Err(errs) => errs.into_iter().for_each(|e| cx.err(e.path, e.reason)),
            Ok(when) => {
                if r.for_.get().is_zero()
                    && let Some(probe) = single_fall_one_trigger(&when, probe_specs)
                {
                    cx.warn(
                            format!("{key}.for"),
                            format!("0s with probe {probe:?} (fall = 1): one failed check switches real calls to the fallback; raise fall or for"),
                        );
                }
                if when.uses_alerts() && !when.uses_probes() && !alert_inputs {
                    cx.warn(format!("{key}.when"), "uses only alerts, but no [webhooks.*] source or API token with the alerts scope is configured");
                }
                out.push(RuleSpec {
                    name: r.name.clone(),
                    profile: r.profile.clone(),
                    priority: r.priority,
                    for_: r.for_.get(),
                    clear_for: r.clear_for.get(),
                    min_active: r.min_active.get(),
                    when,
                    checksum: checksum(r),
                });
            }
        }
    }
    out
}

/// A `down` leaf that a single probe with `fall = 1` can satisfy on its own.
fn single_fall_one_trigger(e: &Expr, specs: &[ProbeSpec]) -> Option<String> {
    match e {
        Expr::Probes {
            state: ProbeHealth::Down,
            probes,
            at_least,
            ..
        } => {
            let needed = at_least.map(|n| n as usize).unwrap_or(probes.len());
            if needed != 1 {
                return None;
            }
            probes
                .iter()
                .find(|id| specs.iter().any(|s| &s.id == *id && s.fall == 1))
                .cloned()
        }
        Expr::Probes { .. } | Expr::Alert { .. } | Expr::Not(_) => None,
        Expr::Any(v) => v.iter().find_map(|c| single_fall_one_trigger(c, specs)),
        Expr::All(v) if v.len() == 1 => single_fall_one_trigger(&v[0], specs),
        Expr::All(_) => None,
    }
}

/// Ties persisted rule state to the rule that produced it (gatus' `Checksum()`).
fn checksum(r: &RuleConfig) -> String {
    let json = serde_json::to_vec(r).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..8])
}
