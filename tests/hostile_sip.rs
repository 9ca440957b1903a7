//! Hostile SIP peers (issue 15): the agent's SIP/UDP OPTIONS probe against a
//! "trunk" this test controls, which answers every OPTIONS with an entry of a
//! generated corpus of hostile responses; spoofed replies from another host;
//! forged ICMP errors sent through a raw socket.
//!
//! Real parts: the probe is the agent's own [`SipProbe`], on both of its
//! SIP/UDP paths (its own task through the shared socket, demultiplexer and
//! `IP_RECVERR` error queue; and the fleet, which runs every probe of an
//! address literal in the daemon, on its own socket), the trunk and the
//! spoofer are real UDP sockets on loopback, and the forged ICMP messages go
//! through the kernel, which queues them on the probe's socket as it would a
//! real one (the positive controls prove the forgeries are delivered).
//!
//! What a hostile response may do:
//! - a reply that does not prove it answers the pending transaction (top Via
//!   branch, Call-ID, CSeq number and method `OPTIONS`, from the trunk's host)
//!   or that does not parse is ignored: alone it leaves the probe to time out
//!   (down, `timeout after 1s`); followed by a genuine 200 the probe is up;
//! - a matching final response is judged by its code (6xx and friends: down);
//! - whatever it carries, the detail the probe reports has no control
//!   character (terminal escapes become U+FFFD) and at most 512 characters.
//!
//! Entries the parser accepts although they are not strictly RFC 3261 are
//! labelled `Tolerated` (by design: tolerance for real SBCs); the test pins
//! them, so a change shows. Where the parser once differed from what RFC 3261
//! asks (Content-Length, folded headers), it no longer does.
//!
//! The forged-ICMP tests need a raw socket (root or CAP_NET_RAW, as in CI);
//! without one they FAIL rather than skip.
//!
//! `cargo nextest run --test hostile_sip` (`--no-capture` for the summary).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use continuity_agent::domain::ProbeOutcome;
use continuity_agent::probe::Probe;
use continuity_agent::probe::sip::{Accept, SipProbe, UdpMux, fleet, parse_target};
use futures::StreamExt;
use tokio::net::UdpSocket;
use tokio::time::Instant;

/// The trunk's host.
const TRUNK_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
/// Another host (all of 127/8 is local on Linux) that sends spoofed replies.
const SPOOF_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The source of forged ICMP errors that do not come from the trunk.
const ROGUE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// Probe timeout for the corpus: an ignored reply costs this much.
const TIMEOUT: Duration = Duration::from_secs(1);
const TIMEOUT_DETAIL: &str = "timeout after 1s";
/// The largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;
/// `ProbeOutcome` cuts details at 512 characters (plus an ellipsis).
const MAX_DETAIL_CHARS: usize = 513;

/// The two paths a SIP/UDP check can take: a probe's own task
/// (`Probe::check`, through the process-wide mux, as for named trunks) and
/// the fleet that runs every probe of an address literal in the daemon.
/// Every hostile case runs on both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    Task,
    Fleet,
}

const PATHS: [Path; 2] = [Path::Task, Path::Fleet];

async fn check_on(path: Path, probe: SipProbe) -> ProbeOutcome {
    match path {
        Path::Task => probe.check().await,
        Path::Fleet => fleet::check_once(probe)
            .await
            .expect("a literal SIP/UDP probe runs in the fleet"),
    }
}

fn probe_for(trunk: SocketAddr, timeout: Duration) -> SipProbe {
    let target = parse_target(&format!("sip:{trunk}")).expect("target");
    SipProbe::new("hostile-trunk", target, Accept::default(), timeout)
}

// ---------------------------------------------------------------------------
// The request as the trunk sees it, and replies built from it.

/// An OPTIONS request received by the test trunk.
#[derive(Clone, Debug)]
struct Req {
    raw: Vec<u8>,
    /// Value of its Via header (with branch and rport).
    via: String,
    branch: String,
    call_id: String,
    cseq: u32,
    from: String,
    to: String,
}

fn parse_req(bytes: &[u8]) -> Option<Req> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !text.starts_with("OPTIONS ") {
        return None;
    }
    let header = |name: &str| {
        text.split("\r\n").find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    let via = header("Via")?;
    let branch = via
        .split(';')
        .find_map(|p| p.strip_prefix("branch="))?
        .to_string();
    let cseq = header("CSeq")?.split_whitespace().next()?.parse().ok()?;
    Some(Req {
        raw: bytes.to_vec(),
        via,
        branch,
        call_id: header("Call-ID")?,
        cseq,
        from: header("From")?,
        to: header("To")?,
    })
}

/// A response under construction: a start line, raw header lines, a body.
#[derive(Clone)]
struct Msg {
    start: Vec<u8>,
    lines: Vec<Vec<u8>>,
    body: Vec<u8>,
    /// Whether the blank line ending the header section is there.
    terminated: bool,
}

impl Msg {
    /// A well-formed response to `r` (Via, From, To, Call-ID, CSeq, Server,
    /// Content-Length, in this order).
    fn reply(r: &Req, status: &str) -> Msg {
        Msg {
            start: status.as_bytes().to_vec(),
            lines: [
                format!("Via: {};received=127.0.0.1", r.via),
                format!("From: {}", r.from),
                format!("To: {};tag=hostile", r.to),
                format!("Call-ID: {}", r.call_id),
                format!("CSeq: {} OPTIONS", r.cseq),
                "Server: hostile-trunk".to_string(),
                "Content-Length: 0".to_string(),
            ]
            .into_iter()
            .map(String::into_bytes)
            .collect(),
            body: Vec::new(),
            terminated: true,
        }
    }

    fn ok(r: &Req) -> Msg {
        Msg::reply(r, "SIP/2.0 200 OK")
    }

    fn index(&self, name: &str) -> usize {
        self.lines
            .iter()
            .position(|l| {
                l.split(|b| *b == b':')
                    .next()
                    .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
            })
            .unwrap_or_else(|| panic!("no {name} line"))
    }

    /// Replace the (first) line of header `name`.
    fn set(mut self, name: &str, line: impl Into<Vec<u8>>) -> Msg {
        let i = self.index(name);
        self.lines[i] = line.into();
        self
    }

    fn without(mut self, name: &str) -> Msg {
        let i = self.index(name);
        self.lines.remove(i);
        self
    }

    /// Insert a line before the (first) line of header `name`.
    fn before(mut self, name: &str, line: impl Into<Vec<u8>>) -> Msg {
        let i = self.index(name);
        self.lines.insert(i, line.into());
        self
    }

    /// Insert a line after the (first) line of header `name`.
    fn after(mut self, name: &str, line: impl Into<Vec<u8>>) -> Msg {
        let i = self.index(name);
        self.lines.insert(i + 1, line.into());
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Msg {
        self.body = body.into();
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = self.start.clone();
        out.extend_from_slice(b"\r\n");
        for l in &self.lines {
            out.extend_from_slice(l);
            out.extend_from_slice(b"\r\n");
        }
        if self.terminated {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(&self.body);
        out
    }
}

/// A small deterministic generator (xorshift64*): the corpus is the same on
/// every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn token(&mut self, n: usize) -> String {
        const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        (0..n)
            .map(|_| ALNUM[(self.next() % ALNUM.len() as u64) as usize] as char)
            .collect()
    }
}

// ---------------------------------------------------------------------------
// The corpus.

/// What the probe must report for an entry sent alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Success with this 2xx code.
    Up(u16),
    /// Failure: a matching final response with this code, not accepted.
    Down(u16),
    /// The reply decides nothing: the probe times out.
    Ignored,
}

#[derive(Clone, Copy, Debug)]
enum Note {
    Plain,
    /// Accepted though not strictly RFC 3261, by design (tolerant parser).
    Tolerated(&'static str),
}

/// Given the request and an earlier, finished request: the datagrams to send.
type Build = Box<dyn Fn(&Req, &Req) -> Vec<Vec<u8>> + Send + Sync>;

struct Case {
    kind: &'static str,
    name: String,
    want: Want,
    note: Note,
    /// The reason phrase carries control characters: the detail must show
    /// them replaced (U+FFFD), proving the reason reached it sanitized.
    sanitized: bool,
    build: Build,
    /// Some datagram is over 8 KiB (run with less concurrency).
    big: bool,
}

#[derive(Default)]
struct Corpus(Vec<Case>);

impl Corpus {
    fn add(
        &mut self,
        kind: &'static str,
        name: impl Into<String>,
        want: Want,
        build: impl Fn(&Req, &Req) -> Vec<Vec<u8>> + Send + Sync + 'static,
    ) -> &mut Case {
        self.0.push(Case {
            kind,
            name: name.into(),
            want,
            note: Note::Plain,
            sanitized: false,
            build: Box::new(build),
            big: false,
        });
        self.0.last_mut().unwrap()
    }

