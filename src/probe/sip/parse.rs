//! A small SIP response parser: the status line plus the headers that match a
//! response to our transaction (top Via branch, Call-ID, CSeq) and frame it on
//! a stream (Content-Length).
//!
//! It is a pure function over untrusted bytes: no panics, no indexing that can
//! go out of bounds, bounded work (the input is at most one datagram or one
//! framed stream message). It is property-tested here and is meant as the
//! target of the SIP parser fuzzer.
//! We do not use a full SIP grammar crate: a ping needs four fields, and a
//! tolerant hand parser accepts the odd formatting real SBCs send.

use std::borrow::Cow;

/// The parts of a response the probe needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SipResponse {
    pub code: u16,
    pub reason: String,
    /// `branch` parameter of the topmost Via.
    pub branch: Option<String>,
    pub call_id: Option<String>,
    /// CSeq number and method.
    pub cseq: Option<(u32, String)>,
}

impl SipResponse {
    pub fn is_provisional(&self) -> bool {
        self.code < 200
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("empty message")]
    Empty,
    #[error("not valid UTF-8 in the header section")]
    NotUtf8,
    #[error("not a SIP response (status line {0:?})")]
    NotAResponse(String),
    #[error("invalid status code {0:?}")]
    BadStatus(String),
    #[error("header section is not terminated")]
    Incomplete,
    #[error("header section larger than {0} bytes")]
    TooLarge(usize),
    #[error("invalid Content-Length {0:?}")]
    BadContentLength(String),
}

/// Largest header section we look at. A real OPTIONS answer is under 2 KiB;
/// this only bounds the work an abusive peer can cause.
pub const MAX_HEAD: usize = 64 * 1024;

/// Parse one SIP response (a whole datagram, or one message framed by
/// [`message_len`]). A Content-Length that is not a number, differs from
/// another one, or promises more body than the message has makes it
/// malformed (RFC 3261 7.5; 18.3: such a response MUST be discarded).
pub fn parse_response(bytes: &[u8]) -> Result<SipResponse, ParseError> {
    let (start, headers) = split_head(bytes)?;
    let mut parts = start.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.eq_ignore_ascii_case("SIP/2.0") {
        return Err(ParseError::NotAResponse(truncate(start)));
    }
    let code_str = parts.next().unwrap_or_default();
    let code = match code_str.parse::<u16>() {
        Ok(c) if (100..=699).contains(&c) && code_str.len() == 3 => c,
        _ => return Err(ParseError::BadStatus(truncate(code_str))),
    };
    let reason = parts.next().unwrap_or_default().trim().to_string();

    let mut resp = SipResponse {
        code,
        reason,
        branch: None,
        call_id: None,
        cseq: None,
    };
    let mut seen_via = false;
    let mut length: Option<usize> = None;
    for (name, value) in headers {
        match canonical(name) {
            Some(Header::ContentLength) => {
                let n = content_length(&value)?;
                if length.is_some_and(|l| l != n) {
                    return Err(ParseError::BadContentLength(format!(
                        "{} and {n}",
                        length.unwrap_or_default()
                    )));
                }
                length = Some(n);
            }
            Some(Header::Via) if !seen_via => {
                seen_via = true;
                resp.branch = via_branch(&value);
            }
            Some(Header::CallId) if resp.call_id.is_none() => {
                resp.call_id = Some(value.trim().to_string());
            }
            Some(Header::CSeq) if resp.cseq.is_none() => {
                // `CSeq = 1*DIGIT LWS Method`: anything after is malformed.
                let mut it = value.split_whitespace();
                if let (Some(n), Some(m), None) = (it.next(), it.next(), it.next())
                    && let Ok(n) = n.parse::<u32>()
                {
                    resp.cseq = Some((n, m.to_ascii_uppercase()));
                }
            }
            _ => {}
        }
    }
    let body = body_len(bytes);
    if let Some(l) = length.filter(|l| *l > body) {
        return Err(ParseError::BadContentLength(format!(
            "{l}, but the body has {body} bytes"
        )));
    }
    Ok(resp)
}

