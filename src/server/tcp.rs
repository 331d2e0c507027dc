//! SIP over TCP: accepts connections, frames each byte stream by Content-Length
//! ([`crate::sip::framing`]) and hands complete messages to the SIP task. Each connection has a
//! writer channel the SIP task uses for responses and in-dialog requests on that connection.

use crate::sip::framing::{Frame, StreamFramer};
use bytes::Bytes;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What connections report to the SIP task.
pub enum TcpEvent {
    Opened {
        conn: u64,
        peer: SocketAddr,
        writer: mpsc::Sender<Bytes>,
    },
    Message {
        conn: u64,
        peer: SocketAddr,
        data: Bytes,
    },
    Closed {
        conn: u64,
    },
}

/// Idle connections are closed after this long without a byte (phones re-open as needed; a
/// registered phone keeps its connection alive with CRLF pings well within it).
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// Outgoing messages queued per connection before the connection is dropped as stuck.
const WRITE_QUEUE: usize = 256;

pub async fn accept_loop(listener: TcpListener, events: mpsc::Sender<TcpEvent>) {
    let mut next_conn: u64 = 1;
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
        let _ = stream.set_nodelay(true);
        let conn = next_conn;
        next_conn += 1;
        let events = events.clone();
        tokio::spawn(async move {
            let (mut rd, mut wr) = stream.into_split();
            let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
            let pong = tx.clone();
            if events
                .send(TcpEvent::Opened {
                    conn,
                    peer,
                    writer: tx,
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
        });
    }
}