    /// One datagram built from the request.
    fn one(
        &mut self,
        kind: &'static str,
        name: impl Into<String>,
        want: Want,
        build: impl Fn(&Req) -> Vec<u8> + Send + Sync + 'static,
    ) -> &mut Case {
        self.add(kind, name, want, move |r, _| vec![build(r)])
    }

    /// One fixed datagram.
    fn raw(&mut self, kind: &'static str, name: impl Into<String>, bytes: Vec<u8>) -> &mut Case {
        self.add(kind, name, Want::Ignored, move |_, _| vec![bytes.clone()])
    }
}

impl Case {
    fn note(&mut self, n: Note) -> &mut Case {
        self.note = n;
        self
    }
    fn sanitized(&mut self) -> &mut Case {
        self.sanitized = true;
        self
    }
}

/// A 64 KiB datagram: `head`, then `fill` up to the largest UDP payload.
fn fill_to_max(head: &[u8], fill: u8) -> Vec<u8> {
    let mut v = head.to_vec();
    v.resize(MAX_DATAGRAM, fill);
    v
}

const DUP_NOTE: &str = "RFC 3261 7.3.1/8.1.3.3: Call-ID and CSeq appear once, a UAC SHOULD discard a response with more than one Via; the parser takes the first (ours)";

fn corpus() -> Vec<Case> {
    let mut c = Corpus::default();
    let mut rng = Rng(0x5EED_CAFE_F00D_0015);

    // -- truncated: the genuine 200 OK cut at many places. Before the end of
    // "CSeq: N OPTIONS" (the last identity field) it must be ignored; after
    // it, only the blank line is missing, which the parser tolerates.
    fn cseq_end(ok: &[u8]) -> usize {
        let at = ok.windows(8).position(|w| w == b" OPTIONS").unwrap();
        at + 8
    }
    let mut back: Vec<usize> = (1..=16).collect();
    back.extend((24..=330).step_by(14));
    for k in back {
        c.one(
            "truncated",
            format!("cut {k} bytes before the end of CSeq"),
            Want::Ignored,
            move |r| {
                let ok = Msg::ok(r).bytes();
                ok[..cseq_end(&ok).saturating_sub(k)].to_vec()
            },
        );
    }
    for (name, keep) in [
        ("cut right after CSeq method", 0usize),
        ("cut after CSeq CRLF", 2),
        ("cut inside Server", 10),
    ] {
        c.one("truncated", name, Want::Up(200), move |r| {
            let ok = Msg::ok(r).bytes();
            ok[..cseq_end(&ok) + keep].to_vec()
        })
        .note(Note::Tolerated(
            "no blank line ending the header section (datagram)",
        ));
    }
    for drop in [1usize, 2, 3] {
        c.one(
            "truncated",
            format!("last {drop} bytes missing"),
            Want::Up(200),
            move |r| {
                let ok = Msg::ok(r).bytes();
                ok[..ok.len() - drop].to_vec()
            },
        )
        .note(Note::Tolerated(
            "no blank line ending the header section (datagram)",
        ));
    }

    // -- missing identity fields.
    c.one("missing", "no Via", Want::Ignored, |r| {
        Msg::ok(r).without("Via").bytes()
    });
    c.one("missing", "Via without branch", Want::Ignored, |r| {
        Msg::ok(r)
            .set("Via", "Via: SIP/2.0/UDP 127.0.0.1;rport")
            .bytes()
    });
    c.one("missing", "empty branch", Want::Ignored, |r| {
        Msg::ok(r)
            .set("Via", "Via: SIP/2.0/UDP 127.0.0.1;branch=;rport")
            .bytes()
    });
    c.one("missing", "empty Via", Want::Ignored, |r| {
        Msg::ok(r).set("Via", "Via:").bytes()
    });
    c.one("missing", "no Call-ID", Want::Ignored, |r| {
        Msg::ok(r).without("Call-ID").bytes()
    });
    c.one("missing", "empty Call-ID", Want::Ignored, |r| {
        Msg::ok(r).set("Call-ID", "Call-ID:").bytes()
    });
    c.one("missing", "no CSeq", Want::Ignored, |r| {
        Msg::ok(r).without("CSeq").bytes()
    });
    c.one("missing", "CSeq without method", Want::Ignored, |r| {
        Msg::ok(r).set("CSeq", format!("CSeq: {}", r.cseq)).bytes()
    });
    c.one("missing", "CSeq without number", Want::Ignored, |r| {
        Msg::ok(r).set("CSeq", "CSeq: OPTIONS").bytes()
    });
    c.one("missing", "no Via, Call-ID nor CSeq", Want::Ignored, |r| {
        Msg::ok(r)
            .without("Via")
            .without("Call-ID")
            .without("CSeq")
            .bytes()
    });
    c.raw(
        "missing",
        "status line only",
        b"SIP/2.0 200 OK\r\n\r\n".to_vec(),
    );
    c.one(
        "missing",
        "header names without colon",
        Want::Ignored,
        |r| {
            let m = Msg::ok(r);
            let v = format!("Via {}", r.via);
            m.set("Via", v).bytes()
        },
    );

    // -- duplicated identity fields.
    c.one(
        "duplicated",
        "foreign Via on top of ours",
        Want::Ignored,
        |r| {
            Msg::ok(r)
                .before("Via", "Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKforeign")
                .bytes()
        },
    );
    c.one(
        "duplicated",
        "comma-joined Via, foreign first",
        Want::Ignored,
        |r| {
            let v = format!(
                "Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKforeign, {}",
                r.via
            );
            Msg::ok(r).set("Via", v).bytes()
        },
    );
    c.one(
        "duplicated",
        "ours on top, foreign Via below",
        Want::Up(200),
        |r| {
            Msg::ok(r)
                .after("Via", "Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKforeign")
                .bytes()
        },
    )
    .note(Note::Tolerated(DUP_NOTE));
    c.one("duplicated", "our Via twice", Want::Up(200), |r| {
        let v = format!("Via: {}", r.via);
        Msg::ok(r).after("Via", v).bytes()
    })
    .note(Note::Tolerated(DUP_NOTE));
    c.one(
        "duplicated",
        "foreign Call-ID before ours",
        Want::Ignored,
        |r| Msg::ok(r).before("Call-ID", "Call-ID: forged@evil").bytes(),
    );
    c.one(
        "duplicated",
        "compact i: foreign before ours",
        Want::Ignored,
        |r| Msg::ok(r).before("Call-ID", "i: forged@evil").bytes(),
    );
    c.one(
        "duplicated",
        "our Call-ID, then a foreign one",
        Want::Up(200),
        |r| Msg::ok(r).after("Call-ID", "Call-ID: forged@evil").bytes(),
    )
    .note(Note::Tolerated(DUP_NOTE));
    c.one(
        "duplicated",
        "foreign CSeq before ours",
        Want::Ignored,
        |r| {
            let l = format!("CSeq: {} OPTIONS", r.cseq.wrapping_add(1));
            Msg::ok(r).before("CSeq", l).bytes()
        },
    );
    c.one(
        "duplicated",
        "INVITE CSeq before ours",
        Want::Ignored,
        |r| {
            let l = format!("CSeq: {} INVITE", r.cseq);
            Msg::ok(r).before("CSeq", l).bytes()
        },
    );
    c.one(
        "duplicated",
        "our CSeq, then a foreign one",
        Want::Up(200),
        |r| Msg::ok(r).after("CSeq", "CSeq: 1 BYE").bytes(),
    )
    .note(Note::Tolerated(DUP_NOTE));

    // -- wrong branch.
    for (name, f) in [
        (
            "random branch",
            (|_r: &Req| "z9hG4bKxxxxxxxxxxxxxxxx".to_string()) as fn(&Req) -> String,
        ),
        ("branch without the magic cookie", |r| {
            r.branch.trim_start_matches("z9hG4bK").into()
        }),
        ("branch one character short", |r| {
            r.branch[..r.branch.len() - 1].into()
        }),
        ("branch with a suffix", |r| format!("{}x", r.branch)),
        ("branch with a NUL inside", |r| {
            format!("{}\0{}", &r.branch[..8], &r.branch[8..])
        }),
        ("quoted branch", |r| format!("\"{}\"", r.branch)),
    ] {
        c.one("branch", name, Want::Ignored, move |r| {
            let v = format!("Via: SIP/2.0/UDP 127.0.0.1;branch={};rport", f(r));
            Msg::ok(r).set("Via", v).bytes()
        });
    }
    c.one(
        "branch",
        "our branch under another parameter name",
        Want::Ignored,
        |r| {
            let v = format!("Via: SIP/2.0/UDP 127.0.0.1;xbranch={};rport", r.branch);
            Msg::ok(r).set("Via", v).bytes()
        },
    );
    c.one(
        "branch",
        "our branch only in an X- header",
        Want::Ignored,
        |r| {
            let x = format!("X-Via: SIP/2.0/UDP 127.0.0.1;branch={}", r.branch);
            Msg::ok(r)
                .set("Via", "Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKforeign")
                .after("Via", x)
                .bytes()
        },
    );
    c.one(
        "branch",
        "spaces around branch '=' (legal)",
        Want::Up(200),
        |r| {
            let v = format!("Via: SIP/2.0/UDP 127.0.0.1 ; branch = {} ;rport", r.branch);
            Msg::ok(r).set("Via", v).bytes()
        },
    );

    // -- CSeq.
    for (name, line) in [
        (
            "CSeq method INVITE",
            (|r: &Req| format!("CSeq: {} INVITE", r.cseq)) as fn(&Req) -> String,
        ),
        ("CSeq method BYE", |r| format!("CSeq: {} BYE", r.cseq)),
        ("CSeq method REGISTER", |r| {
            format!("CSeq: {} REGISTER", r.cseq)
        }),
        ("CSeq method OPTIONSX", |r| {
            format!("CSeq: {} OPTIONSX", r.cseq)
        }),
        ("CSeq number + 1", |r| {
            format!("CSeq: {} OPTIONS", u64::from(r.cseq) + 1)
        }),
        ("CSeq number - 1", |r| {
            format!("CSeq: {} OPTIONS", r.cseq - 1)
        }),
        ("CSeq number 0", |_| "CSeq: 0 OPTIONS".into()),
        ("CSeq number negative", |r| {
            format!("CSeq: -{} OPTIONS", r.cseq)
        }),
        ("CSeq number + 2^32 (wraps)", |r| {
            format!("CSeq: {} OPTIONS", u64::from(r.cseq) + (1 << 32))
        }),
        ("CSeq number 40 digits", |_| {
            format!("CSeq: {} OPTIONS", "9".repeat(40))
        }),
        ("CSeq number as hex", |r| {
            format!("CSeq: 0x{:x} OPTIONS", r.cseq)
        }),
    ] {
        c.one("cseq", name, Want::Ignored, move |r| {
            Msg::ok(r).set("CSeq", line(r)).bytes()
        });
    }
    c.one(
        "cseq",
        "CSeq with leading zeros (legal)",
        Want::Up(200),
        |r| {
            let l = format!("CSeq: 000{} OPTIONS", r.cseq);
            Msg::ok(r).set("CSeq", l).bytes()
        },
    );
    c.one("cseq", "CSeq number with a plus sign", Want::Up(200), |r| {
        let l = format!("CSeq: +{} OPTIONS", r.cseq);
        Msg::ok(r).set("CSeq", l).bytes()
    })
    .note(Note::Tolerated(
        "RFC 3261 CSeq is 1*DIGIT; Rust's u32 parser accepts a leading '+'",
    ));
    c.one("cseq", "CSeq method in lower case", Want::Up(200), |r| {
        let l = format!("CSeq: {} options", r.cseq);
        Msg::ok(r).set("CSeq", l).bytes()
    })
    .note(Note::Tolerated(
        "SIP methods are case-sensitive; the matcher upper-cases",
    ));

    // -- Call-ID.
    for (name, f) in [
        (
            "random Call-ID",
            (|_r: &Req| "forged@evil".to_string()) as fn(&Req) -> String,
        ),
        ("Call-ID with a suffix", |r| format!("{}x", r.call_id)),
        ("Call-ID one character short", |r| {
            r.call_id[..r.call_id.len() - 1].into()
        }),
        ("Call-ID in upper case", |r| r.call_id.to_uppercase()),
        ("Call-ID with a NUL inside", |r| {
            format!("{}\0{}", &r.call_id[..5], &r.call_id[5..])
        }),
        ("Call-ID of the branch", |r| r.branch.clone()),
    ] {
        c.one("call-id", name, Want::Ignored, move |r| {
            let l = format!("Call-ID: {}", f(r));
            Msg::ok(r).set("Call-ID", l).bytes()
        });
    }
    c.one("call-id", "compact form i: (legal)", Want::Up(200), |r| {
        let l = format!("i:   {}  ", r.call_id);
        Msg::ok(r).set("Call-ID", l).bytes()
    });

    // -- status line.
    for line in [
        "SIP/2.0 000 Zero",
        "SIP/2.0 099 Low",
        "SIP/2.0 99 Two digits",
        "SIP/2.0 9 One digit",
        "SIP/2.0 1000 Four digits",
        "SIP/2.0 2000 OK",
        "SIP/2.0 700 Seven",
        "SIP/2.0 999 Nine",
        "SIP/2.0 65736 Wraps to 200",
        "SIP/2.0 4294967496 Wraps to 200",
        "SIP/2.0 2OO OK",
        "SIP/2.0 +200 OK",
        "SIP/2.0 +20 OK",
        "SIP/2.0 -200 OK",
        "SIP/2.0  200 OK",
        "SIP/2.0 200.0 OK",
        "SIP/2.0 0200 OK",
        "SIP/2.0 \u{FF12}\u{FF10}\u{FF10} Fullwidth",
        "SIP/2.0 2\u{0}0 OK",
        "SIP/2.0",
        "SIP/2.0 OK",
        "SIP/2.1 200 OK",
        "SIP/1.0 200 OK",
        "SIP/20 200 OK",
        "SIP/2.0/UDP 200 OK",
        "HTTP/1.1 200 OK",
        "OPTIONS sip:probe@127.0.0.1 SIP/2.0",
        "200 OK",
    ] {
        c.one("status", format!("{line:?}"), Want::Ignored, move |r| {
            Msg::reply(r, line).bytes()
        });
    }
    for line in [
        "SIP/2.0 100 Trying",
        "SIP/2.0 180 Ringing",
        "SIP/2.0 183 Progress",
        "SIP/2.0 199 Early",
    ] {
        c.one(
            "status",
            format!("provisional {line:?}"),
            Want::Ignored,
            move |r| Msg::reply(r, line).bytes(),
        );
    }
    for code in [
        300u16, 302, 404, 408, 480, 500, 503, 504, 600, 603, 604, 606, 699,
    ] {
        c.one(
            "status",
            format!("final {code}"),
            Want::Down(code),
            move |r| Msg::reply(r, &format!("SIP/2.0 {code} Hostile")).bytes(),
        );
    }
    c.one("status", "lower-case version (legal)", Want::Up(200), |r| {
        Msg::reply(r, "sip/2.0 200 OK").bytes()
    });
    c.one("status", "no reason phrase", Want::Up(200), |r| {
        Msg::reply(r, "SIP/2.0 200").bytes()
    });
    for code in [202u16, 204, 299] {
        c.one(
            "status",
            format!("final {code}"),
            Want::Up(code),
            move |r| Msg::reply(r, &format!("SIP/2.0 {code} Fine")).bytes(),
        );
    }

    // -- escape sequences (and other control characters) in the reason phrase.
    let escapes: [(&str, &str); 9] = [
        ("clear screen", "\x1b[2J\x1b[HOK"),
        ("set window title", "\x1b]0;owned\x07OK"),
        ("colours", "\x1b[31mRED\x1b[0m"),
        ("terminal reset", "\x1bcOK"),
        ("8-bit CSI", "\u{9b}31mOK"),
        (
            "OSC 8 hyperlink",
            "\x1b]8;;http://evil.example/\x1b\\click\x1b]8;;\x1b\\",
        ),
        ("bare CR forging a line", "OK\rFORGED LINE"),
        ("backspaces and DEL", "OK\x08\x08\x08\x7fUP"),
        ("alternate screen, hidden text", "\x1b[?1049h\x1b[8mhidden"),
    ];
    for (name, reason) in escapes {
        c.one(
            "escape",
            format!("200 with {name}"),
            Want::Up(200),
            move |r| Msg::reply(r, &format!("SIP/2.0 200 {reason}")).bytes(),
        )
        .note(Note::Tolerated(
            "the reason phrase is informational; shown sanitized",
        ))
        .sanitized();
        c.one(
            "escape",
            format!("503 with {name}"),
            Want::Down(503),
            move |r| Msg::reply(r, &format!("SIP/2.0 503 {reason}")).bytes(),
        )
        .sanitized();
    }

    // -- NUL bytes.
    c.one("nul", "NUL in the reason of a 200", Want::Up(200), |r| {
        Msg::reply(r, "SIP/2.0 200 O\0K").bytes()
    })
    .note(Note::Tolerated(
        "the reason phrase is informational; shown sanitized",
    ))
    .sanitized();
    c.one("nul", "NUL in the reason of a 503", Want::Down(503), |r| {
        Msg::reply(r, "SIP/2.0 503 Down\0\0\0").bytes()
    })
    .sanitized();
    c.one("nul", "NUL before the status line", Want::Ignored, |r| {
        let mut b = vec![0u8];
        b.extend(Msg::ok(r).bytes());
        b
    });
    c.one("nul", "NUL inside SIP/2.0", Want::Ignored, |r| {
        Msg::reply(r, "SIP/\x002.0 200 OK").bytes()
    });
    c.one("nul", "NUL inside the CSeq number", Want::Ignored, |r| {
        let n = r.cseq.to_string();
        let l = format!("CSeq: {}\0{} OPTIONS", &n[..1], &n[1..]);
        Msg::ok(r).set("CSeq", l).bytes()
    });
    c.one(
        "nul",
        "NUL inside the header name Call-ID",
        Want::Ignored,
        |r| {
            let l = format!("Call\0-ID: {}", r.call_id);
            Msg::ok(r).set("Call-ID", l).bytes()
        },
    );
    c.one("nul", "NUL instead of CRLF", Want::Ignored, |r| {
        Msg::ok(r)
            .bytes()
            .into_iter()
            .map(|b| if b == b'\n' { 0 } else { b })
            .collect()
    });
    c.raw("nul", "1 KiB of NUL", vec![0u8; 1024]);
    c.one("nul", "NUL bytes in the body (legal)", Want::Up(200), |r| {
        Msg::ok(r)
            .set("Content-Length", "Content-Length: 16")
            .body(vec![0u8; 16])
            .bytes()
    });

    // -- invalid UTF-8.
    for (name, bad) in [
        ("0xFF in the reason of a 200", &b"\xff"[..]),
        ("overlong '/' in the reason of a 200", b"\xc0\xaf"),
        ("lone continuation byte in the reason of a 200", b"\x80"),
        ("UTF-16 surrogate in the reason of a 200", b"\xed\xa0\x80"),
        (
            "truncated 3-byte sequence in the reason of a 200",
            b"\xe2\x82",
        ),
        ("Latin-1 reason 'Tr\\xe8s bien' of a 200", b"Tr\xe8s bien"),
    ] {
        let bad = bad.to_vec();
        c.one("utf8", name, Want::Ignored, move |r| {
            let mut m = Msg::ok(r);
            m.start = [&b"SIP/2.0 200 "[..], &bad].concat();
            m.bytes()
        });
    }
    c.one("utf8", "0xFF in the reason of a 503", Want::Ignored, |r| {
        let mut m = Msg::ok(r);
        m.start = b"SIP/2.0 503 \xff\xfe".to_vec();
        m.bytes()
    });
    c.one(
        "utf8",
        "invalid UTF-8 in a Server header of a 200",
        Want::Ignored,
        |r| {
            Msg::ok(r)
                .set("Server", &b"Server: \xc3\x28 box"[..])
                .bytes()
        },
    );
    c.one("utf8", "invalid UTF-8 in the Call-ID", Want::Ignored, |r| {
        let mut l = format!("Call-ID: {}", r.call_id).into_bytes();
        l.push(0xff);
        Msg::ok(r).set("Call-ID", l).bytes()
    });
    c.one(
        "utf8",
        "UTF-8 BOM before the status line",
        Want::Ignored,
        |r| {
            let mut b = b"\xef\xbb\xbf".to_vec();
            b.extend(Msg::ok(r).bytes());
            b
        },
    );
    c.one(
        "utf8",
        "valid non-ASCII reason (legal)",
        Want::Up(200),
        |r| Msg::reply(r, "SIP/2.0 200 Tr\u{e8}s bien \u{2713}").bytes(),
    );
    c.one(
        "utf8",
        "invalid UTF-8 in the body (legal)",
        Want::Up(200),
        |r| {
            Msg::ok(r)
                .set("Content-Length", "Content-Length: 4")
                .body(&b"\xff\xfe\xfd\xfc"[..])
                .bytes()
        },
    );

    // -- Content-Length.
    for v in [
        "-1",
        "-9223372036854775808",
        "18446744073709551616",
        "99999999999999999999999999",
        "abc",
        "1000",
        "65536",
        "0x10",
        "",
        "1e3",
    ] {
        c.one(
            "content-length",
            format!("200 with Content-Length {v:?}"),
            Want::Ignored,
            move |r| {
                Msg::ok(r)
                    .set("Content-Length", format!("Content-Length: {v}"))
                    .bytes()
            },
        );
    }
    c.one(
        "content-length",
        "200 with two Content-Lengths (0, 10)",
        Want::Ignored,
        |r| {
            Msg::ok(r)
                .after("Content-Length", "Content-Length: 10")
                .bytes()
        },
    );
    // Malformed, so discarded like any other (RFC 3261 18.3): the probe
    // times out, which is down too.
    c.one(
        "content-length",
        "503 with Content-Length -1",
        Want::Ignored,
        |r| {
            let m = Msg::reply(r, "SIP/2.0 503 Busy");
            m.set("Content-Length", "Content-Length: -1").bytes()
        },
    );
    c.one(
        "content-length",
        "503 with Content-Length 1000",
        Want::Ignored,
        |r| {
            let m = Msg::reply(r, "SIP/2.0 503 Busy");
            m.set("Content-Length", "l: 1000").bytes()
        },
    );

    // -- folded headers.
    c.one(
        "folded",
        "folded Server header (legal)",
        Want::Up(200),
        |r| {
            Msg::ok(r)
                .set("Server", "Server: hostile\r\n  trunk\r\n\tversion 1")
                .bytes()
        },
    );
    c.one(
        "folded",
        "continuation line right after the status line",
        Want::Up(200),
        |r| {
            let mut m = Msg::ok(r);
            m.lines.insert(0, b"  continued nothing".to_vec());
            m.bytes()
        },
    )
    .note(Note::Tolerated(
        "a continuation line with no header before it is skipped",
    ));
    c.one(
        "folded",
        "Call-ID value on a continuation line (legal)",
        Want::Up(200),
        |r| {
            let l = format!("Call-ID:\r\n {}", r.call_id);
            Msg::ok(r).set("Call-ID", l).bytes()
        },
    )
    .note(Note::Plain);
    c.one(
        "folded",
        "branch on a continuation line of Via (legal)",
        Want::Up(200),
        |r| {
            let (sent_by, params) = r.via.split_once(';').unwrap();
            let l = format!("Via: {sent_by}\r\n ;{params}");
            Msg::ok(r).set("Via", l).bytes()
        },
    )
    .note(Note::Plain);
    c.one(
        "folded",
        "CSeq method on a continuation line (legal)",
        Want::Up(200),
        |r| {
            let l = format!("CSeq: {}\r\n\tOPTIONS", r.cseq);
            Msg::ok(r).set("CSeq", l).bytes()
        },
    )
    .note(Note::Plain);
    c.one(
        "folded",
        "garbage folded onto our Call-ID",
        Want::Ignored,
        |r| {
            let l = format!("Call-ID: {}\r\n garbage", r.call_id);
            Msg::ok(r).set("Call-ID", l).bytes()
        },
    )
    .note(Note::Plain);
    c.one(
        "folded",
        "garbage folded onto our CSeq",
        Want::Ignored,
        |r| {
            let l = format!("CSeq: {} OPTIONS\r\n INVITE", r.cseq);
            Msg::ok(r).set("CSeq", l).bytes()
        },
    )
    .note(Note::Plain);

    // -- huge headers and 64 KiB datagrams.
    c.one("huge", "200 with an 8 KiB header", Want::Up(200), |r| {
        let l = format!("X-Pad: {}", "p".repeat(8 * 1024));
        Msg::ok(r).before("Content-Length", l).bytes()
    });
    c.one("huge", "200 with 10,000 headers", Want::Up(200), |r| {
        let mut m = Msg::ok(r);
        for i in 0..10_000 {
            m.lines.insert(5, format!("X{}:1", i % 10).into_bytes());
        }
        m.bytes()
    });
    c.one(
        "huge",
        "200 with our branch after 60 KiB of Via parameters",
        Want::Up(200),
        |r| {
            let pad = ";p=x".repeat(15_000);
            let l = format!("Via: SIP/2.0/UDP 127.0.0.1{pad};branch={};rport", r.branch);
            Msg::ok(r).set("Via", l).bytes()
        },
    );
    c.one("huge", "503 with a 60 KiB reason", Want::Down(503), |r| {
        Msg::reply(r, &format!("SIP/2.0 503 {}", "R".repeat(60 * 1024))).bytes()
    });
    c.one("huge", "200 with a 60 KiB reason", Want::Up(200), |r| {
        Msg::reply(r, &format!("SIP/2.0 200 {}", "\x1b[5m".repeat(12 * 1024))).bytes()
    })
    .note(Note::Tolerated(
        "the reason phrase is informational; shown sanitized",
    ))
    .sanitized();
    c.one("huge", "60 KiB Call-ID", Want::Ignored, |r| {
        let l = format!("Call-ID: {}{}", r.call_id, "c".repeat(60 * 1024));
        Msg::ok(r).set("Call-ID", l).bytes()
    });
    c.one("huge", "200 with a 60 KiB body", Want::Up(200), |r| {
        let n = 60 * 1024;
        Msg::ok(r)
            .set("Content-Length", format!("Content-Length: {n}"))
            .body(vec![b'b'; n])
            .bytes()
    });
    c.one(
        "64KiB",
        "64 KiB: genuine 200 padded with a header to the datagram limit",
        Want::Up(200),
        |r| {
            let m = Msg::ok(r).before("Content-Length", "X-Pad: ");
            let short = m.bytes().len();
            let pad = "q".repeat(MAX_DATAGRAM - short);
            let b = Msg::ok(r)
                .before("Content-Length", format!("X-Pad: {pad}"))
                .bytes();
            assert_eq!(b.len(), MAX_DATAGRAM);
            b
        },
    );
    c.one(
        "64KiB",
        "64 KiB: genuine head, then unterminated garbage",
        Want::Up(200),
        |r| {
            let mut m = Msg::ok(r);
            m.terminated = false;
            fill_to_max(&m.bytes(), b'g')
        },
    )
    .note(Note::Tolerated(
        "no blank line ending the header section (datagram)",
    ));
    c.one(
        "64KiB",
        "64 KiB: genuine head, then unterminated 0xFF",
        Want::Ignored,
        |r| {
            let mut m = Msg::ok(r);
            m.terminated = false;
            fill_to_max(&m.bytes(), 0xff)
        },
    );
    for (name, fill) in [
        ("'A'", b'A'),
        ("NUL", 0u8),
        ("0xFF", 0xff),
        ("CR", b'\r'),
        ("LF", b'\n'),
    ] {
        c.raw(
            "64KiB",
            format!("64 KiB of {name}"),
            vec![fill; MAX_DATAGRAM],
        );
    }
    c.raw("64KiB", "64 KiB of random bytes", rng.bytes(MAX_DATAGRAM));
    c.raw(
        "64KiB",
        "status line then 64 KiB of spaces",
        fill_to_max(b"SIP/2.0 200 OK\r\n", b' '),
    );
    c.raw("64KiB", "64 KiB of CRLF", b"\r\n".repeat(MAX_DATAGRAM / 2));

    // -- binary garbage and empty datagrams.
    for n in [1usize, 2, 3, 7, 16, 100, 512, 1400, 4000] {
        c.raw("garbage", format!("{n} random bytes"), rng.bytes(n));
    }
    c.raw(
        "garbage",
        "TLS ClientHello start",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
    );
    c.raw(
        "garbage",
        "STUN binding response",
        b"\x01\x01\x00\x00\x21\x12\xa4\x42abcdefghijkl".to_vec(),
    );
    c.raw(
        "garbage",
        "RTP packet",
        [&b"\x80\x00\x00\x01"[..], &[0u8; 168]].concat(),
    );
    c.raw(
        "garbage",
        "HTTP response",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec(),
    );
    c.raw(
        "garbage",
        "JSON",
        br#"{"status":200,"reason":"OK"}"#.to_vec(),
    );
    c.one(
        "garbage",
        "our own request echoed back",
        Want::Ignored,
        |r| r.raw.clone(),
    );
    c.one(
        "garbage",
        "a request carrying our identifiers",
        Want::Ignored,
        |r| Msg::reply(r, "BYE sip:probe@127.0.0.1 SIP/2.0").bytes(),
    );
    c.raw("empty", "empty datagram", Vec::new());
    c.add("empty", "ten empty datagrams", Want::Ignored, |_, _| {
        vec![Vec::new(); 10]
    });
    c.raw("empty", "CRLF keep-alive", b"\r\n\r\n".to_vec());
    c.raw("empty", "single LF", b"\n".to_vec());
    c.raw("empty", "spaces", b"    ".to_vec());

    // -- replies to no pending request.
    c.add(
        "no pending",
        "the previous transaction's 200 (late answer)",
        Want::Ignored,
        |_, prev| vec![Msg::ok(prev).bytes()],
    );
    c.add(
        "no pending",
        "previous branch with our Call-ID and CSeq",
        Want::Ignored,
        |r, prev| {
            let v = format!("Via: {}", prev.via);
            vec![Msg::ok(r).set("Via", v).bytes()]
        },
    );
    c.one(
        "no pending",
        "random transaction's 200",
        Want::Ignored,
        |r| {
            let m = Msg::ok(r);
            m.set(
                "Via",
                "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKrandomrandomrand;rport",
            )
            .set("Call-ID", "Call-ID: nobody@nowhere")
            .set("CSeq", "CSeq: 7 OPTIONS")
            .bytes()
        },
    );
    c.add(
        "no pending",
        "50 well-formed 200s for random branches",
        Want::Ignored,
        |r, _| {
            let mut rng = Rng(u64::from(r.cseq) | 1);
            (0..50)
                .map(|_| {
                    let v = format!("Via: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK{}", rng.token(16));
                    Msg::ok(r).set("Via", v).bytes()
                })
                .collect()
        },
    );
    c.add(
        "no pending",
        "our branch with another request's Call-ID",
        Want::Ignored,
        |r, prev| {
            let l = format!("Call-ID: {}", prev.call_id);
            vec![Msg::ok(r).set("Call-ID", l).bytes()]
        },
    );

    let mut cases = c.0;
    // Which entries carry a big datagram (they run with less concurrency).
    let dummy = dummy_req();
    for case in &mut cases {
        case.big = (case.build)(&dummy, &dummy)
            .iter()
            .any(|d| d.len() > 8 * 1024);
    }
    cases
}

fn dummy_req() -> Req {
    let text = "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKAAAAAAAAAAAAAAAA;rport\r\n\
        From: <sip:continuity-agent@127.0.0.1:40000>;tag=abcdefghij\r\n\
        To: <sip:127.0.0.1:5060>\r\n\
        Call-ID: AAAAAAAAAAAAAAAAAAAA@continuity-agent\r\n\
        CSeq: 123456 OPTIONS\r\n\r\n";
    parse_req(text.as_bytes()).unwrap()
}

// ---------------------------------------------------------------------------
// Running the corpus.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// The hostile datagrams only.
    Alone,
    /// The hostile datagrams, then a genuine 200 OK: the probe must be up.
    ThenGenuine,
}

