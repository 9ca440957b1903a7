//! Cost of the SIP OPTIONS hot path per ping, without the network: build a
//! fresh request, parse the answer, match it to its transaction.
//!
//! Cases:
//! - `build_options`: `OptionsRequest::new`, a request laid out from
//!   scratch (the eleven header lines, then new branch, Call-ID, tag and
//!   CSeq from the thread RNG), as a probe's own task sends it (TCP, TLS);
//! - `renew_options`: `RequestTemplate::renew`, the identifiers written into
//!   a request laid out once, as the SIP/UDP fleet sends each ping;
//! - `parse_200_ok`: `parse_response` on a 200 OK as sipp's UAS sends it
//!   (the answer to the request built above: Via with `received`/`rport`,
//!   From, To with tag, Call-ID, CSeq, Contact, Content-Length);
//! - `parse_503_folded`: a 503 with a folded header line and a body, the
//!   slower parser path;
//! - `match_answer`: `TransactionKey::answered_by` on a parsed answer (what
//!   the UDP demultiplexer runs per datagram once it found the branch);
//! - `round_trip`: renew, parse, match: the per-ping codec cost the SIP
//!   benchmark's CPU figure contains (`bench/sip.rs`, BENCHMARKS.md).
//!
//! Run: `cargo bench --bench sip_codec` (`bench/run.sh sip_codec` adds it to
//! BENCHMARKS.md's criterion table).

use std::hint::black_box;
use std::net::SocketAddr;

use continuity_agent::probe::sip::{
    OptionsRequest, RequestParams, RequestTemplate, SipTarget, Transport, parse_response,
    parse_target,
};
use criterion::{Criterion, criterion_group, criterion_main};

fn target() -> SipTarget {
    parse_target("sip:trunk-0042.voice.example.net:5060;transport=udp").expect("target parses")
}

fn local() -> SocketAddr {
    "192.0.2.10:40123".parse().expect("address parses")
}

fn params(target: &SipTarget) -> RequestParams<'_> {
    RequestParams {
        target,
        transport: Transport::Udp,
        local: local(),
        from_user: None,
    }
}

fn request(target: &SipTarget) -> OptionsRequest {
    OptionsRequest::new(&params(target))
}

/// The answer sipp's UAS scenario gives to `req`: its Via (with the
/// received/rport a real UAS adds), From, To with a tag, Call-ID and CSeq.
fn answer_to(req: &OptionsRequest) -> Vec<u8> {
    let text = String::from_utf8(req.bytes.clone()).expect("request is text");
    let header = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("request has {name}"))
            .to_string()
    };
    let via = header("Via:").replace(";rport", ";received=192.0.2.10;rport=40123");
    format!(
        "SIP/2.0 200 OK\r\n\
         {via}\r\n\
         {from}\r\n\
         {to};tag=4242SIPpTag011\r\n\
         {call_id}\r\n\
         {cseq}\r\n\
         Contact: <sip:198.51.100.7:5060;transport=UDP>\r\n\
         Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n\
         Content-Length: 0\r\n\r\n",
        from = header("From:"),
        to = header("To:"),
        call_id = header("Call-ID:"),
        cseq = header("CSeq:"),
    )
    .into_bytes()
}

const FOLDED_503: &[u8] = b"SIP/2.0 503 Service Unavailable\r\n\
    Via: SIP/2.0/UDP 192.0.2.10:40123;branch=z9hG4bKabcdefghijklmnop;received=192.0.2.10;rport=40123\r\n\
    From: <sip:continuity-agent@192.0.2.10:40123>;tag=abcdefghij\r\n\
    To: <sip:trunk-0042.voice.example.net:5060>;tag=peer-tag\r\n\
    Call-ID: abcdefghijklmnopqrst@continuity-agent\r\n\
    CSeq: 123456 OPTIONS\r\n\
    Retry-After: 30\r\n\
    Warning: 399 sbc.example.net \"overloaded,\r\n \
     shedding OPTIONS\"\r\n\
    Content-Type: text/plain\r\n\
    Content-Length: 12\r\n\r\n\
    maintenance\n";

fn bench(c: &mut Criterion) {
    let target = target();
    let req = request(&target);
    let answer = answer_to(&req);
    let parsed = parse_response(&answer).expect("the answer parses");
    assert!(
        req.key.answered_by(&parsed),
        "the answer matches its request"
    );
    assert!(parse_response(FOLDED_503).is_ok(), "the 503 parses");

    c.bench_function("build_options", |b| {
        b.iter(|| black_box(request(black_box(&target))))
    });
    let mut template = RequestTemplate::new(&params(&target));
    c.bench_function("renew_options", |b| {
        b.iter(|| black_box(black_box(&mut template).renew()))
    });
    c.bench_function("parse_200_ok", |b| {
        b.iter(|| black_box(parse_response(black_box(&answer))))
    });
    c.bench_function("parse_503_folded", |b| {
        b.iter(|| black_box(parse_response(black_box(FOLDED_503))))
    });
    c.bench_function("match_answer", |b| {
        b.iter(|| black_box(req.key.answered_by(black_box(&parsed))))
    });
    c.bench_function("round_trip", |b| {
        b.iter(|| {
            black_box(black_box(&mut template).renew());
            // The answer is the first request's, so the match runs in full
            // (a fresh request's branch would fail it at the first field).
            let parsed = parse_response(black_box(&answer)).ok();
            black_box(parsed.is_some_and(|p| req.key.answered_by(&p)))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
