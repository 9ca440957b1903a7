//! Runs every probe on its own cadence and feeds the results to the engine.
//!
//! One task per probe, so a slow or hung target only ever delays itself,
//! except the SIP/UDP probes of address literals: those cannot hang (they
//! never wait on anything but their own timers) and are the probes a
//! carrier has by the thousand, so one task runs them all
//! (`probe::sip::fleet`), with the same cadence rules ([`Pace`]), the same
//! metrics and the same events. Each task:
//! - waits a random start jitter (up to one interval), so a hundred trunks
//!   configured alike do not all fire in the same millisecond. The jitter is
//!   a whole number of [`START_GRID`] steps from one instant shared by every
//!   probe, so the probes due in the same step start together: at 10,000
//!   trunks a second that is one timer wake-up, one burst of requests and one
//!   burst of answers read at once per step, instead of a wake-up of the
//!   runtime (and of the SIP socket's thread) for every single probe;
//! - runs a check every interval ([`Pace`]): a check that overruns pushes the
//!   next one back instead of causing a burst (`MissedTickBehavior::Delay`);
//! - runs at `fast_interval` while the engine asks (`Command::ProbeCadence`,
//!   through [`SchedulerHandle::set_fast`]), keeping the phase of the last
//!   check so a switch never makes a probe wait longer than the new period;
//! - bounds each check by the probe's timeout plus a grace (the probe enforces
//!   its own timeout; this is a backstop against a probe that does not);
//! - records `continuity_probe_duration_seconds{probe,type}` and
//!   `continuity_probe_results_total{probe,result}` (through handles to its
//!   own series, looked up once when the task starts: at 10,000 probes a
//!   label lookup per result is a hash of the id under the family's lock,
//!   10,000 times a second), then sends `Event::ProbeResult` into the
//!   bounded engine channel;
//! - for call probes, takes one of the shared [`CallSlots`] before each
//!   check (`engine.max_concurrent_calls`): a test call waits for a line
//!   rather than exceed the bound, and its time waiting is not its duration;
//! - stops promptly when the shutdown token is cancelled.
//!
//! A probe's checks never overlap (the task awaits each one), so at most one
//! call per call probe is in flight.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::domain::ProbeOutcome;
use crate::engine::event::{Command, Event};
use crate::telemetry::Metrics;
use crate::telemetry::metrics::ProbeCell;

use super::sip::{SipProbe, fleet};
use super::{Probe, timeout_detail};

/// Extra time a check gets beyond its timeout before the scheduler gives up on it.
const BACKSTOP_GRACE: Duration = Duration::from_secs(1);

/// Start jitters are multiples of this (see the module docs): 20 start
/// slots a second, so 10,000 probes at a 1 s interval go out about 500 at a
/// time, a quarter of what the SIP socket's receive buffer holds (about
/// 4,000 answers). Each slot costs a wake-up of the runtime and of the
/// socket, whatever its size: at 10 ms (100 slots) the SIP fleet spent
/// 40 us per ping at 1,000 trunks, at 50 ms 26 us (BENCHMARKS.md). Only
/// the start is quantized: interval, timeout and detection are unchanged.
pub const START_GRID: Duration = Duration::from_millis(50);

/// A probe with its cadence.
pub struct Scheduled {
    pub probe: Runner,
    pub interval: Duration,
    pub fast_interval: Duration,
    /// The probe's own bound on a check; the scheduler's backstop is this plus a grace.
    pub timeout: Duration,
    /// Slots to take before each check (call probes), `None` for no limit.
    pub slots: Option<CallSlots>,
}

/// What runs a probe's checks.
pub enum Runner {
    /// A task of its own.
    Task(Box<dyn Probe>),
    /// A SIP probe: the shared SIP/UDP task (`probe::sip::fleet`) if it is
    /// SIP/UDP to an address literal ([`SipProbe::literal_udp_dest`]), else
    /// a task of its own. [`spawn`] decides, nobody else.
    Sip(Box<SipProbe>),
}

