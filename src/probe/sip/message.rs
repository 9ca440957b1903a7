//! The OPTIONS request (RFC 3261 section 11), built by hand: a ping needs ten
//! header lines, and owning them keeps the bytes on the wire obvious.

use std::net::SocketAddr;

use rand::Rng;
use rand::distr::Alphanumeric;

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

fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// `host:port` with IPv6 in brackets, as Via sent-by and URIs need.
pub fn host_port(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => format!("{}:{}", a.ip(), a.port()),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

impl OptionsRequest {
    /// Build a fresh request: new branch, Call-ID, From tag and CSeq each time,
    /// so a late answer to an earlier attempt can never be taken for this one.
    pub fn new(p: &RequestParams<'_>) -> OptionsRequest {
        let branch = format!("{BRANCH_COOKIE}{}", random_token(16));
        let call_id = format!("{}@continuity-agent", random_token(20));
        let cseq: u32 = rand::rng().random_range(1..=1_000_000);
        let tag = random_token(10);
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
        // `rport` (RFC 3581) asks the peer to answer to the source address and
        // port it saw, so NAT between us and the trunk does not eat replies.
        let text = format!(
            "OPTIONS {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{tr} {sent_by};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <{scheme}:{from_user}@{sent_by}>;tag={tag}\r\n\
             To: <{uri}>\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} OPTIONS\r\n\
             Contact: <{scheme}:{from_user}@{sent_by}{contact_params}>\r\n\
             User-Agent: continuity-agent/{version}\r\n\
             Accept: application/sdp\r\n\
             Content-Length: 0\r\n\r\n",
            version = env!("CARGO_PKG_VERSION"),
        );
        OptionsRequest {
            key: TransactionKey {
                branch,
                call_id,
                cseq,
            },
            bytes: text.into_bytes(),
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
}
