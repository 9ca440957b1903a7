//! Loading a configuration never panics, whatever the TOML: every problem is
//! an error naming its key.
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::config(data));
