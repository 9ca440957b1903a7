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
//! - `document.rs`: the stored document: the engine snapshot plus the last
//!   queued input applied and the alerts' event-time memory.
//! - `gate.rs`: `StartGate`, when the actuator may start after a fresh start.
//! - `supervise.rs`: the actuator runs supervised (the agent exits 1 if it
//!   dies), one per leadership term, only while this replica leads.
//! - `reload.rs`: `Reloader`, a configuration reload (SIGHUP, `POST /-/reload`)
//!   validated, refused whole or applied in place without losing state.
//!
//! Leadership comes from `crate::cluster`: the loop hears of each change,
//! restores the engine from the store when it takes the lease, and stops
//! the actuator and snapshot writes when it loses it.
//!
//! Webhooks and operator changes reach the loop through the store's durable
//! input queue (`store::inputs`); API requests that need an answer as
//! `server::control::Control` messages.

mod account;
mod announce;
mod document;
mod event_loop;
mod gate;
mod inputs;
mod persist;
mod reload;
mod restore;
mod rlimit;
mod run;
mod supervise;

pub use run::{DaemonError, EVENT_QUEUE, Running, RunningAccount, run, run_with};