impl Runner {
    pub fn probe(&self) -> &dyn Probe {
        match self {
            Runner::Task(p) => p.as_ref(),
            Runner::Sip(p) => p.as_ref(),
        }
    }
}

/// A probe's two intervals and which one it runs at: the one rule for when
/// its next check starts, for the per-probe tasks and the SIP fleet alike.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    interval: Duration,
    fast_interval: Duration,
    fast: bool,
}

/// How late a start may be and still count as on time, so the next one
/// keeps to the grid (tokio's `Interval` uses the same 5 ms).
const LATE: Duration = Duration::from_millis(5);

impl Pace {
    pub(crate) fn new(interval: Duration, fast_interval: Duration) -> Pace {
        Pace {
            interval,
            fast_interval,
            fast: false,
        }
    }

    fn period(&self) -> Duration {
        if self.fast {
            self.fast_interval
        } else {
            self.interval
        }
        .max(Duration::from_millis(1))
    }

    /// A check due at `due` starts at `now`: when the next one is due. One
    /// period after `due`, so the probes of a grid step stay together; but
    /// a start that came late (the check before it overran) moves the
    /// cadence: one period after `now`, never a burst to catch up
    /// (`MissedTickBehavior::Delay`).
    pub(crate) fn after_start(&self, due: Instant, now: Instant) -> Instant {
        if now > due + LATE {
            now + self.period()
        } else {
            due + self.period()
        }
    }

    /// Switch between `fast_interval` and `interval`: when the next check
    /// is due, given the last start and the current `next`. It keeps the
    /// phase of the last check: one new period after it, or now if that is
    /// already past, so a switch never makes a probe wait longer than the
    /// new period. Before the first check (its jittered start still
    /// ahead), the start stands.
    pub(crate) fn switch(
        &mut self,
        fast: bool,
        last_start: Instant,
        next: Instant,
        now: Instant,
    ) -> Instant {
        if fast == self.fast {
            return next;
        }
        self.fast = fast;
        if last_start > now {
            return next;
        }
        (last_start + self.period()).max(now)
    }
}

/// The global bound on test calls in flight, shared by every call probe.
#[derive(Clone, Debug)]
pub struct CallSlots(Arc<Semaphore>);

impl CallSlots {
    pub fn new(max_concurrent_calls: usize) -> CallSlots {
        CallSlots(Arc::new(Semaphore::new(max_concurrent_calls)))
    }
}

/// Control over running probe tasks.
pub struct SchedulerHandle {
    fast: HashMap<String, Switch>,
    tasks: JoinSet<()>,
}

/// Where a probe's cadence switch goes.
enum Switch {
    Task(watch::Sender<bool>),
    /// The fleet, and the probe's number in it.
    Fleet(fleet::CadenceTx, usize),
}

impl SchedulerHandle {
    /// Switch a probe between `fast_interval` (true) and `interval` (false).
    /// Returns false if no probe has this id.
    pub fn set_fast(&self, probe_id: &str, fast: bool) -> bool {
        match self.fast.get(probe_id) {
            Some(Switch::Task(tx)) => {
                tx.send_if_modified(|cur| std::mem::replace(cur, fast) != fast);
                true
            }
            Some(Switch::Fleet(tx, member)) => {
                // The fleet ignores a switch to the pace it runs at; it is
                // gone only after shutdown, when nothing runs anyway.
                let _ = tx.send((*member, fast));
                true
            }
            None => false,
        }
    }

    /// Apply an engine command if it is a cadence change; other commands are
    /// ignored. Returns whether the command was for the scheduler.
    pub fn apply(&self, cmd: &Command) -> bool {
        match cmd {
            Command::ProbeCadence { probe, fast } => self.set_fast(probe, *fast),
            _ => false,
        }
    }

    /// Ids of the scheduled probes.
    pub fn probe_ids(&self) -> impl Iterator<Item = &str> {
        self.fast.keys().map(String::as_str)
    }

