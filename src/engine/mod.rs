//! The decision engine: a pure state machine.
//!
//! `Engine::step(&mut self, event, now) -> Vec<Command>`.
//!
//! **Invariant:** nothing in `engine/` does I/O, reads a clock or draws a random
//! number. Time arrives as an argument; the same events at the same times give
//! the same commands, so every timing rule is testable with virtual time and
//! every decision can be replayed from the audit log.

pub mod event;
pub mod expr;
pub mod matcher;
pub mod spec;

pub use event::{Cause, Command, Event, Override, Reason};
pub use expr::Expr;
pub use spec::{EngineSpec, ProbeSpec, RuleSpec};
