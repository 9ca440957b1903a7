//! CloudEvents structured mode (single and batch) on the generic route never
//! panics, whatever the bytes.
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::cloudevents(data));
