//! SIP probe targets as operators write them in `[[probes]] target`.
//!
//! Accepted: `sip:host[:port][;transport=udp|tcp|tls]` and `sips:host[:port]`
//! (TLS, default port 5061), with an optional `user@` part and IPv6 literals in
//! brackets (`sip:[2001:db8::1]:5070`). No SRV/NAPTR lookup (RFC 3263): the
//! port defaults to 5060 (5061 for TLS) and the transport to UDP for `sip:`,
//! as RFC 3263 does when no NAPTR/SRV records exist. Operators who rely on SRV
//! write the resolved host and port.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// How the OPTIONS request travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    /// The token used in `Via: SIP/2.0/<T>` and `;transport=`.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            Transport::Tls => 5061,
            _ => 5060,
        }
    }
}

/// The host part: a name resolved at each attempt, or a literal address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(n) => f.write_str(n),
            Host::Ip(IpAddr::V6(a)) => write!(f, "[{a}]"),
            Host::Ip(IpAddr::V4(a)) => write!(f, "{a}"),
        }
    }
}

/// A parsed probe target.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SipTarget {
    /// `sips:` was used (implies TLS).
    pub secure: bool,
    pub user: Option<String>,
    pub host: Host,
    /// Explicit port, if written.
    pub port: Option<u16>,
    pub transport: Transport,
}

impl SipTarget {
    /// The port to contact: explicit, or the transport's default.
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(self.transport.default_port())
    }

    /// The Request-URI (and To URI): the target as written, minus parameters
    /// other than `transport` (which tells the next hop how we came).
    pub fn request_uri(&self) -> String {
        let mut s = String::from(if self.secure { "sips:" } else { "sip:" });
        if let Some(u) = &self.user {
            s.push_str(u);
            s.push('@');
        }
        s.push_str(&self.host.to_string());
        if let Some(p) = self.port {
            s.push(':');
            s.push_str(&p.to_string());
        }
        if !self.secure && self.transport != Transport::Udp {
            s.push_str(";transport=");
            s.push_str(&self.transport.via_token().to_ascii_lowercase());
        }
        s
    }
}

impl fmt::Display for SipTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.request_uri())
    }
}

/// Parse a probe target. Errors are sentences for operators (the config
/// validator shows them next to the key).
pub fn parse_target(s: &str) -> Result<SipTarget, String> {
    let t = s.trim();
    let (secure, rest) = if let Some(r) = strip_prefix_ci(t, "sips:") {
        (true, r)
    } else if let Some(r) = strip_prefix_ci(t, "sip:") {
        (false, r)
    } else {
        return Err(format!(
            "\"{t}\" is not a SIP URI; write it like \"sip:trunk.example.net:5060;transport=udp\" or \"sips:trunk.example.net\""
        ));
    };
    if rest.contains('?') {
        return Err(format!(
            "\"{t}\": URI headers (`?...`) are not supported in a probe target"
        ));
    }
    let (hostport, params) = match rest.split_once(';') {
        Some((hp, p)) => (hp, Some(p)),
        None => (rest, None),
    };
    let (user, hostport) = match hostport.rsplit_once('@') {
        Some((u, hp)) => {
            if u.is_empty() {
                return Err(format!("\"{t}\": empty user part before '@'"));
            }
            if !u.chars().all(is_user_char) {
                return Err(format!(
                    "\"{t}\": user part \"{u}\" has characters not allowed in a SIP URI"
                ));
            }
            (Some(u.to_string()), hp)
        }
        None => (None, hostport),
    };
    let (host, port) = parse_hostport(t, hostport)?;

    let mut transport = if secure {
        Transport::Tls
    } else {
        Transport::Udp
    };
    for param in params.into_iter().flat_map(|p| p.split(';')) {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if !name.eq_ignore_ascii_case("transport") {
            // lr, maddr, user=phone...: harmless for a ping; ignored.
            continue;
        }
        let tr = match value.to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            "tls" => Transport::Tls,
            other => {
                return Err(format!(
                    "\"{t}\": unsupported transport \"{other}\"; use udp, tcp or tls"
                ));
            }
        };
        if secure && tr != Transport::Tls {
            return Err(format!(
                "\"{t}\": a sips: URI must use TLS; drop `;transport={value}` or use sip:"
            ));
        }
        transport = tr;
    }
    Ok(SipTarget {
        secure,
        user,
        host,
        port,
        transport,
    })
}

