//! Delivery: one worker per target sends its queue in order (a PagerDuty
//! resolve never overtakes its trigger), retrying failures with exponential
//! backoff and jitter, at least the receiver's `Retry-After`, a bounded
//! number of times within a bounded age ([`Policy`]), then gives up. Every
//! outcome is logged, counted in `continuity_notifications_total{target,
//! result}` and audited (kind `notification`): `sent`, `retried` (an attempt
//! failed; another follows), `failed` (given up), `dropped` (never sent: the
//! queue was full, or the agent stopped first).
//!
//! Nothing here names a URL, a routing key or a secret: a target is its
//! `name`; errors (`http.rs`) are described without the request's URL and
//! with any secret of the target cut out of the receiver's answer.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::{NoticeKind, NotifyConfig, NotifyType, defaults};
use super::message::Message;
use super::notice::{Notice, StuckPhase, What};
use super::{pagerduty, slack, teams, webhook};
use crate::backoff::backoff_delay;
use crate::domain::Timestamp;
use crate::telemetry::{AuditKind, AuditRecord, AuditSink, Metrics};

/// Notifications waiting per target. Notices are rare (a few per incident);
/// this many waiting means the target has been failing for a while, and
/// newer notices are dropped (and counted) rather than held without bound.
pub const QUEUE: usize = 64;

/// A `[[notify]]` target as the workers use it.
#[derive(Debug)]
pub struct Target {
    pub name: String,
    pub kind: NotifyType,
    pub(super) url: SecretString,
    routing_key: Option<SecretString>,
    pub(super) hmac_secret: Option<SecretString>,
    pub events: Vec<NoticeKind>,
    pub stuck_after: Duration,
}

impl Target {
    /// From a validated `[[notify]]` entry.
    pub fn from_config(c: &NotifyConfig) -> Target {
        Target {
            name: c.name().to_string(),
            kind: c.kind,
            url: c
                .url
                .clone()
                .unwrap_or_else(|| SecretString::from(defaults::PAGERDUTY_URL)),
            routing_key: c.routing_key.clone(),
            hmac_secret: c.hmac_secret.clone(),
            events: c.events(),
            stuck_after: c.stuck_after(),
        }
    }

    /// Whether this target gets `notice`: its event is in `on`; a stuck
    /// actuation reaches the targets whose `stuck_after` it passed, and a
    /// settled one only PagerDuty (see `StuckPhase::Settled`).
    pub fn wants(&self, notice: &Notice) -> bool {
        if !self.events.contains(&notice.kind()) {
            return false;
        }
        match &notice.what {
            What::Stuck {
                phase: StuckPhase::Settled,
                ..
            } => self.kind == NotifyType::PagerDuty,
            What::Stuck { after, .. } => *after == self.stuck_after,
            _ => true,
        }
    }

    /// The request body for this target's type.
    pub fn body(&self, notice: &Notice, message: &Message) -> Vec<u8> {
        let value = match self.kind {
            NotifyType::Slack => slack::payload(message),
            NotifyType::Teams => teams::payload(message),
            NotifyType::PagerDuty => pagerduty::payload(
                message,
                self.routing_key
                    .as_ref()
                    .map(ExposeSecret::expose_secret)
                    .unwrap_or_default(),
            ),
            NotifyType::Webhook => webhook::payload(message, notice),
        };
        serde_json::to_vec(&value).unwrap_or_default()
    }

    /// `text` with every secret of this target cut out (a receiver may echo
    /// the request in its error answer).
    pub(super) fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for secret in [
            Some(&self.url),
            self.routing_key.as_ref(),
            self.hmac_secret.as_ref(),
        ]
        .into_iter()
        .flatten()
        {
            let s = secret.expose_secret();
            if !s.is_empty() {
                out = out.replace(s, "[REDACTED]");
            }
        }
        out
    }
}

/// One notification for one target.
pub struct Delivery {
    pub target: Arc<Target>,
    /// The message's id (the same for every target and every attempt).
    pub id: String,
    pub event: NoticeKind,
    /// The message's title, for logs and the audit log.
    pub title: String,
    pub body: Vec<u8>,
    pub queued: Instant,
}

/// Why an attempt failed, in words that hold no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendError {
    pub message: String,
    pub retryable: bool,
    pub retry_after: Option<Duration>,
}

