//! The provisioning TFTP server, for phones that only speak TFTP (older Cisco SIP firmware
//! finds its server through DHCP option 150 and asks for `SEP<MAC>.cnf.xml` over TFTP).
//! Read-only: RFC 1350 read requests in `octet` or `netascii` mode, with the RFC 2347 option
//! extension and its `blksize` (RFC 2348), `tsize` and `timeout` (RFC 2349) options. The file
//! served is the one the HTTP server would serve ([`ProvState::fetch`]): TFTP carries no
//! User-Agent and no credentials, so the file name alone identifies the phone, and a
//! provisioned phone's file is only handed out under its key or to the address its account
//! registered from.
//!
//! Split like the SIP core: the protocol is sans-IO ([`parse`], [`classify`] for the listening
//! port, [`Transfer`] for one transfer: datagrams and the time in, datagrams and a deadline
//! out), driven by a thin tokio layer ([`serve`]). Decisions worth knowing:
//!
//! - Every transfer gets a socket of its own (RFC 1350's transfer ID): the phone's
//!   retransmitted RRQ reaches the listening port, its ACKs the transfer's port. A second RRQ
//!   from a port whose transfer is running is a retransmission and is dropped.
//! - Lock-step: one DATA in flight; it is retransmitted when the timeout passes without its
//!   ACK, at most [`Limits::max_retries`] times, then the transfer is abandoned. The first
//!   packet (OACK or DATA 1) is never retransmitted: a peer that has acknowledged nothing gets
//!   one packet per request, so a forged request cannot draw a stream of them. An ACK for an
//!   earlier block is ignored rather than answered (the Sorcerer's Apprentice bug, RFC 1123
//!   §4.2.3.1: answering duplicates doubles every later packet).
//! - Block numbers roll over to 0 after 65535 (what tftp-hpa and most clients do) so files of
//!   more than 65535 blocks still go through; a small `blksize` with the size cap reaches that.
//! - Bounded: [`Limits::max_transfers`] at once (beyond: ERROR 0 "server busy"), files up to
//!   [`Limits::max_file`] bytes, a whole transfer at most [`Limits::max_duration`].
//! - Write requests get ERROR 2; packets that are not requests on the listening port ERROR 4;
//!   ERROR packets are never answered (two servers could otherwise bounce them forever).

use super::serve::{FetchResult, ProvState};
use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// RFC 1350 opcodes (RFC 2347 adds OACK).
const OP_RRQ: u16 = 1;
const OP_WRQ: u16 = 2;
const OP_DATA: u16 = 3;
const OP_ACK: u16 = 4;
const OP_ERROR: u16 = 5;
const OP_OACK: u16 = 6;

/// RFC 1350's block size, used when the client asks for none.
pub const DEFAULT_BLKSIZE: usize = 512;
/// RFC 2348's valid `blksize` range.
pub const MIN_BLKSIZE: usize = 8;
pub const MAX_BLKSIZE: usize = 65464;
/// Options parsed from one request at most (real clients send three or four).
const MAX_OPTIONS: usize = 16;

/// TFTP error codes (RFC 1350 §5, RFC 2347 adds 8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    DiskFull = 3,
    IllegalOperation = 4,
    UnknownTransferId = 5,
    FileExists = 6,
    NoSuchUser = 7,
    OptionRefused = 8,
}

/// A request's transfer mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Octet,
    /// Text with CR LF line ends and bare CR sent as CR NUL (RFC 764's NVT ASCII).
    Netascii,
}

/// A decoded packet. Text fields are decoded lossily (they are only logged or matched
/// against ASCII names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    Rrq(RawRequest),
    Wrq(RawRequest),
    Data { block: u16, data: &'a [u8] },
    Ack { block: u16 },
    Error { code: u16, message: String },
    Oack { options: Vec<(String, String)> },
}

/// An RRQ or WRQ as sent: the file name, the mode (lower-cased) and the options (names
/// lower-cased, RFC 2347: names are case-insensitive), in the order sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRequest {
    pub filename: String,
    pub mode: String,
    pub options: Vec<(String, String)>,
}

/// Why a datagram is not a TFTP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("shorter than its opcode and fields")]
    Truncated,
    #[error("unknown opcode {0}")]
    UnknownOpcode(u16),
    #[error("a request field is not NUL-terminated")]
    Unterminated,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*s.first()?, *s.get(1)?]))
}

/// Splits NUL-terminated strings; `Err` when the last one has no NUL.
fn nul_strings(mut b: &[u8]) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let end = b
            .iter()
            .position(|&c| c == 0)
            .ok_or(ParseError::Unterminated)?;
        out.push(String::from_utf8_lossy(b.get(..end).unwrap_or_default()).into_owned());
        b = b.get(end + 1..).unwrap_or_default();
        // Options beyond the bound are dropped, not parsed (2 fields + pairs).
        if out.len() >= 2 + 2 * MAX_OPTIONS {
            break;
        }
    }
    Ok(out)
}

fn parse_request(body: &[u8]) -> Result<RawRequest, ParseError> {
    let fields = nul_strings(body)?;
    let mut it = fields.into_iter();
    let filename = it.next().ok_or(ParseError::Truncated)?;
    let mode = it.next().ok_or(ParseError::Truncated)?.to_ascii_lowercase();
    let mut options = Vec::new();
    // An odd trailing name without a value is ignored (RFC 2347 asks for pairs).
    while let (Some(name), Some(value)) = (it.next(), it.next()) {
        options.push((name.to_ascii_lowercase(), value));
    }
    Ok(RawRequest {
        filename,
        mode,
        options,
    })
}

