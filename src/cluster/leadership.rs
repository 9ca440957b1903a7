//! The lease loop: claim, renew every `lease_ttl / 3`, step down in time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::schema::ClusterConfig;
use crate::domain::Timestamp;
use crate::store::{LeaseClaim, LeaseState, Store};
use crate::telemetry::{AuditKind, AuditRecord, AuditSink, Metrics};

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
    fn unknown() -> Leadership {
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

/// The running lease loop.
pub struct LeadershipTask {
    pub rx: watch::Receiver<Leadership>,
    /// This process's claim (its `token` is what fenced writes must match).
    pub claim: LeaseClaim,
    pub task: JoinHandle<()>,
    store: Arc<dyn Store>,
    audit: Arc<dyn AuditSink>,
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
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// Claims once (so a lone replica leads before anything else starts), then
/// keeps claiming in the background until `cancel`.
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
    let (tx, rx) = watch::channel(Leadership::unknown());
    let mut lease = Lease {
        store: store.clone(),
        claim: claim.clone(),
        renew_deadline: cluster.renew_deadline.get(),
        tx,
        metrics,
        audit: audit.clone(),
    };
    lease.claim_once().await;
    let task = tokio::spawn(async move { lease.run(cancel).await });
    LeadershipTask {
        rx,
        claim,
        task,
        store,
        audit,
    }
}

struct Lease {
    store: Arc<dyn Store>,
    claim: LeaseClaim,
    renew_deadline: Duration,
    tx: watch::Sender<Leadership>,
    metrics: Metrics,
    audit: Arc<dyn AuditSink>,
}

impl Lease {
    fn every(&self) -> Duration {
        self.claim.ttl / 3
    }

    async fn run(mut self, cancel: CancellationToken) {
        let mut next = Instant::now() + self.every();
        loop {
            let deadline = self.tx.borrow().valid_until;
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break,
                _ = sleep_until(deadline) => {
                    self.step_down("no renewal succeeded within renew_deadline");
                }
                _ = tokio::time::sleep_until(next) => {
                    next = Instant::now() + self.every();
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

    /// One claim, bounded by `renew_deadline`; publishes what it learned.
    async fn claim_once(&mut self) {
        let started = Instant::now();
        let result =
            tokio::time::timeout(self.renew_deadline, self.store.claim_lease(&self.claim)).await;
        match result {
            Ok(Ok(state)) => self.learned(state, started),
            Ok(Err(error)) => {
                tracing::warn!(message = "Lease claim failed.", %error, leader = self.tx.borrow().leader);
            }
            Err(_) => {
                tracing::warn!(message = "Lease claim timed out.", timeout = ?self.renew_deadline, leader = self.tx.borrow().leader);
            }
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
            tracing::info!(message = "Following.", leader = %state.holder, epoch = state.epoch);
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
        tracing::warn!(message = %message, leader = state.held, epoch = state.epoch);
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

    /// One writer of the leadership gauges.
    fn publish(&self, now: Leadership) {
        self.metrics.leader.set(i64::from(now.leader));
        self.metrics.epoch.set(now.epoch);
        self.tx.send_replace(now);
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
fn process_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}
