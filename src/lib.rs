//! continuity-agent keeps a contact center reachable when inbound call handling
//! breaks: it probes trunks and dependencies, receives alerts, decides with
//! hysteresis whether Talkdesk's Fallback Experience must be on, and converges
//! Talkdesk to that decision.
//!
//! Components (see ARCHITECTURE.md for the invariants):
//! - [`config`]: the TOML file and environment, parsed once, every error collected.
//! - [`engine`]: the pure decision state machine (no I/O, no clock).
//! - [`domain`]: types every component shares (profiles, desired/actual state, timestamps).
//! - [`telemetry`]: the metrics registry and audit records.
//! - [`alerts`]: the alert webhook receivers (`POST /v1/alerts/{source}`).

pub mod config;
pub mod domain;
pub mod engine;
pub mod telemetry;

pub mod alerts;