    /// Wait for every probe task to finish (after the shutdown token fired).
    pub async fn join(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Start the probes on the current runtime: one task per probe, and one
/// for all SIP/UDP probes of address literals.
pub fn spawn(
    probes: Vec<Scheduled>,
    events: mpsc::Sender<Event>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> SchedulerHandle {
    let mut fast = HashMap::new();
    let mut tasks = JoinSet::new();
    // The origin of every probe's start grid.
    let origin = Instant::now();
    let (fleet_tx, fleet_rx) = mpsc::unbounded_channel();
    let mut members = Vec::new();
    for s in probes {
        let id = s.probe.probe().id().to_string();
        let probe = match s.probe {
            Runner::Sip(probe) => match probe.literal_udp_dest() {
                Some(dest) => {
                    fast.insert(id, Switch::Fleet(fleet_tx.clone(), members.len()));
                    members.push(fleet::Member {
                        probe: *probe,
                        dest,
                        interval: s.interval,
                        fast_interval: s.fast_interval,
                    });
                    continue;
                }
                None => probe as Box<dyn Probe>,
            },
            Runner::Task(probe) => probe,
        };
        let (tx, rx) = watch::channel(false);
        fast.insert(id, Switch::Task(tx));
        let task = Task {
            probe,
            interval: s.interval,
            fast_interval: s.fast_interval,
            timeout: s.timeout,
            slots: s.slots,
        };
        tasks.spawn(run_probe(
            task,
            origin,
            rx,
            events.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
    }
    if !members.is_empty() {
        tasks.spawn(fleet::run(
            members, origin, fleet_rx, events, metrics, shutdown,
        ));
    }
    SchedulerHandle { fast, tasks }
}

/// A probe with a task of its own.
struct Task {
    probe: Box<dyn Probe>,
    interval: Duration,
    fast_interval: Duration,
    timeout: Duration,
    slots: Option<CallSlots>,
}

async fn run_probe(
    s: Task,
    origin: Instant,
    mut fast_rx: watch::Receiver<bool>,
    events: mpsc::Sender<Event>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let probe: Arc<dyn Probe> = Arc::from(s.probe);
    let id = probe.id().to_string();
    let series = ProbeSeries::new(&metrics, &id, probe.kind());
    let mut pace = Pace::new(s.interval, s.fast_interval);
    let mut next = origin + start_jitter(s.interval);
    let mut last_start = next;
    let mut cadence_open = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = fast_rx.changed(), if cadence_open => {
                if changed.is_err() {
                    cadence_open = false; // Handle dropped: keep the current cadence.
                    continue;
                }
                let fast = *fast_rx.borrow_and_update();
                next = pace.switch(fast, last_start, next, Instant::now());
            }
            _ = sleep_until(next) => {
                // Held until the check ends. The semaphore is never closed.
                let _slot = match &s.slots {
                    None => None,
                    Some(CallSlots(sem)) => tokio::select! {
                        // Shutdown first: a slot freed by a stopping probe
                        // must not start a new call.
                        biased;
                        _ = shutdown.cancelled() => return,
                        p = sem.clone().acquire_owned() => p.ok(),
                    },
                };
                last_start = Instant::now();
                next = pace.after_start(next, last_start);
                let outcome = tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => return,
                    o = check_bounded(probe.as_ref(), s.timeout) => o,
                };
                series.record(&id, last_start.elapsed(), &outcome);
                let event = Event::ProbeResult { probe: id.clone(), outcome };
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    sent = events.send(event) => if sent.is_err() {
                        return; // The engine is gone: nothing left to feed.
                    },
                }
            }
        }
    }
}

/// A random delay below `interval`, in whole [`START_GRID`] steps (none
/// for an interval shorter than one step).
pub(crate) fn start_jitter(interval: Duration) -> Duration {
    let steps = (interval.as_nanos() / START_GRID.as_nanos()) as u32;
    if steps == 0 {
        return Duration::ZERO;
    }
    START_GRID * rand::rng().random_range(0..steps)
}

async fn check_bounded(probe: &dyn Probe, timeout: Duration) -> ProbeOutcome {
    match tokio::time::timeout(timeout + BACKSTOP_GRACE, probe.check()).await {
        Ok(o) => o,
        Err(_) => {
            tracing::warn!(
                message = "Probe overran its timeout; the scheduler cut it off.",
                probe = probe.id()
            );
            ProbeOutcome::failure(timeout_detail(timeout), None)
        }
    }
}

/// One probe's metric series, looked up once.
pub(crate) struct ProbeSeries(Arc<ProbeCell>);

impl ProbeSeries {
    pub(crate) fn new(metrics: &Metrics, id: &str, kind: &str) -> ProbeSeries {
        ProbeSeries(metrics.probes.cell(id, kind))
    }

