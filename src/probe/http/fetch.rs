//! The HTTP GET shared by the http, statuspage and agents probes (and the
//! self-check's http canaries): one client per probe (its headers and
//! timeout) that opens a fresh connection for every check, a bounded body,
//! and error details an operator can act on (`connection refused`,
//! `dns error: ...`).

use crate::domain::ProbeOutcome;
use std::error::Error as _;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use tokio::time::Instant;

/// Bodies larger than this are cut off: a health or status document is a few
/// KiB, and a misbehaving endpoint must not make the agent buffer gigabytes.
pub const MAX_BODY: usize = 4 << 20;

/// A response with its body read.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub body: Bytes,
    /// Time to the response headers (what operators mean by response time).
    pub latency: Duration,
}

/// Build the client for one probe. Redirects are followed (up to 10), but
/// a probe with headers of its own follows none to another host: reqwest
/// drops `Authorization` and cookies there, not an `X-Api-Key`, so the
/// secret would go to whoever the redirect names. The 3xx is then the answer
/// the probe judges. TLS uses rustls with the platform trust store, parsed
/// once for the process (`crate::tls`).
pub fn client(timeout: Duration, headers: &HeaderMap) -> Result<Client, String> {
    let keep_on_host = !headers.is_empty();
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        let cross_host = attempt
            .previous()
            .first()
            .is_some_and(|first| first.host_str() != attempt.url().host_str());
        if attempt.previous().len() > 10 {
            attempt.error("too many redirects")
        } else if keep_on_host && cross_host {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    crate::tls::http_client_builder()
        .map_err(|e| format!("cannot build HTTP client: {e}"))?
        .user_agent(concat!("continuity-agent/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers.clone())
        .redirect(redirects)
        // The probe's own timeout (tokio) is authoritative and gives the
        // standard detail; reqwest's is a backstop slightly behind it.
        .timeout(timeout + Duration::from_millis(500))
        .connect_timeout(timeout + Duration::from_millis(500))
        // A fresh connection for every check, as blackbox_exporter does: a
        // kept-alive connection can outlive its listener (a process
        // draining, a backend out of its load balancer, an accept loop that
        // died) and would report a service healthy that nobody new can
        // reach; it would also skip the TLS handshake, so an expired
        // certificate would go unnoticed. The cost is a TCP (and TLS)
        // handshake per check (BENCHMARKS.md, "HTTP probes").
        .pool_max_idle_per_host(0)
        .build()
        .map_err(|e| format!("cannot build HTTP client: {}", chain(&e)))
}

/// GET `url` and read at most [`MAX_BODY`] bytes of the body. The caller
/// enforces the overall timeout. An error is the attempt's outcome: a
/// failure, or inconclusive when this host ran out of descriptors, buffers
/// or addresses (`probe::local`).
pub async fn get(client: &Client, url: &str, read_body: bool) -> Result<Fetched, ProbeOutcome> {
    let start = Instant::now();
    let mut resp = client.get(url).send().await.map_err(|e| {
        if crate::probe::local::is_local(&e) {
            ProbeOutcome::inconclusive(describe(&e))
        } else {
            ProbeOutcome::failure(describe(&e), None)
        }
    })?;
    let latency = start.elapsed();
    let status = resp.status();
    let mut body = Vec::new();
    if read_body {
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            ProbeOutcome::failure(format!("reading the body failed: {}", chain(&e)), None)
        })? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(ProbeOutcome::failure(
                    format!("body larger than {} MiB", MAX_BODY >> 20),
                    None,
                ));
            }
            body.extend_from_slice(&chunk);
        }
    }
    Ok(Fetched {
        status,
        body: body.into(),
        latency,
    })
}

/// GET `url` with its body and require a 2xx answer; anything else is the
/// probe's failure outcome, its detail phrased by `describe` from the status
/// text (`"503 Service Unavailable"`).
pub async fn get_ok(
    client: &Client,
    url: &str,
    describe: impl FnOnce(&str) -> String,
) -> Result<Fetched, ProbeOutcome> {
    let got = get(client, url, true).await?;
    if !got.status.is_success() {
        return Err(ProbeOutcome::failure(
            describe(&status_text(got.status)),
            Some(got.latency),
        ));
    }
    Ok(got)
}

/// `200 OK`, `503 Service Unavailable`, `299` (no canonical reason).
pub fn status_text(s: StatusCode) -> String {
    match s.canonical_reason() {
        Some(r) => format!("{} {r}", s.as_u16()),
        None => s.as_u16().to_string(),
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timeout".into();
    }
    let what = if e.is_connect() {
        "connection failed"
    } else if e.is_builder() {
        "invalid request"
    } else {
        "request failed"
    };
    format!("{what}: {}", chain(e))
}

/// The innermost causes, which carry the useful words ("Connection refused",
/// "dns error", "invalid peer certificate"), without reqwest's URL preamble.
fn chain(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        src = s.source();
    }
    // Keep the last two levels: the generic wrapper names are noise.
    let n = parts.len();
    if n == 0 {
        // reqwest's own text starts with the URL, which may carry
        // credentials (user:password@, ?api_key=): never show it.
        return if e.is_decode() {
            "invalid response body".into()
        } else if e.is_redirect() {
            "too many redirects".into()
        } else if e.is_status() {
            "unexpected status".into()
        } else {
            "no further detail".into()
        };
    }
    parts[n.saturating_sub(2)..].join(": ")
}