struct Run {
    case: Arc<Case>,
    mode: Mode,
    path: Path,
    outcome: ProbeOutcome,
    took: Duration,
}

/// Probe a fresh trunk that answers each OPTIONS with the case's datagrams.
async fn run(case: Arc<Case>, mode: Mode, prev: Arc<Req>, path: Path) -> Run {
    let trunk = UdpSocket::bind((TRUNK_IP, 0)).await.unwrap();
    let addr = trunk.local_addr().unwrap();
    let probe = probe_for(addr, TIMEOUT);
    let c = case.clone();
    let server = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, src) = trunk.recv_from(&mut buf).await.unwrap();
            let Some(req) = parse_req(&buf[..n]) else {
                continue;
            };
            for d in (c.build)(&req, &prev) {
                assert!(d.len() <= MAX_DATAGRAM, "{}: {} bytes", c.name, d.len());
                trunk
                    .send_to(&d, src)
                    .await
                    .unwrap_or_else(|e| panic!("{}: send {} bytes: {e}", c.name, d.len()));
            }
            if mode == Mode::ThenGenuine {
                trunk.send_to(&Msg::ok(&req).bytes(), src).await.unwrap();
            }
        }
    });
    let start = Instant::now();
    let outcome = check_on(path, probe).await;
    let took = start.elapsed();
    server.abort();
    if let Err(e) = server.await
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
    Run {
        case,
        mode,
        path,
        outcome,
        took,
    }
}

