//! Sharded leadership with real processes (issue 16): three agent processes
//! (`continuity-agent run -c FILE`) share thirty Talkdesk accounts through
//! one PostgreSQL database; one Talkdesk simulator serves the thirty
//! accounts and one sipp trunk is what every account's rule watches.
//!
//! - each replica leads about a third of the accounts, each account exactly
//!   one leader, all replicas agreeing who;
//! - the trunk dies: every account is switched on, each by its own leader;
//! - `kill -9` of the replica leading the most: each of its accounts is led
//!   by a survivor within `lease_ttl` + 1 s, with no Talkdesk write at all
//!   (no extra on/off) and exactly its accounts changing hands, once each; the trunk comes back: every account is switched off
//!   exactly once;
//! - per-account fencing: a leader paused (SIGSTOP) past its leases makes
//!   no Talkdesk write for two of its accounts when it resumes, while their
//!   new leader does; the killed replica's token and epoch are refused by
//!   the fence's statement for two of its accounts.
//!
//! `tests/cluster_shard.rs` is the in-process version (aborted tasks).
//! Timings are short so the test stays fast: `lease_ttl` 3 s (renewed every
//! second), `renew_deadline` 2 s, `talkdesk.request_timeout` 1 s.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use continuity_agent::store::{DEFAULT_ACCOUNT, PostgresStore, Store, WriteClaim, WriteGrant};
use continuity_agent::talkdesk::simulator::{
    self, JournalEntry, SimAccount, SimServer, Simulator, SimulatorOptions,
};
use serde::Deserialize;
use support::agent::AgentProcess;
use support::pg::PgServer;
use support::sipp::Sipp;
use tokio::time::Instant;

const ACCOUNTS: usize = 30;
const REPLICAS: usize = 3;
const LEASE_TTL: Duration = Duration::from_secs(3);
const OPS_TOKEN: &str = "ops-token-0123456789abcdef0123456789abcdef";
/// How often the survivors are asked who they lead during a takeover.
const POLL: Duration = Duration::from_millis(100);
/// What the API view of a takeover adds to the takeover itself: up to one
/// poll period, plus the two status requests of a round (answered in a few
/// milliseconds, slower on a loaded 2-core machine).
const POLL_ALLOWANCE: Duration = Duration::from_millis(500);

fn account_ids() -> Vec<String> {
    (0..ACCOUNTS).map(|i| format!("acct-{i:02}")).collect()
}

fn account(id: &str, sim: &str) -> String {
    format!(
        r#"
[[accounts]]
id = "{id}"
[accounts.talkdesk]
account = "{id}"
api_base = "{sim}/accounts/{id}"
token_url = "{sim}/accounts/{id}/oauth/token"
client_id = "{id}-client"
client_secret = "{id}-secret-0123456789"
reconcile_interval = "1s"
request_timeout = "1s"
[accounts.profiles.backup]
default = "+14155558888"
[[accounts.rules]]
name = "trunk-down"
profile = "backup"
for = "1s"
clear_for = "3s"
min_active = "1s"
when = {{ down = "trunk-a" }}
"#
    )
}

/// One replica's file: everything but `instance_id` and the port is shared.
fn config(dir: &Path, id: &str, port: u16, sim: &str, trunk: &str, url: &str) -> String {
    let accounts: String = account_ids().iter().map(|a| account(a, sim)).collect();
    format!(
        r#"
[agent]
listen = "127.0.0.1:{port}"
[store]
url = "{url}"
password_file = "{password}"
[cluster]
instance_id = "{id}"
lease_ttl = "3s"
renew_deadline = "2s"
[api]
tokens = [{{ name = "ops", token = "{OPS_TOKEN}", scopes = ["read", "override"] }}]
[[probes]]
id = "trunk-a"
type = "sip"
target = "{trunk}"
interval = "1s"
fast_interval = "500ms"
timeout = "1s"
rise = 2
fall = 3
{accounts}"#,
        password = dir.join("pg-password").display(),
    )
}

