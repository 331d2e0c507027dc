//! The endpoint's registrar side: REGISTER handling (RFC 3261 §10.3) over the
//! [`Registrar`](crate::sip::registrar) table, digest authentication of REGISTER (401) and of
//! INVITEs from registered phones (407) with the asynchronous credential lookup, and the
//! out-of-dialog NOTIFY client transaction used for resync.
//!
//! The credential lookup is a store query in the server, so it cannot happen inside
//! `handle_input`: a request carrying credentials opens its server transaction (REGISTER: no
//! response yet, retransmissions are swallowed; INVITE: 100 Trying), queues an [`AuthRequest`]
//! and waits for [`Endpoint::credential`]. A lookup that never comes is answered after
//! [`AUTH_WAIT_T1S`]×T1 (16 s by default, half the client's timer F/B so the phone still sees
//! it) with 500 + Retry-After: a temporary server failure, which phones retry, rather than 408,
//! which only a client may conclude, or 503, which some phones treat as "fail over".
//!
//! A failed INVITE authentication (wrong password, unknown user, a nonce not ours...) is
//! re-challenged with 407 at most [`RegistrarLimits::max_invite_auth_failures`] times per
//! (source, Call-ID); after that the INVITE gets 403, so a phone with a wrong password does
//! not loop. Stale or replayed nonces with a right password are re-challenged `stale=true` and
//! not counted.

use std::time::Instant;

use bytes::Bytes;
use tracing::{debug, info, warn};

use super::{Endpoint, Peer, Target, Transmit, TxSlot, ALLOW, ALLOW_WITH_REGISTER};
use crate::config::RegistrarConfig;
use crate::sip::dialog::new_tag;
use crate::sip::digest::{ConfigError, Credentials, Outcome};
use crate::sip::message::{Headers, Method, NameAddr, Request, Response, Uri};
use crate::sip::registrar::{
    AuthId, AuthRequest, ContactUpdate, Credential, Presented, Refusal, RegisterPlan, Registrar,
    RegistrarEvent, RegistrarLimits, RequestId,
};
use crate::sip::transaction::{
    deadline, new_branch, ClientTx, ServerKind, ServerTx, TimerKind, TxKey,
};

/// How long (in T1 units) a request waits for its credential before 500.
pub const AUTH_WAIT_T1S: u32 = 32;
/// Retry-After of the 500 / 503 answers of this module.
const RETRY_AFTER_SECS: u32 = 5;
/// Bound on the INVITE failure table; older entries are dropped past it.
const MAX_FAILURE_ENTRIES: usize = 4096;

/// A request waiting for [`Endpoint::credential`].
#[derive(Debug)]
pub(super) struct PendingAuth {
    /// Its server transaction (open, no final response yet).
    pub tx: u64,
    pub req: Request,
    pub src: Peer,
    pub creds: Credentials,
    pub kind: PendingKind,
    pub deadline: Instant,
}

#[derive(Debug)]
pub(super) enum PendingKind {
    Register(RegisterPlan),
    Invite,
}

/// Where the challenge goes: REGISTER (401, WWW-Authenticate) or INVITE (407,
/// Proxy-Authenticate: we act as the phone's proxy-like authenticator, RFC 3261 §22.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Challenge {
    Www,
    Proxy,
}

impl Challenge {
    fn status(self) -> u16 {
        match self {
            Challenge::Www => 401,
            Challenge::Proxy => 407,
        }
    }
    fn header(self) -> &'static str {
        match self {
            Challenge::Www => "WWW-Authenticate",
            Challenge::Proxy => "Proxy-Authenticate",
        }
    }
}

impl Endpoint {
    /// Turns the registrar on (REGISTER then served, and INVITEs from registered sources
    /// authenticated), or reconfigures it, keeping its bindings. Fails on an unusable realm.
    pub fn enable_registrar(
        &mut self,
        cfg: RegistrarConfig,
        limits: RegistrarLimits,
    ) -> Result<(), ConfigError> {
        match self.registrar.as_mut() {
            Some(r) => r.reconfigure(cfg, limits),
            None => {
                self.registrar = Some(Registrar::new(cfg, limits)?);
                Ok(())
            }
        }
    }

    pub fn registrar_enabled(&self) -> bool {
        self.registrar.is_some()
    }

    /// The next credential lookup to do. Answer each with [`Endpoint::credential`].
    pub fn poll_auth_request(&mut self) -> Option<AuthRequest> {
        self.auth_requests.pop_front()
    }

