//! SIP transactions (RFC 3261 §17, with the RFC 6026 "Accepted" state): the server INVITE, server
//! non-INVITE and client non-INVITE state machines, their matching keys and timer arithmetic.
//!
//! These are plain data plus transition methods: nothing here sends, sleeps or reads a clock. The
//! [`super::endpoint::Endpoint`] owns the transactions, arms their deadlines in its timer heap and
//! turns the outcomes returned here into datagrams and call events.
//!
//! Timer names follow RFC 3261 Table 4: G/H/I for the INVITE server transaction, J for the
//! non-INVITE server transaction, E/F/K for the non-INVITE client transaction, and L (RFC 6026)
//! for the INVITE server transaction after a 2xx. Every transaction has at most two pending
//! deadlines, `retransmit_at` and `expire_at`, which is what lets the endpoint's heap use
//! (deadline, id, [`TimerKind`]) entries with lazy deletion.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::endpoint::{CallId, Peer};
use super::message::{Method, Request};

/// The RFC 3261 branch prefix (§8.1.1.7). Branches without it come from RFC 2543 peers.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// T1, T2 and T4 (RFC 3261 §17.1.1.1, Table 4) and the timers derived from them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl Timers {
    /// Clamps the values to a sane range so that no deadline arithmetic can overflow or spin:
    /// T1 in 1 ms..=60 s, T2 >= T1 and <= 10 min, T4 <= 10 min.
    pub fn sanitised(self) -> Timers {
        let t1 = self
            .t1
            .clamp(Duration::from_millis(1), Duration::from_secs(60));
        let t2 = self.t2.clamp(t1, Duration::from_secs(600));
        let t4 = self.t4.min(Duration::from_secs(600));
        Timers { t1, t2, t4 }
    }

    /// 64*T1: timers B, F, H, J (unreliable) and L.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// The next retransmission interval: doubled, capped at T2 (timers E, G and the UA core's
    /// 2xx retransmission, §13.3.1.4, all follow this schedule).
    pub fn next_interval(&self, prev: Duration) -> Duration {
        prev.saturating_mul(2).min(self.t2)
    }

    /// Timer I: T4 on unreliable transports, zero on reliable ones.
    pub fn timer_i(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }

    /// Timer J: 64*T1 on unreliable transports, zero on reliable ones.
    pub fn timer_j(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t1x64()
        }
    }

    /// Timer K: T4 on unreliable transports, zero on reliable ones.
    pub fn timer_k(&self, reliable: bool) -> Duration {
        if reliable {
            Duration::ZERO
        } else {
            self.t4
        }
    }
}

/// `now + d` without the panic `Instant + Duration` has on overflow.
pub fn deadline(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

/// The state and expiry deadline after a final response (timers I, J, K): the transaction
/// stays in `waiting` for `wait` to absorb retransmissions, or, over a reliable transport where
/// that timer is zero, goes straight to `terminated` (§17.1.2.2, §17.2.1, §17.2.2).
fn linger<S>(now: Instant, wait: Duration, waiting: S, terminated: S) -> (S, Option<Instant>) {
    if wait.is_zero() {
        (terminated, None)
    } else {
        (waiting, Some(deadline(now, wait)))
    }
}

/// Which of a transaction's two deadlines a heap entry refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TimerKind {
    /// E, G, or the 2xx retransmission.
    Retransmit,
    /// F, H, I, J, K or L.
    Expire,
}

/// The key a server transaction is matched by (RFC 3261 §17.2.3): the top Via branch, its
/// sent-by and the method, where ACK matches the INVITE it acknowledges. For RFC 2543 peers
/// (no magic cookie) the branch is replaced by Call-ID, CSeq number, From tag and the raw top
/// Via, which is what §17.2.3 falls back to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TxKey {
    pub branch: String,
    pub sent_by: String,
    pub method: String,
}

impl TxKey {
    /// The key of the server transaction `req` belongs to (ACK maps to INVITE).
    pub fn for_request(req: &Request) -> Option<TxKey> {
        let method = match req.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        Self::with_method(req, &method)
    }

