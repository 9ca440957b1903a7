//! `CompiledRule`: everything the engine keeps for one rule besides its
//! `RuleSpec`, in one place instead of parallel vectors indexed by rule.
//!
//! Built once per rule in `Engine::new`: the condition with probe ids
//! resolved to indices, what it reads (so an input change re-evaluates only
//! the rules that read it), the cached truth, and the rule's hysteresis state.

use std::collections::HashMap;

use super::eval::{Node, Tri};
use super::rule::RuleState;
use super::spec::RuleSpec;

/// A rule's condition, cached until one of its inputs changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Truth {
    /// With live probe states.
    pub live: Tri,
    /// With probe leaves masked to `Unknown` (blind guard, maintenance).
    pub masked: Tri,
}

#[derive(Clone, Debug)]
pub(super) struct CompiledRule {
    /// The condition, probe ids resolved to indices.
    pub node: Node,
    /// Indices of the probes the condition reads, sorted, no duplicates.
    pub probes: Vec<usize>,
    pub reads_alerts: bool,
    /// The condition as of the last `Engine::refresh_truth`.
    pub truth: Truth,
    /// An input of the condition changed since `truth` was computed.
    pub dirty: bool,
    /// Phase and timers; what the snapshot persists for this rule.
    pub state: RuleState,
}

impl CompiledRule {
    /// A fresh rule: inactive, its truth still to be computed.
    pub fn new(spec: &RuleSpec, probe_index: &HashMap<String, usize>) -> CompiledRule {
        let node = Node::compile(&spec.when, probe_index);
        let mut probes = Vec::new();
        node.probe_indices(&mut probes);
        probes.sort_unstable();
        probes.dedup();
        CompiledRule {
            reads_alerts: node.uses_alerts(),
            node,
            probes,
            truth: Truth {
                live: Tri::False,
                masked: Tri::False,
            },
            dirty: true,
            state: RuleState::default(),
        }
    }

    /// Whether the condition reads any probe (the blind guard, maintenance
    /// windows and restored probe states only affect such rules).
    pub fn reads_probes(&self) -> bool {
        !self.probes.is_empty()
    }
}
