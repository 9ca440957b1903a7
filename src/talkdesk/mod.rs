//! Everything that talks to Talkdesk, and a faithful stand-in for it.
//!
//! - [`client`]: the four Fallback Experience calls over an OAuth 2.0
//!   client-credentials token ([`auth`]), with typed errors ([`error`]) and
//!   the wire JSON kept apart from the domain types ([`wire`]).
//!   [`Client::from_config`] is the one way to build it from `[talkdesk]`,
//!   for the daemon and the break-glass commands alike.
//! - [`actuator`]: converges Talkdesk to the engine's desired state. Its task
//!   loop ties together [`plan`] (what to write, given what Talkdesk has: a
//!   pure function), [`apply`] (one attempt over HTTP: reads, writes,
//!   `dry_run`, fencing, retry with backoff and jitter) and [`drift`] (the
//!   periodic read-back, `on_drift`, and drift that happened while the agent
//!   was away).
//! - [`breakglass`]: the direct half of the `talkdesk get|apply|activate|deactivate`
//!   CLI commands (`server::client::breakglass` tries the running agent first).
//! - [`online`]: `check-config --online`, a read-only proof that the
//!   credentials and paths work.
//! - [`simulator`]: an in-memory Talkdesk (token endpoint, settings,
//!   activation) with fault injection and a journal, for tests and the demo.
//!
//! Wiring, as the daemon does it:
//!
//! ```no_run
//! # use std::{collections::BTreeMap, sync::Arc};
//! # use continuity_agent::{config::{DEFAULT_ACCOUNT, schema::TalkdeskConfig}, domain::{Desired, Profile}, telemetry::{Metrics, audit::NoAudit}};
//! # use continuity_agent::talkdesk::{Actuator, ActuatorOptions, Client};
//! # async fn wire(cfg: TalkdeskConfig, profiles: BTreeMap<String, Profile>) -> Result<(), Box<dyn std::error::Error>> {
//! // The handle on one account's series (`continuity_*{account="default"}`).
//! let metrics = Metrics::new().account(DEFAULT_ACCOUNT);
//! let client = Client::from_config(&cfg, "replica-a", metrics.clone(), Arc::new(NoAudit))?;
//! let opts = ActuatorOptions::from_config(&cfg, /* dry_run */ false);
//! let actuator = Actuator::new(client, opts, profiles, metrics, Arc::new(NoAudit));
//! let status = actuator.handle(); // for /v1/status: status.status()
//! let (desired_tx, desired_rx) = tokio::sync::watch::channel(Desired::Inactive);
//! let (events_tx, _events_rx) = tokio::sync::mpsc::channel(256);
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! tokio::spawn(actuator.run(desired_rx, events_tx, shutdown.clone()));
//! desired_tx.send_replace(Desired::Active { profile: "backup-site".into() });
//! # Ok(()) }
//! ```
//!
//! **Architecture invariant:** only this module calls the Talkdesk API, and
//! only the actuator and the break-glass commands call the client. Secrets
//! (client secret, access tokens) are `SecretString`s and never reach `Debug`,
//! logs, errors or audit records.

pub mod actuator;
pub mod apply;
pub mod auth;
pub mod breakglass;
pub mod client;
pub mod drift;
pub mod error;
mod observe;
pub mod online;
pub mod plan;
pub mod simulator;
pub mod wire;

pub use actuator::{Actuator, ActuatorHandle, ActuatorOptions, ActuatorStatus};
pub use client::{Client, ClientConfig};
pub use error::{ApiErrorBody, FieldError, Op, TalkdeskError};
