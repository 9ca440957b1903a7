//! Building the engine's spec from config TOML for scenarios.
//!
//! Scenarios go through the agent's own loader and validator
//! (`config::from_toml_str`, which does not require Talkdesk credentials), so
//! a scenario that passes describes a config `check-config` accepts, and rule
//! checksums are the ones the daemon persists.

use crate::engine::spec::EngineSpec;

/// Parses and validates config TOML and returns the engine's view of it; on
/// error, every problem found, one per line.
pub fn engine_spec_from_toml(src: &str, origin: &str) -> Result<EngineSpec, String> {
    account_spec_from_toml(src, origin, None)
}

/// Like [`engine_spec_from_toml`], for one account of a configuration with
/// `[[accounts]]` (the scenario's `account`); `None` is the only account.
pub fn account_spec_from_toml(
    src: &str,
    origin: &str,
    account: Option<&str>,
) -> Result<EngineSpec, String> {
    let config = crate::config::from_toml_str(src, origin)
        .map_err(|e| e.to_string().trim_end().to_string())?;
    config
        .account_view(account)
        .map(|view| view.engine_spec())
        .map_err(|why| format!("{origin}: {why} with `account = \"ID\"` in the scenario"))
}