/// One account's line in `GET /v1/status`.
#[derive(Clone, Debug, Deserialize)]
struct Line {
    account: String,
    leader: bool,
    leader_id: Option<String>,
    epoch: i64,
    converged: bool,
}

#[derive(Deserialize)]
struct Summary {
    accounts: Vec<Line>,
}

struct Replica {
    id: String,
    port: u16,
    config: PathBuf,
    log: PathBuf,
    process: Option<AgentProcess>,
}

impl Replica {
    fn agent(&self) -> &AgentProcess {
        self.process.as_ref().expect("running")
    }

    /// Every account's line, or `None` when not running or not answering
    /// within a second (a stopped process).
    async fn lines(&self, http: &reqwest::Client) -> Option<BTreeMap<String, Line>> {
        let agent = self.process.as_ref()?;
        let ask = async {
            let r = http
                .get(format!("{}/v1/status", agent.api))
                .bearer_auth(OPS_TOKEN)
                .send()
                .await
                .ok()?;
            let s: Summary = r.error_for_status().ok()?.json().await.ok()?;
            Some(
                s.accounts
                    .into_iter()
                    .map(|l| (l.account.clone(), l))
                    .collect(),
            )
        };
        tokio::time::timeout(Duration::from_secs(1), ask)
            .await
            .ok()
            .flatten()
    }

    /// The accounts this replica says it leads.
    async fn leads(&self, http: &reqwest::Client) -> BTreeSet<String> {
        self.lines(http)
            .await
            .unwrap_or_default()
            .into_values()
            .filter(|l| l.leader)
            .map(|l| l.account)
            .collect()
    }

    fn signal(&self, signal: libc::c_int) {
        self.agent().signal(signal);
    }
}

struct Cluster {
    pg: PgServer,
    db: String,
    sim: Simulator,
    _server: SimServer,
    sipp: Option<Sipp>,
    trunk_port: u16,
    dir: tempfile::TempDir,
    replicas: Vec<Replica>,
    http: reqwest::Client,
}