/// Decodes one datagram. Never panics, whatever the input.
pub fn parse(datagram: &[u8]) -> Result<Packet<'_>, ParseError> {
    let op = u16_at(datagram, 0).ok_or(ParseError::Truncated)?;
    let body = datagram.get(2..).unwrap_or_default();
    match op {
        OP_RRQ => Ok(Packet::Rrq(parse_request(body)?)),
        OP_WRQ => Ok(Packet::Wrq(parse_request(body)?)),
        OP_DATA => Ok(Packet::Data {
            block: u16_at(datagram, 2).ok_or(ParseError::Truncated)?,
            data: datagram.get(4..).unwrap_or_default(),
        }),
        OP_ACK => Ok(Packet::Ack {
            block: u16_at(datagram, 2).ok_or(ParseError::Truncated)?,
        }),
        OP_ERROR => {
            let code = u16_at(datagram, 2).ok_or(ParseError::Truncated)?;
            // Lenient: a message missing its NUL is still an error packet.
            let msg = datagram.get(4..).unwrap_or_default();
            let msg = msg.split(|&c| c == 0).next().unwrap_or_default();
            Ok(Packet::Error {
                code,
                message: String::from_utf8_lossy(msg).into_owned(),
            })
        }
        OP_OACK => {
            let fields = nul_strings(body)?;
            let mut options = Vec::new();
            let mut it = fields.into_iter();
            while let (Some(n), Some(v)) = (it.next(), it.next()) {
                options.push((n.to_ascii_lowercase(), v));
            }
            Ok(Packet::Oack { options })
        }
        other => Err(ParseError::UnknownOpcode(other)),
    }
}

/// Encodes a packet (the server sends DATA, OACK and ERROR; the rest is for tests and
/// clients).
pub fn encode(packet: &Packet<'_>) -> Vec<u8> {
    fn strings(out: &mut Vec<u8>, items: &[&str]) {
        for s in items {
            out.extend_from_slice(s.as_bytes());
            out.push(0);
        }
    }
    let mut out = Vec::new();
    match packet {
        Packet::Rrq(r) | Packet::Wrq(r) => {
            let op = if matches!(packet, Packet::Rrq(_)) {
                OP_RRQ
            } else {
                OP_WRQ
            };
            out.extend_from_slice(&op.to_be_bytes());
            strings(&mut out, &[&r.filename, &r.mode]);
            for (n, v) in &r.options {
                strings(&mut out, &[n, v]);
            }
        }
        Packet::Data { block, data } => {
            out.extend_from_slice(&OP_DATA.to_be_bytes());
            out.extend_from_slice(&block.to_be_bytes());
            out.extend_from_slice(data);
        }
        Packet::Ack { block } => {
            out.extend_from_slice(&OP_ACK.to_be_bytes());
            out.extend_from_slice(&block.to_be_bytes());
        }
        Packet::Error { code, message } => {
            out.extend_from_slice(&OP_ERROR.to_be_bytes());
            out.extend_from_slice(&code.to_be_bytes());
            strings(&mut out, &[message]);
        }
        Packet::Oack { options } => {
            out.extend_from_slice(&OP_OACK.to_be_bytes());
            for (n, v) in options {
                strings(&mut out, &[n, v]);
            }
        }
    }
    out
}

/// An ERROR packet.
pub fn error_packet(code: ErrorCode, message: &str) -> Vec<u8> {
    encode(&Packet::Error {
        code: code as u16,
        message: message.to_string(),
    })
}

/// A read request the server will try to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRequest {
    pub filename: String,
    pub mode: Mode,
    /// Lower-cased names, in the order sent.
    pub options: Vec<(String, String)>,
}

/// What to do with a datagram that reached the listening port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A read request: look the file up and start a [`Transfer`].
    Read(ReadRequest),
    /// Answer with this ERROR packet (a write request, a mode we do not serve, a packet that
    /// belongs to no transfer, garbage).
    Reply(Vec<u8>),
    /// Drop it (an ERROR packet: never answered).
    Ignore,
}

/// Classifies a datagram that reached the listening port.
pub fn classify(datagram: &[u8]) -> Incoming {
    match parse(datagram) {
        Ok(Packet::Rrq(r)) => {
            let mode = match r.mode.as_str() {
                "octet" => Mode::Octet,
                "netascii" => Mode::Netascii,
                _ => {
                    return Incoming::Reply(error_packet(
                        ErrorCode::IllegalOperation,
                        "unsupported mode: use octet or netascii",
                    ))
                }
            };
            Incoming::Read(ReadRequest {
                filename: r.filename,
                mode,
                options: r.options,
            })
        }
        Ok(Packet::Wrq(_)) => {
            Incoming::Reply(error_packet(ErrorCode::AccessViolation, "read-only server"))
        }
        Ok(Packet::Error { .. }) => Incoming::Ignore,
        Ok(Packet::Data { .. } | Packet::Ack { .. } | Packet::Oack { .. }) => {
            Incoming::Reply(error_packet(ErrorCode::IllegalOperation, "not a request"))
        }
        Err(_) => Incoming::Reply(error_packet(
            ErrorCode::IllegalOperation,
            "malformed packet",
        )),
    }
}

/// The TFTP answer to a refused or failed fetch; `None` for a file.
pub fn fetch_error(result: &FetchResult) -> Option<(ErrorCode, &'static str)> {
    Some(match result {
        FetchResult::File { .. } => return None,
        FetchResult::NotFound => (ErrorCode::FileNotFound, "file not found"),
        FetchResult::Forbidden | FetchResult::AuthRequired { .. } => (
            ErrorCode::AccessViolation,
            "access denied: not from this phone's registered address",
        ),
        FetchResult::RateLimited => (ErrorCode::AccessViolation, "too many requests"),
        FetchResult::Failed { .. } | FetchResult::Unavailable { .. } => {
            (ErrorCode::NotDefined, "server error, try again later")
        }
    })
}

