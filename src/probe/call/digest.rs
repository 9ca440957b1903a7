//! HTTP digest authentication as SIP uses it (RFC 3261 22, RFC 7616 for
//! SHA-256; RFC 8760): answering a 401/407 challenge with `qop=auth` or the
//! RFC 2069 form without qop. Written by hand: it is two hashes and a header,
//! and the crates that exist target HTTP clients.

use md5::Digest as _;
use secrecy::{ExposeSecret, SecretString};
use sha2::Digest as _;

/// The hash a challenge asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    fn token(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    fn hash(self, s: &str) -> String {
        match self {
            Algorithm::Md5 => hex::encode(md5::Md5::digest(s.as_bytes())),
            Algorithm::Sha256 => hex::encode(sha2::Sha256::digest(s.as_bytes())),
        }
    }
}

/// A parsed `WWW-Authenticate` / `Proxy-Authenticate` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    pub algorithm: Algorithm,
    /// The server offered `qop=auth` (we never use `auth-int`).
    pub qop_auth: bool,
    /// `stale=true`: the credentials were right, only the nonce expired.
    pub stale: bool,
}

/// Parse a Digest challenge. Errors say why we cannot answer it.
pub fn parse_challenge(value: &str) -> Result<Challenge, String> {
    let v = value.trim();
    let rest = match v.split_once(char::is_whitespace) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("digest") => rest,
        _ => {
            return Err(format!(
                "unsupported authentication scheme in {:?}",
                short(v)
            ));
        }
    };
    let (mut realm, mut nonce, mut opaque, mut algorithm, mut qop) = (None, None, None, None, None);
    let mut stale = false;
    for (k, val) in params(rest) {
        match k.to_ascii_lowercase().as_str() {
            "realm" => realm = Some(val),
            "nonce" => nonce = Some(val),
            "opaque" => opaque = Some(val),
            "algorithm" => algorithm = Some(val),
            "qop" => qop = Some(val),
            "stale" => stale = val.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    let algorithm = match algorithm.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("MD5") => Algorithm::Md5,
        Some("SHA-256") => Algorithm::Sha256,
        Some(other) => return Err(format!("unsupported digest algorithm {}", short(other))),
    };
    let qop_auth = match &qop {
        None => false,
        Some(q) if q.split(',').any(|t| t.trim().eq_ignore_ascii_case("auth")) => true,
        Some(q) => return Err(format!("unsupported qop {:?} (only auth)", short(q))),
    };
    Ok(Challenge {
        realm: realm.ok_or("challenge without realm")?,
        nonce: nonce.ok_or("challenge without nonce")?,
        opaque,
        algorithm,
        qop_auth,
        stale,
    })
}

/// The `Authorization` / `Proxy-Authorization` value answering `ch`.
/// `cnonce` is random per request; `nc` counts uses of this nonce.
pub fn authorization(
    ch: &Challenge,
    method: &str,
    uri: &str,
    username: &str,
    password: &SecretString,
    cnonce: &str,
    nc: u32,
) -> String {
    let h = |s: String| ch.algorithm.hash(&s);
    let ha1 = h(format!(
        "{username}:{}:{}",
        ch.realm,
        password.expose_secret()
    ));
    let ha2 = h(format!("{method}:{uri}"));
    let mut out = format!(
        "Digest username=\"{username}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm={}",
        ch.realm,
        ch.nonce,
        ch.algorithm.token()
    );
    let response = if ch.qop_auth {
        let nc = format!("{nc:08x}");
        out.push_str(&format!(", qop=auth, nc={nc}, cnonce=\"{cnonce}\""));
        h(format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", ch.nonce))
    } else {
        h(format!("{ha1}:{}:{ha2}", ch.nonce))
    };
    out.push_str(&format!(", response=\"{response}\""));
    if let Some(o) = &ch.opaque {
        out.push_str(&format!(", opaque=\"{o}\""));
    }
    out
}

/// `k=v` / `k="v, with commas"` pairs of an auth header. Never panics.
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.trim().is_empty() && chars.peek().is_none() {
            return out;
        }
        let mut value = String::new();
        if chars.next_if_eq(&'=').is_some() {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            if chars.next_if_eq(&'"').is_some() {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next()),
                        '"' => break,
                        c => value.push(c),
                    }
                }
            } else {
                value = std::iter::from_fn(|| chars.next_if(|c| *c != ',')).collect();
            }
        }
        out.push((key.trim().to_string(), value.trim().to_string()));
    }
}

fn short(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc2617_md5_example() {
        // RFC 2617 3.5 (the HTTP example; SIP uses the same computation).
        let ch = parse_challenge(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        assert_eq!((ch.algorithm, ch.qop_auth), (Algorithm::Md5, true));
        let a = authorization(
            &ch,
            "GET",
            "/dir/index.html",
            "Mufasa",
            &SecretString::from("Circle Of Life"),
            "0a4f113b",
            1,
        );
        assert!(
            a.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{a}"
        );
        assert!(a.contains("nc=00000001, cnonce=\"0a4f113b\""), "{a}");
        assert!(
            a.ends_with("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""),
            "{a}"
        );
    }

    #[test]
    fn rfc7616_sha256_example() {
        let ch = parse_challenge(
            "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=SHA-256, \
             nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"",
        )
        .unwrap();
        assert_eq!(ch.algorithm, Algorithm::Sha256);
        let a = authorization(
            &ch,
            "GET",
            "/dir/index.html",
            "Mufasa",
            &SecretString::from("Circle of Life"),
            "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
            1,
        );
        assert!(
            a.contains(
                "response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\""
            ),
            "{a}"
        );
    }

    #[test]
    fn without_qop_uses_rfc2069() {
        let ch = parse_challenge("Digest realm=\"r\",nonce=\"n\"").unwrap();
        assert!(!ch.qop_auth && !ch.stale);
        assert!(
            parse_challenge("Digest realm=\"r\", nonce=\"n2\", stale=TRUE")
                .unwrap()
                .stale
        );
        let a = authorization(
            &ch,
            "INVITE",
            "sip:x",
            "u",
            &SecretString::from("p"),
            "c",
            1,
        );
        let ha1 = Algorithm::Md5.hash("u:r:p");
        let ha2 = Algorithm::Md5.hash("INVITE:sip:x");
        let want = Algorithm::Md5.hash(&format!("{ha1}:n:{ha2}"));
        assert!(
            a.contains(&format!("response=\"{want}\"")) && !a.contains("qop"),
            "{a}"
        );
    }

    #[test]
    fn refuses_what_it_cannot_answer() {
        assert!(
            parse_challenge("Basic realm=\"x\"")
                .unwrap_err()
                .contains("scheme")
        );
        assert!(
            parse_challenge("Digest realm=\"x\", nonce=\"n\", algorithm=SHA-512-256")
                .unwrap_err()
                .contains("algorithm")
        );
        assert!(
            parse_challenge("Digest realm=\"x\", nonce=\"n\", qop=\"auth-int\"")
                .unwrap_err()
                .contains("qop")
        );
        assert!(
            parse_challenge("Digest realm=\"x\"")
                .unwrap_err()
                .contains("nonce")
        );
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,200}") {
            let _ = parse_challenge(&s);
            let _ = parse_challenge(&format!("Digest {s}"));
        }
    }
}