    /// The answer to an [`AuthRequest`]: the account with that auth username, or None if there
    /// is none (answered like a wrong password, so user names cannot be probed). An id that is
    /// no longer pending (timed out, cancelled) is ignored.
    pub fn credential(&mut self, now: Instant, id: AuthId, cred: Option<Credential>) {
        let Some(p) = self.pending_auth.remove(&id.0) else {
            debug!(?id, "credential for a request no longer pending");
            return;
        };
        if self.server_txs.get(&p.tx).is_none_or(|t| t.is_final()) {
            return;
        }
        let challenge = match p.kind {
            PendingKind::Register(_) => Challenge::Www,
            PendingKind::Invite => Challenge::Proxy,
        };
        let outcome = match (&cred, self.registrar.as_mut()) {
            (Some(c), Some(r)) if c.auth_username == p.creds.username => {
                r.verify(now, &p.creds, &p.req, &c.password)
            }
            (Some(_), Some(_)) => {
                warn!("credential lookup returned another user name; refusing");
                Outcome::UnknownUser
            }
            (None, _) => Outcome::UnknownUser,
            (_, None) => {
                // The registrar was turned off meanwhile: nothing to verify against.
                self.respond_in_tx(now, p.tx, &p.req, &p.src, 500, None, |_| {});
                self.purge_stale();
                return;
            }
        };
        match (outcome, cred) {
            (Outcome::Ok { .. }, Some(cred)) => match p.kind {
                PendingKind::Register(plan) => {
                    self.register_authenticated(now, p.tx, &p.req, p.src, &cred, &plan)
                }
                PendingKind::Invite => self.invite_authenticated(now, p, &cred),
            },
            (o, _) if o.challenge_stale() => {
                debug!(peer = ?p.src, outcome = ?o, "right password, stale nonce: re-challenging");
                self.challenge_in_tx(now, p.tx, &p.req, p.src, challenge, true);
            }
            (o, _) => {
                info!(peer = ?p.src, method = %p.req.method, outcome = ?o, "digest authentication failed");
                self.auth_failed(now, p.tx, &p.req, p.src, challenge);
            }
        }
        self.purge_stale();
    }

    /// The credential lookup for `id` failed (store unavailable): the request gets 500 with
    /// Retry-After at once, a temporary failure the phone retries, rather than the 401 a
    /// `credential(.., None)` would give (which tells the phone its password is wrong).
    pub fn credential_failed(&mut self, now: Instant, id: AuthId) {
        self.answer_lookup_failure(now, id.0, "credential lookup failed");
        self.purge_stale();
    }

    /// The next registrar event (bindings and NOTIFY outcomes).
    pub fn poll_registrar_event(&mut self) -> Option<RegistrarEvent> {
        self.reg_events.pop_front()
    }

    /// The live bindings of an account: contact URI and the source its REGISTER came from
    /// (where a NOTIFY to it should go: symmetric signalling works behind NAT).
    pub fn contacts(&self, account_id: i64) -> Vec<(Uri, Peer)> {
        self.registrar
            .as_ref()
            .map(|r| r.contacts(account_id))
            .unwrap_or_default()
    }

    /// As [`Endpoint::contacts`], with the Call-ID of each binding's REGISTER.
    pub fn registrations(&self, account_id: i64) -> Vec<super::super::registrar::Registration> {
        self.registrar
            .as_ref()
            .map(|r| r.registrations(account_id))
            .unwrap_or_default()
    }

    /// Live bindings in the whole table.
    pub fn binding_count(&self) -> usize {
        self.registrar.as_ref().map_or(0, |r| r.binding_count())
    }

    /// Guest accounts with at least one live binding.
    pub fn guests_registered(&self) -> usize {
        self.registrar.as_ref().map_or(0, |r| r.guests_bound())
    }

    /// Sends an out-of-dialog NOTIFY (resync: `event` like `check-sync;reboot=true`) to `to`
    /// via `peer`, with `Subscription-State: terminated` and an optional (content type, body),
    /// as a non-INVITE client transaction (timer E retransmits on UDP, timer F gives up). The
    /// outcome comes as [`RegistrarEvent::RequestDone`]. An event or content type with control
    /// characters is not sent (RequestDone with None at once).
    pub fn send_notify(
        &mut self,
        now: Instant,
        to: &Uri,
        peer: Peer,
        event: &str,
        body: Option<(&str, Bytes)>,
    ) -> RequestId {
        self.send_notify_routed(now, to, peer, &[], event, body)
    }

