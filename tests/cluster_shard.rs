//! Sharded leadership against a real PostgreSQL: three in-process
//! "replicas" (`spawn_sharded` with distinct instance ids, each with its own
//! pool) split thirty accounts evenly; one is killed
//! (its tasks aborted, nothing released, as `kill -9` would) and every one
//! of its accounts is held by a survivor within `lease_ttl` + 1 s of its last
//! renewal, with no account changing hands more than the assignment asks;
//! at the end only the holder's write passes the fence, per account. Also:
//! the fence per account, and a SQLite store leading every account.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use continuity_agent::cluster::{self, Leadership, LeadershipTask, ShardAccount};
use continuity_agent::config::Dur;
use continuity_agent::config::schema::ClusterConfig;
use continuity_agent::store::{
    DEFAULT_ACCOUNT, PostgresStore, SqliteStore, Store, WriteClaim, WriteGrant,
};
use continuity_agent::telemetry::audit::MemoryAudit;
use continuity_agent::telemetry::{AuditKind, Metrics};
use support::pg::PgServer;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const TTL: Duration = Duration::from_secs(3);
const RENEW_DEADLINE: Duration = Duration::from_secs(2);
const ACCOUNTS: usize = 30;

fn config(instance: &str) -> ClusterConfig {
    ClusterConfig {
        instance_id: instance.into(),
        lease_ttl: Dur::from_millis(TTL.as_millis() as u64),
        renew_deadline: Dur::from_millis(RENEW_DEADLINE.as_millis() as u64),
    }
}

fn account_ids() -> Vec<String> {
    (0..ACCOUNTS).map(|i| format!("acct-{i:02}")).collect()
}

/// One in-process replica: its own store (pool), its tasks, its audit.
struct Replica {
    id: String,
    stores: Vec<Arc<dyn Store>>,
    tasks: Vec<LeadershipTask>,
    audits: Vec<MemoryAudit>,
    metrics: Metrics,
    cancel: CancellationToken,
}

impl Replica {
    async fn start(pg: &PgServer, db: &str, id: &str, accounts: &[String]) -> Replica {
        let root: Arc<dyn Store> = Arc::new(
            PostgresStore::open(&pg.url(db), None, DEFAULT_ACCOUNT)
                .await
                .expect("open the store"),
        );
        let stores: Vec<Arc<dyn Store>> = accounts.iter().map(|a| root.for_account(a)).collect();
        let audits: Vec<MemoryAudit> = accounts.iter().map(|_| MemoryAudit::default()).collect();
        let shard = accounts
            .iter()
            .zip(&stores)
            .zip(&audits)
            .map(|((id, store), audit)| ShardAccount {
                id: id.clone(),
                store: store.clone(),
                audit: Arc::new(audit.clone()),
            })
            .collect();
        let metrics = Metrics::new();
        let cancel = CancellationToken::new();
        let tasks =
            cluster::spawn_sharded(root, shard, &config(id), metrics.clone(), cancel.clone()).await;
        assert_eq!(tasks.len(), accounts.len(), "one task per account");
        Replica {
            id: id.into(),
            stores,
            tasks,
            audits,
            metrics,
            cancel,
        }
    }

    fn lead(&self, i: usize) -> Leadership {
        self.tasks[i].rx.borrow().clone()
    }

    fn leads(&self) -> Vec<usize> {
        (0..self.tasks.len())
            .filter(|&i| self.lead(i).may_act())
            .collect()
    }

    /// `kill -9`: every task stops where it is; nothing is released, the
    /// membership row is not removed.
    fn kill(self) -> Vec<Leadership> {
        let last = (0..self.tasks.len()).map(|i| self.lead(i)).collect();
        for t in &self.tasks {
            t.task.abort();
        }
        drop(self.tasks);
        last
    }
}

