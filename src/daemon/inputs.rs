//! The inputs that run on their own and only send events: probes (with the
//! cadence the engine asks for), the self-check canaries, the calendar.

use std::sync::Arc;
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
    pub probes: Probes,
    pub calendar: Calendar,
    /// Stops the probes and the self-check (a reload replaces them).
    pub stop: CancellationToken,
}

/// Starts every probe on its own timer, the self-check (if canaries are
/// configured) and the calendar jobs, all sending on `events`.
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
    let calendar =
        Calendar::start(&config.raw.maintenance, &config.raw.drills, events.clone()).await?;
    Ok(Inputs {
        probes: Probes {
            scheduler,
            self_check_now,
            last_self_check_trigger: None,
        },
        calendar,
        stop,
    })
}

/// The loop's handle on the running probes. Dropping it stops them.
pub(super) struct Probes {
    scheduler: SchedulerHandle,
    /// Wakes the self-check when a probe starts failing (debounced).
    self_check_now: Arc<Notify>,
    last_self_check_trigger: Option<Instant>,
}

impl Probes {
    /// Applies the cadence the engine asks for (fast while a probe is
    /// changing state).
    pub(super) fn set_fast(&mut self, probe: &str, fast: bool) {
        self.scheduler.set_fast(probe, fast);
        if fast {
            self.trigger_self_check();
        }
    }

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

    /// The engine holds a rule until a verdict newer than its probes'
    /// failures arrives (`Command::SelfCheckNeeded`): check now, whatever the
    /// debounce says. A check already running completes first, then this
    /// one runs (the trigger is a `Notify` permit), so its verdict is newer.
    pub(super) fn check_self_now(&mut self) {
        self.last_self_check_trigger = Some(Instant::now());
        self.self_check_now.notify_one();
    }
}
