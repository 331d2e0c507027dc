//! The SIP task: the only owner of the sans-IO [`Endpoint`]. It feeds it datagrams, TCP frames,
//! call-task commands and timer expiries, then drains what the endpoint wants sent and the call
//! events it produced. Nothing in here blocks: a slow call task never stalls SIP (call event
//! channels are unbounded but carry only a handful of events per call).

use super::call::{self, CallHandle};
use super::tcp::{self, TcpEvent};
use super::Services;
use crate::sip::endpoint::{CallEvent, CallId, Endpoint, EndpointConfig, Limits, Peer, Transport};
use crate::sip::message::Uri;
use crate::sip::registrar::{
    AuthId, Credential, RegistrarEvent, RegistrarLimits, Registration, RequestId,
};
use crate::store::AccountKind;
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// What a call task asks of the SIP endpoint.
#[derive(Debug)]
pub enum SipCommand {
    Accept {
        call: CallId,
        sdp: Bytes,
    },
    Reject {
        call: CallId,
        status: u16,
    },
    AcceptReinvite {
        call: CallId,
        sdp: Bytes,
    },
    RejectReinvite {
        call: CallId,
        status: u16,
    },
    Hangup {
        call: CallId,
    },
    /// The answer to a credential lookup the endpoint asked for.
    Credential {
        id: AuthId,
        credential: Option<Credential>,
    },
    /// The live contacts of a registrar account: contact URI and where its REGISTER came from.
    Contacts {
        account_id: i64,
        reply: oneshot::Sender<Vec<Registration>>,
    },
    /// Send an out-of-dialog NOTIFY (resync); the reply is the final status, None on timeout.
    Notify {
        to: Uri,
        peer: Peer,
        event: String,
        /// (Content-Type, body).
        body: Option<(String, String)>,
        reply: oneshot::Sender<Option<u16>>,
    },
}

/// The channel call tasks, the resync task and credential look-ups talk to the SIP task on.
pub fn channel() -> (
    mpsc::UnboundedSender<SipCommand>,
    mpsc::UnboundedReceiver<SipCommand>,
) {
    mpsc::unbounded_channel()
}

