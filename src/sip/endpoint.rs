//! The sans-IO SIP user-agent core of the IVR (RFC 3261 §8, §12, §13, §15, §17; RFC 3581;
//! RFC 6026): datagrams / TCP frames and the current time go in, datagrams to send, timer
//! deadlines and call events come out. It never touches a socket or a clock, so every behaviour
//! (retransmission schedules, timeouts, NAT handling) is testable with simulated time.
//!
//! The tokio layer drives it like quinn-proto: after every `handle_input` / `handle_timeout` /
//! command it drains [`Endpoint::poll_transmit`] and [`Endpoint::poll_event`] and sleeps until
//! [`Endpoint::poll_timeout`].
//!
//! Decisions worth knowing:
//! - In-dialog requests we send (BYE) go to the Peer the INVITE came from (symmetric signalling,
//!   works behind NAT), not to the Contact's host; the Request-URI and Route are still built from
//!   the remote target and route set (§12.2.1.1). On TCP that is the same connection; if it has
//!   been closed ([`Endpoint::connection_closed`]) the Peer has `conn: None`, meaning "open (or
//!   reuse) a connection to `addr`".
//! - Timers live in one binary heap of (deadline, target, kind) with lazy deletion: an entry is
//!   live only if its target still has exactly that deadline armed. Stale entries are popped
//!   after every call, so [`Endpoint::poll_timeout`] is a peek.
//! - A retransmitted INVITE after our 2xx is absorbed by the RFC 6026 Accepted state rather than
//!   creating a second call.
//! - A re-INVITE arriving before we answered a previous one gets 500 + Retry-After (RFC 3261
//!   §14.2); one arriving while our 2xx awaits its ACK gets 491 (the offer/answer exchange is
//!   still open, RFC 3261 §14.2 / RFC 6337).
//! - Behind a proxy: the INVITE's Record-Route is copied into our 180 and 2xx (§12.1.1) and is
//!   the dialog's route set, so the ACK, INFOs and our BYE go through the proxy; our requests
//!   go to the first route's address ([`crate::sip::route::next_hop`]).
//! - 100rel (RFC 3262): an INVITE that requires it gets a reliable 180 at once (RSeq, Require:
//!   100rel, retransmitted on UDP with a doubling interval until its PRACK). We hold the 2xx
//!   until that PRACK (the RFC allows sending it earlier for a 1xx without SDP; waiting keeps a
//!   single offer/answer in flight and suits phones that expect the PRACK's 200 first). No
//!   PRACK within 64*T1: the INVITE gets 500 (§3).
//! - Trusted proxies (`EndpointConfig::trusted_proxies`): an INVITE from one is not challenged;
//!   its P-Asserted-Identity (RFC 3325) naming the AOR of an account with a live binding makes
//!   that the call's account, as if the phone had authenticated. From anyone else the header is
//!   removed before the call sees the INVITE.

mod auth;
mod reliable;
mod wire;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, warn};

use super::dialog::{new_tag, Dialog};
use super::message::{self, Message, Method, Request, Response, Uri};
use super::registrar::{AuthRequest, Registrar, RegistrarEvent};
use super::route;
use super::transaction::{
    new_branch, Absorb, ClientOutcome, ClientState, ClientTx, Retransmitter, ServerKind,
    ServerState, ServerTx, TimerKind, TimerOutcome, Timers, TxKey,
};
use super::trust::{self, IpNet};

/// Methods we implement (Allow header of 405/501/OPTIONS/2xx).
pub const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, PRACK";
/// [`ALLOW`] once the registrar is enabled ([`Endpoint::enable_registrar`]). NOTIFY is not
/// listed: we send NOTIFYs (resync) but do not accept any (Allow lists what we serve, §20.5).
pub const ALLOW_WITH_REGISTER: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, PRACK, REGISTER";
/// Body types we accept (INVITE: SDP; INFO: DTMF).
pub const ACCEPT: &str = "application/sdp, application/dtmf-relay, application/dtmf";
/// Option tags we support: reliable provisional responses (RFC 3262, see [`Endpoint::accept`])
/// and Path (RFC 3327, the registrar). No session timers (a phone asking for `timer` refreshes
/// with re-INVITE itself, which we answer); any other Require gets 420.
pub const SUPPORTED: &[&str] = &["100rel", "path"];
/// DTMF INFO content types (lower case).
const INFO_TYPES: [&str; 2] = ["application/dtmf-relay", "application/dtmf"];
/// Retry-After of 503 when full.
const RETRY_AFTER_FULL_SECS: u32 = 5;

/// Transport a message came in on / must go out on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp)
    }
    fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
}

/// The other side of a message. For TCP, `conn` is the layer's connection id; `None` on TCP
/// means "open (or reuse) a connection to `addr`".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    pub conn: Option<u64>,
}

/// One datagram (UDP) or one message to write on a stream (TCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub peer: Peer,
    pub data: Bytes,
}

/// Our handle for one call (one INVITE dialog).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// What happened to a call.
// `Incoming` carries the whole INVITE by contract; events are a handful per call, so the size
// difference between variants costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A new INVITE for one of the IVR extensions passed all checks (100 Trying already sent).
    /// The layer must answer with [`Endpoint::accept`] or [`Endpoint::reject`]. `offer` is the
    /// SDP body (None = late offer).
    ///
    /// `account` is the authenticated SIP account when the INVITE came from the source address
    /// of a live registrar binding (then it was challenged with 407 and verified); `None` for
    /// callers that are not registered here.
    Incoming {
        invite: Request,
        offer: Option<Bytes>,
        source: Peer,
        account: Option<i64>,
    },
    /// The ACK for our 2xx arrived. `answer` = SDP in the ACK (late-offer case). Also emitted for
    /// the ACK of a re-INVITE 2xx, but only when that re-INVITE had no SDP and the ACK carries the
    /// answer; other re-INVITE ACKs are absorbed silently.
    Confirmed { answer: Option<Bytes> },
    /// CANCEL before we answered: the endpoint already sent 200 to the CANCEL and 487 to the
    /// INVITE. Followed by `Ended { reason: Cancelled }`.
    Cancelled,
    /// In-dialog re-INVITE (100 already sent): answer with [`Endpoint::accept_reinvite`] or
    /// [`Endpoint::reject_reinvite`]. `offer` None = the re-INVITE had no SDP (we must offer).
    /// If the caller CANCELs it first, the endpoint answers 487 itself and a later
    /// accept/reject is ignored.
    ReInvite { offer: Option<Bytes> },
    /// In-dialog INFO with a DTMF body (already answered 200).
    Info { content_type: String, body: Bytes },
    /// The call is over; no more events for this CallId.
    Ended { reason: EndReason },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The caller sent BYE (answered 200).
    RemoteBye,
    /// Our BYE got a final response (any status).
    LocalBye,
    /// Our BYE got no final response within timer F.
    LocalByeTimeout,
    /// No ACK for our 2xx within 64*T1; a BYE has been sent.
    AckTimeout,
    /// We rejected the INVITE ([`Endpoint::reject`], or [`Endpoint::hangup`] before answering).
    Rejected,
    /// The caller cancelled before we answered.
    Cancelled,
    /// The TCP connection our BYE was pending on closed.
    TransportError,
}