    pub(crate) fn record(&self, id: &str, took: Duration, outcome: &ProbeOutcome) {
        if outcome.inconclusive {
            // Said loudly: the agent itself is short of resources, and until
            // that ends this probe cannot see its target.
            tracing::warn!(
                message = "Probe attempt inconclusive: a local resource error, not the target's; the probe's state is unchanged.",
                probe = id,
                detail = %outcome.detail
            );
        }
        self.0.record(took.as_secs_f64(), outcome.result());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ProbeResult;
    use futures::future::BoxFuture;
    use std::sync::Mutex;
    use tokio::time::sleep;

    /// A probe that records when it ran and takes `cost` to answer.
    struct Fake {
        id: &'static str,
        cost: Duration,
        runs: Arc<Mutex<Vec<Instant>>>,
    }

    impl Probe for Fake {
        fn id(&self) -> &str {
            self.id
        }
        fn kind(&self) -> &'static str {
            "fake"
        }
        fn check(&self) -> BoxFuture<'_, ProbeOutcome> {
            Box::pin(async move {
                self.runs.lock().unwrap().push(Instant::now());
                sleep(self.cost).await;
                ProbeOutcome::success("ok", Some(self.cost))
            })
        }
    }

    fn fake(
        id: &'static str,
        interval: u64,
        fast: u64,
        cost: Duration,
        timeout: Duration,
    ) -> (Scheduled, Arc<Mutex<Vec<Instant>>>) {
        let runs = Arc::new(Mutex::new(Vec::new()));
        let s = Scheduled {
            probe: Runner::Task(Box::new(Fake {
                id,
                cost,
                runs: runs.clone(),
            })),
            interval: Duration::from_secs(interval),
            fast_interval: Duration::from_secs(fast),
            timeout,
            slots: None,
        };
        (s, runs)
    }

    fn gaps(runs: &[Instant]) -> Vec<u64> {
        runs.windows(2)
            .map(|w| (w[1] - w[0]).as_millis() as u64)
            .collect()
    }

