//! The status page in a real headless Chromium, against the agent binary,
//! the Talkdesk simulator over real HTTP and sipp as the SIP trunk: signing
//! in keeps a secure, HttpOnly, SameSite=Strict session cookie; the page
//! shows the current state; an override submitted through the form reaches
//! Talkdesk; the page follows a trunk's outage and recovery by refreshing
//! itself; screenshots (wide and narrow) are saved under target/tmp.
//!
//! Timings as in e2e_sip.rs: interval 1s, fast_interval 500ms, timeout 1s,
//! rise 2, fall 3, for 2s, clear_for 3s, min_active 1s.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use continuity_agent::talkdesk::simulator::{self, SimServer, Simulator};
use support::agent::AgentProcess;
use support::browser::Browser;
use support::sipp::Sipp;
use tokio::time::Instant;

const OPS_TOKEN: &str = "ops-token-0123456789abcdef";
/// Outage detection plus the page's 5 s refresh, on a loaded machine.
const LIMIT: Duration = Duration::from_secs(45);

fn config(sim: &str, target: &str, port: u16, dir: &Path) -> String {
    format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
{head}[profiles.backup-site]
forward = {{ "+14155550100" = "+14155559999" }}
default = "+14155558888"
message = {{ text = "We are experiencing technical difficulties.", language = "en-US" }}
[[probes]]
id = "trunk-a"
type = "sip"
target = "{target}"
interval = "1s"
fast_interval = "500ms"
timeout = "1s"
rise = 2
fall = 3
[[rules]]
name = "trunk-down"
profile = "backup-site"
for = "2s"
clear_for = "3s"
min_active = "1s"
when = {{ down = "trunk-a" }}
[api]
tokens = [{{ name = "oncall", token = "{OPS_TOKEN}", scopes = ["read", "override"] }}]
"#,
        head = support::store_and_talkdesk(dir, sim),
    )
}

struct World {
    sim: Simulator,
    _server: SimServer,
    dir: tempfile::TempDir,
    agent: AgentProcess,
}

async fn world(target: &str) -> World {
    let sim = Simulator::default();
    let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_port();
    let cfg = dir.path().join("agent.toml");
    std::fs::write(&cfg, config(&server.base_url(), target, port, dir.path())).unwrap();
    let mut agent = AgentProcess::spawn(&cfg, port, &dir.path().join("agent.log"));
    agent.wait_ready().await;
    World {
        sim,
        _server: server,
        dir,
        agent,
    }
}

impl World {
    async fn wait_sim(&self, what: &str, enabled: bool) {
        let deadline = Instant::now() + LIMIT;
        while self.sim.state().enabled != enabled {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; agent log:\n{}",
                self.agent.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn shots() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_an_override_and_a_trunk_outage_in_chromium() {
    let port = support::free_port();
    let sipp = Sipp::start_on("options-uas.xml", false, port).await;
    let w = world(&sipp.target()).await;
    let b = Browser::start(&w.dir.path().join("chromedriver.log")).await;
    let base = w.agent.api.clone();

    // Not signed in: the login form. Sign in with the token, once.
    b.goto(&format!("{base}/")).await;
    assert!(b.find("form.login input[name=token]").await.is_some());
    b.type_into("input[name=token]", OPS_TOKEN).await;
    b.click("form.login button[type=submit]").await;
    let state = b
        .wait_text("the page after signing in", "#live-state", LIMIT, |t| {
            t.to_uppercase().contains("FALLBACK OFF")
        })
        .await;
    assert!(!state.to_uppercase().contains("FALLBACK ON"), "{state}");
    assert_eq!(b.current_url().await, format!("{base}/"));
    let cookies = b.cookies().await;
    let session = cookies
        .iter()
        .find(|c| c["name"] == "__Host-continuity-session")
        .unwrap_or_else(|| panic!("the browser kept no session cookie: {cookies:?}"));
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["secure"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    assert!(
        !session["value"].as_str().unwrap().contains(OPS_TOKEN),
        "the token is not in the cookie"
    );
    b.wait_text(
        "trunk-a up in the probe table",
        "#live-details .card:first-child tbody tr",
        LIMIT,
        |t| t.contains("trunk-a") && t.contains("up"),
    )
    .await;
    let callers = b.text("#live-summary").await;
    assert!(
        callers.contains("Normal routing"),
        "callers get normal routing: {callers}"
    );

    // An override through the form reaches Talkdesk.
    b.type_into("form.override input[name=reason]", "carrier maintenance")
        .await;
    b.click("form.override button[value=active]").await;
    let notice = b
        .wait_text("the override's outcome", ".notice", LIMIT, |t| {
            !t.is_empty()
        })
        .await;
    assert!(
        notice.contains("Override set: fallback ON with profile backup-site"),
        "{notice}"
    );
    w.wait_sim("the override's activation", true).await;
    assert_eq!(
        w.sim.state().settings.default.as_deref(),
        Some("+14155558888")
    );
    b.wait_text("the override on the page", "#live-summary", LIMIT, |t| {
        t.contains("carrier maintenance") && t.contains("+14155550100 forwarded to +14155559999")
    })
    .await;
    // After the post, the address bar is "/" again (a reload reads, not posts).
    assert_eq!(b.current_url().await, format!("{base}/"));
    b.click("form[action='/ui/override/clear'] button").await;
    // Wait for the answer page: right after the click the old page (or a
    // blank one, mid-load) may still be what the browser shows.
    b.wait_text("the clear's outcome", ".notice", LIMIT, |t| {
        t.contains("Override cleared")
    })
    .await;
    w.wait_sim("the deactivation after clearing", false).await;

    // The trunk dies: the page shows it without being reloaded.
    sipp.kill();
    b.wait_text("the outage on the page", "#live-state", LIMIT, |t| {
        t.to_uppercase().contains("FALLBACK ON") && t.contains("trunk-down")
    })
    .await;
    w.wait_sim("the outage's activation", true).await;
    b.wait_text(
        "trunk-a down in the probe table",
        "#live-details .card:first-child tbody tr",
        LIMIT,
        |t| t.contains("trunk-a") && t.contains("down"),
    )
    .await;
    b.wait_text("Talkdesk matching", "#live-summary", LIMIT, |t| {
        t.contains("with the settings of profile backup-site")
    })
    .await;
    // A fresh load for the pictures: no notice from the earlier actions.
    b.goto(&format!("{base}/")).await;
    b.set_window(1280, 1700).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let wide = shots().join("status-page.png");
    b.screenshot(&wide).await;
    b.set_window(420, 2200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let narrow = shots().join("status-page-narrow.png");
    b.screenshot(&narrow).await;
    for shot in [&wide, &narrow] {
        let len = std::fs::metadata(shot).unwrap().len();
        assert!(len > 20_000, "{} is only {len} bytes", shot.display());
    }
    b.set_window(1280, 900).await;

    // It recovers on the same address: the page goes back to OFF.
    let _sipp = Sipp::start_on("options-uas.xml", false, port).await;
    b.wait_text("the recovery on the page", "#live-state", LIMIT, |t| {
        t.to_uppercase().contains("FALLBACK OFF")
    })
    .await;
    w.wait_sim("the recovery's deactivation", false).await;
    let timeline = b.text("#live-details").await;
    for want in ["decision", "talkdesk", "probe"] {
        assert!(timeline.contains(want), "timeline lacks {want}: {timeline}");
    }
}