/// Sends one attempt of a delivery. `Http` in the agent; tests script it.
pub trait Transport: Send + Sync + 'static {
    fn post<'a>(&'a self, d: &'a Delivery) -> BoxFuture<'a, Result<(), SendError>>;
}

/// How hard a worker tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// First retry delay; doubles per failed attempt up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Attempts per notification, the first included.
    pub max_attempts: u32,
    /// No retry starts later than this after the notice was queued: a page
    /// about something long over helps nobody, and the queue behind it waits.
    pub max_age: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            // 1+2+4+...+60: about five minutes of retrying.
            max_attempts: 10,
            max_age: Duration::from_secs(15 * 60),
        }
    }
}

impl Policy {
    /// After failed attempt number `attempt` (1-based) of a delivery queued
    /// `age` ago: the delay before the next one, or `None` to give up.
    pub fn retry_in(&self, attempt: u32, age: Duration, error: &SendError) -> Option<Duration> {
        if !error.retryable || attempt >= self.max_attempts {
            return None;
        }
        let delay = backoff_delay(
            self.backoff_min,
            self.backoff_max,
            attempt,
            error.retry_after,
        );
        (age + delay <= self.max_age).then_some(delay)
    }
}

/// How a delivery ended, or that an attempt is retried: the `result` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    Retried,
    Failed,
    Dropped,
}

impl Outcome {
    /// The label value; `telemetry::metrics::NOTIFICATION_RESULTS` lists them.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Retried => "retried",
            Outcome::Failed => "failed",
            Outcome::Dropped => "dropped",
        }
    }
}

/// Logs, counts and audits what happened to deliveries.
#[derive(Clone)]
pub struct Report {
    pub metrics: Metrics,
    pub audit: Arc<dyn AuditSink>,
}

