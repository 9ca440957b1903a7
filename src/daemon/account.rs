//! One Talkdesk account's share of the agent: its store handle and audit
//! queue, its lease, its engine (restored from its own document), its loop,
//! its supervised actuator with its own Talkdesk client, its calendar and
//! its notification queues. Accounts share only the probes, the webhooks
//! and the HTTP API (`run.rs`), so one account's Talkdesk trouble (an
//! outage, a rate limit, rejected credentials) never delays another's.
//!
//! The story of an account: `open` (store handle, audit) -> the lease
//! (`run::lead`) -> [`Account::build`] (restore, channels, actuator factory,
//! notifications) -> [`Account::start`] (calendar, the loop around the
//! restored engine, the first snapshot) -> [`Account::run`] (the loop until
//! shutdown, then drain, release the lease, last notifications, audit).

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::event_loop::{self, Inbox, Loop, Parts, Reconfigured};
use super::inputs::{Probes, start_calendar};
use super::persist::Persister;
use super::reload::AccountReload;
use super::restore::{Restored, restore};
use super::run::{AccountParts, CONTROL_QUEUE, DaemonError, EVENT_QUEUE, NOTIFY_GRACE, Shared};
use super::supervise::{MakeActuator, Supervisor};
use crate::cluster::{Fence, Leadership, LeadershipTask};
use crate::domain::{Desired, Timestamp};
use crate::engine::Event;
use crate::notify::Notices;
use crate::server::control::Control;
use crate::store::{self, Store, StoreAudit};
use crate::talkdesk::actuator::{self, Actuator, ActuatorHandle, Reconfigure};
use crate::telemetry::{AuditKind, AuditRecord};

/// An account whose store handle and audit queue are open.
pub(super) struct Opened {
    pub id: String,
    pub shared: Shared,
    pub store: Arc<dyn Store>,
    pub audit: (Arc<StoreAudit>, JoinHandle<()>),
}

/// An account, built and (after `start`) running.
pub(super) struct Account {
    pub id: String,
    shared: Shared,
    pub store: Arc<dyn Store>,
    audit: (Arc<StoreAudit>, JoinHandle<()>),
    leadership: LeadershipTask,
    restored: Option<Restored>,
    lp: Option<Loop>,
    /// Every input of this account sends here (the calendar, the actuator's
    /// observations, the shared probes through `run::fan_out`).
    pub events: mpsc::Sender<Event>,
    control: mpsc::Sender<Control>,
    reconfigure: mpsc::Sender<Reconfigured>,
    inbox: Inbox,
    desired: Option<watch::Sender<Desired>>,
    supervisor: Supervisor,
    /// Follows the actuator of each leadership term.
    pub actuator: ActuatorHandle,
    notices: Notices,
    persister: Option<Persister>,
}

