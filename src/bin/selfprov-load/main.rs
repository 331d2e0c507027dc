//! `selfprov-load`: places N concurrent calls at a given rate against any SIP IVR over UDP,
//! and measures what the callers experience and what the server spends.
//!
//! Each call: INVITE with an SDP offer (PCMU, telephone-event/8000 at PT 101), ACK of the 200,
//! 20 ms silence PCMU to the server, RFC 4733 key presses on a script (`--digits`), and a BYE
//! after `--hold` unless the server hangs up first. Every RTP packet the server sends is
//! timestamped on arrival: inter-arrival deviation from 20 ms (p50/p99/p99.9/max) and loss from
//! sequence gaps. It reports calls attempted/answered/failed (by reason), INVITE-to-200 latency,
//! keys sent, who ended each call, the server's CPU and RSS from `/proc/<pid>` over the steady
//! state window (every call up, none ended yet), and its own CPU, as a table and one JSON line.
//!
//! Built to stay cheap so it is not the bottleneck: one current-thread tokio runtime, one UDP
//! socket for SIP shared by all calls, one RTP socket per call, and a single timer loop. The
//! loop ticks every 2 ms through a 10-slot wheel: call `i` lives in slot `i % 10` and is visited
//! every 20 ms (one packet per visit, its SIP timers checked at the same time), so sends are
//! spread evenly over the packet interval and there is no timer per call or per packet. The
//! wheel's deadlines are `start + n × 2 ms` (no drift); a late loop catches up tick by tick.
//! The same visit drains the call's RTP socket with one `recvmmsg` (the sockets are never
//! registered with the reactor, so nothing wakes per packet), and every datagram carries the
//! time the kernel received it (`SO_TIMESTAMPNS`): the jitter figures do not depend on when this
//! process got round to reading, only on when packets arrived.
//!
//! With `--register <provisioning address>` each caller is a new phone instead (`phone.rs`):
//! guest config over HTTP, REGISTER with digest, INVITE answering the 407, and after the
//! server's BYE the resync NOTIFY on its registered contact, timed from the last key.
//!
//! Not implemented: authentication outside phone mode (401/407 count as failures), TCP, CANCEL
//! on set-up timeout, Record-Route (in-dialog requests go straight to the server).

mod call;
mod phone;
mod report;
mod stats;

use anyhow::{bail, Context};
use bytes::Bytes;
use call::{Dialog, MediaTx, Script, Timing, PTIME};
use clap::Parser;
use rand::Rng;
use selfprov::server::udp_batch::{enable_timestamps, RecvBatch};
use selfprov::sip::message::{parse, Message, Method, Request, Response};
use stats::{read_proc, Histogram, ProcSample, RxStats};
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::SystemTime;
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;

/// Wheel tick and slots: 10 × 2 ms = one packet interval.
const TICK: Duration = Duration::from_millis(2);
const SLOTS: u64 = 10;
/// A loop more than this many ticks late skips ahead instead of bursting (counted).
const MAX_CATCH_UP_TICKS: u64 = 50;
/// RFC 3261 timers for our client transactions over UDP.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
const TIMER_F: Duration = Duration::from_secs(32);
/// How often /proc is sampled.
const SAMPLE_EVERY_TICKS: u64 = 250;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "selfprov-load",
    version,
    about = "SIP/RTP load generator for IVRs: concurrent calls, RFC 4733 digits, jitter/loss, server CPU/RSS"
)]
pub struct Args {
    /// The IVR's SIP address (UDP), e.g. 127.0.0.1:5060.
    #[arg(long)]
    target: SocketAddr,
    /// The number dialled (Request-URI user).
    #[arg(long, default_value = "8000")]
    extension: String,
    /// Calls to place (all concurrent once the ramp is over, if --hold allows).
    #[arg(long, short = 'n', default_value_t = 10)]
    calls: usize,
    /// New calls per second.
    #[arg(long, default_value_t = 50.0)]
    rate: f64,
    /// How long each call stays up after the 200 before we send BYE (unless the server hangs
    /// up first).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    hold: Duration,
    /// Key groups to send as RFC 4733 events, comma separated, e.g. "1001#,4321#,1". `{n}` is
    /// replaced by the call's number (--index-base + index), for one user per call.
    #[arg(long, default_value = "")]
    digits: String,
    /// Pause before each key group, counted from the start of media, comma separated; the last
    /// one repeats (e.g. "3s,1500ms,5500ms").
    #[arg(long, default_value = "3s")]
    digit_pauses: String,
    /// Key-down time of each key.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    key_down: Duration,
    /// Silence between the keys of one group.
    #[arg(long, default_value = "100ms", value_parser = humantime::parse_duration)]
    key_gap: Duration,
    /// First call number for `{n}` in --digits.
    #[arg(long, default_value_t = 0)]
    index_base: u64,
    /// Local address for SIP and RTP sockets.
    #[arg(long, default_value = "127.0.0.1")]
    local_ip: IpAddr,
    /// INVITE without a final response for this long: the call fails ("timeout").
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    setup_timeout: Duration,
    /// PID of the server: its CPU and RSS are read from /proc over the steady-state window.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Give up on calls still running after this long (default: ramp + hold + 45 s).
    #[arg(long, value_parser = humantime::parse_duration)]
    max_time: Option<Duration>,
    /// Print the JSON line only (no table).
    #[arg(long)]
    json: bool,
    /// A label copied into the JSON (e.g. the run's name in a results file).
    #[arg(long, default_value = "")]
    label: String,
    /// Phone mode: the provisioning server's HTTP address. Each call first fetches its guest
    /// config there (`GET /<mac>.cfg` as a Yealink, MAC from --index-base + index), registers
    /// the guest account and dials with digest authentication; after a server hang-up it waits
    /// for the resync NOTIFY, timed from the last key.
    #[arg(long, value_name = "ADDR")]
    register: Option<SocketAddr>,
    /// Phone mode: how long to wait for the resync NOTIFY after the server's BYE.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    notify_timeout: Duration,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    /// Never answered: the reason ("503 Service Unavailable", "timeout", ...).
    Failed(String),
    ServerBye,
    OurBye,
    /// Our BYE got no final response within timer F.
    ByeTimeout,
    /// Still up (or setting up) at --max-time.
    Aborted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Phone mode: the guest config is being fetched.
    Fetching,
    /// Phone mode: REGISTER sent.
    Registering,
    Inviting,
    Established,
    Byeing,
    Done,
}