fn parse_hostport(t: &str, hp: &str) -> Result<(Host, Option<u16>), String> {
    if hp.is_empty() {
        return Err(format!("\"{t}\": missing host"));
    }
    let (host, port_str) = if let Some(inner) = hp.strip_prefix('[') {
        let (addr, after) = inner
            .split_once(']')
            .ok_or_else(|| format!("\"{t}\": IPv6 literal is missing its closing ']'"))?;
        let ip: Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("\"{t}\": \"{addr}\" is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("\"{t}\": unexpected \"{p}\" after the IPv6 literal"))?,
            ),
        };
        (Host::Ip(IpAddr::V6(ip)), port)
    } else {
        let (h, p) = match hp.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hp, None),
        };
        if h.contains(':') || p.is_some_and(|p| p.contains(':')) {
            return Err(format!(
                "\"{t}\": IPv6 addresses must be written in brackets, like sip:[2001:db8::1]:5060"
            ));
        }
        let host = match h.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => {
                if !is_hostname(h) {
                    return Err(format!(
                        "\"{t}\": \"{h}\" is not a valid host name or address"
                    ));
                }
                Host::Name(h.to_ascii_lowercase())
            }
        };
        (host, p)
    };
    let port = match port_str {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => {
                return Err(format!(
                    "\"{t}\": port \"{p}\" must be a number from 1 to 65535"
                ));
            }
            Ok(n) => Some(n),
        },
    };
    Ok((host, port))
}

fn is_hostname(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// RFC 3261 `user` characters (unreserved, escaped and user-unreserved).
fn is_user_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-_.!~*'()%&=+$,;?/".contains(c)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn parses_the_documented_forms() {
        let t = parse_target("sip:trunk-a.example.net:5060;transport=udp").unwrap();
        assert_eq!(t.host, Host::Name("trunk-a.example.net".into()));
        assert_eq!(
            (t.port, t.transport, t.secure),
            (Some(5060), Transport::Udp, false)
        );

        let t = parse_target("sip:10.0.0.1;transport=TCP").unwrap();
        assert_eq!(t.host, Host::Ip(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))));
        assert_eq!((t.effective_port(), t.transport), (5060, Transport::Tcp));
        assert_eq!(t.request_uri(), "sip:10.0.0.1;transport=tcp");

        let t = parse_target("sips:sbc.example.com").unwrap();
        assert_eq!(
            (t.effective_port(), t.transport, t.secure),
            (5061, Transport::Tls, true)
        );
        assert_eq!(t.request_uri(), "sips:sbc.example.com");

        let t = parse_target("sip:ping@[2001:db8::1]:5070").unwrap();
        assert_eq!(t.user.as_deref(), Some("ping"));
        assert_eq!(t.host, Host::Ip("2001:db8::1".parse().unwrap()));
        assert_eq!(t.request_uri(), "sip:ping@[2001:db8::1]:5070");

        let t = parse_target("sip:[::1]").unwrap();
        assert_eq!(t.effective_port(), 5060);
        let t = parse_target("sip:h.example;transport=tls").unwrap();
        assert_eq!((t.effective_port(), t.transport), (5061, Transport::Tls));
        assert!(parse_target("SIP:H.Example;lr").is_ok());
    }

    proptest::proptest! {
        /// The Request-URI we print parses back to the same target.
        #[test]
        fn request_uri_round_trips(
            secure in proptest::bool::ANY,
            user in proptest::option::of("[a-z0-9._-]{1,12}"),
            host in "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9-]{0,10}){0,3}",
            v6 in proptest::option::of(proptest::prelude::any::<u128>()),
            port in proptest::option::of(1u16..),
            tr in 0u8..3,
        ) {
            let host = match v6 {
                Some(bits) => Host::Ip(IpAddr::V6(Ipv6Addr::from(bits))),
                None => Host::Name(host.trim_end_matches('-').to_string()),
            };
            proptest::prop_assume!(!matches!(&host, Host::Name(n) if n.split('.').any(|l| l.ends_with('-') || l.is_empty())));
            let transport = if secure {
                Transport::Tls
            } else {
                [Transport::Udp, Transport::Tcp, Transport::Tls][tr as usize]
            };
            let t = SipTarget { secure, user, host, port, transport };
            proptest::prop_assert_eq!(parse_target(&t.request_uri()), Ok(t));
        }

        #[test]
        fn parse_target_never_panics(s in "\\PC{0,64}") {
            let _ = parse_target(&s);
        }
    }

    #[test]
    fn rejects_with_operator_messages() {
        for (input, needle) in [
            ("http://x", "not a SIP URI"),
            ("sip:", "missing host"),
            ("sip:host:0", "1 to 65535"),
            ("sip:host:99999", "1 to 65535"),
            ("sip:host:abc", "1 to 65535"),
            ("sip:2001:db8::1", "brackets"),
            ("sip:[2001:db8::1", "closing ']'"),
            ("sip:[nope]", "not an IPv6"),
            ("sip:host;transport=sctp", "unsupported transport"),
            ("sips:host;transport=udp", "must use TLS"),
            ("sip:bad host", "not a valid host"),
            ("sip:@host", "empty user"),
            ("sip:host?subject=x", "not supported"),
        ] {
            let e = parse_target(input).unwrap_err();
            assert!(e.contains(needle), "{input}: {e}");
        }
    }
}