    /// The key of the INVITE transaction a CANCEL targets (§9.2: same key, method INVITE).
    pub fn cancelled_invite(req: &Request) -> Option<TxKey> {
        Self::with_method(req, &Method::Invite)
    }

    fn with_method(req: &Request, method: &Method) -> Option<TxKey> {
        let via = req.top_via().ok()?;
        let sent_by = match via.port {
            Some(p) => format!("{}:{}", via.host, p).to_ascii_lowercase(),
            None => via.host.to_string().to_ascii_lowercase(),
        };
        let branch = match via.branch() {
            Some(b) if b.starts_with(MAGIC_COOKIE) && b.len() > MAGIC_COOKIE.len() => b.to_owned(),
            _ => {
                // RFC 2543 matching: Request-URI is not used (CANCEL/ACK copy it anyway).
                let call_id = req.call_id().ok()?;
                let seq = req.cseq().ok()?.seq;
                let from_tag = req
                    .from()
                    .ok()
                    .and_then(|f| f.tag().map(str::to_owned))
                    .unwrap_or_default();
                let raw_via = req.headers.get("Via").unwrap_or_default();
                format!("2543|{call_id}|{seq}|{from_tag}|{raw_via}")
            }
        };
        Some(TxKey {
            branch,
            sent_by,
            method: method.as_str().to_owned(),
        })
    }
}

/// Server transaction flavour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    Invite,
    NonInvite,
}

/// Server transaction state (Figures 7 and 8 of RFC 3261, plus RFC 6026 Accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// INVITE: a provisional response (100) has been sent. Non-INVITE: Trying (nothing sent).
    Proceeding,
    /// A final response has been sent (non-2xx for INVITE); waiting for ACK / timer J.
    Completed,
    /// INVITE: the ACK for the non-2xx arrived; absorbing ACK retransmissions until timer I.
    Confirmed,
    /// INVITE: a 2xx has been sent; absorbing INVITE retransmissions until timer L (RFC 6026).
    Accepted,
    Terminated,
}

/// What a retransmitted request should cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Absorb {
    /// Send this (the last response) again.
    Resend(Bytes),
    /// Swallow silently.
    Drop,
}

/// Result of a transaction timer firing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerOutcome {
    /// Send these bytes again; the timer has been re-armed.
    Retransmit(Bytes),
    /// The transaction gave up (H in Completed, F): it is now Terminated.
    TimedOut,
    /// The transaction ended normally (I, J, K, L): it is now Terminated.
    Finished,
    /// Stale entry: nothing to do.
    Nothing,
}

/// A server transaction.
#[derive(Debug, Clone)]
pub struct ServerTx {
    pub key: TxKey,
    pub kind: ServerKind,
    pub state: ServerState,
    /// Where responses go (already resolved per RFC 3261 §18.2.2 / RFC 3581).
    pub peer: Peer,
    pub reliable: bool,
    pub last_response: Option<Bytes>,
    pub last_status: u16,
    pub interval: Duration,
    pub retransmit_at: Option<Instant>,
    pub expire_at: Option<Instant>,
    /// The call this INVITE transaction belongs to, if any.
    pub call: Option<CallId>,
}

impl ServerTx {
    pub fn new(key: TxKey, kind: ServerKind, peer: Peer, reliable: bool, t: &Timers) -> Self {
        ServerTx {
            key,
            kind,
            state: ServerState::Proceeding,
            peer,
            reliable,
            last_response: None,
            last_status: 0,
            interval: t.t1,
            retransmit_at: None,
            expire_at: None,
            call: None,
        }
    }

    /// Whether the transaction has sent its final response.
    pub fn is_final(&self) -> bool {
        self.last_status >= 200
    }

