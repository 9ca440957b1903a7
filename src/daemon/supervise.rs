//! The actuator runs supervised, and only while this replica leads.
//!
//! Each leadership term gets a new actuator (from `make`), built from the
//! current Talkdesk client, options and profiles (a configuration reload
//! replaces them, see [`Supervisor::reconfigure`]) and given what Talkdesk
//! had when the engine last saw it, so it applies `on_drift` to a change
//! made while no actuator of this replica was running. It starts with no
//! belief about Talkdesk, so it reads Talkdesk's actual state before acting.
//! Losing the lease stops it (it finishes nothing new: the call in flight
//! completes, the fence refuses any further write). If an actuator ends while
//! it was meant to run (a panic or an early return), the loop hears of it and
//! the agent exits 1, because it must not keep deciding while nothing
//! applies the decisions.

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::domain::Desired;
use crate::engine::Event;
use crate::talkdesk::actuator::{Actuator, Reconfigure};
use crate::talkdesk::drift::LastSeen;

/// Builds the actuator of a new term from the current client, options and
/// profiles (the fence and the status channel are the factory's).
pub(super) type MakeActuator = Box<dyn FnMut(Reconfigure) -> Actuator + Send>;

/// Starts and stops actuators as leadership comes and goes.
pub(super) struct Supervisor {
    make: MakeActuator,
    /// What the next term's actuator is built from: the configuration
    /// as last loaded (at start or by a reload).
    talkdesk: Reconfigure,
    /// What Talkdesk had when the engine last saw it, and what the agent had
    /// decided by then, for the next term.
    last_seen: Option<LastSeen>,
    desired: watch::Receiver<Desired>,
    /// This replica leads: an actuator should run (once the start gate opens).
    wanted: bool,
    running: Option<Running>,
    /// Actuators of past terms still finishing their call in flight.
    stopping: Vec<JoinHandle<()>>,
    /// Feedback to the loop (`ActualObserved`).
    events: mpsc::Sender<Event>,
    cancel: CancellationToken,
    dead_tx: mpsc::Sender<String>,
    dead_rx: mpsc::Receiver<String>,
}

impl Supervisor {
    pub(super) fn new(
        make: MakeActuator,
        talkdesk: Reconfigure,
        desired: watch::Receiver<Desired>,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) -> Supervisor {
        let (dead_tx, dead_rx) = mpsc::channel(1);
        Supervisor {
            make,
            talkdesk,
            last_seen: None,
            desired,
            wanted: false,
            running: None,
            stopping: Vec::new(),
            events,
            cancel,
            dead_tx,
            dead_rx,
        }
    }

    /// Whether an actuator should run but waits for the start gate.
    pub(super) fn is_pending(&self) -> bool {
        self.wanted && self.running.is_none()
    }

    /// An actuator of this term runs.
    pub(super) fn is_running(&self) -> bool {
        self.running.is_some()
    }

    /// This replica leads: an actuator may start (see [`Supervisor::start`]).
    /// `last_seen`: what Talkdesk had when the engine last saw it, and what
    /// the agent had decided by then.
    pub(super) fn lead(&mut self, last_seen: Option<LastSeen>) {
        self.wanted = true;
        self.last_seen = last_seen;
    }

    /// A configuration reload: the running actuator (if any) gets the new
    /// client, options and profiles, and so does every later term's.
    pub(super) async fn reconfigure(&mut self, new: Reconfigure) {
        if let Some(running) = &self.running {
            let _ = running.reconfigure.send(new.clone()).await;
        }
        self.talkdesk = new;
    }

    /// Starts an actuator for this term (once; later calls do nothing).
    pub(super) fn start(&mut self) {
        if !self.is_pending() {
            return;
        }
        let token = self.cancel.child_token();
        let (reconfigure, reconfigure_rx) = mpsc::channel(1);
        let actuator = (self.make)(self.talkdesk.clone())
            .with_reconfigure(reconfigure_rx)
            .with_last_seen(self.last_seen.take());
        let task = spawn_supervised(
            actuator,
            self.desired.clone(),
            self.events.clone(),
            token.clone(),
            self.dead_tx.clone(),
        );
        self.running = Some(Running {
            task,
            token,
            reconfigure,
        });
    }

    /// The lease is lost: stop the actuator without waiting for it (its call
    /// in flight completes on its own; no write starts after this).
    pub(super) fn follow(&mut self) {
        self.wanted = false;
        if let Some(running) = self.running.take() {
            running.token.cancel();
            self.stopping.push(running.task);
        }
        self.stopping.retain(|t| !t.is_finished());
    }

    /// Resolves with the reason if an actuator ended on its own; pends
    /// forever otherwise.
    pub(super) async fn died(&mut self) -> Option<String> {
        self.dead_rx.recv().await
    }

    /// Shutdown (after cancelling): actuators finish their Talkdesk call in
    /// flight, then return.
    pub(super) async fn finish(mut self) {
        self.follow();
        drop(self.make);
        for task in self.stopping {
            let _ = task.await;
        }
    }
}

