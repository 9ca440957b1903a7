//! Shared set-up for the Talkdesk integration tests: a simulator on
//! 127.0.0.1:0, a client pointed at it, and an actuator running on a task.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use continuity_agent::config::DEFAULT_ACCOUNT;
use continuity_agent::config::schema::OnDrift;
use continuity_agent::domain::{Desired, FallbackSettings, Message, Profile};
use continuity_agent::engine::event::Event;
use continuity_agent::talkdesk::simulator::{
    self, JournalEntry, SimServer, Simulator, SimulatorOptions,
};
use continuity_agent::talkdesk::{
    Actuator, ActuatorHandle, ActuatorOptions, ActuatorStatus, Client, ClientConfig,
};
use continuity_agent::telemetry::audit::MemoryAudit;
use continuity_agent::telemetry::{AccountMetrics, Metrics};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "s3cr3t-client-secret-do-not-log";

pub fn sim_options() -> SimulatorOptions {
    SimulatorOptions {
        client_secret: SECRET.to_string().into(),
        ..SimulatorOptions::default()
    }
}

pub async fn start_sim(opts: SimulatorOptions) -> SimServer {
    simulator::spawn(Simulator::new(opts), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind simulator")
}

pub fn client_config(server: &SimServer) -> ClientConfig {
    let mut c = ClientConfig::for_simulator(&server.base_url(), "demo", SECRET);
    c.request_timeout = Duration::from_secs(2);
    c
}

pub struct Env {
    pub server: SimServer,
    pub client: Client,
    /// The registry, for the exposition (`render`).
    pub registry: Metrics,
    /// The one account's series the client and actuators write.
    pub metrics: AccountMetrics,
    pub audit: MemoryAudit,
}

impl Env {
    pub async fn new() -> Env {
        Env::with(sim_options(), |_| {}).await
    }

    pub async fn with(opts: SimulatorOptions, tweak: impl FnOnce(&mut ClientConfig)) -> Env {
        let server = start_sim(opts).await;
        let mut cfg = client_config(&server);
        tweak(&mut cfg);
        let registry = Metrics::new();
        let metrics = registry.account(DEFAULT_ACCOUNT);
        let audit = MemoryAudit::default();
        let client = Client::new(cfg, metrics.clone(), Arc::new(audit.clone())).expect("client");
        Env {
            server,
            client,
            registry,
            metrics,
            audit,
        }
    }

    pub fn sim(&self) -> &Simulator {
        &self.server.sim
    }

    /// Journal entries without the token requests, as `op status` strings.
    pub fn calls(&self) -> Vec<String> {
        self.sim()
            .journal()
            .iter()
            .filter(|e| e.op != "token")
            .map(|e| format!("{} {}", e.op, e.status))
            .collect()
    }

    pub fn writes(&self) -> Vec<JournalEntry> {
        self.sim()
            .journal()
            .into_iter()
            .filter(|e| e.method == "PUT")
            .collect()
    }

    pub fn count(&self, op: &str) -> usize {
        self.sim().journal().iter().filter(|e| e.op == op).count()
    }

    pub fn requests(&self, op: &str, status: &str) -> u64 {
        self.metrics
            .talkdesk_requests_total
            .with_label_values(&[op, status])
            .get()
    }
}

pub fn backup() -> FallbackSettings {
    FallbackSettings {
        forward: BTreeMap::from([("+14155550100".to_string(), "+14155559999".to_string())]),
        default: Some("+14155558888".to_string()),
        message: Some(Message {
            text: "We are experiencing technical difficulties.".to_string(),
            language: "en-US".to_string(),
        }),
    }
}

pub fn other() -> FallbackSettings {
    FallbackSettings {
        forward: BTreeMap::new(),
        default: Some("+442071234567".to_string()),
        message: None,
    }
}

pub fn profiles() -> BTreeMap<String, Profile> {
    [("backup", backup()), ("other", other())]
        .into_iter()
        .map(|(n, s)| {
            (
                n.to_string(),
                Profile {
                    name: n.to_string(),
                    settings: s,
                },
            )
        })
        .collect()
}

pub fn active(p: &str) -> Desired {
    Desired::Active {
        profile: p.to_string(),
    }
}

/// The reconcile interval of [`fast_options`].
pub const RECONCILE: Duration = Duration::from_millis(200);

/// Long enough for three reconciles (and their backoff): a check that
/// nothing was written must wait at least this long, or it would pass before
/// the actuator even looked again.
pub async fn several_reconciles() {
    tokio::time::sleep(RECONCILE * 3 + Duration::from_millis(100)).await;
}

/// Fast options for tests: small backoff, quick reconcile.
pub fn fast_options() -> ActuatorOptions {
    ActuatorOptions {
        dry_run: false,
        on_drift: OnDrift::Correct,
        reconcile_interval: RECONCILE,
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
        // Long enough that tests of a rejection see exactly one attempt.
        rejected_retry: Duration::from_secs(300),
        adopt_ttl: Duration::from_secs(600),
    }
}

pub struct Running {
    pub desired: watch::Sender<Desired>,
    pub handle: ActuatorHandle,
    pub events: Arc<Mutex<Vec<Event>>>,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<()>,
}

impl Running {
    pub fn set(&self, d: Desired) {
        self.desired.send_replace(d);
    }

    /// Wait (up to 5 s) until the status satisfies `pred`.
    pub async fn wait(&self, what: &str, pred: impl Fn(&ActuatorStatus) -> bool) -> ActuatorStatus {
        let mut rx = self.handle.subscribe();
        match tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|s| pred(s))).await {
            Ok(Ok(s)) => s.clone(),
            _ => panic!(
                "timed out waiting for {what}; status: {:#?}",
                self.handle.status()
            ),
        }
    }

    /// Wait until converged to `d`.
    pub async fn converged(&self, d: &Desired) -> ActuatorStatus {
        let want = d.clone();
        self.wait(&format!("converged to {d}"), move |s| {
            s.converged && s.desired.as_ref() == Some(&want)
        })
        .await
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("actuator stops within 5s")
            .expect("actuator task did not panic");
    }
}

pub fn spawn_actuator(env: &Env, opts: ActuatorOptions, initial: Desired) -> Running {
    spawn_with(
        Actuator::new(
            env.client.clone(),
            opts,
            profiles(),
            env.metrics.clone(),
            Arc::new(env.audit.clone()),
        ),
        initial,
    )
}

pub fn spawn_with(actuator: Actuator, initial: Desired) -> Running {
    let (desired, desired_rx) = watch::channel(initial);
    let (events_tx, mut events_rx) = mpsc::channel(64);
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    tokio::spawn(async move {
        while let Some(e) = events_rx.recv().await {
            sink.lock().unwrap().push(e);
        }
    });
    let handle = actuator.handle();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(actuator.run(desired_rx, events_tx, shutdown.clone()));
    Running {
        desired,
        handle,
        events,
        shutdown,
        task,
    }
}