pub async fn run(
    services: Arc<Services>,
    udp: UdpSocket,
    tcp_listener: TcpListener,
    advertised: SocketAddr,
    cmd_tx: mpsc::UnboundedSender<SipCommand>,
    mut cmd_rx: mpsc::UnboundedReceiver<SipCommand>,
) -> anyhow::Result<()> {
    let cfg = &services.config;
    let limits = Limits {
        max_calls: cfg.sip.max_calls,
        ..Limits::default()
    };
    let mut endpoint = Endpoint::with_limits(
        EndpointConfig {
            local_addr: advertised,
            ivr_extensions: services.current_settings().extensions.clone(),
            user_agent: cfg.sip.user_agent.clone(),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        },
        limits,
    );
    endpoint
        .enable_registrar(cfg.registrar.clone(), RegistrarLimits::default())
        .map_err(|e| anyhow::anyhow!("config section [registrar]: {e}"))?;

    let (tcp_tx, mut tcp_rx) = mpsc::channel::<TcpEvent>(1024);
    let accept = tokio::spawn(tcp::accept_loop(tcp_listener, tcp_tx));
    let mut notifies: HashMap<RequestId, oneshot::Sender<Option<u16>>> = HashMap::new();

    let mut tcp_writers: HashMap<u64, mpsc::Sender<Bytes>> = HashMap::new();
    let mut calls: HashMap<CallId, mpsc::UnboundedSender<CallEvent>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut settings = services.settings.clone();
    let mut registered = Registered::default();
    // Anchor between tokio's clock (paused in tests) and std's Instant the endpoint takes.
    let now = || Instant::now().into_std();

    loop {
        let deadline = endpoint.poll_timeout().map(Instant::from_std);
        tokio::select! {
            r = udp.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    let peer = Peer { transport: Transport::Udp, addr: from, conn: None };
                    endpoint.handle_input(now(), &buf[..n], peer);
                }
                // ICMP port unreachable surfaces here on some systems: not fatal.
                Err(e) => tracing::debug!(error = %e, "UDP receive error"),
            },
            Some(ev) = tcp_rx.recv() => match ev {
                TcpEvent::Opened { conn, writer, .. } => { tcp_writers.insert(conn, writer); }
                TcpEvent::Message { conn, peer, data } => {
                    let peer = Peer { transport: Transport::Tcp, addr: peer, conn: Some(conn) };
                    endpoint.handle_input(now(), &data, peer);
                }
                TcpEvent::Closed { conn } => {
                    tcp_writers.remove(&conn);
                    endpoint.connection_closed(conn);
                }
            },
            Some(cmd) = cmd_rx.recv() => {
                let t = now();
                match cmd {
                    SipCommand::Accept { call, sdp } => endpoint.accept(t, call, sdp),
                    SipCommand::Reject { call, status } => {
                        crate::metrics::global().call_setup_rejected(status);
                        endpoint.reject(t, call, status)
                    }
                    SipCommand::AcceptReinvite { call, sdp } => endpoint.accept_reinvite(t, call, sdp),
                    SipCommand::RejectReinvite { call, status } => endpoint.reject_reinvite(t, call, status),
                    SipCommand::Hangup { call } => endpoint.hangup(t, call),
                    SipCommand::Credential { id, credential } => {
                        if let Some(c) = credential.as_ref().filter(|c| c.guest) {
                            registered.guest_seen(c.account_id);
                        }
                        endpoint.credential(t, id, credential)
                    }
                    SipCommand::Contacts { account_id, reply } => {
                        let _ = reply.send(endpoint.registrations(account_id));
                    }
                    SipCommand::Notify { to, peer, event, body, reply } => {
                        let body = body.map(|(ct, b)| (ct, Bytes::from(b)));
                        let id = endpoint.send_notify(
                            t,
                            &to,
                            peer,
                            &event,
                            body.as_ref().map(|(ct, b)| (ct.as_str(), b.clone())),
                        );
                        notifies.insert(id, reply);
                    }
                }
            }
            _ = sleep_until_opt(deadline) => endpoint.handle_timeout(now()),
            Ok(()) = settings.changed() => {
                let exts = settings.borrow_and_update().extensions.clone();
                tracing::info!(extensions = ?exts, "IVR extensions updated");
                endpoint.set_ivr_extensions(exts);
            }
        }

        while let Some(tx) = endpoint.poll_transmit() {
            match (tx.peer.transport, tx.peer.conn) {
                (Transport::Tcp, Some(conn)) => match tcp_writers.get(&conn) {
                    Some(w) => {
                        if w.try_send(tx.data).is_err() {
                            tracing::warn!(conn, peer = %tx.peer.addr, "TCP connection stuck or gone; dropping it");
                            tcp_writers.remove(&conn);
                            endpoint.connection_closed(conn);
                        }
                    }
                    None => tracing::debug!(conn, "no TCP connection for outgoing message"),
                },
                _ => {
                    if let Err(e) = udp.send_to(&tx.data, tx.peer.addr).await {
                        tracing::debug!(peer = %tx.peer.addr, error = %e, "UDP send failed");
                    }
                }
            }
        }

        while let Some((id, ev)) = endpoint.poll_event() {
            match ev {
                CallEvent::Incoming {
                    invite,
                    offer,
                    source,
                    account,
                } => {
                    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
                    calls.insert(id, ev_tx);
                    let handle = CallHandle {
                        id,
                        commands: cmd_tx.clone(),
                        events: ev_rx,
                    };
                    tokio::spawn(call::run(
                        services.clone(),
                        handle,
                        invite,
                        offer,
                        source,
                        account,
                    ));
                }
                other => {
                    let ended = matches!(other, CallEvent::Ended { .. });
                    if let Some(tx) = calls.get(&id) {
                        let _ = tx.send(other);
                    }
                    if ended {
                        calls.remove(&id);
                    }
                }
            }
        }

        while let Some(req) = endpoint.poll_auth_request() {
            // The store query runs beside the SIP task; its answer comes back as a command.
            let store = services.store.clone();
            let cmd = cmd_tx.clone();
            tokio::spawn(async move {
                let credential = match store.find_sip_account(&req.username).await {
                    Ok(Some(a)) => Some(Credential {
                        account_id: a.endpoint_id,
                        guest: matches!(a.kind, AccountKind::Guest { .. }),
                        auth_username: a.auth_username,
                        password: a.password,
                        number: a.number,
                    }),
                    Ok(None) => None,
                    Err(e) => {
                        tracing::warn!(error = %e, "credential lookup failed; answering as unknown");
                        None
                    }
                };
                let _ = cmd.send(SipCommand::Credential {
                    id: req.id,
                    credential,
                });
            });
        }

        while let Some(ev) = endpoint.poll_registrar_event() {
            match ev {
                RegistrarEvent::Registered {
                    account_id,
                    peer,
                    contacts,
                } => {
                    tracing::info!(account = account_id, peer = %peer.addr, contacts = contacts.len(), "registered");
                    registered.set(account_id, contacts.len());
                    let store = services.store.clone();
                    tokio::spawn(async move {
                        if let Err(e) = store.record_registration(account_id, peer.addr.ip()).await
                        {
                            tracing::warn!(account = account_id, error = %e, "recording the registration failed");
                        }
                    });
                }
                RegistrarEvent::Unregistered { account_id } => {
                    tracing::info!(account = account_id, "unregistered (removed or expired)");
                    registered.set(account_id, 0);
                }
                RegistrarEvent::RequestDone { id, status } => {
                    if let Some(reply) = notifies.remove(&id) {
                        let _ = reply.send(status);
                    }
                }
            }
        }

        if accept.is_finished() {
            anyhow::bail!("the SIP TCP listener stopped");
        }
    }
}

