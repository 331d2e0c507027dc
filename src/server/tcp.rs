//! SIP over TCP: accepts connections, opens them when the SIP task must reach a phone or proxy
//! that has none open, frames each byte stream by Content-Length ([`crate::sip::framing`]) and
//! hands complete messages to the SIP task. Each connection has a writer channel the SIP task
//! uses for responses and requests on that connection.

use crate::sip::framing::{Frame, StreamFramer};
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What connections report to the SIP task.
pub enum TcpEvent {
    /// A connection is up: accepted (`outbound` false) or opened by [`connect`].
    Opened {
        conn: u64,
        peer: SocketAddr,
        writer: mpsc::Sender<Bytes>,
        outbound: bool,
    },
    Message {
        conn: u64,
        peer: SocketAddr,
        data: Bytes,
    },
    Closed {
        conn: u64,
    },
    /// [`connect`] could not open connection `conn` to `addr`.
    ConnectFailed {
        conn: u64,
        addr: SocketAddr,
    },
}

/// Idle connections are closed after this long without a byte (phones re-open as needed; a
/// registered phone keeps its connection alive with CRLF pings well within it).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Outgoing messages queued per connection before the connection is dropped as stuck.
const WRITE_QUEUE: usize = 256;
/// How long opening a connection may take before the messages queued for it are dropped.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

pub async fn accept_loop(listener: TcpListener, events: mpsc::Sender<TcpEvent>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: log, back off, keep accepting.
                tracing::warn!(error = %e, "TCP accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(serve(stream, peer, next_conn_id(), false, events.clone()));
    }
}

/// A fresh connection id (accepted and opened connections share one counter).
pub fn next_conn_id() -> u64 {
    NEXT_CONN.fetch_add(1, Ordering::Relaxed)
}

/// Opens a connection to `addr` as connection `conn` (the SIP task sends to a phone or proxy
/// with no live connection: RFC 3261 §18.1.1). Reports `Opened { outbound: true }` and then
/// serves it like an accepted one, or `ConnectFailed` within [`CONNECT_TIMEOUT`].
pub async fn connect(addr: SocketAddr, conn: u64, events: mpsc::Sender<TcpEvent>) {
    match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => serve(stream, addr, conn, true, events).await,
        Ok(Err(e)) => {
            tracing::warn!(%addr, error = %e, "opening a TCP connection failed");
            let _ = events.send(TcpEvent::ConnectFailed { conn, addr }).await;
        }
        Err(_) => {
            tracing::warn!(%addr, "opening a TCP connection timed out");
            let _ = events.send(TcpEvent::ConnectFailed { conn, addr }).await;
        }
    }
}

/// Runs one connection until it closes: frames what it reads, writes what the SIP task sends.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    conn: u64,
    outbound: bool,
    events: mpsc::Sender<TcpEvent>,
) {
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let pong = tx.clone();
    if events
        .send(TcpEvent::Opened {
            conn,
            peer,
            writer: tx,
            outbound,
        })
        .await
        .is_err()
    {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(data) = rx.recv().await {
            if wr.write_all(&data).await.is_err() {
                break;
            }
        }
    });
    let mut framer = StreamFramer::new();
    let mut buf = vec![0u8; 16 * 1024];
    'read: loop {
        let n = match tokio::time::timeout(IDLE_TIMEOUT, rd.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => n,
            Ok(Err(_)) => break,
        };
        framer.push(&buf[..n]);
        loop {
            match framer.next_frame() {
                Ok(Some(Frame::Message(data))) => {
                    if events
                        .send(TcpEvent::Message { conn, peer, data })
                        .await
                        .is_err()
                    {
                        break 'read;
                    }
                }
                Ok(Some(Frame::Ping)) => {
                    // RFC 5626 §3.5.1: answer a double-CRLF ping with a single CRLF pong.
                    let _ = pong.try_send(Bytes::from_static(b"\r\n"));
                }
                // A pong to a ping we never send: ignore.
                Ok(Some(Frame::Pong)) => {}
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "closing TCP connection: unframeable SIP stream");
                    break 'read;
                }
            }
        }
    }
    writer.abort();
    let _ = events.send(TcpEvent::Closed { conn }).await;
}