struct Call {
    slot: u64,
    dialog: Dialog,
    state: State,
    rtp_sock: Option<std::net::UdpSocket>,
    rx: RxStats,
    script: Script,
    invite: Bytes,
    invite_sent: Instant,
    retx_at: Instant,
    retx_interval: Duration,
    provisional: bool,
    answered_at: Option<Instant>,
    ack: Option<Bytes>,
    media: Option<MediaTx>,
    remote_rtp: Option<SocketAddr>,
    media_start_tick: u64,
    hold_until: Option<Instant>,
    bye: Option<Bytes>,
    bye_sent: Option<Instant>,
    end: Option<End>,
    /// Our RTP socket's address (the SDP offer).
    rtp_local: Option<SocketAddr>,
    /// Phone mode: the registration, and the REGISTER last sent (retransmitted until answered).
    reg: Option<phone::Registration>,
    reg_msg: Option<Bytes>,
    registered: bool,
    /// When the first packet of the script's last key went out.
    last_key_at: Option<Instant>,
    /// The first packet with sound (not mu-law silence) that arrived after the last key.
    audio_after_last_key: Option<Instant>,
    server_bye_at: Option<Instant>,
    /// Phone mode: the first NOTIFY on our contact, and its Event.
    notify_at: Option<Instant>,
    notify_event: Option<String>,
}

#[derive(Default)]
struct Counters {
    sip_unparseable: u64,
    sip_unmatched: u64,
    send_errors: u64,
    late_ticks: u64,
    skipped_ticks: u64,
    invite_retransmissions: u64,
    server_requests_other: u64,
    notify_unmatched: u64,
}

struct Engine {
    args: Args,
    groups: Vec<String>,
    timing: Timing,
    sip: Rc<UdpSocket>,
    sip_local: SocketAddr,
    t0: Instant,
    calls: Vec<Call>,
    by_call_id: HashMap<String, usize>,
    /// Phone mode: contact user (the NOTIFY's Request-URI) → call.
    by_contact: HashMap<String, usize>,
    /// Phone mode: calls whose guest config is to be fetched (the main loop spawns the fetch).
    to_fetch: Vec<usize>,
    slots: Vec<Vec<usize>>,
    setup: Histogram,
    /// RTP inter-arrival deviation of every call.
    deviation: Histogram,
    /// recvmmsg buffers, shared by every call's visit.
    recv: RecvBatch,
    /// This process's start on both clocks: kernel receive timestamps (wall clock) become
    /// `Instant`s through it.
    clock_base: (Instant, SystemTime),
    /// Sockets that refused SO_TIMESTAMPNS (arrival then taken when read).
    no_kernel_stamps: u64,
    /// How late the wheel ran each tick (its own scheduling delay: bounds what the jitter
    /// figures can resolve).
    loop_lag: Histogram,
    counters: Counters,
    server_samples: Vec<ProcSample>,
    self_samples: Vec<ProcSample>,
    server_idle: Option<ProcSample>,
    /// Every call launched and none still setting up.
    settled_at: Option<Instant>,
    /// The first answered call that ended (or began its BYE).
    first_end_at: Option<Instant>,
    /// A receive error on the SIP socket that stopped its task.
    sip_error: Option<String>,
}

