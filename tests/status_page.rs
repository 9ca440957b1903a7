//! The status page at `/` over real HTTP (in-process agent, Talkdesk
//! simulator, an in-process SIP responder as a healthy trunk): who may read,
//! who may act, sessions, CSRF, origin checks, security headers, and that a
//! refused action changes nothing.

use std::time::Duration;

mod support;

use continuity_agent::config;
use continuity_agent::probe::sip::responder::Responder;
use continuity_agent::talkdesk::simulator::{SimServer, Simulator};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::Value;
use support::inproc::{self, Agent};
use tokio::time::Instant;

const OPS_TOKEN: &str = "ops-token-0123456789abcdef";
const READ_TOKEN: &str = "read-token-0123456789abcdef";
const ALERTS_TOKEN: &str = "alerts-token-0123456789abcdef";

struct World {
    sim: Simulator,
    _server: SimServer,
    _trunk: Responder,
    dir: tempfile::TempDir,
    toml: String,
}

async fn world(public_status: bool) -> World {
    let support::world::Peers {
        sim,
        server,
        trunk,
        dir,
    } = support::world::Peers::start().await;
    let toml = format!(
        r#"
[agent]
listen = "127.0.0.1:0"
{head}[profiles.backup]
default = "+14155558888"
message = {{ text = "We are experiencing technical difficulties.", language = "en-US" }}
[[probes]]
id = "trunk-a"
type = "sip"
target = "sip:{trunk};transport=udp"
interval = "1s"
timeout = "500ms"
[[rules]]
name = "trunk-down"
profile = "backup"
when = {{ down = "trunk-a" }}
[api]
public_status = {public_status}
tokens = [
  {{ name = "oncall", token = "{OPS_TOKEN}", scopes = ["read", "override"] }},
  {{ name = "dashboards", token = "{READ_TOKEN}", scopes = ["read"] }},
  {{ name = "pager", token = "{ALERTS_TOKEN}", scopes = ["alerts"] }},
]
"#,
        head = support::store_and_talkdesk(dir.path(), &server.base_url()),
        trunk = trunk.udp_addr(),
    );
    World {
        sim,
        _server: server,
        _trunk: trunk,
        dir,
        toml,
    }
}

impl World {
    async fn start(&self) -> Agent {
        let cfg =
            config::from_toml_str_strict(&self.toml, "page-test.toml", self.dir.path(), false)
                .unwrap();
        inproc::start(cfg).await
    }

    fn writes(&self) -> usize {
        self.sim
            .journal()
            .into_iter()
            .filter(|e| e.is_write())
            .count()
    }
}

/// No redirects followed, no cookie jar: each test says what it sends.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Signs in with `token` through the form; returns the `Cookie` header value.
async fn sign_in(a: &Agent, token: &str) -> String {
    let resp = http()
        .post(format!("{}/ui/login", a.base))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()["location"], "/");
    cookie_from(resp.headers())
}

fn cookie_from(headers: &HeaderMap) -> String {
    let set = headers[SET_COOKIE].to_str().unwrap();
    set.split(';').next().unwrap().to_string()
}

/// The page as this cookie sees it: status and body.
async fn page(a: &Agent, cookie: &str) -> (StatusCode, String) {
    let resp = http()
        .get(format!("{}/", a.base))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

/// The CSRF token in the page's forms.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .expect("a form with a CSRF token");
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').unwrap()].to_string()
}

