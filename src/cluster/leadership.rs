//! The lease loop of one account: claim, renew every `lease_ttl / 3`, step
//! down in time; with sharded leadership (`shard.rs`) also claim only when
//! assigned and hand over when the assignee asks.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::shard::View;
use crate::config::schema::ClusterConfig;
use crate::domain::Timestamp;
use crate::store::{LeaseClaim, LeaseState, Store};
use crate::telemetry::{AccountMetrics, AuditKind, AuditRecord, AuditSink, Metrics};

/// What this replica knows about the lease, published on every claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    /// This replica holds the lease and may actuate.
    pub leader: bool,
    /// The holder as last seen (`None` before the first answer).
    pub leader_id: Option<String>,
    /// The epoch last seen (0 before the first answer).
    pub epoch: i64,
    /// Leader only: when it must stop writing unless a renewal succeeds
    /// first (start of the last successful claim + `renew_deadline`).
    pub valid_until: Option<Instant>,
}

impl Leadership {
    pub(super) fn unknown() -> Leadership {
        Leadership {
            leader: false,
            leader_id: None,
            epoch: 0,
            valid_until: None,
        }
    }

    /// Whether this replica may still act now (leader, deadline not passed).
    pub fn may_act(&self) -> bool {
        self.leader && self.valid_until.is_some_and(|u| Instant::now() < u)
    }
}

/// The running lease loop of one account.
pub struct LeadershipTask {
    pub rx: watch::Receiver<Leadership>,
    /// This process's claim (its `token` is what fenced writes must match).
    pub claim: LeaseClaim,
    pub task: JoinHandle<()>,
    store: Arc<dyn Store>,
    audit: Arc<dyn AuditSink>,
    /// Sharded: the membership task, stopped once every account's task is
    /// gone (dropped without `release`, as a killed process would be).
    _membership: Option<Arc<super::shard::Membership>>,
}

impl LeadershipTask {
    /// Graceful shutdown, once the loop was cancelled and the actuator
    /// finished its last call: ends the lease now so another replica takes
    /// over at once instead of after `lease_ttl`.
    pub async fn release(self) {
        let _ = self.task.await;
        if !self.rx.borrow().leader {
            return;
        }
        let released =
            tokio::time::timeout(RELEASE_TIMEOUT, self.store.release_lease(&self.claim)).await;
        match released {
            Ok(Ok(())) => {
                tracing::info!(message = "Lease released.", epoch = self.rx.borrow().epoch);
                self.audit.record(AuditRecord::new(
                    Timestamp::now(),
                    AuditKind::Leadership,
                    format!(
                        "{} released the lease (epoch {})",
                        self.claim.instance_id,
                        self.rx.borrow().epoch
                    ),
                ));
            }
            Ok(Err(error)) => {
                tracing::warn!(message = "Could not release the lease; it expires on its own.", %error);
            }
            Err(_) => {
                tracing::warn!(message = "Releasing the lease timed out; it expires on its own.")
            }
        }
    }
}

/// How long a graceful shutdown waits to release the lease.
pub(super) const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// One account, alone: claims once (so a lone replica leads before anything
/// else starts), then keeps claiming in the background until `cancel`,
/// taking the lease whenever it is free. Several accounts spread over
/// replicas: `spawn_sharded`.
pub async fn spawn(
    store: Arc<dyn Store>,
    cluster: &ClusterConfig,
    metrics: Metrics,
    audit: Arc<dyn AuditSink>,
    cancel: CancellationToken,
) -> LeadershipTask {
    let claim = LeaseClaim {
        instance_id: cluster.instance_id.clone(),
        token: process_token(),
        ttl: cluster.lease_ttl.get(),
    };
    // One account's lease: the default one's gauges.
    let gauges = metrics.account(crate::config::DEFAULT_ACCOUNT);
    let mut lease = Lease::new(store, None, claim, cluster, Some(gauges), audit);
    lease.claim_once().await;
    lease.start(Policy::Always, cancel, None)
}

/// When a lease loop claims.
pub(super) enum Policy {
    /// Every renewal period, whether held or not (`spawn`).
    Always,
    /// Only when the membership view assigns the account to this replica;
    /// hands it over when asked (`spawn_sharded`).
    Sharded(watch::Receiver<Arc<View>>),
}

/// A handover in progress: stepped down, the lease released at `at`.
struct Handover {
    to: String,
    at: Instant,
}

/// One account's lease, as this process sees it. The only writer of the
/// account's [`Leadership`].
pub(super) struct Lease {
    store: Arc<dyn Store>,
    /// The account, when several are led (logs and handover messages).
    account: Option<String>,
    claim: LeaseClaim,
    renew_deadline: Duration,
    tx: watch::Sender<Leadership>,
    /// Only the first account's lease writes the leadership gauges.
    metrics: Option<AccountMetrics>,
    audit: Arc<dyn AuditSink>,
    handover: Option<Handover>,
}