    /// The TU sends `status` (serialised as `bytes`). Updates state and deadlines; the caller
    /// transmits `bytes` itself. Responses after the final one are ignored (returns false).
    pub fn respond(&mut self, now: Instant, status: u16, bytes: Bytes, t: &Timers) -> bool {
        if self.is_final() || self.state == ServerState::Terminated {
            return false;
        }
        self.last_status = status;
        self.last_response = Some(bytes);
        if status < 200 {
            return true;
        }
        match (self.kind, status) {
            (ServerKind::Invite, 200..=299) => {
                // RFC 6026: the UA core retransmits the 2xx; the transaction only absorbs
                // retransmitted INVITEs until timer L.
                self.state = ServerState::Accepted;
                self.retransmit_at = None;
                self.expire_at = Some(deadline(now, t.t1x64()));
            }
            (ServerKind::Invite, _) => {
                self.state = ServerState::Completed;
                self.interval = t.t1;
                self.retransmit_at = (!self.reliable).then(|| deadline(now, t.t1));
                self.expire_at = Some(deadline(now, t.t1x64()));
            }
            (ServerKind::NonInvite, _) => {
                (self.state, self.expire_at) = linger(
                    now,
                    t.timer_j(self.reliable),
                    ServerState::Completed,
                    ServerState::Terminated,
                );
            }
        }
        true
    }

    /// A retransmission of the request arrived (§17.2.1, §17.2.2).
    pub fn on_retransmission(&self) -> Absorb {
        match self.state {
            ServerState::Proceeding | ServerState::Completed => match &self.last_response {
                Some(b) => Absorb::Resend(b.clone()),
                None => Absorb::Drop,
            },
            _ => Absorb::Drop,
        }
    }

    /// An ACK matched this INVITE transaction. Returns true when the transaction absorbed it
    /// (ACK for a non-2xx); false means it is for a 2xx and belongs to the UA core.
    pub fn on_ack(&mut self, now: Instant, t: &Timers) -> bool {
        match self.state {
            ServerState::Completed => {
                self.retransmit_at = None;
                (self.state, self.expire_at) = linger(
                    now,
                    t.timer_i(self.reliable),
                    ServerState::Confirmed,
                    ServerState::Terminated,
                );
                true
            }
            ServerState::Confirmed => true,
            _ => false,
        }
    }

    /// The deadline of `kind` that the endpoint armed: used to discard stale heap entries.
    pub fn deadline_of(&self, kind: TimerKind) -> Option<Instant> {
        match kind {
            TimerKind::Retransmit => self.retransmit_at,
            TimerKind::Expire => self.expire_at,
        }
    }

    pub fn on_timer(&mut self, now: Instant, kind: TimerKind, t: &Timers) -> TimerOutcome {
        match kind {
            TimerKind::Retransmit => {
                self.retransmit_at = None;
                if self.state != ServerState::Completed {
                    return TimerOutcome::Nothing;
                }
                // Timer G: retransmit the non-2xx final, interval doubling up to T2.
                self.interval = t.next_interval(self.interval);
                self.retransmit_at = Some(deadline(now, self.interval));
                match &self.last_response {
                    Some(b) => TimerOutcome::Retransmit(b.clone()),
                    None => TimerOutcome::Nothing,
                }
            }
            TimerKind::Expire => {
                self.expire_at = None;
                self.retransmit_at = None;
                let was = self.state;
                self.state = ServerState::Terminated;
                match was {
                    // Timer H without ACK.
                    ServerState::Completed if self.kind == ServerKind::Invite => {
                        TimerOutcome::TimedOut
                    }
                    _ => TimerOutcome::Finished,
                }
            }
        }
    }
}

/// Client non-INVITE transaction state (Figure 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// What a response to a client transaction means for the TU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOutcome {
    Provisional(u16),
    Final(u16),
    /// A retransmitted final response: nothing for the TU.
    Absorbed,
}

/// A non-INVITE client transaction (our BYE).
#[derive(Debug, Clone)]
pub struct ClientTx {
    pub branch: String,
    pub method: Method,
    pub state: ClientState,
    pub peer: Peer,
    pub reliable: bool,
    pub request: Bytes,
    pub interval: Duration,
    pub retransmit_at: Option<Instant>,
    pub expire_at: Option<Instant>,
    pub call: CallId,
    /// Whether the outcome ends the call (false for the BYE sent after an ACK timeout, whose
    /// call has already ended).
    pub reports_end: bool,
}