    /// [`Endpoint::send_notify`] to a contact registered with a `Path` (RFC 3327): `route` (the
    /// binding's Path, top first) becomes the Route headers and the NOTIFY goes to its first hop
    /// (`sip::route::next_hop`, which also finds the contact's address when `peer` is a closed
    /// TCP connection).
    pub fn send_notify_routed(
        &mut self,
        now: Instant,
        to: &Uri,
        peer: Peer,
        route: &[NameAddr],
        event: &str,
        body: Option<(&str, Bytes)>,
    ) -> RequestId {
        let peer = crate::sip::route::next_hop(peer, route, to);
        let tid = self.alloc_id();
        let id = RequestId(tid);
        let bad = |s: &str| s.trim().is_empty() || s.chars().any(char::is_control);
        if bad(event) || body.as_ref().is_some_and(|(ct, _)| bad(ct)) {
            warn!(
                ?id,
                "NOTIFY with an unusable Event or Content-Type, not sent"
            );
            self.reg_events
                .push_back(RegistrarEvent::RequestDone { id, status: None });
            return id;
        }
        let local = self.cfg.local_addr;
        let branch = new_branch();
        let transport = match peer.transport {
            super::Transport::Udp => "",
            super::Transport::Tcp => ";transport=tcp",
        };
        let mut headers = Headers::default();
        headers.push(
            "Via",
            format!(
                "SIP/2.0/{} {local};branch={branch};rport",
                peer.transport.via_name()
            ),
        );
        headers.push("Max-Forwards", "70");
        headers.push("From", format!("<sip:selfprov@{local}>;tag={}", new_tag()));
        headers.push("To", format!("<{to}>"));
        headers.push(
            "Call-ID",
            format!(
                "{:016x}{:016x}@{}",
                rand::random::<u64>(),
                rand::random::<u64>(),
                local.ip()
            ),
        );
        headers.push("CSeq", "1 NOTIFY");
        let uri = crate::sip::route::apply(route, to, &mut headers);
        headers.push("Contact", format!("<sip:selfprov@{local}{transport}>"));
        headers.push("Event", event.trim());
        headers.push("Subscription-State", "terminated");
        if !self.cfg.user_agent.is_empty() {
            headers.push("User-Agent", self.cfg.user_agent.clone());
        }
        let body = match body {
            Some((ct, b)) => {
                headers.push("Content-Type", ct.trim());
                b
            }
            None => Bytes::new(),
        };
        let req = Request {
            method: Method::Notify,
            uri,
            headers,
            body,
        };
        let bytes = req.to_bytes();
        let tx = ClientTx::new(
            now,
            branch.clone(),
            Method::Notify,
            peer,
            peer.transport.is_reliable(),
            bytes.clone(),
            // Not a call: NOTIFY transactions are recognised by their method, and CallId(0)
            // is never allocated (ids start at 1), so no call event can come from it.
            super::CallId(0),
            false,
            &self.timers,
        );
        self.transmits.push_back(Transmit { peer, data: bytes });
        self.client_index.insert(branch, tid);
        self.arm(tx.retransmit_at, Target::Client(tid), TimerKind::Retransmit);
        self.arm(tx.expire_at, Target::Client(tid), TimerKind::Expire);
        self.client_txs.insert(tid, tx);
        self.purge_stale();
        id
    }

    // -----------------------------------------------------------------------------------------
    // Crate-internal hooks used by endpoint.rs
    // -----------------------------------------------------------------------------------------