/// The actuator of the current term.
struct Running {
    task: JoinHandle<()>,
    token: CancellationToken,
    /// Hands it a reloaded configuration.
    reconfigure: mpsc::Sender<Reconfigure>,
}

/// Runs the actuator and reports on `dead` if it ends while it was not told to.
fn spawn_supervised(
    actuator: Actuator,
    desired: watch::Receiver<Desired>,
    events: mpsc::Sender<Event>,
    token: CancellationToken,
    dead: mpsc::Sender<String>,
) -> JoinHandle<()> {
    let watch_token = token.clone();
    // The actuator logs under the account's span, like its loop.
    let span = tracing::Span::current();
    tokio::spawn(async move {
        let run = tracing::Instrument::instrument(actuator.run(desired, events, token), span);
        let result = tokio::spawn(run).await;
        if !watch_token.is_cancelled() {
            let why = match result {
                Ok(()) => "the actuator returned".to_string(),
                Err(e) if e.is_panic() => "the actuator panicked".to_string(),
                Err(e) => format!("the actuator task failed: {e}"),
            };
            let _ = dead.send(why).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use crate::config::DEFAULT_ACCOUNT;
    use crate::talkdesk::actuator::ActuatorOptions;
    use crate::talkdesk::client::Client;
    use crate::telemetry::Metrics;
    use crate::telemetry::audit::NoAudit;

    /// The Talkdesk parts of a configuration with one profile, `profile`.
    fn parts(profile: &str) -> Reconfigure {
        let src = format!(
            r#"
[agent]
dry_run = true
[talkdesk]
account = "acme"
api_base = "http://127.0.0.1:9"
token_url = "http://127.0.0.1:9/oauth/token"
client_id = "id"
client_secret = "secret"
[profiles.{profile}]
default = "+14155558888"
"#
        );
        let config: Config = crate::config::from_toml_str(&src, "test").unwrap();
        let td = &config.raw.talkdesk;
        Reconfigure {
            client: Client::from_config(
                td,
                "replica-a",
                Metrics::new().account(DEFAULT_ACCOUNT),
                Arc::new(NoAudit),
            )
            .unwrap(),
            opts: ActuatorOptions::from_config(td, true),
            profiles: config.profiles.clone(),
        }
    }

    #[tokio::test]
    async fn a_term_started_after_a_reload_is_built_from_the_reloaded_configuration() {
        let built: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
        let seen = built.clone();
        let make: MakeActuator = Box::new(move |parts: Reconfigure| {
            seen.lock()
                .unwrap()
                .push(parts.profiles.keys().cloned().collect());
            Actuator::new(
                parts.client,
                parts.opts,
                parts.profiles,
                Metrics::new().account(DEFAULT_ACCOUNT),
                Arc::new(NoAudit),
            )
        });
        let (_desired_tx, desired_rx) = watch::channel(Desired::Inactive);
        let (events_tx, _events_rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let mut sup = Supervisor::new(make, parts("first"), desired_rx, events_tx, cancel.clone());

        sup.lead(None);
        sup.start();
        // A reload during the term; the lease is lost and taken again.
        sup.reconfigure(parts("reloaded")).await;
        sup.follow();
        sup.lead(None);
        sup.start();

        assert_eq!(
            *built.lock().unwrap(),
            vec![vec!["first".to_string()], vec!["reloaded".to_string()]]
        );
        cancel.cancel();
        sup.finish().await;
    }

    fn actuator(parts: Reconfigure) -> Actuator {
        Actuator::new(
            parts.client,
            parts.opts,
            parts.profiles,
            Metrics::new().account(DEFAULT_ACCOUNT),
            Arc::new(NoAudit),
        )
    }

    /// Issue 15 (missing tests): an actuator that ends while its term runs
    /// is reported to the loop (which then exits the agent with 1); one
    /// stopped because the lease was lost is not.
    #[tokio::test]
    async fn an_actuator_that_ends_on_its_own_is_reported_and_a_stopped_one_is_not() {
        let (desired_tx, desired_rx) = watch::channel(Desired::Inactive);
        let (events_tx, _events_rx) = mpsc::channel(16);
        let cancel = CancellationToken::new();
        let mut sup = Supervisor::new(
            Box::new(actuator),
            parts("backup"),
            desired_rx,
            events_tx,
            cancel.clone(),
        );

        // Lost lease: stopped on purpose, nothing to report.
        sup.lead(None);
        sup.start();
        assert!(sup.is_running());
        sup.follow();
        let quiet = tokio::time::timeout(Duration::from_millis(500), sup.died()).await;
        assert!(quiet.is_err(), "a stopped actuator was reported: {quiet:?}");

        // Its desired-state channel closes under it: it returns on its own.
        sup.lead(None);
        sup.start();
        drop(desired_tx);
        let why = tokio::time::timeout(Duration::from_secs(10), sup.died())
            .await
            .expect("the ended actuator is reported");
        assert_eq!(why.as_deref(), Some("the actuator returned"));
        cancel.cancel();
        sup.finish().await;
    }
}
