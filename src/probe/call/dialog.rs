//! The SIP side of a test call: the requests a UAC sends (INVITE, ACK,
//! CANCEL, BYE; RFC 3261 sections 13, 17.1.1.3, 9.1, 15) and the parts of
//! incoming messages it needs. Parsing reuses the OPTIONS probe's parser
//! (`sip::parse`: status line, matching fields, header splitting) and adds
//! the dialog fields (To tag, Contact, Record-Route, challenges, body).

use std::net::SocketAddr;

use rand::Rng;
use rand::distr::Alphanumeric;

use crate::probe::sip::message::{BRANCH_COOKIE, host_port};
use crate::probe::sip::parse::{
    Header, ParseError, SipResponse, canonical, parse_response, split_head,
};
use crate::probe::sip::{SipTarget, Transport};

/// A response to one of our requests, with the dialog fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: SipResponse,
    pub to_tag: Option<String>,
    /// Contact URI (the remote target for ACK and BYE).
    pub contact: Option<String>,
    /// Record-Route values in the order received.
    pub record_route: Vec<String>,
    /// `(proxy?, challenge)` from Proxy-/WWW-Authenticate.
    pub challenge: Option<(bool, String)>,
    pub body: Vec<u8>,
}

/// A message from the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    Response(Reply),
    /// A request (the callee hanging up with BYE): its method and the header
    /// lines a response must copy (Via, From, To, Call-ID, CSeq).
    Request {
        method: String,
        copy: Vec<String>,
    },
}

/// Parse a datagram or one framed stream message. Never panics.
pub fn parse_incoming(bytes: &[u8]) -> Result<Incoming, ParseError> {
    let (start, headers) = split_head(bytes)?;
    if !start.starts_with("SIP/") {
        let method = start
            .split(' ')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let copy = headers
            .iter()
            .filter(|(n, _)| {
                matches!(
                    canonical(n),
                    Some(Header::Via | Header::From | Header::To | Header::CallId | Header::CSeq)
                )
            })
            .map(|(n, v)| format!("{n}: {v}"))
            .collect();
        return Ok(Incoming::Request { method, copy });
    }
    let status = parse_response(bytes)?;
    let mut reply = Reply {
        status,
        to_tag: None,
        contact: None,
        record_route: Vec::new(),
        challenge: None,
        body: crate::probe::sip::parse::body(bytes).to_vec(),
    };
    for (name, value) in headers {
        let is = |long: &str, short: &str| {
            name.eq_ignore_ascii_case(long)
                || (!short.is_empty() && name.eq_ignore_ascii_case(short))
        };
        if canonical(name) == Some(Header::To) && reply.to_tag.is_none() {
            reply.to_tag = tag(&value);
        } else if is("Contact", "m") && reply.contact.is_none() {
            reply.contact = uri_of(&value);
        } else if is("Record-Route", "") {
            reply
                .record_route
                .extend(value.split(',').map(|v| v.trim().to_string()));
        } else if is("WWW-Authenticate", "") && reply.challenge.is_none() {
            reply.challenge = Some((false, value.to_string()));
        } else if is("Proxy-Authenticate", "") && reply.challenge.is_none() {
            reply.challenge = Some((true, value.to_string()));
        }
    }
    Ok(Incoming::Response(reply))
}

/// `tag` parameter of a From/To value (after the URI).
fn tag(value: &str) -> Option<String> {
    let params = match value.rsplit_once('>') {
        Some((_, p)) => p,
        None => value.split_once(';').map_or("", |(_, p)| p),
    };
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("tag")
            .then(|| v.trim().to_string())
    })
}

/// The URI of a Contact value: `<sip:...>` or a bare URI up to its parameters.
fn uri_of(value: &str) -> Option<String> {
    let v = value.split(',').next()?.trim();
    let uri = match (v.find('<'), v.find('>')) {
        (Some(a), Some(b)) if a < b => &v[a + 1..b],
        _ => v.split(';').next()?,
    };
    let uri = uri.trim();
    (uri.starts_with("sip:") || uri.starts_with("sips:")).then(|| uri.to_string())
}

