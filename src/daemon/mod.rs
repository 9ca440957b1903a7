//! The running agent: wires config, store, engine, probes, calendar, actuator
//! and HTTP API together around one event loop.

mod run;

pub use run::{DaemonError, EVENT_QUEUE, Running, run, run_with};
