//! The decision engine: a pure state machine.
//!
//! `Engine::step(&mut self, event, now) -> Vec<Command>`.
//!
//! **Invariant:** nothing in `engine/` does I/O, reads a clock or draws a random
//! number. Time arrives as an argument; the same events at the same times give
//! the same commands, so every timing rule is testable with virtual time and
//! every decision can be replayed from the audit log.
//!
//! Semantics (DESIGN section 3, made exact):
//! - Probe: `unknown -> up` after `rise` consecutive successes, `-> down` after
//!   `fall` consecutive failures; fast cadence while unknown, or while the
//!   latest results disagree with the health.
//! - Rule: `inactive -> pending -> firing -> clearing -> inactive`; clearing
//!   ends after `clear_for` false AND the fallback on for `min_active` (which
//!   only binds while it is on). Unknown probes are not down.
//! - Decision: override > drill > flap latch > highest-priority firing or
//!   clearing rule (ties: config order). The flap detector counts automatic
//!   on/off transitions (the rules' own decision switching the fallback on or
//!   off, masked or not by an override or drill; not profile switches, not
//!   operator actions) within `flap_window`; more than `flap_max` latches the
//!   last automatic profile on until `FlapRelease` or `flap_window` without
//!   one. While latched the decision's cause is `flap`, even when latching
//!   changed nothing on the wire.
//! - Blind guard (self-check failing): rules that read probes see probe
//!   leaves as *unknown* (Kleene logic). If alerts alone decide the condition
//!   the rule proceeds with that value; otherwise it is frozen in its phase,
//!   and when it thaws its running `for`/`clear_for` timer restarts (time
//!   spent blind is no evidence). No race: a rule due to fire (inactive with
//!   `for = 0`, or pending at its `for` deadline) while a probe it reads is
//!   down on failures newer than the last self-check verdict is held in
//!   pending (`Command::SelfCheckNeeded` asks the daemon to check now) until
//!   a verdict arrives (blind: it freezes; ok: it fires), at most
//!   `self_check_wait` (then it fires on the probe evidence, audited).
//! - Maintenance window: an inactive or pending rule that reads probes sees
//!   probe leaves as unknown and only a definite true counts, so probes can
//!   never newly activate it (a pending one drops to inactive and pends
//!   afresh after the window). Firing/clearing rules evaluate normally, so an
//!   outage already handled stays handled and still clears.
//! - Restart: restored probe states are evidence from before the restart.
//!   Until a fresh result confirms a restored state (agrees with it, or a
//!   transition replaces it), a rule that is not firing and whose condition
//!   depends on that probe is *held*: phase and timers kept (as Prometheus
//!   restores `for` state), but it does not advance, so hours-old evidence
//!   can neither newly switch calls away nor bring them back. A firing rule
//!   keeps using the restored states, so a restart never switches the
//!   fallback off either. A restore at the snapshot's own instant (no time
//!   passed) changes nothing.
//! - Alerts expire `alerts_ttl` after their last delivery; a duplicate
//!   delivery emits nothing. Override expiry emits `SetDesired` with cause
//!   `override_expired` when the state changes (an audit line always).
//!
//! Code map:
//! - `probe.rs`: per-probe rise/fall hysteresis and fast cadence;
//! - `rule.rs`: per-rule inactive/pending/firing/clearing hysteresis;
//! - `eval.rs`: three-valued evaluation of conditions and their explanations;
//! - `compiled.rs`: `CompiledRule`, all the engine keeps per rule besides its spec
//!   (resolved condition, what it reads, cached truth, hysteresis state);
//! - `machine.rs`: `Engine`, `step`, blind-guard and maintenance semantics, flap
//!   detector, `has_fresh_evidence`;
//! - `inputs.rs`: applying events (one `on_*` handler per event), expiring
//!   overrides/alerts/windows/drills;
//! - `decide.rs`: precedence (written once, read by the decision and by
//!   `Engine::mode`), cause and reasons of `SetDesired`;
//! - `view.rs`: the `/v1/status` picture; `snapshot.rs`: persistence and restore.

mod compiled;
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

pub use decide::Mode;
pub use event::{Cause, Command, Event, Override, Reason};
pub use expr::Expr;
pub use machine::Engine;
pub use probe::ProbeState;
pub use rule::{RulePhase, RuleState};
pub use snapshot::Snapshot;
pub use spec::{EngineSpec, ProbeSpec, RuleSpec};
pub use view::EngineView;
