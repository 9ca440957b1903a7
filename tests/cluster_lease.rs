//! The lease logic against a real PostgreSQL: acquire, renew, expiry and
//! takeover with a monotonic epoch, the write fence, and the lease loop's
//! renew deadline (a leader that cannot reach the database steps down).

mod support;

use std::sync::Arc;
use std::time::Duration;

use continuity_agent::cluster;
use continuity_agent::config::Dur;
use continuity_agent::config::schema::ClusterConfig;
use continuity_agent::store::{
    DEFAULT_ACCOUNT, LeaseClaim, PostgresStore, SqliteStore, Store, WriteClaim, WriteGrant,
};
use continuity_agent::telemetry::audit::MemoryAudit;
use continuity_agent::telemetry::{AuditKind, Metrics};
use support::pg::PgServer;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

fn claim(instance: &str, token: &str, ttl_ms: u64) -> LeaseClaim {
    LeaseClaim {
        instance_id: instance.into(),
        token: token.into(),
        ttl: Duration::from_millis(ttl_ms),
    }
}

fn write(c: &LeaseClaim, epoch: i64, margin_ms: u64) -> WriteClaim {
    WriteClaim {
        instance_id: c.instance_id.clone(),
        token: c.token.clone(),
        epoch,
        margin: Duration::from_millis(margin_ms),
        op: "put_activation".into(),
    }
}

async fn open(pg: &PgServer, db: &str, account: &str) -> PostgresStore {
    PostgresStore::open(&pg.url(db), None, account)
        .await
        .expect("open the store")
}

#[tokio::test]
async fn lease_is_taken_renewed_and_taken_over_only_after_expiry_with_a_growing_epoch() {
    let pg = PgServer::start();
    let db = pg.database().await;
    let store = open(&pg, &db, DEFAULT_ACCOUNT).await;
    let a = claim("replica-a", "token-a", 1_500);
    let b = claim("replica-b", "token-b", 1_500);

    let first = store.claim_lease(&a).await.unwrap();
    assert!(first.held);
    assert_eq!((first.holder.as_str(), first.epoch), ("replica-a", 1));
    // Renewal keeps the epoch; another instance cannot take a live lease.
    let renewed = store.claim_lease(&a).await.unwrap();
    assert_eq!((renewed.held, renewed.epoch), (true, 1));
    let refused = store.claim_lease(&b).await.unwrap();
    assert!(!refused.held);
    assert_eq!((refused.holder.as_str(), refused.epoch), ("replica-a", 1));

    // Writes: the holder under its epoch with a margin the lease covers.
    assert!(matches!(
        store.claim_write(&write(&a, 1, 200)).await.unwrap(),
        WriteGrant::Granted { .. }
    ));
    assert_eq!(
        store.claim_write(&write(&a, 1, 5_000)).await.unwrap(),
        WriteGrant::Refused,
        "the lease does not outlive a 5 s request"
    );
    assert_eq!(
        store.claim_write(&write(&b, 1, 200)).await.unwrap(),
        WriteGrant::Refused,
        "not the holder"
    );

    // A lets it expire: B takes over with the next epoch, and A's epoch is dead.
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let taken = store.claim_lease(&b).await.unwrap();
    assert_eq!((taken.held, taken.epoch), (true, 2));
    assert_eq!(
        store.claim_write(&write(&a, 1, 200)).await.unwrap(),
        WriteGrant::Refused,
        "the old epoch is fenced off"
    );
    let back = store.claim_lease(&a).await.unwrap();
    assert!(!back.held, "B's live lease is B's");
    assert_eq!(back.epoch, 2);

    // A restarted process of B (same instance, new token) takes it at once.
    let b2 = claim("replica-b", "token-b2", 1_500);
    let restarted = store.claim_lease(&b2).await.unwrap();
    assert_eq!((restarted.held, restarted.epoch), (true, 3));
    assert_eq!(
        store.claim_write(&write(&b, 2, 200)).await.unwrap(),
        WriteGrant::Refused
    );

    // Every granted write is recorded under its epoch.
    let admin = pg.connect(&db).await;
    let rows = admin
        .query("SELECT epoch, holder, op FROM writes ORDER BY id", &[])
        .await
        .unwrap();
    let got: Vec<(i64, String, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(got, vec![(1, "replica-a".into(), "put_activation".into())]);

    // Leases are per account: another account's lease is independent.
    let other = open(&pg, &db, "acme").await;
    let own = other.claim_lease(&a).await.unwrap();
    assert_eq!((own.held, own.epoch), (true, 1));
}

#[tokio::test]
async fn concurrent_claims_elect_exactly_one_holder() {
    let pg = PgServer::start();
    let db = pg.database().await;
    let store = Arc::new(open(&pg, &db, DEFAULT_ACCOUNT).await);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let c = claim(&format!("replica-{i}"), &format!("token-{i}"), 5_000);
            store.claim_lease(&c).await.unwrap()
        }));
    }
    let mut held = 0;
    for t in tasks {
        let s = t.await.unwrap();
        held += usize::from(s.held);
        assert_eq!(s.epoch, 1, "one term, whoever won");
    }
    assert_eq!(held, 1);
}

