//! The running agent: wires config, store, engine, probes, calendar, actuator
//! and HTTP API together around one event loop.

pub mod control;
