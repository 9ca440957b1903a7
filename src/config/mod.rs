//! Configuration: a TOML file, then `CONTINUITY_AGENT_<SECTION>__<KEY>`
//! environment variables, parsed once and validated as a whole.
//!
//! Loading never stops at the first problem: every section, every probe and
//! every rule is deserialized on its own, then validated, and all errors are
//! returned together, each naming the file, the key path and the reason.

pub mod schema;
pub mod types;

pub use schema::RawConfig;
pub use types::{ByteSize, Dur};