/// What is wrong with a run, if anything.
fn verdict(run: &Run) -> Vec<String> {
    let o = &run.outcome;
    let d = &o.detail;
    let mut errs = Vec::new();
    if d.chars().any(char::is_control) {
        errs.push("a control character reached the detail".to_string());
    }
    if d.chars().count() > MAX_DETAIL_CHARS {
        errs.push(format!("detail of {} characters", d.chars().count()));
    }
    if o.inconclusive {
        errs.push("inconclusive".into());
    }
    match run.mode {
        Mode::ThenGenuine => {
            if !(o.success && d.starts_with("200 OK in ")) {
                errs.push("the genuine 200 after it did not make the probe up".into());
            }
        }
        Mode::Alone => match run.case.want {
            Want::Up(code) => {
                if !(o.success && d.starts_with(&format!("{code}"))) {
                    errs.push(format!("expected up ({code})"));
                }
            }
            Want::Down(code) => {
                // A reason longer than the detail's 512 characters pushes
                // "(not accepted: ...)" out of it (see RELIABILITY.md).
                let cut = d.chars().count() == MAX_DETAIL_CHARS && d.ends_with('\u{2026}');
                let counted = !o.success
                    && d.starts_with(&format!("{code} "))
                    && (d.contains("(not accepted: 2xx)") || cut);
                if !counted {
                    errs.push(format!("expected down with {code}"));
                }
            }
            Want::Ignored => {
                if o.success || d != TIMEOUT_DETAIL {
                    errs.push("expected to be ignored (a timeout)".into());
                }
            }
        },
    }
    if run.mode == Mode::Alone && run.case.sanitized && !d.contains('\u{FFFD}') {
        errs.push("the hostile reason did not reach the detail as U+FFFD".into());
    }
    errs
}

