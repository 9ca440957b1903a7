//! Every SIP/UDP probe of an address literal, run by one task.
//!
//! A task per probe costs, per ping, a wake-up of that task, a boxed check
//! future, a oneshot channel and a wake-up across threads when the mux's
//! thread hands the answer back (BENCHMARKS.md, "SIP OPTIONS"). At 10,000
//! trunks that is most of the agent's CPU and memory. The fleet instead
//! keeps every member's next deadline in one timer heap: the trunks due in
//! the same [`START_GRID`] step are sent in one pass of one task (one timer
//! wake-up), every answer waiting on the socket is read in one pass (one
//! socket wake-up), and an answer finds its member through the map of
//! pending branches, with no lock and no channel in between.
//!
//! It behaves as a [`SipProbe`] in a task of its own (`probe::scheduler`):
//! - a random start jitter on the shared grid, then one check per interval,
//!   checks of a member never overlapping; a check that ends after its next
//!   start begins the next one at once, and the cadence runs on from there
//!   (`MissedTickBehavior::Delay`);
//! - `fast_interval` while an engine asks, keeping the phase of the last
//!   check;
//! - the request, Timer E retransmissions, the probe's timeout, replies only
//!   from the trunk's host with our branch, Call-ID and CSeq, ICMP errors
//!   only when they prove which request they are about, and the judgement of
//!   the answer: the same code (`transport`, [`SipProbe`]);
//! - `continuity_probe_duration_seconds` and `continuity_probe_results_total`
//!   per result, then `Event::ProbeResult` into the engine's channel.
//!
//! Its sockets (one per address family, opened on first use) belong to the
//! fleet and close with it: a reload starts a new fleet on new sockets.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{Interest, Ready};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::message::{RequestTemplate, TransactionKey};
use super::parse::SipResponse;
use super::target::Transport;
use super::transport::{self, Sink, T1, T2, TransportError};
use super::{AttemptError, SipProbe, recverr};
use crate::domain::ProbeOutcome;
use crate::engine::event::Event;
use crate::probe::Probe;
use crate::probe::scheduler::{Pace, ProbeSeries, START_GRID, start_jitter};
use crate::telemetry::Metrics;

/// One probe of the fleet, as the scheduler hands it over.
pub struct Member {
    pub probe: SipProbe,
    /// Where it sends: its [`SipProbe::literal_udp_dest`], which the fleet
    /// runs only for a probe that has one.
    pub dest: SocketAddr,
    pub interval: Duration,
    pub fast_interval: Duration,
}

/// Switches a member between its intervals: `(member index, fast)`.
pub type CadenceTx = mpsc::UnboundedSender<(usize, bool)>;

/// Run the fleet until `shutdown`. Members are numbered by their position
/// in `members`, which is how [`CadenceTx`] names them.
pub async fn run(
    members: Vec<Member>,
    origin: Instant,
    mut cadence: mpsc::UnboundedReceiver<(usize, bool)>,
    events: mpsc::Sender<Event>,
    metrics: Metrics,
    shutdown: CancellationToken,
) {
    let mut fleet = Fleet::new(members, origin, &metrics);
    let mut buf = vec![0u8; transport::MAX_DATAGRAM];
    let timer = sleep_until(fleet.state.next_wake());
    tokio::pin!(timer);
    let mut cadence_open = true;
    // Which family's socket is asked first; alternates, so a flood at one
    // does not starve the other.
    let mut first = 0;
    loop {
        let mut flooded = false;
        // Timers before sockets: a due check starts (or times out) however
        // busy the sockets are.
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            switch = cadence.recv(), if cadence_open => match switch {
                Some((member, fast)) => fleet.state.set_fast(member, fast, Instant::now()),
                None => cadence_open = false, // Handle dropped: keep the current cadences.
            },
            () = &mut timer => fleet.fire(Instant::now()),
            ready = readiness(&fleet.sockets[first]) => flooded = fleet.pump(first, ready, &mut buf),
            ready = readiness(&fleet.sockets[1 - first]) => flooded = fleet.pump(1 - first, ready, &mut buf),
        }
        first = 1 - first;
        // Taken out and put back, so its buffer is reused.
        let mut done = std::mem::take(&mut fleet.state.done);
        for (member, outcome) in done.drain(..) {
            let event = Event::ProbeResult {
                probe: fleet.state.slots[member].probe.id().to_string(),
                outcome,
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                sent = events.send(event) => if sent.is_err() {
                    return; // The engine is gone: nothing left to feed.
                },
            }
        }
        fleet.state.done = done;
        timer.as_mut().reset(fleet.state.next_wake());
        if flooded {
            // More is waiting than one pass reads: let the rest of the
            // runtime (the engine, the API) run before reading on.
            tokio::task::yield_now().await;
        }
    }
}