/// Who may act for each account (account index -> replica indexes).
fn holders(replicas: &[&Replica]) -> Vec<Vec<usize>> {
    (0..ACCOUNTS)
        .map(|a| {
            replicas
                .iter()
                .enumerate()
                .filter(|(_, r)| r.lead(a).may_act())
                .map(|(i, _)| i)
                .collect()
        })
        .collect()
}

/// Waits until every account is led by exactly one replica, the replicas
/// split the accounts evenly (floor or ceiling), and every replica knows who
/// leads each one; returns who leads what.
async fn settled(replicas: &[&Replica], within: Duration) -> BTreeMap<String, String> {
    let accounts = account_ids();
    let (n, r) = (accounts.len(), replicas.len());
    let deadline = Instant::now() + within;
    loop {
        let now = holders(replicas);
        let single = now.iter().all(|h| h.len() == 1);
        let owners: BTreeMap<String, String> = if single {
            accounts
                .iter()
                .enumerate()
                .map(|(a, acct)| (acct.clone(), replicas[now[a][0]].id.clone()))
                .collect()
        } else {
            BTreeMap::new()
        };
        let balanced = single
            && replicas.iter().all(|rep| {
                let c = owners.values().filter(|o| **o == rep.id).count();
                c == n / r || c == n.div_ceil(r)
            });
        let agreed = balanced
            && accounts.iter().enumerate().all(|(a, acct)| {
                replicas
                    .iter()
                    .all(|rep| rep.lead(a).leader_id.as_deref() == Some(owners[acct].as_str()))
            });
        if agreed {
            return owners;
        }
        assert!(
            Instant::now() < deadline,
            "not settled within {within:?}: holders {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn epochs(replicas: &[&Replica]) -> Vec<i64> {
    (0..ACCOUNTS)
        .map(|a| replicas.iter().map(|r| r.lead(a).epoch).max().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_split_thirty_accounts_and_a_killed_ones_move_within_ttl_plus_1s() {
    let pg = PgServer::start();
    let db = pg.database().await;
    let accounts = account_ids();

    // The first replica alone leads every account before spawn returns.
    let a = Replica::start(&pg, &db, "replica-a", &accounts).await;
    assert_eq!(a.leads().len(), ACCOUNTS, "a lone replica leads everything");
    for id in &accounts {
        let m = a.metrics.account(id);
        assert_eq!((m.leader.get(), m.epoch.get()), (1, 1), "{id}'s gauges");
    }
    let b = Replica::start(&pg, &db, "replica-b", &accounts).await;
    let c = Replica::start(&pg, &db, "replica-c", &accounts).await;
    let owners_before = settled(&[&a, &b, &c], Duration::from_secs(30)).await;
    for r in [&a, &b, &c] {
        let n = r.leads().len();
        assert!((9..=11).contains(&n), "{} leads {n}", r.id);
        assert_eq!(r.metrics.cluster_replicas.get(), 3);
    }
    // Joining moved accounts by handover, each audited by the giver.
    let handovers: usize = a
        .audits
        .iter()
        .flat_map(|x| x.records())
        .filter(|r| r.kind == AuditKind::Leadership && r.message.contains(" over to "))
        .count();
    assert!(
        handovers >= 20,
        "replica-a handed {handovers} accounts over"
    );

    let before = epochs(&[&a, &b, &c]);
    let b_led = b.leads();
    let (b_id, b_stores) = (b.id.clone(), b.stores.clone());
    let b_claim = b.tasks[0].claim.clone();
    let b_last = b.kill();
    // When each of b's leases was last renewed: its claim started at
    // valid_until - renew_deadline, and the database set the expiry after.
    let renewed: BTreeMap<usize, Instant> = b_led
        .iter()
        .map(|&i| (i, b_last[i].valid_until.unwrap() - RENEW_DEADLINE))
        .collect();

    let mut taken: BTreeMap<usize, Duration> = BTreeMap::new();
    let give_up = Instant::now() + TTL + Duration::from_secs(5);
    while taken.len() < b_led.len() && Instant::now() < give_up {
        for &i in &b_led {
            if !taken.contains_key(&i) && (a.lead(i).may_act() || c.lead(i).may_act()) {
                taken.insert(i, renewed[&i].elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let slowest = taken.values().max().copied();
    eprintln!(
        "takeover after the last renewal: slowest {slowest:?} of {} accounts (lease_ttl {TTL:?})",
        b_led.len()
    );
    assert_eq!(taken.len(), b_led.len(), "taken over: {taken:?}");
    assert!(
        slowest.unwrap() <= TTL + Duration::from_secs(1),
        "an account waited {slowest:?} after its last renewal: {taken:?}"
    );

    let owners_after = settled(&[&a, &c], Duration::from_secs(15)).await;
    for r in [&a, &c] {
        assert_eq!(r.leads().len(), 15, "{}", r.id);
        assert_eq!(r.metrics.cluster_replicas.get(), 2);
    }
    // Exactly b's accounts changed hands, once each (the survivors keep
    // what they led: `assign` keeps live holders within their share).
    let after = epochs(&[&a, &c]);
    for (i, acct) in accounts.iter().enumerate() {
        let moved = owners_before[acct] != owners_after[acct];
        assert_eq!(moved, owners_before[acct] == b_id, "{acct} moved: {moved}");
        assert_eq!(
            after[i] - before[i],
            i64::from(moved),
            "{acct}: epoch {} -> {} ({} -> {})",
            before[i],
            after[i],
            owners_before[acct],
            owners_after[acct]
        );
    }

    // Per account, only the holder's write passes the fence: the killed
    // replica's epoch is dead, the follower's token is not the holder's.
    for (i, acct) in accounts.iter().enumerate() {
        let mut granted = Vec::new();
        let candidates = [
            (
                &a.id,
                &a.tasks[i].claim.token,
                a.lead(i).epoch,
                &a.stores[i],
            ),
            (
                &c.id,
                &c.tasks[i].claim.token,
                c.lead(i).epoch,
                &c.stores[i],
            ),
            (&b_id, &b_claim.token, b_last[i].epoch, &b_stores[i]),
        ];
        for (id, token, epoch, store) in candidates {
            let write = WriteClaim {
                instance_id: id.clone(),
                token: token.clone(),
                epoch,
                margin: Duration::from_millis(100),
                op: "put_activation".into(),
            };
            if matches!(
                store.claim_write(&write).await.unwrap(),
                WriteGrant::Granted { .. }
            ) {
                granted.push(id.clone());
            }
        }
        assert_eq!(granted, [owners_after[acct].clone()], "{acct}");
    }
    a.cancel.cancel();
    c.cancel.cancel();
}

/// The fence test of `cluster_lease.rs`, for two accounts of one replica:
/// each account's fence follows its own lease only.
#[tokio::test]
async fn the_fence_of_each_account_follows_that_accounts_epoch() {
    use continuity_agent::talkdesk::Op;
    use continuity_agent::talkdesk::actuator::WriteFence;

    let pg = PgServer::start();
    let db = pg.database().await;
    let root: Arc<dyn Store> = Arc::new(
        PostgresStore::open(&pg.url(&db), None, DEFAULT_ACCOUNT)
            .await
            .unwrap(),
    );
    let ids = ["acme".to_string(), "globex".to_string()];
    let audits = [MemoryAudit::default(), MemoryAudit::default()];
    let shard = ids
        .iter()
        .zip(&audits)
        .map(|(id, audit)| ShardAccount {
            id: id.clone(),
            store: root.for_account(id),
            audit: Arc::new(audit.clone()),
        })
        .collect();
    let cancel = CancellationToken::new();
    let mut config = config("replica-a");
    config.lease_ttl = Dur::from_millis(10_000);
    config.renew_deadline = Dur::from_millis(6_000);
    let tasks =
        cluster::spawn_sharded(root.clone(), shard, &config, Metrics::new(), cancel.clone()).await;
    let fences: Vec<cluster::Fence> = (0..2)
        .map(|i| {
            cluster::Fence::new(
                root.for_account(&ids[i]),
                tasks[i].rx.clone(),
                tasks[i].claim.clone(),
                Duration::from_secs(1),
                Arc::new(audits[i].clone()),
            )
        })
        .collect();
    for (i, fence) in fences.iter().enumerate() {
        assert!(
            fence.may_write(Op::PutActivation).await.allowed(),
            "{} writes",
            ids[i]
        );
    }
    let admin = pg.connect(&db).await;
    // acme's lease passes to another process behind this one's back.
    admin
        .batch_execute(
            "UPDATE leases SET token = 'someone-else', holder = 'replica-b', epoch = epoch + 1
             WHERE account = 'acme'",
        )
        .await
        .unwrap();
    assert!(
        tasks[0].rx.borrow().may_act(),
        "locally it still leads acme"
    );
    assert!(
        !fences[0].may_write(Op::PutSettings).await.allowed(),
        "acme refused"
    );
    assert!(
        fences[1].may_write(Op::PutSettings).await.allowed(),
        "globex still writes"
    );
    let refusals = |audit: &MemoryAudit| {
        audit
            .records()
            .iter()
            .filter(|r| r.kind == AuditKind::Leadership && r.message.contains("refused"))
            .count()
    };
    assert_eq!((refusals(&audits[0]), refusals(&audits[1])), (1, 0));
    let recorded: Vec<(String, i64)> = admin
        .query(
            "SELECT account, count(*) FROM writes GROUP BY account ORDER BY account",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        recorded,
        [("acme".to_string(), 1), ("globex".to_string(), 2)],
        "only granted writes are recorded, each under its account"
    );
    cancel.cancel();
    for t in tasks {
        t.task.await.unwrap();
    }
}

/// A graceful stop leaves the cluster and releases its leases: the other
/// replica takes every account at once, not after `lease_ttl`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_stops_gracefully_hands_everything_over_at_once() {
    let pg = PgServer::start();
    let db = pg.database().await;
    let accounts = account_ids();
    let a = Replica::start(&pg, &db, "replica-a", &accounts).await;
    let b = Replica::start(&pg, &db, "replica-b", &accounts).await;
    settled(&[&a, &b], Duration::from_secs(30)).await;
    let b_led = b.leads();
    assert!(!b_led.is_empty());

    let stopped = Instant::now();
    b.cancel.cancel();
    for t in b.tasks {
        t.release().await;
    }
    let deadline = stopped + TTL;
    while !b_led.iter().all(|&i| a.lead(i).may_act()) {
        assert!(
            Instant::now() < deadline,
            "replica-a did not take b's accounts before b's leases could expire"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("took over after a graceful stop in {:?}", stopped.elapsed());
    assert_eq!(a.leads().len(), ACCOUNTS);
    a.cancel.cancel();
}

#[tokio::test]
async fn a_sqlite_store_leads_every_account_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let root: Arc<dyn Store> = Arc::new(
        SqliteStore::open(&dir.path().join("state.db"))
            .await
            .unwrap(),
    );
    let shard = ["acme", "globex", "initech"]
        .iter()
        .map(|id| ShardAccount {
            id: id.to_string(),
            store: root.for_account(id),
            audit: Arc::new(MemoryAudit::default()),
        })
        .collect();
    let metrics = Metrics::new();
    let cancel = CancellationToken::new();
    let tasks = cluster::spawn_sharded(
        root.clone(),
        shard,
        &config("host"),
        metrics.clone(),
        cancel.clone(),
    )
    .await;
    for t in &tasks {
        let lead = t.rx.borrow().clone();
        assert!(lead.may_act() && lead.epoch == 1, "{lead:?}");
    }
    assert_eq!(metrics.cluster_replicas.get(), 1);
    for id in ["acme", "globex", "initech"] {
        assert_eq!(metrics.account(id).leader.get(), 1, "{id}");
    }
    cancel.cancel();
    for t in tasks {
        t.release().await;
    }
}
