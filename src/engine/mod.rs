//! The decision engine: a pure state machine.
//!
//! `Engine::step(&mut self, event, now) -> Vec<Command>`.
//!
//! **Invariant:** nothing in `engine/` does I/O, reads a clock or draws a random
//! number. Time arrives as an argument; the same events at the same times give
//! the same commands, so every timing rule is testable with virtual time and
//! every decision can be replayed from the audit log.
//!
//! Code map:
//! - `probe.rs`: per-probe rise/fall hysteresis and fast cadence;
//! - `rule.rs`: per-rule inactive/pending/firing/clearing hysteresis;
//! - `eval.rs`: three-valued evaluation of conditions and their explanations;
//! - `machine.rs`: `Engine`, `step`, blind-guard and maintenance semantics, flap detector;
//! - `inputs.rs`: applying events, expiring overrides/alerts/windows/drills;
//! - `decide.rs`: precedence, cause and reasons of `SetDesired`;
//! - `view.rs`: the `/v1/status` picture; `snapshot.rs`: persistence and restore.

mod decide;
pub mod eval;
pub mod event;
pub mod expr;
mod inputs;
mod machine;
pub mod matcher;
pub mod probe;
pub mod rule;
pub mod snapshot;
pub mod spec;
pub mod state;
pub mod view;

#[cfg(test)]
mod tests;

pub use event::{Cause, Command, Event, Override, Reason};
pub use expr::Expr;
pub use machine::Engine;
pub use probe::ProbeState;
pub use rule::{RulePhase, RuleState};
pub use snapshot::Snapshot;
pub use spec::{EngineSpec, ProbeSpec, RuleSpec};
pub use view::EngineView;