fn random_token() -> String {
    format!("{:016x}", rand::rng().random::<u64>())
}

impl Engine {
    fn now_tick(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.t0).as_micros() / TICK.as_micros()) as u64
    }

    fn send_sip(&mut self, data: &[u8]) {
        if send_now(&self.sip, data, self.args.target).is_err() {
            self.counters.send_errors += 1;
        }
    }

    /// Starts call number `idx`: its RTP socket and receiver task, then the INVITE.
    fn launch(&mut self, idx: usize, now: Instant) {
        let n = self.args.index_base + idx as u64;
        let groups: Vec<String> = self
            .groups
            .iter()
            .map(|g| g.replace("{n}", &n.to_string()))
            .collect();
        let script = Script::new(&groups, &self.timing).unwrap_or_default();
        let target = self.args.target;
        let uri = format!("sip:{}@{}", self.args.extension, target);
        let dialog = Dialog {
            call_id: format!("{idx}-{}@selfprov-load", random_token()),
            from_tag: random_token(),
            to_tag: None,
            local_user: format!("load{n}"),
            local: self.sip_local,
            request_uri: uri.clone(),
            to_uri: uri,
            remote_target: None,
            invite_branch: format!("z9hG4bK{}", random_token()),
            invite_cseq: 1,
            proxy_authorization: None,
        };
        let mut call = Call {
            slot: idx as u64 % SLOTS,
            dialog,
            state: State::Inviting,
            rtp_sock: None,
            rx: RxStats::default(),
            script,
            invite: Bytes::new(),
            invite_sent: now,
            retx_at: now + T1,
            retx_interval: T1,
            provisional: false,
            answered_at: None,
            ack: None,
            media: None,
            remote_rtp: None,
            media_start_tick: 0,
            hold_until: None,
            bye: None,
            bye_sent: None,
            end: None,
            rtp_local: None,
            reg: None,
            reg_msg: None,
            registered: false,
            last_key_at: None,
            audio_after_last_key: None,
            server_bye_at: None,
            notify_at: None,
            notify_event: None,
        };
        let sock = std::net::UdpSocket::bind((self.args.local_ip, 0))
            .and_then(|s| s.set_nonblocking(true).map(|_| s));
        match sock.and_then(|s| s.local_addr().map(|a| (s, a))) {
            Ok((sock, local)) => {
                if enable_timestamps(&sock).is_err() {
                    self.no_kernel_stamps += 1;
                }
                call.rtp_sock = Some(sock);
                call.rtp_local = Some(local);
                self.by_call_id.insert(call.dialog.call_id.clone(), idx);
                if self.args.register.is_some() {
                    call.state = State::Fetching;
                    self.calls.push(call);
                    self.to_fetch.push(idx);
                } else {
                    call.invite = Bytes::from(call.dialog.invite(local, n));
                    let invite = call.invite.clone();
                    self.calls.push(call);
                    self.send_sip(&invite);
                }
            }
            Err(e) => {
                call.state = State::Done;
                call.end = Some(End::Failed(format!("RTP socket: {}", e.kind())));
                self.calls.push(call);
            }
        }
        if let Some(slot) = self.slots.get_mut(idx % SLOTS as usize) {
            slot.push(idx);
        }
    }

    /// Phone mode: the guest config arrived (or could not be had): REGISTER with its account.
    fn on_guest(&mut self, idx: usize, guest: anyhow::Result<phone::Guest>, now: Instant) {
        let guest = match guest {
            Ok(g) => g,
            Err(e) => {
                eprintln!("call {idx}: guest config: {e:#}");
                return self.finish(idx, End::Failed("guest config".into()), now);
            }
        };
        let Some(call) = self.calls.get_mut(idx) else {
            return;
        };
        if call.state != State::Fetching {
            return;
        }
        call.dialog.local_user = guest.number.clone();
        let reg = phone::Registration {
            guest,
            call_id: format!("reg{idx}-{}@selfprov-load", random_token()),
            from_tag: random_token(),
            cseq: 0,
            contact_user: format!("ph{idx}"),
        };
        self.by_call_id.insert(reg.call_id.clone(), idx);
        self.by_contact.insert(reg.contact_user.clone(), idx);
        call.reg = Some(reg);
        call.state = State::Registering;
        call.invite_sent = now;
        self.send_register(idx, None, now);
    }

    /// Sends (a new) REGISTER for call `idx`, with `authorization` when answering a challenge.
    fn send_register(&mut self, idx: usize, authorization: Option<&str>, now: Instant) {
        let (local, target) = (self.sip_local, self.args.target);
        let Some(call) = self.calls.get_mut(idx) else {
            return;
        };
        let Some(reg) = call.reg.as_mut() else {
            return;
        };
        let branch = format!("z9hG4bK{}", random_token());
        let msg = Bytes::from(reg.register(local, target, &branch, authorization));
        call.reg_msg = Some(msg.clone());
        call.retx_interval = T1;
        call.retx_at = now + T1;
        self.send_sip(&msg);
    }

    /// Phone mode: the registrar answered.
    fn on_register_response(&mut self, idx: usize, r: Response, now: Instant) {
        let Some(call) = self.calls.get_mut(idx) else {
            return;
        };
        if call.state != State::Registering || r.status < 200 {
            return;
        }
        let Some(reg) = call.reg.as_ref() else {
            return;
        };
        // Only answers to the REGISTER last sent count (a late answer to the first one is
        // dropped).
        if r.cseq().map(|c| c.seq).ok() != Some(reg.cseq) {
            return;
        }
        match r.status {
            200..=299 => {
                call.registered = true;
                call.reg_msg = None;
                call.state = State::Inviting;
                self.send_invite(idx, now);
            }
            401 if reg.cseq == 1 => {
                let uri = phone::register_uri(self.args.target);
                let auth = answer_challenge(&r, "WWW-Authenticate", &reg.guest, "REGISTER", &uri);
                match auth {
                    Some(a) => self.send_register(idx, Some(&a), now),
                    None => self.finish(
                        idx,
                        End::Failed("REGISTER: no usable challenge".into()),
                        now,
                    ),
                }
            }
            status => {
                let why = format!("REGISTER: {status} {}", r.reason);
                self.finish(idx, End::Failed(why), now)
            }
        }
    }

    /// (Re)builds and sends call `idx`'s INVITE, starting its set-up clock.
    fn send_invite(&mut self, idx: usize, now: Instant) {
        let n = self.args.index_base + idx as u64;
        let Some(call) = self.calls.get_mut(idx) else {
            return;
        };
        let Some(local) = call.rtp_local else {
            return;
        };
        call.invite = Bytes::from(call.dialog.invite(local, n));
        call.invite_sent = now;
        call.provisional = false;
        call.retx_interval = T1;
        call.retx_at = now + T1;
        let invite = call.invite.clone();
        self.send_sip(&invite);
    }

    fn finish(&mut self, idx: usize, end: End, now: Instant) {
        let Some(call) = self.calls.get_mut(idx) else {
            return;
        };
        if call.state == State::Done {
            return;
        }
        let was_up = call.answered_at.is_some() && call.state == State::Established;
        call.state = State::Done;
        call.end.get_or_insert(end);
        call.rtp_sock = None;
        if was_up && self.first_end_at.is_none() {
            self.first_end_at = Some(now);
        }
    }

    /// One wheel tick: the calls of this slot send their packet and check their timers.
    fn on_tick(&mut self, tick: u64, now: Instant) {
        let slot = (tick % SLOTS) as usize;
        let len = self.slots.get(slot).map_or(0, Vec::len);
        for i in 0..len {
            if let Some(&idx) = self.slots.get(slot).and_then(|s| s.get(i)) {
                self.visit(idx, tick, now);
            }
        }
    }

    /// Takes what the server sent this call since the last visit, each datagram at the time the
    /// kernel received it.
    fn drain_rtp(&mut self, idx: usize, now: Instant) {
        let Some(call) = self.calls.get_mut(idx) else {
            return;
        };
        let Some(sock) = call.rtp_sock.as_ref() else {
            return;
        };
        let (base_i, base_s) = self.clock_base;
        loop {
            let n = self.recv.recv(sock);
            for i in 0..n {
                let Some((data, _)) = self.recv.get(i) else {
                    continue;
                };
                let at = match self.recv.stamp(i) {
                    Some(t) => match t.duration_since(base_s) {
                        Ok(d) => base_i + d,
                        Err(e) => base_i.checked_sub(e.duration()).unwrap_or(base_i),
                    },
                    None => now,
                };
                call.rx.on_datagram(data, at, PTIME, &mut self.deviation);
                if call.audio_after_last_key.is_none()
                    && call.last_key_at.is_some_and(|k| at > k)
                    && is_sound(data)
                {
                    call.audio_after_last_key = Some(at);
                }
            }
            if n < selfprov::server::udp_batch::BATCH {
                break;
            }
        }
    }

    fn visit(&mut self, idx: usize, tick: u64, now: Instant) {
        self.drain_rtp(idx, now);
        let Some(call) = self.calls.get_mut(idx) else {
            return;
        };
        match call.state {
            State::Done | State::Fetching => {}
            State::Registering => {
                if now.saturating_duration_since(call.invite_sent) >= self.args.setup_timeout {
                    self.finish(idx, End::Failed("REGISTER timeout".into()), now);
                } else if now >= call.retx_at {
                    // Timer E: doubles up to T2.
                    call.retx_interval = (call.retx_interval * 2).min(T2);
                    call.retx_at = now + call.retx_interval;
                    if let Some(m) = call.reg_msg.clone() {
                        self.send_sip(&m);
                    }
                }
            }
            State::Inviting => {
                if now.saturating_duration_since(call.invite_sent) >= self.args.setup_timeout {
                    self.finish(idx, End::Failed("timeout".into()), now);
                } else if !call.provisional && now >= call.retx_at {
                    // Timer A (RFC 3261 §17.1.1.2): doubles, stops at the first provisional.
                    call.retx_interval *= 2;
                    call.retx_at = now + call.retx_interval;
                    let invite = call.invite.clone();
                    self.counters.invite_retransmissions += 1;
                    self.send_sip(&invite);
                }
            }
            State::Established => {
                if call.hold_until.is_some_and(|h| now >= h) {
                    let branch = format!("z9hG4bK{}", random_token());
                    let bye = Bytes::from(call.dialog.bye(&branch));
                    call.bye = Some(bye.clone());
                    call.bye_sent = Some(now);
                    call.retx_interval = T1;
                    call.retx_at = now + T1;
                    call.state = State::Byeing;
                    call.end = Some(End::OurBye);
                    if self.first_end_at.is_none() {
                        self.first_end_at = Some(now);
                    }
                    self.send_sip(&bye);
                    return;
                }
                if tick < call.media_start_tick {
                    return;
                }
                let p = (tick - call.media_start_tick) / SLOTS;
                let (Some(media), Some(sock), Some(to)) =
                    (call.media.as_mut(), call.rtp_sock.as_ref(), call.remote_rtp)
                else {
                    return;
                };
                if call.last_key_at.is_none() {
                    let last = call.script.keys.len().checked_sub(1);
                    if let call::Packet::Event { index, k: 0 } = media.classify(&call.script, p) {
                        if Some(index) == last {
                            call.last_key_at = Some(now);
                        }
                    }
                }
                let pkt = media.build(&call.script, p);
                if send_now(sock, pkt, to).is_err() {
                    self.counters.send_errors += 1;
                }
            }
            State::Byeing => {
                let sent = call.bye_sent.unwrap_or(now);
                if now.saturating_duration_since(sent) >= TIMER_F {
                    self.finish(idx, End::ByeTimeout, now);
                    if let Some(c) = self.calls.get_mut(idx) {
                        c.end = Some(End::ByeTimeout);
                    }
                } else if now >= call.retx_at {
                    // Timer E: doubles up to T2.
                    call.retx_interval = (call.retx_interval * 2).min(T2);
                    call.retx_at = now + call.retx_interval;
                    if let Some(bye) = call.bye.clone() {
                        self.send_sip(&bye);
                    }
                }
            }
        }
    }

    fn on_sip(&mut self, data: &[u8], now: Instant) {
        match parse(data) {
            Ok(Message::Response(r)) => self.on_response(r, now),
            Ok(Message::Request(r)) => self.on_request(r, now),
            Err(_) => self.counters.sip_unparseable += 1,
        }
    }

    fn on_response(&mut self, r: Response, now: Instant) {
        let (Ok(call_id), Ok(cseq)) = (r.call_id(), r.cseq()) else {
            self.counters.sip_unparseable += 1;
            return;
        };
        let Some(&idx) = self.by_call_id.get(call_id) else {
            self.counters.sip_unmatched += 1;
            return;
        };
        let Some(call) = self.calls.get_mut(idx) else {
            return;
        };
        match cseq.method {
            Method::Register => self.on_register_response(idx, r, now),
            Method::Invite => self.on_invite_response(idx, r, now),
            Method::Bye if r.status >= 200 && call.state == State::Byeing => {
                self.finish(idx, End::OurBye, now)
            }
            _ => {}
        }
    }

    fn on_invite_response(&mut self, idx: usize, r: Response, now: Instant) {
        let tick_now = self.now_tick(now);
        let Some(call) = self.calls.get_mut(idx) else {
            return;
        };
        let status = r.status;
        if status < 200 {
            call.provisional = true;
            return;
        }
        let to_tag = r.to().ok().and_then(|t| t.tag().map(str::to_owned));
        if call.state != State::Inviting {
            // A retransmitted 200 (our ACK was lost): ACK it again.
            if (200..300).contains(&status) {
                if let Some(ack) = call.ack.clone() {
                    self.send_sip(&ack);
                }
            }
            return;
        }
        call.dialog.to_tag = to_tag;
        if status == 407 && call.dialog.proxy_authorization.is_none() {
            if let Some(guest) = call.reg.as_ref().map(|r| r.guest.clone()) {
                // ACK the 407 (same transaction), then INVITE again with credentials: a new
                // transaction (CSeq + 1, new branch), the same Call-ID and From tag.
                let ack = call.dialog.ack(false, "");
                let uri = call.dialog.request_uri.clone();
                let auth = answer_challenge(&r, "Proxy-Authenticate", &guest, "INVITE", &uri);
                call.dialog.to_tag = None;
                call.dialog.invite_cseq += 1;
                call.dialog.invite_branch = format!("z9hG4bK{}", random_token());
                call.dialog.proxy_authorization = auth;
                let ok = call.dialog.proxy_authorization.is_some();
                self.send_sip(ack.as_bytes());
                if ok {
                    self.send_invite(idx, now);
                } else {
                    self.finish(idx, End::Failed("INVITE: no usable challenge".into()), now);
                }
                return;
            }
        }
        if !(200..300).contains(&status) {
            let ack = call.dialog.ack(false, "");
            let reason = format!("{status} {}", r.reason);
            self.send_sip(ack.as_bytes());
            self.finish(idx, End::Failed(reason), now);
            return;
        }
        call.dialog.remote_target = r
            .contacts()
            .ok()
            .and_then(|c| c.into_iter().next())
            .map(|c| c.uri.to_string());
        let ack = Bytes::from(call.dialog.ack(true, &format!("z9hG4bK{}", random_token())));
        call.ack = Some(ack.clone());
        call.answered_at = Some(now);
        self.setup
            .record(now.saturating_duration_since(call.invite_sent));
        let answer = selfprov::media::sdp::parse_remote(&r.body);
        let media = match &answer {
            Ok(m) if m.formats.iter().any(|f| f.pt == 0) => m,
            Ok(_) => return self.answered_unusable(idx, ack, "answer without PCMU", now),
            Err(_) => return self.answered_unusable(idx, ack, "no usable SDP answer", now),
        };
        let Some(call) = self.calls.get_mut(idx) else {
            return;
        };
        call.remote_rtp = media.rtp_addr();
        call.media = Some(MediaTx::new(media.telephone_event.as_ref().map(|t| t.pt)));
        // Packet 0 at the first tick of our slot after now.
        let mut start = tick_now + 1;
        start += (call.slot + SLOTS - start % SLOTS) % SLOTS;
        call.media_start_tick = start;
        call.hold_until = Some(now + self.args.hold);
        call.state = State::Established;
        self.send_sip(&ack);
    }

    /// A 200 whose SDP we cannot use: ACK it, hang up, count the call as failed.
    fn answered_unusable(&mut self, idx: usize, ack: Bytes, why: &str, now: Instant) {
        self.send_sip(&ack);
        if let Some(call) = self.calls.get_mut(idx) {
            let bye = Bytes::from(call.dialog.bye(&format!("z9hG4bK{}", random_token())));
            call.bye = Some(bye.clone());
            call.bye_sent = Some(now);
            call.retx_at = now + T1;
            call.retx_interval = T1;
            call.state = State::Byeing;
            call.end = Some(End::Failed(why.into()));
            self.send_sip(&bye);
        }
    }

    fn on_request(&mut self, r: Request, now: Instant) {
        let idx = r
            .call_id()
            .ok()
            .and_then(|id| self.by_call_id.get(id).copied());
        if r.method == Method::Notify {
            return self.on_notify(r, now);
        }
        let status = match (&r.method, idx) {
            (Method::Ack, _) => return,
            (Method::Bye, Some(idx)) => {
                if let Some(c) = self.calls.get_mut(idx) {
                    c.server_bye_at.get_or_insert(now);
                }
                let state = self.calls.get(idx).map(|c| c.state);
                match state {
                    Some(State::Established) => self.finish(idx, End::ServerBye, now),
                    // Crossing BYEs: ours is pending; the call ends by the server's.
                    Some(State::Byeing) => {
                        if let Some(c) = self.calls.get_mut(idx) {
                            c.end = Some(End::ServerBye);
                        }
                        self.finish(idx, End::ServerBye, now);
                    }
                    _ => {}
                }
                200
            }
            (_, Some(_)) => {
                self.counters.server_requests_other += 1;
                200
            }
            (_, None) => {
                self.counters.server_requests_other += 1;
                481
            }
        };
        let resp = Response::for_request(&r, status, "");
        self.send_sip(&resp.to_bytes());
    }

    /// Phone mode: a NOTIFY to one of our contacts (the resync). Answered 200 (404 when the
    /// contact is not ours); the first one per phone is timed.
    fn on_notify(&mut self, r: Request, now: Instant) {
        let idx = r.uri.user().and_then(|u| self.by_contact.get(u).copied());
        let status = match idx.and_then(|i| self.calls.get_mut(i)) {
            Some(call) => {
                if call.notify_at.is_none() {
                    call.notify_at = Some(now);
                    call.notify_event = Some(r.headers.get("Event").unwrap_or("-").to_string());
                }
                200
            }
            None => {
                self.counters.notify_unmatched += 1;
                404
            }
        };
        let resp = Response::for_request(&r, status, "");
        self.send_sip(&resp.to_bytes());
    }

    fn sample(&mut self) {
        if let Some(pid) = self.args.server_pid {
            if let Some(s) = read_proc(&pid.to_string()) {
                self.server_samples.push(s);
            }
        }
        if let Some(s) = read_proc("self") {
            self.self_samples.push(s);
        }
    }

    fn settled(&self) -> bool {
        self.calls.len() == self.args.calls
            && self.calls.iter().all(|c| {
                !matches!(
                    c.state,
                    State::Inviting | State::Registering | State::Fetching
                )
            })
    }

    /// Every call ended, and in phone mode every phone the server hung up on has had its
    /// NOTIFY or waited --notify-timeout for it.
    fn all_done(&self, now: Instant) -> bool {
        let phone = self.args.register.is_some();
        self.calls.len() == self.args.calls
            && self.calls.iter().all(|c| {
                c.state == State::Done
                    && (!phone
                        || c.notify_at.is_some()
                        || c.server_bye_at.is_none_or(|b| {
                            now.saturating_duration_since(b) >= self.args.notify_timeout
                        }))
            })
    }
}

