//! The SIP task: the only owner of the sans-IO [`Endpoint`]. It feeds it datagrams, TCP frames,
//! call-task commands and timer expiries, then drains what the endpoint wants sent and the call
//! events it produced. Nothing in here blocks: a slow call task never stalls SIP (call event
//! channels are unbounded but carry only a handful of events per call).

use super::call::{self, CallHandle};
use super::tcp::{self, TcpEvent};
use super::Services;
use crate::sip::endpoint::{CallEvent, CallId, Endpoint, EndpointConfig, Limits, Peer, Transport};
use crate::sip::message::{NameAddr, Uri};
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
    /// The credential lookup failed (store error): the request gets 500 with Retry-After.
    CredentialFailed {
        id: AuthId,
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
        /// The binding's Path (RFC 3327): Route headers, first hop as destination.
        route: Vec<NameAddr>,
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
            trusted_proxies: cfg.sip.trusted_proxies.clone(),
        },
        limits,
    );
    endpoint
        .enable_registrar(cfg.registrar.clone(), RegistrarLimits::default())
        .map_err(|e| anyhow::anyhow!("config section [registrar]: {e}"))?;

    let (tcp_tx, mut tcp_rx) = mpsc::channel::<TcpEvent>(1024);
    let accept = tokio::spawn(tcp::accept_loop(tcp_listener, tcp_tx.clone()));
    let mut notifies: HashMap<RequestId, oneshot::Sender<Option<u16>>> = HashMap::new();

    let mut tcp = TcpConns::default();
    let mut calls: HashMap<CallId, mpsc::UnboundedSender<CallEvent>> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut settings = services.settings.clone();
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
                TcpEvent::Opened { conn, peer, writer, outbound } => {
                    tcp.opened(conn, peer, writer, outbound);
                }
                TcpEvent::Message { conn, peer, data } => {
                    let peer = Peer { transport: Transport::Tcp, addr: peer, conn: Some(conn) };
                    endpoint.handle_input(now(), &data, peer);
                }
                TcpEvent::Closed { conn } => {
                    tcp.closed(conn);
                    endpoint.connection_closed(conn);
                }
                TcpEvent::ConnectFailed { conn, addr } => {
                    if tcp.connect_failed(conn, addr) {
                        endpoint.connect_failed(addr);
                    }
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
                    SipCommand::Credential { id, credential } => endpoint.credential(t, id, credential),
                    SipCommand::CredentialFailed { id } => endpoint.credential_failed(t, id),
                    SipCommand::Contacts { account_id, reply } => {
                        let _ = reply.send(endpoint.registrations(account_id));
                    }
                    SipCommand::Notify { to, peer, route, event, body, reply } => {
                        let body = body.map(|(ct, b)| (ct, Bytes::from(b)));
                        let id = endpoint.send_notify_routed(
                            t,
                            &to,
                            peer,
                            &route,
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

        while let Some((conn, addr)) = endpoint.poll_alias() {
            tcp.alias(conn, addr);
        }

        while let Some(tx) = endpoint.poll_transmit() {
            match tx.peer.transport {
                Transport::Tcp => {
                    if let Some(stuck) = tcp.send(tx.peer, tx.data, &tcp_tx) {
                        tracing::warn!(conn = stuck, peer = %tx.peer.addr, "TCP connection stuck or gone; dropping it");
                        endpoint.connection_closed(stuck);
                    }
                }
                Transport::Udp => {
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
                let command = match store.find_sip_account(&req.username).await {
                    Ok(found) => SipCommand::Credential {
                        id: req.id,
                        credential: found.map(|a| Credential {
                            account_id: a.endpoint_id,
                            guest: matches!(a.kind, AccountKind::Guest { .. }),
                            auth_username: a.auth_username,
                            password: a.password,
                            number: a.number,
                        }),
                    },
                    // Not "wrong password": the phone gets 500 with Retry-After and tries again.
                    Err(e) => {
                        tracing::warn!(error = %e, "credential lookup failed; answering 500 with Retry-After");
                        SipCommand::CredentialFailed { id: req.id }
                    }
                };
                let _ = cmd.send(command);
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
                }
                RegistrarEvent::RequestDone { id, status } => {
                    if let Some(reply) = notifies.remove(&id) {
                        let _ = reply.send(status);
                    }
                }
            }
        }

        // O(1) reads: the registrar keeps its counts (expiries without an event included).
        crate::metrics::global()
            .set_registrations(endpoint.binding_count(), endpoint.guests_registered());

        if accept.is_finished() {
            anyhow::bail!("the SIP TCP listener stopped");
        }
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The SIP task's TCP connections: writers by id, which connection reaches which address
/// (connections we opened, accepted ones by their peer address, and RFC 5923 aliases), and
/// messages waiting for a connection being opened.
#[derive(Default)]
struct TcpConns {
    writers: HashMap<u64, mpsc::Sender<Bytes>>,
    by_addr: HashMap<SocketAddr, u64>,
    /// Connection → the addresses it is indexed under (to clean `by_addr` when it closes).
    addrs: HashMap<u64, Vec<SocketAddr>>,
    /// Address → (connection being opened, messages for it).
    connecting: HashMap<SocketAddr, (u64, Vec<Bytes>)>,
}

/// Messages queued for one connection being opened; more are dropped (with a log line).
const CONNECTING_QUEUE: usize = 64;

impl TcpConns {
    fn index(&mut self, conn: u64, addr: SocketAddr) {
        self.by_addr.insert(addr, conn);
        let list = self.addrs.entry(conn).or_default();
        if !list.contains(&addr) {
            list.push(addr);
        }
    }

    fn opened(&mut self, conn: u64, peer: SocketAddr, writer: mpsc::Sender<Bytes>, outbound: bool) {
        if outbound {
            if let Some((_, queued)) = self.connecting.remove(&peer) {
                for data in queued {
                    if writer.try_send(data).is_err() {
                        tracing::warn!(conn, %peer, "new TCP connection's queue is full; message dropped");
                    }
                }
            }
        }
        // A live connection, accepted or opened, serves any message for its peer's address.
        self.index(conn, peer);
        self.writers.insert(conn, writer);
    }

    fn alias(&mut self, conn: u64, addr: SocketAddr) {
        if self.writers.contains_key(&conn) && self.by_addr.get(&addr) != Some(&conn) {
            tracing::debug!(conn, %addr, "TCP connection reusable for its Via address (alias)");
            self.index(conn, addr);
        }
    }

    fn closed(&mut self, conn: u64) {
        self.writers.remove(&conn);
        for addr in self.addrs.remove(&conn).unwrap_or_default() {
            if self.by_addr.get(&addr) == Some(&conn) {
                self.by_addr.remove(&addr);
            }
        }
    }

    /// Drops what waited for connection `conn` to `addr`. True when it was the attempt in
    /// progress for that address (the endpoint then fails what it sent there).
    fn connect_failed(&mut self, conn: u64, addr: SocketAddr) -> bool {
        match self.connecting.get(&addr) {
            Some((c, queued)) if *c == conn => {
                tracing::warn!(%addr, dropped = queued.len(), "no TCP connection to send to");
                self.connecting.remove(&addr);
                true
            }
            _ => false,
        }
    }

    /// Sends on the peer's connection; for a peer without one (`conn: None`), on a live
    /// connection to its address, or on one it opens (the message waits for it). Returns a
    /// connection found stuck or gone, which the caller reports to the endpoint as closed.
    fn send(&mut self, peer: Peer, data: Bytes, events: &mpsc::Sender<TcpEvent>) -> Option<u64> {
        if let Some(conn) = peer.conn {
            return match self.writers.get(&conn) {
                Some(w) if w.try_send(data).is_ok() => None,
                Some(_) => {
                    self.closed(conn);
                    Some(conn)
                }
                None => {
                    // Closed meanwhile: the endpoint hears of it from the Closed event (a
                    // request pending on it then fails; later ones go to an address).
                    tracing::debug!(conn, "TCP connection gone; message dropped");
                    None
                }
            };
        }
        let mut stuck = None;
        if let Some(conn) = self.by_addr.get(&peer.addr).copied() {
            match self.writers.get(&conn) {
                Some(w) if w.try_send(data.clone()).is_ok() => return None,
                Some(_) => stuck = Some(conn),
                None => {}
            }
            self.closed(conn);
        }
        match self.connecting.get_mut(&peer.addr) {
            Some((_, queued)) if queued.len() < CONNECTING_QUEUE => queued.push(data),
            Some(_) => {
                tracing::warn!(peer = %peer.addr, "too many messages wait for a TCP connection; dropped")
            }
            None => {
                let conn = tcp::next_conn_id();
                tracing::debug!(conn, peer = %peer.addr, "opening a TCP connection");
                self.connecting.insert(peer.addr, (conn, vec![data]));
                tokio::spawn(tcp::connect(peer.addr, conn, events.clone()));
            }
        }
        stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(addr: &str, conn: Option<u64>) -> Peer {
        Peer {
            transport: Transport::Tcp,
            addr: addr.parse().unwrap(),
            conn,
        }
    }

    #[tokio::test]
    async fn an_alias_reuses_the_connection_and_a_closed_one_is_replaced_by_a_new_one() {
        let (events_tx, mut events_rx) = mpsc::channel(16);
        let mut tcp = TcpConns::default();
        let (w, mut r) = mpsc::channel(8);
        // An accepted connection from the phone's ephemeral port, whose Via offered alias.
        tcp.opened(7, "127.0.0.1:40001".parse().unwrap(), w, false);
        tcp.alias(7, "127.0.0.1:5062".parse().unwrap());
        let msg = Bytes::from_static(b"BYE");
        assert_eq!(
            tcp.send(peer("127.0.0.1:5062", None), msg.clone(), &events_tx),
            None
        );
        assert_eq!(
            r.recv().await,
            Some(msg.clone()),
            "sent on the aliased connection"
        );

        // Once it is closed, a message for the address opens a connection (none listens on
        // this port, so the attempt fails and says so).
        tcp.closed(7);
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap();
        drop(free);
        assert_eq!(
            tcp.send(peer(&addr.to_string(), None), msg, &events_tx),
            None
        );
        assert!(tcp.connecting.contains_key(&addr));
        let ev = tokio::time::timeout(Duration::from_secs(10), events_rx.recv())
            .await
            .expect("an answer within the connect timeout");
        match ev {
            Some(TcpEvent::ConnectFailed { conn, addr: a }) => {
                assert_eq!(a, addr);
                assert!(tcp.connect_failed(conn, a), "the attempt in progress");
                assert!(!tcp.connect_failed(conn, a), "reported once");
            }
            _ => panic!("expected ConnectFailed"),
        }
    }

    #[tokio::test]
    async fn messages_wait_for_the_connection_being_opened() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (events_tx, mut events_rx) = mpsc::channel(16);
        let mut tcp = TcpConns::default();
        let p = peer(&addr.to_string(), None);
        tcp.send(p, Bytes::from_static(b"ONE "), &events_tx);
        tcp.send(p, Bytes::from_static(b"TWO"), &events_tx);
        let (mut stream, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .unwrap()
            .unwrap();
        match events_rx.recv().await {
            Some(TcpEvent::Opened {
                conn,
                peer,
                writer,
                outbound,
            }) => {
                assert!(outbound);
                tcp.opened(conn, peer, writer, outbound);
            }
            _ => panic!("expected Opened"),
        }
        let mut got = vec![0u8; 7];
        tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read_exact(&mut stream, &mut got),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(&got, b"ONE TWO", "queued in order, flushed once connected");
        assert!(tcp.connecting.is_empty());
    }
}
