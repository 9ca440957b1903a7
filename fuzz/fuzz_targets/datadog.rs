//! The datadog webhook parser never panics, whatever the bytes; when it accepts a
//! body, every update it returns is within the documented bounds.
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::datadog(data));