/// The credentials answering the first challenge in `header` we can use.
fn answer_challenge(
    r: &Response,
    header: &str,
    guest: &phone::Guest,
    method: &str,
    uri: &str,
) -> Option<String> {
    let challenge = r
        .headers
        .get_all(header)
        .find_map(|v| selfprov::sip::digest::Challenge::parse(v).ok())?;
    Some(challenge.authorization(
        &guest.auth_name,
        &guest.password,
        method,
        uri,
        1,
        &random_token(),
    ))
}

/// A PCMU packet carrying sound: any payload byte that is not one of mu-law's two zeros.
fn is_sound(datagram: &[u8]) -> bool {
    selfprov::media::rtp::parse(datagram)
        .is_some_and(|p| p.pt == 0 && p.payload.iter().any(|&b| b != 0xFF && b != 0x7F))
}

/// Sends a datagram with one `sendto` on the (non-blocking) socket. Not tokio's `try_send_to`:
/// that one answers WouldBlock until the reactor has seen the socket writable once, which
/// loses the first datagram of a fresh socket; sending never needs to wait on readiness here.
fn send_now<S: std::os::fd::AsFd>(sock: &S, data: &[u8], to: SocketAddr) -> std::io::Result<usize> {
    socket2::SockRef::from(sock).send_to(data, &to.into())
}

