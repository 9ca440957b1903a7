//! Everything that talks to Talkdesk, and a faithful stand-in for it.
//!
//! - [`client`]: the four Fallback Experience calls over an OAuth 2.0
//!   client-credentials token ([`auth`]), with typed errors ([`error`]) and
//!   the wire JSON kept apart from the domain types ([`wire`]).
//! - [`actuator`]: converges Talkdesk to the engine's desired state:
//!   idempotent, retried with backoff and jitter, reconciled periodically.
//! - [`breakglass`]: the `talkdesk get|apply|activate|deactivate` CLI commands.
//! - [`simulator`]: an in-memory Talkdesk (token endpoint, settings,
//!   activation) with fault injection and a journal, for tests and the demo.
//!
//! **Architecture invariant:** only this module calls the Talkdesk API, and
//! only the actuator and the break-glass commands call the client. Secrets
//! (client secret, access tokens) are `SecretString`s and never reach `Debug`,
//! logs, errors or audit records.

pub mod actuator;
pub mod auth;
pub mod breakglass;
pub mod client;
pub mod error;
mod observe;
pub mod simulator;
pub mod wire;

pub use actuator::{Actuator, ActuatorHandle, ActuatorOptions, ActuatorStatus};
pub use client::{Client, ClientConfig};
pub use error::{ApiErrorBody, FieldError, Op, TalkdeskError};
