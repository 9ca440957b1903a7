//! The running agent: wires config, store, engine, probes, calendar, actuator
//! and HTTP API together around one event loop.
//!
//! - `run.rs`: [`run_with`], the story: restore -> build -> spawn inputs ->
//!   serve -> loop -> drain.
//! - `restore.rs`: store -> engine.
//! - `inputs.rs`: probes, self-check and calendar, which only send events.
//! - `event_loop.rs`: the loop, the only code that mutates the engine, and
//!   the execution of the engine's commands.
//! - `persist.rs`: `Persister`, the one place that writes the snapshot (and
//!   the readiness `/readyz` reports).
//! - `gate.rs`: `StartGate`, when the actuator may start after a fresh start.
//! - `supervise.rs`: the actuator runs supervised (the agent exits 1 if it
//!   dies), one per leadership term, only while this replica leads.
//!
//! Leadership comes from `crate::cluster`: the loop hears of each change,
//! restores the engine from the store when it takes the lease, and stops
//! the actuator and snapshot writes when it loses it.
//!
//! API requests reach the loop as `server::control::Control` messages.

mod event_loop;
mod gate;
mod inputs;
mod persist;
mod restore;
mod run;
mod supervise;

pub use run::{DaemonError, EVENT_QUEUE, Running, run, run_with};