/// The registrar gauges, kept from the registrar's events (the endpoint does not expose its
/// registrar's counters): `Registered` carries every current contact of the account and
/// `Unregistered` its last one going. One contact of several expiring on its own emits no event,
/// so the gauge is corrected at the account's next REGISTER or last expiry.
#[derive(Default)]
struct Registered {
    /// Live contacts per account with at least one.
    contacts: HashMap<i64, usize>,
    /// Accounts the store said are guest accounts (from the credential look-ups that precede
    /// every authenticated REGISTER).
    guests: std::collections::HashSet<i64>,
    bindings: usize,
    /// Guest accounts in `contacts`.
    guests_bound: usize,
}

impl Registered {
    fn guest_seen(&mut self, account_id: i64) {
        self.guests.insert(account_id);
        // Look-ups that did not end in a binding leave entries behind: prune them so the set
        // stays the size of the registered guests (the guard keeps pruning rare).
        if self.guests.len() > 2 * self.contacts.len() + 1024 {
            let contacts = &self.contacts;
            self.guests
                .retain(|a| *a == account_id || contacts.contains_key(a));
        }
    }

    fn set(&mut self, account_id: i64, n: usize) {
        let old = if n == 0 {
            self.contacts.remove(&account_id).unwrap_or(0)
        } else {
            self.contacts.insert(account_id, n).unwrap_or(0)
        };
        self.bindings = self.bindings.saturating_sub(old).saturating_add(n);
        let guest = if n == 0 {
            self.guests.remove(&account_id)
        } else {
            self.guests.contains(&account_id)
        };
        if guest && old == 0 && n > 0 {
            self.guests_bound += 1;
        } else if guest && old > 0 && n == 0 {
            self.guests_bound = self.guests_bound.saturating_sub(1);
        }
        crate::metrics::global().set_registrations(self.bindings, self.guests_bound);
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::Registered;

    #[test]
    fn registrar_gauges_follow_the_events() {
        let mut r = Registered::default();
        // A line account with two contacts, then a guest with one.
        r.set(1, 2);
        r.guest_seen(7);
        r.set(7, 1);
        assert_eq!((r.bindings, r.guests_bound), (3, 1));
        // A refresh with the same contacts changes nothing; one contact removed counts.
        r.set(7, 1);
        r.set(1, 1);
        assert_eq!((r.bindings, r.guests_bound), (2, 1));
        // The guest unregisters (bound meanwhile: its line registers instead).
        r.set(7, 0);
        assert_eq!((r.bindings, r.guests_bound), (1, 0));
        assert!(!r.guests.contains(&7), "forgotten with its last contact");
        // An unregistration of an account never seen is harmless.
        r.set(99, 0);
        assert_eq!((r.bindings, r.guests_bound), (1, 0));
        r.set(1, 0);
        assert_eq!((r.bindings, r.guests_bound, r.contacts.len()), (0, 0, 0));
    }

    #[test]
    fn guest_lookups_without_a_binding_are_pruned() {
        let mut r = Registered::default();
        r.guest_seen(1);
        r.set(1, 1);
        for a in 100..3_000 {
            r.guest_seen(a);
        }
        assert!(r.guests.len() <= 2 * r.contacts.len() + 1024 + 1);
        assert!(r.guests.contains(&1), "a registered guest is kept");
        r.set(1, 0);
        assert_eq!(r.guests_bound, 0);
    }
}