    pub(super) fn allow(&self) -> &'static str {
        if self.registrar.is_some() {
            ALLOW_WITH_REGISTER
        } else {
            ALLOW
        }
    }

    /// A NOTIFY client transaction ended (final response, timeout or transport error).
    pub(super) fn report_request_done(&mut self, tid: u64, method: &Method, status: Option<u16>) {
        if *method == Method::Notify {
            self.reg_events.push_back(RegistrarEvent::RequestDone {
                id: RequestId(tid),
                status,
            });
        }
    }

    pub(super) fn on_register(&mut self, now: Instant, req: Request, key: TxKey, src: Peer) {
        if matches!(req.max_forwards(), Ok(Some(0))) {
            self.respond_new_tx(now, &req, key, src, 483, None, |_| {});
            return;
        }
        if self.reject_unsupported_require(now, &req, &key, src) {
            return;
        }
        let Some(reg) = self.registrar.as_ref() else {
            return;
        };
        let plan = match reg.plan(&req) {
            Ok(p) => p,
            Err(refusal) => {
                debug!(peer = ?src, status = refusal.status, "REGISTER refused before authentication");
                self.refuse(now, &req, TxSlot::New(key), src, refusal);
                return;
            }
        };
        match reg.presented(&req, "Authorization") {
            Presented::Nothing => {
                self.challenge_new(now, &req, key, src, Challenge::Www, false);
            }
            Presented::Unusable { why, malformed } => {
                info!(peer = ?src, why = %why, "REGISTER credentials unusable");
                if malformed {
                    let reason = super::wire::reason_from_error(&format!("Authorization: {why}"));
                    self.respond_new_tx(now, &req, key, src, 400, None, |r| r.reason = reason);
                } else {
                    self.challenge_new(now, &req, key, src, Challenge::Www, false);
                }
            }
            Presented::Credentials(creds) => {
                if self.pending_full(now, &req, &key, src) {
                    return;
                }
                let tx = self.open_silent_tx(&req, key, src);
                self.queue_auth(now, tx, req, src, *creds, PendingKind::Register(plan));
            }
        }
    }

    /// An INVITE from the source of a live binding (see the module doc).
    pub(super) fn authenticate_invite(
        &mut self,
        now: Instant,
        req: Request,
        key: TxKey,
        src: Peer,
    ) {
        let Some(reg) = self.registrar.as_ref() else {
            return;
        };
        let presented = match reg.presented(&req, "Proxy-Authorization") {
            Presented::Nothing => reg.presented(&req, "Authorization"),
            other => other,
        };
        let fkey = (src.addr, req.call_id().unwrap_or_default().to_owned());
        let failures = self.invite_failures.get(&fkey).map_or(0, |f| f.0);
        match presented {
            Presented::Nothing => {
                self.challenge_new(now, &req, key, src, Challenge::Proxy, false);
            }
            Presented::Unusable { why, malformed } => {
                info!(peer = ?src, why = %why, "INVITE credentials unusable");
                if malformed {
                    let reason =
                        super::wire::reason_from_error(&format!("Proxy-Authorization: {why}"));
                    self.respond_new_tx(now, &req, key, src, 400, None, |r| r.reason = reason);
                } else {
                    self.invite_auth_failed(now, &req, TxSlot::New(key), src);
                }
            }
            Presented::Credentials(_) if failures >= self.max_invite_failures() => {
                self.respond_new_tx(now, &req, key, src, 403, None, |r| {
                    r.reason = "Forbidden (authentication failed)".into()
                });
            }
            Presented::Credentials(creds) => {
                if self.pending_full(now, &req, &key, src) {
                    return;
                }
                let tx = self.respond_new_tx(now, &req, key, src, 100, None, |_| {});
                self.queue_auth(now, tx, req, src, *creds, PendingKind::Invite);
            }
        }
    }

    /// CANCEL of an INVITE still waiting for its credential: 487 and forget it. True if it was.
    pub(super) fn cancel_pending_auth(&mut self, now: Instant, inv_tx: u64) -> bool {
        let Some(id) = self
            .pending_auth
            .iter()
            .find(|(_, p)| p.tx == inv_tx)
            .map(|(id, _)| *id)
        else {
            return false;
        };
        if let Some(p) = self.pending_auth.remove(&id) {
            self.respond_in_tx(now, p.tx, &p.req, &p.src, 487, None, |_| {});
        }
        true
    }

    /// The account's bindings timer fired.
    pub(super) fn expire_bindings(&mut self, now: Instant, account: i64) {
        let Some(reg) = self.registrar.as_mut() else {
            return;
        };
        reg.disarm(account);
        if let Some(ev) = reg.expire(account, now) {
            debug!(account, "registration expired");
            self.reg_events.push_back(ev);
        }
        let next = reg.rearm(account);
        self.arm(next, Target::Aor(account), TimerKind::Expire);
    }

    /// No credential came in time (see the module doc).
    pub(super) fn auth_timed_out(&mut self, now: Instant, id: u64) {
        self.answer_lookup_failure(now, id, "credential lookup timed out");
    }

    /// 500 + Retry-After for a pending request whose lookup failed or timed out.
    fn answer_lookup_failure(&mut self, now: Instant, id: u64, why: &'static str) {
        let Some(p) = self.pending_auth.remove(&id) else {
            return;
        };
        warn!(peer = ?p.src, method = %p.req.method, why, "answering 500");
        self.respond_in_tx(now, p.tx, &p.req, &p.src, 500, None, |r| {
            r.reason = format!("Server Internal Error ({why})");
            r.headers.push("Retry-After", RETRY_AFTER_SECS.to_string());
        });
    }

    // -----------------------------------------------------------------------------------------
    // Internals
    // -----------------------------------------------------------------------------------------

    fn max_invite_failures(&self) -> u32 {
        self.registrar
            .as_ref()
            .map_or(0, |r| r.limits.max_invite_auth_failures)
    }

    /// 503 when too many lookups are outstanding. True if answered.
    fn pending_full(&mut self, now: Instant, req: &Request, key: &TxKey, src: Peer) -> bool {
        let cap = self
            .registrar
            .as_ref()
            .map_or(0, |r| r.limits.max_pending_auth);
        if self.pending_auth.len() < cap {
            return false;
        }
        warn!(peer = ?src, pending = self.pending_auth.len(), "too many credential lookups pending, answering 503");
        self.respond_new_tx(now, req, key.clone(), src, 503, None, |r| {
            r.headers.push("Retry-After", RETRY_AFTER_SECS.to_string())
        });
        true
    }

    /// A non-INVITE server transaction with nothing sent yet (Trying): retransmissions of the
    /// request are swallowed until the final response.
    fn open_silent_tx(&mut self, req: &Request, key: TxKey, src: Peer) -> u64 {
        let (_, dest) = super::wire::build_response(req, &src, 100, None, "");
        let tx = ServerTx::new(
            key,
            ServerKind::NonInvite,
            dest,
            src.transport.is_reliable(),
            &self.timers,
        );
        let id = self.alloc_id();
        self.server_index.insert(tx.key.clone(), id);
        self.server_txs.insert(id, tx);
        id
    }

    fn queue_auth(
        &mut self,
        now: Instant,
        tx: u64,
        req: Request,
        src: Peer,
        creds: Credentials,
        kind: PendingKind,
    ) {
        let id = self.alloc_id();
        let wait = self.timers.t1.saturating_mul(AUTH_WAIT_T1S);
        let at = deadline(now, wait);
        self.auth_requests.push_back(AuthRequest {
            id: AuthId(id),
            username: creds.username.clone(),
        });
        self.pending_auth.insert(
            id,
            PendingAuth {
                tx,
                req,
                src,
                creds,
                kind,
                deadline: at,
            },
        );
        self.arm(Some(at), Target::Auth(id), TimerKind::Expire);
    }

    fn challenge_values(&mut self, now: Instant, stale: bool) -> Vec<String> {
        self.registrar
            .as_mut()
            .map(|r| r.challenges(now, stale))
            .unwrap_or_default()
    }

    fn challenge_new(
        &mut self,
        now: Instant,
        req: &Request,
        key: TxKey,
        src: Peer,
        ch: Challenge,
        stale: bool,
    ) {
        let values = self.challenge_values(now, stale);
        self.respond_new_tx(now, req, key, src, ch.status(), None, |r| {
            for v in values {
                r.headers.push(ch.header(), v);
            }
        });
    }

    fn challenge_in_tx(
        &mut self,
        now: Instant,
        tx: u64,
        req: &Request,
        src: Peer,
        ch: Challenge,
        stale: bool,
    ) {
        let values = self.challenge_values(now, stale);
        self.respond_in_tx(now, tx, req, &src, ch.status(), None, |r| {
            for v in values {
                r.headers.push(ch.header(), v);
            }
        });
    }

    fn auth_failed(&mut self, now: Instant, tx: u64, req: &Request, src: Peer, ch: Challenge) {
        match ch {
            // A wrong password on REGISTER: a fresh challenge; nothing is bound.
            Challenge::Www => self.challenge_in_tx(now, tx, req, src, ch, false),
            Challenge::Proxy => self.invite_auth_failed(now, req, TxSlot::Open(tx), src),
        }
    }

    /// Counts a failed INVITE authentication: 407 again, or 403 past the limit.
    fn invite_auth_failed(&mut self, now: Instant, req: &Request, slot: TxSlot, src: Peer) {
        let fkey = (src.addr, req.call_id().unwrap_or_default().to_owned());
        if self.invite_failures.len() >= MAX_FAILURE_ENTRIES
            && !self.invite_failures.contains_key(&fkey)
        {
            // Keep the table bounded: forget entries older than a transaction's lifetime,
            // and if that is not enough, everything (a flood loses only its own counts).
            let horizon = self.timers.t1x64();
            self.invite_failures
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < horizon);
            if self.invite_failures.len() >= MAX_FAILURE_ENTRIES {
                self.invite_failures.clear();
            }
        }
        let entry = self.invite_failures.entry(fkey).or_insert((0, now));
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        let count = entry.0;
        if count >= self.max_invite_failures() {
            info!(peer = ?src, count, "INVITE authentication failed too often, answering 403");
            self.answer_slot(now, req, slot, src, 403, |r| {
                r.reason = "Forbidden (authentication failed)".into()
            });
            return;
        }
        let values = self.challenge_values(now, false);
        self.answer_slot(now, req, slot, src, 407, |r| {
            for v in values {
                r.headers.push(Challenge::Proxy.header(), v);
            }
        });
    }

    fn refuse(&mut self, now: Instant, req: &Request, slot: TxSlot, src: Peer, refusal: Refusal) {
        self.answer_slot(now, req, slot, src, refusal.status, move |r| {
            if let Some(reason) = refusal.reason {
                r.reason = reason;
            }
            for (n, v) in refusal.headers {
                r.headers.push(n, v);
            }
        });
    }

    fn register_authenticated(
        &mut self,
        now: Instant,
        tx: u64,
        req: &Request,
        src: Peer,
        cred: &Credential,
        plan: &RegisterPlan,
    ) {
        let Some(reg) = self.registrar.as_mut() else {
            return;
        };
        let result = reg
            .authorize_register(cred, plan)
            .and_then(|()| reg.apply(now, cred, plan, src));
        let applied = match result {
            Ok(a) => a,
            Err(refusal) => {
                info!(peer = ?src, account = cred.account_id, status = refusal.status, reason = ?refusal.reason, "REGISTER refused");
                self.refuse(now, req, TxSlot::Open(tx), src, refusal);
                return;
            }
        };
        let next = reg.rearm(cred.account_id);
        match &plan.update {
            ContactUpdate::RemoveAll => {
                info!(peer = ?src, account = cred.account_id, "unregistered all contacts")
            }
            ContactUpdate::List(l) if !l.is_empty() => {
                info!(peer = ?src, account = cred.account_id, contacts = applied.contacts.len(), "registered")
            }
            ContactUpdate::List(_) => {}
        }
        self.arm(next, Target::Aor(cred.account_id), TimerKind::Expire);
        if let Some(ev) = applied.event {
            self.reg_events.push_back(ev);
        }
        let contacts = applied.contacts;
        let path: Vec<String> = if plan.echo_path {
            plan.path.iter().map(ToString::to_string).collect()
        } else {
            Vec::new()
        };
        // Some older phones read the granted interval from an Expires header rather than the
        // contact parameter; with one contact in the request it is unambiguous.
        let granted = match &plan.update {
            ContactUpdate::List(l) if l.len() == 1 => l.first().map(|c| c.expires),
            _ => None,
        };
        self.respond_in_tx(now, tx, req, &src, 200, None, move |r: &mut Response| {
            if let Some(e) = granted {
                r.headers.push("Expires", e.to_string());
            }
            // RFC 3327 §5.3: the Path as stored, for a phone that said it supports path.
            for p in path {
                r.headers.push("Path", p);
            }
            // §10.3 step 8: every current binding with its expiry.
            for (mut c, secs) in contacts {
                c.params.set("expires", Some(&secs.to_string()));
                r.headers.push("Contact", c.to_string());
            }
        });
    }

    fn invite_authenticated(&mut self, now: Instant, p: PendingAuth, cred: &Credential) {
        let fkey = (p.src.addr, p.req.call_id().unwrap_or_default().to_owned());
        self.invite_failures.remove(&fkey);
        if let Some(Err(refusal)) = self.registrar.as_ref().map(|r| r.authorize_guest(cred)) {
            self.refuse(now, &p.req, TxSlot::Open(p.tx), p.src, refusal);
            return;
        }
        self.admit_invite(
            now,
            p.req,
            TxSlot::Open(p.tx),
            p.src,
            Some((cred.account_id, cred.guest)),
        );
    }
}