/// `Content-Length = 1*DIGIT` (no sign, no spaces inside, no hex).
fn content_length(value: &str) -> Result<usize, ParseError> {
    let v = value.trim();
    v.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| v.parse::<usize>().ok())
        .flatten()
        .ok_or_else(|| ParseError::BadContentLength(truncate(v)))
}

/// Where the body starts: just after the blank line that ends the header
/// section (CRLF CRLF, or LF LF as tolerated); `None` if there is no blank
/// line. Leading CRLF keep-alives are skipped, as `split_head` does.
fn body_start(bytes: &[u8]) -> Option<usize> {
    let start = bytes
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(bytes.len());
    let head = &bytes[start..];
    find_head_end(head)
        .map(|i| i + 4)
        .or_else(|| head.windows(2).position(|w| w == b"\n\n").map(|i| i + 2))
        .map(|after| start + after)
}

/// How many bytes follow the header section (the body and anything after it).
fn body_len(bytes: &[u8]) -> usize {
    body_start(bytes).map_or(0, |at| bytes.len() - at)
}

/// The body of one message (a datagram, or a stream message framed by
/// [`message_len`]): the bytes after the header section, cut to a valid
/// Content-Length when that is shorter. Empty when there is no header end.
/// The one reading of a body: the call probe takes its SDP answer from here.
pub fn body(bytes: &[u8]) -> &[u8] {
    let Some(at) = body_start(bytes) else {
        return &[];
    };
    let rest = &bytes[at..];
    let declared = split_head(bytes).ok().and_then(|(_, headers)| {
        headers
            .iter()
            .find(|(name, _)| canonical(name) == Some(Header::ContentLength))
            .and_then(|(_, value)| content_length(value).ok())
    });
    &rest[..declared.map_or(rest.len(), |n| n.min(rest.len()))]
}

/// For stream transports: the total length of the first message in `buf`
/// (headers plus Content-Length body), or `None` if more bytes are needed.
/// Leading CRLFs (RFC 5626 keep-alives) count towards the message.
pub fn message_len(buf: &[u8]) -> Result<Option<usize>, ParseError> {
    let Some(end) = find_head_end(buf) else {
        if buf.len() > MAX_HEAD {
            return Err(ParseError::TooLarge(MAX_HEAD));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| ParseError::NotUtf8)?;
    let mut body = 0usize;
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':')
            && canonical(name) == Some(Header::ContentLength)
        {
            body = content_length(value)?;
            if body > MAX_HEAD {
                return Err(ParseError::BadContentLength(truncate(value.trim())));
            }
        }
    }
    let total = end.saturating_add(4).saturating_add(body);
    Ok((buf.len() >= total).then_some(total))
}

/// A start line and its `(name, value)` header lines (a folded value is
/// unfolded, so owned; the rest borrow the message).
pub(crate) type Head<'a> = (&'a str, Vec<(&'a str, Cow<'a, str>)>);

/// The start line and the unfolded header lines of a SIP message (request or
/// response). Shared with the test responder, which parses requests.
pub(crate) fn split_head(bytes: &[u8]) -> Result<Head<'_>, ParseError> {
    // Tolerate leading CRLF keep-alives and a missing final blank line in a
    // datagram (the whole datagram is the message).
    let start_at = bytes
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .ok_or(ParseError::Empty)?;
    let bytes = &bytes[start_at..];
    let head_end = find_head_end(bytes).unwrap_or(bytes.len());
    if head_end > MAX_HEAD {
        return Err(ParseError::TooLarge(MAX_HEAD));
    }
    let head = std::str::from_utf8(&bytes[..head_end]).map_err(|_| ParseError::NotUtf8)?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let start = lines.next().ok_or(ParseError::Empty)?.trim();
    if start.is_empty() {
        return Err(ParseError::Empty);
    }
    let mut headers: Vec<(&str, Cow<'_, str>)> = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        // Header folding (obsolete but legal, RFC 3261 7.3.1): a continuation
        // line belongs to the previous header, joined with one space. Before
        // any header it belongs to nothing.
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = headers.last_mut() {
                let joined = format!("{} {}", value.trim_end(), line.trim());
                *value = Cow::Owned(joined);
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim(), Cow::Borrowed(value.trim())));
        }
    }
    Ok((start, headers))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Header {
    Via,
    CallId,
    CSeq,
    ContentLength,
    From,
    To,
}

