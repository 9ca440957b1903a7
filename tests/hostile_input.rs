//! Hostile input against the agent binary (issue 15, fault suite): a corpus
//! of well over 200 bad webhook and API requests, sent as raw bytes over TCP
//! so nothing in a client library cleans them up first. Truncated and
//! invalid JSON, wrong types, huge arrays, deep nesting, 10 MB bodies,
//! invalid UTF-8, NUL bytes, header injection and malformed requests, forged
//! and replayed signatures, path traversal in the Statuspage token.
//!
//! Each one must get a 4xx or a closed connection (never a 2xx, never a 5xx,
//! never a hang); afterwards the agent still runs (no panic), its decision,
//! alerts and override are what they were, Talkdesk got no write, the SIP
//! probe kept its trunk up with no failed attempt, and the resident memory
//! grew by less than [`MEMORY_BOUND_MIB`].

mod support;

use std::path::Path;
use std::time::Duration;

use continuity_agent::alerts::auth::sign_hex;
use serde_json::Value;
use support::agent::AgentProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OPS_TOKEN: &str = "ops-token-0123456789abcdef01";
const GENERIC: &str = "generic-token-0123456789ab";
const ALERTMANAGER: &str = "am-token-0123456789abcdef";
const GRAFANA_HMAC: &str = "grafana-hmac-0123456789ab";
const PAGERDUTY_HMAC: &str = "pagerduty-secret-0123456789";
const DATADOG: &str = "datadog-token-0123456789ab";
const OPSGENIE: &str = "opsgenie-token-0123456789a";
const PATH_TOKEN: &str = "statuspage-path-token-0123456789";
/// Resident memory the whole corpus may add to the agent.
const MEMORY_BOUND_MIB: u64 = 64;
/// The agent's `agent.max_body`.
const MAX_BODY: usize = 64 * 1024;

fn config(port: u16, sim: &str, trunk: &str, dir: &Path) -> String {
    format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
max_body = "64KiB"
{head}[profiles.backup]
default = "+14155558888"
[[probes]]
id = "trunk-a"
type = "sip"
target = "sip:{trunk};transport=udp"
interval = "1s"
timeout = "1s"
[[rules]]
name = "trunk-down"
profile = "backup"
when = {{ down = "trunk-a" }}
[[rules]]
name = "alerted"
profile = "backup"
when = {{ alert = ['alertname=~".+"'] }}
[api]
tokens = [{{ name = "oncall", token = "{OPS_TOKEN}", scopes = ["read", "override", "admin"] }}]
[webhooks.generic]
bearer_token = "{GENERIC}"
[webhooks.alertmanager]
bearer_token = "{ALERTMANAGER}"
[webhooks.grafana]
hmac_secret = "{GRAFANA_HMAC}"
timestamp_header = "X-Grafana-Alerting-Signature-Timestamp"
[webhooks.pagerduty]
hmac_secret = "{PAGERDUTY_HMAC}"
[webhooks.datadog]
bearer_token = "{DATADOG}"
[webhooks.opsgenie]
bearer_token = "{OPSGENIE}"
[webhooks.statuspage]
path_token = "{PATH_TOKEN}"
"#,
        head = support::store_and_talkdesk(dir, sim),
    )
}

/// One request of the corpus: what it is and its raw bytes.
struct Case {
    name: String,
    raw: Vec<u8>,
}