pub(crate) fn random_token(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// The state of our side of one call: identifiers, the current INVITE
/// transaction and, once answered, the dialog.
#[derive(Clone, Debug)]
pub struct Dialog {
    request_uri: String,
    transport: Transport,
    /// Our address as the peer sees it (Via sent-by, Contact).
    local: SocketAddr,
    from_uri: String,
    from_tag: String,
    pub call_id: String,
    /// CSeq of the current INVITE (a challenge answered bumps it).
    pub cseq: u32,
    /// Branch of the current INVITE transaction.
    pub branch: String,
    /// `(header name, value)` answering the last challenge.
    authorization: Option<(&'static str, String)>,
    sdp: String,
    to_tag: Option<String>,
    remote_target: Option<String>,
    route: Vec<String>,
}

impl Dialog {
    pub fn new(
        target: &SipTarget,
        from: Option<&SipTarget>,
        local: SocketAddr,
        sdp: String,
    ) -> Dialog {
        let from_uri = match from {
            Some(f) => f.request_uri(),
            None => format!(
                "{}:continuity-agent@{}",
                if target.secure { "sips" } else { "sip" },
                host_port(local)
            ),
        };
        Dialog {
            request_uri: target.request_uri(),
            transport: target.transport,
            local,
            from_uri,
            from_tag: random_token(10),
            call_id: format!("{}@continuity-agent", random_token(20)),
            cseq: rand::rng().random_range(1..=100_000),
            branch: new_branch(),
            authorization: None,
            sdp,
            to_tag: None,
            remote_target: None,
            route: Vec::new(),
        }
    }

    pub fn request_uri(&self) -> &str {
        &self.request_uri
    }

    /// Whether a response belongs to the current INVITE transaction.
    pub fn is_invite_reply(&self, r: &SipResponse) -> bool {
        self.matches(r, self.cseq, "INVITE") && r.branch.as_deref() == Some(self.branch.as_str())
    }

    /// Whether a response answers a request of ours with this CSeq.
    pub fn matches(&self, r: &SipResponse, cseq: u32, method: &str) -> bool {
        r.call_id.as_deref() == Some(self.call_id.as_str())
            && r.cseq
                .as_ref()
                .is_some_and(|(n, m)| *n == cseq && m == method)
    }

    /// The current INVITE (retransmissions send the same bytes).
    pub fn invite(&self) -> Vec<u8> {
        let mut extra = Vec::new();
        if let Some((name, value)) = &self.authorization {
            extra.push(format!("{name}: {value}"));
        }
        extra.push(format!("Contact: <{}>", self.contact_uri()));
        extra.push("Allow: INVITE, ACK, CANCEL, BYE".into());
        extra.push("Content-Type: application/sdp".into());
        self.request(
            "INVITE",
            &self.request_uri,
            &self.branch,
            self.cseq,
            None,
            &extra,
            &self.sdp,
        )
    }

    /// A new INVITE transaction carrying credentials (RFC 3261 22.2).
    pub fn reinvite_with(&mut self, proxy: bool, authorization: String) {
        let name = if proxy {
            "Proxy-Authorization"
        } else {
            "Authorization"
        };
        self.authorization = Some((name, authorization));
        self.cseq += 1;
        self.branch = new_branch();
    }

    /// ACK for a non-2xx final response: same transaction (RFC 3261 17.1.1.3).
    pub fn ack_failure(&self, to_tag: Option<&str>) -> Vec<u8> {
        self.request(
            "ACK",
            &self.request_uri,
            &self.branch,
            self.cseq,
            to_tag,
            &[],
            "",
        )
    }

    /// CANCEL of the current INVITE (RFC 3261 9.1): same branch and CSeq number.
    pub fn cancel(&self) -> Vec<u8> {
        self.request(
            "CANCEL",
            &self.request_uri,
            &self.branch,
            self.cseq,
            None,
            &[],
            "",
        )
    }

    /// Record the dialog a 2xx established.
    pub fn established(&mut self, r: &Reply) {
        self.to_tag = r.to_tag.clone();
        self.remote_target = r.contact.clone();
        // A UAC uses the Record-Route set in reverse order (RFC 3261 12.1.2).
        self.route = r.record_route.iter().rev().cloned().collect();
    }

    /// ACK for a 2xx: a new transaction within the dialog (RFC 3261 13.2.2.4).
    pub fn ack_answer(&self) -> Vec<u8> {
        self.in_dialog("ACK", &new_branch(), self.cseq)
    }

    /// BYE, with its branch and CSeq number for matching the answer.
    pub fn bye(&self) -> (Vec<u8>, u32) {
        let cseq = self.cseq + 1;
        (self.in_dialog("BYE", &new_branch(), cseq), cseq)
    }

    fn in_dialog(&self, method: &str, branch: &str, cseq: u32) -> Vec<u8> {
        let uri = self.remote_target.as_deref().unwrap_or(&self.request_uri);
        let extra: Vec<String> = self.route.iter().map(|r| format!("Route: {r}")).collect();
        self.request(
            method,
            uri,
            branch,
            cseq,
            self.to_tag.as_deref(),
            &extra,
            "",
        )
    }

    fn contact_uri(&self) -> String {
        let scheme = if self.request_uri.starts_with("sips:") {
            "sips"
        } else {
            "sip"
        };
        let param = match self.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
            Transport::Tls if scheme == "sips" => "",
            Transport::Tls => ";transport=tls",
        };
        format!("{scheme}:continuity-agent@{}{param}", host_port(self.local))
    }

    #[allow(clippy::too_many_arguments)]
    fn request(
        &self,
        method: &str,
        uri: &str,
        branch: &str,
        cseq: u32,
        to_tag: Option<&str>,
        extra: &[String],
        body: &str,
    ) -> Vec<u8> {
        let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
        let mut text = format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/{tr} {sent_by};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <{from}>;tag={from_tag}\r\n\
             To: <{to}>{to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n\
             User-Agent: continuity-agent/{version}\r\n",
            tr = self.transport.via_token(),
            sent_by = host_port(self.local),
            from = self.from_uri,
            from_tag = self.from_tag,
            to = self.request_uri,
            call_id = self.call_id,
            version = env!("CARGO_PKG_VERSION"),
        );
        for line in extra {
            text.push_str(line);
            text.push_str("\r\n");
        }
        text.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        text.into_bytes()
    }
}

/// A `200 OK` to a request of the peer (its BYE).
pub fn ok_for(copy: &[String]) -> Vec<u8> {
    let mut text = String::from("SIP/2.0 200 OK\r\n");
    for line in copy {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("Content-Length: 0\r\n\r\n");
    text.into_bytes()
}

fn new_branch() -> String {
    format!("{BRANCH_COOKIE}{}", random_token(16))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::sip::parse_target;
    use proptest::prelude::*;

    const ANSWER: &str = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:4000;branch=z9hG4bKabc\r\n\
        Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
        From: <sip:continuity-agent@127.0.0.1:4000>;tag=f\r\n\
        To: \"Test\" <sip:+1555@127.0.0.1:5060>;tag=callee-1\r\n\
        Call-ID: c1@continuity-agent\r\n\
        CSeq: 7 INVITE\r\n\
        Contact: <sip:uas@127.0.0.1:5060;transport=udp>;expires=60\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 8\r\n\r\nv=0\r\nm=xEXTRA";

    #[test]
    fn reads_the_dialog_fields() {
        let Incoming::Response(r) = parse_incoming(ANSWER.as_bytes()).unwrap() else {
            panic!("a response")
        };
        assert_eq!(r.status.code, 200);
        assert_eq!(r.to_tag.as_deref(), Some("callee-1"));
        assert_eq!(
            r.contact.as_deref(),
            Some("sip:uas@127.0.0.1:5060;transport=udp")
        );
        assert_eq!(
            r.record_route,
            ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]
        );
        assert_eq!(r.body, b"v=0\r\nm=x");
        let challenge = "SIP/2.0 407 Proxy Authentication Required\r\nProxy-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\n\r\n";
        let Incoming::Response(r) = parse_incoming(challenge.as_bytes()).unwrap() else {
            panic!("a response")
        };
        assert_eq!(
            r.challenge,
            Some((true, "Digest realm=\"r\", nonce=\"n\"".into()))
        );
    }

    #[test]
    fn a_peer_bye_is_answered_with_its_own_headers() {
        let bye = "BYE sip:continuity-agent@127.0.0.1:4000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb\r\n\
                   From: <sip:+1555@h>;tag=callee-1\r\nTo: <sip:me@h>;tag=f\r\nCall-ID: c1\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\n\r\n";
        let Incoming::Request { method, copy } = parse_incoming(bye.as_bytes()).unwrap() else {
            panic!("a request")
        };
        assert_eq!(method, "BYE");
        let ok = String::from_utf8(ok_for(&copy)).unwrap();
        assert!(
            ok.starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKb\r\n"),
            "{ok}"
        );
        assert!(
            ok.contains("CSeq: 1 BYE\r\n") && !ok.contains("Max-Forwards"),
            "{ok}"
        );
    }

    #[test]
    fn requests_follow_the_transaction_rules() {
        let target = parse_target("sip:+15551234567@127.0.0.1:5070").unwrap();
        let mut d = Dialog::new(
            &target,
            None,
            "127.0.0.1:4000".parse().unwrap(),
            "v=0\r\n".into(),
        );
        let invite = String::from_utf8(d.invite()).unwrap();
        assert!(
            invite.starts_with("INVITE sip:+15551234567@127.0.0.1:5070 SIP/2.0\r\n"),
            "{invite}"
        );
        assert!(invite.contains(&format!("CSeq: {} INVITE\r\n", d.cseq)));
        assert!(
            invite.contains("Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n")
        );
        let cancel = String::from_utf8(d.cancel()).unwrap();
        assert!(cancel.starts_with("CANCEL sip:+15551234567@127.0.0.1:5070 SIP/2.0\r\n"));
        assert!(
            cancel.contains(&d.branch) && cancel.contains(&format!("CSeq: {} CANCEL\r\n", d.cseq))
        );
        let ack = String::from_utf8(d.ack_failure(Some("t9"))).unwrap();
        assert!(
            ack.contains(&d.branch)
                && ack.contains(";tag=t9\r\n")
                && ack.contains(&format!("CSeq: {} ACK", d.cseq))
        );

        let (first_cseq, first_branch) = (d.cseq, d.branch.clone());
        d.reinvite_with(false, "Digest x".into());
        assert_eq!(d.cseq, first_cseq + 1);
        assert_ne!(d.branch, first_branch);
        assert!(
            String::from_utf8(d.invite())
                .unwrap()
                .contains("\r\nAuthorization: Digest x\r\n")
        );

        let Incoming::Response(r) = parse_incoming(ANSWER.as_bytes()).unwrap() else {
            panic!()
        };
        d.established(&r);
        let ack = String::from_utf8(d.ack_answer()).unwrap();
        assert!(
            ack.starts_with("ACK sip:uas@127.0.0.1:5060;transport=udp SIP/2.0\r\n"),
            "{ack}"
        );
        assert!(!ack.contains(&d.branch), "a 2xx ACK is its own transaction");
        assert!(
            ack.contains("Route: <sip:p2.example;lr>\r\nRoute: <sip:p1.example;lr>\r\n"),
            "{ack}"
        );
        let (bye, bye_cseq) = d.bye();
        let bye = String::from_utf8(bye).unwrap();
        assert_eq!(bye_cseq, d.cseq + 1);
        assert!(
            bye.contains(";tag=callee-1\r\n") && bye.contains(&format!("CSeq: {bye_cseq} BYE")),
            "{bye}"
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_incoming(&bytes);
        }

        #[test]
        fn mutated_answers_never_panic(cut in 0..ANSWER.len(), flip in 0..ANSWER.len(), byte in any::<u8>()) {
            let mut b = ANSWER.as_bytes().to_vec();
            b[flip] = byte;
            let _ = parse_incoming(&b[..cut]);
            let _ = parse_incoming(&b);
        }
    }
}
