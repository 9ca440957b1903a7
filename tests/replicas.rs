//! Several replicas as separate processes against one PostgreSQL database,
//! one Talkdesk simulator and a sipp trunk: exactly one leads, a `kill -9`ed
//! leader is replaced within `lease_ttl` + 1 s without an extra on/off, a
//! paused (SIGSTOP) leader writes nothing when it resumes, an operator change
//! sent to a follower is queued (202 at once) and applied by whoever leads
//! next, and a leader cut off from the database stops writing within
//! `renew_deadline`.
//!
//! Timings are short so the suite stays fast: `lease_ttl` 2 s (renewed every
//! ~0.67 s), `renew_deadline` 1.5 s, `talkdesk.request_timeout` 1 s.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use continuity_agent::talkdesk::simulator::{self, JournalEntry, SimServer, Simulator};
use support::agent::AgentProcess;
use support::pg::PgServer;
use support::sipp::Sipp;
use tokio::time::Instant;

const LEASE_TTL: Duration = Duration::from_secs(2);
const RENEW_DEADLINE: Duration = Duration::from_millis(1_500);
const OPS_TOKEN: &str = "ops-token-0123456789abcdef0123456789abcdef";
const WEBHOOK_TOKEN: &str = "webhook-token-0123456789abcdef0123456789";

struct Replica {
    id: String,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    process: Option<AgentProcess>,
}

impl Replica {
    fn spawn(&mut self) {
        self.process = Some(AgentProcess::spawn(&self.config, self.port, &self.log));
    }

    fn agent(&self) -> &AgentProcess {
        self.process.as_ref().expect("running")
    }

    fn pid(&self) -> libc::pid_t {
        self.agent().pid() as libc::pid_t
    }

    /// `None` when not running or not answering (a stopped process).
    async fn leads(&self) -> Option<bool> {
        let agent = self.process.as_ref()?;
        let metric = agent.metric("continuity_leader{account=\"default\"} ");
        tokio::time::timeout(Duration::from_millis(500), metric)
            .await
            .ok()
            .flatten()
            .map(|v| v == 1.0)
    }
}

struct Cluster {
    pg: PgServer,
    db: String,
    sim: Simulator,
    _server: SimServer,
    sipp: Option<Sipp>,
    _dir: tempfile::TempDir,
    replicas: Vec<Replica>,
}

fn config(dir: &Path, id: &str, port: u16, sim: &str, target: &str, url: &str) -> String {
    format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
[store]
url = "{url}"
password_file = "pg-password"
[cluster]
instance_id = "{id}"
lease_ttl = "2s"
renew_deadline = "1500ms"
[api]
tokens = [{{ name = "ops", token = "{OPS_TOKEN}", scopes = ["read", "override"] }}]
[webhooks.generic]
bearer_token = "{WEBHOOK_TOKEN}"
[talkdesk]
account = "demo"
api_base = "{sim}"
token_url = "{sim}/oauth/token"
client_id = "demo"
client_secret = "demo-secret"
reconcile_interval = "1s"
request_timeout = "1s"
[profiles.backup]
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
profile = "backup"
for = "1s"
clear_for = "3s"
min_active = "1s"
when = {{ down = "trunk-a" }}
"#,
    )
    .replace(
        "pg-password",
        &dir.join("pg-password").display().to_string(),
    )
}

impl Cluster {
    async fn start(n: usize) -> Cluster {
        let pg = PgServer::start();
        let db = pg.database().await;
        let sipp = Sipp::start("options-uas.xml", false).await;
        let sim = Simulator::default();
        let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pg-password"), format!("{}\n", pg.password)).unwrap();
        let url = pg.url_without_password(&db);
        let mut replicas = Vec::new();
        for i in 0..n {
            let id = format!("replica-{i}");
            let port = support::free_port();
            let path = dir.path().join(format!("{id}.toml"));
            std::fs::write(
                &path,
                config(
                    dir.path(),
                    &id,
                    port,
                    &server.base_url(),
                    &sipp.target(),
                    &url,
                ),
            )
            .unwrap();
            let mut r = Replica {
                log: dir.path().join(format!("{id}.log")),
                id,
                port,
                config: path,
                process: None,
            };
            r.spawn();
            replicas.push(r);
        }
        for r in &mut replicas {
            r.process.as_mut().unwrap().wait_ready().await;
        }
        Cluster {
            pg,
            db,
            sim,
            _server: server,
            sipp: Some(sipp),
            _dir: dir,
            replicas,
        }
    }

    fn logs(&self) -> String {
        self.replicas
            .iter()
            .map(|r| {
                format!(
                    "==== {}\n{}",
                    r.id,
                    std::fs::read_to_string(&r.log).unwrap_or_default()
                )
            })
            .collect()
    }