/// Configuration (the fields the server layer sets).
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// What we put in Via and Contact (the public address).
    pub local_addr: SocketAddr,
    /// Request-URI users (SIP user part or tel number) we answer INVITEs for.
    pub ivr_extensions: Vec<String>,
    /// Server header of responses and User-Agent of requests ("" = none).
    pub user_agent: String,
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    /// Proxies whose P-Asserted-Identity is believed and whose INVITEs are not challenged.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            local_addr: SocketAddr::from(([127, 0, 0, 1], 5060)),
            ivr_extensions: Vec::new(),
            user_agent: format!("selfprov/{}", env!("CARGO_PKG_VERSION")),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Capacity limits ([`Endpoint::with_limits`]); [`Endpoint::new`] uses the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Live calls above which new INVITEs get 503 + Retry-After. Default 10,000.
    pub max_calls: usize,
    /// Live server transactions above which new requests get 503 + Retry-After (bounds the
    /// memory an OPTIONS/REGISTER flood can pin for 64*T1). Default 50,000.
    pub max_transactions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_calls: 10_000,
            max_transactions: 50_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    /// INVITE received, not answered yet.
    Early,
    /// 2xx sent, waiting for the ACK.
    Answered,
    /// ACK received.
    Confirmed,
    /// Our BYE is pending.
    Terminating,
}

#[derive(Debug)]
struct PendingReInvite {
    tx: u64,
    request: Request,
    source: Peer,
    has_offer: bool,
}

#[derive(Debug)]
struct Pending2xx {
    retx: Retransmitter,
    cseq: u32,
    /// The INVITE had no SDP: our 2xx carries the offer and the ACK the answer.
    late_offer: bool,
    /// 2xx to the initial INVITE (the ACK confirms the dialog).
    initial: bool,
}

/// Our reliable provisional response (RFC 3262) until its PRACK.
#[derive(Debug)]
struct Reliable1xx {
    rseq: u32,
    bytes: Bytes,
    peer: Peer,
    interval: Duration,
    /// Next retransmission (UDP only; a reliable transport carries it once).
    retransmit_at: Option<Instant>,
    /// 64*T1 after it was first sent: the INVITE then gets 500.
    expire_at: Instant,
    /// The SDP [`Endpoint::accept`] gave while the PRACK was still outstanding: the 2xx goes
    /// out when the PRACK comes.
    deferred_answer: Option<Bytes>,
}

#[derive(Debug)]
struct Call {
    state: CallState,
    dialog: Dialog,
    invite: Request,
    invite_tx: u64,
    /// Where the INVITE came from: responses are routed from it and our requests go to it.
    source: Peer,
    ext: String,
    pending_2xx: Option<Pending2xx>,
    reinvite: Option<PendingReInvite>,
    /// hangup() before the ACK arrived: send BYE when it does (§15).
    bye_after_ack: bool,
    /// The reliable 180 awaiting its PRACK (RFC 3262), if the INVITE required 100rel.
    reliable: Option<Reliable1xx>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Target {
    Server(u64),
    Client(u64),
    Call(CallId),
    /// A call's reliable provisional response (retransmission, PRACK deadline).
    Prov(CallId),
    /// The bindings of a registrar account (deadline: its earliest expiry).
    Aor(i64),
    /// A credential lookup the layer has not answered yet.
    Auth(u64),
}

type TimerEntry = Reverse<(Instant, Target, TimerKind)>;

/// The server transaction a response goes in: to be created, or already open.
#[derive(Debug)]
enum TxSlot {
    New(TxKey),
    Open(u64),
}

/// The UA core. See the module documentation.
#[derive(Debug)]
pub struct Endpoint {
    cfg: EndpointConfig,
    limits: Limits,
    timers: Timers,
    next_id: u64,
    calls: HashMap<CallId, Call>,
    /// (Call-ID, remote tag) → call. Our local tag is checked after lookup.
    dialogs: HashMap<(String, String), CallId>,
    server_txs: HashMap<u64, ServerTx>,
    server_index: HashMap<TxKey, u64>,
    client_txs: HashMap<u64, ClientTx>,
    client_index: HashMap<String, u64>,
    heap: BinaryHeap<TimerEntry>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<(CallId, CallEvent)>,
    /// None until [`Endpoint::enable_registrar`]: REGISTER then gets 405.
    registrar: Option<Registrar>,
    /// Requests waiting for a credential, by [`AuthId`](super::registrar::AuthId) value.
    pending_auth: HashMap<u64, auth::PendingAuth>,
    auth_requests: VecDeque<AuthRequest>,
    reg_events: VecDeque<RegistrarEvent>,
    /// Failed INVITE authentications by (source, Call-ID), bounded (see auth.rs).
    invite_failures: HashMap<(SocketAddr, String), (u32, Instant)>,
    /// TCP connections a phone allowed us to reuse (RFC 5923 `alias`), not yet polled.
    aliases: VecDeque<(u64, SocketAddr)>,
}

impl Endpoint {
    pub fn new(config: EndpointConfig) -> Self {
        Self::with_limits(config, Limits::default())
    }

    pub fn with_limits(config: EndpointConfig, limits: Limits) -> Self {
        let timers = Timers {
            t1: config.t1,
            t2: config.t2,
            t4: config.t4,
        }
        .sanitised();
        Endpoint {
            cfg: config,
            limits,
            timers,
            next_id: 1,
            calls: HashMap::new(),
            dialogs: HashMap::new(),
            server_txs: HashMap::new(),
            server_index: HashMap::new(),
            client_txs: HashMap::new(),
            client_index: HashMap::new(),
            heap: BinaryHeap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            registrar: None,
            pending_auth: HashMap::new(),
            auth_requests: VecDeque::new(),
            reg_events: VecDeque::new(),
            invite_failures: HashMap::new(),
            aliases: VecDeque::new(),
        }
    }

    /// Replaces the IVR extensions (the self-provisioning settings changed at run time).
    pub fn set_ivr_extensions(&mut self, extensions: Vec<String>) {
        self.cfg.ivr_extensions = extensions;
    }

    pub fn config(&self) -> &EndpointConfig {
        &self.cfg
    }

    /// One UDP datagram or one complete TCP frame from `peer`. Never panics on any input.
    pub fn handle_input(&mut self, now: Instant, data: &[u8], peer: Peer) {
        match message::parse(data) {
            Ok(Message::Request(req)) => self.on_request(now, req, peer),
            Ok(Message::Response(resp)) => self.on_response(now, resp, peer),
            Err(e) => self.on_unparseable(data, &e, peer),
        }
        self.purge_stale();
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((at, target, kind))) = self.heap.peek() {
            if at > now {
                break;
            }
            self.heap.pop();
            self.fire(now, at, target, kind);
        }
        self.purge_stale();
    }