#[tokio::test]
async fn a_sqlite_store_always_leads_and_counts_its_terms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"))
        .await
        .unwrap();
    let a = claim("host", "token-1", 10_000);
    assert_eq!(store.claim_lease(&a).await.unwrap().epoch, 1);
    assert_eq!(store.claim_lease(&a).await.unwrap().epoch, 1, "renewed");
    // The next process on the same file takes over at once.
    let a2 = claim("host", "token-2", 10_000);
    let next = store.claim_lease(&a2).await.unwrap();
    assert_eq!((next.held, next.epoch), (true, 2));
    assert!(matches!(
        store.claim_write(&write(&a2, 2, 1_000)).await.unwrap(),
        WriteGrant::Granted { .. }
    ));
    assert_eq!(
        store.claim_write(&write(&a, 1, 1_000)).await.unwrap(),
        WriteGrant::Refused
    );
}

fn cluster_config(instance: &str, ttl_ms: u64, deadline_ms: u64) -> ClusterConfig {
    ClusterConfig {
        instance_id: instance.into(),
        lease_ttl: Dur::from_millis(ttl_ms),
        renew_deadline: Dur::from_millis(deadline_ms),
    }
}

#[tokio::test]
async fn a_leader_that_cannot_renew_steps_down_within_renew_deadline() {
    let pg = PgServer::start();
    let db = pg.database().await;
    let store: Arc<dyn Store> = Arc::new(open(&pg, &db, DEFAULT_ACCOUNT).await);
    let audit = MemoryAudit::default();
    let metrics = Metrics::new();
    let cancel = CancellationToken::new();
    let task = cluster::spawn(
        store,
        &cluster_config("replica-a", 3_000, 1_500),
        metrics.clone(),
        Arc::new(audit.clone()),
        cancel.clone(),
    )
    .await;
    let lead = task.rx.borrow().clone();
    assert!(
        lead.leader && lead.may_act(),
        "a lone replica leads at once"
    );
    assert_eq!(
        (lead.leader_id.as_deref(), lead.epoch),
        (Some("replica-a"), 1)
    );
    assert_eq!(metrics.account("default").leader.get(), 1);
    assert_eq!(metrics.account("default").epoch.get(), 1);

    // Renewals keep it leading well past one lease.
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let lead = task.rx.borrow().clone();
    assert!(lead.may_act());
    assert_eq!(lead.epoch, 1);

    // The database goes away: it steps down by itself, by renew_deadline
    // after the start of its last successful renewal, i.e. before the lease
    // could expire and pass to anyone else.
    let mut rx = task.rx.clone();
    let last_ok = Instant::now();
    pg.stop();
    let stepped = tokio::time::timeout(Duration::from_secs(3), rx.wait_for(|l| !l.leader))
        .await
        .map(|r| r.is_ok());
    let waited = last_ok.elapsed();
    assert_eq!(stepped, Ok(true), "did not step down after {waited:?}");
    assert!(
        waited <= Duration::from_millis(1_500 + 500),
        "stepped down only after {waited:?}"
    );
    assert_eq!(metrics.account("default").leader.get(), 0);
    assert!(
        audit
            .records()
            .iter()
            .any(|r| r.kind == AuditKind::Leadership && r.message.contains("stepped down")),
        "the step-down is audited"
    );

    // Back: it leads again (the same epoch if its lease had not expired
    // meanwhile, the next one otherwise; nobody else claimed it).
    pg.start_again();
    let back = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|l| l.leader))
        .await
        .map(|r| r.is_ok());
    assert_eq!(back, Ok(true), "leads again once the database is back");
    assert!(task.rx.borrow().may_act());
    cancel.cancel();
    task.task.await.unwrap();
}

#[tokio::test]
async fn the_fence_allows_the_holder_and_refuses_and_audits_once_the_epoch_moved_on() {
    use continuity_agent::talkdesk::Op;
    use continuity_agent::talkdesk::actuator::{Verdict, WriteFence};

    let pg = PgServer::start();
    let db = pg.database().await;
    let store: Arc<dyn Store> = Arc::new(open(&pg, &db, DEFAULT_ACCOUNT).await);
    let audit = MemoryAudit::default();
    let cancel = CancellationToken::new();
    let task = cluster::spawn(
        store.clone(),
        &cluster_config("replica-a", 10_000, 6_000),
        Metrics::new(),
        Arc::new(audit.clone()),
        cancel.clone(),
    )
    .await;
    let fence = cluster::Fence::new(
        store.clone(),
        task.rx.clone(),
        task.claim.clone(),
        Duration::from_secs(1),
        Arc::new(audit.clone()),
    );
    assert!(
        fence.may_write(Op::PutActivation).await.allowed(),
        "the holder writes"
    );
    let admin = pg.connect(&db).await;
    let recorded: i64 = admin
        .query_one("SELECT count(*) FROM writes WHERE epoch = 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 1, "the write is recorded under its epoch");

    // The lease passes to another process behind this one's back (as after
    // a pause past its lease): its local view still says "leader", the
    // store says no.
    admin
        .batch_execute(
            "UPDATE leases SET token = 'someone-else', holder = 'replica-b', epoch = epoch + 1",
        )
        .await
        .unwrap();
    assert!(
        task.rx.borrow().may_act(),
        "locally it still believes it leads"
    );
    assert_eq!(
        fence.may_write(Op::PutSettings).await,
        Verdict::Unconfirmed,
        "the store refuses; by its own view it still leads, so the write is postponed"
    );
    let refusals: Vec<String> = audit
        .records()
        .iter()
        .filter(|r| r.kind == AuditKind::Leadership && r.message.contains("refused"))
        .map(|r| r.message.clone())
        .collect();
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(refusals[0].contains("put_settings"), "{refusals:?}");
    let recorded: i64 = admin
        .query_one("SELECT count(*) FROM writes", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded, 1, "a refused write is not recorded");
    cancel.cancel();
    task.task.await.unwrap();
}
