//! Notifications: Slack, Microsoft Teams, PagerDuty and generic webhooks
//! hear about every decision change, stuck actuation, flap latch, blind
//! guard and change made outside the agent.
//!
//! - [`notice`]: the typed [`Notice`], made where each fact is known: the
//!   daemon's loop (decisions, the flap latch, the blind guard, and stuck
//!   actuation through [`stuck::StuckWatch`]) and the actuator (drift). Only
//!   the leader notifies: a follower's engine decides nothing, and only the
//!   leader runs an actuator.
//! - [`message`]: a notice in words, the same for every target: what
//!   changed, why (the engine's reasons), what callers now get
//!   (`ProfileConfig::callers_get`), when, which instance, the status page
//!   (`agent.public_url`), and whether it is a dry run.
//! - One file per target type lays the message out: [`slack`], [`teams`],
//!   [`pagerduty`], [`webhook`]; [`config`] is `[[notify]]`.
//! - [`deliver`]: one queue and one worker per target, retries with backoff,
//!   metrics, audit; [`http`] the transport.
//!
//! [`Notices::send`] never waits: it renders the message for each target
//! that wants it and puts it on that target's queue (`try_send`); a full
//! queue drops it, counted and audited. A dead Slack never delays Talkdesk.

pub mod config;
pub mod deliver;
pub mod http;
pub mod message;
pub mod notice;
pub mod pagerduty;
pub mod slack;
pub mod stuck;
pub mod teams;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::telemetry::{AuditSink, Metrics};

pub use config::{NoticeKind, NotifyConfig, NotifyType};
use deliver::{Delivery, Outcome, Policy, QUEUE, Report, Target, Transport};
use http::Http;
pub use message::{Context, Message};
pub use notice::{DriftAction, Notice, StuckPhase, What};

/// The notification targets of the running agent. Cheap to clone; every
/// clone sends through the same queues.
#[derive(Clone)]
pub struct Notices {
    inner: Arc<Inner>,
}

struct Inner {
    routes: RwLock<Routes>,
    transport: Arc<dyn Transport>,
    policy: Policy,
    report: Report,
    /// Abandons deliveries at the end of a shutdown.
    cancel: CancellationToken,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// The configuration's targets and what messages need from it.
#[derive(Default)]
struct Routes {
    cx: Context,
    targets: Vec<Route>,
}

struct Route {
    target: Arc<Target>,
    queue: mpsc::Sender<Delivery>,
}

impl Notices {
    /// Starts a worker for each `[[notify]]` target of `config`.
    pub fn start(
        config: &Config,
        metrics: Metrics,
        audit: Arc<dyn AuditSink>,
    ) -> Result<Notices, crate::tls::TlsError> {
        let transport = Arc::new(Http::new()?);
        Ok(Notices::with(
            config,
            transport,
            Policy::default(),
            Report { metrics, audit },
        ))
    }

    /// With another transport and policy (tests).
    pub fn with(
        config: &Config,
        transport: Arc<dyn Transport>,
        policy: Policy,
        report: Report,
    ) -> Notices {
        let notices = Notices {
            inner: Arc::new(Inner {
                routes: RwLock::default(),
                transport,
                policy,
                report,
                cancel: CancellationToken::new(),
                workers: Mutex::default(),
            }),
        };
        notices.reconfigure(config);
        notices
    }

    /// Queues `notice` for every target that wants it. Never waits.
    pub fn send(&self, notice: Notice) {
        let routes = self.inner.routes.read().unwrap_or_else(|e| e.into_inner());
        let wanted: Vec<&Route> = routes
            .targets
            .iter()
            .filter(|r| r.target.wants(&notice))
            .collect();
        if wanted.is_empty() {
            return;
        }
        let message = Message::new(
            &notice,
            &routes.cx,
            format!("{:032x}", rand::random::<u128>()),
        );
        for route in wanted {
            let delivery = Delivery {
                target: route.target.clone(),
                id: message.id.clone(),
                event: message.event,
                title: message.title.clone(),
                body: route.target.body(&notice, &message),
                queued: Instant::now(),
            };
            match route.queue.try_send(delivery) {
                Ok(()) => {}
                Err(TrySendError::Full(d)) => self.inner.report.outcome(
                    &d,
                    Outcome::Dropped,
                    0,
                    Some(&format!(
                        "{QUEUE} notifications already wait for this target (it is slow or failing)"
                    )),
                ),
                Err(TrySendError::Closed(d)) => self.inner.report.outcome(
                    &d,
                    Outcome::Dropped,
                    0,
                    Some("the agent is stopping"),
                ),
            }
        }
    }