/// The server's bounds and timers.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Transfers at once; a request beyond gets ERROR 0 "server busy".
    pub max_transfers: usize,
    /// Largest file served (bytes as sent, after netascii conversion).
    pub max_file: usize,
    /// Largest `blksize` granted (at most [`MAX_BLKSIZE`]).
    pub max_blksize: usize,
    /// Retransmission timeout when the client negotiates none.
    pub timeout: Duration,
    /// Retransmissions of one packet before the transfer is abandoned.
    pub max_retries: u32,
    /// A whole transfer at most (a client that ACKs just before each timeout cannot hold a
    /// transfer slot for ever).
    pub max_duration: Duration,
    /// How long the file look-up (store, rendering) may take.
    pub fetch_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_transfers: 256,
            max_file: 1 << 20,
            max_blksize: MAX_BLKSIZE,
            timeout: Duration::from_secs(1),
            max_retries: 5,
            max_duration: Duration::from_secs(120),
            fetch_timeout: Duration::from_secs(10),
        }
    }
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The last block was acknowledged.
    Complete { bytes: usize, blocks: u64 },
    /// No ACK after the last retransmission, or the whole transfer took too long.
    TimedOut,
    /// The client sent an ERROR (code 8: it refused our OACK).
    PeerError { code: u16, message: String },
    /// The client sent something other than an ACK or ERROR (answered with ERROR 4).
    Protocol,
}

/// Converts a file to netascii: LF → CR LF, CR → CR NUL.
pub fn to_netascii(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / 16);
    for &b in data {
        match b {
            b'\n' => out.extend_from_slice(b"\r\n"),
            b'\r' => out.extend_from_slice(b"\r\0"),
            _ => out.push(b),
        }
    }
    out
}

/// A decimal option value (RFC 2347: ASCII digits), bounded.
fn option_number(v: &str) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// One read transfer, sans-IO: feed it the datagrams that reach its socket
/// ([`Transfer::handle_input`]) and the time ([`Transfer::handle_timeout`] once
/// [`Transfer::poll_timeout`] has passed); send what [`Transfer::poll_transmit`] returns.
#[derive(Debug)]
pub struct Transfer {
    peer: SocketAddr,
    data: Vec<u8>,
    blksize: usize,
    timeout: Duration,
    max_retries: u32,
    /// Block awaiting its ACK: 0 while the OACK awaits its ACK, then 1.. (not wrapped).
    current: u64,
    /// Number of the last DATA block (the one shorter than `blksize`, maybe empty).
    last: u64,
    /// The packet in flight, for retransmission.
    in_flight: Vec<u8>,
    retries: u32,
    /// The peer has acknowledged something: until then nothing is retransmitted.
    acked: bool,
    deadline: Instant,
    expires: Instant,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    outcome: Option<Outcome>,
}

impl Transfer {
    /// Starts sending `file` to `peer` as `request` asks: negotiates the options (an OACK
    /// when any is granted, else DATA 1 right away). `Err` is the ERROR to send instead (the
    /// file is too large).
    pub fn start(
        peer: SocketAddr,
        request: &ReadRequest,
        file: Vec<u8>,
        limits: &Limits,
        now: Instant,
    ) -> Result<Transfer, (ErrorCode, &'static str)> {
        let data = match request.mode {
            Mode::Octet => file,
            Mode::Netascii => to_netascii(&file),
        };
        if data.len() > limits.max_file {
            return Err((ErrorCode::DiskFull, "file too large"));
        }
        let mut blksize = DEFAULT_BLKSIZE;
        let mut timeout = limits.timeout;
        let mut granted: Vec<(String, String)> = Vec::new();
        for (name, value) in &request.options {
            if granted.iter().any(|(n, _)| n == name) {
                continue; // a repeated option: the first one counts
            }
            let n = option_number(value);
            match (name.as_str(), n) {
                // Below the range is invalid (ignored); above it, the server may answer with
                // a smaller size (RFC 2348).
                ("blksize", Some(n)) if n >= MIN_BLKSIZE as u64 => {
                    let max = limits.max_blksize.clamp(MIN_BLKSIZE, MAX_BLKSIZE) as u64;
                    blksize = n.min(max) as usize;
                    granted.push((name.clone(), blksize.to_string()));
                }
                // The size of the file as sent (after netascii conversion).
                ("tsize", Some(_)) => granted.push((name.clone(), data.len().to_string())),
                ("timeout", Some(n @ 1..=255)) => {
                    timeout = Duration::from_secs(n);
                    granted.push((name.clone(), n.to_string()));
                }
                _ => {} // unknown or invalid: left out of the OACK (RFC 2347)
            }
        }
        let last = (data.len() / blksize) as u64 + 1;
        let mut t = Transfer {
            peer,
            data,
            blksize,
            timeout,
            max_retries: limits.max_retries,
            current: 0,
            last,
            in_flight: Vec::new(),
            retries: 0,
            acked: false,
            deadline: now + timeout,
            expires: now + limits.max_duration,
            transmits: VecDeque::new(),
            outcome: None,
        };
        if granted.is_empty() {
            t.send_block(1, now);
        } else {
            t.in_flight = encode(&Packet::Oack { options: granted });
            t.transmits.push_back((peer, t.in_flight.clone()));
        }
        Ok(t)
    }

    /// The client this transfer sends to.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The negotiated block size.
    pub fn blksize(&self) -> usize {
        self.blksize
    }