/// Header names are case-insensitive and have compact forms (RFC 3261 7.3.3).
pub(crate) fn canonical(name: &str) -> Option<Header> {
    let n = name.trim();
    let is =
        |long: &str, short: &str| n.eq_ignore_ascii_case(long) || n.eq_ignore_ascii_case(short);
    if is("Via", "v") {
        Some(Header::Via)
    } else if is("Call-ID", "i") {
        Some(Header::CallId)
    } else if n.eq_ignore_ascii_case("CSeq") {
        Some(Header::CSeq)
    } else if is("Content-Length", "l") {
        Some(Header::ContentLength)
    } else if is("From", "f") {
        Some(Header::From)
    } else if is("To", "t") {
        Some(Header::To)
    } else {
        None
    }
}

/// `branch` of the first Via value in a (possibly comma-joined) Via header.
pub(crate) fn via_branch(value: &str) -> Option<String> {
    let first = value.split(',').next()?;
    first.split(';').skip(1).find_map(|param| {
        let (k, v) = param.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("branch")
            .then(|| v.trim().to_string())
    })
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OK: &str = "SIP/2.0 200 OK\r\n\
        Via: SIP/2.0/UDP 192.0.2.10:40000;branch=z9hG4bKabc;rport=40000;received=192.0.2.10\r\n\
        Via: SIP/2.0/UDP proxy.example;branch=z9hG4bKother\r\n\
        From: <sip:ping@192.0.2.10>;tag=1\r\n\
        To: <sip:trunk.example>;tag=2\r\n\
        Call-ID: abc@continuity-agent\r\n\
        CSeq: 42 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";

    #[test]
    fn parses_status_and_matching_fields() {
        let r = parse_response(OK.as_bytes()).unwrap();
        assert_eq!(r.code, 200);
        assert_eq!(r.reason, "OK");
        assert_eq!(r.branch.as_deref(), Some("z9hG4bKabc"));
        assert_eq!(r.call_id.as_deref(), Some("abc@continuity-agent"));
        assert_eq!(r.cseq, Some((42, "OPTIONS".into())));
        assert!(!r.is_provisional());
    }

    #[test]
    fn accepts_compact_forms_lf_only_and_comma_joined_via() {
        let msg = "\r\nSIP/2.0 503 Service Unavailable\n\
            v: SIP/2.0/TCP a;BRANCH=z9hG4bK1, SIP/2.0/TCP b;branch=z9hG4bK2\n\
            i: xyz\n\
            cseq: 7 options\n\n";
        let r = parse_response(msg.as_bytes()).unwrap();
        assert_eq!(r.code, 503);
        assert_eq!(r.reason, "Service Unavailable");
        assert_eq!(r.branch.as_deref(), Some("z9hG4bK1"));
        assert_eq!(r.call_id.as_deref(), Some("xyz"));
        assert_eq!(r.cseq, Some((7, "OPTIONS".into())));
    }

    #[test]
    fn rejects_what_is_not_a_response() {
        assert_eq!(parse_response(b""), Err(ParseError::Empty));
        assert_eq!(parse_response(b"\r\n\r\n"), Err(ParseError::Empty));
        assert!(matches!(
            parse_response(b"OPTIONS sip:x SIP/2.0\r\n\r\n"),
            Err(ParseError::NotAResponse(_))
        ));
        assert!(matches!(
            parse_response(b"SIP/2.0 2000 OK\r\n\r\n"),
            Err(ParseError::BadStatus(_))
        ));
        assert!(matches!(
            parse_response(b"SIP/2.0 099 x\r\n\r\n"),
            Err(ParseError::BadStatus(_))
        ));
        assert_eq!(
            parse_response(b"SIP/2.0 200 \xff\r\n\r\n"),
            Err(ParseError::NotUtf8)
        );
        // Missing headers are not errors; the matcher rejects the response.
        let r = parse_response(b"SIP/2.0 200 OK").unwrap();
        assert_eq!((r.branch, r.call_id, r.cseq), (None, None, None));
    }

    /// RFC 3261 18.3: a response whose Content-Length is unparsable, or
    /// larger than the body the datagram carries, MUST be discarded.
    #[test]
    fn a_bad_or_too_large_content_length_is_malformed() {
        let with = |cl: &str, body: &str| {
            parse_response(format!("\r\nSIP/2.0 200 OK\r\n{cl}\r\n\r\n{body}").as_bytes())
        };
        assert!(with("Content-Length: 0", "").is_ok());
        assert!(with("l: 4", "abcd").is_ok());
        assert!(
            with("Content-Length: 2", "abcd").is_ok(),
            "extra bytes are dropped"
        );
        assert!(
            parse_response(b"SIP/2.0 200 OK\nContent-Length: 2\n\nab").is_ok(),
            "LF-only"
        );
        for bad in [
            "-1",
            "abc",
            "+4",
            "0x10",
            "",
            "1e3",
            "18446744073709551616",
            "5",
        ] {
            assert!(
                matches!(
                    with(&format!("Content-Length: {bad}"), "abcd"),
                    Err(ParseError::BadContentLength(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            with("Content-Length: 0\r\nContent-Length: 4", "abcd"),
            Err(ParseError::BadContentLength(_))
        ));
    }

    #[test]
    fn frames_stream_messages() {
        assert_eq!(message_len(b"SIP/2.0 200 OK\r\nl: 0\r\n").unwrap(), None);
        let two = format!("{OK}{OK}");
        let n = message_len(two.as_bytes()).unwrap().unwrap();
        assert_eq!(n, OK.len());
        let with_body = b"SIP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhel";
        assert_eq!(message_len(with_body).unwrap(), None);
        let with_body = b"SIP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(message_len(with_body).unwrap(), Some(with_body.len()));
        assert!(matches!(
            message_len(b"SIP/2.0 200 OK\r\nContent-Length: -1\r\n\r\n"),
            Err(ParseError::BadContentLength(_))
        ));
        assert!(matches!(
            message_len(&vec![b'a'; MAX_HEAD + 1]),
            Err(ParseError::TooLarge(_))
        ));
        // The framing reads Content-Length by the same rule as the parser: a
        // sign is not a digit (framing it as 5 would eat the next message).
        assert!(matches!(
            message_len(b"SIP/2.0 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
            Err(ParseError::BadContentLength(_))
        ));
    }

    #[test]
    fn body_is_cut_to_content_length_and_skips_keep_alives() {
        let with_trailer = b"\r\nSIP/2.0 200 OK\r\nl: 3\r\n\r\nv=0EXTRA";
        assert_eq!(body(with_trailer), b"v=0");
        // A shorter body than declared: what is there (parse_response
        // refuses such a message; the body never reads past the bytes).
        assert_eq!(
            body(b"SIP/2.0 200 OK\r\nContent-Length: 9\r\n\r\nv=0"),
            b"v=0"
        );
        // No Content-Length (a datagram): everything after the head.
        assert_eq!(body(b"SIP/2.0 200 OK\n\nv=0\n"), b"v=0\n");
        // An invalid Content-Length bounds nothing.
        assert_eq!(body(b"SIP/2.0 200 OK\r\nl: x\r\n\r\nv=0"), b"v=0");
        assert_eq!(body(b"SIP/2.0 200 OK\r\nl: 0"), b"");
        assert_eq!(body(b""), b"");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_response(&bytes);
            let _ = message_len(&bytes);
        }

        #[test]
        fn mutated_responses_never_panic(cut in 0..OK.len(), flip in 0..OK.len(), byte in any::<u8>()) {
            let mut b = OK.as_bytes().to_vec();
            b[flip] = byte;
            let _ = parse_response(&b[..cut]);
            let _ = parse_response(&b);
            let _ = message_len(&b[..cut]);
        }

        #[test]
        fn any_status_code_round_trips(code in 100u16..700, reason in "[A-Za-z ]{0,20}") {
            let msg = format!("SIP/2.0 {code} {reason}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n\r\n");
            let r = parse_response(msg.as_bytes()).unwrap();
            prop_assert_eq!(r.code, code);
            prop_assert_eq!(r.reason, reason.trim());
        }
    }
}
