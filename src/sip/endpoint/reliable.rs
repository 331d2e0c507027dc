//! The endpoint's reliable provisional responses (RFC 3262): the reliable 180 sent to an INVITE
//! that requires `100rel`, its retransmissions and PRACK deadline, PRACK matching by RAck, and
//! the 2xx held until the PRACK (see the endpoint's module doc for why it is held). Also the
//! asserted identity of a trusted proxy's INVITE (RFC 3325), which needs the registrar table.

use std::time::Instant;

use tracing::{debug, warn};

use super::{wire, CallId, CallState, EndReason, Endpoint, Peer, Reliable1xx, Target, SUPPORTED};
use crate::sip::message::{Method, Request};
use crate::sip::transaction::{deadline, TimerKind, TxKey};
use crate::sip::trust;

/// An RAck value (RFC 3262 §7.2): `response-num CSeq-num Method`.
fn parse_rack(v: &str) -> Option<(u32, u32, Method)> {
    let mut it = v.split_ascii_whitespace();
    let rseq = it.next()?.parse().ok()?;
    let cseq = it.next()?.parse().ok()?;
    let method: Method = it.next()?.parse().ok()?;
    it.next().is_none().then_some((rseq, cseq, method))
}

impl Endpoint {
    /// The account a trusted proxy's P-Asserted-Identity names: the first asserted AOR user
    /// that is the number of an account with a live binding here, with its guest flag.
    pub(super) fn asserted_account(&self, req: &Request) -> Option<(i64, bool)> {
        let registrar = self.registrar.as_ref()?;
        let users = trust::asserted_users(req);
        let found = users.iter().find_map(|u| registrar.account_by_number(u));
        if found.is_none() && !users.is_empty() {
            debug!(?users, "asserted identity names no registered account");
        }
        found
    }

    /// Sends the reliable 180 of call `id` (RFC 3262 §3) and arms its timers.
    pub(super) fn send_reliable_180(&mut self, now: Instant, id: CallId) {
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let (tx, invite, source, tag) = (
            c.invite_tx,
            c.invite.clone(),
            c.source,
            c.dialog.local_tag.clone(),
        );
        let contact = self.contact_for(&c.ext, &source);
        // §3: the first RSeq is random in 1..2^31-1; 2^30 keeps room for increments.
        let rseq: u32 = rand::random_range(1..(1u32 << 30));
        let allow = self.allow();
        let Some(bytes) = self.respond_in_tx(now, tx, &invite, &source, 180, Some(&tag), |r| {
            wire::copy_record_route(&invite, r);
            r.headers.push("Contact", contact);
            r.headers.push("Require", "100rel");
            r.headers.push("RSeq", rseq.to_string());
            r.headers.push("Allow", allow);
            r.headers.push("Supported", SUPPORTED.join(", "));
        }) else {
            return;
        };
        let peer = self.server_txs.get(&tx).map_or(source, |t| t.peer);
        let t1 = self.timers.t1;
        let reliable = Reliable1xx {
            rseq,
            bytes,
            peer,
            interval: t1,
            retransmit_at: (!peer.transport.is_reliable()).then(|| deadline(now, t1)),
            expire_at: deadline(now, self.timers.t1x64()),
            deferred_answer: None,
        };
        let (r, e) = (reliable.retransmit_at, reliable.expire_at);
        if let Some(c) = self.calls.get_mut(&id) {
            c.reliable = Some(reliable);
        }
        self.arm(r, Target::Prov(id), TimerKind::Retransmit);
        self.arm(Some(e), Target::Prov(id), TimerKind::Expire);
    }

    /// A reliable provisional response's timer: retransmit (the interval doubles each time,
    /// §3), or no PRACK within 64*T1: the INVITE gets 500 and the call ends.
    pub(super) fn reliable_timer(&mut self, now: Instant, id: CallId, kind: TimerKind) {
        match kind {
            TimerKind::Retransmit => {
                let Some(r) = self.calls.get_mut(&id).and_then(|c| c.reliable.as_mut()) else {
                    return;
                };
                r.interval = r.interval.saturating_mul(2);
                let next = deadline(now, r.interval);
                r.retransmit_at = Some(next);
                let (peer, bytes) = (r.peer, r.bytes.clone());
                self.send(peer, bytes);
                self.arm(Some(next), Target::Prov(id), TimerKind::Retransmit);
            }
            TimerKind::Expire => {
                warn!(
                    ?id,
                    "no PRACK for our reliable 180 within 64*T1, answering 500"
                );
                if let Some(c) = self.calls.get_mut(&id) {
                    c.reliable = None;
                }
                self.reject_early_invite(now, id, 500);
                self.end_call(id, EndReason::Rejected);
            }
        }
    }

    /// PRACK in call `id` (RFC 3262 §3): 200 when its RAck names our outstanding reliable
    /// response (then a held 2xx goes out), 481 otherwise, 400 for a malformed RAck.
    pub(super) fn on_prack(
        &mut self,
        now: Instant,
        id: CallId,
        req: Request,
        key: TxKey,
        src: Peer,
    ) {
        let Some(rack) = req.headers.get("RAck").map(str::to_owned) else {
            self.respond_new_tx(now, &req, key, src, 400, None, |r| {
                r.reason = "Bad Request (missing RAck)".into()
            });
            return;
        };
        let Some((rseq, cseq, method)) = parse_rack(&rack) else {
            self.respond_new_tx(now, &req, key, src, 400, None, |r| {
                r.reason = "Bad Request (RAck)".into()
            });
            return;
        };
        let Some(c) = self.calls.get(&id) else {
            return;
        };
        let invite_cseq = c.invite.cseq().map(|c| c.seq).unwrap_or_default();
        let matches = c.state == CallState::Early
            && method == Method::Invite
            && cseq == invite_cseq
            && c.reliable.as_ref().is_some_and(|r| r.rseq == rseq);
        if !matches {
            debug!(?id, rack = %rack, "PRACK matching no outstanding reliable response, 481");
            self.respond_new_tx(now, &req, key, src, 481, None, |_| {});
            return;
        }
        let deferred = self
            .calls
            .get_mut(&id)
            .and_then(|c| c.reliable.take())
            .and_then(|r| r.deferred_answer);
        self.respond_new_tx(now, &req, key, src, 200, None, |_| {});
        if let Some(sdp) = deferred {
            debug!(?id, "PRACK received, sending the held 2xx");
            self.send_initial_2xx(now, id, sdp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rack_values() {
        assert_eq!(
            parse_rack("776656 1 INVITE"),
            Some((776656, 1, Method::Invite))
        );
        assert_eq!(parse_rack(" 5  2   INVITE "), Some((5, 2, Method::Invite)));
        assert_eq!(parse_rack("5 2"), None);
        assert_eq!(parse_rack("x 2 INVITE"), None);
        assert_eq!(parse_rack("5 2 INVITE extra"), None);
        assert_eq!(parse_rack("99999999999 2 INVITE"), None);
    }
}
