//! continuity-agent keeps a contact center reachable when inbound call handling
//! breaks: it probes trunks and dependencies, receives alerts, decides with
//! hysteresis whether Talkdesk's Fallback Experience must be on, and converges
//! Talkdesk to that decision.
//!
//! Modules (ARCHITECTURE.md has the code map and the invariants):
//! - [`config`]: the TOML file and environment, parsed once, every error collected.
//! - [`engine`]: the pure decision state machine (no I/O, no clock).
//! - [`daemon`]: the running agent: restore, build, spawn inputs, serve, loop, drain.
//! - [`cluster`]: leadership among replicas (a lease per account with an epoch) and the write fence.
//! - [`probe`]: SIP OPTIONS, HTTP, status page and agents probes, their configuration,
//!   scheduler and the self-check.
//! - [`alerts`]: the alert webhook receivers (`POST /v1/alerts/{source}`).
//! - [`server`]: the HTTP layer (errors, tokens, bodies, the API routes) and the CLI's API client.
//! - [`notify`]: notifications (Slack, Teams, PagerDuty, webhooks) of decisions and trouble.
//! - [`talkdesk`]: the Talkdesk client, actuator (plan, apply, drift), break-glass commands and
//!   API simulator.
//! - [`store`]: persistence (SQLite, PostgreSQL): engine snapshot, audit log, durable input queue
//!   and the leadership lease.
//! - [`telemetry`]: the metrics registry, audit records, logging.
//! - [`calendar`]: maintenance windows and drills as calendar jobs.
//! - [`domain`]: types every component shares (profiles, desired/actual state, timestamps).
//! - [`tls`]: the one TLS client configuration (OS trust store parsed once) every HTTPS client shares.
//! - [`backoff`]: the retry delay (exponential, jitter, `Retry-After`) of every retry loop.
//! - [`ruletest`]: `test-rules`, promtool-style scenario tests for the engine.
//! - [`demo`]: the zero set-up demo.
//! - [`failpoint`]: named places where tests of the real binary make it fail (debug builds only).

pub mod alerts;
pub mod allocator;
pub mod backoff;
pub mod calendar;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod demo;
pub mod domain;
pub mod engine;
pub mod failpoint;
pub mod notify;
pub mod probe;
pub mod ruletest;
pub mod server;
pub mod store;
pub mod talkdesk;
pub mod telemetry;
pub mod tls;