/// One check of `probe` by a fleet of its own, the path the daemon runs it
/// on (`Probe::check` takes the mux's): for tests and tools. `None` if the
/// fleet does not run this probe (not SIP/UDP to an address literal).
pub async fn check_once(probe: SipProbe) -> Option<ProbeOutcome> {
    let dest = probe.literal_udp_dest()?;
    let (events, mut results) = mpsc::channel(1);
    let (_switch, cadence) = mpsc::unbounded_channel();
    let member = Member {
        probe,
        dest,
        // No start jitter: check now.
        interval: Duration::ZERO,
        fast_interval: Duration::ZERO,
    };
    let shutdown = CancellationToken::new();
    let fleet = run(
        vec![member],
        Instant::now(),
        cadence,
        events,
        Metrics::new(),
        shutdown,
    );
    tokio::select! {
        () = fleet => None,
        event = results.recv() => match event {
            Some(Event::ProbeResult { outcome, .. }) => Some(outcome),
            _ => None,
        },
    }
}

/// Readable or error readiness of an open socket; never, for none.
async fn readiness(socket: &Option<Socket>) -> io::Result<Ready> {
    match socket {
        Some(s) => s.udp.ready(Interest::READABLE | Interest::ERROR).await,
        None => std::future::pending().await,
    }
}

struct Socket {
    udp: UdpSocket,
    port: u16,
}

struct Fleet {
    /// IPv4 and IPv6, opened on first use. A failed open is not remembered:
    /// the next check tries again (a passing shortage of descriptors must
    /// not disable the fleet for good).
    sockets: [Option<Socket>; 2],
    state: State,
}

/// Everything but the sockets, so a socket can be read while the
/// transactions it answers are updated.
struct State {
    slots: Vec<Slot>,
    /// Each member's next deadline, tagged with the member's generation
    /// when it was set; a tag that no longer matches was superseded.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Branch of each transaction in flight -> its member.
    pending: HashMap<String, usize>,
    /// Results not yet sent to the engine.
    done: Vec<(usize, ProbeOutcome)>,
}

struct Slot {
    probe: SipProbe,
    dest: SocketAddr,
    pace: Pace,
    series: ProbeSeries,
    /// When the next check is due (while none is in flight).
    next_start: Instant,
    /// When the current or last check started.
    last_start: Instant,
    flight: Option<Flight>,
    /// The request, laid out on the first check and renewed for each one
    /// (laid out again if the socket, so the local address, changed).
    template: Option<RequestTemplate>,
    generation: u64,
}

/// A transaction in flight.
struct Flight {
    /// The transaction; its request is the slot's template as renewed.
    key: TransactionKey,
    /// The first send, from which latency counts (`None` until it left).
    first_send: Option<Instant>,
    sends: u32,
    /// Timer E: when to send (again), and the gap after that.
    next_send: Instant,
    gap: Duration,
    deadline: Instant,
    /// The socket's dropped-datagram count when the check started.
    drops: u32,
}

impl Fleet {
    fn new(members: Vec<Member>, origin: Instant, metrics: &Metrics) -> Fleet {
        let mut state = State {
            slots: Vec::with_capacity(members.len()),
            timers: BinaryHeap::with_capacity(members.len()),
            pending: HashMap::with_capacity(members.len()),
            done: Vec::new(),
        };
        for m in members {
            let first = origin + start_jitter(m.interval);
            state.slots.push(Slot {
                series: ProbeSeries::new(metrics, m.probe.id(), m.probe.kind()),
                probe: m.probe,
                dest: m.dest,
                pace: Pace::new(m.interval, m.fast_interval),
                next_start: first,
                last_start: first,
                flight: None,
                template: None,
                generation: 0,
            });
            state.arm(state.slots.len() - 1);
        }
        Fleet {
            sockets: [None, None],
            state,
        }
    }

