//! The call probe's parsers never panic: a response or request to the
//! INVITE (dialog fields, body), the SDP answer, a digest challenge, an RTP
//! packet (and the receiver's figures stay in bounds).
#![no_main]

#[path = "../checks.rs"]
#[allow(dead_code)]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::call_answer(data));