/// A healthy trunk: answers every OPTIONS with a 200 OK. Returns the last
/// request it saw.
async fn healthy_probe() -> (ProbeOutcome, Option<Req>, SocketAddr) {
    let trunk = UdpSocket::bind((TRUNK_IP, 0)).await.unwrap();
    let addr = trunk.local_addr().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, src) = trunk.recv_from(&mut buf).await.unwrap();
            if let Some(req) = parse_req(&buf[..n]) {
                // Recorded before answering: the probe may return at once.
                let ok = Msg::ok(&req).bytes();
                let _ = tx.send(req);
                trunk.send_to(&ok, src).await.unwrap();
            }
        }
    });
    let outcome = probe_for(addr, Duration::from_secs(2)).check().await;
    server.abort();
    (outcome, rx.try_recv().ok(), addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_responses_never_count_as_up() {
    let started = Instant::now();

    // A finished transaction, whose late answers come back in the corpus.
    let (first, prev, trunk) = healthy_probe().await;
    assert!(first.success, "healthy trunk before the corpus: {first:?}");
    let prev = prev.expect("the healthy trunk saw the request");
    let mux = UdpMux::for_dest(trunk).expect("the probe's SIP/UDP socket");

    // Unsolicited datagrams at the probe's socket, before any request of
    // theirs is pending: the 200s for a random branch, garbage, a forged
    // answer to the finished transaction.
    let unsolicited: Vec<Vec<u8>> = {
        let mut rng = Rng(42);
        let mut v: Vec<Vec<u8>> = (0..100)
            .map(|_| {
                let r = Req {
                    branch: String::new(),
                    via: format!("SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK{}", rng.token(16)),
                    ..prev.clone()
                };
                Msg::ok(&r).bytes()
            })
            .collect();
        v.extend((0..100).map(|i| rng.bytes(1 + i * 13)));
        v.push(Msg::ok(&prev).bytes());
        v.push(Vec::new());
        v
    };
    let stray = UdpSocket::bind((TRUNK_IP, 0)).await.unwrap();
    for d in &unsolicited {
        stray
            .send_to(d, (TRUNK_IP, mux.local_port()))
            .await
            .unwrap();
    }

    let cases: Vec<Arc<Case>> = corpus().into_iter().map(Arc::new).collect();
    assert!(cases.len() >= 200, "only {} corpus entries", cases.len());
    let prev = Arc::new(prev);
    let mut small = Vec::new();
    let mut big = Vec::new();
    for c in &cases {
        let modes: &[Mode] = if c.want == Want::Ignored {
            &[Mode::Alone, Mode::ThenGenuine]
        } else {
            &[Mode::Alone]
        };
        for &m in modes {
            for path in PATHS {
                let job = run(c.clone(), m, prev.clone(), path);
                if c.big {
                    big.push(job)
                } else {
                    small.push(job)
                }
            }
        }
    }
    let jobs = small.len() + big.len();
    let mut runs: Vec<Run> = futures::stream::iter(small)
        .buffer_unordered(48)
        .collect()
        .await;
    runs.extend(
        futures::stream::iter(big)
            .buffer_unordered(6)
            .collect::<Vec<Run>>()
            .await,
    );
    assert_eq!(runs.len(), jobs);

    // Summary by kind, then every failure.
    let mut by_kind: BTreeMap<&str, [usize; 6]> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut tolerated = Vec::new();
    for r in &runs {
        let e = by_kind.entry(r.case.kind).or_default();
        if r.mode == Mode::Alone && r.path == Path::Task {
            e[0] += 1;
            match r.case.want {
                Want::Up(_) => e[1] += 1,
                Want::Down(_) => e[2] += 1,
                Want::Ignored => e[3] += 1,
            }
            match r.case.note {
                Note::Plain => {}
                Note::Tolerated(why) => {
                    tolerated.push(format!("{}: {} ({why})", r.case.kind, r.case.name))
                }
            }
        } else if r.path == Path::Task {
            e[4] += 1;
        }
        if r.outcome.success && r.mode == Mode::Alone && r.case.want == Want::Ignored {
            e[5] += 1;
        }
        let errs = verdict(r);
        if !errs.is_empty() {
            failures.push(format!(
                "[{}] {} ({:?}, {:?}, took {:?}): {} -- outcome {:?}",
                r.case.kind,
                r.case.name,
                r.mode,
                r.path,
                r.took,
                errs.join("; "),
                r.outcome
            ));
        }
    }
    println!("kind            entries  up down ignored  +genuine-200 runs");
    for (k, v) in &by_kind {
        println!(
            "{k:<15} {:>7} {:>3} {:>4} {:>7} {:>13}",
            v[0], v[1], v[2], v[3], v[4]
        );
    }
    println!(
        "{} entries ({} over 8 KiB, {} with control characters in the reason), {} probe runs, \
         {} unsolicited datagrams; tolerated {}",
        cases.len(),
        cases.iter().filter(|c| c.big).count(),
        cases.iter().filter(|c| c.sanitized).count(),
        runs.len(),
        unsolicited.len(),
        tolerated.len()
    );
    for t in &tolerated {
        println!("tolerated: {t}");
    }

    // The probe still works, and nothing is left pending.
    let (after, _, _) = healthy_probe().await;
    assert!(
        after.success && after.detail.starts_with("200 OK in "),
        "a well-formed 200 after the corpus: {after:?}"
    );
    assert_eq!(mux.in_flight(), 0, "transactions left pending");
    println!("corpus run took {:?}", started.elapsed());

    assert!(
        failures.is_empty(),
        "{} of {} runs misbehaved:\n{}",
        failures.len(),
        runs.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Spoofed replies.

#[derive(Clone, Copy, Debug)]
enum Sender {
    Trunk,
    /// The trunk's host, another port (legitimate: RFC 3261 does not tie the
    /// response's source port to the request's destination port).
    TrunkHostOtherPort,
    /// Another host.
    Spoofer,
}

/// One scripted reply: who sends it, after how long, which status.
type Script = &'static [(Sender, u64, &'static str)];

async fn spoof_scenario(script: Script, path: Path) -> ProbeOutcome {
    let trunk = Arc::new(UdpSocket::bind((TRUNK_IP, 0)).await.unwrap());
    let other_port = UdpSocket::bind((TRUNK_IP, 0)).await.unwrap();
    let spoofer = UdpSocket::bind((SPOOF_IP, 0)).await.unwrap_or_else(|e| {
        panic!("cannot bind the spoofer to {SPOOF_IP} (all of 127/8 is local on Linux): {e}")
    });
    let addr = trunk.local_addr().unwrap();
    let t = trunk.clone();
    let server = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, src) = t.recv_from(&mut buf).await.unwrap();
            let Some(req) = parse_req(&buf[..n]) else {
                continue;
            };
            for &(from, delay, status) in script {
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let bytes = Msg::reply(&req, status).bytes();
                let sock = match from {
                    Sender::Trunk => &*t,
                    Sender::TrunkHostOtherPort => &other_port,
                    Sender::Spoofer => &spoofer,
                };
                sock.send_to(&bytes, src).await.unwrap();
            }
        }
    });
    let out = check_on(path, probe_for(addr, TIMEOUT)).await;
    server.abort();
    if let Err(e) = server.await
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_replies_from_another_host_decide_nothing() {
    let scenarios: [(&str, Script, Want); 5] = [
        (
            "a perfect 200 from another host, the trunk dead",
            &[(Sender::Spoofer, 0, "SIP/2.0 200 OK")],
            Want::Ignored,
        ),
        (
            "a perfect 200 from another host at every retransmission, the trunk dead",
            &[
                (Sender::Spoofer, 0, "SIP/2.0 200 OK"),
                (Sender::Spoofer, 0, "SIP/2.0 200 OK"),
                (Sender::Spoofer, 0, "SIP/2.0 202 Accepted"),
            ],
            Want::Ignored,
        ),
        (
            "a spoofed 503 before the trunk's 200",
            &[
                (Sender::Spoofer, 0, "SIP/2.0 503 Spoofed"),
                (Sender::Trunk, 50, "SIP/2.0 200 OK"),
            ],
            Want::Up(200),
        ),
        (
            "a spoofed 200 before the trunk's 503",
            &[
                (Sender::Spoofer, 0, "SIP/2.0 200 OK"),
                (Sender::Trunk, 50, "SIP/2.0 503 Real"),
            ],
            Want::Down(503),
        ),
        (
            "control: the same 200 from the trunk's host, another port",
            &[(Sender::TrunkHostOtherPort, 0, "SIP/2.0 200 OK")],
            Want::Up(200),
        ),
    ];
    let runs: Vec<_> = PATHS
        .iter()
        .flat_map(|&path| scenarios.iter().map(move |sc| (path, sc)))
        .collect();
    let outs = futures::future::join_all(
        runs.iter()
            .map(|(path, (_, s, _))| spoof_scenario(s, *path)),
    )
    .await;
    let mut failures = Vec::new();
    for ((path, (name, _, want)), out) in runs.iter().zip(outs) {
        let name = format!("{name} ({path:?})");
        println!("{name}: {out:?}");
        let ok = match want {
            Want::Up(code) => out.success && out.detail.starts_with(&format!("{code} ")),
            Want::Down(code) => !out.success && out.detail.starts_with(&format!("{code} ")),
            Want::Ignored => !out.success && out.detail == TIMEOUT_DETAIL,
        };
        if !ok {
            failures.push(format!("{name}: expected {want:?}, got {out:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "spoofed replies:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Forged ICMP errors.

/// A raw ICMP socket whose messages come from `source` (the offender the
/// kernel reports). Panics, never skips, when raw sockets are not allowed.
fn raw_icmp(source: Ipv4Addr) -> socket2::Socket {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(
        Domain::IPV4,
        Type::from(libc::SOCK_RAW),
        Some(Protocol::ICMPV4),
    )
    .unwrap_or_else(|e| {
        panic!(
            "the forged-ICMP test needs a raw socket: socket(AF_INET, SOCK_RAW, IPPROTO_ICMP) \
                 failed: {e}. Run it as root or with CAP_NET_RAW (CI runs as root); it must not \
                 pass without sending the forged ICMP messages."
        )
    });
    s.bind(&SocketAddr::from((source, 0)).into())
        .unwrap_or_else(|e| panic!("bind the raw ICMP socket to {source}: {e}"));
    s
}

fn checksum(b: &[u8]) -> u16 {
    let mut sum: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP destination unreachable (`code` 3: port, 1: host) quoting a UDP
/// datagram from `local` (the probe's socket) to `quoted_dest` with
/// `payload`, as a host or router would send it.
fn icmp_unreachable(
    code: u8,
    local: SocketAddr,
    quoted_dest: SocketAddr,
    payload: &[u8],
) -> Vec<u8> {
    let (SocketAddr::V4(local), SocketAddr::V4(dest)) = (local, quoted_dest) else {
        panic!("IPv4 only");
    };
    let udp_len = 8 + payload.len();
    let total = (20 + udp_len) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&local.ip().octets());
    ip.extend_from_slice(&dest.ip().octets());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut udp = Vec::with_capacity(udp_len);
    udp.extend_from_slice(&local.port().to_be_bytes());
    udp.extend_from_slice(&dest.port().to_be_bytes());
    udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut icmp = vec![3, code, 0, 0, 0, 0, 0, 0];
    icmp.extend(ip);
    icmp.extend(udp);
    let sum = checksum(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    icmp
}

/// `Icmp: InDestUnreachs` of /proc/net/snmp: how many destination
/// unreachable messages this host's ICMP layer received.
fn in_dest_unreachs() -> u64 {
    let snmp = std::fs::read_to_string("/proc/net/snmp").expect("/proc/net/snmp");
    let mut icmp = snmp.lines().filter(|l| l.starts_with("Icmp: "));
    let (names, values) = (icmp.next().unwrap(), icmp.next().unwrap());
    let i = names
        .split_whitespace()
        .position(|n| n == "InDestUnreachs")
        .unwrap();
    values.split_whitespace().nth(i).unwrap().parse().unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Offender {
    Trunk,
    Rogue,
}

#[derive(Clone, Copy, Debug)]
enum Quoted {
    /// The datagram's destination is the trunk.
    Trunk,
    /// The trunk's host, another port.
    TrunkHostOtherPort,
    /// Another host, the trunk's port.
    OtherHost,
}

#[derive(Clone, Copy, Debug)]
enum Quote {
    /// The pending request, verbatim (proves the transaction).
    Request,
    /// A well-formed OPTIONS with a branch that matches nothing.
    OtherBranch,
    /// 8 bytes, as an old router quotes.
    Eight,
    Garbage,
}

struct Forgery {
    name: &'static str,
    offender: Offender,
    code: u8,
    dest: Quoted,
    quote: Quote,
    /// Expected: the probe fails with this detail prefix; `None`: it stays up.
    fails: Option<&'static str>,
}

/// The trunk answers 200 OK 150 ms after each request; in between, the
/// forged ICMP error reaches the probe's socket.
async fn icmp_scenario(
    f: &Forgery,
    trunk_raw: &socket2::Socket,
    rogue_raw: &socket2::Socket,
    path: Path,
) -> (ProbeOutcome, Duration) {
    let trunk = UdpSocket::bind((TRUNK_IP, 0)).await.unwrap();
    let addr = trunk.local_addr().unwrap();
    let raw = match f.offender {
        Offender::Trunk => trunk_raw.try_clone().unwrap(),
        Offender::Rogue => rogue_raw.try_clone().unwrap(),
    };
    let (code, dest, quote) = (f.code, f.dest, f.quote);
    let server = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, src) = trunk.recv_from(&mut buf).await.unwrap();
            let Some(req) = parse_req(&buf[..n]) else {
                continue;
            };
            let quoted_dest = match dest {
                Quoted::Trunk => addr,
                Quoted::TrunkHostOtherPort => SocketAddr::from((TRUNK_IP, addr.port() ^ 1)),
                Quoted::OtherHost => SocketAddr::from((Ipv4Addr::new(127, 0, 0, 9), addr.port())),
            };
            let payload = match quote {
                Quote::Request => req.raw.clone(),
                Quote::OtherBranch => String::from_utf8(req.raw.clone())
                    .unwrap()
                    .replace(&req.branch, "z9hG4bKnotpendingnotpend")
                    .into_bytes(),
                Quote::Eight => req.raw[..8].to_vec(),
                Quote::Garbage => Rng(7).bytes(200),
            };
            // `src` is the probe's socket: the quoted datagram is "ours".
            let packet = icmp_unreachable(code, src, quoted_dest, &payload);
            raw.send_to(&packet, &SocketAddr::from((src.ip(), 0)).into())
                .expect("send the forged ICMP message");
            tokio::time::sleep(Duration::from_millis(150)).await;
            trunk.send_to(&Msg::ok(&req).bytes(), src).await.unwrap();
        }
    });
    let start = Instant::now();
    let out = check_on(path, probe_for(addr, Duration::from_secs(2))).await;
    let took = start.elapsed();
    server.abort();
    if let Err(e) = server.await
        && e.is_panic()
    {
        std::panic::resume_unwind(e.into_panic());
    }
    (out, took)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_icmp_errors_fail_no_healthy_trunk() {
    let trunk_raw = raw_icmp(TRUNK_IP);
    let rogue_raw = raw_icmp(ROGUE_IP);
    let port = 3;
    let host = 1;
    let forgeries = [
        Forgery {
            name: "port unreachable from the trunk quoting a branch that matches no transaction",
            offender: Offender::Trunk,
            code: port,
            dest: Quoted::Trunk,
            quote: Quote::OtherBranch,
            fails: None,
        },
        Forgery {
            name: "port unreachable quoting our request, from another host (offender not the trunk)",
            offender: Offender::Rogue,
            code: port,
            dest: Quoted::Trunk,
            quote: Quote::Request,
            fails: None,
        },
        Forgery {
            name: "port unreachable quoting our request sent to another port of the trunk's host",
            offender: Offender::Trunk,
            code: port,
            dest: Quoted::TrunkHostOtherPort,
            quote: Quote::Request,
            fails: None,
        },
        Forgery {
            name: "host unreachable quoting our request sent to another host",
            offender: Offender::Rogue,
            code: host,
            dest: Quoted::OtherHost,
            quote: Quote::Request,
            fails: None,
        },
        Forgery {
            name: "port unreachable from the trunk quoting only 8 bytes",
            offender: Offender::Trunk,
            code: port,
            dest: Quoted::Trunk,
            quote: Quote::Eight,
            fails: None,
        },
        Forgery {
            name: "port unreachable from the trunk quoting garbage",
            offender: Offender::Trunk,
            code: port,
            dest: Quoted::Trunk,
            quote: Quote::Garbage,
            fails: None,
        },
        // Positive controls: the same forgeries are delivered to the probe's
        // error queue and do fail it when they prove the transaction. Without
        // these the cases above could pass because nothing arrived.
        Forgery {
            name: "control: port unreachable from the trunk quoting our request",
            offender: Offender::Trunk,
            code: port,
            dest: Quoted::Trunk,
            quote: Quote::Request,
            fails: Some("ICMP port unreachable from "),
        },
        Forgery {
            name: "by design: host unreachable (a router's) quoting our request, from another host",
            offender: Offender::Rogue,
            code: host,
            dest: Quoted::Trunk,
            quote: Quote::Request,
            fails: Some("ICMP host unreachable from "),
        },
    ];
    let before = in_dest_unreachs();
    let mut failures = Vec::new();
    // One at a time: each forged error also sets the shared socket's pending
    // error, which the next send of any probe reports once.
    for (f, path) in forgeries
        .iter()
        .flat_map(|f| PATHS.iter().map(move |&p| (f, p)))
    {
        let (out, took) = icmp_scenario(f, &trunk_raw, &rogue_raw, path).await;
        println!("{} ({path:?}) -> {:?} in {took:?}", f.name, out);
        let ok = match f.fails {
            None => out.success && out.detail.starts_with("200 OK in "),
            // The detail proves the ICMP path (a timeout says otherwise): no
            // speed bound needed.
            Some(prefix) => !out.success && out.detail.starts_with(prefix),
        };
        if !ok {
            failures.push(format!("{} ({path:?}): got {out:?} in {took:?}", f.name));
        }
    }
    let received = in_dest_unreachs() - before;
    assert!(
        received >= (forgeries.len() * PATHS.len()) as u64,
        "the kernel received {received} destination unreachable messages, {} were forged",
        forgeries.len() * PATHS.len()
    );
    assert!(failures.is_empty(), "forged ICMP:\n{}", failures.join("\n"));
}

/// A flood of forged port unreachables at the probe's socket (quoting
/// garbage, from another host) while a healthy trunk is probed: each one
/// sets the socket's pending error, which a send may report.
///
/// Found here (RELIABILITY.md, "Hostile input (SIP)"): with `IP_RECVERR`
/// every ICMP error, proven or not, also sets the socket's `sk_err`, which
/// the next `sendto` returns instead of sending. `UdpMux::send` retried only
/// 3 times, then failed the attempt with `send to ... failed: Connection
/// refused` (a failure, not inconclusive), so an off-path sender that knows
/// the probe's UDP port failed healthy trunks (1.6 to 7.7 % of the probes of
/// a 2 s run). Now the send is retried, and a flood that outlasts the
/// retries makes the attempt inconclusive: never a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_icmp_flood_fails_no_healthy_trunk() {
    const PROBES: usize = 100;
    let (first, _, trunk) = healthy_probe().await;
    assert!(first.success, "{first:?}");
    let mux_port = UdpMux::for_dest(trunk).unwrap().local_port();
    let flood = IcmpFlood::at(mux_port);
    let mut outs = Vec::new();
    // Probe for 2 s: how many sends the flood hits varies from run to run.
    let until = Instant::now() + Duration::from_secs(2);
    while outs.len() < PROBES || Instant::now() < until {
        let (o, _, _) = healthy_probe().await;
        outs.push(o);
    }
    let sent = flood.stop();
    assert_no_failure_under_flood(sent, &outs);
}

/// The same flood at the fleet's socket while it probes 20 healthy trunks
/// every 100 ms: the fleet sends without waiting (`transport::try_send`),
/// with the mux's retries, and must fail no check either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_icmp_flood_fails_no_healthy_trunk_in_the_fleet() {
    use continuity_agent::engine::Event;
    use tokio::sync::mpsc;
    const MEMBERS: usize = 20;
    const RESULTS: usize = 100;
    let trunk = UdpSocket::bind((TRUNK_IP, 0)).await.unwrap();
    let addr = trunk.local_addr().unwrap();
    let (port_tx, mut port_rx) = mpsc::unbounded_channel();
    let server = tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, src) = trunk.recv_from(&mut buf).await.unwrap();
            if let Some(req) = parse_req(&buf[..n]) {
                let _ = port_tx.send(src.port());
                trunk.send_to(&Msg::ok(&req).bytes(), src).await.unwrap();
            }
        }
    });
    let members = (0..MEMBERS)
        .map(|i| {
            let target = parse_target(&format!("sip:{addr}")).expect("target");
            let probe = SipProbe::new(format!("trunk-{i}"), target, Accept::default(), TIMEOUT);
            fleet::Member {
                dest: addr,
                probe,
                interval: Duration::from_millis(100),
                fast_interval: Duration::from_millis(100),
            }
        })
        .collect();
    let (events, mut results) = mpsc::channel(1024);
    let (_switch, cadence) = mpsc::unbounded_channel();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let fleet_task = tokio::spawn(fleet::run(
        members,
        tokio::time::Instant::now(),
        cadence,
        events,
        continuity_agent::telemetry::Metrics::new(),
        shutdown.clone(),
    ));
    // The fleet's port, as the trunk sees it.
    let port = port_rx.recv().await.expect("a request from the fleet");
    let flood = IcmpFlood::at(port);
    let mut outs = Vec::new();
    let until = Instant::now() + Duration::from_secs(2);
    while outs.len() < RESULTS || Instant::now() < until {
        match tokio::time::timeout(Duration::from_secs(20), results.recv()).await {
            Ok(Some(Event::ProbeResult { outcome, .. })) => outs.push(outcome),
            other => panic!("no result from the fleet: {other:?}"),
        }
    }
    let sent = flood.stop();
    shutdown.cancel();
    fleet_task.await.unwrap();
    server.abort();
    assert_no_failure_under_flood(sent, &outs);
}