impl ClientTx {
    /// A transaction whose request has just been sent at `now`: arms timer E (unreliable only)
    /// and timer F.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        now: Instant,
        branch: String,
        method: Method,
        peer: Peer,
        reliable: bool,
        request: Bytes,
        call: CallId,
        reports_end: bool,
        t: &Timers,
    ) -> Self {
        ClientTx {
            branch,
            method,
            state: ClientState::Trying,
            peer,
            reliable,
            request,
            interval: t.t1,
            retransmit_at: (!reliable).then(|| deadline(now, t.t1)),
            expire_at: Some(deadline(now, t.t1x64())),
            call,
            reports_end,
        }
    }

    pub fn on_response(&mut self, now: Instant, status: u16, t: &Timers) -> ClientOutcome {
        match self.state {
            ClientState::Trying | ClientState::Proceeding if status < 200 => {
                if self.state == ClientState::Trying && !self.reliable {
                    // §17.1.2.2: in Proceeding, E fires every T2. The pending E keeps its
                    // deadline; the next interval becomes T2.
                    self.interval = t.t2;
                }
                self.state = ClientState::Proceeding;
                ClientOutcome::Provisional(status)
            }
            ClientState::Trying | ClientState::Proceeding => {
                self.retransmit_at = None;
                (self.state, self.expire_at) = linger(
                    now,
                    t.timer_k(self.reliable),
                    ClientState::Completed,
                    ClientState::Terminated,
                );
                ClientOutcome::Final(status)
            }
            _ => ClientOutcome::Absorbed,
        }
    }

    pub fn deadline_of(&self, kind: TimerKind) -> Option<Instant> {
        match kind {
            TimerKind::Retransmit => self.retransmit_at,
            TimerKind::Expire => self.expire_at,
        }
    }

    pub fn on_timer(&mut self, now: Instant, kind: TimerKind, t: &Timers) -> TimerOutcome {
        match kind {
            TimerKind::Retransmit => {
                self.retransmit_at = None;
                if !matches!(self.state, ClientState::Trying | ClientState::Proceeding) {
                    return TimerOutcome::Nothing;
                }
                // Timer E: in Trying the interval doubles up to T2; in Proceeding it is T2.
                self.interval = if self.state == ClientState::Proceeding {
                    t.t2
                } else {
                    t.next_interval(self.interval)
                };
                self.retransmit_at = Some(deadline(now, self.interval));
                TimerOutcome::Retransmit(self.request.clone())
            }
            TimerKind::Expire => {
                self.expire_at = None;
                self.retransmit_at = None;
                let was = self.state;
                self.state = ClientState::Terminated;
                if was == ClientState::Completed {
                    TimerOutcome::Finished // K
                } else {
                    TimerOutcome::TimedOut // F
                }
            }
        }
    }
}

/// The UA core's retransmission of a 2xx to INVITE until the ACK arrives (RFC 3261 §13.3.1.4):
/// T1 doubling up to T2 on unreliable transports, and in all cases a give-up deadline of 64*T1
/// (timer H's value).
#[derive(Debug, Clone)]
pub struct Retransmitter {
    pub bytes: Bytes,
    pub peer: Peer,
    pub interval: Duration,
    pub retransmit_at: Option<Instant>,
    pub expire_at: Option<Instant>,
}

impl Retransmitter {
    pub fn new(now: Instant, bytes: Bytes, peer: Peer, reliable: bool, t: &Timers) -> Self {
        Retransmitter {
            bytes,
            peer,
            interval: t.t1,
            retransmit_at: (!reliable).then(|| deadline(now, t.t1)),
            expire_at: Some(deadline(now, t.t1x64())),
        }
    }