    /// The cadence rule both the tasks and the SIP fleet follow.
    #[test]
    fn pace_keeps_to_the_grid_and_to_the_phase_of_the_last_check() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut p = Pace::new(s(10), s(2));
        // On time (within 5 ms): one period after the due instant.
        assert_eq!(p.after_start(t0, t0 + Duration::from_millis(3)), t0 + s(10));
        // Late (the check before overran): one period after the late start,
        // not a burst to catch up.
        assert_eq!(p.after_start(t0, t0 + s(4)), t0 + s(14));
        // To fast 3 s after a check: 2 s after it is past, so now.
        assert_eq!(p.switch(true, t0, t0 + s(10), t0 + s(3)), t0 + s(3));
        // No change, no move.
        assert_eq!(p.switch(true, t0, t0 + s(7), t0 + s(3)), t0 + s(7));
        // Fast pace: on-time starts two seconds apart.
        assert_eq!(p.after_start(t0 + s(3), t0 + s(3)), t0 + s(5));
        // Back to slow 1 s after a check: 10 s after it.
        assert_eq!(p.switch(false, t0 + s(3), t0 + s(5), t0 + s(4)), t0 + s(13));
        // Before the first check (its jittered start ahead), the start stands.
        let mut p = Pace::new(s(10), s(2));
        assert_eq!(p.switch(true, t0 + s(8), t0 + s(8), t0), t0 + s(8));
    }

    #[tokio::test(start_paused = true)]
    async fn cadence_switches_between_interval_and_fast_interval() {
        let (s, runs) = fake("trunk-a", 10, 2, Duration::ZERO, Duration::from_secs(1));
        let (tx, mut rx) = mpsc::channel(64);
        let shutdown = CancellationToken::new();
        let metrics = Metrics::new();
        let started = Instant::now();
        let handle = spawn(vec![s], tx, metrics.clone(), shutdown.clone());

        sleep(Duration::from_secs(41)).await;
        let first = runs.lock().unwrap()[0];
        assert!(
            first - started < Duration::from_secs(10),
            "jitter is below one interval"
        );
        let normal = runs.lock().unwrap().clone();
        assert!(normal.len() >= 4, "{normal:?}");
        assert!(
            gaps(&normal).iter().all(|g| *g == 10_000),
            "{:?}",
            gaps(&normal)
        );

        // The engine asks for fast polling: the next check comes at most
        // one fast interval after the previous one, then every 2 s.
        assert!(handle.apply(&Command::ProbeCadence {
            probe: "trunk-a".into(),
            fast: true
        }));
        let switch_at = Instant::now();
        sleep(Duration::from_secs(9)).await;
        let fast_runs: Vec<Instant> = runs
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|t| *t > switch_at)
            .collect();
        assert!(fast_runs.len() >= 4, "{fast_runs:?}");
        assert!(fast_runs[0] - switch_at <= Duration::from_secs(2));
        assert!(
            gaps(&fast_runs).iter().all(|g| *g == 2_000),
            "{:?}",
            gaps(&fast_runs)
        );

        // Back to normal.
        assert!(handle.set_fast("trunk-a", false));
        let back_at = Instant::now();
        sleep(Duration::from_secs(35)).await;
        let slow_runs: Vec<Instant> = runs
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|t| *t > back_at)
            .collect();
        assert!(
            gaps(&slow_runs).iter().all(|g| *g == 10_000),
            "{:?}",
            gaps(&slow_runs)
        );
        assert!(!handle.set_fast("nope", true), "unknown ids are reported");

        // Every run produced an event and a metric.
        let total = runs.lock().unwrap().len();
        let mut events = 0;
        while let Ok(ev) = rx.try_recv() {
            assert!(
                matches!(ev, Event::ProbeResult { ref probe, ref outcome } if probe == "trunk-a" && outcome.success)
            );
            events += 1;
        }
        assert_eq!(events, total);
        let counted = metrics.probes.results("trunk-a", ProbeResult::Success);
        assert_eq!(counted as usize, total);

        shutdown.cancel();
        handle.join().await;
    }

    /// Probes start on a shared grid, so the ones due in the same step go
    /// out together (one wake-up, one burst) and stay in step afterwards.
    #[tokio::test(start_paused = true)]
    async fn probes_start_on_a_shared_grid_and_stay_on_it() {
        let mut all = Vec::new();
        let mut scheduled = Vec::new();
        for id in ["g0", "g1", "g2", "g3", "g4", "g5", "g6", "g7"] {
            let (s, runs) = fake(id, 1, 1, Duration::from_millis(3), Duration::from_secs(1));
            scheduled.push(s);
            all.push(runs);
        }
        let (tx, _rx) = mpsc::channel(1024);
        let shutdown = CancellationToken::new();
        let origin = Instant::now();
        let handle = spawn(scheduled, tx, Metrics::new(), shutdown.clone());
        sleep(Duration::from_millis(5500)).await;
        for runs in &all {
            let runs = runs.lock().unwrap().clone();
            assert!(runs.len() >= 5, "{runs:?}");
            for t in runs {
                let since = (t - origin).as_millis();
                assert_eq!(
                    since % START_GRID.as_millis(),
                    0,
                    "a check at +{since} ms, off the grid"
                );
            }
        }
        shutdown.cancel();
        handle.join().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_probe_delays_nobody_and_is_cut_off() {
        let (slow, slow_runs) = fake(
            "hung",
            5,
            1,
            Duration::from_secs(3600),
            Duration::from_secs(2),
        );
        let (quick, quick_runs) = fake("quick", 1, 1, Duration::ZERO, Duration::from_secs(1));
        let (tx, mut rx) = mpsc::channel(1024);
        let shutdown = CancellationToken::new();
        let handle = spawn(vec![slow, quick], tx, Metrics::new(), shutdown.clone());
        sleep(Duration::from_secs(30)).await;
        let quick_n = quick_runs.lock().unwrap().len();
        assert!(quick_n >= 29, "quick probe ran {quick_n} times");
        // The hung probe is cut off after timeout + grace (3 s) and retried
        // on its own cadence (Delay: 5 s from the start of the overrun tick).
        let slow_n = slow_runs.lock().unwrap().len();
        assert!((4..=7).contains(&slow_n), "hung probe ran {slow_n} times");
        let mut hung_failures = 0;
        while let Ok(Event::ProbeResult { probe, outcome }) = rx.try_recv() {
            if probe == "hung" {
                assert_eq!(outcome.detail, "timeout after 2s");
                hung_failures += 1;
            }
        }
        assert!(hung_failures >= 4);
        shutdown.cancel();
        handle.join().await;
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_tasks_even_mid_check_and_with_a_full_channel() {
        let (a, _) = fake(
            "a",
            1,
            1,
            Duration::from_secs(3600),
            Duration::from_secs(7200),
        );
        let (b, _) = fake("b", 1, 1, Duration::ZERO, Duration::from_secs(1));
        let (tx, _rx) = mpsc::channel(1); // Never drained: b blocks on send.
        let shutdown = CancellationToken::new();
        let handle = spawn(vec![a, b], tx, Metrics::new(), shutdown.clone());
        sleep(Duration::from_secs(10)).await;
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(1), handle.join())
            .await
            .expect("tasks stop promptly");
    }

    /// A probe whose checks take `cost` and record how many ran at once.
    struct Line {
        id: &'static str,
        cost: Duration,
        now: Arc<Mutex<(u32, u32)>>,
    }

    impl Probe for Line {
        fn id(&self) -> &str {
            self.id
        }
        fn kind(&self) -> &'static str {
            "call"
        }
        fn check(&self) -> BoxFuture<'_, ProbeOutcome> {
            Box::pin(async move {
                {
                    let mut n = self.now.lock().unwrap();
                    n.0 += 1;
                    n.1 = n.1.max(n.0);
                }
                sleep(self.cost).await;
                self.now.lock().unwrap().0 -= 1;
                ProbeOutcome::success("answered", None)
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn call_slots_bound_the_calls_in_flight() {
        let now = Arc::new(Mutex::new((0, 0)));
        let slots = CallSlots::new(2);
        let probes = ["a", "b", "c", "d"]
            .into_iter()
            .map(|id| Scheduled {
                probe: Runner::Task(Box::new(Line {
                    id,
                    cost: Duration::from_secs(5),
                    now: now.clone(),
                })),
                interval: Duration::from_secs(1),
                fast_interval: Duration::from_secs(1),
                timeout: Duration::from_secs(10),
                slots: Some(slots.clone()),
            })
            .collect();
        let (tx, mut rx) = mpsc::channel(1024);
        let shutdown = CancellationToken::new();
        let handle = spawn(probes, tx, Metrics::new(), shutdown.clone());
        sleep(Duration::from_secs(60)).await;
        // Measured before shutdown: checks cut off by it never get to count
        // themselves out.
        let most_at_once = now.lock().unwrap().1;
        shutdown.cancel();
        handle.join().await;
        assert_eq!(most_at_once, 2, "never more than two calls at once");
        let mut results = 0;
        while rx.try_recv().is_ok() {
            results += 1;
        }
        // Two lines, 5s per call: about 24 calls in 60s, shared by all four.
        assert!((20..=24).contains(&results), "{results} calls");
    }
}
