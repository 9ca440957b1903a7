//! What the process uses: resident memory from `/proc/self/status`, CPU time
//! from `getrusage(RUSAGE_SELF)` (every thread, exited ones included), and
//! the same CPU time split by who spent it, from each thread's
//! `/proc/self/task/TID/schedstat`.
//!
//! The split is by thread name, which is why `world.rs` names its runtimes:
//! the simulator (`sim-*`) and this harness (`bench`) run in the same
//! process as the agent, and a figure "per decision" should say how much
//! of it was the agent's. It is summed over threads by id, so a thread
//! that exits between two readings loses only what it spent in between
//! (tokio's blocking threads exit after 10 s idle; the runtimes keep that
//! default, since their number is part of what the agent costs).

use std::collections::BTreeMap;
use std::time::Duration;

/// Who spent CPU time, by thread name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// The agent's runtime (`agent-*`) and the SIP probe's own socket thread.
    Agent,
    /// The Talkdesk simulator and the trunk (`sim-*`).
    Simulator,
    /// This harness: polling states and metrics.
    Bench,
}

impl Group {
    fn of(name: &str) -> Group {
        if name.starts_with("sim-") {
            Group::Simulator
        } else if name.starts_with("agent-") || name == "sip-udp-mux" {
            Group::Agent
        } else {
            // The main thread (renamed `bench`, see `name_this_thread`) and
            // anything it started.
            Group::Bench
        }
    }
}

/// One reading of the process's counters.
#[derive(Clone, Debug)]
pub struct Reading {
    /// `VmRSS`.
    pub rss: u64,
    /// `VmHWM`: the highest `rss` so far.
    pub peak_rss: u64,
    pub threads: u64,
    /// User + system time of the whole process (`getrusage`).
    pub cpu: Duration,
    /// Each live thread's group and time on a CPU, by thread id.
    threads_cpu: BTreeMap<u64, (Group, Duration)>,
}

impl Reading {
    pub fn now() -> Reading {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let kib = |key: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Reading {
            rss: kib("VmRSS:") * 1024,
            peak_rss: kib("VmHWM:") * 1024,
            threads: kib("Threads:"),
            cpu: process_cpu(),
            threads_cpu: thread_cpu(),
        }
    }

    /// CPU time spent by `group` since `earlier` (threads started since
    /// included; threads that exited since, not).
    pub fn group_since(&self, earlier: &Reading, group: Group) -> Duration {
        self.threads_cpu
            .iter()
            .filter(|(_, (g, _))| *g == group)
            .map(|(tid, (_, now))| {
                let before = earlier.threads_cpu.get(tid).map(|(_, d)| *d);
                now.saturating_sub(before.unwrap_or_default())
            })
            .sum()
    }
}

/// Names the calling thread `bench`, so its CPU time is the harness's.
pub fn name_this_thread() {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"bench".as_ptr());
    }
}

fn process_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Each live thread's group and time on a CPU: the first field of
/// `/proc/self/task/TID/schedstat`, in nanoseconds (`stat`'s utime and
/// stime count 10 ms ticks, too coarse for a few milliseconds per thread).
fn thread_cpu() -> BTreeMap<u64, (Group, Duration)> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let (Ok(name), Ok(sched)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("schedstat")),
        ) else {
            continue; // The thread exited meanwhile.
        };
        if let Some(ns) = sched.split_whitespace().next().and_then(|v| v.parse().ok()) {
            out.insert(tid, (Group::of(name.trim()), Duration::from_nanos(ns)));
        }
    }
    out
}
