//! The SDP (RFC 4566) of a test call: our offer (one audio stream, PCMU and
//! PCMA) and the two things we need from the answer: where to send RTP and
//! which codec was chosen. A tolerant, never-panicking hand parser: one
//! `c=` and one `m=audio` line are all a probe reads.

use std::net::{IpAddr, SocketAddr};

/// G.711 payload types (RFC 3551, static).
pub const PCMU: u8 = 0;
pub const PCMA: u8 = 8;

/// Where and how the peer receives our audio.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MediaAnswer {
    pub addr: SocketAddr,
    /// The first offered codec the answer kept.
    pub payload_type: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("answer has no SDP body")]
    Empty,
    #[error("SDP answer has no audio stream")]
    NoAudio,
    #[error("SDP answer rejected the audio stream (port 0)")]
    Rejected,
    #[error("SDP answer has no connection address")]
    NoAddress,
    #[error("SDP answer kept none of our codecs (PCMU, PCMA)")]
    NoCodec,
}

/// Our offer: audio on `rtp` with PCMU and PCMA, 20ms packets.
pub fn offer(rtp: SocketAddr, session: u64) -> String {
    let (net, ip) = match rtp.ip() {
        IpAddr::V4(a) => ("IP4", a.to_string()),
        IpAddr::V6(a) => ("IP6", a.to_string()),
    };
    format!(
        "v=0\r\n\
         o=continuity-agent {session} {session} IN {net} {ip}\r\n\
         s=continuity-agent test call\r\n\
         c=IN {net} {ip}\r\n\
         t=0 0\r\n\
         m=audio {port} RTP/AVP {PCMU} {PCMA}\r\n\
         a=rtpmap:{PCMU} PCMU/8000\r\n\
         a=rtpmap:{PCMA} PCMA/8000\r\n\
         a=ptime:20\r\n\
         a=sendrecv\r\n",
        port = rtp.port()
    )
}

/// Reads the answer's audio destination and codec. A media-level `c=`
/// overrides the session-level one (RFC 4566 5.7).
pub fn parse_answer(body: &[u8]) -> Result<MediaAnswer, SdpError> {
    let text = String::from_utf8_lossy(body);
    let mut session_addr = None;
    let mut media_addr = None;
    let mut audio: Option<(u16, Vec<u8>)> = None;
    let mut in_audio = false;
    let mut seen_media = false;
    for line in text.lines().map(str::trim) {
        if let Some(m) = line.strip_prefix("m=") {
            seen_media = true;
            in_audio = false;
            let mut f = m.split_whitespace();
            if audio.is_none() && f.next() == Some("audio") {
                let port = f
                    .next()
                    .and_then(|p| p.split('/').next()?.parse::<u16>().ok());
                let _proto = f.next();
                let pts = f.filter_map(|p| p.parse::<u8>().ok()).collect();
                if let Some(port) = port {
                    audio = Some((port, pts));
                    in_audio = true;
                }
            }
        } else if let Some(c) = line.strip_prefix("c=") {
            let addr = connection_address(c);
            if !seen_media {
                session_addr = addr;
            } else if in_audio {
                media_addr = addr;
            }
        }
    }
    if text.trim().is_empty() {
        return Err(SdpError::Empty);
    }
    let (port, pts) = audio.ok_or(SdpError::NoAudio)?;
    if port == 0 {
        return Err(SdpError::Rejected);
    }
    let ip = media_addr.or(session_addr).ok_or(SdpError::NoAddress)?;
    let payload_type = pts
        .into_iter()
        .find(|pt| *pt == PCMU || *pt == PCMA)
        .ok_or(SdpError::NoCodec)?;
    Ok(MediaAnswer {
        addr: SocketAddr::new(ip, port),
        payload_type,
    })
}

/// `IN IP4 192.0.2.1` (a multicast `/ttl` suffix is ignored).
fn connection_address(c: &str) -> Option<IpAddr> {
    let mut f = c.split_whitespace();
    if f.next() != Some("IN") {
        return None;
    }
    let _net = f.next()?;
    f.next()?.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SIPP_ANSWER: &str = "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\n\
        c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    #[test]
    fn reads_address_port_and_codec() {
        let a = parse_answer(SIPP_ANSWER.as_bytes()).unwrap();
        assert_eq!(a.addr, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(a.payload_type, PCMU);
    }

    #[test]
    fn media_level_connection_wins_and_first_audio_counts() {
        let sdp = "v=0\nc=IN IP4 192.0.2.1\nm=video 5000 RTP/AVP 96\nc=IN IP4 192.0.2.9\n\
                   m=audio 7000 RTP/AVP 101 8 0\nc=IN IP6 2001:db8::5\nm=audio 8000 RTP/AVP 0\n";
        let a = parse_answer(sdp.as_bytes()).unwrap();
        assert_eq!(a.addr, "[2001:db8::5]:7000".parse().unwrap());
        assert_eq!(a.payload_type, PCMA);
    }

    #[test]
    fn says_what_is_missing() {
        assert_eq!(parse_answer(b""), Err(SdpError::Empty));
        assert_eq!(
            parse_answer(b"v=0\r\nc=IN IP4 1.2.3.4\r\n"),
            Err(SdpError::NoAudio)
        );
        assert_eq!(
            parse_answer(b"c=IN IP4 1.2.3.4\nm=audio 0 RTP/AVP 0\n"),
            Err(SdpError::Rejected)
        );
        assert_eq!(
            parse_answer(b"m=audio 4000 RTP/AVP 0\n"),
            Err(SdpError::NoAddress)
        );
        assert_eq!(
            parse_answer(b"c=IN IP4 1.2.3.4\nm=audio 4000 RTP/AVP 18\n"),
            Err(SdpError::NoCodec)
        );
    }

    #[test]
    fn our_offer_parses_as_an_answer() {
        let rtp: SocketAddr = "192.0.2.7:40000".parse().unwrap();
        let o = offer(rtp, 42);
        assert!(o.contains("m=audio 40000 RTP/AVP 0 8\r\n"), "{o}");
        let a = parse_answer(o.as_bytes()).unwrap();
        assert_eq!((a.addr, a.payload_type), (rtp, PCMU));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
            let _ = parse_answer(&bytes);
        }

        #[test]
        fn mutated_answers_never_panic(cut in 0..SIPP_ANSWER.len(), flip in 0..SIPP_ANSWER.len(), byte in any::<u8>()) {
            let mut b = SIPP_ANSWER.as_bytes().to_vec();
            b[flip] = byte;
            let _ = parse_answer(&b[..cut]);
            let _ = parse_answer(&b);
        }
    }
}