    /// Act on every deadline that has passed.
    fn fire(&mut self, now: Instant) {
        // Each socket's drop count, read once per pass: every check started
        // in it counts from there. Read earlier than its start, the count
        // can only make a timeout look more likely our own loss
        // (inconclusive), never less; per check, it was a syscall per ping.
        let mut drops: [Option<u32>; 2] = [None; 2];
        while let Some(&Reverse((at, member, generation))) = self.state.timers.peek() {
            if at > now {
                break;
            }
            self.state.timers.pop();
            if self.state.slots[member].generation != generation {
                continue; // Superseded.
            }
            match &self.state.slots[member].flight {
                None => self.start(member, now, &mut drops),
                Some(f) if now >= f.deadline => {
                    let dropped = self
                        .drops(self.state.slots[member].dest)
                        .wrapping_sub(f.drops);
                    let outcome = self.state.slots[member].probe.timed_out(dropped);
                    self.state.finish(member, outcome, now);
                }
                Some(_) => self.send(member, now),
            }
        }
    }

    /// Start a check: the request renewed, registered, then sent.
    fn start(&mut self, member: usize, now: Instant, drops: &mut [Option<u32>; 2]) {
        let slot = &mut self.state.slots[member];
        slot.next_start = slot.pace.after_start(slot.next_start, now);
        slot.last_start = now;
        let dest = slot.dest;
        let (port, drops) = match socket_for(&mut self.sockets, dest) {
            Ok(s) => {
                let family = &mut drops[usize::from(dest.is_ipv6())];
                let n = *family.get_or_insert_with(|| recverr::drops(&s.udp).unwrap_or(0));
                (s.port, n)
            }
            Err(e) => {
                let e = AttemptError::from(TransportError::Socket(e.to_string()));
                let outcome = self.state.slots[member].probe.outcome(Err(e));
                self.state.finish(member, outcome, now);
                return;
            }
        };
        let slot = &mut self.state.slots[member];
        let local = SocketAddr::new(slot.probe.route.local_ip(dest), port);
        let template = match &mut slot.template {
            Some(t) if t.local() == local => t,
            stale => stale.insert(slot.probe.template(local, Transport::Udp)),
        };
        let key = template.renew();
        self.state.pending.insert(key.branch.clone(), member);
        slot.flight = Some(Flight {
            key,
            first_send: None,
            sends: 0,
            next_send: now,
            gap: T1,
            deadline: now + slot.probe.timeout,
            drops,
        });
        self.send(member, now);
    }

    /// Send (or resend) the member's request.
    fn send(&mut self, member: usize, now: Instant) {
        let dest = self.state.slots[member].dest;
        let sent = socket_for(&mut self.sockets, dest)
            .map_err(|e| TransportError::Socket(e.to_string()))
            .and_then(|s| {
                let bytes = self.state.slots[member]
                    .template
                    .as_ref()
                    .map(RequestTemplate::bytes)
                    .unwrap_or_default();
                transport::try_send(&s.udp, bytes, dest)
            });
        let slot = &mut self.state.slots[member];
        let Some(f) = slot.flight.as_mut() else {
            return;
        };
        match sent {
            Ok(true) => {
                f.sends += 1;
                f.first_send.get_or_insert(now);
                // Timer E: gaps of 0.5, 1, 2, 4, 4... seconds.
                f.next_send += f.gap;
                f.gap = (f.gap * 2).min(T2);
                self.state.arm(member);
            }
            // The send buffer is full: the next grid step tries again.
            Ok(false) => {
                f.next_send = now + START_GRID;
                self.state.arm(member);
            }
            Err(e) => {
                let outcome = slot.probe.outcome(Err(AttemptError::from(e)));
                self.state.finish(member, outcome, now);
            }
        }
    }

    /// Datagrams dropped so far for the socket of `dest`'s family (0 if it
    /// is closed, or the kernel does not say).
    fn drops(&self, dest: SocketAddr) -> u32 {
        self.sockets[usize::from(dest.is_ipv6())]
            .as_ref()
            .and_then(|s| recverr::drops(&s.udp))
            .unwrap_or(0)
    }