    /// The retransmission timeout in use.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn send_block(&mut self, n: u64, now: Instant) {
        let start = (n.saturating_sub(1) as usize).saturating_mul(self.blksize);
        let end = start.saturating_add(self.blksize).min(self.data.len());
        let chunk = self.data.get(start..end).unwrap_or_default();
        // Wire numbers roll over to 0 after 65535.
        self.in_flight = encode(&Packet::Data {
            block: n as u16,
            data: chunk,
        });
        self.current = n;
        self.retries = 0;
        self.deadline = now + self.timeout;
        self.transmits
            .push_back((self.peer, self.in_flight.clone()));
    }

    fn finish(&mut self, outcome: Outcome) {
        self.outcome = Some(outcome);
        self.in_flight.clear();
    }

    /// A datagram that reached the transfer's socket from `from`.
    pub fn handle_input(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) {
        if from != self.peer {
            // RFC 1350 §4: answer the stranger, leave the transfer alone.
            self.transmits.push_back((
                from,
                error_packet(ErrorCode::UnknownTransferId, "unknown transfer ID"),
            ));
            return;
        }
        if self.outcome.is_some() {
            return;
        }
        match parse(datagram) {
            Ok(Packet::Ack { block }) => {
                if block != self.current as u16 {
                    return; // a duplicate (or a nonsense future block): never answered
                }
                self.acked = true;
                if self.current == self.last {
                    self.finish(Outcome::Complete {
                        bytes: self.data.len(),
                        blocks: self.last,
                    });
                } else {
                    self.send_block(self.current + 1, now);
                }
            }
            Ok(Packet::Error { code, message }) => {
                self.finish(Outcome::PeerError { code, message });
            }
            _ => {
                self.transmits.push_back((
                    self.peer,
                    error_packet(ErrorCode::IllegalOperation, "expected an ACK"),
                ));
                self.finish(Outcome::Protocol);
            }
        }
    }

    /// The time has come ([`Transfer::poll_timeout`]): retransmit, or give up.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        if now >= self.expires {
            self.transmits.push_back((
                self.peer,
                error_packet(ErrorCode::NotDefined, "transfer took too long"),
            ));
            self.finish(Outcome::TimedOut);
            return;
        }
        if now < self.deadline {
            return;
        }
        // A peer that never answered gets nothing beyond its first packet: a forged source
        // address must not turn one request into a stream of retransmissions. A real client
        // whose first packet was lost repeats its request, which starts a new transfer.
        if !self.acked || self.retries >= self.max_retries {
            self.finish(Outcome::TimedOut);
            return;
        }
        self.retries += 1;
        self.deadline = now + self.timeout;
        self.transmits
            .push_back((self.peer, self.in_flight.clone()));
    }

    /// The next datagram to send and where.
    pub fn poll_transmit(&mut self) -> Option<(SocketAddr, Vec<u8>)> {
        self.transmits.pop_front()
    }

    /// When to call [`Transfer::handle_timeout`]; `None` once the transfer is over.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.outcome {
            Some(_) => None,
            None => Some(self.deadline.min(self.expires)),
        }
    }

    /// How the transfer ended; `None` while it runs.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }
}

/// Removes a client from the running set when its transfer task ends, however it ends.
struct ActiveGuard {
    set: Arc<Mutex<HashSet<SocketAddr>>>,
    peer: SocketAddr,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if let Ok(mut s) = self.set.lock() {
            s.remove(&self.peer);
        }
    }
}

/// Serves read requests arriving on `socket` until the task is dropped. Each transfer runs
/// in a task of its own with a socket bound to the listening address's IP and a free port.
pub async fn serve(
    socket: tokio::net::UdpSocket,
    state: ProvState,
    limits: Limits,
) -> anyhow::Result<()> {
    let local = socket.local_addr()?;
    tracing::info!(%local, "provisioning TFTP server listening");
    let limits = Arc::new(limits);
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_transfers.max(1)));
    let active: Arc<Mutex<HashSet<SocketAddr>>> = Arc::default();
    // A request is one datagram of at most a few hundred bytes; longer ones are cut and then
    // fail to parse (their last field has no NUL), which is the right answer for them.
    let mut buf = vec![0u8; 2048];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems: not fatal.
                tracing::debug!(error = %e, "TFTP receive error");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let request = match classify(buf.get(..n).unwrap_or_default()) {
            Incoming::Read(r) => r,
            Incoming::Reply(pkt) => {
                tracing::debug!(%from, "TFTP: not a read request, refused");
                let _ = socket.send_to(&pkt, from).await;
                continue;
            }
            Incoming::Ignore => continue,
        };
        let is_new = match active.lock() {
            Ok(mut s) => s.insert(from),
            Err(_) => false,
        };
        if !is_new {
            tracing::debug!(%from, "TFTP: retransmitted RRQ of a running transfer dropped");
            continue;
        }
        let guard = ActiveGuard {
            set: active.clone(),
            peer: from,
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%from, file = %request.filename, "TFTP: too many transfers, refused");
            let _ = socket
                .send_to(&error_packet(ErrorCode::NotDefined, "server busy"), from)
                .await;
            drop(guard);
            continue;
        };
        let span = tracing::info_span!("tftp", peer = %from, file = %request.filename.chars().take(100).collect::<String>());
        let (state, limits, ip) = (state.clone(), limits.clone(), local.ip());
        tokio::spawn(
            async move {
                let _permit = permit;
                let _guard = guard;
                if let Err(e) = transfer(ip, from, request, &state, &limits).await {
                    tracing::warn!(error = %e, "TFTP transfer failed");
                }
            }
            .instrument(span),
        );
    }
}

