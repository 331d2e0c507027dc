//! The media engine: a few tasks (one per core) that carry the RTP of every call, instead of a
//! task, a timer and an epoll registration per call.
//!
//! Each engine task owns the RTP sockets and the [`MediaSession`]s of its calls and one timer
//! wheel of 1 ms slots. A call's packet clock starts on a whole millisecond of the engine's
//! epoch, at the phase (millisecond within 20) with the fewest calls, so the load is spread evenly
//! over the packet interval and every deadline falls exactly on a slot. On each slot the task
//! visits the calls due: it drains the call's socket with one `recvmmsg` (digits, latching,
//! inactivity), sends the packet that is due with one `sendto`, and forwards the session's events
//! to the call's task. The sockets are plain non-blocking sockets, never registered with the
//! reactor: nothing wakes per packet, and the call task only wakes for a digit or the end of a
//! prompt.
//!
//! The task sleeps on a `timerfd` armed with the next slot's exact time
//! ([`super::precise_timer`]), not on tokio's 1 ms timer, whose wake-ups wander within the
//! millisecond and would add that much jitter to every packet.
//!
//! The call task controls its session through a [`MediaHandle`] (play, stop, renegotiated
//! media); dropping the handle ends the session and closes the socket.
//!
//! With `rtp.realtime_priority` set (1-99), each engine runs instead on a thread of its own at
//! that `SCHED_FIFO` priority, in a small current-thread runtime (the engine needs a reactor for
//! its `timerfd`). What it buys: a wake-up is no longer delayed by whatever else holds the core
//! (another task on the worker, a SQLite thread, a kernel thread: `docs/performance.md`, "Why the
//! jitter tail"). What it costs: a real-time thread is never preempted by ordinary ones, so an
//! overloaded engine could starve the SIP task on a shared core; such an engine therefore sleeps
//! [`OVERLOAD_PAUSE`] whenever it ends a turn still behind, which caps it at about two thirds of
//! a core. Off by default: it needs root or `CAP_SYS_NICE`, and media can then take a core.

use super::precise_timer::PreciseTimer;
use super::udp_batch::RecvBatch;
use crate::langpack::Prompt;
use crate::media::session::{MediaEvent, MediaParams, MediaSession};
use crate::metrics::{self, RtpTally};
use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Slots of the wheel (1 ms each): a call further away than this waits for the wheel to come
/// round again (a packet time over 256 ms, which no phone uses).
const WHEEL: u64 = 256;
/// Packet clocks start on a millisecond chosen among this many (20 ms being the usual packet
/// time, a call keeps its phase).
const PHASES: u64 = 20;
/// A new call joins the fullest phase that has fewer calls than this, else the emptiest: few
/// calls share a few wake-ups (each costs a timer and a context switch, about as much as
/// sending several packets), many calls are spread evenly over the packet interval.
const PHASE_FILL: u32 = 32;
/// A call's socket is drained once per this many ms (every third packet at 20 ms): one
/// `recvmmsg` then takes about three packets instead of one, a third of the receive system calls.
/// Digits and the latch wait at most this long, which no caller notices (a key press lasts
/// 100 ms or more).
const DRAIN_EVERY_MS: u32 = 60;
/// Calls visited before the task yields to the runtime (at the end of a slot): a task carrying
/// thousands of calls on a core it shares with the SIP task never holds it for long.
const VISITS_PER_TURN: usize = 128;
/// A real-time engine still behind at the end of a turn sleeps this long, so that ordinary
/// threads (the SIP task's) get the core back now and then (see the module doc).
const OVERLOAD_PAUSE: Duration = Duration::from_micros(200);
/// Counters are added to the metrics at least this often.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The engine tasks, calls handed out in turn.
pub struct MediaEngines {
    engines: Vec<mpsc::UnboundedSender<Command>>,
    next: AtomicUsize,
    ids: AtomicU64,
}

impl MediaEngines {
    /// Starts `tasks` engines (at least one): tasks on the current runtime, or with
    /// `realtime_priority` (1-99) threads of their own at that `SCHED_FIFO` priority.
    pub fn start(tasks: usize, realtime_priority: u8) -> MediaEngines {
        let engines = (0..tasks.max(1))
            .map(|i| {
                let (tx, rx) = mpsc::unbounded_channel();
                if realtime_priority == 0 {
                    tokio::spawn(Engine::new(i, false).run(rx));
                } else {
                    spawn_realtime(i, realtime_priority, rx);
                }
                tx
            })
            .collect();
        MediaEngines {
            engines,
            next: AtomicUsize::new(0),
            ids: AtomicU64::new(1),
        }
    }

