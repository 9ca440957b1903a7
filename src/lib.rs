//! continuity-agent keeps a contact center reachable when inbound call handling
//! breaks: it probes trunks and dependencies, receives alerts, decides with
//! hysteresis whether Talkdesk's Fallback Experience must be on, and converges
//! Talkdesk to that decision.
//!
//! Components (see ARCHITECTURE.md for the invariants):
//! - [`config`]: the TOML file and environment, parsed once, every error collected.
//! - [`engine`]: the pure decision state machine (no I/O, no clock).
//! - [`probe`]: SIP OPTIONS, HTTP, status page and agents probes, their scheduler and the self-check.
//! - [`cluster`]: leadership among replicas (a lease per account with an epoch) and the write fence.
//! - [`domain`]: types every component shares (profiles, desired/actual state, timestamps).
//! - [`talkdesk`]: the Talkdesk client, actuator, break-glass commands and API simulator.
//! - [`telemetry`]: the metrics registry and audit records.
//! - [`alerts`]: the alert webhook receivers (`POST /v1/alerts/{source}`).
//! - [`ruletest`]: `test-rules`, promtool-style scenario tests for the engine.

pub mod alerts;
pub mod calendar;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod probe;
pub mod ruletest;
pub mod server;
pub mod store;
pub mod talkdesk;
pub mod telemetry;