async fn receive_sip(engine: Rc<RefCell<Engine>>, sock: Rc<UdpSocket>) {
    let mut buf = vec![0u8; 65_535];
    loop {
        match sock.recv_from(&mut buf).await {
            Ok((n, _)) => {
                let now = Instant::now();
                engine
                    .borrow_mut()
                    .on_sip(buf.get(..n).unwrap_or_default(), now);
            }
            // ICMP port unreachable from an earlier send shows up here on Linux: keep going.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => continue,
            Err(e) => {
                engine.borrow_mut().sip_error = Some(e.to_string());
                return;
            }
        }
    }
}

fn parse_pauses(s: &str) -> anyhow::Result<Vec<Duration>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| humantime::parse_duration(p).with_context(|| format!("pause {p:?}")))
        .collect()
}

fn sip_socket(ip: IpAddr) -> anyhow::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    // Thousands of calls answer in bursts: a larger buffer (the kernel caps it at rmem_max).
    let _ = s.set_recv_buffer_size(8 << 20);
    let _ = s.set_send_buffer_size(8 << 20);
    s.bind(&SocketAddr::new(ip, 0).into())?;
    s.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(s.into())?)
}

async fn run(args: Args) -> anyhow::Result<report::Report> {
    // NaN rates are refused too.
    if args.calls == 0 || !args.rate.is_finite() || args.rate <= 0.0 {
        bail!("--calls must be at least 1 and --rate positive");
    }
    let groups: Vec<String> = args
        .digits
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    let timing = Timing {
        pauses: parse_pauses(&args.digit_pauses)?,
        key_down: args.key_down,
        key_gap: args.key_gap,
    };
    // Check the script once (with a sample call number) so a typo fails before any call.
    let sample: Vec<String> = groups.iter().map(|g| g.replace("{n}", "0")).collect();
    let script = Script::new(&sample, &timing).map_err(anyhow::Error::msg)?;
    let script_time = PTIME * script.len_packets() as u32;
    if !groups.is_empty() && script_time > args.hold {
        eprintln!(
            "warning: the digit script lasts {script_time:?}, longer than --hold {:?}",
            args.hold
        );
    }
    let ramp = Duration::from_secs_f64((args.calls as f64 - 1.0).max(0.0) / args.rate);
    let max_time = args.max_time.unwrap_or(
        ramp + args.hold + args.setup_timeout + args.notify_timeout + Duration::from_secs(45),
    );
    let sip = Rc::new(sip_socket(args.local_ip).context("SIP socket")?);
    let sip_local = sip.local_addr()?;

    let t0 = Instant::now();
    let mut engine = Engine {
        groups,
        timing,
        sip: sip.clone(),
        sip_local,
        t0,
        calls: Vec::with_capacity(args.calls),
        by_call_id: HashMap::with_capacity(args.calls),
        by_contact: HashMap::new(),
        to_fetch: Vec::new(),
        slots: vec![Vec::new(); SLOTS as usize],
        setup: Histogram::default(),
        deviation: Histogram::default(),
        recv: RecvBatch::default(),
        clock_base: (Instant::now(), SystemTime::now()),
        no_kernel_stamps: 0,
        loop_lag: Histogram::default(),
        counters: Counters::default(),
        server_samples: Vec::new(),
        self_samples: Vec::new(),
        server_idle: None,
        settled_at: None,
        first_end_at: None,
        sip_error: None,
        args: args.clone(),
    };
    if let Some(pid) = args.server_pid {
        engine.server_idle =
            Some(read_proc(&pid.to_string()).with_context(|| format!("/proc/{pid}"))?);
    }
    engine.sample();
    let self_start = read_proc("self");
    let engine = Rc::new(RefCell::new(engine));
    let sip_task = tokio::task::spawn_local(receive_sip(engine.clone(), sip));

    let call_interval = Duration::from_secs_f64(1.0 / args.rate);
    let mut tick: u64 = 0;
    let ended_at;
    loop {
        let deadline = t0 + TICK * tick as u32;
        if deadline > Instant::now() {
            tokio::time::sleep_until(deadline.into()).await;
        } else {
            // Catching up: still let the receive tasks and the SIP socket run between ticks, or
            // a late wheel would starve them and make itself later.
            tokio::task::yield_now().await;
        }
        let now = Instant::now();
        let mut e = engine.borrow_mut();
        e.loop_lag.record(now.saturating_duration_since(deadline));
        let behind = e.now_tick(now).saturating_sub(tick);
        if behind > 0 {
            e.counters.late_ticks += 1;
        }
        if behind > MAX_CATCH_UP_TICKS {
            // Far behind (the machine is overloaded): jump, and say so in the report.
            e.counters.skipped_ticks += behind;
            tick += behind;
        }
        // Launch the calls that are due.
        while e.calls.len() < args.calls {
            let idx = e.calls.len();
            if t0 + call_interval * idx as u32 > now {
                break;
            }
            e.launch(idx, now);
        }
        // Phone mode: fetch the new calls' guest configs, each in a task of its own.
        if let Some(server) = args.register {
            for idx in std::mem::take(&mut e.to_fetch) {
                let mac = phone::mac(args.index_base + idx as u64);
                let (engine, timeout) = (engine.clone(), args.setup_timeout);
                tokio::task::spawn_local(async move {
                    let guest = phone::fetch_guest(server, &mac, timeout).await;
                    engine.borrow_mut().on_guest(idx, guest, Instant::now());
                });
            }
        }
        e.on_tick(tick, now);
        if e.settled_at.is_none() && e.settled() {
            e.settled_at = Some(now);
        }
        if tick % SAMPLE_EVERY_TICKS == 0 {
            e.sample();
        }
        if e.all_done(now) || now.saturating_duration_since(t0) >= max_time || e.sip_error.is_some()
        {
            for idx in 0..e.calls.len() {
                e.finish(idx, End::Aborted, now);
            }
            ended_at = now;
            break;
        }
        drop(e);
        tick += 1;
    }
    sip_task.abort();
    let self_end = read_proc("self");
    let mut e = engine.borrow_mut();
    e.sample();
    if let Some(err) = &e.sip_error {
        eprintln!("error: SIP socket: {err}");
    }
    Ok(report::build(&e, self_start, self_end, ended_at))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let local = tokio::task::LocalSet::new();
    let json = args.json;
    match local.block_on(&rt, run(args)) {
        Ok(r) => {
            if !json {
                print!("{}", r.table());
            }
            println!("{}", r.json());
            if r.calls_failed > 0 {
                std::process::ExitCode::from(1)
            } else {
                std::process::ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Failure reasons and end causes, counted.
fn tally<'a>(
    items: impl Iterator<Item = &'a End>,
) -> (BTreeMap<String, u64>, BTreeMap<&'static str, u64>) {
    let mut failed = BTreeMap::new();
    let mut ended = BTreeMap::new();
    for end in items {
        let key = match end {
            End::Failed(why) => {
                *failed.entry(why.clone()).or_insert(0) += 1;
                "failed"
            }
            End::ServerBye => "server_bye",
            End::OurBye => "our_bye",
            End::ByeTimeout => "bye_timeout",
            End::Aborted => "aborted",
        };
        *ended.entry(key).or_insert(0) += 1;
    }
    (failed, ended)
}