impl Account {
    /// Restores the engine from the account's document and builds what
    /// surrounds it: channels, the actuator (not started), notifications.
    pub(super) async fn build(
        opened: Opened,
        mut leadership: LeadershipTask,
        cancel: &CancellationToken,
    ) -> Result<Account, DaemonError> {
        let Opened {
            id,
            shared,
            store,
            audit,
        } = opened;
        let lead = leadership.rx.borrow_and_update().clone();
        let restored = restore(&shared.config, &*store, &*shared.audit).await?;
        audit_start(&shared, &id, &lead, restored.engine.desired());
        let (events_tx, events_rx) = mpsc::channel::<Event>(EVENT_QUEUE);
        let (control_tx, control_rx) = mpsc::channel::<Control>(CONTROL_QUEUE);
        let (reconfigure_tx, reconfigure_rx) = mpsc::channel(1);
        let (desired_tx, desired_rx) = watch::channel(restored.engine.desired().clone());
        let (status_tx, handle) = actuator::status_channel();
        let notices = Notices::start(&shared.config, shared.metrics.clone(), shared.audit.clone())
            .map_err(|e| DaemonError::Notify(e.to_string()))?;
        let make = actuator_factory(&shared, &store, &leadership, (status_tx, notices.clone()));
        // Started while this replica leads: at once after a restore, after a
        // fresh start only once the engine has evidence (see `StartGate`), so
        // a fallback that is on (an outage in progress, a break-glass
        // activation) is not switched off blindly.
        let talkdesk = super::run::talkdesk_parts(
            &shared.config,
            shared.account_metrics.clone(),
            shared.audit.clone(),
        )
        .map_err(|e| DaemonError::Talkdesk(format!("{id}: {e}")))?;
        let supervisor = Supervisor::new(
            make,
            talkdesk,
            desired_rx,
            events_tx.clone(),
            cancel.clone(),
        );
        let inbox = Inbox {
            events: events_rx,
            control: control_rx,
            wake: Arc::new(Notify::new()),
            reconfigure: reconfigure_rx,
        };
        // Inputs other replicas append wake this loop too.
        store.watch_inputs(inbox.wake.clone(), cancel.clone());
        let persister = Persister::new(store.clone(), shared.audit.clone());
        Ok(Account {
            id,
            shared,
            store,
            audit,
            leadership,
            restored: Some(restored),
            lp: None,
            events: events_tx,
            control: control_tx,
            reconfigure: reconfigure_tx,
            inbox,
            desired: Some(desired_tx),
            supervisor,
            actuator: handle,
            notices,
            persister: Some(persister),
        })
    }

    /// The loop takes the engine over; the account is ready once its first
    /// snapshot is on disk (the leader's) or the lease is known (a follower).
    pub(super) async fn start(mut self, probes: Probes) -> Result<Account, DaemonError> {
        let calendar = start_calendar(&self.shared.config, &self.events).await?;
        let (restored, persister, desired) = match (
            self.restored.take(),
            self.persister.take(),
            self.desired.take(),
        ) {
            (Some(r), Some(p), Some(d)) => (r, p, d),
            _ => return Err(DaemonError::Actuator("account started twice".into())),
        };
        let lead = self.leadership.rx.borrow().clone();
        let (mut lp, commands) = Loop::new(
            &self.shared,
            restored,
            lead,
            Parts {
                account: self.id.clone(),
                persister,
                desired_tx: desired,
                probes,
                calendar,
                actuator: self.actuator.clone(),
                store: self.store.clone(),
                notices: self.notices.clone(),
            },
        );
        lp.begin(&mut self.supervisor);
        lp.start(commands).await;
        self.lp = Some(lp);
        Ok(self)
    }

    /// What the API reaches of this account.
    pub(super) fn api_parts(&self) -> AccountParts {
        AccountParts {
            id: self.id.clone(),
            config: self.shared.config.clone(),
            store: self.store.clone(),
            // Operator changes are durable in the store before their 2xx.
            queue: store::inputs::Queue::new(self.store.clone(), self.inbox.wake.clone()),
            control: self.control.clone(),
            actuator: self.actuator.clone(),
            ready: self.lp.as_ref().map(Loop::readiness).unwrap_or_default(),
        }
    }

    /// Wakes the account's loop when inputs for it were appended.
    pub(super) fn wake(&self) -> Arc<Notify> {
        self.inbox.wake.clone()
    }

    /// What a reload reaches of this account.
    pub(super) fn reload_handle(&self) -> AccountReload {
        AccountReload {
            id: self.id.clone(),
            events: self.events.clone(),
            reconfigure: self.reconfigure.clone(),
            audit: self.shared.audit.clone(),
            metrics: self.shared.account_metrics.clone(),
        }
    }