impl Lease {
    pub(super) fn new(
        store: Arc<dyn Store>,
        account: Option<String>,
        claim: LeaseClaim,
        cluster: &ClusterConfig,
        metrics: Option<AccountMetrics>,
        audit: Arc<dyn AuditSink>,
    ) -> Lease {
        let (tx, _) = watch::channel(Leadership::unknown());
        Lease {
            store,
            account,
            claim,
            renew_deadline: cluster.renew_deadline.get(),
            tx,
            metrics,
            audit,
            handover: None,
        }
    }

    /// Spawns the loop and returns its handle.
    pub(super) fn start(
        self,
        policy: Policy,
        cancel: CancellationToken,
        membership: Option<Arc<super::shard::Membership>>,
    ) -> LeadershipTask {
        let rx = self.tx.subscribe();
        let claim = self.claim.clone();
        let store = self.store.clone();
        let audit = self.audit.clone();
        let task = tokio::spawn(self.run(policy, cancel));
        LeadershipTask {
            rx,
            claim,
            task,
            store,
            audit,
            _membership: membership,
        }
    }

    fn every(&self) -> Duration {
        self.claim.ttl / 3
    }

    /// How long a fenced write may still be on its way after a step-down:
    /// it passed the fence before, with the lease outliving it by the
    /// request timeout, which `check-config` keeps under 2/3 of the lease.
    fn write_window(&self) -> Duration {
        self.claim.ttl * 2 / 3
    }