    /// The earliest pending deadline (O(1)).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<(CallId, CallEvent)> {
        self.events.pop_front()
    }

    /// A TCP connection whose peer put `alias` in its Via (RFC 5923 §5): requests to the Via's
    /// sent-by address may use that connection. `(connection, sent-by address)`.
    pub fn poll_alias(&mut self) -> Option<(u64, SocketAddr)> {
        self.aliases.pop_front()
    }

    /// Live calls (from Incoming until Ended).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }

    /// Answers an Incoming call: 200 OK with `sdp`, Contact, Allow; retransmitted until the ACK.
    /// While our reliable 180 awaits its PRACK (RFC 3262) the 2xx is held and goes out with the
    /// PRACK's 200.
    pub fn accept(&mut self, now: Instant, call: CallId, sdp: Bytes) {
        let Some(c) = self.calls.get(&call) else {
            warn!(?call, "accept: no such call");
            return;
        };
        if c.state != CallState::Early {
            warn!(?call, state = ?c.state, "accept: call is not waiting for an answer");
            return;
        }
        if let Some(r) = self.calls.get_mut(&call).and_then(|c| c.reliable.as_mut()) {
            debug!(?call, "2xx held until the PRACK of our reliable 180");
            r.deferred_answer = Some(sdp);
            return;
        }
        self.send_initial_2xx(now, call, sdp);
        self.purge_stale();
    }

    /// The 2xx of the initial INVITE, retransmitted until the ACK.
    fn send_initial_2xx(&mut self, now: Instant, call: CallId, sdp: Bytes) {
        let Some(c) = self.calls.get(&call) else {
            return;
        };
        let (tx, invite, source, tag, ext) = (
            c.invite_tx,
            c.invite.clone(),
            c.source,
            c.dialog.local_tag.clone(),
            c.ext.clone(),
        );
        let late_offer = offer_of(&invite).is_none();
        let Some(bytes) = self.respond_2xx(now, tx, &invite, &source, &tag, &ext, sdp, true) else {
            return;
        };
        let cseq = invite.cseq().map(|c| c.seq).unwrap_or_default();
        let dest = self.server_txs.get(&tx).map(|t| t.peer).unwrap_or(source);
        let retx = Retransmitter::new(
            now,
            bytes,
            dest,
            source.transport.is_reliable(),
            &self.timers,
        );
        if let Some(c) = self.calls.get_mut(&call) {
            c.state = CallState::Answered;
            c.pending_2xx = Some(Pending2xx {
                retx,
                cseq,
                late_offer,
                initial: true,
            });
        }
        self.arm_call(call);
    }

    /// Rejects an Incoming call with `status` (300..=699; anything else becomes 500).
    pub fn reject(&mut self, now: Instant, call: CallId, status: u16) {
        let Some(c) = self.calls.get(&call) else {
            warn!(?call, "reject: no such call");
            return;
        };
        if c.state != CallState::Early {
            warn!(?call, state = ?c.state, "reject: call is not waiting for an answer");
            return;
        }
        self.reject_early_invite(now, call, final_error_status(status));
        self.end_call(call, EndReason::Rejected);
        self.purge_stale();
    }

    /// Answers a pending re-INVITE with 200 + `sdp` (retransmitted until its ACK).
    pub fn accept_reinvite(&mut self, now: Instant, call: CallId, sdp: Bytes) {
        let Some(c) = self.calls.get_mut(&call) else {
            warn!(?call, "accept_reinvite: no such call");
            return;
        };
        let Some(re) = c.reinvite.take() else {
            warn!(?call, "accept_reinvite: no re-INVITE pending");
            return;
        };
        c.dialog.refresh_target(&re.request);
        let (tag, ext) = (c.dialog.local_tag.clone(), c.ext.clone());
        let Some(bytes) =
            self.respond_2xx(now, re.tx, &re.request, &re.source, &tag, &ext, sdp, false)
        else {
            return;
        };
        let dest = self
            .server_txs
            .get(&re.tx)
            .map(|t| t.peer)
            .unwrap_or(re.source);
        let cseq = re.request.cseq().map(|c| c.seq).unwrap_or_default();
        let reliable = re.source.transport.is_reliable();
        let retx = Retransmitter::new(now, bytes, dest, reliable, &self.timers);
        if let Some(c) = self.calls.get_mut(&call) {
            c.pending_2xx = Some(Pending2xx {
                retx,
                cseq,
                late_offer: !re.has_offer,
                initial: false,
            });
        }
        self.arm_call(call);
        self.purge_stale();
    }

    /// Rejects a pending re-INVITE (the session stays as it was). 300..=699, else 500.
    pub fn reject_reinvite(&mut self, now: Instant, call: CallId, status: u16) {
        let Some(c) = self.calls.get_mut(&call) else {
            warn!(?call, "reject_reinvite: no such call");
            return;
        };
        let Some(re) = c.reinvite.take() else {
            warn!(?call, "reject_reinvite: no re-INVITE pending");
            return;
        };
        let status = final_error_status(status);
        self.respond_in_tx(now, re.tx, &re.request, &re.source, status, None, |_| {});
        self.purge_stale();
    }

    /// Ends a call from our side: 480 before it was answered (Ended{Rejected}); BYE once
    /// confirmed (Ended{LocalBye} / {LocalByeTimeout} later); if our 2xx still awaits its ACK the
    /// BYE is sent when the ACK arrives (RFC 3261 §15) or when the ACK times out.
    pub fn hangup(&mut self, now: Instant, call: CallId) {
        let Some(c) = self.calls.get_mut(&call) else {
            debug!(?call, "hangup: no such call");
            return;
        };
        match c.state {
            CallState::Early => {
                self.reject_early_invite(now, call, 480);
                self.end_call(call, EndReason::Rejected);
            }
            CallState::Answered => c.bye_after_ack = true,
            CallState::Confirmed => {
                // A pending re-INVITE must still get its final response (§15.1.2 recommends
                // 487 for requests pending when the dialog ends).
                if let Some(re) = c.reinvite.take() {
                    self.respond_in_tx(now, re.tx, &re.request, &re.source, 487, None, |_| {});
                }
                if let Some(c) = self.calls.get_mut(&call) {
                    c.pending_2xx = None;
                }
                self.send_bye(now, call, true);
            }
            CallState::Terminating => {}
        }
        self.purge_stale();
    }

    /// The TCP connection `conn` is gone: a BYE pending on it fails (Ended{TransportError});
    /// calls and transactions that would answer on it fall back to `conn: None` (the layer
    /// opens a new connection to the address if it ever has to send there).
    pub fn connection_closed(&mut self, conn: u64) {
        let failed: Vec<u64> = self
            .client_txs
            .iter()
            .filter(|(_, t)| {
                t.peer.conn == Some(conn)
                    && matches!(t.state, ClientState::Trying | ClientState::Proceeding)
            })
            .map(|(id, _)| *id)
            .collect();
        self.fail_client_txs(failed);
        if let Some(r) = self.registrar.as_mut() {
            r.connection_closed(conn);
        }
        for p in self.pending_auth.values_mut() {
            if p.src.conn == Some(conn) {
                p.src.conn = None;
            }
        }
        for c in self.calls.values_mut() {
            if c.source.conn == Some(conn) {
                c.source.conn = None;
            }
            if let Some(p) = c.pending_2xx.as_mut() {
                if p.retx.peer.conn == Some(conn) {
                    p.retx.peer.conn = None;
                }
            }
            if let Some(re) = c.reinvite.as_mut() {
                if re.source.conn == Some(conn) {
                    re.source.conn = None;
                }
            }
        }
        for t in self.server_txs.values_mut() {
            if t.peer.conn == Some(conn) {
                t.peer.conn = None;
            }
        }
        self.purge_stale();
    }

    /// Our requests `ids` can no longer be sent or answered (their transport failed): each
    /// ends as a transport error (no final response), and a call waiting on it ends.
    fn fail_client_txs(&mut self, ids: Vec<u64>) {
        for id in ids {
            if let Some(tx) = self.remove_client(id) {
                if tx.reports_end {
                    self.end_call(tx.call, EndReason::TransportError);
                }
                self.report_request_done(id, &tx.method, None);
            }
        }
    }

    /// No TCP connection could be opened to `addr`: our requests waiting to go there (sent
    /// with `conn: None`) fail now rather than at timer F, as if their connection had closed.
    pub fn connect_failed(&mut self, addr: SocketAddr) {
        let failed: Vec<u64> = self
            .client_txs
            .iter()
            .filter(|(_, t)| {
                t.peer.transport == Transport::Tcp
                    && t.peer.conn.is_none()
                    && t.peer.addr == addr
                    && matches!(t.state, ClientState::Trying | ClientState::Proceeding)
            })
            .map(|(id, _)| *id)
            .collect();
        self.fail_client_txs(failed);
        self.purge_stale();
    }

    // -----------------------------------------------------------------------------------------
    // Input dispatch
    // -----------------------------------------------------------------------------------------

    fn on_unparseable(&mut self, data: &[u8], err: &message::ParseError, src: Peer) {
        if data.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
            // CRLF keep-alives (RFC 5626 §4.4.1) and NUL pings some phones send over UDP.
            return;
        }
        match wire::scan_raw_request(data) {
            Some(raw) => {
                let status = err.status_code();
                warn!(peer = ?src, error = %err, method = %raw.method, status, "malformed SIP request, answering");
                let reason = wire::reason_for(status, &err.to_string());
                let (bytes, dest) =
                    wire::raw_bad_request(&raw, &src, status, &reason, &self.cfg.user_agent);
                self.send(dest, bytes);
            }
            None => {
                warn!(peer = ?src, error = %err, len = data.len(), "dropping unparseable SIP message (not enough to answer)");
            }
        }
    }

    fn on_request(&mut self, now: Instant, req: Request, src: Peer) {
        if let Err(e) = req.validate() {
            if req.method == Method::Ack {
                warn!(peer = ?src, error = %e, "dropping malformed ACK");
                return;
            }
            if self.has_response_headers(&req) {
                warn!(peer = ?src, error = %e, method = %req.method, "invalid SIP request, answering 400");
                let reason = wire::reason_from_error(&e.to_string());
                self.send_stateless(&req, &src, 400, |r| r.reason = reason);
            } else {
                warn!(peer = ?src, error = %e, method = %req.method, "dropping invalid SIP request (not enough to answer)");
            }
            return;
        }
        if let (Transport::Tcp, Some(conn)) = (src.transport, src.conn) {
            self.note_alias(&req, conn);
        }
        match req.method {
            Method::Ack => return self.on_ack(now, req),
            Method::Cancel => return self.on_cancel(now, req, src),
            _ => {}
        }
        let Some(key) = TxKey::for_request(&req) else {
            // validate() guarantees a parseable Via, so this is unreachable in practice.
            warn!(peer = ?src, "request without a usable top Via");
            return;
        };
        if self.absorb_retransmission(&key, &src) {
            return;
        }
        if self.server_txs.len() >= self.limits.max_transactions {
            warn!(peer = ?src, method = %req.method, "transaction table full, answering 503");
            self.send_stateless(&req, &src, 503, |r| {
                r.headers
                    .push("Retry-After", RETRY_AFTER_FULL_SECS.to_string())
            });
            return;
        }
        if req.method == Method::Register && self.registrar.is_some() {
            // REGISTER never belongs to a dialog (some phones copy the To tag of the last 200
            // into refreshes), so it is routed before the To-tag split.
            return self.on_register(now, req, key, src);
        }
        match req.to().ok().and_then(|t| t.tag().map(str::to_owned)) {
            Some(to_tag) => self.on_in_dialog(now, req, key, src, &to_tag),
            None => self.on_out_of_dialog(now, req, key, src),
        }
    }

    /// RFC 5923: a top Via with `alias` and an IP sent-by offers the connection for requests
    /// to that address.
    fn note_alias(&mut self, req: &Request, conn: u64) {
        let Ok(via) = req.top_via() else {
            return;
        };
        if via.params.get("alias").is_none() {
            return;
        }
        let ip = match via.host {
            message::Host::V4(a) => std::net::IpAddr::V4(a),
            message::Host::V6(a) => std::net::IpAddr::V6(a),
            message::Host::Name(_) => return,
        };
        let addr = SocketAddr::new(ip, via.port.unwrap_or(route::DEFAULT_SIP_PORT));
        if self.aliases.len() < 1024 {
            self.aliases.push_back((conn, addr));
        }
    }

    /// A request matching a live server transaction: resend its last response or swallow it.
    fn absorb_retransmission(&mut self, key: &TxKey, src: &Peer) -> bool {
        let Some(&id) = self.server_index.get(key) else {
            return false;
        };
        let Some(tx) = self.server_txs.get(&id) else {
            return false;
        };
        if let Absorb::Resend(bytes) = tx.on_retransmission() {
            // On TCP a retransmission can only come on a new connection: answer on that one.
            let dest = if src.transport.is_reliable() {
                *src
            } else {
                tx.peer
            };
            self.send(dest, bytes);
        }
        true
    }

    fn on_out_of_dialog(&mut self, now: Instant, req: Request, key: TxKey, src: Peer) {
        if matches!(req.max_forwards(), Ok(Some(0))) {
            self.respond_new_tx(now, &req, key, src, 483, None, |_| {});
            return;
        }
        if let Some(status) = method_status(&req.method) {
            let allow = self.allow();
            self.respond_new_tx(now, &req, key, src, status, None, |r| {
                r.headers.push("Allow", allow)
            });
            return;
        }
        if self.reject_unsupported_require(now, &req, &key, src) {
            return;
        }
        match req.method {
            Method::Options => {
                let allow = self.allow();
                self.respond_new_tx(now, &req, key, src, 200, None, |r| {
                    options_headers(r, allow)
                });
            }
            Method::Invite => self.on_new_invite(now, req, key, src),
            // BYE / INFO without a To tag cannot belong to a dialog of ours.
            _ => {
                self.respond_new_tx(now, &req, key, src, 481, None, |_| {});
            }
        }
    }

    /// §8.2.2.3: 420 listing the Require option tags we do not support. True if answered.
    fn reject_unsupported_require(
        &mut self,
        now: Instant,
        req: &Request,
        key: &TxKey,
        src: Peer,
    ) -> bool {
        let unsupported: Vec<String> = wire::header_tokens(&req.headers, "Require")
            .into_iter()
            .filter(|t| !SUPPORTED.iter().any(|s| s.eq_ignore_ascii_case(t)))
            .collect();
        if unsupported.is_empty() {
            return false;
        }
        let list = unsupported.join(", ");
        self.respond_new_tx(now, req, key.clone(), src, 420, None, |r| {
            r.headers.push("Unsupported", list)
        });
        true
    }

    fn on_new_invite(&mut self, now: Instant, req: Request, key: TxKey, src: Peer) {
        if self.calls.len() >= self.limits.max_calls {
            warn!(peer = ?src, calls = self.calls.len(), "call limit reached, answering 503");
            self.respond_new_tx(now, &req, key, src, 503, None, |r| {
                r.headers
                    .push("Retry-After", RETRY_AFTER_FULL_SECS.to_string())
            });
            return;
        }
        if matches!(req.uri, Uri::Other(_)) {
            self.respond_new_tx(now, &req, key, src, 416, None, |_| {});
            return;
        }
        let mut req = req;
        if trust::is_trusted(&self.cfg.trusted_proxies, src.addr.ip()) {
            // A trusted proxy authenticated the caller (or not); it is never challenged.
            let account = self.asserted_account(&req);
            debug!(peer = ?src, ?account, "INVITE from a trusted proxy");
            return self.admit_invite(now, req, TxSlot::New(key), src, account);
        }
        if req.headers.get("P-Asserted-Identity").is_some() {
            // RFC 3325 §5: an assertion from outside the trust domain means nothing; it is
            // removed so nothing downstream reads it.
            debug!(peer = ?src, "P-Asserted-Identity from an untrusted source, removed");
            req.headers.remove("P-Asserted-Identity");
        }
        if self
            .registrar
            .as_ref()
            .is_some_and(|r| r.is_bound_source(&src.addr))
        {
            // A registered phone: it must prove which account it is (407), see auth.rs.
            return self.authenticate_invite(now, req, key, src);
        }
        self.admit_invite(now, req, TxSlot::New(key), src, None);
    }

    /// The rest of a new INVITE's checks, then the call and its Incoming event. `slot` is the
    /// INVITE's server transaction: new, or already open (100 sent) while its credentials were
    /// looked up. `account`: the authenticated account id and whether it is a guest.
    fn admit_invite(
        &mut self,
        now: Instant,
        req: Request,
        slot: TxSlot,
        src: Peer,
        account: Option<(i64, bool)>,
    ) {
        if self.calls.len() >= self.limits.max_calls {
            warn!(peer = ?src, calls = self.calls.len(), "call limit reached, answering 503");
            self.answer_slot(now, &req, slot, src, 503, |r| {
                r.headers
                    .push("Retry-After", RETRY_AFTER_FULL_SECS.to_string())
            });
            return;
        }
        let ext = req
            .uri
            .user()
            .filter(|u| self.cfg.ivr_extensions.iter().any(|e| e == u))
            .map(str::to_owned);
        let Some(ext) = ext else {
            if let Some((account, true)) = account {
                debug!(peer = ?src, account, uri = %req.uri, "guest calling a non-IVR number, answering 403");
                self.answer_slot(now, &req, slot, src, 403, |r| {
                    r.reason = "Forbidden (guests may only call the IVR)".into()
                });
            } else {
                debug!(peer = ?src, uri = %req.uri, "INVITE for an unknown extension, answering 404");
                self.answer_slot(now, &req, slot, src, 404, |_| {});
            }
            return;
        };
        if !req.body.is_empty() && req.content_type().as_deref() != Some("application/sdp") {
            self.answer_slot(now, &req, slot, src, 415, |r| {
                r.headers.push("Accept", "application/sdp")
            });
            return;
        }
        let call_id = req.call_id().unwrap_or_default().to_owned();
        let from_tag = remote_tag(&req);
        if self
            .dialogs
            .contains_key(&(call_id.clone(), from_tag.clone()))
        {
            // §8.2.2.2: same Call-ID and From tag as a live call but a different transaction
            // (a forked or looped copy).
            self.answer_slot(now, &req, slot, src, 482, |_| {});
            return;
        }
        let dialog = match Dialog::new_uas(&req, new_tag()) {
            Ok(d) => d,
            Err(e) => {
                warn!(peer = ?src, error = %e.0, "INVITE cannot create a dialog, answering 400");
                let reason = wire::reason_from_error(&e.0);
                self.answer_slot(now, &req, slot, src, 400, |r| r.reason = reason);
                return;
            }
        };
        let id = CallId(self.alloc_id());
        let tx = match slot {
            TxSlot::New(key) => self.respond_new_tx(now, &req, key, src, 100, None, |_| {}),
            TxSlot::Open(tx) => tx,
        };
        if let Some(t) = self.server_txs.get_mut(&tx) {
            t.call = Some(id);
        }
        let offer = offer_of(&req);
        // RFC 3262 §3: a Require: 100rel INVITE gets every non-100 provisional reliably. We
        // send one (180) only then; a phone that merely supports 100rel gets none.
        let requires_100rel = wire::header_tokens(&req.headers, "Require")
            .iter()
            .any(|t| t.eq_ignore_ascii_case("100rel"));
        self.dialogs.insert((call_id, from_tag), id);
        self.calls.insert(
            id,
            Call {
                state: CallState::Early,
                dialog,
                invite: req.clone(),
                invite_tx: tx,
                source: src,
                ext,
                pending_2xx: None,
                reinvite: None,
                bye_after_ack: false,
                reliable: None,
            },
        );
        self.events.push_back((
            id,
            CallEvent::Incoming {
                invite: req,
                offer,
                source: src,
                account: account.map(|(a, _)| a),
            },
        ));
        if requires_100rel {
            self.send_reliable_180(now, id);
        }
    }

    /// Sends a final response in a new server transaction, or in an open one.
    fn answer_slot(
        &mut self,
        now: Instant,
        req: &Request,
        slot: TxSlot,
        src: Peer,
        status: u16,
        f: impl FnOnce(&mut Response),
    ) {
        match slot {
            TxSlot::New(key) => {
                self.respond_new_tx(now, req, key, src, status, None, f);
            }
            TxSlot::Open(tx) => {
                self.respond_in_tx(now, tx, req, &src, status, None, f);
            }
        }
    }

    fn find_dialog(&self, req: &Request, to_tag: &str) -> Option<CallId> {
        let call_id = req.call_id().ok()?;
        let id = *self.dialogs.get(&(call_id.to_owned(), remote_tag(req)))?;
        let call = self.calls.get(&id)?;
        (call.dialog.local_tag == to_tag).then_some(id)
    }

    fn on_in_dialog(&mut self, now: Instant, req: Request, key: TxKey, src: Peer, to_tag: &str) {
        if let Method::Other(_) = req.method {
            let allow = self.allow();
            self.respond_new_tx(now, &req, key, src, 501, None, |r| {
                r.headers.push("Allow", allow)
            });
            return;
        }
        let Some(id) = self.find_dialog(&req, to_tag) else {
            debug!(peer = ?src, method = %req.method, "request for an unknown dialog, answering 481");
            self.respond_new_tx(now, &req, key, src, 481, None, |_| {});
            return;
        };
        if let Some(status) = method_status(&req.method) {
            let allow = self.allow();
            self.respond_new_tx(now, &req, key, src, status, None, |r| {
                r.headers.push("Allow", allow)
            });
            return;
        }
        if self.reject_unsupported_require(now, &req, &key, src) {
            return;
        }
        let seq = req.cseq().map(|c| c.seq).unwrap_or_default();
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if !call.dialog.accept_remote_cseq(seq) {
            debug!(
                ?id,
                seq, "in-dialog request with a lower CSeq, answering 500"
            );
            self.respond_new_tx(now, &req, key, src, 500, None, |_| {});
            return;
        }
        let state = call.state;
        match req.method {
            Method::Bye => {
                self.respond_new_tx(now, &req, key, src, 200, None, |_| {});
                if state == CallState::Terminating {
                    // BYEs crossed: our own BYE's response ends the call.
                    return;
                }
                self.terminate_pending(now, id);
                self.end_call(id, EndReason::RemoteBye);
            }
            _ if state == CallState::Terminating => {
                self.respond_new_tx(now, &req, key, src, 481, None, |_| {});
            }
            Method::Options => {
                let allow = self.allow();
                self.respond_new_tx(now, &req, key, src, 200, None, |r| {
                    options_headers(r, allow)
                });
            }
            Method::Info => self.on_info(now, id, req, key, src),
            Method::Invite => self.on_reinvite(now, id, req, key, src),
            Method::Prack => self.on_prack(now, id, req, key, src),
            _ => {
                let allow = self.allow();
                self.respond_new_tx(now, &req, key, src, 405, None, |r| {
                    r.headers.push("Allow", allow)
                });
            }
        }
    }

    /// Final responses to requests still pending when the remote side ends the dialog
    /// (487, §15.1.2), and no more 2xx retransmission.
    fn terminate_pending(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        c.pending_2xx = None;
        if let Some(re) = c.reinvite.take() {
            self.respond_in_tx(now, re.tx, &re.request, &re.source, 487, None, |_| {});
        }
        self.reject_early_invite(now, id, 487);
    }

    /// Answers the initial INVITE of call `id` with the final error `status` (and our To tag)
    /// while the call is still Early; nothing for a call that is gone or already answered.
    /// The caller decides whether the call ends.
    fn reject_early_invite(&mut self, now: Instant, id: CallId, status: u16) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        if c.state != CallState::Early {
            return;
        }
        let (tx, invite, source, tag) = (
            c.invite_tx,
            c.invite.clone(),
            c.source,
            c.dialog.local_tag.clone(),
        );
        self.respond_in_tx(now, tx, &invite, &source, status, Some(&tag), |_| {});
    }

    fn on_info(&mut self, now: Instant, id: CallId, req: Request, key: TxKey, src: Peer) {
        let ct = req.content_type();
        match ct {
            None if req.body.is_empty() => {
                // An empty INFO is a keep-alive probe: acknowledge, nothing to report.
                self.respond_new_tx(now, &req, key, src, 200, None, |_| {});
            }
            Some(ct) if INFO_TYPES.contains(&ct.as_str()) => {
                self.respond_new_tx(now, &req, key, src, 200, None, |_| {});
                self.events.push_back((
                    id,
                    CallEvent::Info {
                        content_type: ct,
                        body: req.body,
                    },
                ));
            }
            _ => {
                self.respond_new_tx(now, &req, key, src, 415, None, |r| {
                    r.headers
                        .push("Accept", "application/dtmf-relay, application/dtmf")
                });
            }
        }
    }

    fn on_reinvite(&mut self, now: Instant, id: CallId, req: Request, key: TxKey, src: Peer) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        if c.reinvite.is_some() {
            // §14.2: a second INVITE before we answered the first.
            let secs: u32 = rand::random_range(0..=10);
            self.respond_new_tx(now, &req, key, src, 500, None, |r| {
                r.headers.push("Retry-After", secs.to_string())
            });
            return;
        }
        if c.pending_2xx.is_some() || c.state != CallState::Confirmed {
            // Our 2xx (with an offer or answer) is not ACKed yet: glare.
            self.respond_new_tx(now, &req, key, src, 491, None, |_| {});
            return;
        }
        if !req.body.is_empty() && req.content_type().as_deref() != Some("application/sdp") {
            self.respond_new_tx(now, &req, key, src, 415, None, |r| {
                r.headers.push("Accept", "application/sdp")
            });
            return;
        }
        let tx = self.respond_new_tx(now, &req, key, src, 100, None, |_| {});
        if let Some(t) = self.server_txs.get_mut(&tx) {
            t.call = Some(id);
        }
        let offer = offer_of(&req);
        if let Some(c) = self.calls.get_mut(&id) {
            c.reinvite = Some(PendingReInvite {
                tx,
                request: req,
                source: src,
                has_offer: offer.is_some(),
            });
        }
        self.events.push_back((id, CallEvent::ReInvite { offer }));
    }

    fn on_ack(&mut self, now: Instant, req: Request) {
        // ACK for a non-2xx: same branch as the INVITE, absorbed by its transaction.
        if let Some(key) = TxKey::for_request(&req) {
            if let Some(&id) = self.server_index.get(&key) {
                if let Some(tx) = self.server_txs.get_mut(&id) {
                    if tx.on_ack(now, &self.timers) {
                        let (state, expire) = (tx.state, tx.expire_at);
                        if state == ServerState::Terminated {
                            self.remove_server(id);
                        } else {
                            self.arm(expire, Target::Server(id), TimerKind::Expire);
                        }
                        return;
                    }
                }
            }
        }
        // ACK for a 2xx: belongs to the dialog (§13.3.1.4).
        let Some(to_tag) = req.to().ok().and_then(|t| t.tag().map(str::to_owned)) else {
            debug!("ACK matching nothing, dropped");
            return;
        };
        let Some(id) = self.find_dialog(&req, &to_tag) else {
            debug!("ACK for an unknown dialog, dropped");
            return;
        };
        let seq = req.cseq().map(|c| c.seq).unwrap_or_default();
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(p) = c.pending_2xx.as_ref() else {
            return; // retransmitted ACK
        };
        if p.cseq != seq {
            return;
        }
        let answer = (!req.body.is_empty()).then(|| req.body.clone());
        let (initial, late_offer) = (p.initial, p.late_offer);
        c.pending_2xx = None;
        if initial {
            c.state = CallState::Confirmed;
            self.events.push_back((id, CallEvent::Confirmed { answer }));
        } else if late_offer && answer.is_some() {
            self.events.push_back((id, CallEvent::Confirmed { answer }));
        }
        if c.bye_after_ack {
            self.send_bye(now, id, true);
        }
    }

    fn on_cancel(&mut self, now: Instant, req: Request, src: Peer) {
        let (Some(key), Some(inv_key)) = (TxKey::for_request(&req), TxKey::cancelled_invite(&req))
        else {
            return;
        };
        if self.absorb_retransmission(&key, &src) {
            return;
        }
        let Some(&inv_id) = self.server_index.get(&inv_key) else {
            self.respond_new_tx(now, &req, key, src, 481, None, |_| {});
            return;
        };
        let (final_sent, call) = match self.server_txs.get(&inv_id) {
            Some(t) => (t.is_final(), t.call),
            None => (true, None),
        };
        let call = call.filter(|id| self.calls.contains_key(id));
        // §9.2: the CANCEL's 200 carries the same To tag as the INVITE's responses.
        let tag = call
            .and_then(|id| self.calls.get(&id))
            .map(|c| c.dialog.local_tag.clone());
        self.respond_new_tx(now, &req, key, src, 200, tag.as_deref(), |_| {});
        if final_sent {
            return; // too late: CANCEL has no effect on an answered INVITE
        }
        if self.cancel_pending_auth(now, inv_id) {
            return;
        }
        let Some((id, c)) = call.and_then(|id| self.calls.get(&id).map(|c| (id, c))) else {
            return;
        };
        if c.invite_tx == inv_id && c.state == CallState::Early {
            let (invite, source) = (c.invite.clone(), c.source);
            self.respond_in_tx(now, inv_id, &invite, &source, 487, tag.as_deref(), |_| {});
            self.events.push_back((id, CallEvent::Cancelled));
            self.end_call(id, EndReason::Cancelled);
        } else if c.reinvite.as_ref().is_some_and(|r| r.tx == inv_id) {
            if let Some(re) = self.calls.get_mut(&id).and_then(|c| c.reinvite.take()) {
                self.respond_in_tx(now, re.tx, &re.request, &re.source, 487, None, |_| {});
            }
        }
    }

    fn on_response(&mut self, now: Instant, resp: Response, src: Peer) {
        let branch = match resp.vias() {
            Ok(v) => v.first().and_then(|v| v.branch().map(str::to_owned)),
            Err(e) => {
                warn!(peer = ?src, error = %e, "dropping response with a bad Via");
                return;
            }
        };
        let Some(&id) = branch.as_ref().and_then(|b| self.client_index.get(b)) else {
            debug!(peer = ?src, status = resp.status, "response matching no transaction, dropped");
            return;
        };
        let Some(tx) = self.client_txs.get_mut(&id) else {
            return;
        };
        match resp.cseq() {
            Ok(c) if c.method == tx.method => {}
            _ => {
                warn!(peer = ?src, "response whose CSeq does not match its transaction, dropped");
                return;
            }
        }
        let outcome = tx.on_response(now, resp.status, &self.timers);
        let (state, expire, call, reports_end) = (tx.state, tx.expire_at, tx.call, tx.reports_end);
        let method = tx.method.clone();
        if let ClientOutcome::Final(status) = outcome {
            debug!(?call, status, %method, "client transaction answered");
            self.report_request_done(id, &method, Some(status));
            if state == ClientState::Terminated {
                self.remove_client(id);
            } else {
                self.arm(expire, Target::Client(id), TimerKind::Expire);
            }
            if reports_end {
                self.end_call(call, EndReason::LocalBye);
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Sending
    // -----------------------------------------------------------------------------------------

    fn send(&mut self, peer: Peer, data: Bytes) {
        self.transmits.push_back(Transmit { peer, data });
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Whether `req` has the raw headers a response copies (§8.2.6.2).
    fn has_response_headers(&self, req: &Request) -> bool {
        ["Via", "From", "To", "Call-ID", "CSeq"]
            .iter()
            .all(|h| req.headers.get(h).is_some())
    }

    /// A response outside any transaction (400 for invalid requests, 503 when full).
    fn send_stateless(
        &mut self,
        req: &Request,
        src: &Peer,
        status: u16,
        f: impl FnOnce(&mut Response),
    ) {
        let (mut resp, dest) = wire::build_response(req, src, status, None, &self.cfg.user_agent);
        f(&mut resp);
        self.send(dest, resp.to_bytes());
    }

    /// Creates a server transaction for `req` and sends its first response. Returns its id
    /// (the transaction is not stored when it is already terminated, e.g. a final non-INVITE
    /// response on TCP).
    #[allow(clippy::too_many_arguments)]
    fn respond_new_tx(
        &mut self,
        now: Instant,
        req: &Request,
        key: TxKey,
        src: Peer,
        status: u16,
        to_tag: Option<&str>,
        f: impl FnOnce(&mut Response),
    ) -> u64 {
        let kind = if req.method == Method::Invite {
            ServerKind::Invite
        } else {
            ServerKind::NonInvite
        };
        let (mut resp, dest) =
            wire::build_response(req, &src, status, to_tag, &self.cfg.user_agent);
        f(&mut resp);
        let bytes = resp.to_bytes();
        let mut tx = ServerTx::new(key, kind, dest, src.transport.is_reliable(), &self.timers);
        tx.respond(now, status, bytes.clone(), &self.timers);
        self.send(dest, bytes);
        let id = self.alloc_id();
        if tx.state != ServerState::Terminated {
            self.server_index.insert(tx.key.clone(), id);
            self.server_txs.insert(id, tx);
            self.arm_server(id);
        }
        id
    }

    /// Sends a further (final) response in an existing server transaction. Returns the bytes
    /// sent, or None if the transaction is gone or already answered finally.
    #[allow(clippy::too_many_arguments)]
    fn respond_in_tx(
        &mut self,
        now: Instant,
        id: u64,
        req: &Request,
        src: &Peer,
        status: u16,
        to_tag: Option<&str>,
        f: impl FnOnce(&mut Response),
    ) -> Option<Bytes> {
        let tx = self.server_txs.get_mut(&id)?;
        if tx.is_final() {
            return None;
        }
        let (mut resp, _) = wire::build_response(req, src, status, to_tag, &self.cfg.user_agent);
        f(&mut resp);
        let bytes = resp.to_bytes();
        tx.respond(now, status, bytes.clone(), &self.timers);
        let dest = tx.peer;
        self.send(dest, bytes.clone());
        if self
            .server_txs
            .get(&id)
            .is_some_and(|t| t.state == ServerState::Terminated)
        {
            self.remove_server(id);
        } else {
            self.arm_server(id);
        }
        Some(bytes)
    }

    /// Our Contact for a call to `ext` that came in on `src`'s transport.
    fn contact_for(&self, ext: &str, src: &Peer) -> String {
        let transport = match src.transport {
            Transport::Udp => "",
            Transport::Tcp => ";transport=tcp",
        };
        format!("<sip:{ext}@{}{transport}>", self.cfg.local_addr)
    }

    /// 200 OK to an INVITE or re-INVITE with our SDP, Contact, Allow (and Supported); for the
    /// initial INVITE (`initial`) also its Record-Route (§12.1.1).
    #[allow(clippy::too_many_arguments)]
    fn respond_2xx(
        &mut self,
        now: Instant,
        tx: u64,
        req: &Request,
        src: &Peer,
        tag: &str,
        ext: &str,
        sdp: Bytes,
        initial: bool,
    ) -> Option<Bytes> {
        let contact = self.contact_for(ext, src);
        let allow = self.allow();
        self.respond_in_tx(now, tx, req, src, 200, Some(tag), move |r| {
            if initial {
                wire::copy_record_route(req, r);
            }
            r.headers.push("Contact", contact);
            r.headers.push("Allow", allow);
            if !SUPPORTED.is_empty() {
                r.headers.push("Supported", SUPPORTED.join(", "));
            }
            r.headers.push("Content-Type", "application/sdp");
            r.body = sdp;
        })
    }

    /// Sends BYE in `id`'s dialog to the INVITE's source and starts its client transaction.
    fn send_bye(&mut self, now: Instant, id: CallId, reports_end: bool) {
        let Some(c) = self.calls.get_mut(&id) else {
            return;
        };
        let branch = new_branch();
        let peer = route::next_hop(c.source, &c.dialog.route_set, &c.dialog.remote_target);
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            peer.transport.via_name(),
            self.cfg.local_addr
        );
        let req = c
            .dialog
            .build_request(Method::Bye, &via, &self.cfg.user_agent);
        if reports_end {
            c.state = CallState::Terminating;
        }
        c.bye_after_ack = false;
        let bytes = req.to_bytes();
        let tx = ClientTx::new(
            now,
            branch.clone(),
            Method::Bye,
            peer,
            peer.transport.is_reliable(),
            bytes.clone(),
            id,
            reports_end,
            &self.timers,
        );
        self.send(peer, bytes);
        let tid = self.alloc_id();
        self.client_index.insert(branch, tid);
        self.arm(tx.retransmit_at, Target::Client(tid), TimerKind::Retransmit);
        self.arm(tx.expire_at, Target::Client(tid), TimerKind::Expire);
        self.client_txs.insert(tid, tx);
    }

    fn end_call(&mut self, id: CallId, reason: EndReason) {
        let Some(c) = self.calls.remove(&id) else {
            return;
        };
        self.dialogs
            .remove(&(c.dialog.call_id.clone(), c.dialog.remote_tag.clone()));
        debug!(?id, ?reason, "call ended");
        self.events.push_back((id, CallEvent::Ended { reason }));
    }

    fn remove_server(&mut self, id: u64) {
        if let Some(tx) = self.server_txs.remove(&id) {
            if self.server_index.get(&tx.key) == Some(&id) {
                self.server_index.remove(&tx.key);
            }
        }
    }

    fn remove_client(&mut self, id: u64) -> Option<ClientTx> {
        let tx = self.client_txs.remove(&id)?;
        self.client_index.remove(&tx.branch);
        Some(tx)
    }

    // -----------------------------------------------------------------------------------------
    // Timers
    // -----------------------------------------------------------------------------------------

    fn arm(&mut self, at: Option<Instant>, target: Target, kind: TimerKind) {
        if let Some(at) = at {
            self.heap.push(Reverse((at, target, kind)));
        }
    }

    fn arm_server(&mut self, id: u64) {
        if let Some(t) = self.server_txs.get(&id) {
            let (r, e) = (t.retransmit_at, t.expire_at);
            self.arm(r, Target::Server(id), TimerKind::Retransmit);
            self.arm(e, Target::Server(id), TimerKind::Expire);
        }
    }

    fn arm_call(&mut self, id: CallId) {
        if let Some(p) = self.calls.get(&id).and_then(|c| c.pending_2xx.as_ref()) {
            let (r, e) = (p.retx.retransmit_at, p.retx.expire_at);
            self.arm(r, Target::Call(id), TimerKind::Retransmit);
            self.arm(e, Target::Call(id), TimerKind::Expire);
        }
    }

    fn is_live(&self, at: Instant, target: Target, kind: TimerKind) -> bool {
        let armed = match target {
            Target::Server(id) => self.server_txs.get(&id).and_then(|t| t.deadline_of(kind)),
            Target::Client(id) => self.client_txs.get(&id).and_then(|t| t.deadline_of(kind)),
            Target::Call(id) => self
                .calls
                .get(&id)
                .and_then(|c| c.pending_2xx.as_ref())
                .and_then(|p| p.retx.deadline_of(kind)),
            Target::Prov(id) => {
                let r = self.calls.get(&id).and_then(|c| c.reliable.as_ref());
                match kind {
                    TimerKind::Retransmit => r.and_then(|r| r.retransmit_at),
                    TimerKind::Expire => r.map(|r| r.expire_at),
                }
            }
            Target::Aor(account) => match kind {
                TimerKind::Expire => self.registrar.as_ref().and_then(|r| r.armed(account)),
                TimerKind::Retransmit => None,
            },
            Target::Auth(id) => match kind {
                TimerKind::Expire => self.pending_auth.get(&id).map(|p| p.deadline),
                TimerKind::Retransmit => None,
            },
        };
        armed == Some(at)
    }

    /// Pops stale heap entries so the top is a live deadline.
    fn purge_stale(&mut self) {
        while let Some(&Reverse((at, target, kind))) = self.heap.peek() {
            if self.is_live(at, target, kind) {
                break;
            }
            self.heap.pop();
        }
    }

    fn fire(&mut self, now: Instant, at: Instant, target: Target, kind: TimerKind) {
        if !self.is_live(at, target, kind) {
            return;
        }
        match target {
            Target::Aor(account) => self.expire_bindings(now, account),
            Target::Auth(id) => self.auth_timed_out(now, id),
            Target::Prov(id) => self.reliable_timer(now, id, kind),
            Target::Server(id) => {
                let Some(tx) = self.server_txs.get_mut(&id) else {
                    return;
                };
                match tx.on_timer(now, kind, &self.timers) {
                    TimerOutcome::Retransmit(bytes) => {
                        let (peer, next) = (tx.peer, tx.retransmit_at);
                        self.send(peer, bytes);
                        self.arm(next, target, TimerKind::Retransmit);
                    }
                    TimerOutcome::TimedOut => {
                        debug!(
                            status = tx.last_status,
                            "no ACK for a final response (timer H)"
                        );
                        self.remove_server(id);
                    }
                    TimerOutcome::Finished => self.remove_server(id),
                    TimerOutcome::Nothing => {}
                }
            }
            Target::Client(id) => {
                let Some(tx) = self.client_txs.get_mut(&id) else {
                    return;
                };
                match tx.on_timer(now, kind, &self.timers) {
                    TimerOutcome::Retransmit(bytes) => {
                        let (peer, next) = (tx.peer, tx.retransmit_at);
                        self.send(peer, bytes);
                        self.arm(next, target, TimerKind::Retransmit);
                    }
                    TimerOutcome::TimedOut => {
                        let (call, reports_end) = (tx.call, tx.reports_end);
                        let method = tx.method.clone();
                        self.remove_client(id);
                        self.report_request_done(id, &method, None);
                        if reports_end {
                            warn!(?call, "no response to our BYE (timer F)");
                            self.end_call(call, EndReason::LocalByeTimeout);
                        }
                    }
                    TimerOutcome::Finished => {
                        self.remove_client(id);
                    }
                    TimerOutcome::Nothing => {}
                }
            }
            Target::Call(id) => {
                let Some(p) = self.calls.get_mut(&id).and_then(|c| c.pending_2xx.as_mut()) else {
                    return;
                };
                match kind {
                    TimerKind::Retransmit => {
                        let bytes = p.retx.on_retransmit(now, &self.timers);
                        let (peer, next) = (p.retx.peer, p.retx.retransmit_at);
                        self.send(peer, bytes);
                        self.arm(next, target, TimerKind::Retransmit);
                    }
                    TimerKind::Expire => {
                        // §13.3.1.4: no ACK within 64*T1: confirm and immediately end with BYE.
                        warn!(?id, "no ACK for our 2xx, sending BYE");
                        if let Some(c) = self.calls.get_mut(&id) {
                            c.pending_2xx = None;
                            c.reinvite = None;
                        }
                        self.send_bye(now, id, false);
                        self.end_call(id, EndReason::AckTimeout);
                    }
                }
            }
        }
    }
}

/// 501 for unknown methods, 405 for known ones we do not serve; None for the ones we handle.
fn method_status(m: &Method) -> Option<u16> {
    match m {
        Method::Invite
        | Method::Ack
        | Method::Bye
        | Method::Cancel
        | Method::Options
        | Method::Info
        | Method::Prack => None,
        Method::Other(_) => Some(501),
        _ => Some(405),
    }
}

/// The headers of a 200 to OPTIONS (RFC 3261 §11.2).
fn options_headers(r: &mut Response, allow: &str) {
    r.headers.push("Allow", allow);
    r.headers.push("Accept", ACCEPT);
    if !SUPPORTED.is_empty() {
        r.headers.push("Supported", SUPPORTED.join(", "));
    }
}

/// The SDP offer of an (re-)INVITE: its body when non-empty (Content-Type was checked).
fn offer_of(req: &Request) -> Option<Bytes> {
    (!req.body.is_empty()).then(|| req.body.clone())
}

/// The From tag ("" when absent, RFC 2543).
fn remote_tag(req: &Request) -> String {
    req.from()
        .ok()
        .and_then(|f| f.tag().map(str::to_owned))
        .unwrap_or_default()
}

/// A final error status the layer asked for, forced into 300..=699.
fn final_error_status(status: u16) -> u16 {
    if (300..=699).contains(&status) {
        status
    } else {
        warn!(status, "not a final error status, sending 500 instead");
        500
    }
}