    /// Read what waits on a socket; whether it stopped on the budget.
    fn pump(&mut self, family: usize, ready: io::Result<Ready>, buf: &mut [u8]) -> bool {
        let Some(socket) = &self.sockets[family] else {
            return false;
        };
        match ready {
            Ok(ready) => transport::pump(&socket.udp, ready, buf, &mut self.state),
            Err(e) => {
                // Closed under us: the next check opens a new one.
                tracing::error!(message = "SIP/UDP socket failed; reopening it on the next check.", error = %e);
                self.sockets[family] = None;
                false
            }
        }
    }
}

/// The fleet's socket for `dest`'s address family, opened on first use.
fn socket_for(sockets: &mut [Option<Socket>; 2], dest: SocketAddr) -> io::Result<&Socket> {
    let family = usize::from(dest.is_ipv6());
    if sockets[family].is_none() {
        let std_socket = transport::open_socket(transport::any_addr(dest))?;
        let port = std_socket.local_addr()?.port();
        let udp = UdpSocket::from_std(std_socket)?;
        sockets[family] = Some(Socket { udp, port });
    }
    sockets[family]
        .as_ref()
        .ok_or_else(|| io::Error::other("SIP/UDP socket unavailable"))
}

impl State {
    /// The earliest deadline of any member (far ahead when there is none).
    fn next_wake(&self) -> Instant {
        self.timers
            .peek()
            .map(|Reverse((at, ..))| *at)
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600))
    }

    /// Put the member's next deadline on the heap, superseding the last.
    fn arm(&mut self, member: usize) {
        let slot = &mut self.slots[member];
        slot.generation += 1;
        let at = match &slot.flight {
            None => slot.next_start,
            Some(f) => f.next_send.min(f.deadline),
        };
        self.timers.push(Reverse((at, member, slot.generation)));
    }

    /// End the member's check with `outcome`: metrics, the result queued
    /// for the engine, the next check scheduled.
    fn finish(&mut self, member: usize, outcome: ProbeOutcome, now: Instant) {
        let slot = &mut self.slots[member];
        if let Some(f) = slot.flight.take() {
            self.pending.remove(&f.key.branch);
        }
        slot.series.record(
            slot.probe.id(),
            now.saturating_duration_since(slot.last_start),
            &outcome,
        );
        self.done.push((member, outcome));
        self.arm(member);
    }

    fn set_fast(&mut self, member: usize, fast: bool, now: Instant) {
        let Some(slot) = self.slots.get_mut(member) else {
            return;
        };
        let next = slot
            .pace
            .switch(fast, slot.last_start, slot.next_start, now);
        if next != slot.next_start {
            slot.next_start = next;
            if slot.flight.is_none() {
                self.arm(member);
            }
        }
    }
}

impl Sink for State {
    fn response(&mut self, response: SipResponse, branch: String, from: SocketAddr, at: Instant) {
        let Some(&member) = self.pending.get(&branch) else {
            tracing::debug!(message = "SIP/UDP response matches no transaction.", %from, %branch);
            return;
        };
        let slot = &self.slots[member];
        let Some(f) = &slot.flight else { return };
        let k = &f.key;
        if !transport::is_reply(&response, from, slot.dest, &k.branch, &k.call_id, k.cseq) {
            tracing::debug!(message = "SIP/UDP response matches no transaction.", %from, %branch);
            return;
        }
        let latency = at.saturating_duration_since(f.first_send.unwrap_or(slot.last_start));
        let outcome = slot.probe.outcome(Ok((response, latency, f.sends)));
        self.finish(member, outcome, at);
    }

    fn icmp(&mut self, err: super::recverr::IcmpError) {
        let victim =
            transport::icmp_victim(&err, |b| self.pending.get(b).map(|&m| self.slots[m].dest));
        let Some(member) = victim.and_then(|b| self.pending.get(&b).copied()) else {
            return;
        };
        let dest = self.slots[member].dest;
        let e = AttemptError::from(transport::unreachable(&err, dest));
        let outcome = self.slots[member].probe.outcome(Err(e));
        self.finish(member, outcome, Instant::now());
    }
}

#[cfg(test)]
mod tests;