    async fn run(mut self, mut policy: Policy, cancel: CancellationToken) {
        let mut next = Instant::now() + self.every();
        loop {
            let deadline = self.tx.borrow().valid_until;
            let release_at = self.handover.as_ref().map(|h| h.at);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = sleep_until(deadline) => {
                    self.step_down("no renewal succeeded within renew_deadline");
                }
                _ = sleep_until(release_at) => self.release_to_assignee().await,
                view = policy.next_view() => {
                    // A claim here is for a lease not held: no deadline to race.
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => break,
                        _ = self.on_view(&view) => {}
                    }
                }
                _ = tokio::time::sleep_until(next) => {
                    next = Instant::now() + self.every();
                    let renew = match policy {
                        Policy::Always => true,
                        Policy::Sharded(_) => self.tx.borrow().leader,
                    };
                    if !renew {
                        continue;
                    }
                    // The claim races the deadline: a hung database must not
                    // hold the step-down back.
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => break,
                        _ = sleep_until(deadline) => {
                            self.step_down("no renewal succeeded within renew_deadline");
                        }
                        _ = self.claim_once() => {}
                    }
                }
            }
        }
    }

    /// What a new membership view means for this account: claim it when
    /// assigned here and not held; hand it over when held and its assignee
    /// asks; otherwise learn who holds it.
    async fn on_view(&mut self, view: &View) {
        let Some(account) = self.account.clone() else {
            return;
        };
        let lead = self.tx.borrow().clone();
        if lead.leader {
            if let Some(to) = view.handover_to(&account) {
                self.begin_handover(to.to_string());
            }
            return;
        }
        if view.assigned_here(&account) {
            self.claim_once().await;
            return;
        }
        if let Some(row) = view.lease(&account) {
            self.publish(Leadership {
                leader: false,
                leader_id: Some(row.holder.clone()),
                epoch: row.epoch,
                valid_until: None,
            });
        }
    }

    /// Stops acting at once; the lease itself is released once any write
    /// already fenced has ended (`write_window`), so the next holder never
    /// overlaps one.
    fn begin_handover(&mut self, to: String) {
        let mut now = self.tx.borrow().clone();
        let message = format!(
            "{} hands {} over to {to} (epoch {})",
            self.claim.instance_id,
            self.account.as_deref().unwrap_or("the account"),
            now.epoch
        );
        tracing::warn!(message = %message, account = self.account.as_deref(), epoch = now.epoch);
        self.audit.record(
            AuditRecord::new(Timestamp::now(), AuditKind::Leadership, message).with_data(
                serde_json::json!({
                    "instance_id": self.claim.instance_id,
                    "to": to,
                    "epoch": now.epoch,
                    "leader": false,
                }),
            ),
        );
        now.leader = false;
        now.valid_until = None;
        self.publish(now);
        self.handover = Some(Handover {
            to,
            at: Instant::now() + self.write_window(),
        });
    }

    async fn release_to_assignee(&mut self) {
        let Some(handover) = self.handover.take() else {
            return;
        };
        let epoch = self.tx.borrow().epoch;
        match tokio::time::timeout(RELEASE_TIMEOUT, self.store.release_lease(&self.claim)).await {
            Ok(Ok(())) => {
                tracing::info!(message = "Lease released for a handover.", account = self.account.as_deref(), to = %handover.to, epoch);
                self.audit.record(AuditRecord::new(
                    Timestamp::now(),
                    AuditKind::Leadership,
                    format!(
                        "{} released the lease to {} (epoch {epoch})",
                        self.claim.instance_id, handover.to
                    ),
                ));
            }
            Ok(Err(error)) => {
                tracing::warn!(message = "Could not release the lease for a handover; it expires on its own.", account = self.account.as_deref(), %error);
            }
            Err(_) => {
                tracing::warn!(
                    message =
                        "Releasing the lease for a handover timed out; it expires on its own.",
                    account = self.account.as_deref()
                );
            }
        }
    }

    /// One claim, bounded by `renew_deadline`; publishes what it learned.
    pub(super) async fn claim_once(&mut self) {
        let started = Instant::now();
        let result =
            tokio::time::timeout(self.renew_deadline, self.store.claim_lease(&self.claim)).await;
        match result {
            Ok(Ok(state)) => self.learned(state, started),
            Ok(Err(error)) => {
                tracing::warn!(message = "Lease claim failed.", account = self.account.as_deref(), %error, leader = self.tx.borrow().leader);
            }
            Err(_) => {
                tracing::warn!(message = "Lease claim timed out.", account = self.account.as_deref(), timeout = ?self.renew_deadline, leader = self.tx.borrow().leader);
            }
        }
    }

    /// Before the loop starts: what the first view says of a lease this
    /// replica does not claim.
    pub(super) fn follow(&mut self, view: &View) {
        if let Some(row) = self.account.as_deref().and_then(|a| view.lease(a)) {
            self.publish(Leadership {
                leader: false,
                leader_id: Some(row.holder.clone()),
                epoch: row.epoch,
                valid_until: None,
            });
        }
    }

    fn learned(&mut self, state: LeaseState, started: Instant) {
        let before = self.tx.borrow().clone();
        let now = Leadership {
            leader: state.held,
            leader_id: Some(state.holder.clone()),
            epoch: state.epoch,
            valid_until: state.held.then(|| started + self.renew_deadline),
        };
        if state.held {
            // Held again (a handover whose assignee went away): keep it.
            self.handover = None;
        }
        if now.leader && (!before.leader || before.epoch != now.epoch) {
            self.announce(
                format!("{} leads (epoch {})", self.claim.instance_id, state.epoch),
                &state,
            );
        } else if !now.leader && before.leader {
            self.announce(
                format!(
                    "{} lost the lease to {} (epoch {})",
                    self.claim.instance_id, state.holder, state.epoch
                ),
                &state,
            );
        } else if !now.leader && before.leader_id.as_ref() != Some(&state.holder) {
            tracing::info!(message = "Following.", account = self.account.as_deref(), leader = %state.holder, epoch = state.epoch);
        }
        self.publish(now);
    }

    /// The renewal deadline passed: stop acting at once.
    fn step_down(&mut self, why: &str) {
        let mut now = self.tx.borrow().clone();
        if !now.leader {
            return;
        }
        tracing::error!(
            message = "Stepping down: the lease could not be renewed in time; no Talkdesk write until it is held again.",
            account = self.account.as_deref(),
            reason = why,
            epoch = now.epoch
        );
        self.audit.record(
            AuditRecord::new(
                Timestamp::now(),
                AuditKind::Leadership,
                format!("{} stepped down (epoch {}): {why}", self.claim.instance_id, now.epoch),
            )
            .with_data(serde_json::json!({ "instance_id": self.claim.instance_id, "epoch": now.epoch, "leader": false })),
        );
        now.leader = false;
        now.valid_until = None;
        self.publish(now);
    }

    fn announce(&self, message: String, state: &LeaseState) {
        tracing::warn!(message = %message, account = self.account.as_deref(), leader = state.held, epoch = state.epoch);
        self.audit.record(
            AuditRecord::new(Timestamp::now(), AuditKind::Leadership, message).with_data(
                serde_json::json!({
                    "instance_id": self.claim.instance_id,
                    "leader_id": state.holder,
                    "epoch": state.epoch,
                    "leader": state.held,
                }),
            ),
        );
    }

    /// The one writer of the account's leadership (and, for the first
    /// account, of the leadership gauges). Unchanged values are not sent
    /// again, so the daemon's loop is not woken for nothing.
    fn publish(&self, now: Leadership) {
        if let Some(metrics) = &self.metrics {
            metrics.leader.set(i64::from(now.leader));
            metrics.epoch.set(now.epoch);
        }
        self.tx.send_if_modified(|current| {
            let changed = *current != now;
            *current = now;
            changed
        });
    }
}

impl Policy {
    /// The next membership view (never, for `Always` or once the
    /// membership task has ended).
    async fn next_view(&mut self) -> Arc<View> {
        if let Policy::Sharded(rx) = self
            && rx.changed().await.is_ok()
        {
            return rx.borrow_and_update().clone();
        }
        std::future::pending().await
    }
}

/// Pends forever without a deadline.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Unique per process start: 128 random bits.
pub(super) fn process_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}
