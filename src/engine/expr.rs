//! The rule language as a typed AST: what the engine evaluates.
//!
//! Leaves: `{ down = "GLOB" }` (every matching probe down), `{ down = "GLOB",
//! at_least = N }` (at least N matching probes down), likewise `up` and
//! `unknown`; `{ alert = [matchers...] }` (some active alert matches all
//! matchers). Combinators: `all`, `any`, `not`.
//!
//! The configuration compiles rule conditions into this type
//! (`config::validate::condition`), resolving globs against the configured
//! probe ids once, so the engine evaluates a rule without touching a glob or
//! a regex per probe result.

use crate::domain::ProbeHealth;

use super::matcher::Matcher;

#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// Probe-state leaf. `probes` are the ids the glob matched (never empty).
    Probes {
        state: ProbeHealth,
        glob: String,
        probes: Vec<String>,
        at_least: Option<u32>,
    },
    /// Alert leaf: true while some active alert satisfies every matcher.
    Alert {
        matchers: Vec<Matcher>,
    },
    All(Vec<Expr>),
    Any(Vec<Expr>),
    Not(Box<Expr>),
}

impl Expr {
    /// Whether this expression depends on probe states (used by the blind guard
    /// and maintenance windows, which suppress probe-driven activation only).
    pub fn uses_probes(&self) -> bool {
        match self {
            Expr::Probes { .. } => true,
            Expr::Alert { .. } => false,
            Expr::All(v) | Expr::Any(v) => v.iter().any(Expr::uses_probes),
            Expr::Not(e) => e.uses_probes(),
        }
    }

    /// Whether this expression depends on alerts.
    pub fn uses_alerts(&self) -> bool {
        match self {
            Expr::Probes { .. } => false,
            Expr::Alert { .. } => true,
            Expr::All(v) | Expr::Any(v) => v.iter().any(Expr::uses_alerts),
            Expr::Not(e) => e.uses_alerts(),
        }
    }

    /// Every probe id this expression reads.
    pub fn probe_ids(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_probes(&mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    fn collect_probes<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Probes { probes, .. } => out.extend(probes.iter().map(String::as_str)),
            Expr::Alert { .. } => {}
            Expr::All(v) | Expr::Any(v) => v.iter().for_each(|e| e.collect_probes(out)),
            Expr::Not(e) => e.collect_probes(out),
        }
    }
}