    /// One engine per core the process may use.
    pub fn per_core(realtime_priority: u8) -> MediaEngines {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        MediaEngines::start(cores.min(16), realtime_priority)
    }

    /// Hands a call's socket and agreed media to an engine; events come back on `events`. The
    /// socket must be non-blocking.
    pub fn add(
        &self,
        socket: UdpSocket,
        params: MediaParams,
        inactivity: Duration,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> MediaHandle {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        let k = self.next.fetch_add(1, Ordering::Relaxed) % self.engines.len();
        let tx = self.engines[k].clone();
        let _ = tx.send(Command::Add(Box::new(NewCall {
            id,
            socket,
            params,
            inactivity,
            events,
            span: tracing::Span::current(),
        })));
        MediaHandle { id, tx }
    }
}

/// A call's hold on its media session. Dropping it ends the session and closes the socket.
pub struct MediaHandle {
    id: u64,
    tx: mpsc::UnboundedSender<Command>,
}

impl MediaHandle {
    /// Replaces what is playing; `PlaybackFinished { generation }` follows when it is sent.
    pub fn play(&self, prompts: Vec<Arc<Prompt>>, generation: u64) {
        let _ = self.tx.send(Command::Play(self.id, prompts, generation));
    }

    /// Barge-in: stops playback, no `PlaybackFinished`.
    pub fn stop(&self) {
        let _ = self.tx.send(Command::Stop(self.id));
    }

    /// Renegotiated media (re-INVITE).
    pub fn update(&self, params: MediaParams) {
        let _ = self.tx.send(Command::Update(self.id, params));
    }
}

impl Drop for MediaHandle {
    fn drop(&mut self) {
        // The engine outlives every call; an error only happens at shutdown.
        let _ = self.tx.send(Command::Remove(self.id));
    }
}

enum Command {
    Add(Box<NewCall>),
    Update(u64, MediaParams),
    Play(u64, Vec<Arc<Prompt>>, u64),
    Stop(u64),
    Remove(u64),
}

struct NewCall {
    id: u64,
    socket: UdpSocket,
    params: MediaParams,
    inactivity: Duration,
    events: mpsc::UnboundedSender<MediaEvent>,
    span: tracing::Span,
}

struct Entry {
    session: MediaSession,
    socket: UdpSocket,
    events: mpsc::UnboundedSender<MediaEvent>,
    span: tracing::Span,
    /// The slot (ms since the epoch) of the call's live wheel entry; others are stale.
    due_ms: u64,
    phase: usize,
    /// Visits since the socket was last drained.
    since_drain: u32,
}

struct Engine {
    index: usize,
    epoch: Instant,
    calls: HashMap<u64, Entry>,
    /// On a real-time thread of its own ([`spawn_realtime`]): yields by sleeping when behind.
    own_thread: bool,
    /// `wheel[ms % WHEEL]`: (call, ms) entries; an entry whose call has moved on is dropped.
    wheel: Vec<Vec<(u64, u64)>>,
    /// Spare vector swapped in while a slot is processed.
    spare: Vec<(u64, u64)>,
    /// The calls of the slot being processed that have sent, to be drained next.
    visited: Vec<u64>,
    /// The next slot not yet processed (ms since the epoch).
    next_ms: u64,
    phase_load: [u32; PHASES as usize],
    recv: RecvBatch,
    tally: RtpTally,
    last_flush: Instant,
}

/// Runs engine `index` on a thread of its own at `SCHED_FIFO` `priority`. If the thread cannot
/// be started, the engine runs as a task on the current runtime instead; if the priority cannot
/// be had, at normal priority on its thread. Both are logged with what to do.
fn spawn_realtime(index: usize, priority: u8, commands: mpsc::UnboundedReceiver<Command>) {
    // The receiver goes to the thread once it is running: moved into the closure, it would be
    // lost with it if the spawn failed, and the fallback below could not have it.
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("selfprov-media-{index}"))
        .spawn(move || {
            set_fifo_priority(priority);
            let Ok(commands) = rx.recv() else { return };
            match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt.block_on(Engine::new(index, true).run(commands)),
                Err(e) => tracing::error!(
                    error = %e,
                    engine = index,
                    "the media thread could not build its runtime: its calls get no media"
                ),
            }
        });
    match spawned {
        Ok(_) => {
            let _ = tx.send(commands);
        }
        Err(e) => {
            tracing::warn!(
                error = %e,
                engine = index,
                "could not start a real-time media thread; this engine runs as an ordinary task"
            );
            tokio::spawn(Engine::new(index, false).run(commands));
        }
    }
}