fn request(method: &str, path: &str, headers: &[(&str, String)], body: &[u8]) -> Vec<u8> {
    let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        raw.push_str(&format!("{k}: {v}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    raw
}

fn json() -> (&'static str, String) {
    ("Content-Type", "application/json".to_string())
}

fn bearer(token: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {token}"))
}

/// Bodies no webhook route may accept.
fn bad_bodies() -> Vec<(&'static str, Vec<u8>)> {
    // Without its final newline, so "one byte short" cuts into the JSON.
    let fixture = include_bytes!("fixtures/alerts/generic-firing.json").trim_ascii_end();
    let mut nested = vec![b'['; 100_000];
    nested.extend(vec![b']'; 100_000]);
    let mut deep_object = Vec::new();
    for _ in 0..5_000 {
        deep_object.extend_from_slice(br#"{"a":"#);
    }
    deep_object.extend_from_slice(b"1");
    deep_object.extend(vec![b'}'; 5_000]);
    let mut huge_array = b"[".to_vec();
    huge_array.extend(b"{},".repeat(MAX_BODY));
    huge_array.extend_from_slice(b"{}]");
    let mut invalid_utf8 = br#"{"id":"x","status":"firing","labels":{"alertname":""#.to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
    invalid_utf8.extend_from_slice(br#""}}"#);
    let mut nul = br#"{"id":"x","status":"firing","labels":{"alertname":"a"#.to_vec();
    nul.extend_from_slice(&[0, 0, 0]);
    nul.extend_from_slice(br#""}}"#);
    let mut ten_mb = br#"{"id":"x","status":"firing","labels":{"alertname":""#.to_vec();
    ten_mb.extend(vec![b'a'; 10 * 1024 * 1024]);
    ten_mb.extend_from_slice(br#""}}"#);
    vec![
        ("empty body", Vec::new()),
        ("truncated JSON", fixture[..fixture.len() / 2].to_vec()),
        ("one byte short", fixture[..fixture.len() - 1].to_vec()),
        ("invalid JSON", br#"{"id": "x", "status": firing}"#.to_vec()),
        ("trailing garbage", [fixture, b"}}}"].concat()),
        ("a JSON string", br#""firing""#.to_vec()),
        ("a JSON number", b"4242".to_vec()),
        ("JSON null", b"null".to_vec()),
        ("JSON true", b"true".to_vec()),
        (
            "labels of the wrong type",
            br#"{"id":"x","status":"firing","labels":["alertname","X"]}"#.to_vec(),
        ),
        (
            "status of the wrong type",
            br#"{"id":"x","status":5,"labels":{"alertname":"X"}}"#.to_vec(),
        ),
        (
            "alerts of the wrong type",
            br#"{"alerts":"all of them","status":"firing"}"#.to_vec(),
        ),
        ("deeply nested arrays", nested),
        ("deeply nested objects", deep_object),
        ("huge array (over max_body)", huge_array),
        ("invalid UTF-8", invalid_utf8),
        ("NUL bytes", nul),
        ("10 MB body", ten_mb),
        (
            "binary noise",
            (0..4096u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
                .collect(),
        ),
    ]
}

/// Every webhook route with valid credentials for `body` (PagerDuty and
/// Grafana are signed over the bad body itself, so the parser is what
/// refuses it).
fn authenticated(path_token: &str, body: &[u8], now_secs: u64) -> Vec<(&'static str, Vec<u8>)> {
    let pd = format!("v1={}", sign_hex(PAGERDUTY_HMAC, &[body]));
    let ts = now_secs.to_string();
    let gf = sign_hex(GRAFANA_HMAC, &[ts.as_bytes(), b":", body]);
    vec![
        (
            "generic",
            request(
                "POST",
                "/v1/alerts/generic",
                &[bearer(GENERIC), json()],
                body,
            ),
        ),
        (
            "alertmanager",
            request(
                "POST",
                "/v1/alerts/alertmanager",
                &[bearer(ALERTMANAGER), json()],
                body,
            ),
        ),
        (
            "grafana",
            request(
                "POST",
                "/v1/alerts/grafana",
                &[
                    ("X-Grafana-Alerting-Signature", gf),
                    ("X-Grafana-Alerting-Signature-Timestamp", ts),
                    json(),
                ],
                body,
            ),
        ),
        (
            "pagerduty",
            request(
                "POST",
                "/v1/alerts/pagerduty",
                &[("X-PagerDuty-Signature", pd), json()],
                body,
            ),
        ),
        (
            "datadog",
            request(
                "POST",
                "/v1/alerts/datadog",
                &[bearer(DATADOG), json()],
                body,
            ),
        ),
        (
            "opsgenie",
            request(
                "POST",
                "/v1/alerts/opsgenie",
                &[bearer(OPSGENIE), json()],
                body,
            ),
        ),
        (
            "statuspage",
            request(
                "POST",
                &format!("/v1/alerts/statuspage/{path_token}"),
                &[json()],
                body,
            ),
        ),
        (
            "override",
            request("PUT", "/v1/override", &[bearer(OPS_TOKEN), json()], body),
        ),
    ]
}

fn corpus(now_secs: u64) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name: String, raw: Vec<u8>| cases.push(Case { name, raw });

    // 1. Bad bodies with valid credentials: the parser refuses them.
    for (what, body) in bad_bodies() {
        for (route, raw) in authenticated(PATH_TOKEN, &body, now_secs) {
            add(format!("{route}: {what}"), raw);
        }
    }

    // 2. A real alert with bad credentials: refused before it is parsed.
    let alert = include_bytes!("fixtures/alerts/generic-firing.json");
    let pd_body = include_bytes!("fixtures/alerts/pagerduty-triggered.json");
    let gf_body = include_bytes!("fixtures/alerts/grafana-firing.json");
    for (name, token) in [
        ("no token", None),
        ("empty token", Some(String::new())),
        (
            "a prefix of the token",
            Some(GENERIC[..GENERIC.len() - 1].to_string()),
        ),
        ("the token plus a byte", Some(format!("{GENERIC}x"))),
        ("another source's token", Some(DATADOG.to_string())),
        ("a 64 KiB token", Some("a".repeat(64 * 1024))),
    ] {
        for route in ["generic", "alertmanager", "datadog", "opsgenie"] {
            let mut headers = vec![json()];
            if let Some(t) = &token {
                headers.push(bearer(t));
            }
            add(
                format!("{route}: {name}"),
                request("POST", &format!("/v1/alerts/{route}"), &headers, alert),
            );
        }
    }
    for (name, header) in [
        ("Basic with the bearer token", format!("Basic {GENERIC}")),
        ("Bearer without a token", "Bearer".to_string()),
        ("unknown scheme", format!("Token {GENERIC}")),
        ("two tokens", format!("Bearer {GENERIC} {GENERIC}")),
    ] {
        add(
            format!("generic: {name}"),
            request(
                "POST",
                "/v1/alerts/generic",
                &[("Authorization", header), json()],
                alert,
            ),
        );
    }

    // 3. Forged and replayed signatures.
    let good_pd = sign_hex(PAGERDUTY_HMAC, &[pd_body]);
    let other_body = sign_hex(PAGERDUTY_HMAC, &[b"{}"]);
    let wrong_key = sign_hex("not-the-pagerduty-secret", &[pd_body]);
    for (name, sig) in [
        ("no signature", None),
        ("empty signature", Some(String::new())),
        (
            "signature of another body",
            Some(format!("v1={other_body}")),
        ),
        (
            "signature with another key",
            Some(format!("v1={wrong_key}")),
        ),
        (
            "truncated signature",
            Some(format!("v1={}", &good_pd[..good_pd.len() - 2])),
        ),
        ("signature not hex", Some(format!("v1={}", "zz".repeat(32)))),
        ("unknown scheme only", Some(format!("v2={good_pd}"))),
        (
            "a thousand wrong signatures",
            Some(vec![format!("v1={wrong_key}"); 1000].join(",")),
        ),
        (
            "signature in upper case header value",
            Some(format!("V1={good_pd}")),
        ),
    ] {
        let mut headers = vec![json()];
        if let Some(s) = sig {
            headers.push(("X-PagerDuty-Signature", s));
        }
        add(
            format!("pagerduty: {name}"),
            request("POST", "/v1/alerts/pagerduty", &headers, pd_body),
        );
    }
    for (name, ts) in [
        ("replayed a day later", now_secs - 86_400),
        ("replayed an hour later", now_secs - 3_600),
        ("dated an hour ahead", now_secs + 3_600),
        ("dated at the epoch", 0),
    ] {
        let ts = ts.to_string();
        let sig = sign_hex(GRAFANA_HMAC, &[ts.as_bytes(), b":", gf_body]);
        add(
            format!("grafana: {name}"),
            request(
                "POST",
                "/v1/alerts/grafana",
                &[
                    ("X-Grafana-Alerting-Signature", sig),
                    ("X-Grafana-Alerting-Signature-Timestamp", ts),
                    json(),
                ],
                gf_body,
            ),
        );
    }
    let ts = now_secs.to_string();
    let sig = sign_hex(GRAFANA_HMAC, &[ts.as_bytes(), b":", gf_body]);
    for (name, headers) in [
        (
            "signature without its timestamp",
            vec![("X-Grafana-Alerting-Signature", sig.clone()), json()],
        ),
        (
            "timestamp not a number",
            vec![
                ("X-Grafana-Alerting-Signature", sig.clone()),
                ("X-Grafana-Alerting-Signature-Timestamp", format!("{ts}abc")),
                json(),
            ],
        ),
        (
            "signature of the body without the timestamp",
            vec![
                (
                    "X-Grafana-Alerting-Signature",
                    sign_hex(GRAFANA_HMAC, &[gf_body]),
                ),
                ("X-Grafana-Alerting-Signature-Timestamp", ts.clone()),
                json(),
            ],
        ),
        (
            "timestamp moved by a second",
            vec![
                ("X-Grafana-Alerting-Signature", sig.clone()),
                (
                    "X-Grafana-Alerting-Signature-Timestamp",
                    (now_secs - 1).to_string(),
                ),
                json(),
            ],
        ),
        ("no signature", vec![json()]),
    ] {
        add(
            format!("grafana: {name}"),
            request("POST", "/v1/alerts/grafana", &headers, gf_body),
        );
    }

    // 4. The Statuspage path token: traversal, encodings, near misses.
    let sp = include_bytes!("fixtures/alerts/statuspage-incident.json");
    for token in [
        String::new(),
        "..".to_string(),
        "../../etc/passwd".to_string(),
        "..%2f..%2fetc%2fpasswd".to_string(),
        "%2e%2e%2f%2e%2e%2fv1%2foverride".to_string(),
        format!("{PATH_TOKEN}/../../v1/override"),
        format!("../statuspage/{PATH_TOKEN}"),
        format!("{PATH_TOKEN}%00"),
        format!("{PATH_TOKEN}/"),
        format!("{PATH_TOKEN}/extra"),
        format!("{PATH_TOKEN}%2f.."),
        PATH_TOKEN[..PATH_TOKEN.len() - 1].to_string(),
        PATH_TOKEN.to_uppercase(),
        format!("%{}", &PATH_TOKEN[1..]),
        "a".repeat(10_000),
        "%ff%fe".to_string(),
        "%C0%AE%C0%AE%2F".to_string(),
        format!("{PATH_TOKEN}?token={PATH_TOKEN}").replacen(PATH_TOKEN, "x", 1),
    ] {
        add(
            format!("statuspage: path token {token:.40}"),
            request(
                "POST",
                &format!("/v1/alerts/statuspage/{token}"),
                &[json()],
                sp,
            ),
        );
    }
    for path in [
        "/v1/alerts/../v1/override",
        "/v1/alerts/statuspage",
        "/v1/alerts/./statuspage/x",
        "//v1/alerts/generic",
        "/v1/alerts/nosuchsource",
        "/v1/alerts/generic/",
    ] {
        add(format!("path {path}"), request("POST", path, &[json()], sp));
    }

    // 5. The API: bad overrides, bad queries, wrong methods, no token.
    for (what, body) in [
        (
            "state unknown",
            r#"{"state":"maybe","ttl":"10m","reason":"x"}"#.to_string(),
        ),
        (
            "profile unknown",
            r#"{"state":"active","profile":"../../etc","ttl":"10m","reason":"x"}"#.to_string(),
        ),
        (
            "ttl negative",
            r#"{"state":"active","profile":"backup","ttl":"-1s","reason":"x"}"#.to_string(),
        ),
        (
            "ttl beyond the maximum",
            r#"{"state":"active","profile":"backup","ttl":"100000h","reason":"x"}"#.to_string(),
        ),
        (
            "ttl a number",
            r#"{"state":"active","profile":"backup","ttl":600,"reason":"x"}"#.to_string(),
        ),
        (
            "ttl garbage",
            r#"{"state":"active","profile":"backup","ttl":"soon","reason":"x"}"#.to_string(),
        ),
        (
            "reason of 1 MiB",
            format!(
                r#"{{"state":"active","profile":"backup","ttl":"10m","reason":"{}"}}"#,
                "r".repeat(1 << 20)
            ),
        ),
        (
            "unknown field",
            r#"{"state":"active","profile":"backup","ttl":"10m","reason":"x","force":true}"#
                .to_string(),
        ),
        (
            "state of the wrong type",
            r#"{"state":true,"profile":"backup","ttl":"10m","reason":"x"}"#.to_string(),
        ),
    ] {
        add(
            format!("override: {what}"),
            request(
                "PUT",
                "/v1/override",
                &[bearer(OPS_TOKEN), json()],
                body.as_bytes(),
            ),
        );
    }
    let good_override = br#"{"state":"active","profile":"backup","ttl":"10m","reason":"x"}"#;
    add(
        "override: no token".into(),
        request("PUT", "/v1/override", &[json()], good_override),
    );
    add(
        "override: a webhook token".into(),
        request(
            "PUT",
            "/v1/override",
            &[bearer(GENERIC), json()],
            good_override,
        ),
    );
    add(
        "override: as text/plain".into(),
        request(
            "PUT",
            "/v1/override",
            &[bearer(OPS_TOKEN), ("Content-Type", "text/plain".into())],
            good_override,
        ),
    );
    add(
        "flap: no token".into(),
        request("DELETE", "/v1/flap", &[], b""),
    );
    add(
        "override clear: no token".into(),
        request("DELETE", "/v1/override", &[], b""),
    );
    add(
        "reload: no token".into(),
        request("POST", "/-/reload", &[], b""),
    );
    add(
        "reload: a webhook token".into(),
        request("POST", "/-/reload", &[bearer(GENERIC)], b""),
    );
    for query in [
        "limit=-1",
        "limit=0",
        "limit=99999999999999999999999",
        "limit=abc",
        "before=abc",
        "before=-9223372036854775809",
        "since=yesterday",
        "since=-5h",
        "kind=%3Cscript%3E",
        "limit=1&limit=2",
        "limit=%00",
        "limit=%ff",
    ] {
        add(
            format!("events: {query}"),
            request(
                "GET",
                &format!("/v1/events?{query}"),
                &[bearer(OPS_TOKEN)],
                b"",
            ),
        );
    }
    for (method, path) in [
        ("GET", "/v1/alerts/generic"),
        ("PUT", "/v1/alerts/generic"),
        ("DELETE", "/v1/status"),
        ("POST", "/v1/status"),
        ("PATCH", "/v1/override"),
        ("GET", "/v1/accounts/..%2f..%2fetc/status"),
        ("GET", "/v1/accounts/nosuchaccount/status"),
        ("GET", "/v1/status/../../etc/passwd"),
        ("GET", "/v1/nosuchroute"),
    ] {
        add(
            format!("{method} {path}"),
            request(method, path, &[bearer(OPS_TOKEN)], b""),
        );
    }
    for path in ["/v1/status", "/v1/events", "/v1/accounts/default/status"] {
        add(format!("{path}: no token"), request("GET", path, &[], b""));
        add(
            format!("{path}: a webhook token"),
            request("GET", path, &[bearer(GENERIC)], b""),
        );
    }

    // 6. Malformed HTTP and header injection, as raw bytes.
    let raw_cases: Vec<(&str, Vec<u8>)> = vec![
        ("CR LF in a header value", b"POST /v1/alerts/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\rInjected: b\r\nContent-Length: 0\r\n\r\n".to_vec()),
        ("bare LF header injection", format!("PUT /v1/override HTTP/1.1\r\nHost: x\r\nX-Note: a\nAuthorization: Bearer {OPS_TOKEN}\r\nContent-Length: 2\r\n\r\n{{}}").into_bytes()),
        ("NUL in a header value", [b"GET /v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ".as_slice(), OPS_TOKEN.as_bytes(), b"\0\r\n\r\n"].concat()),
        ("NUL in the path", b"GET /v1/sta\0tus HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("invalid UTF-8 in the path", b"GET /v1/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("space in a header name", b"GET /v1/status HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n".to_vec()),
        ("header without a colon", b"GET /v1/status HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n".to_vec()),
        ("128 KiB header", format!("GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "b".repeat(128 * 1024)).into_bytes()),
        ("10,000 headers", format!("GET /v1/status HTTP/1.1\r\nHost: x\r\n{}\r\n", "X-A: 1\r\n".repeat(10_000)).into_bytes()),
        ("64 KiB path", format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "p".repeat(64 * 1024)).into_bytes()),
        ("HTTP/9.9", b"GET /v1/status HTTP/9.9\r\nHost: x\r\n\r\n".to_vec()),
        ("unknown method", b"BREW /v1/status HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        ("garbage request line", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n".to_vec()),
        ("request line only", b"GET\r\n\r\n".to_vec()),
        ("absolute URI to another host", b"PUT http://evil.example/v1/override HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 2\r\n\r\n{}".to_vec()),
        ("Content-Length and Transfer-Encoding", [format!("POST /v1/alerts/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GENERIC}\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n").as_bytes(), b"0\r\n\r\n"].concat()),
        ("two different Content-Lengths", [format!("POST /v1/alerts/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GENERIC}\r\nContent-Length: 2\r\nContent-Length: 20\r\n\r\n").as_bytes(), b"{}"].concat()),
        ("negative Content-Length", format!("POST /v1/alerts/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GENERIC}\r\nContent-Length: -1\r\n\r\n").into_bytes()),
        ("Content-Length over max_body", format!("POST /v1/alerts/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GENERIC}\r\nContent-Type: application/json\r\nContent-Length: 99999999999\r\n\r\n{{").into_bytes()),
        ("chunked body over max_body", {
            let mut r = format!("POST /v1/alerts/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GENERIC}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n").into_bytes();
            for _ in 0..40 {
                r.extend_from_slice(b"1000\r\n");
                r.extend(vec![b' '; 0x1000]);
                r.extend_from_slice(b"\r\n");
            }
            r.extend_from_slice(b"0\r\n\r\n");
            r
        }),
        ("bad chunk size", format!("POST /v1/alerts/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GENERIC}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").into_bytes()),
        ("gzip body that is not gzip", format!("POST /v1/alerts/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GENERIC}\r\nContent-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nnope").into_bytes()),
        ("Expect: 100-continue then nothing", format!("POST /v1/alerts/generic HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {GENERIC}\r\nExpect: 100-continue\r\nContent-Length: 5000000\r\n\r\n").into_bytes()),
        ("Upgrade to h2c", b"GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n".to_vec()),
        ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec()),
    ];
    for (name, raw) in raw_cases {
        add(format!("raw: {name}"), raw);
    }
    cases
}

/// How the agent answered one case.
#[derive(Debug, PartialEq)]
enum Answer {
    Status(u16),
    Closed,
}

async fn send(addr: &str, raw: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr)
        .await
        .expect("the agent accepts connections");
    // The server may answer (and close) before the whole body is sent. The
    // write side stays open: a half-close would let the server drop its
    // answer, and an accepted request would look like a closed connection.
    let _ = s.write_all(raw).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.len() > 1 << 20 {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer and no close within 30 s");
    if buf.is_empty() {
        return Answer::Closed;
    }
    // The final answer: an interim `100 Continue` may come first.
    let text = String::from_utf8_lossy(&buf).to_string();
    text.split("\r\n")
        .filter_map(|line| line.strip_prefix("HTTP/1.1 "))
        .filter_map(|rest| rest.get(..3)?.parse::<u16>().ok())
        .find(|code| *code >= 200)
        .map(Answer::Status)
        .unwrap_or_else(|| panic!("not an HTTP answer: {:?}", &text[..text.len().min(200)]))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// What must not change: the decision, its mode, the alerts, the override.
async fn state(api: &str) -> Value {
    let st: Value = reqwest::Client::new()
        .get(format!("{api}/v1/status"))
        .bearer_auth(OPS_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    serde_json::json!({
        "mode": st["mode"],
        "desired": st["desired"],
        "override": st["engine"]["override"],
        "alerts": st["engine"]["alerts"],
        "rules": st["engine"]["rules"].as_array().map(|r| r.iter().map(|r| r["state"].clone()).collect::<Vec<_>>()),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_get_4xx_or_a_closed_connection_and_change_nothing() {
    let support::world::Peers {
        sim,
        server,
        trunk,
        dir,
    } = support::world::Peers::start().await;
    let port = support::free_port();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        config(
            port,
            &server.base_url(),
            &trunk.udp_addr().to_string(),
            dir.path(),
        ),
    )
    .unwrap();
    let mut agent = AgentProcess::spawn(&cfg, port, &dir.path().join("agent.log"));
    agent.wait_ready().await;
    let probe_up = "continuity_probe_up{probe=\"trunk-a\",type=\"sip\"}";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while agent.metric(probe_up).await != Some(1.0) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "trunk never up; log:\n{}",
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed = "continuity_probe_results_total{probe=\"trunk-a\",result=\"failure\"}";
    let failed_before = agent.metric(failed).await.unwrap_or(0.0);
    let before = state(&agent.api).await;
    let rss_before = rss_kib(agent.pid());
    let writes_before = sim.journal().iter().filter(|e| e.is_write()).count();

    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let cases = corpus(now_secs);
    assert!(
        cases.len() >= 200,
        "the corpus has {} requests",
        cases.len()
    );
    let addr = format!("127.0.0.1:{port}");
    let mut wrong = Vec::new();
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    let mut changed = Vec::new();
    for case in &cases {
        let answer = send(&addr, &case.raw).await;
        // After each request, so a change names the request that made it.
        if changed.is_empty() && state(&agent.api).await != before {
            changed.push(format!("{} ({answer:?})", case.name));
        }
        let key = match &answer {
            Answer::Status(code) => code.to_string(),
            Answer::Closed => "closed".into(),
        };
        *tally.entry(key).or_default() += 1;
        match answer {
            Answer::Status(400..=499) | Answer::Closed => {}
            other => wrong.push(format!("{}: {other:?}", case.name)),
        }
    }
    eprintln!("{} hostile requests: {tally:?}", cases.len());
    assert!(
        wrong.is_empty(),
        "answered neither 4xx nor closed:\n{}",
        wrong.join("\n")
    );
    assert!(changed.is_empty(), "the state changed after: {changed:?}");

    // Still running, nothing changed, the trunk probe never faltered.
    support::several_reconciles().await;
    assert_eq!(state(&agent.api).await, before, "the state changed");
    let writes_after = sim.journal().iter().filter(|e| e.is_write()).count();
    assert_eq!(
        writes_after,
        writes_before,
        "Talkdesk was written: {:#?}",
        sim.journal()
    );
    assert_eq!(agent.metric(probe_up).await, Some(1.0));
    assert_eq!(agent.metric(failed).await.unwrap_or(0.0), failed_before);
    let grew = rss_kib(agent.pid()).saturating_sub(rss_before) / 1024;
    assert!(
        grew < MEMORY_BOUND_MIB,
        "resident memory grew by {grew} MiB over the corpus"
    );
    let logs = agent.logs();
    assert!(!logs.contains("panicked"), "a panic:\n{logs}");
    let status = agent.terminate();
    assert!(status.success(), "graceful exit after the corpus: {status}");
}