/// Forged port unreachables (quoting garbage, from another host) at a
/// local UDP port, as fast as a thread can send them, until stopped.
struct IcmpFlood {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl IcmpFlood {
    fn at(port: u16) -> IcmpFlood {
        let rogue = raw_icmp(ROGUE_IP);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let local = SocketAddr::from((TRUNK_IP, port));
            let packet = icmp_unreachable(3, local, SocketAddr::from((TRUNK_IP, 9)), b"garbage!");
            let to = SocketAddr::from((TRUNK_IP, 0)).into();
            let mut sent = 0u64;
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                rogue.send_to(&packet, &to).expect("forged ICMP");
                sent += 1;
            }
            sent
        });
        IcmpFlood { stop, thread }
    }

    /// Stop; how many were sent.
    fn stop(self) -> u64 {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

fn assert_no_failure_under_flood(sent: u64, outs: &[ProbeOutcome]) {
    let failed: Vec<&ProbeOutcome> = outs
        .iter()
        .filter(|o| !o.success && !o.inconclusive)
        .collect();
    let inconclusive = outs.iter().filter(|o| o.inconclusive).count();
    println!(
        "{sent} forged ICMP errors during {} probes; {} failed, {inconclusive} inconclusive",
        outs.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "healthy trunk failed under a forged ICMP flood: {failed:?}"
    );
}

/// Over TCP a reply must answer our transaction by the same rule as over
/// UDP: top Via branch, Call-ID, CSeq number and method `OPTIONS`. The
/// stream path once skipped the method, so a 200 for an INVITE with our
/// identifiers counted as up. Here the trunk answers exactly that, then
/// nothing: the probe must time out; a genuine 200 on the next connection
/// makes it up (the control).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tcp_a_reply_for_another_method_is_not_ours() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind((TRUNK_IP, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let mut connections = Vec::new();
        for genuine in [false, true] {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let req = loop {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the probe closed before sending its OPTIONS");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break parse_req(&buf[..end + 4]).expect("an OPTIONS request");
                }
            };
            let reply = if genuine {
                Msg::ok(&req)
            } else {
                Msg::ok(&req).set("CSeq", format!("CSeq: {} INVITE", req.cseq))
            };
            s.write_all(&reply.bytes()).await.unwrap();
            // Kept open: a closed stream would end the probe by itself.
            connections.push(s);
        }
        connections
    });
    let target = parse_target(&format!("sip:{addr};transport=tcp")).expect("target");
    let probe = SipProbe::new(
        "tcp-trunk",
        target,
        Accept::default(),
        Duration::from_millis(800),
    );
    let out = probe.check().await;
    assert!(
        !out.success && out.detail.starts_with("timeout"),
        "a 200 for INVITE answered our OPTIONS: {out:?}"
    );
    let out = probe.check().await;
    assert!(out.success, "the genuine 200: {out:?}");
    server.await.unwrap();
}
