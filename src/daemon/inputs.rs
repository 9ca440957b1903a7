//! The inputs that run on their own and only send events: probes (with the
//! cadence the engines ask for), the self-check canaries (both shared by
//! every account), and each account's calendar.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::DaemonError;
use crate::calendar::Calendar;
use crate::config::Config;
use crate::engine::Event;
use crate::probe::{
    self,
    scheduler::SchedulerHandle,
    selfcheck::{self, SelfCheck},
};
use crate::telemetry::Metrics;

/// Probe-triggered self-checks run at most this often (a storm of failing
/// probes must not turn the canaries into a flood).
const SELF_CHECK_DEBOUNCE: Duration = Duration::from_secs(5);

pub(super) struct Inputs {
    pub probes: SharedProbes,
    /// Stops the probes and the self-check (a reload replaces them).
    pub stop: CancellationToken,
}

/// Starts every probe on its own timer and the self-check (if canaries are
/// configured), all sending on `events`: the inputs every account shares.
/// Each account's calendar is its own (`start_calendar`).
pub(super) async fn spawn_inputs(
    config: &Config,
    events: &mpsc::Sender<Event>,
    metrics: &Metrics,
    cancel: &CancellationToken,
) -> Result<Inputs, DaemonError> {
    let stop = cancel.child_token();
    let cancel = &stop;
    // The error names the probe itself.
    let calls = probe::scheduler::CallSlots::new(config.raw.engine.max_concurrent_calls as usize);
    let scheduled = config
        .probe_settings
        .iter()
        .map(|p| {
            probe::build_scheduled(p, metrics, &calls)
                .map_err(|e| DaemonError::Probe(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let scheduler = probe::scheduler::spawn(
        scheduled,
        events.clone(),
        metrics.clone(),
        cancel.child_token(),
    );
    let self_check_now = Arc::new(Notify::new());
    if !config.raw.engine.self_check.is_empty() {
        let check = SelfCheck::new(&config.raw.engine.self_check).map_err(DaemonError::Probe)?;
        selfcheck::spawn_with_trigger(
            check,
            config.raw.engine.self_check_interval.get(),
            events.clone(),
            cancel.child_token(),
            self_check_now.clone(),
        );
    }
    Ok(Inputs {
        probes: SharedProbes(Arc::new(Mutex::new(ProbesInner {
            scheduler,
            self_check_now,
            last_self_check_trigger: None,
            fast: HashMap::new(),
        }))),
        stop,
    })
}

/// One account's maintenance windows and drills, sending on its own events
/// channel. An account without any runs no scheduler.
pub(super) async fn start_calendar(
    view: &Config,
    events: &mpsc::Sender<Event>,
) -> Result<Option<Calendar>, DaemonError> {
    if view.raw.maintenance.is_empty() && view.raw.drills.is_empty() {
        return Ok(None);
    }
    let calendar = Calendar::start(&view.raw.maintenance, &view.raw.drills, events.clone()).await?;
    Ok(Some(calendar))
}

/// The running probes, shared by every account's loop. Dropping the last
/// handle stops them.
#[derive(Clone)]
pub(super) struct SharedProbes(Arc<Mutex<ProbesInner>>);

struct ProbesInner {
    scheduler: SchedulerHandle,
    /// Wakes the self-check when a probe starts failing (debounced).
    self_check_now: Arc<Notify>,
    last_self_check_trigger: Option<Instant>,
    /// Which accounts' engines want each probe fast: it runs fast while any
    /// does (each engine applies its own hysteresis to the same results).
    fast: HashMap<String, BTreeSet<usize>>,
}

impl SharedProbes {
    /// The handle of account number `voter` (its index in the configuration).
    pub(super) fn for_account(&self, voter: usize) -> Probes {
        Probes {
            shared: self.clone(),
            voter,
        }
    }
}

/// One account loop's handle on the shared probes.
pub(super) struct Probes {
    shared: SharedProbes,
    voter: usize,
}

impl Probes {
    /// Applies the cadence the engine asks for (fast while a probe is
    /// changing state).
    pub(super) fn set_fast(&mut self, probe: &str, fast: bool) {
        let mut inner = self.shared.0.lock().unwrap_or_else(|e| e.into_inner());
        let voters = inner.fast.entry(probe.to_string()).or_default();
        let was = !voters.is_empty();
        if fast {
            voters.insert(self.voter);
        } else {
            voters.remove(&self.voter);
        }
        let now = !voters.is_empty();
        if was != now {
            inner.scheduler.set_fast(probe, now);
        }
        if fast {
            inner.trigger_self_check();
        }
    }

    /// The engine holds a rule until a verdict newer than its probes'
    /// failures arrives (`Command::SelfCheckNeeded`): check now, whatever the
    /// debounce says. A check already running completes first, then this
    /// one runs (the trigger is a `Notify` permit), so its verdict is newer.
    pub(super) fn check_self_now(&mut self) {
        self.shared
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check_self_now();
    }
}

impl ProbesInner {
    /// A probe started changing state: confirm at once that the agent can
    /// still reach its canaries, at most once per `SELF_CHECK_DEBOUNCE`.
    fn trigger_self_check(&mut self) {
        let due = self
            .last_self_check_trigger
            .is_none_or(|t| t.elapsed() >= SELF_CHECK_DEBOUNCE);
        if due {
            self.check_self_now();
        }
    }

    fn check_self_now(&mut self) {
        self.last_self_check_trigger = Some(Instant::now());
        self.self_check_now.notify_one();
    }
}