impl Report {
    /// One outcome of `d` after `attempts` attempts.
    pub fn outcome(&self, d: &Delivery, outcome: Outcome, attempts: u32, why: Option<&str>) {
        let t = &d.target;
        self.metrics
            .notifications_total
            .with_label_values(&[&t.name, outcome.as_str()])
            .inc();
        let why = why.unwrap_or_default();
        let (event, title) = (d.event.as_str(), d.title.as_str());
        let message = match outcome {
            Outcome::Sent => {
                tracing::info!(message = "Notification sent.", target = %t.name, r#type = %t.kind, event, title, attempts);
                format!(
                    "{event} notification sent to {} ({}): {title}",
                    t.name, t.kind
                )
            }
            Outcome::Retried => {
                tracing::warn!(message = "Notification not delivered; retrying.", target = %t.name, r#type = %t.kind, event, attempt = attempts, error = why);
                return;
            }
            Outcome::Failed => {
                tracing::error!(message = "Notification not delivered; giving up.", target = %t.name, r#type = %t.kind, event, title, attempts, error = why);
                format!(
                    "{event} notification to {} ({}) not delivered after {attempts} attempt(s), given up: {why}",
                    t.name, t.kind
                )
            }
            Outcome::Dropped => {
                tracing::error!(message = "Notification dropped.", target = %t.name, r#type = %t.kind, event, title, reason = why);
                format!(
                    "{event} notification to {} ({}) dropped: {why}",
                    t.name, t.kind
                )
            }
        };
        self.audit.record(
            AuditRecord::new(Timestamp::now(), AuditKind::Notification, message).with_data(json!({
                "target": t.name,
                "type": t.kind,
                "event": event,
                "id": d.id,
                "result": outcome.as_str(),
                "attempts": attempts,
                "error": (!why.is_empty()).then_some(why),
            })),
        );
    }
}

/// Sends one target's queue, in order, until the queue closes (the target
/// was removed by a reload, or the agent stops). `cancel` abandons the
/// delivery in progress and drops what is still queued.
pub async fn worker(
    mut queue: mpsc::Receiver<Delivery>,
    transport: Arc<dyn Transport>,
    policy: Policy,
    report: Report,
    cancel: CancellationToken,
) {
    while let Some(d) = queue.recv().await {
        if cancel.is_cancelled() {
            report.outcome(
                &d,
                Outcome::Dropped,
                0,
                Some("the agent stopped before it was sent"),
            );
            continue;
        }
        deliver(&d, &*transport, &policy, &report, &cancel).await;
    }
}

async fn deliver(
    d: &Delivery,
    transport: &dyn Transport,
    policy: &Policy,
    report: &Report,
    cancel: &CancellationToken,
) {
    let stopped = "the agent stopped before it was delivered";
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = tokio::select! {
            r = transport.post(d) => r,
            _ = cancel.cancelled() => return report.outcome(d, Outcome::Dropped, attempt, Some(stopped)),
        };
        let error = match result {
            Ok(()) => return report.outcome(d, Outcome::Sent, attempt, None),
            Err(e) => e,
        };
        let Some(delay) = policy.retry_in(attempt, d.queued.elapsed(), &error) else {
            let why = if error.retryable {
                format!("{} (retries exhausted)", error.message)
            } else {
                format!("{} (not retried)", error.message)
            };
            return report.outcome(d, Outcome::Failed, attempt, Some(&why));
        };
        report.outcome(d, Outcome::Retried, attempt, Some(&error.message));
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return report.outcome(d, Outcome::Dropped, attempt, Some(stopped)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::notify::message::tests::{activation, context};
    use crate::telemetry::audit::MemoryAudit;

    fn target(kind: NotifyType, on: Option<Vec<NoticeKind>>) -> Target {
        let c: NotifyConfig = serde_json::from_value(json!({
            "type": kind, "name": "t", "url": "http://127.0.0.1:9/hook", "on": on, "stuck_after": "2m",
        }))
        .unwrap();
        Target::from_config(&c)
    }

    fn error(retryable: bool) -> SendError {
        SendError {
            message: "HTTP 500".into(),
            retryable,
            retry_after: None,
        }
    }

    #[test]
    fn targets_get_the_events_of_their_on_list_and_their_stuck_threshold() {
        let stuck = |phase, after| Notice {
            at: Timestamp::from_millis(0),
            desired: crate::domain::Desired::Inactive,
            what: What::Stuck {
                phase,
                after,
                since: None,
                attempts: 0,
                last_error: None,
                blocked: false,
                talkdesk_enabled: None,
            },
        };
        let two = Duration::from_secs(120);
        let only_activate = target(NotifyType::Slack, Some(vec![NoticeKind::Activate]));
        assert!(only_activate.wants(&activation()));
        assert!(!only_activate.wants(&stuck(StuckPhase::Started, two)));
        let slack = target(NotifyType::Slack, None);
        assert!(slack.wants(&stuck(StuckPhase::Started, two)));
        assert!(slack.wants(&stuck(StuckPhase::Ended, two)));
        assert!(!slack.wants(&stuck(StuckPhase::Started, Duration::from_secs(60))));
        assert!(!slack.wants(&stuck(StuckPhase::Settled, Duration::ZERO)));
        let pd = target(NotifyType::PagerDuty, None);
        assert!(pd.wants(&stuck(StuckPhase::Settled, Duration::ZERO)));
    }

    #[test]
    fn retries_are_bounded_by_attempts_and_age_and_never_for_a_permanent_error() {
        let p = Policy::default();
        assert_eq!(p.retry_in(1, Duration::ZERO, &error(false)), None);
        let first = p.retry_in(1, Duration::ZERO, &error(true)).unwrap();
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
        assert!(p.retry_in(9, Duration::ZERO, &error(true)).is_some());
        assert_eq!(
            p.retry_in(10, Duration::ZERO, &error(true)),
            None,
            "10 attempts"
        );
        assert_eq!(
            p.retry_in(2, Duration::from_secs(15 * 60), &error(true)),
            None,
            "too old"
        );
        let mut slow = error(true);
        slow.retry_after = Some(Duration::from_secs(45));
        assert_eq!(
            p.retry_in(1, Duration::ZERO, &slow),
            Some(Duration::from_secs(45))
        );
        // A longer Retry-After is capped like the actuator's.
        slow.retry_after = Some(Duration::from_secs(3600));
        assert_eq!(
            p.retry_in(1, Duration::ZERO, &slow),
            Some(crate::backoff::RETRY_AFTER_CAP)
        );
    }

    #[test]
    fn errors_never_carry_the_targets_secrets() {
        let c: NotifyConfig = serde_json::from_value(json!({
            "type": "pagerduty", "name": "pd", "routing_key": "R0UT1NGKEY",
        }))
        .unwrap();
        let t = Target::from_config(&c);
        assert_eq!(
            t.redact("invalid routing_key R0UT1NGKEY at https://events.pagerduty.com/v2/enqueue"),
            "invalid routing_key [REDACTED] at [REDACTED]"
        );
    }

    /// Answers each attempt from a script and records when it came.
    struct Scripted {
        answers: Mutex<Vec<Result<(), SendError>>>,
        seen: Mutex<Vec<Instant>>,
    }

    impl Transport for Scripted {
        fn post<'a>(&'a self, _d: &'a Delivery) -> BoxFuture<'a, Result<(), SendError>> {
            self.seen.lock().unwrap().push(Instant::now());
            let next = self.answers.lock().unwrap().remove(0);
            Box::pin(async move { next })
        }
    }

    async fn run(answers: Vec<Result<(), SendError>>) -> (Vec<Duration>, Metrics, MemoryAudit) {
        let transport = Arc::new(Scripted {
            answers: Mutex::new(answers),
            seen: Mutex::default(),
        });
        let (metrics, audit) = (Metrics::new(), MemoryAudit::default());
        let report = Report {
            metrics: metrics.clone(),
            audit: Arc::new(audit.clone()),
        };
        let (tx, rx) = mpsc::channel(4);
        let start = Instant::now();
        let m = Message::new(&activation(), &context(), "id".into());
        tx.send(Delivery {
            target: Arc::new(target(NotifyType::Slack, None)),
            id: m.id.clone(),
            event: m.event,
            title: m.title.clone(),
            body: b"{}".to_vec(),
            queued: start,
        })
        .await
        .unwrap();
        drop(tx);
        worker(
            rx,
            transport.clone(),
            Policy::default(),
            report,
            CancellationToken::new(),
        )
        .await;
        let seen = transport.seen.lock().unwrap().clone();
        (seen.iter().map(|t| *t - start).collect(), metrics, audit)
    }

    #[test]
    fn outcomes_are_the_documented_result_labels() {
        let all = [
            Outcome::Sent,
            Outcome::Retried,
            Outcome::Failed,
            Outcome::Dropped,
        ];
        assert_eq!(
            all.map(Outcome::as_str),
            crate::telemetry::metrics::NOTIFICATION_RESULTS
        );
    }

    fn count(m: &Metrics, result: &str) -> u64 {
        m.notifications_total
            .with_label_values(&["t", result])
            .get()
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_retried_after_a_growing_jittered_backoff_then_sent() {
        let (at, metrics, audit) = run(vec![Err(error(true)), Err(error(true)), Ok(())]).await;
        assert_eq!(at.len(), 3);
        assert_eq!(at[0], Duration::ZERO);
        let (first, second) = (at[1] - at[0], at[2] - at[1]);
        assert!(
            first >= Duration::from_millis(500) && first <= Duration::from_secs(1),
            "{first:?}"
        );
        assert!(
            second >= Duration::from_secs(1) && second <= Duration::from_secs(2),
            "{second:?}"
        );
        assert_eq!(
            (count(&metrics, "retried"), count(&metrics, "sent")),
            (2, 1)
        );
        let records = audit.records();
        assert_eq!(records.len(), 1, "one record per delivery, not per retry");
        assert_eq!(records[0].kind, AuditKind::Notification);
        assert_eq!(
            records[0].message,
            "activate notification sent to t (slack): Fallback ON: backup"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_error_is_not_retried_and_retries_end() {
        let (at, metrics, audit) = run(vec![Err(error(false))]).await;
        assert_eq!(at.len(), 1);
        assert_eq!(count(&metrics, "failed"), 1);
        assert!(
            audit.records()[0]
                .message
                .contains("after 1 attempt(s), given up: HTTP 500 (not retried)")
        );
        let (at, metrics, _) = run((0..10).map(|_| Err(error(true))).collect()).await;
        assert_eq!(at.len(), 10, "max_attempts");
        assert_eq!(
            (count(&metrics, "retried"), count(&metrics, "failed")),
            (9, 1)
        );
    }
}
