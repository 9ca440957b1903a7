//! The OPTIONS request (RFC 3261 section 11), built by hand: a ping needs ten
//! header lines, and owning them keeps the bytes on the wire obvious.

use std::fmt::Write;
use std::net::SocketAddr;

use rand::Rng;

use super::parse::SipResponse;
use super::target::{SipTarget, Transport};

/// RFC 3261 8.1.1.7: every branch starts with this magic cookie.
pub const BRANCH_COOKIE: &str = "z9hG4bK";

/// The identifiers a response must echo to be ours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionKey {
    pub branch: String,
    pub call_id: String,
    pub cseq: u32,
}

impl TransactionKey {
    /// Whether `r` answers this transaction (RFC 3261 17.1.3): it echoes
    /// our top Via branch, our Call-ID and our CSeq, number and method. The
    /// one rule for every transport (the UDP demultiplexer checks the
    /// sender's host besides).
    pub fn answered_by(&self, r: &SipResponse) -> bool {
        answers(r, &self.branch, &self.call_id, self.cseq)
    }
}

/// [`TransactionKey::answered_by`] for a transaction kept as its parts.
pub(super) fn answers(r: &SipResponse, branch: &str, call_id: &str, cseq: u32) -> bool {
    r.branch.as_deref() == Some(branch)
        && r.call_id.as_deref() == Some(call_id)
        && r.cseq
            .as_ref()
            .is_some_and(|(n, m)| *n == cseq && m == "OPTIONS")
}

/// One OPTIONS request ready to send.
#[derive(Clone, Debug)]
pub struct OptionsRequest {
    pub key: TransactionKey,
    pub bytes: Vec<u8>,
}

/// What the request needs besides the target.
pub struct RequestParams<'a> {
    pub target: &'a SipTarget,
    pub transport: Transport,
    /// Our address as the peer should see it (Via sent-by and Contact).
    pub local: SocketAddr,
    /// From user; `None` uses `continuity-agent`.
    pub from_user: Option<&'a str>,
}

/// `host:port` with IPv6 in brackets, as Via sent-by and URIs need.
pub fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

/// Random characters after the branch's magic cookie.
const BRANCH_LEN: usize = 16;
/// Random characters of the From tag.
const TAG_LEN: usize = 10;
/// Random characters of the Call-ID, before [`CALL_ID_HOST`].
const CALL_ID_LEN: usize = 20;
const CALL_ID_HOST: &str = "@continuity-agent";
/// CSeq numbers have six digits, so each fits the same place in the
/// request (RFC 3261 8.1.1.5 asks only for less than 2^31).
const CSEQ_DIGITS: usize = 6;
const CSEQS: std::ops::RangeInclusive<u32> = 100_000..=999_999;

/// An OPTIONS request laid out once for a probe and a local address, whose
/// identifiers [`RequestTemplate::renew`] rewrites in place for each
/// transaction. A ping then costs 52 random characters, not formatting
/// eleven header lines: at 1,000 trunks, formatting was a fifth of the
/// agent's CPU (BENCHMARKS.md, the SIP profile).
#[derive(Clone, Debug)]
pub struct RequestTemplate {
    local: SocketAddr,
    bytes: Vec<u8>,
    /// Where the random part of each identifier starts in `bytes`.
    branch: usize,
    tag: usize,
    call_id: usize,
    cseq: usize,
}