/// Puts the calling thread in `SCHED_FIFO` at `priority`; logs a warning saying what to do if
/// the system refuses.
fn set_fifo_priority(priority: u8) {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param {
            sched_priority: i32::from(priority),
        };
        // SAFETY: pthread_self is always valid for the calling thread; `param` is a valid
        // sched_param that outlives the call.
        let r =
            unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
        if r != 0 {
            tracing::warn!(
                error = %std::io::Error::from_raw_os_error(r),
                priority,
                "rtp.realtime_priority: the media thread could not get SCHED_FIFO and runs at \
                 normal priority. Run selfprov as root or with CAP_SYS_NICE (systemd: \
                 AmbientCapabilities=CAP_SYS_NICE), or set rtp.realtime_priority = 0"
            );
        } else {
            tracing::info!(priority, "media thread at SCHED_FIFO");
        }
    }
    #[cfg(not(target_os = "linux"))]
    tracing::warn!(
        priority,
        "rtp.realtime_priority is only supported on Linux: the media thread runs at normal priority"
    );
}

impl Engine {
    fn new(index: usize, own_thread: bool) -> Engine {
        let epoch = Instant::now();
        Engine {
            index,
            own_thread,
            epoch,
            calls: HashMap::new(),
            wheel: (0..WHEEL).map(|_| Vec::new()).collect(),
            spare: Vec::new(),
            visited: Vec::new(),
            next_ms: 0,
            phase_load: [0; PHASES as usize],
            recv: RecvBatch::default(),
            tally: metrics::global().rtp_tally(),
            last_flush: epoch,
        }
    }

    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut timer = PreciseTimer::new();
        if !timer.is_precise() {
            tracing::warn!("no timerfd: the media engine's clock falls back to 1 ms resolution");
        }
        let mut armed: Option<Instant> = None;
        let mut behind = false;
        loop {
            if behind {
                // Slots are due already: let the other tasks run, then go on. On a real-time
                // thread there are no other tasks, and it would keep ordinary threads off the
                // core: it gives the core away for a moment instead.
                if self.own_thread {
                    std::thread::sleep(OVERLOAD_PAUSE);
                } else {
                    tokio::task::yield_now().await;
                }
                while let Ok(cmd) = commands.try_recv() {
                    self.apply(cmd, Instant::now());
                }
                behind = self.run_due(Instant::now());
                continue;
            }
            let wake = self.next_wake();
            if wake != armed {
                if let Some(w) = wake {
                    timer.set(w);
                }
                armed = wake;
            }
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.apply(cmd, Instant::now()),
                    None => return,
                },
                _ = timer.wait(), if armed.is_some() => {
                    if let Some(due) = armed.take() {
                        metrics::global()
                            .media_wake_lateness(Instant::now().saturating_duration_since(due));
                    }
                }
            }
            while let Ok(cmd) = commands.try_recv() {
                self.apply(cmd, Instant::now());
            }
            behind = self.run_due(Instant::now());
        }
    }

    fn ms_of(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// The first millisecond at or after `t` (a deadline in the middle of one is served at its
    /// end, never early).
    fn ceil_ms(epoch: Instant, t: Instant) -> u64 {
        let d = t.saturating_duration_since(epoch);
        let ms = d.as_millis() as u64;
        if d > Duration::from_millis(ms) {
            ms + 1
        } else {
            ms
        }
    }

    fn at_ms(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// The start of the first non-empty slot, if any call is live.
    fn next_wake(&self) -> Option<Instant> {
        if self.calls.is_empty() {
            return None;
        }
        (self.next_ms..self.next_ms + WHEEL)
            .find(|ms| !self.wheel[(ms % WHEEL) as usize].is_empty())
            .map(|ms| self.at_ms(ms))
    }

    /// A start on the engine's grid after `now`: `keep`'s phase, else the fullest phase below
    /// [`PHASE_FILL`] (the soonest among equals), else the emptiest.
    fn pick_start(&self, now: Instant, keep: Option<usize>) -> (u64, usize) {
        let first = self.ms_of(now) + 1;
        let candidates = (first..first + PHASES).map(|ms| (ms, (ms % PHASES) as usize));
        if let Some(k) = keep {
            if let Some(c) = candidates.clone().find(|(_, p)| *p == k) {
                return c;
            }
        }
        let load = |p: usize| self.phase_load[p];
        candidates
            .clone()
            .filter(|(_, p)| load(*p) < PHASE_FILL)
            .max_by_key(|(ms, p)| (load(*p), std::cmp::Reverse(*ms)))
            .or_else(|| candidates.min_by_key(|(ms, p)| (load(*p), *ms)))
            .unwrap_or((first, (first % PHASES) as usize))
    }

    fn schedule(&mut self, id: u64, ms: u64) {
        if let Some(e) = self.calls.get_mut(&id) {
            e.due_ms = ms;
            self.wheel[(ms % WHEEL) as usize].push((id, ms));
        }
    }

    fn apply(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Add(new) => {
                let NewCall {
                    id,
                    socket,
                    params,
                    inactivity,
                    events,
                    span,
                } = *new;
                let (ms, phase) = self.pick_start(now, None);
                let session = MediaSession::new(params, self.at_ms(ms), inactivity);
                self.phase_load[phase] += 1;
                span.in_scope(|| {
                    tracing::debug!(engine = self.index, phase, "media session started")
                });
                self.calls.insert(
                    id,
                    Entry {
                        session,
                        socket,
                        events,
                        span,
                        due_ms: ms,
                        phase,
                        since_drain: 0,
                    },
                );
                self.schedule(id, ms);
            }
            Command::Update(id, params) => {
                let Some(e) = self.calls.get(&id) else { return };
                let (ms, _) = self.pick_start(now, Some(e.phase));
                let restart = self.at_ms(ms);
                let epoch = self.epoch;
                let Some(e) = self.calls.get_mut(&id) else {
                    return;
                };
                if e.session.update(params, now, restart) {
                    let due = Self::ceil_ms(epoch, e.session.next_deadline());
                    self.schedule(id, due);
                }
            }
            Command::Play(id, prompts, generation) => {
                if let Some(e) = self.calls.get_mut(&id) {
                    e.session.play(prompts, generation);
                }
            }
            Command::Stop(id) => {
                if let Some(e) = self.calls.get_mut(&id) {
                    e.session.stop();
                }
            }
            Command::Remove(id) => self.remove(id),
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(mut e) = self.calls.remove(&id) {
            self.phase_load[e.phase] = self.phase_load[e.phase].saturating_sub(1);
            let c = e.session.take_counts();
            self.tally.add(c.sent, c.received, c.skipped);
            self.tally.flush();
        }
    }

    /// Visits the calls whose slot has come, slot by slot, until about [`VISITS_PER_TURN`]
    /// calls were visited; returns true when due slots remain (the caller yields, then calls
    /// again). A task late by more than the whole wheel visits each slot once: the sessions'
    /// pacers send a bounded burst and skip the rest.
    fn run_due(&mut self, now: Instant) -> bool {
        let now_ms = self.ms_of(now);
        if now_ms >= self.next_ms + WHEEL {
            self.next_ms = now_ms + 1 - WHEEL;
        }
        let mut visits = 0;
        let mut gone = Vec::new();
        while self.next_ms <= now_ms && visits < VISITS_PER_TURN {
            let slot = (self.next_ms % WHEEL) as usize;
            let mut entries =
                std::mem::replace(&mut self.wheel[slot], std::mem::take(&mut self.spare));
            for (id, ms) in entries.drain(..) {
                if ms > now_ms {
                    // A lap ahead: not yet.
                    self.wheel[slot].push((id, ms));
                    continue;
                }
                let epoch = self.epoch;
                let Some(e) = self.calls.get_mut(&id) else {
                    continue;
                };
                if e.due_ms != ms {
                    continue; // rescheduled meanwhile
                }
                visits += 1;
                send_due(e, now);
                self.visited.push(id);
                let mut due = Self::ceil_ms(epoch, e.session.next_deadline());
                if due <= now_ms {
                    due = now_ms + 1;
                }
                e.due_ms = due;
                if due % WHEEL == slot as u64 {
                    // Only with a packet time of a whole number of laps: keep it in this slot.
                    self.spare.push((id, due));
                } else {
                    self.wheel[(due % WHEEL) as usize].push((id, due));
                }
            }
            self.wheel[slot].append(&mut self.spare);
            self.spare = entries;
            self.next_ms += 1;
            // Every due packet of the slot is out; now what came in, and what to tell the calls.
            for id in self.visited.drain(..) {
                if let Some(e) = self.calls.get_mut(&id) {
                    if !receive(e, now, &mut self.recv, &mut self.tally) {
                        gone.push(id);
                    }
                }
            }
        }
        for id in gone {
            self.remove(id);
        }
        if now.saturating_duration_since(self.last_flush) >= FLUSH_EVERY {
            self.tally.flush();
            self.last_flush = now;
        }
        self.next_ms <= now_ms
    }
}

/// A call's turn, first half: the packets due. Every call of a slot sends before any socket is
/// drained, so a packet's send time within the slot does not depend on what the calls before it
/// received.
fn send_due(e: &mut Entry, now: Instant) {
    let socket = &e.socket;
    let span = &e.span;
    e.session
        .on_tick(now, |packet, to| match socket.send_to(packet, to) {
            Ok(_) => true,
            Err(err) => {
                span.in_scope(|| tracing::debug!(error = %err, %to, "RTP send failed"));
                false
            }
        });
}

/// A call's turn, second half: what arrived (every [`DRAIN_EVERY_MS`]), and what to tell the
/// call. False when the call's task has gone (its session is then removed).
fn receive(e: &mut Entry, now: Instant, recv: &mut RecvBatch, tally: &mut RtpTally) -> bool {
    e.since_drain += 1;
    let drain_every = (DRAIN_EVERY_MS / e.session.params().ptime.max(1)).max(1);
    while e.since_drain >= drain_every {
        let n = recv.recv(&e.socket);
        for i in 0..n {
            if let Some((data, from)) = recv.get(i) {
                e.session.on_datagram(now, data, from);
            }
        }
        if n < super::udp_batch::BATCH {
            e.since_drain = 0;
        }
    }
    let c = e.session.take_counts();
    tally.add(c.sent, c.received, c.skipped);
    while let Some(ev) = e.session.poll_event() {
        if let MediaEvent::Latched(from) = ev {
            e.span.in_scope(
                || tracing::info!(%from, "symmetric RTP: sending to the caller's source address"),
            );
        }
        if e.events.send(ev).is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::rtp;

    fn params(remote: std::net::SocketAddr) -> MediaParams {
        MediaParams::usual_phone(remote)
    }

    fn socket() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_nonblocking(true).unwrap();
        s
    }

    /// Real sockets, a real runtime: packets every 20 ms on the wheel, a prompt's end and a
    /// digit reported, and the socket closed when the handle is dropped.
    #[tokio::test]
    async fn carries_many_calls_on_one_task() {
        carries_many_calls(MediaEngines::start(1, 0)).await;
    }

    /// The same on a real-time media thread (`rtp.realtime_priority`): SCHED_FIFO when the
    /// test runs as root, as in CI; otherwise the thread runs at normal priority, with a warning.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn carries_many_calls_on_a_realtime_thread() {
        let engines = MediaEngines::start(1, 10);
        // The thread's policy, from /proc/self/task/<tid>/sched ("policy : 1" is SCHED_FIFO),
        // once it has set it.
        let policy = || {
            std::fs::read_dir("/proc/self/task")
                .ok()?
                .flatten()
                .find_map(|t| {
                    let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
                    if comm.trim() != "selfprov-media-" {
                        return None;
                    }
                    let sched = std::fs::read_to_string(t.path().join("sched")).ok()?;
                    sched.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        (k.trim() == "policy").then(|| v.trim().to_string())
                    })
                })
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut seen = policy();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        while std::time::Instant::now() < deadline
            && (seen.is_none() || (root && seen.as_deref() != Some("1")))
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
            seen = policy();
        }
        assert!(seen.is_some(), "no selfprov-media-0 thread");
        if root {
            assert_eq!(seen.as_deref(), Some("1"), "the media thread is SCHED_FIFO");
        }
        carries_many_calls(engines).await;
    }

    async fn carries_many_calls(engines: MediaEngines) {
        let phone = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut calls = Vec::new();
        for _ in 0..30 {
            let (tx, rx) = mpsc::unbounded_channel();
            let s = socket();
            let port = s.local_addr().unwrap();
            let h = engines.add(
                s,
                params(phone.local_addr().unwrap()),
                Duration::from_secs(30),
                tx,
            );
            calls.push((h, rx, port));
        }
        let prompt = Arc::new(Prompt::from_pcm("p", vec![500; 800]));
        calls[0].0.play(vec![prompt], 9);
        // One second of packets from 30 calls: about 50 each, on a 20 ms grid per source.
        let mut per_source: HashMap<std::net::SocketAddr, Vec<(u16, u32)>> = HashMap::new();
        let mut buf = [0u8; 2048];
        let end = tokio::time::Instant::now() + Duration::from_millis(1000);
        while let Ok(Ok((n, from))) = tokio::time::timeout_at(end, phone.recv_from(&mut buf)).await
        {
            let p = rtp::parse(&buf[..n]).expect("RTP");
            per_source
                .entry(from)
                .or_default()
                .push((p.seq, p.timestamp));
        }
        assert_eq!(per_source.len(), 30);
        for (from, pkts) in &per_source {
            assert!(
                (45..=52).contains(&pkts.len()),
                "{from}: {} packets",
                pkts.len()
            );
            for w in pkts.windows(2) {
                assert_eq!(w[1].0, w[0].0.wrapping_add(1), "{from}: sequence");
                assert_eq!(w[1].1, w[0].1.wrapping_add(160), "{from}: timestamp");
            }
        }
        // 800 samples = 5 packets: finished long ago.
        assert_eq!(
            calls[0].1.try_recv().ok(),
            Some(MediaEvent::PlaybackFinished { generation: 9 })
        );
        // A digit sent to call 1 comes back as an event.
        let mut s = rtp::RtpSender::with_initial(1, 1, 0);
        let mut pkt = Vec::new();
        s.build(101, true, &[7, 0x0a, 0, 160], &mut pkt);
        phone.send_to(&pkt, calls[1].2).await.unwrap();
        let ev = tokio::time::timeout(Duration::from_secs(2), calls[1].1.recv())
            .await
            .unwrap();
        assert_eq!(
            ev,
            Some(MediaEvent::Digit(
                '7',
                crate::media::session::DigitSource::Rfc4733
            ))
        );
        // Dropping the handles closes the sockets: the ports can be bound again.
        let ports: Vec<_> = calls.iter().map(|c| c.2).collect();
        drop(calls);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        for port in ports {
            loop {
                if UdpSocket::bind(port).is_ok() {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "{port} still bound");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }

    #[test]
    fn few_calls_share_a_phase_and_many_are_spread_evenly() {
        let mut e = Engine::new(0, false);
        let now = Instant::now();
        let mut phases = Vec::new();
        let mut add = |e: &mut Engine, n: u32| {
            for _ in 0..n {
                let (ms, p) = e.pick_start(now, None);
                assert_eq!(ms % PHASES, p as u64);
                assert!(ms > e.ms_of(now) && ms <= e.ms_of(now) + PHASES);
                e.phase_load[p] += 1;
                phases.push(p);
            }
        };
        add(&mut e, PHASE_FILL);
        let busy: Vec<_> = e.phase_load.iter().filter(|&&n| n > 0).collect();
        assert_eq!(busy, vec![&PHASE_FILL], "the first calls share one wake-up");
        add(&mut e, 1);
        assert_eq!(e.phase_load.iter().filter(|&&n| n > 0).count(), 2);
        // Past PHASE_FILL everywhere, calls go to the emptiest phase: even.
        add(
            &mut e,
            PHASE_FILL * PHASES as u32 - PHASE_FILL - 1 + 2 * PHASES as u32,
        );
        assert!(
            e.phase_load.iter().all(|&n| n == PHASE_FILL + 2),
            "{:?}",
            e.phase_load
        );
        // An update keeps the call's phase.
        let (ms, p) = e.pick_start(now, Some(phases[3]));
        assert_eq!((p, ms % PHASES), (phases[3], phases[3] as u64));
    }
}
