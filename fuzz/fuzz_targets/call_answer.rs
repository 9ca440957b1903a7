//! The call probe's parsers never panic: a response or request to the
//! INVITE (dialog fields, body), the SDP answer, a digest challenge, an RTP
//! packet (and the receiver's figures stay in bounds).
#![no_main]

use continuity_agent::probe::call::{dialog, digest, rtp, sdp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(dialog::Incoming::Response(r)) = dialog::parse_incoming(data) {
        let _ = sdp::parse_answer(&r.body);
    }
    let _ = sdp::parse_answer(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = digest::parse_challenge(s);
    }
    if let Some(h) = rtp::parse(data) {
        let mut rx = rtp::Receiver::default();
        rx.on_packet(&h, std::time::Duration::from_millis(20));
        rx.on_packet(&h, std::time::Duration::ZERO);
        let s = rx.stats();
        assert!((0.0..=1.0).contains(&s.loss));
    }
});
