//! The SIP response parser never panics, whatever the datagram; the target
//! parser never panics either, and what it accepts prints back to itself.
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::sip_response(data));