/// One transfer: the file look-up, then the lock-step exchange on a socket of its own.
async fn transfer(
    ip: std::net::IpAddr,
    peer: SocketAddr,
    request: ReadRequest,
    state: &ProvState,
    limits: &Limits,
) -> anyhow::Result<()> {
    let sock = tokio::net::UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
    let fetched = tokio::time::timeout(
        limits.fetch_timeout,
        state.fetch(&request.filename, None, peer.ip()),
    )
    .await
    .unwrap_or(FetchResult::Unavailable { status: 503 });
    if let Some((code, message)) = fetch_error(&fetched) {
        tracing::info!(code = code as u16, message, "TFTP request refused");
        sock.send_to(&error_packet(code, message), peer).await?;
        return Ok(());
    }
    let FetchResult::File { body, .. } = fetched else {
        return Ok(());
    };
    let mut t = match Transfer::start(peer, &request, body.into_bytes(), limits, Instant::now()) {
        Ok(t) => t,
        Err((code, message)) => {
            tracing::warn!(message, "TFTP request refused");
            sock.send_to(&error_packet(code, message), peer).await?;
            return Ok(());
        }
    };
    // ACKs are 4 bytes; anything longer is cut and then answered as not an ACK.
    let mut buf = vec![0u8; 1024];
    loop {
        while let Some((to, pkt)) = t.poll_transmit() {
            if let Err(e) = sock.send_to(&pkt, to).await {
                tracing::debug!(error = %e, %to, "TFTP send failed");
            }
        }
        let Some(deadline) = t.poll_timeout() else {
            break;
        };
        tokio::select! {
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => t.handle_input(from, buf.get(..n).unwrap_or_default(), Instant::now()),
                // An unconnected UDP socket reports no ICMP errors on Linux; any error here
                // would repeat at once, so the transfer ends.
                Err(e) => anyhow::bail!("receive error: {e}"),
            },
            _ = tokio::time::sleep_until(deadline.into()) => t.handle_timeout(Instant::now()),
        }
    }
    match t.outcome() {
        Some(Outcome::Complete { bytes, blocks }) => {
            tracing::info!(
                bytes,
                blocks,
                blksize = t.blksize(),
                "TFTP transfer complete"
            )
        }
        other => tracing::warn!(outcome = ?other, "TFTP transfer not completed"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        "192.0.2.7:40000".parse().unwrap()
    }

    fn rrq(name: &str, mode: &str, options: &[(&str, &str)]) -> Vec<u8> {
        encode(&Packet::Rrq(RawRequest {
            filename: name.into(),
            mode: mode.into(),
            options: options
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        }))
    }

    fn read_request(options: &[(&str, &str)]) -> ReadRequest {
        match classify(&rrq("SEP001122AABBCC.cnf.xml", "octet", options)) {
            Incoming::Read(r) => r,
            other => panic!("{other:?}"),
        }
    }

    fn ack(block: u16) -> Vec<u8> {
        encode(&Packet::Ack { block })
    }

    /// Everything queued, parsed; all must go to the peer.
    fn sent(t: &mut Transfer) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some((to, p)) = t.poll_transmit() {
            assert_eq!(to, peer());
            out.push(p);
        }
        out
    }

    fn data_of(p: &[u8]) -> (u16, Vec<u8>) {
        match parse(p).unwrap() {
            Packet::Data { block, data } => (block, data.to_vec()),
            other => panic!("not DATA: {other:?}"),
        }
    }

    fn file(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    /// Runs a whole transfer ACKing every block; returns the DATA packets' (block, len) and
    /// the bytes received.
    fn run(mut t: Transfer, now: Instant) -> (Vec<(u16, usize)>, Vec<u8>) {
        let mut blocks = Vec::new();
        let mut got = Vec::new();
        for _ in 0..1_000_000 {
            let pkts = sent(&mut t);
            if t.outcome().is_some() {
                assert!(pkts.is_empty());
                break;
            }
            assert_eq!(pkts.len(), 1, "lock-step: one packet in flight");
            let (b, d) = match parse(&pkts[0]).unwrap() {
                Packet::Oack { .. } => (0, Vec::new()),
                Packet::Data { block, data } => {
                    blocks.push((block, data.len()));
                    (block, data.to_vec())
                }
                other => panic!("{other:?}"),
            };
            got.extend_from_slice(&d);
            t.handle_input(peer(), &ack(b), now);
        }
        assert!(matches!(t.outcome(), Some(Outcome::Complete { .. })));
        assert_eq!(t.poll_timeout(), None);
        (blocks, got)
    }

    #[test]
    fn packets_round_trip() {
        let p = rrq("a.cfg", "OcTeT", &[("BLKSIZE", "1024"), ("tsize", "0")]);
        assert_eq!(&p[..2], &[0, 1]);
        match parse(&p).unwrap() {
            Packet::Rrq(r) => {
                assert_eq!(r.filename, "a.cfg");
                assert_eq!(r.mode, "octet");
                assert_eq!(
                    r.options,
                    vec![
                        ("blksize".into(), "1024".into()),
                        ("tsize".into(), "0".into())
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        let d = encode(&Packet::Data {
            block: 258,
            data: b"xy",
        });
        assert_eq!(d, vec![0, 3, 1, 2, b'x', b'y']);
        assert_eq!(
            parse(&d).unwrap(),
            Packet::Data {
                block: 258,
                data: b"xy"
            }
        );
        assert_eq!(ack(7), vec![0, 4, 0, 7]);
        let e = error_packet(ErrorCode::FileNotFound, "nope");
        assert_eq!(e, b"\x00\x05\x00\x01nope\x00".to_vec());
        assert_eq!(
            parse(b"\x00\x05\x00\x02no nul").unwrap(),
            Packet::Error {
                code: 2,
                message: "no nul".into()
            }
        );
        let o = encode(&Packet::Oack {
            options: vec![("tsize".into(), "12".into())],
        });
        assert_eq!(o, b"\x00\x06tsize\x0012\x00".to_vec());
    }

    #[test]
    fn malformed_packets_are_errors_not_panics() {
        for bad in [
            &b""[..],
            b"\x00",
            b"\x00\x01",
            b"\x00\x01file",
            b"\x00\x01file\x00",
            b"\x00\x01file\x00octet",
            b"\x00\x03\x00",
            b"\x00\x04\x00",
            b"\x00\x05",
            b"\x00\x09\x00\x01",
            b"\xff\xff",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
            assert!(
                matches!(classify(bad), Incoming::Reply(_)),
                "{bad:?} is answered"
            );
        }
        // A trailing option name without value is dropped, not an error.
        match classify(b"\x00\x01f\x00octet\x00blksize\x00") {
            Incoming::Read(r) => assert!(r.options.is_empty()),
            other => panic!("{other:?}"),
        }
        // Random datagrams: to the listener and to a running transfer.
        use rand::Rng;
        let mut rng = rand::rng();
        let now = Instant::now();
        let mut t = Transfer::start(
            peer(),
            &read_request(&[]),
            file(5000),
            &Limits::default(),
            now,
        )
        .unwrap();
        for i in 0..20_000 {
            let len = rng.random_range(0..40);
            let mut d: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            if i % 2 == 0 && d.len() >= 2 {
                d[0] = 0;
                d[1] = rng.random_range(0..8);
            }
            let _ = classify(&d);
            let _ = parse(&d);
            t.handle_input(peer(), &d, now);
            t.handle_input("192.0.2.8:1".parse().unwrap(), &d, now);
            while t.poll_transmit().is_some() {}
        }
    }

    #[test]
    fn listener_refuses_writes_other_packets_and_modes() {
        let code = |p: Incoming| match p {
            Incoming::Reply(pkt) => match parse(&pkt).unwrap() {
                Packet::Error { code, .. } => code,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        let wrq = encode(&Packet::Wrq(RawRequest {
            filename: "x".into(),
            mode: "octet".into(),
            options: vec![],
        }));
        assert_eq!(code(classify(&wrq)), 2);
        assert_eq!(code(classify(&ack(1))), 4);
        assert_eq!(
            code(classify(&encode(&Packet::Data {
                block: 1,
                data: b""
            }))),
            4
        );
        assert_eq!(code(classify(&rrq("x", "mail", &[]))), 4);
        assert_eq!(
            classify(&error_packet(ErrorCode::NotDefined, "x")),
            Incoming::Ignore
        );
        match classify(&rrq("x", "NETASCII", &[])) {
            Incoming::Read(r) => assert_eq!(r.mode, Mode::Netascii),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn without_options_data_starts_at_once_and_the_last_block_is_short() {
        let now = Instant::now();
        let t = Transfer::start(
            peer(),
            &read_request(&[]),
            file(1300),
            &Limits::default(),
            now,
        )
        .unwrap();
        assert_eq!(t.blksize(), 512);
        let (blocks, got) = run(t, now);
        assert_eq!(blocks, vec![(1, 512), (2, 512), (3, 276)]);
        assert_eq!(got, file(1300));
    }

    #[test]
    fn an_exact_multiple_ends_with_an_empty_block_and_an_empty_file_is_one() {
        let now = Instant::now();
        let t = Transfer::start(
            peer(),
            &read_request(&[]),
            file(1024),
            &Limits::default(),
            now,
        )
        .unwrap();
        assert_eq!(run(t, now).0, vec![(1, 512), (2, 512), (3, 0)]);
        let t = Transfer::start(
            peer(),
            &read_request(&[]),
            Vec::new(),
            &Limits::default(),
            now,
        )
        .unwrap();
        assert_eq!(run(t, now).0, vec![(1, 0)]);
        // The same with a negotiated size.
        let r = read_request(&[("blksize", "100")]);
        let t = Transfer::start(peer(), &r, file(300), &Limits::default(), now).unwrap();
        assert_eq!(run(t, now).0, vec![(1, 100), (2, 100), (3, 100), (4, 0)]);
    }

    #[test]
    fn options_are_negotiated_in_an_oack() {
        let now = Instant::now();
        let r = read_request(&[
            ("blksize", "1024"),
            ("tsize", "0"),
            ("timeout", "3"),
            ("windowsize", "4"),
            ("blksize", "8"),
        ]);
        let mut t = Transfer::start(peer(), &r, file(3000), &Limits::default(), now).unwrap();
        let p = sent(&mut t);
        assert_eq!(p.len(), 1);
        assert_eq!(
            parse(&p[0]).unwrap(),
            Packet::Oack {
                options: vec![
                    ("blksize".into(), "1024".into()),
                    ("tsize".into(), "3000".into()),
                    ("timeout".into(), "3".into()),
                ]
            },
            "unknown and repeated options left out"
        );
        assert_eq!(t.timeout(), Duration::from_secs(3));
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(3)));
        // No DATA before the ACK of block 0.
        t.handle_input(peer(), &ack(1), now);
        assert!(sent(&mut t).is_empty());
        t.handle_input(peer(), &ack(0), now);
        let p = sent(&mut t);
        assert_eq!(data_of(&p[0]), (1, file(1024)));
        t.handle_input(peer(), &ack(1), now);
        let (blocks, got) = run(t, now);
        assert_eq!(blocks, vec![(2, 1024), (3, 952)]);
        let mut all = file(1024);
        all.extend(got);
        assert_eq!(all, file(3000));
    }

    #[test]
    fn invalid_option_values_are_ignored_or_clamped() {
        let now = Instant::now();
        let oack = |opts: &[(&str, &str)], limits: &Limits| -> Option<Vec<(String, String)>> {
            let mut t =
                Transfer::start(peer(), &read_request(opts), file(10), limits, now).unwrap();
            match parse(&sent(&mut t)[0]).unwrap() {
                Packet::Oack { options } => Some(options),
                Packet::Data { .. } => None,
                other => panic!("{other:?}"),
            }
        };
        let d = Limits::default();
        assert_eq!(oack(&[("blksize", "7")], &d), None);
        assert_eq!(oack(&[("blksize", "x1")], &d), None);
        assert_eq!(oack(&[("blksize", "")], &d), None);
        assert_eq!(oack(&[("timeout", "0")], &d), None);
        assert_eq!(oack(&[("timeout", "256")], &d), None);
        assert_eq!(oack(&[("tsize", "-1")], &d), None);
        assert_eq!(
            oack(&[("blksize", "70000")], &d),
            Some(vec![("blksize".into(), "65464".into())])
        );
        assert_eq!(
            oack(&[("blksize", "99999999999999999999999")], &d),
            None,
            "not a number we can hold"
        );
        let small = Limits {
            max_blksize: 1428,
            ..Limits::default()
        };
        assert_eq!(
            oack(&[("blksize", "8192")], &small),
            Some(vec![("blksize".into(), "1428".into())])
        );
        assert_eq!(
            oack(&[("blksize", "8")], &d),
            Some(vec![("blksize".into(), "8".into())])
        );
    }

    #[test]
    fn lost_packets_are_retransmitted_then_the_transfer_gives_up() {
        let t0 = Instant::now();
        let limits = Limits::default();
        let mut t = Transfer::start(peer(), &read_request(&[]), file(600), &limits, t0).unwrap();
        let first = sent(&mut t);
        assert_eq!(data_of(&first[0]).0, 1);
        // Before the deadline nothing happens.
        t.handle_timeout(t0 + Duration::from_millis(999));
        assert!(sent(&mut t).is_empty());
        t.handle_input(peer(), &ack(1), t0 + Duration::from_millis(500));
        let p = sent(&mut t);
        assert_eq!(data_of(&p[0]).0, 2);
        // A peer that answered: DATA 2 is retransmitted max_retries times, then given up.
        for _ in 0..5 {
            let at = t.poll_timeout().unwrap();
            t.handle_timeout(at);
            assert_eq!(sent(&mut t), p, "the same DATA again");
        }
        let at = t.poll_timeout().unwrap();
        t.handle_timeout(at);
        assert!(sent(&mut t).is_empty(), "given up silently");
        assert_eq!(t.outcome(), Some(&Outcome::TimedOut));
        assert_eq!(t.poll_timeout(), None);
        // Nothing more happens after the end.
        t.handle_input(peer(), &ack(2), at);
        t.handle_timeout(at + Duration::from_secs(60));
        assert!(sent(&mut t).is_empty());
    }

    #[test]
    fn a_peer_that_never_answers_gets_one_packet() {
        // A forged RRQ (the "peer" is a victim's address): one DATA, no retransmission.
        let t0 = Instant::now();
        let mut t = Transfer::start(
            peer(),
            &read_request(&[]),
            file(600),
            &Limits::default(),
            t0,
        )
        .unwrap();
        assert_eq!(sent(&mut t).len(), 1);
        let at = t.poll_timeout().unwrap();
        t.handle_timeout(at);
        assert!(sent(&mut t).is_empty(), "nothing beyond the first packet");
        assert_eq!(t.outcome(), Some(&Outcome::TimedOut));
        assert_eq!(t.poll_timeout(), None);
        // The same with options: the OACK once.
        let r = read_request(&[("blksize", "100")]);
        let mut t = Transfer::start(peer(), &r, file(600), &Limits::default(), t0).unwrap();
        assert_eq!(sent(&mut t).len(), 1);
        t.handle_timeout(t.poll_timeout().unwrap());
        assert!(sent(&mut t).is_empty());
    }

    #[test]
    fn the_whole_transfer_is_bounded() {
        let t0 = Instant::now();
        let limits = Limits {
            max_duration: Duration::from_secs(10),
            ..Limits::default()
        };
        let r = read_request(&[("tsize", "0")]);
        let mut t = Transfer::start(peer(), &r, file(100_000), &limits, t0).unwrap();
        let oack = sent(&mut t);
        assert_eq!(oack.len(), 1);
        // A client ACKing just in time every 0.9 s: cut at max_duration.
        let mut now = t0 + Duration::from_millis(900);
        t.handle_input(peer(), &ack(0), now);
        let mut block = 1u16;
        loop {
            let p = sent(&mut t);
            if t.outcome().is_some() {
                let last = p.last().expect("an ERROR says why");
                assert!(matches!(
                    parse(last).unwrap(),
                    Packet::Error { code: 0, .. }
                ));
                break;
            }
            assert!(now < t0 + Duration::from_secs(11), "bounded");
            now += Duration::from_millis(900);
            let deadline = t.poll_timeout().unwrap();
            if deadline <= now {
                t.handle_timeout(deadline);
                continue;
            }
            t.handle_input(peer(), &ack(block), now);
            block += 1;
        }
        assert_eq!(t.outcome(), Some(&Outcome::TimedOut));
    }

    #[test]
    fn duplicate_acks_are_ignored() {
        let now = Instant::now();
        let mut t = Transfer::start(
            peer(),
            &read_request(&[]),
            file(2000),
            &Limits::default(),
            now,
        )
        .unwrap();
        sent(&mut t);
        t.handle_input(peer(), &ack(1), now);
        assert_eq!(data_of(&sent(&mut t)[0]).0, 2);
        // The ACK of 1 again (the client's own retransmission): no second DATA 2.
        t.handle_input(peer(), &ack(1), now);
        t.handle_input(peer(), &ack(1), now);
        assert!(sent(&mut t).is_empty());
        // A future block is ignored as well.
        t.handle_input(peer(), &ack(9), now);
        assert!(sent(&mut t).is_empty());
        t.handle_input(peer(), &ack(2), now);
        assert_eq!(data_of(&sent(&mut t)[0]).0, 3);
        // The retransmission timer was restarted by the progress, not by the duplicates.
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_secs(1)));
    }

    #[test]
    fn errors_end_the_transfer_and_strangers_get_error_5() {
        let now = Instant::now();
        let limits = Limits::default();
        let mut t = Transfer::start(peer(), &read_request(&[]), file(2000), &limits, now).unwrap();
        sent(&mut t);
        // Another port of the same host is another transfer ID.
        let stranger: SocketAddr = "192.0.2.7:40001".parse().unwrap();
        t.handle_input(stranger, &ack(1), now);
        let (to, p) = t.poll_transmit().unwrap();
        assert_eq!(to, stranger);
        assert!(matches!(parse(&p).unwrap(), Packet::Error { code: 5, .. }));
        assert!(t.outcome().is_none());
        // The client aborts: no answer.
        t.handle_input(peer(), &error_packet(ErrorCode::DiskFull, "full"), now);
        assert!(sent(&mut t).is_empty());
        assert_eq!(
            t.outcome(),
            Some(&Outcome::PeerError {
                code: 3,
                message: "full".into()
            })
        );
        // A client refusing the OACK (error 8).
        let mut t = Transfer::start(
            peer(),
            &read_request(&[("blksize", "1024")]),
            file(10),
            &limits,
            now,
        )
        .unwrap();
        sent(&mut t);
        t.handle_input(peer(), &error_packet(ErrorCode::OptionRefused, ""), now);
        assert!(matches!(
            t.outcome(),
            Some(Outcome::PeerError { code: 8, .. })
        ));
        // DATA sent to a read transfer, or garbage: ERROR 4 and the end.
        for bad in [
            encode(&Packet::Data {
                block: 1,
                data: b"x",
            }),
            vec![0, 4, 1],
        ] {
            let mut t =
                Transfer::start(peer(), &read_request(&[]), file(10), &limits, now).unwrap();
            sent(&mut t);
            t.handle_input(peer(), &bad, now);
            let p = sent(&mut t);
            assert!(matches!(
                parse(&p[0]).unwrap(),
                Packet::Error { code: 4, .. }
            ));
            assert_eq!(t.outcome(), Some(&Outcome::Protocol));
        }
    }

    #[test]
    fn netascii_converts_line_ends_and_tsize_counts_what_is_sent() {
        assert_eq!(to_netascii(b"a\nb\rc\r\n"), b"a\r\nb\r\0c\r\0\r\n".to_vec());
        let now = Instant::now();
        let r = ReadRequest {
            filename: "f".into(),
            mode: Mode::Netascii,
            options: vec![("tsize".into(), "0".into())],
        };
        let mut t =
            Transfer::start(peer(), &r, b"x\ny\n".to_vec(), &Limits::default(), now).unwrap();
        match parse(&sent(&mut t)[0]).unwrap() {
            Packet::Oack { options } => assert_eq!(options, vec![("tsize".into(), "6".into())]),
            other => panic!("{other:?}"),
        }
        t.handle_input(peer(), &ack(0), now);
        assert_eq!(data_of(&sent(&mut t)[0]), (1, b"x\r\ny\r\n".to_vec()));
    }

    #[test]
    fn block_numbers_roll_over_and_size_is_bounded() {
        let now = Instant::now();
        let r = read_request(&[("blksize", "8")]);
        let n = 8 * 70_000 + 3;
        let t = Transfer::start(peer(), &r, file(n), &Limits::default(), now).unwrap();
        let (blocks, got) = run(t, now);
        assert_eq!(blocks.len(), 70_001);
        assert_eq!(blocks[65_534].0, 65_535);
        assert_eq!(blocks[65_535].0, 0, "rolled over");
        assert_eq!(blocks[65_536].0, 1);
        assert_eq!(got, file(n));
        let small = Limits {
            max_file: 100,
            ..Limits::default()
        };
        assert_eq!(
            Transfer::start(peer(), &read_request(&[]), file(101), &small, now)
                .unwrap_err()
                .0,
            ErrorCode::DiskFull
        );
        // netascii growth counts.
        let r = ReadRequest {
            filename: "f".into(),
            mode: Mode::Netascii,
            options: vec![],
        };
        assert!(Transfer::start(peer(), &r, vec![b'\n'; 60], &small, now).is_err());
    }

    #[test]
    fn fetch_results_map_to_tftp_errors() {
        let code = |r: FetchResult| fetch_error(&r).map(|e| e.0);
        assert_eq!(
            code(FetchResult::File {
                body: String::new(),
                xml: true
            }),
            None
        );
        assert_eq!(code(FetchResult::NotFound), Some(ErrorCode::FileNotFound));
        assert_eq!(
            code(FetchResult::Forbidden),
            Some(ErrorCode::AccessViolation)
        );
        assert_eq!(
            code(FetchResult::AuthRequired { stale: false }),
            Some(ErrorCode::AccessViolation)
        );
        assert_eq!(
            code(FetchResult::RateLimited),
            Some(ErrorCode::AccessViolation)
        );
        assert_eq!(
            code(FetchResult::Unavailable { status: 503 }),
            Some(ErrorCode::NotDefined)
        );
        assert_eq!(
            code(FetchResult::Failed { reason: "x" }),
            Some(ErrorCode::NotDefined)
        );
    }
}