impl Cluster {
    async fn start() -> Cluster {
        let pg = PgServer::start();
        let db = pg.database().await;
        let sipp = Sipp::start("options-uas.xml", false).await;
        let sim = Simulator::new(SimulatorOptions {
            accounts: account_ids()
                .iter()
                .map(|id| {
                    SimAccount::new(
                        id,
                        format!("{id}-client"),
                        format!("{id}-secret-0123456789"),
                    )
                })
                .collect(),
            ..SimulatorOptions::default()
        });
        let server = simulator::spawn(sim.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pg-password"), format!("{}\n", pg.password)).unwrap();
        let url = pg.url_without_password(&db);
        let mut replicas = Vec::new();
        for i in 0..REPLICAS {
            let id = format!("replica-{i}");
            let port = support::free_port();
            let path = dir.path().join(format!("{id}.toml"));
            let text = config(
                dir.path(),
                &id,
                port,
                &server.base_url(),
                &sipp.target(),
                &url,
            );
            std::fs::write(&path, text).unwrap();
            let log = dir.path().join(format!("{id}.log"));
            replicas.push(Replica {
                process: Some(AgentProcess::spawn(&path, port, &log)),
                id,
                port,
                config: path,
                log,
            });
        }
        for r in &mut replicas {
            r.process.as_mut().unwrap().wait_ready().await;
        }
        Cluster {
            pg,
            db,
            sim,
            _server: server,
            trunk_port: sipp.addr.port(),
            sipp: Some(sipp),
            dir,
            replicas,
            http: reqwest::Client::new(),
        }
    }

    /// The end of each replica's log (debug level, thirty accounts: the
    /// whole would drown the failure).
    fn logs(&self) -> String {
        self.replicas
            .iter()
            .map(|r| {
                let text = std::fs::read_to_string(&r.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(60)..].join("\n");
                format!(
                    "==== {} (port {}, {})\n{tail}\n",
                    r.id,
                    r.port,
                    r.config.display()
                )
            })
            .collect()
    }

    /// Waits until every account is led by exactly one replica of `live`,
    /// every one of them agrees on who leads it (`leader_id`), and the
    /// replicas split the accounts evenly (floor or ceiling: `cluster::assign`
    /// balances, keeping live holders within their share); returns each
    /// account's (leader, epoch).
    async fn settled(&self, live: &[usize], within: Duration) -> BTreeMap<String, (usize, i64)> {
        let deadline = Instant::now() + within;
        loop {
            let mut views = Vec::new();
            for &i in live {
                views.push((i, self.replicas[i].lines(&self.http).await));
            }
            let mut out = BTreeMap::new();
            for acct in account_ids() {
                let leaders: Vec<(usize, i64)> = views
                    .iter()
                    .filter_map(|(i, v)| {
                        let l = v.as_ref()?.get(&acct)?;
                        l.leader.then_some((*i, l.epoch))
                    })
                    .collect();
                if let [(i, epoch)] = leaders[..] {
                    let id = &self.replicas[i].id;
                    let agreed = views.iter().all(|(_, v)| {
                        v.as_ref()
                            .and_then(|v| v.get(&acct))
                            .is_some_and(|l| l.leader_id.as_ref() == Some(id))
                    });
                    if agreed {
                        out.insert(acct, (i, epoch));
                    }
                }
            }
            let (n, r) = (ACCOUNTS, live.len());
            let balanced = live.iter().all(|&i| {
                let c = out.values().filter(|(l, _)| *l == i).count();
                c == n / r || c == n.div_ceil(r)
            });
            if out.len() == ACCOUNTS && balanced {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "not settled within {within:?}: settled {out:?}; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn wait(&self, what: &str, within: Duration, mut cond: impl AsyncFnMut() -> bool) {
        let deadline = Instant::now() + within;
        while !cond().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leases and membership rows as the database has them now, for a
    /// failure's message.
    async fn cluster_rows(&self, admin: &tokio_postgres::Client) -> String {
        let leases = admin
            .query(
                "SELECT account, holder, epoch, (expires_at - now())::text, wanted_by FROM leases
                 ORDER BY account",
                &[],
            )
            .await
            .unwrap();
        let replicas = admin
            .query(
                "SELECT instance_id, (expires_at - now())::text FROM replicas ORDER BY instance_id",
                &[],
            )
            .await
            .unwrap();
        let leases: Vec<String> = leases
            .iter()
            .map(|r| {
                let (a, h, e, left, w): (String, String, i64, String, Option<String>) =
                    (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
                format!("{a}: {h} epoch {e} expires in {left} wanted by {w:?}")
            })
            .collect();
        let replicas: Vec<String> = replicas
            .iter()
            .map(|r| {
                format!(
                    "{} expires in {}",
                    r.get::<_, String>(0),
                    r.get::<_, String>(1)
                )
            })
            .collect();
        format!("replicas {replicas:?}, leases {leases:#?}")
    }

    /// An account's journal as the simulator recorded it.
    fn journal(&self, acct: &str) -> Vec<JournalEntry> {
        self.sim.account(acct).expect("simulated").journal()
    }

    fn writes(&self, acct: &str) -> Vec<JournalEntry> {
        self.journal(acct)
            .into_iter()
            .filter(|e| e.is_write())
            .collect()
    }

    /// Each account's number of journal entries so far.
    fn marks(&self) -> BTreeMap<String, usize> {
        account_ids()
            .into_iter()
            .map(|a| {
                let n = self.journal(&a).len();
                (a, n)
            })
            .collect()
    }

    /// The writes to `acct` after `mark` journal entries.
    fn writes_since(&self, acct: &str, mark: usize) -> Vec<JournalEntry> {
        self.journal(acct)[mark..]
            .iter()
            .filter(|e| e.is_write())
            .cloned()
            .collect()
    }

    fn enabled(&self) -> usize {
        account_ids()
            .iter()
            .filter(|a| self.sim.account(a).unwrap().state().enabled)
            .count()
    }
}

/// A failed run keeps the replicas' whole logs (the message has only
/// their ends).
impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dir.disable_cleanup(true);
            eprintln!("replica logs kept in {}", self.dir.path().display());
        }
    }
}

fn activation(e: &JournalEntry, on: bool) -> bool {
    e.op == "put_activation"
        && e.status == 200
        && e.body
            .as_deref()
            .is_some_and(|b| b.contains(&on.to_string()))
}

fn led_by(owners: &BTreeMap<String, (usize, i64)>, replica: usize) -> Vec<String> {
    owners
        .iter()
        .filter(|(_, (i, _))| *i == replica)
        .map(|(a, _)| a.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_thirty_accounts_and_a_killed_ones_move_without_an_extra_switch() {
    let mut c = Cluster::start().await;
    let all: Vec<usize> = (0..REPLICAS).collect();

    // 1. Each account has one leader, as the assignment says; about a third each.
    let before = c.settled(&all, Duration::from_secs(40)).await;
    for i in &all {
        let n = led_by(&before, *i).len();
        assert!((8..=12).contains(&n), "{} leads {n}", c.replicas[*i].id);
    }
    // Trunk up and Talkdesk off: nothing to write yet.
    for r in &c.replicas {
        c.wait(
            &format!("trunk-a up on {}", r.id),
            Duration::from_secs(15),
            async || {
                r.agent()
                    .metric("continuity_probe_up{probe=\"trunk-a\",type=\"sip\"}")
                    .await
                    == Some(1.0)
            },
        )
        .await;
    }
    for acct in account_ids() {
        assert!(c.writes(&acct).is_empty(), "{acct}: {:?}", c.writes(&acct));
    }

    // 2. The trunk dies: every account is switched on, by its own leader
    // only (its settings, then the activation).
    c.sipp.take().unwrap().kill();
    c.wait("every account on", Duration::from_secs(30), async || {
        c.enabled() == ACCOUNTS
    })
    .await;
    c.wait(
        "every leader converged",
        Duration::from_secs(10),
        async || {
            let mut converged = 0;
            for r in &c.replicas {
                let lines = r.lines(&c.http).await.unwrap_or_default();
                converged += lines.values().filter(|l| l.leader && l.converged).count();
            }
            converged == ACCOUNTS
        },
    )
    .await;
    for (acct, (leader, _)) in &before {
        let writes = c.writes(acct);
        let ops: Vec<&str> = writes.iter().map(|e| e.op.as_str()).collect();
        assert_eq!(ops, ["put_settings", "put_activation"], "{acct}");
        assert!(
            writes
                .iter()
                .all(|e| e.instance.as_deref() == Some(c.replicas[*leader].id.as_str())),
            "{acct} is written by its leader only: {writes:?}"
        );
    }
    let on_marks = c.marks();

    // 3. `kill -9` the replica leading the most accounts.
    let victim = *all
        .iter()
        .max_by_key(|i| led_by(&before, **i).len())
        .unwrap();
    let victim_id = c.replicas[victim].id.clone();
    let led: BTreeSet<String> = led_by(&before, victim).into_iter().collect();
    let survivors: Vec<usize> = all.iter().copied().filter(|i| *i != victim).collect();
    let admin = c.pg.connect(&c.db).await;
    // The kill as the database's clock sees it (read just before, so any
    // delay measured from it is an overestimate).
    let kill_at: String = admin
        .query_one("SELECT clock_timestamp()::text", &[])
        .await
        .unwrap()
        .get(0);
    c.replicas[victim].process.take().unwrap().kill9();
    let killed = Instant::now();
    // Its leases as it left them: the epoch, and the last renewal (the
    // database set `expires_at` to its `now()` + `lease_ttl`).
    let ttl = LEASE_TTL.as_secs_f64();
    let left: BTreeMap<String, (i64, String, String)> = admin
        .query(
            "SELECT account, epoch, (expires_at - make_interval(secs => $2))::text, token
             FROM leases WHERE holder = $1",
            &[&victim_id, &ttl],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    assert_eq!(
        left.keys().cloned().collect::<BTreeSet<_>>(),
        led,
        "the database and the API agree on what {victim_id} held"
    );

    // When a survivor first says it leads each of them.
    let mut seen: BTreeMap<String, Duration> = BTreeMap::new();
    let mut unanswered = 0;
    let give_up = killed + LEASE_TTL + Duration::from_secs(6);
    while seen.len() < led.len() {
        for &s in &survivors {
            let Some(lines) = c.replicas[s].lines(&c.http).await else {
                unanswered += 1;
                continue;
            };
            for l in lines.into_values() {
                if l.leader && led.contains(&l.account) && !seen.contains_key(&l.account) {
                    seen.insert(l.account, killed.elapsed());
                }
            }
        }
        if Instant::now() >= give_up {
            // Whether the survivors' leases or their status pages lag.
            let mut gauges = Vec::new();
            for &s in &survivors {
                for acct in &led {
                    let metric = format!("continuity_leader{{account=\"{acct}\"}} ");
                    let v = c.replicas[s].agent().metric(&metric).await;
                    gauges.push(format!("{} {acct} {v:?}", c.replicas[s].id));
                }
            }
            panic!(
                "taken over: {seen:?} of {led:?} ({unanswered} status requests unanswered); \
                 continuity_leader: {gauges:?}; store: {}; logs:\n{}",
                c.cluster_rows(&admin).await,
                c.logs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    // The takeover itself, by the database's clock: when the survivor's
    // claim took the lease (`acquired_at`), after the kill and after the
    // lease's last renewal. The second is what the product promises
    // (docs/replicas.md: `lease_ttl` + 1 s); the test could not know it
    // without the database, as the last renewal is up to `lease_ttl / 3`
    // before the kill.
    let mut after_renewal = BTreeMap::new();
    let mut after_kill = BTreeMap::new();
    for (acct, (epoch, renewed, _)) in &left {
        let row = admin
            .query_one(
                "SELECT holder, epoch,
                        EXTRACT(EPOCH FROM acquired_at - ($2::text)::timestamptz)::float8,
                        EXTRACT(EPOCH FROM acquired_at - ($3::text)::timestamptz)::float8
                 FROM leases WHERE account = $1",
                &[acct, renewed, &kill_at],
            )
            .await
            .unwrap();
        let (holder, new_epoch): (String, i64) = (row.get(0), row.get(1));
        assert!(
            holder != victim_id && new_epoch == epoch + 1,
            "{acct}: taken once by a survivor, held by {holder} at epoch {new_epoch} (was {epoch})"
        );
        after_renewal.insert(acct.clone(), Duration::from_secs_f64(row.get(2)));
        after_kill.insert(
            acct.clone(),
            Duration::from_secs_f64(row.get::<_, f64>(3).max(0.0)),
        );
    }
    let slowest = |m: &BTreeMap<String, Duration>| m.values().max().copied().unwrap();
    eprintln!(
        "{} accounts of {victim_id} taken over (lease_ttl {LEASE_TTL:?}): slowest {:?} after the \
         last renewal and {:?} after the kill (database clock), seen through the API {:?} after the kill",
        led.len(),
        slowest(&after_renewal),
        slowest(&after_kill),
        slowest(&seen),
    );
    let bound = LEASE_TTL + Duration::from_secs(1);
    assert!(
        slowest(&after_renewal) <= bound,
        "a lease was taken more than {bound:?} after its last renewal: {after_renewal:?}"
    );
    // Through the API, from the kill: the kill comes after each lease's last
    // renewal, so the same bound holds, plus what polling adds.
    assert!(
        slowest(&seen) <= bound + POLL_ALLOWANCE,
        "a survivor said it leads only {seen:?} after the kill"
    );

    // 4. The survivors settle on an even split. Exactly the victim's
    // accounts changed hands, once each; the survivors kept theirs.
    let after = c.settled(&survivors, Duration::from_secs(20)).await;
    for acct in account_ids() {
        let ((was, e0), (now, e1)) = (before[&acct], after[&acct]);
        assert_eq!(was != now, was == victim, "{acct}: {was} -> {now}");
        assert_eq!(
            e1 - e0,
            i64::from(was != now),
            "{acct}: epoch {e0} -> {e1} ({} -> {})",
            c.replicas[was].id,
            c.replicas[now].id
        );
    }
    for &s in &survivors {
        assert_eq!(
            led_by(&after, s).len(),
            ACCOUNTS / 2,
            "{}",
            c.replicas[s].id
        );
    }
    // No extra on/off: the new leaders restored the decision and read
    // Talkdesk; a few reconcile rounds later nothing was written at all.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(c.enabled(), ACCOUNTS, "every account still on");
    for acct in account_ids() {
        let late = c.writes_since(&acct, on_marks[&acct]);
        assert!(late.is_empty(), "{acct} written after the kill: {late:?}");
    }

    // 5. The trunk is back: every account is switched off exactly once.
    let sipp = Sipp::start_on("options-uas.xml", false, c.trunk_port).await;
    c.sipp = Some(sipp);
    let off_marks = c.marks();
    c.wait("every account off", Duration::from_secs(30), async || {
        c.enabled() == 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    for acct in account_ids() {
        let writes = c.writes_since(&acct, off_marks[&acct]);
        assert!(
            writes.len() == 1 && activation(&writes[0], false),
            "{acct}: one switch off, nothing else: {writes:?}"
        );
        let leader = &c.replicas[after[&acct].0].id;
        assert_eq!(writes[0].instance.as_ref(), Some(leader), "{acct}");
    }

    // 6. Fencing per account, the process: a leader paused past its leases
    // (SIGSTOP) writes nothing for two of its accounts when it resumes,
    // although a change made meanwhile by their new leader leaves its own
    // view stale (it last saw them off and decided off). On waking it
    // usually notices its stale leases before it tries any write; the fence
    // that stops the write otherwise is shown by itself in step 7.
    let (paused, other) = (survivors[0], survivors[1]);
    let (paused_id, other_id) = (c.replicas[paused].id.clone(), c.replicas[other].id.clone());
    let fenced: Vec<String> = led_by(&after, paused).into_iter().take(2).collect();
    let rows_by = async |holder: &str| -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM writes WHERE holder = $1 AND account = ANY($2)",
                &[&holder, &fenced],
            )
            .await
            .unwrap()
            .get(0)
    };
    let recorded = rows_by(&paused_id).await;
    let marks = c.marks();
    c.replicas[paused].signal(libc::SIGSTOP);
    c.wait(
        &format!("{other_id} leads {fenced:?}"),
        LEASE_TTL + Duration::from_secs(5),
        async || {
            let leads = c.replicas[other].leads(&c.http).await;
            fenced.iter().all(|a| leads.contains(a))
        },
    )
    .await;
    for acct in &fenced {
        let r = c
            .http
            .put(format!(
                "{}/v1/accounts/{acct}/override?wait=5s",
                c.replicas[other].agent().api
            ))
            .bearer_auth(OPS_TOKEN)
            .json(&serde_json::json!({"state": "active", "profile": "backup", "ttl": "30m", "reason": "fencing test"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "override {acct}: {}", r.status());
    }
    c.wait(
        "the overrides reach Talkdesk",
        Duration::from_secs(10),
        async || {
            fenced
                .iter()
                .all(|a| c.sim.account(a).unwrap().state().enabled)
        },
    )
    .await;

    c.replicas[paused].signal(libc::SIGCONT);
    // It learns of the new epochs, then gets its share back by handover
    // (restoring the new leader's decision: nothing to write either).
    c.wait(
        &format!("{paused_id} sees the new epochs"),
        Duration::from_secs(10),
        async || {
            let lines = c.replicas[paused].lines(&c.http).await.unwrap_or_default();
            fenced
                .iter()
                .all(|a| lines.get(a).is_some_and(|l| l.epoch > after[a].1))
        },
    )
    .await;
    c.settled(&survivors, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    for acct in &fenced {
        let writes = c.writes_since(acct, marks[acct]);
        let stale: Vec<&JournalEntry> = writes
            .iter()
            .filter(|e| e.instance.as_deref() == Some(paused_id.as_str()))
            .collect();
        assert!(
            stale.is_empty(),
            "{paused_id} wrote {acct} after its pause: {stale:?}"
        );
        assert!(
            writes
                .iter()
                .any(|e| activation(e, true) && e.instance.as_deref() == Some(other_id.as_str())),
            "{other_id}, the new leader, switched {acct} on: {writes:?}"
        );
        assert!(
            c.sim.account(acct).unwrap().state().enabled,
            "{acct}: the override holds"
        );
    }
    assert_eq!(
        rows_by(&paused_id).await,
        recorded,
        "the fence recorded no write of {paused_id} for {fenced:?}"
    );
    // Whether it tried at all depends on what it noticed first on waking,
    // the refused write or its stale lease: said, not asserted.
    let refused: i64 = admin
        .query_one(
            "SELECT count(*) FROM audit WHERE kind = 'leadership' AND account = ANY($1)
             AND message LIKE '%refused%'",
            &[&fenced],
        )
        .await
        .unwrap()
        .get(0);
    eprintln!("{paused_id} resumed: {refused} write(s) for {fenced:?} refused by the fence");
    // Accounts the pause did not concern are untouched.
    for acct in account_ids().iter().filter(|a| !fenced.contains(a)) {
        let writes = c.writes_since(acct, marks[acct]);
        assert!(writes.is_empty(), "{acct}: {writes:?}");
    }
    // 7. Fencing per account, the statement: the killed replica's token and
    // epoch are refused for two of its accounts, and so is its token under
    // the current epoch; the current holder's pass (and are recorded, so
    // this comes last).
    let store = PostgresStore::open(&c.pg.url(&c.db), None, DEFAULT_ACCOUNT)
        .await
        .expect("open the store");
    let claim = |instance: &str, token: &str, epoch: i64| WriteClaim {
        instance_id: instance.into(),
        token: token.into(),
        epoch,
        margin: Duration::from_millis(100),
        op: "put_activation".into(),
    };
    for (acct, (epoch, _, token)) in left.iter().take(2) {
        let (holder, now_token, now_epoch): (String, String, i64) = {
            let r = admin
                .query_one(
                    "SELECT holder, token, epoch FROM leases WHERE account = $1",
                    &[acct],
                )
                .await
                .unwrap();
            (r.get(0), r.get(1), r.get(2))
        };
        let fence = store.for_account(acct);
        for (who, write) in [
            ("the killed epoch", claim(&victim_id, token, *epoch)),
            ("the killed token", claim(&victim_id, token, now_epoch)),
        ] {
            assert_eq!(
                fence.claim_write(&write).await.unwrap(),
                WriteGrant::Refused,
                "{acct}: {who}"
            );
        }
        assert!(
            matches!(
                fence
                    .claim_write(&claim(&holder, &now_token, now_epoch))
                    .await
                    .unwrap(),
                WriteGrant::Granted { .. }
            ),
            "{acct}: its holder {holder} at epoch {now_epoch}"
        );
    }
}