    /// A configuration reload: the new targets and context. A target whose
    /// name and type stay keeps its queue and worker, so what it already
    /// queued is sent first and in order; a removed target's worker sends
    /// what it has queued, then ends.
    pub fn reconfigure(&self, config: &Config) {
        let mut routes = self.inner.routes.write().unwrap_or_else(|e| e.into_inner());
        routes.cx = Context::from_config(config);
        let mut old: BTreeMap<String, Route> = std::mem::take(&mut routes.targets)
            .into_iter()
            .map(|r| (r.target.name.clone(), r))
            .collect();
        for c in &config.raw.notify {
            let target = Arc::new(Target::from_config(c));
            let queue = match old.remove(&target.name) {
                Some(r) if r.target.kind == target.kind => r.queue,
                _ => self.spawn_worker(),
            };
            routes.targets.push(Route { target, queue });
        }
    }

    fn spawn_worker(&self) -> mpsc::Sender<Delivery> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let inner = &self.inner;
        let task = tokio::spawn(deliver::worker(
            rx,
            inner.transport.clone(),
            inner.policy,
            inner.report.clone(),
            inner.cancel.clone(),
        ));
        let mut workers = inner.workers.lock().unwrap_or_else(|e| e.into_inner());
        workers.retain(|w| !w.is_finished());
        workers.push(task);
        tx
    }

    /// The distinct `stuck_after` of the targets that get `stuck`.
    pub fn stuck_thresholds(&self) -> Vec<Duration> {
        let routes = self.inner.routes.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<Duration> = routes
            .targets
            .iter()
            .filter(|r| r.target.events.contains(&NoticeKind::Stuck))
            .map(|r| r.target.stuck_after)
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// Shutdown: no new notices; what is queued is sent for up to `grace`
    /// (so the last decision still goes out), then what remains is dropped,
    /// counted and audited. Takes this handle: the targets' audit sink goes
    /// with the last one.
    pub async fn stop(self, grace: Duration) {
        self.inner
            .routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .targets
            .clear();
        let workers =
            std::mem::take(&mut *self.inner.workers.lock().unwrap_or_else(|e| e.into_inner()));
        let mut all = futures::future::join_all(workers);
        if tokio::time::timeout(grace, &mut all).await.is_err() {
            self.inner.cancel.cancel();
            all.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::message::tests::activation;
    use crate::telemetry::audit::MemoryAudit;

    /// Never answers.
    struct Hung;

    impl Transport for Hung {
        fn post<'a>(
            &'a self,
            _d: &'a Delivery,
        ) -> futures::future::BoxFuture<'a, Result<(), deliver::SendError>> {
            Box::pin(std::future::pending())
        }
    }

    fn config(targets: &str) -> Config {
        let src = format!(
            r#"
[talkdesk]
account = "acme"
client_id = "id"
client_secret = "secret"
[profiles.backup]
default = "+14155558888"
{targets}
"#
        );
        crate::config::from_toml_str(&src, "t.toml").unwrap()
    }

    const HOOK: &str =
        "[[notify]]\ntype = \"webhook\"\nname = \"hook\"\nurl = \"http://127.0.0.1:9/h\"\n";

    fn count(m: &Metrics, target: &str, result: &str) -> u64 {
        m.notifications_total
            .with_label_values(&[target, result])
            .get()
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_and_counts_and_a_stop_drops_what_is_left() {
        let (metrics, audit) = (Metrics::new(), MemoryAudit::default());
        let report = Report {
            metrics: metrics.clone(),
            audit: Arc::new(audit.clone()),
        };
        let notices = Notices::with(&config(HOOK), Arc::new(Hung), Policy::default(), report);
        // One in flight (hung), QUEUE waiting, then no room.
        for _ in 0..QUEUE + 3 {
            notices.send(activation());
            tokio::task::yield_now().await;
        }
        assert_eq!(count(&metrics, "hook", "dropped"), 2);
        assert!(
            audit.records()[0]
                .message
                .contains("dropped: 64 notifications already wait")
        );
        notices.stop(Duration::from_secs(5)).await;
        assert_eq!(count(&metrics, "hook", "sent"), 0);
        assert_eq!(
            count(&metrics, "hook", "dropped"),
            (QUEUE + 3) as u64,
            "the hung one and every queued one, at the end of the grace"
        );
    }

    #[tokio::test]
    async fn a_reload_keeps_a_targets_queue_and_knows_the_new_thresholds() {
        let report = Report {
            metrics: Metrics::new(),
            audit: Arc::new(MemoryAudit::default()),
        };
        let notices = Notices::with(&config(HOOK), Arc::new(Hung), Policy::default(), report);
        let queue = |n: &Notices| n.inner.routes.read().unwrap().targets[0].queue.clone();
        let before = queue(&notices);
        assert_eq!(notices.stuck_thresholds(), [Duration::from_secs(120)]);
        notices.reconfigure(&config(&format!("{HOOK}stuck_after = \"30s\"\n")));
        assert!(
            before.same_channel(&queue(&notices)),
            "same name and type: same queue"
        );
        assert_eq!(notices.stuck_thresholds(), [Duration::from_secs(30)]);
        notices.reconfigure(&config(""));
        assert!(notices.stuck_thresholds().is_empty());
    }
}