    pub fn deadline_of(&self, kind: TimerKind) -> Option<Instant> {
        match kind {
            TimerKind::Retransmit => self.retransmit_at,
            TimerKind::Expire => self.expire_at,
        }
    }

    /// Retransmission due: returns the bytes and re-arms with the doubled interval.
    pub fn on_retransmit(&mut self, now: Instant, t: &Timers) -> Bytes {
        self.interval = t.next_interval(self.interval);
        self.retransmit_at = Some(deadline(now, self.interval));
        self.bytes.clone()
    }
}

/// A fresh RFC 3261 branch: the magic cookie and 64 random bits.
pub fn new_branch() -> String {
    format!("{MAGIC_COOKIE}{:016x}", rand::random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::endpoint::Transport;

    fn peer() -> Peer {
        Peer {
            transport: Transport::Udp,
            addr: "192.0.2.1:5060".parse().unwrap(),
            conn: None,
        }
    }

    fn key() -> TxKey {
        TxKey {
            branch: "z9hG4bKx".into(),
            sent_by: "192.0.2.1:5060".into(),
            method: "INVITE".into(),
        }
    }

    #[test]
    fn interval_doubles_and_caps_at_t2() {
        let t = Timers::default();
        let mut i = t.t1;
        let mut seen = vec![i];
        for _ in 0..5 {
            i = t.next_interval(i);
            seen.push(i);
        }
        let ms: Vec<u128> = seen.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![500, 1000, 2000, 4000, 4000, 4000]);
        assert_eq!(t.t1x64(), Duration::from_secs(32));
    }

    #[test]
    fn sanitised_timers_never_zero() {
        let t = Timers {
            t1: Duration::ZERO,
            t2: Duration::ZERO,
            t4: Duration::from_secs(1_000_000),
        }
        .sanitised();
        assert!(t.t1 >= Duration::from_millis(1));
        assert!(t.t2 >= t.t1);
        assert_eq!(t.t4, Duration::from_secs(600));
    }

    #[test]
    fn invite_server_non_2xx_timer_g_h() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ServerTx::new(key(), ServerKind::Invite, peer(), false, &t);
        assert!(tx.respond(now, 100, Bytes::from_static(b"100"), &t));
        assert_eq!(
            tx.on_retransmission(),
            Absorb::Resend(Bytes::from_static(b"100"))
        );
        assert!(tx.respond(now, 486, Bytes::from_static(b"486"), &t));
        assert_eq!(tx.state, ServerState::Completed);
        // A second final response is refused.
        assert!(!tx.respond(now, 500, Bytes::from_static(b"500"), &t));
        let mut at = tx.retransmit_at.unwrap();
        let mut gaps = vec![];
        let mut last = now;
        while at < tx.expire_at.unwrap() {
            gaps.push((at - last).as_millis());
            last = at;
            assert_eq!(
                tx.on_timer(at, TimerKind::Retransmit, &t),
                TimerOutcome::Retransmit(Bytes::from_static(b"486"))
            );
            at = tx.retransmit_at.unwrap();
        }
        assert_eq!(&gaps[..6], &[500, 1000, 2000, 4000, 4000, 4000]);
        let h = tx.expire_at.unwrap();
        assert_eq!(h - now, Duration::from_secs(32));
        assert_eq!(
            tx.on_timer(h, TimerKind::Expire, &t),
            TimerOutcome::TimedOut
        );
        assert_eq!(tx.state, ServerState::Terminated);
    }

    #[test]
    fn invite_server_ack_then_timer_i() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ServerTx::new(key(), ServerKind::Invite, peer(), false, &t);
        tx.respond(now, 404, Bytes::from_static(b"404"), &t);
        assert!(tx.on_ack(now, &t));
        assert_eq!(tx.state, ServerState::Confirmed);
        assert_eq!(tx.retransmit_at, None);
        assert_eq!(tx.expire_at, Some(now + t.t4));
        // ACK retransmissions and INVITE retransmissions are absorbed silently.
        assert!(tx.on_ack(now, &t));
        assert_eq!(tx.on_retransmission(), Absorb::Drop);
        assert_eq!(
            tx.on_timer(now + t.t4, TimerKind::Expire, &t),
            TimerOutcome::Finished
        );
    }

    #[test]
    fn invite_server_reliable_no_retransmit_and_i_zero() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ServerTx::new(key(), ServerKind::Invite, peer(), true, &t);
        tx.respond(now, 486, Bytes::from_static(b"486"), &t);
        assert_eq!(tx.retransmit_at, None);
        assert_eq!(tx.expire_at, Some(now + t.t1x64()));
        assert!(tx.on_ack(now, &t));
        assert_eq!(tx.state, ServerState::Terminated);
    }

    #[test]
    fn invite_server_2xx_goes_accepted_and_passes_ack_up() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ServerTx::new(key(), ServerKind::Invite, peer(), false, &t);
        tx.respond(now, 200, Bytes::from_static(b"200"), &t);
        assert_eq!(tx.state, ServerState::Accepted);
        assert_eq!(tx.on_retransmission(), Absorb::Drop);
        assert!(!tx.on_ack(now, &t));
        assert_eq!(tx.expire_at, Some(now + t.t1x64()));
    }

    #[test]
    fn non_invite_server_timer_j() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ServerTx::new(key(), ServerKind::NonInvite, peer(), false, &t);
        tx.respond(now, 200, Bytes::from_static(b"200"), &t);
        assert_eq!(tx.state, ServerState::Completed);
        assert_eq!(tx.expire_at, Some(now + Duration::from_secs(32)));
        assert_eq!(
            tx.on_retransmission(),
            Absorb::Resend(Bytes::from_static(b"200"))
        );
        let mut tcp = ServerTx::new(key(), ServerKind::NonInvite, peer(), true, &t);
        tcp.respond(now, 200, Bytes::from_static(b"200"), &t);
        assert_eq!(tcp.state, ServerState::Terminated);
    }

    #[test]
    fn client_timer_e_f_and_k() {
        let t = Timers::default();
        let now = Instant::now();
        let mut tx = ClientTx::new(
            now,
            new_branch(),
            Method::Bye,
            peer(),
            false,
            Bytes::from_static(b"BYE"),
            CallId(1),
            true,
            &t,
        );
        assert!(tx.branch.starts_with(MAGIC_COOKIE));
        let mut gaps = vec![];
        let mut last = now;
        while let Some(at) = tx.retransmit_at {
            if at >= tx.expire_at.unwrap() {
                break;
            }
            gaps.push((at - last).as_millis());
            last = at;
            assert!(matches!(
                tx.on_timer(at, TimerKind::Retransmit, &t),
                TimerOutcome::Retransmit(_)
            ));
        }
        assert_eq!(&gaps[..6], &[500, 1000, 2000, 4000, 4000, 4000]);
        let f = tx.expire_at.unwrap();
        assert_eq!(f - now, Duration::from_secs(32));
        assert_eq!(
            tx.on_timer(f, TimerKind::Expire, &t),
            TimerOutcome::TimedOut
        );

        let mut tx = ClientTx::new(
            now,
            new_branch(),
            Method::Bye,
            peer(),
            false,
            Bytes::from_static(b"BYE"),
            CallId(1),
            true,
            &t,
        );
        assert_eq!(
            tx.on_response(now, 100, &t),
            ClientOutcome::Provisional(100)
        );
        // In Proceeding, E fires at T2 intervals.
        let e = tx.retransmit_at.unwrap();
        tx.on_timer(e, TimerKind::Retransmit, &t);
        assert_eq!(tx.retransmit_at.unwrap() - e, t.t2);
        assert_eq!(tx.on_response(now, 200, &t), ClientOutcome::Final(200));
        assert_eq!(tx.on_response(now, 200, &t), ClientOutcome::Absorbed);
        assert_eq!(tx.expire_at, Some(now + t.t4));
        assert_eq!(tx.retransmit_at, None);
    }
}