    /// Which replicas say they lead, among those running.
    async fn leaders(&self) -> Vec<usize> {
        let mut out = Vec::new();
        for (i, r) in self.replicas.iter().enumerate() {
            if r.leads().await == Some(true) {
                out.push(i);
            }
        }
        out
    }

    /// Waits until exactly one of `among` leads; returns it.
    async fn one_leader(&self, among: &[usize], within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let leaders: Vec<usize> = self
                .leaders()
                .await
                .into_iter()
                .filter(|i| among.contains(i))
                .collect();
            if leaders.len() == 1 {
                return leaders[0];
            }
            assert!(
                Instant::now() < deadline,
                "no single leader among {among:?} within {within:?} (leaders: {leaders:?}); logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    fn writes(&self) -> Vec<JournalEntry> {
        self.sim
            .journal()
            .into_iter()
            .filter(|e| e.is_write())
            .collect()
    }

    async fn wait(&self, what: &str, within: Duration, mut cond: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !cond().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn running(&self) -> Vec<usize> {
        (0..self.replicas.len())
            .filter(|i| self.replicas[*i].process.is_some())
            .collect()
    }
}

fn activation(e: &JournalEntry, on: bool) -> bool {
    e.op == "put_activation"
        && e.status == 200
        && e.body
            .as_deref()
            .is_some_and(|b| b.contains(&on.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_the_leader_ten_times_another_leads_within_lease_ttl_plus_1s_without_extra_writes() {
    let mut c = Cluster::start(3).await;
    let all = c.running();
    let leader = c.one_leader(&all, Duration::from_secs(10)).await;
    assert_eq!(c.leaders().await, vec![leader], "exactly one leader");

    // The trunk dies: the leader switches the fallback on.
    c.wait("trunk-a up", Duration::from_secs(15), async || {
        c.replicas[leader]
            .agent()
            .metric("continuity_probe_up{probe=\"trunk-a\",type=\"sip\"}")
            .await
            == Some(1.0)
    })
    .await;
    c.sipp.take().unwrap().kill();
    c.wait("activation", Duration::from_secs(20), async || {
        c.writes().iter().any(|e| activation(e, true))
    })
    .await;
    let first = c.writes();
    let writer = first.iter().find(|e| activation(e, true)).unwrap();
    assert_eq!(
        writer.instance.as_deref(),
        Some(c.replicas[leader].id.as_str())
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    for round in 0..10 {
        let leader = c.one_leader(&c.running(), Duration::from_secs(5)).await;
        let before = c.writes();
        c.replicas[leader].process.take().unwrap().kill9();
        let killed = Instant::now();
        let others = c.running();
        let next = c
            .one_leader(&others, LEASE_TTL + Duration::from_secs(3))
            .await;
        let took = killed.elapsed();
        assert!(
            took <= LEASE_TTL + Duration::from_secs(1),
            "round {round}: {} took over only after {took:?}",
            c.replicas[next].id
        );
        // The new leader restored the decision and read Talkdesk: it reports
        // the fallback on without writing anything.
        c.wait(
            "the new leader sees the fallback on",
            Duration::from_secs(5),
            async || {
                c.replicas[next]
                    .agent()
                    .metric("continuity_fallback_actual")
                    .await
                    == Some(1.0)
            },
        )
        .await;
        assert_eq!(
            c.replicas[next]
                .agent()
                .metric("continuity_fallback_desired")
                .await,
            Some(1.0)
        );
        c.replicas[leader].spawn();
        c.replicas[leader]
            .process
            .as_mut()
            .unwrap()
            .wait_ready()
            .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let after = c.writes();
        assert_eq!(
            after.len(),
            before.len(),
            "round {round}: the takeover wrote to Talkdesk: {:?}",
            &after[before.len()..]
        );
        assert!(
            c.sim.state().enabled,
            "round {round}: the fallback is still on"
        );
        assert_eq!(c.leaders().await.len(), 1, "round {round}: one leader");
    }

    // A graceful stop hands the lease over instead of letting it expire.
    let leader = c.one_leader(&c.running(), Duration::from_secs(5)).await;
    let before = c.writes().len();
    let status = c.replicas[leader].process.take().unwrap().terminate();
    assert!(status.success(), "graceful exit: {status}");
    let admin = c.pg.connect(&c.db).await;
    let released: i64 = admin
        .query_one(
            "SELECT count(*) FROM audit WHERE kind = 'leadership' AND message LIKE '%released the lease%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(released, 1, "the release is audited");
    c.one_leader(&c.running(), LEASE_TTL + Duration::from_secs(1))
        .await;
    // Two reconciles of the new leader (reconcile_interval 1s).
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    assert_eq!(c.writes().len(), before, "no write on a graceful handover");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_writes_nothing_when_it_resumes() {
    let c = Cluster::start(3).await;
    let old = c.one_leader(&c.running(), Duration::from_secs(10)).await;
    // The fallback is off and the old leader has read Talkdesk.
    c.wait(
        "the leader read Talkdesk",
        Duration::from_secs(20),
        async || {
            c.replicas[old]
                .agent()
                .metric("continuity_fallback_actual")
                .await
                == Some(0.0)
        },
    )
    .await;

    let pid = c.replicas[old].pid();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let others: Vec<usize> = c.running().into_iter().filter(|i| *i != old).collect();
    let new = c
        .one_leader(&others, LEASE_TTL + Duration::from_secs(3))
        .await;
    let mark = c.sim.journal().len();

    // An operator switches the fallback on through the new leader.
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/override", c.replicas[new].agent().api))
        .bearer_auth(OPS_TOKEN)
        .json(&serde_json::json!({"state": "active", "profile": "backup", "ttl": "30m", "reason": "fencing test"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "override: {}", resp.status());
    c.wait(
        "activation by the new leader",
        Duration::from_secs(10),
        async || c.writes().iter().any(|e| activation(e, true)),
    )
    .await;

    // The old leader wakes up believing it leads, with Talkdesk drifted from
    // its desired state (off): its reconcile would switch it back off.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    c.wait(
        "the old leader knows it follows",
        Duration::from_secs(5),
        async || c.replicas[old].leads().await == Some(false),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;

    let old_id = c.replicas[old].id.as_str();
    let late: Vec<JournalEntry> = c.sim.journal()[mark..]
        .iter()
        .filter(|e| e.is_write() && e.instance.as_deref() == Some(old_id))
        .cloned()
        .collect();
    assert!(
        late.is_empty(),
        "the paused leader wrote after the takeover: {late:?}"
    );
    let new_id = c.replicas[new].id.as_str();
    assert!(
        c.sim.journal()[mark..]
            .iter()
            .filter(|e| e.is_write())
            .all(|e| e.instance.as_deref() == Some(new_id)),
        "every write after the takeover is the new leader's"
    );
    assert!(c.sim.state().enabled, "the override holds");
    assert_eq!(c.leaders().await, vec![new]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_override_sent_to_a_follower_is_queued_at_once_and_the_next_leader_applies_it() {
    let mut c = Cluster::start(2).await;
    let old = c.one_leader(&c.running(), Duration::from_secs(10)).await;
    let follower = 1 - old;
    c.wait(
        "the leader read Talkdesk",
        Duration::from_secs(20),
        async || {
            c.replicas[old]
                .agent()
                .metric("continuity_fallback_actual")
                .await
                == Some(0.0)
        },
    )
    .await;

    // The leader stalls; before its lease expires an operator's change
    // reaches the follower. It is durable in the queue, but nobody applies
    // it yet: the follower answers "queued" without waiting for an engine.
    let pid = c.replicas[old].pid();
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let sent = Instant::now();
    let resp = reqwest::Client::new()
        .put(format!("{}/v1/override", c.replicas[follower].agent().api))
        .bearer_auth(OPS_TOKEN)
        .json(&serde_json::json!({"state": "active", "profile": "backup", "ttl": "30m", "reason": "sent to a follower"}))
        .send()
        .await
        .unwrap();
    let took = sent.elapsed();
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["applied"], false, "{body}");
    assert!(
        took < Duration::from_millis(1_500),
        "a follower answers at once, not after the 2 s wait for its engine: {took:?}"
    );

    // The follower takes the lease: it restores the stalled leader's document
    // (no override) and replays the queue after its cursor, so the override
    // reaches Talkdesk, written by the new leader.
    let new = c
        .one_leader(&[follower], LEASE_TTL + Duration::from_secs(3))
        .await;
    let new_id = c.replicas[new].id.clone();
    c.wait(
        "activation by the new leader",
        Duration::from_secs(10),
        async || {
            c.writes()
                .iter()
                .any(|e| activation(e, true) && e.instance.as_deref() == Some(new_id.as_str()))
        },
    )
    .await;
    assert_eq!(
        c.replicas[new]
            .agent()
            .metric("continuity_override_active")
            .await,
        Some(1.0)
    );
    c.replicas[old].process.as_mut().unwrap().kill9();
}

/// Issue 10: "a webhook and an override sent to a follower take effect
/// through the leader within 1 s". Both are durable in the shared queue when
/// the follower answers; the leader's loop, woken by LISTEN/NOTIFY, applies
/// them to the engine that decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_and_an_override_sent_to_a_follower_take_effect_through_the_leader_within_1s() {
    let c = Cluster::start(2).await;
    let leader = c.one_leader(&c.running(), Duration::from_secs(10)).await;
    let follower = 1 - leader;
    let (lead, follow) = (c.replicas[leader].agent(), c.replicas[follower].agent());
    let http = reqwest::Client::new();

    let sent = Instant::now();
    let resp = http
        .post(format!("{}/v1/alerts/generic", follow.api))
        .bearer_auth(WEBHOOK_TOKEN)
        .json(&serde_json::json!({"id": "carrier-1", "status": "firing", "labels": {"alertname": "CarrierDown"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::ACCEPTED);
    c.wait(
        "the leader to hold the alert",
        Duration::from_secs(5),
        async || lead.metric("continuity_alerts_active").await == Some(1.0),
    )
    .await;
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "webhook via a follower took {took:?}"
    );

    let sent = Instant::now();
    let resp = http
        .put(format!("{}/v1/override", follow.api))
        .bearer_auth(OPS_TOKEN)
        .json(&serde_json::json!({"state": "active", "profile": "backup", "ttl": "30m", "reason": "sent to a follower"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    c.wait(
        "the leader to apply the override",
        Duration::from_secs(5),
        async || lead.metric("continuity_override_active").await == Some(1.0),
    )
    .await;
    let took = sent.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "override via a follower took {took:?}"
    );
    // And it is the leader that writes it to Talkdesk.
    let lead_id = c.replicas[leader].id.clone();
    c.wait(
        "activation by the leader",
        Duration::from_secs(10),
        async || {
            c.writes()
                .iter()
                .any(|e| activation(e, true) && e.instance.as_deref() == Some(lead_id.as_str()))
        },
    )
    .await;
    assert!(
        c.writes()
            .iter()
            .all(|e| e.instance.as_deref() == Some(lead_id.as_str())),
        "only the leader writes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_database_stops_writing_and_the_replicas_recover() {
    let mut c = Cluster::start(3).await;
    let leader = c.one_leader(&c.running(), Duration::from_secs(10)).await;
    c.wait("trunk-a up", Duration::from_secs(15), async || {
        c.replicas[leader]
            .agent()
            .metric("continuity_probe_up{probe=\"trunk-a\",type=\"sip\"}")
            .await
            == Some(1.0)
    })
    .await;

    // Cut every replica off (no new connections, existing ones terminated),
    // and kill the trunk: every engine wants the fallback on.
    let admin = c.pg.connect("postgres").await;
    admin
        .batch_execute(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS false", c.db))
        .await
        .unwrap();
    let cut = Instant::now();
    assert!(c.pg.terminate_backends(&c.db).await > 0);
    c.sipp.take().unwrap().kill();
    c.wait(
        "the leader steps down",
        RENEW_DEADLINE + Duration::from_secs(1),
        async || c.replicas[leader].leads().await == Some(false),
    )
    .await;
    assert!(cut.elapsed() <= RENEW_DEADLINE + Duration::from_secs(1));
    // Well past the decision (3 failed probes + `for`): nobody writes
    // without a lease.
    c.wait(
        "the decision on the old leader",
        Duration::from_secs(15),
        async || {
            c.replicas[leader]
                .agent()
                .metric("continuity_fallback_desired")
                .await
                == Some(1.0)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        c.writes().is_empty(),
        "written without a lease: {:?}",
        c.writes()
    );
    assert!(
        c.leaders().await.is_empty(),
        "nobody leads without the database"
    );

    // The database is back: one leader, and the decision reaches Talkdesk.
    admin
        .batch_execute(&format!("ALTER DATABASE {} ALLOW_CONNECTIONS true", c.db))
        .await
        .unwrap();
    let leader = c.one_leader(&c.running(), Duration::from_secs(10)).await;
    c.wait("activation", Duration::from_secs(20), async || {
        c.writes().iter().any(|e| activation(e, true))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = c.writes();
    assert!(
        before
            .iter()
            .all(|e| e.instance.as_deref() == Some(c.replicas[leader].id.as_str()))
    );

    // PostgreSQL restarted under the replicas: they recover with one leader,
    // the decision is kept, nothing is switched off and on again.
    c.pg.restart();
    let after_restart = c.one_leader(&c.running(), Duration::from_secs(15)).await;
    c.wait(
        "the leader sees the fallback on",
        Duration::from_secs(10),
        async || {
            c.replicas[after_restart]
                .agent()
                .metric("continuity_fallback_actual")
                .await
                == Some(1.0)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.leaders().await.len(), 1);
    let after = c.writes();
    assert!(
        !after.iter().any(|e| activation(e, false)),
        "the fallback was switched off: {after:?}"
    );
    assert!(c.sim.state().enabled);
    for r in &c.replicas {
        let status = r
            .agent()
            .metric("continuity_leader{account=\"default\"} ")
            .await;
        assert!(status.is_some(), "{} serves /metrics", r.id);
    }
}
