//! `test-rules FILE...`: promtool-style scenario tests for rules.
//!
//! A scenario is a TOML file: a config (inline sections or `config = "path"`,
//! relative to the scenario), a timeline of inputs (probe results, alerts,
//! overrides, windows, drills, self-checks) and expectations (desired state,
//! profile, rule and probe states, flapping, reasons). It is played through
//! the real engine on virtual time; see `file.rs` for the format.
//!
//! This lives outside `engine/` because it reads files; the engine stays pure.

mod file;
mod runner;
mod spec;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use file::{Expect, Input, ScenarioFile};
pub use spec::{account_spec_from_toml, engine_spec_from_toml};

use crate::engine::EngineSpec;

#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: invalid scenario: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: invalid config: {message}", path.display())]
    Config { path: PathBuf, message: String },
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
}

/// Runs every scenario file, printing PASS/FAIL per scenario (with a diff of
/// expected vs got on failure). `Ok(true)` if all passed, `Ok(false)` if any
/// failed; `Err` for a file that cannot be read or understood (exit 2).
pub fn run_files(paths: &[PathBuf], out: &mut dyn Write) -> Result<bool, ScenarioError> {
    let mut all = true;
    let (mut passed, mut failed) = (0usize, 0usize);
    for path in paths {
        let src = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: path.clone(),
            source,
        })?;
        let ok = run_source(&src, path, out)?;
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
        all &= ok;
    }
    writeln!(out, "{passed} passed, {failed} failed")?;
    Ok(all)
}

/// Runs one scenario given its text; `path` names it and anchors `config = "..."`.
pub fn run_source(src: &str, path: &Path, out: &mut dyn Write) -> Result<bool, ScenarioError> {
    let invalid = |message: String| ScenarioError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    let mut table: toml::Table = toml::from_str(src).map_err(|e| invalid(e.to_string()))?;
    let mut scenario_part = toml::Table::new();
    for key in file::SCENARIO_KEYS {
        if let Some(v) = table.remove(*key) {
            scenario_part.insert(key.to_string(), v);
        }
    }
    let scenario: ScenarioFile = scenario_part
        .try_into()
        .map_err(|e: toml::de::Error| invalid(e.to_string()))?;
    let spec = load_spec(&scenario, table, path)?;

    let mut events = Vec::new();
    for (i, input) in scenario.input.iter().enumerate() {
        events.extend(file::events(input, i, &spec, runner::T0).map_err(&invalid)?);
    }
    check_expect_names(&scenario.expect, &spec).map_err(&invalid)?;

    let outcome = runner::run(spec, events, &scenario.expect);
    let title = scenario.name.as_deref().unwrap_or("(unnamed)");
    if outcome.failures.is_empty() {
        writeln!(out, "PASS  {}: {title}", path.display())?;
        return Ok(true);
    }
    writeln!(out, "FAIL  {}: {title}", path.display())?;
    for f in &outcome.failures {
        writeln!(out, "  {f}")?;
    }
    writeln!(out, "  timeline:")?;
    for line in &outcome.timeline {
        writeln!(out, "    {line}")?;
    }
    Ok(false)
}

fn load_spec(
    s: &ScenarioFile,
    rest: toml::Table,
    path: &Path,
) -> Result<EngineSpec, ScenarioError> {
    let config_err = |message: String| ScenarioError::Config {
        path: path.to_path_buf(),
        message,
    };
    match &s.config {
        Some(rel) => {
            if !rest.is_empty() {
                let keys: Vec<&String> = rest.keys().collect();
                return Err(ScenarioError::Invalid {
                    path: path.to_path_buf(),
                    message: format!(
                        "`config` is set, so config sections cannot be inlined (found {keys:?})"
                    ),
                });
            }
            let cfg_path = path.parent().unwrap_or(Path::new(".")).join(rel);
            let src = std::fs::read_to_string(&cfg_path).map_err(|source| ScenarioError::Read {
                path: cfg_path.clone(),
                source,
            })?;
            account_spec_from_toml(&src, &cfg_path.display().to_string(), s.account.as_deref())
                .map_err(config_err)
        }
        None => {
            let src = toml::to_string(&rest).map_err(|e| config_err(e.to_string()))?;
            account_spec_from_toml(&src, &path.display().to_string(), s.account.as_deref())
                .map_err(config_err)
        }
    }
}

fn check_expect_names(expects: &[Expect], spec: &EngineSpec) -> Result<(), String> {
    for (i, e) in expects.iter().enumerate() {
        for (name, state) in e.rules.iter().flatten() {
            if !spec.rules.iter().any(|r| &r.name == name) {
                return Err(format!("expect[{i}].rules: unknown rule {name:?}"));
            }
            if !["inactive", "pending", "firing", "clearing"].contains(&state.as_str()) {
                return Err(format!(
                    "expect[{i}].rules.{name}: {state:?} is not inactive, pending, firing or clearing"
                ));
            }
        }
        for (id, state) in e.probes.iter().flatten() {
            if !spec.probes.iter().any(|p| &p.id == id) {
                return Err(format!("expect[{i}].probes: unknown probe {id:?}"));
            }
            if !["unknown", "up", "down"].contains(&state.as_str()) {
                return Err(format!(
                    "expect[{i}].probes.{id}: {state:?} is not unknown, up or down"
                ));
            }
        }
        for (id, c) in e.cadence.iter().flatten() {
            if !spec.probes.iter().any(|p| &p.id == id) {
                return Err(format!("expect[{i}].cadence: unknown probe {id:?}"));
            }
            if c != "fast" && c != "normal" {
                return Err(format!(
                    "expect[{i}].cadence.{id}: {c:?} is not fast or normal"
                ));
            }
        }
        if let Some(d) = &e.desired
            && d != "active"
            && d != "inactive"
        {
            return Err(format!(
                "expect[{i}].desired: {d:?} is not active or inactive"
            ));
        }
    }
    Ok(())
}

/// `45s`, `2m 5s`, `0s`.
fn fmt_offset(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        humantime::format_duration(d).to_string().replace(' ', "")
    }
}