impl RequestTemplate {
    /// Lay the request out, with every identifier still blank (zeros).
    pub fn new(p: &RequestParams<'_>) -> RequestTemplate {
        let uri = p.target.request_uri();
        let sent_by = host_port(p.local);
        let tr = p.transport.via_token();
        let scheme = if p.target.secure { "sips" } else { "sip" };
        let from_user = p.from_user.unwrap_or("continuity-agent");
        let contact_params = match p.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls if p.target.secure => "",
            Transport::Tls => ";transport=tls",
        };
        let version = env!("CARGO_PKG_VERSION");
        let mut text = String::with_capacity(512);
        // A blank of `len` characters where an identifier goes; its offset.
        let blank = |text: &mut String, len: usize| {
            let at = text.len();
            text.extend(std::iter::repeat_n('0', len));
            at
        };
        // `rport` (RFC 3581) asks the peer to answer to the source address and
        // port it saw, so NAT between us and the trunk does not eat replies.
        let _ = write!(
            text,
            "OPTIONS {uri} SIP/2.0\r\nVia: SIP/2.0/{tr} {sent_by};branch={BRANCH_COOKIE}"
        );
        let branch = blank(&mut text, BRANCH_LEN);
        let _ = write!(
            text,
            ";rport\r\nMax-Forwards: 70\r\nFrom: <{scheme}:{from_user}@{sent_by}>;tag="
        );
        let tag = blank(&mut text, TAG_LEN);
        let _ = write!(text, "\r\nTo: <{uri}>\r\nCall-ID: ");
        let call_id = blank(&mut text, CALL_ID_LEN);
        let _ = write!(text, "{CALL_ID_HOST}\r\nCSeq: ");
        let cseq = blank(&mut text, CSEQ_DIGITS);
        let _ = write!(
            text,
            " OPTIONS\r\n\
             Contact: <{scheme}:{from_user}@{sent_by}{contact_params}>\r\n\
             User-Agent: continuity-agent/{version}\r\n\
             Accept: application/sdp\r\n\
             Content-Length: 0\r\n\r\n"
        );
        RequestTemplate {
            local: p.local,
            bytes: text.into_bytes(),
            branch,
            tag,
            call_id,
            cseq,
        }
    }

    /// The local address the request names (Via sent-by, From, Contact).
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The request as it stands: the last [`RequestTemplate::renew`]'s.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Write a new branch, From tag, Call-ID and CSeq into the request, so a
    /// late answer to an earlier transaction can never be taken for this
    /// one; the new transaction's key.
    pub fn renew(&mut self) -> TransactionKey {
        let mut rng = rand::rng();
        for (at, len) in [
            (self.branch, BRANCH_LEN),
            (self.tag, TAG_LEN),
            (self.call_id, CALL_ID_LEN),
        ] {
            fill_alphanumeric(&mut rng, &mut self.bytes[at..at + len]);
        }
        let cseq = rng.random_range(CSEQS);
        let mut n = cseq;
        for b in self.bytes[self.cseq..self.cseq + CSEQ_DIGITS]
            .iter_mut()
            .rev()
        {
            *b = b'0' + (n % 10) as u8;
            n /= 10;
        }
        // Alphanumerics and digits written into ASCII text: still UTF-8.
        let text =
            |from: usize, to: usize| String::from_utf8_lossy(&self.bytes[from..to]).into_owned();
        TransactionKey {
            branch: text(self.branch - BRANCH_COOKIE.len(), self.branch + BRANCH_LEN),
            call_id: text(
                self.call_id,
                self.call_id + CALL_ID_LEN + CALL_ID_HOST.len(),
            ),
            cseq,
        }
    }
}

/// What identifiers are made of: letters and digits, safe in every SIP
/// token and in a Call-ID.
const ALPHANUMERIC: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Fill `out` with characters drawn uniformly from [`ALPHANUMERIC`]: six
/// random bits each, ten from one 64-bit draw, the two values past 61
/// drawn again. `rand`'s `Alphanumeric` takes a 32-bit draw per character,
/// which made a third of renewing a request.
fn fill_alphanumeric(rng: &mut impl Rng, out: &mut [u8]) {
    let (mut bits, mut left) = (0u64, 0u32);
    for b in out {
        *b = loop {
            if left == 0 {
                (bits, left) = (rng.next_u64(), 10);
            }
            let i = (bits & 63) as usize;
            (bits, left) = (bits >> 6, left - 1);
            if let Some(&c) = ALPHANUMERIC.get(i) {
                break c;
            }
        };
    }
}