async fn post_form(
    a: &Agent,
    path: &str,
    cookie: &str,
    fields: &[(&str, &str)],
) -> (StatusCode, String) {
    let resp = http()
        .post(format!("{}{path}", a.base))
        .header("cookie", cookie)
        .header("origin", &a.base)
        .form(fields)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

async fn status(a: &Agent) -> Value {
    http()
        .get(format!("{}/v1/status", a.base))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Nothing reached the engine, the input queue or Talkdesk.
async fn nothing_changed(w: &World, a: &Agent) {
    let st = status(a).await;
    assert!(st["engine"]["override"].is_null(), "{st}");
    assert_eq!(st["desired"]["state"], "inactive");
    assert_eq!(w.writes(), 0, "a refused action wrote to Talkdesk");
    let events: Value = http()
        .get(format!("{}/v1/events?kind=override", a.base))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events["events"].as_array().unwrap().len(), 0, "{events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_page_asks_to_sign_in_with_strict_headers() {
    let w = world(false).await;
    let a = w.start().await;
    let resp = http().get(format!("{}/", a.base)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let h = resp.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let csp = h["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-store");
    let body = resp.text().await.unwrap();
    assert!(body.contains("action=\"/ui/login\""), "{body}");
    assert!(!body.contains("trunk-a"), "nothing of the status leaks");

    // The script and the style come from the binary, under the same policy.
    for (path, ty) in [
        ("/ui/refresh.js", "text/javascript"),
        ("/ui/page.css", "text/css"),
    ] {
        let resp = http()
            .get(format!("{}{path}", a.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(ty)
        );
        assert!(resp.headers().contains_key("content-security-policy"));
    }
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_token_reads_by_header_or_session_and_cannot_act() {
    let w = world(false).await;
    let a = w.start().await;
    let resp = http()
        .get(format!("{}/", a.base))
        .bearer_auth(READ_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = resp.text().await.unwrap();
    assert!(body.contains("Fallback OFF"), "{body}");
    assert!(body.contains("trunk-a"));

    // Signing in sets a session cookie that is not the token.
    let resp = http()
        .post(format!("{}/ui/login", a.base))
        .header("origin", &a.base)
        .form(&[("token", READ_TOKEN)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let set = resp.headers()[SET_COOKIE].to_str().unwrap().to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(set.starts_with("__Host-continuity-session="), "{set}");
    assert!(!set.contains(READ_TOKEN), "the token is not in the cookie");
    let cookie = cookie_from(resp.headers());

    let (code, html) = page(&a, &cookie).await;
    assert_eq!(code, StatusCode::OK);
    assert!(html.contains("signed in as <strong>dashboards</strong>"));
    assert!(!html.contains("action=\"/ui/override\""), "no action forms");
    // The logout form carries the session's CSRF token: even with it, a
    // read token cannot act.
    let csrf = csrf_of(&html);
    let (code, html) = post_form(
        &a,
        "/ui/override",
        &cookie,
        &[
            ("csrf", &csrf),
            ("state", "active"),
            ("profile", "backup"),
            ("ttl", "10m"),
            ("reason", "test"),
        ],
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{html}");
    assert!(html.contains("does not have the override scope"), "{html}");
    nothing_changed(&w, &a).await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_refuses_wrong_tokens_and_other_origins() {
    let w = world(false).await;
    let a = w.start().await;
    for (token, origin, want) in [
        (
            "not-a-token-0123456789",
            a.base.clone(),
            StatusCode::UNAUTHORIZED,
        ),
        (ALERTS_TOKEN, a.base.clone(), StatusCode::FORBIDDEN),
        (
            OPS_TOKEN,
            "http://evil.example".to_string(),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let resp = http()
            .post(format!("{}/ui/login", a.base))
            .header("origin", origin)
            .form(&[("token", token)])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "{token}");
        assert!(!resp.headers().contains_key(SET_COOKIE), "{token}");
    }
    // A forged or stale cookie reads nothing, and is cleared.
    let (code, _) = page(&a, "__Host-continuity-session=b25jYWxs.99999999999999.00").await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    // The token never travels in a URL: a query string is ignored.
    let resp = http()
        .get(format!("{}/?token={OPS_TOKEN}", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_wrong_csrf_token_or_origin_changes_nothing() {
    let w = world(false).await;
    let a = w.start().await;
    let cookie = sign_in(&a, OPS_TOKEN).await;
    let (_, html) = page(&a, &cookie).await;
    let csrf = csrf_of(&html);
    let on = [
        ("state", "active"),
        ("profile", "backup"),
        ("ttl", "10m"),
        ("reason", "forged"),
    ];
    for csrf in [None, Some(""), Some("0000")] {
        let mut fields = on.to_vec();
        fields.extend(csrf.map(|c| ("csrf", c)));
        let (code, html) = post_form(&a, "/ui/override", &cookie, &fields).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{fields:?}");
        assert!(html.contains("CSRF token is missing or wrong"), "{html}");
    }
    for path in ["/ui/override/clear", "/ui/flap/release"] {
        let (code, _) = post_form(&a, path, &cookie, &[("csrf", "0000")]).await;
        assert_eq!(code, StatusCode::FORBIDDEN, "{path}");
    }
    // The right CSRF token from another origin.
    let resp = http()
        .post(format!("{}/ui/override", a.base))
        .header("cookie", &cookie)
        .header("origin", "http://evil.example")
        .form(&[
            ("csrf", csrf.as_str()),
            ("state", "active"),
            ("profile", "backup"),
            ("ttl", "10m"),
            ("reason", "forged"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // Another session's CSRF token.
    let other = sign_in(&a, OPS_TOKEN).await;
    let (_, other_html) = page(&a, &other).await;
    let other_csrf = csrf_of(&other_html);
    assert_ne!(other_csrf, csrf);
    let (code, _) = post_form(
        &a,
        "/ui/override",
        &cookie,
        &[
            ("csrf", other_csrf.as_str()),
            ("state", "inactive"),
            ("ttl", "10m"),
            ("reason", "forged"),
        ],
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    // No session at all.
    let (code, _) = post_form(&a, "/ui/override", "", &[("csrf", csrf.as_str())]).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    nothing_changed(&w, &a).await;

    // The JSON API never takes the cookie.
    let resp = http()
        .put(format!("{}/v1/override", a.base))
        .header("cookie", &cookie)
        .json(&serde_json::json!({"state": "inactive", "ttl": "10m", "reason": "cookie"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = http()
        .get(format!("{}/v1/status", a.base))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    nothing_changed(&w, &a).await;
    a.stop().await;
}

/// An operator's form goes the API's way: validated (422 keeps what was
/// typed), durable, applied, and Talkdesk follows; clearing goes back to
/// the rules; signing out ends the session in the browser.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sets_and_clears_an_override_through_the_forms() {
    let w = world(false).await;
    let a = w.start().await;
    let cookie = sign_in(&a, OPS_TOKEN).await;
    let (_, html) = page(&a, &cookie).await;
    let csrf = csrf_of(&html);

    let (code, html) = post_form(
        &a,
        "/ui/override",
        &cookie,
        &[
            ("csrf", &csrf),
            ("state", "active"),
            ("profile", "backup"),
            ("ttl", "5s"),
            ("reason", "carrier maintenance"),
        ],
    )
    .await;
    assert_eq!(code, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(html.contains("ttl 5s is out of range"), "{html}");
    assert!(
        html.contains("value=\"carrier maintenance\""),
        "the reason typed is kept"
    );
    nothing_changed(&w, &a).await;

    let (code, html) = post_form(
        &a,
        "/ui/override",
        &cookie,
        &[
            ("csrf", &csrf),
            ("state", "active"),
            ("profile", "backup"),
            ("ttl", "30m"),
            ("reason", "carrier maintenance"),
        ],
    )
    .await;
    assert_eq!(code, StatusCode::OK, "{html}");
    assert!(
        html.contains("Override set: fallback ON with profile backup"),
        "{html}"
    );
    assert!(html.contains("Talkdesk now matches."), "{html}");
    assert!(w.sim.state().enabled, "Talkdesk has the fallback on");
    let st = status(&a).await;
    assert_eq!(st["engine"]["override"]["actor"], "oncall");
    assert_eq!(st["engine"]["override"]["reason"], "carrier maintenance");

    let (code, html) = post_form(&a, "/ui/override/clear", &cookie, &[("csrf", &csrf)]).await;
    assert_eq!(code, StatusCode::OK);
    assert!(html.contains("Override cleared"), "{html}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.sim.state().enabled {
        assert!(Instant::now() < deadline, "the fallback stayed on");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, html) = post_form(&a, "/ui/flap/release", &cookie, &[("csrf", &csrf)]).await;
    assert_eq!(code, StatusCode::OK);
    assert!(html.contains("was not latched"), "{html}");

    let resp = http()
        .post(format!("{}/ui/logout", a.base))
        .header("cookie", &cookie)
        .header("origin", &a.base)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let set = resp.headers()[SET_COOKIE].to_str().unwrap();
    assert!(set.contains("Max-Age=0"), "{set}");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_status_reads_without_a_token_and_still_needs_one_to_act() {
    let w = world(true).await;
    let a = w.start().await;
    let (code, html) = page(&a, "").await;
    assert_eq!(code, StatusCode::OK);
    assert!(html.contains("Fallback OFF"));
    assert!(html.contains("Reading this page is public"));
    assert!(!html.contains("action=\"/ui/override\""));
    let (code, _) = post_form(
        &a,
        "/ui/override",
        "",
        &[
            ("state", "inactive"),
            ("ttl", "10m"),
            ("reason", "anonymous"),
        ],
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    // The JSON API is not public.
    let resp = http()
        .get(format!("{}/v1/status", a.base))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    nothing_changed(&w, &a).await;
    a.stop().await;
}