    /// Until shutdown (or until the actuator dies: then why), then drain:
    /// requests already accepted are applied and persisted, the actuator
    /// finishes its call in flight, the lease is released, the last
    /// notifications go, and the audit queue is flushed.
    pub(super) async fn run(
        mut self,
        cancel: CancellationToken,
        server_done: CancellationToken,
    ) -> Option<String> {
        let Some(mut lp) = self.lp.take() else {
            return Some(format!("account {} was never started", self.id));
        };
        let fatal = event_loop::run(
            &mut lp,
            &mut self.inbox,
            &mut self.supervisor,
            &mut self.leadership.rx,
            &cancel,
        )
        .await;
        // One account's actuator dying stops the agent (see `run::coordinate`).
        cancel.cancel();
        drain(&mut lp, &mut self.inbox, self.supervisor, &server_done).await;
        // The actuator is done: hand the lease over at once.
        self.leadership.release().await;
        // The last notices (a deactivation on the way out) still go; then
        // this handle goes, or the audit writer below would wait for it.
        self.notices.stop(NOTIFY_GRACE).await;
        self.shared.audit.record(AuditRecord::new(
            Timestamp::now(),
            AuditKind::Stop,
            "agent stopped",
        ));
        drop(lp);
        drop(self.shared);
        drop(self.inbox);
        let (audit, writer) = self.audit;
        drop(audit);
        let _ = writer.await;
        fatal
    }
}

/// Shutdown. Inputs stop first; requests already accepted (a webhook that
/// got 202, an override in flight) are still applied and persisted until
/// the HTTP server has answered its last request. Then the actuator finishes
/// its in-flight call and the snapshot is written.
async fn drain(
    lp: &mut Loop,
    inbox: &mut Inbox,
    supervisor: Supervisor,
    server_done: &CancellationToken,
) {
    lp.stopping();
    loop {
        tokio::select! {
            biased;
            _ = server_done.cancelled() => break,
            Some(c) = inbox.control.recv() => lp.control(c).await,
            Some(ev) = inbox.events.recv() => lp.handle(ev).await,
            // A decision made now still reaches the actuator, once persisted.
            () = lp.persisted() => lp.publish_persisted(),
        }
    }
    lp.stop_calendar().await;
    while let Ok(ev) = inbox.events.try_recv() {
        lp.handle(ev).await;
    }
    supervisor.finish().await;
    lp.flush().await;
}

/// The first audit record of a run: which replica, in which role, deciding what.
fn audit_start(shared: &Shared, account: &str, lead: &Leadership, desired: &Desired) {
    shared.audit.record(AuditRecord::new(
        Timestamp::now(),
        AuditKind::Start,
        format!(
            "agent {} started for account {account} ({}); desired state {desired}",
            shared.config.instance_id(),
            role(lead),
        ),
    ));
}

fn role(lead: &Leadership) -> String {
    match (&lead.leader_id, lead.leader) {
        (_, true) => format!("leader, epoch {}", lead.epoch),
        (Some(id), false) => format!("follower of {id}, epoch {}", lead.epoch),
        (None, false) => "follower, leader unknown".to_string(),
    }
}

/// Builds the actuator of each leadership term from the current Talkdesk
/// parts, fenced by the account's lease, reporting to one status channel and
/// telling the notification targets about drift.
fn actuator_factory(
    shared: &Shared,
    store: &Arc<dyn Store>,
    leadership: &LeadershipTask,
    (status, notices): (watch::Sender<actuator::ActuatorStatus>, Notices),
) -> MakeActuator {
    let (store, rx, claim) = (
        store.clone(),
        leadership.rx.clone(),
        leadership.claim.clone(),
    );
    // The fence's margin: the lease must outlive a whole request.
    let request_timeout = shared.config.raw.talkdesk.request_timeout.get();
    let (metrics, audit) = (shared.account_metrics.clone(), shared.audit.clone());
    Box::new(move |parts: Reconfigure| {
        let fence = Fence::new(
            store.clone(),
            rx.clone(),
            claim.clone(),
            request_timeout,
            audit.clone(),
        );
        Actuator::new(
            parts.client,
            parts.opts,
            parts.profiles,
            metrics.clone(),
            audit.clone(),
        )
        .with_may_write(Arc::new(fence))
        .with_notices(notices.clone())
        .reporting_to(status.clone())
    })
}