impl OptionsRequest {
    /// Build a fresh request: new branch, Call-ID, From tag and CSeq each time,
    /// so a late answer to an earlier attempt can never be taken for this one.
    pub fn new(p: &RequestParams<'_>) -> OptionsRequest {
        let mut template = RequestTemplate::new(p);
        let key = template.renew();
        OptionsRequest {
            key,
            bytes: template.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse::parse_response;
    use super::super::target::parse_target;
    use super::*;

    #[test]
    fn a_response_answers_the_key_only_when_every_identifier_matches() {
        let key = TransactionKey {
            branch: "z9hG4bKabc".into(),
            call_id: "cid@h".into(),
            cseq: 7,
        };
        let reply = |branch: &str, call_id: &str, cseq: &str| {
            let text = format!(
                "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch={branch}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n"
            );
            parse_response(text.as_bytes()).unwrap()
        };
        assert!(key.answered_by(&reply("z9hG4bKabc", "cid@h", "7 OPTIONS")));
        assert!(!key.answered_by(&reply("z9hG4bKabd", "cid@h", "7 OPTIONS")));
        assert!(!key.answered_by(&reply("z9hG4bKabc", "cid@x", "7 OPTIONS")));
        assert!(!key.answered_by(&reply("z9hG4bKabc", "cid@h", "8 OPTIONS")));
        assert!(!key.answered_by(&reply("z9hG4bKabc", "cid@h", "7 INVITE")));
    }

    #[test]
    fn request_has_every_rfc3261_header() {
        let target = parse_target("sip:trunk.example.net:5080;transport=tcp").unwrap();
        let req = OptionsRequest::new(&RequestParams {
            target: &target,
            transport: Transport::Tcp,
            local: "192.0.2.10:40000".parse().unwrap(),
            from_user: Some("ping"),
        });
        let text = String::from_utf8(req.bytes.clone()).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert_eq!(
            lines[0],
            "OPTIONS sip:trunk.example.net:5080;transport=tcp SIP/2.0"
        );
        assert!(lines[1].starts_with("Via: SIP/2.0/TCP 192.0.2.10:40000;branch=z9hG4bK"));
        assert!(lines[1].ends_with(";rport"));
        assert!(text.contains("\r\nMax-Forwards: 70\r\n"));
        assert!(text.contains("\r\nFrom: <sip:ping@192.0.2.10:40000>;tag="));
        assert!(text.contains("\r\nTo: <sip:trunk.example.net:5080;transport=tcp>\r\n"));
        assert!(text.contains(&format!("\r\nCall-ID: {}\r\n", req.key.call_id)));
        assert!(text.contains(&format!("\r\nCSeq: {} OPTIONS\r\n", req.key.cseq)));
        assert!(text.contains("\r\nContact: <sip:ping@192.0.2.10:40000;transport=tcp>\r\n"));
        assert!(text.contains("\r\nUser-Agent: continuity-agent/"));
        assert!(text.contains("\r\nAccept: application/sdp\r\n"));
        assert!(text.ends_with("\r\nContent-Length: 0\r\n\r\n"));
        assert!(text.contains(&req.key.branch));

        // Fresh identifiers every time.
        let again = OptionsRequest::new(&RequestParams {
            target: &target,
            transport: Transport::Tcp,
            local: "[2001:db8::1]:5060".parse().unwrap(),
            from_user: None,
        });
        assert_ne!(again.key.branch, req.key.branch);
        assert_ne!(again.key.call_id, req.key.call_id);
        let text = String::from_utf8(again.bytes).unwrap();
        assert!(text.contains("Via: SIP/2.0/TCP [2001:db8::1]:5060;branch="));
    }

    /// Each renewal writes a new branch, tag, Call-ID and CSeq over the
    /// last ones, the key names what went in, and nothing else changes.
    #[test]
    fn a_renewed_template_differs_only_in_its_identifiers() {
        let target = parse_target("sip:trunk.example.net").unwrap();
        let mut t = RequestTemplate::new(&RequestParams {
            target: &target,
            transport: Transport::Udp,
            local: "192.0.2.10:40000".parse().unwrap(),
            from_user: None,
        });
        let first = t.renew();
        let before = String::from_utf8(t.bytes().to_vec()).unwrap();
        let second = t.renew();
        let after = String::from_utf8(t.bytes().to_vec()).unwrap();
        for (key, text) in [(&first, &before), (&second, &after)] {
            assert!(text.contains(&format!(";branch={};rport\r\n", key.branch)));
            assert!(key.branch.starts_with(BRANCH_COOKIE));
            assert!(text.contains(&format!("\r\nCall-ID: {}\r\n", key.call_id)));
            assert!(text.contains(&format!("\r\nCSeq: {} OPTIONS\r\n", key.cseq)));
            assert!(CSEQS.contains(&key.cseq));
        }
        assert_ne!(first.branch, second.branch);
        assert_ne!(first.call_id, second.call_id);
        let tag = |text: &str| text.split(";tag=").nth(1).unwrap()[..TAG_LEN].to_string();
        assert_ne!(tag(&before), tag(&after));
        // Outside the four identifiers, byte for byte the same request.
        let changed: Vec<usize> = (0..before.len())
            .filter(|&i| before.as_bytes()[i] != after.as_bytes()[i])
            .collect();
        assert_eq!(before.len(), after.len());
        let spans = [
            (t.branch, BRANCH_LEN),
            (t.tag, TAG_LEN),
            (t.call_id, CALL_ID_LEN),
            (t.cseq, CSEQ_DIGITS),
        ];
        for i in changed {
            assert!(
                spans.iter().any(|&(at, len)| (at..at + len).contains(&i)),
                "byte {i} changed outside an identifier"
            );
        }
    }

    /// Every one of the 62 characters comes out, about equally often, and
    /// nothing else does.
    #[test]
    fn identifiers_draw_every_alphanumeric_evenly() {
        let mut rng = rand::rng();
        let mut out = vec![0u8; 62 * 2_000];
        fill_alphanumeric(&mut rng, &mut out);
        let mut seen = [0usize; 256];
        for &b in &out {
            seen[usize::from(b)] += 1;
        }
        for (c, &n) in seen.iter().enumerate() {
            if ALPHANUMERIC.contains(&(c as u8)) {
                // 2,000 expected; 1,700 is more than 6 sigma below.
                assert!(
                    (1_700..=2_300).contains(&n),
                    "{:?} drawn {n} times",
                    c as u8 as char
                );
            } else {
                assert_eq!(n, 0, "{:?} is not alphanumeric", c as u8 as char);
            }
        }
    }
}
