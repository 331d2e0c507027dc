//! A minimal SIP user agent client over UDP, written by hand for the media tests, with RTP
//! endpoints that record every packet they receive (arrival time, source, header fields,
//! payload bytes) and senders that pace PCMU silence on a drift-free 20 ms clock and can type
//! keys as RFC 4733 telephone-events in that same stream ([`RtpSender::send_key`]).
//!
//! Why not SIPp: the media tests must see every RTP packet the server sends (SSRC, sequence
//! numbers, timestamps, marker, arrival times), send RTP from a socket other than the one the
//! SDP names (symmetric RTP), stop sending at a chosen moment (inactivity) and send re-INVITEs
//! between RTP observations (hold/resume). SIPp 3.6 can do none of that.
//!
//! Deliberately small: one dialog, UDP only, `127.0.0.1`. It retransmits INVITE and BYE on
//! loopback all the same (500 ms), re-ACKs a retransmitted 2xx, answers the server's requests
//! only when the test says so ([`Uac::wait_request`] + [`Uac::respond`]), and keeps a trace of
//! every message for failure messages ([`Uac::trace`]). Every wait is bounded.

use std::collections::VecDeque;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// SIP timer T1 (RFC 3261 §17.1.1.1): first retransmission interval.
const T1: Duration = Duration::from_millis(500);
/// Bound for any transaction of the UAC to end (64 x T1 is 32 s; on loopback 10 s is ample).
const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// A SIP message as received: start line, headers in order, body.
#[derive(Debug, Clone)]
pub struct SipMessage {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub raw: String,
}

/// Compact header forms (RFC 3261 §7.3.3) we may meet.
fn full_name(name: &str) -> &str {
    match name.to_ascii_lowercase().as_str() {
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "i" => "call-id",
        "m" => "contact",
        "l" => "content-length",
        "c" => "content-type",
        _ => name,
    }
}

impl SipMessage {
    /// Parses one datagram; `None` if it is not a SIP message.
    pub fn parse(data: &[u8]) -> Option<SipMessage> {
        let raw = String::from_utf8_lossy(data).into_owned();
        let (head, body) = match raw.find("\r\n\r\n") {
            Some(i) => (&raw[..i], &raw[i + 4..]),
            None => (raw.as_str(), ""),
        };
        let mut lines = head.split("\r\n");
        let start_line = lines.next()?.to_owned();
        if !(start_line.starts_with("SIP/2.0 ") || start_line.ends_with(" SIP/2.0")) {
            return None;
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with(' ') || line.starts_with('\t') {
                // Folded continuation (RFC 3261 §7.3.1).
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
                continue;
            }
            let (n, v) = line.split_once(':')?;
            headers.push((
                full_name(n.trim()).to_ascii_lowercase(),
                v.trim().to_owned(),
            ));
        }
        Some(SipMessage {
            start_line,
            headers,
            body: body.to_owned(),
            raw,
        })
    }

    /// The first value of header `name` (case-insensitive, compact forms understood).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = full_name(name).to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`, in order.
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        let name = full_name(name).to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        let rest = self.start_line.strip_prefix("SIP/2.0 ")?;
        rest.get(..3)?.parse().ok()
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&str> {
        if self.status().is_some() {
            return None;
        }
        self.start_line.split_whitespace().next()
    }

    /// CSeq number and method.
    pub fn cseq(&self) -> Option<(u32, String)> {
        let v = self.header("cseq")?;
        let mut it = v.split_whitespace();
        let n = it.next()?.parse().ok()?;
        Some((n, it.next()?.to_ascii_uppercase()))
    }
}

/// The `tag` parameter of a From/To value.
fn tag_of(value: &str) -> Option<String> {
    // Parameters follow the closing '>' when there is a name-addr.
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("tag")
            .then(|| v.trim().to_owned())
    })
}

/// The URI inside `<...>` of a Contact value (or the value itself).
fn uri_of(value: &str) -> String {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if b > a => value[a + 1..b].to_owned(),
        _ => value.split(';').next().unwrap_or(value).trim().to_owned(),
    }
}

fn random_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// One SIP dialog as the caller (UAC).
pub struct Uac {
    sock: UdpSocket,
    pub local: SocketAddr,
    pub server: SocketAddr,
    service: String,
    pub call_id: String,
    from_tag: String,
    to_tag: Option<String>,
    remote_target: String,
    cseq: u32,
    /// CSeq of the last INVITE (the ACK for its 2xx carries it).
    invite_cseq: u32,
    /// The last ACK sent, re-sent when the server retransmits its 2xx.
    last_ack: Option<(u32, String)>,
    /// Requests from the server not yet taken by [`Uac::wait_request`].
    requests: VecDeque<(Instant, SipMessage)>,
    /// Every message sent (`>>`) and received (`<<`), with the time since the UAC was made.
    trace: Vec<String>,
    started: Instant,
    /// The MAC the INVITE announces (Cisco-style `+sip.instance`), 12 hex digits.
    pub mac: String,
}

impl Uac {
    /// A UAC on a fresh 127.0.0.1 port calling `service` (the IVR extension) on `server`.
    pub fn new(server: SocketAddr, service: &str) -> Uac {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind the UAC's SIP socket");
        let local = sock.local_addr().expect("UAC local address");
        Uac {
            sock,
            local,
            server,
            service: service.to_owned(),
            call_id: format!("{}@e2e-uac", random_token()),
            from_tag: random_token(),
            to_tag: None,
            remote_target: format!("sip:{service}@{server}"),
            cseq: 0,
            invite_cseq: 0,
            last_ack: None,
            requests: VecDeque::new(),
            trace: Vec::new(),
            started: Instant::now(),
            mac: "0004f2e0e1e2".into(),
        }
    }

    /// Every SIP message of the dialog so far, for failure messages.
    pub fn trace(&self) -> String {
        self.trace.join("\n")
    }

    fn log(&mut self, dir: &str, text: &str) {
        let t = self.started.elapsed().as_secs_f64();
        self.trace.push(format!("--- {dir} at {t:.3} s\n{text}"));
    }

    fn send_raw(&mut self, text: &str) {
        self.log(">>", text);
        self.sock
            .send_to(text.as_bytes(), self.server)
            .expect("send SIP over loopback");
    }

    fn header_from(&self) -> String {
        format!(
            "\"E2E UAC\" <sip:e2e-uac@{}>;tag={}",
            self.local, self.from_tag
        )
    }

    fn header_to(&self) -> String {
        let base = format!("<sip:{}@{}>", self.service, self.server);
        match &self.to_tag {
            Some(t) => format!("{base};tag={t}"),
            None => base,
        }
    }

    fn request(
        &self,
        method: &str,
        uri: &str,
        cseq: u32,
        branch: &str,
        sdp: Option<&str>,
    ) -> String {
        let mut m = format!(
            "{method} {uri} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch=z9hG4bK{branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: {from}\r\n\
             To: {to}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} {method}\r\n",
            local = self.local,
            from = self.header_from(),
            to = self.header_to(),
            call_id = self.call_id,
        );
        if method == "INVITE" {
            m += &format!(
                "Contact: <sip:e2e-uac@{}>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-{}>\"\r\n\
                 User-Agent: Cisco-CP8845/14.2.1\r\n\
                 Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO\r\n",
                self.local, self.mac
            );
        }
        match sdp {
            Some(body) => {
                m += &format!(
                    "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
            }
            None => m += "Content-Length: 0\r\n\r\n",
        }
        m
    }

    /// Receives one message until `deadline`. Requests from the server are queued; a
    /// retransmitted 2xx to an INVITE already ACKed is re-ACKed and skipped.
    fn recv_response(&mut self, deadline: Instant) -> Option<SipMessage> {
        let mut buf = vec![0u8; 65_535];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("set read timeout");
            let (n, _from) = match self.sock.recv_from(&mut buf) {
                Ok(r) => r,
                Err(_) => continue, // timeout: the loop checks the deadline
            };
            let Some(msg) = SipMessage::parse(&buf[..n]) else {
                continue;
            };
            self.log("<<", &msg.raw.clone());
            if msg.status().is_none() {
                self.requests.push_back((Instant::now(), msg));
                continue;
            }
            if let (Some(st), Some((n, m))) = (msg.status(), msg.cseq()) {
                if (200..300).contains(&st) && m == "INVITE" {
                    if let Some((acked, ack)) = self.last_ack.clone() {
                        if acked == n {
                            self.send_raw(&ack);
                            continue;
                        }
                    }
                }
            }
            return Some(msg);
        }
    }

    /// Runs a client transaction: sends `text`, retransmits it (doubling from T1, RFC 3261
    /// §17.1.1.2 / §17.1.2.2) until a response comes, and returns the final response.
    fn transaction(&mut self, text: String, cseq: u32, method: &str) -> SipMessage {
        self.send_raw(&text);
        let deadline = Instant::now() + TRANSACTION_TIMEOUT;
        let mut interval = T1;
        let mut next_retx = Instant::now() + interval;
        let mut provisional = false;
        loop {
            let until = if provisional {
                deadline
            } else {
                next_retx.min(deadline)
            };
            match self.recv_response(until) {
                Some(r) => {
                    let matches = r
                        .cseq()
                        .is_some_and(|(n, m)| n == cseq && m.eq_ignore_ascii_case(method));
                    if !matches {
                        continue;
                    }
                    let st = r.status().unwrap_or(0);
                    if st >= 200 {
                        return r;
                    }
                    provisional = true;
                }
                None if Instant::now() >= deadline => panic!(
                    "no final response to {method} (CSeq {cseq}) within {TRANSACTION_TIMEOUT:?}\n{}",
                    self.trace()
                ),
                None => {
                    self.send_raw(&text);
                    interval = (interval * 2).min(Duration::from_secs(4));
                    next_retx = Instant::now() + interval;
                }
            }
        }
    }

    /// Sends the INVITE (with `sdp` as the offer, or none for a late offer) and returns the
    /// final response. A 2xx establishes the dialog (To tag, remote target); call [`Uac::ack`].
    pub fn invite(&mut self, sdp: Option<&str>) -> SipMessage {
        assert!(
            self.to_tag.is_none(),
            "invite() starts the dialog; use reinvite()"
        );
        self.cseq += 1;
        self.invite_cseq = self.cseq;
        let uri = format!("sip:{}@{}", self.service, self.server);
        let text = self.request("INVITE", &uri, self.cseq, &random_token(), sdp);
        let resp = self.transaction(text, self.cseq, "INVITE");
        if resp.status().is_some_and(|s| (200..300).contains(&s)) {
            self.to_tag = resp.header("to").and_then(tag_of);
            if let Some(c) = resp.header("contact") {
                self.remote_target = uri_of(c);
            }
        }
        resp
    }

    /// ACKs the 2xx of the last INVITE (with `sdp` as the answer to a late offer).
    pub fn ack(&mut self, sdp: Option<&str>) {
        let target = self.remote_target.clone();
        let text = self.request("ACK", &target, self.invite_cseq, &random_token(), sdp);
        self.last_ack = Some((self.invite_cseq, text.clone()));
        self.send_raw(&text);
    }

    /// A re-INVITE in the dialog with `sdp` as the offer; returns the final response and ACKs
    /// a 2xx.
    pub fn reinvite(&mut self, sdp: Option<&str>) -> SipMessage {
        assert!(
            self.to_tag.is_some(),
            "reinvite() needs an established dialog"
        );
        self.cseq += 1;
        self.invite_cseq = self.cseq;
        let target = self.remote_target.clone();
        let text = self.request("INVITE", &target, self.cseq, &random_token(), sdp);
        let resp = self.transaction(text, self.cseq, "INVITE");
        if resp.status().is_some_and(|s| (200..300).contains(&s)) {
            self.ack(None);
        }
        resp
    }

    /// Hangs up: BYE in the dialog; returns the final status.
    pub fn bye(&mut self) -> u16 {
        self.cseq += 1;
        let target = self.remote_target.clone();
        let text = self.request("BYE", &target, self.cseq, &random_token(), None);
        let resp = self.transaction(text, self.cseq, "BYE");
        resp.status().unwrap_or(0)
    }

    /// Waits (bounded) for a request `method` from the server; returns its arrival time and it.
    /// Other requests stay queued.
    pub fn wait_request(
        &mut self,
        method: &str,
        timeout: Duration,
    ) -> Option<(Instant, SipMessage)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(i) = self
                .requests
                .iter()
                .position(|(_, r)| r.method().is_some_and(|m| m.eq_ignore_ascii_case(method)))
            {
                return self.requests.remove(i);
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Responses arriving meanwhile (e.g. a retransmitted 2xx) are handled or dropped.
            let _ = self.recv_response(deadline);
        }
    }

    /// Requests received from the server and not yet taken, e.g. to check there was no BYE.
    pub fn pending_requests(&mut self, settle: Duration) -> Vec<SipMessage> {
        let deadline = Instant::now() + settle;
        while Instant::now() < deadline {
            let _ = self.recv_response(deadline);
        }
        self.requests.iter().map(|(_, r)| r.clone()).collect()
    }

    /// Answers a request of the server with `status` (headers copied per RFC 3261 §8.2.6.2).
    pub fn respond(&mut self, req: &SipMessage, status: u16, reason: &str) {
        let mut m = format!("SIP/2.0 {status} {reason}\r\n");
        for v in req.headers_named("via") {
            m += &format!("Via: {v}\r\n");
        }
        for name in ["From", "To", "Call-ID", "CSeq"] {
            if let Some(v) = req.header(name) {
                m += &format!("{name}: {v}\r\n");
            }
        }
        m += "Content-Length: 0\r\n\r\n";
        self.send_raw(&m);
    }
}

// ----------------------------------------------------------------------------------------
// SDP

/// An audio offer/answer of the test phone: `o=` version `version`, media on `rtp_port`,
/// `codecs` as (PT, "PCMU") pairs, optional telephone-event PT, ptime 20, `direction`.
pub fn sdp(
    version: u64,
    rtp_port: u16,
    codecs: &[(u8, &str)],
    te: Option<u8>,
    direction: &str,
) -> String {
    let mut pts: Vec<String> = codecs.iter().map(|(pt, _)| pt.to_string()).collect();
    if let Some(te) = te {
        pts.push(te.to_string());
    }
    let mut s = format!(
        "v=0\r\no=e2e 4242 {version} IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP {}\r\n",
        pts.join(" ")
    );
    for (pt, name) in codecs {
        s += &format!("a=rtpmap:{pt} {name}/8000\r\n");
    }
    if let Some(te) = te {
        s += &format!("a=rtpmap:{te} telephone-event/8000\r\na=fmtp:{te} 0-15\r\n");
    }
    s += &format!("a=ptime:20\r\na={direction}\r\n");
    s
}

/// The SDP lines of a body, trimmed.
pub fn sdp_lines(body: &str) -> Vec<&str> {
    body.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The `o=` line.
pub fn sdp_origin(body: &str) -> Option<String> {
    sdp_lines(body)
        .into_iter()
        .find(|l| l.starts_with("o="))
        .map(str::to_owned)
}

/// The session version (third field) of the `o=` line.
pub fn sdp_origin_version(body: &str) -> Option<u64> {
    sdp_origin(body)?.split_whitespace().nth(2)?.parse().ok()
}

/// The audio RTP address: `c=` (media-level wins) and the `m=audio` port.
pub fn sdp_audio_addr(body: &str) -> Option<SocketAddr> {
    let lines = sdp_lines(body);
    let m_idx = lines.iter().position(|l| l.starts_with("m=audio "))?;
    let port: u16 = lines[m_idx].split_whitespace().nth(1)?.parse().ok()?;
    let c_of = |l: &&str| l.strip_prefix("c=IN IP4 ").map(|a| a.trim().to_owned());
    let media_c = lines[m_idx + 1..]
        .iter()
        .take_while(|l| !l.starts_with("m="))
        .find_map(c_of);
    let ip = media_c.or_else(|| lines[..m_idx].iter().find_map(c_of))?;
    format!("{ip}:{port}").parse().ok()
}

/// The payload types of the `m=audio` line.
pub fn sdp_audio_pts(body: &str) -> Vec<u8> {
    sdp_lines(body)
        .into_iter()
        .find(|l| l.starts_with("m=audio "))
        .map(|l| {
            l.split_whitespace()
                .skip(3)
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The direction attribute of the body (`sendrecv` when there is none, RFC 3264 §5.1).
pub fn sdp_direction(body: &str) -> String {
    sdp_lines(body)
        .into_iter()
        .rev()
        .find_map(|l| {
            let a = l.strip_prefix("a=")?;
            ["sendrecv", "sendonly", "recvonly", "inactive"]
                .contains(&a)
                .then(|| a.to_owned())
        })
        .unwrap_or_else(|| "sendrecv".into())
}

// ----------------------------------------------------------------------------------------
// RTP

/// One RTP packet as received.
#[derive(Debug, Clone)]
pub struct RtpRx {
    pub at: Instant,
    pub from: SocketAddr,
    pub version: u8,
    pub marker: bool,
    pub pt: u8,
    pub seq: u16,
    pub ts: u32,
    pub ssrc: u32,
    /// Payload length (after a header without CSRCs or extension, as the server sends).
    pub payload_len: usize,
    pub header_len: usize,
    /// The payload bytes (after the header; padding, which the server never sends, included).
    pub payload: Vec<u8>,
}

fn parse_rtp(data: &[u8], at: Instant, from: SocketAddr) -> Option<RtpRx> {
    if data.len() < 12 {
        return None;
    }
    let cc = usize::from(data[0] & 0x0F);
    let ext = data[0] & 0x10 != 0;
    let mut header_len = 12 + 4 * cc;
    if ext {
        let l = data.get(header_len + 2..header_len + 4)?;
        header_len += 4 + 4 * usize::from(u16::from_be_bytes([l[0], l[1]]));
    }
    let payload_len = data.len().checked_sub(header_len)?;
    Some(RtpRx {
        at,
        from,
        version: data[0] >> 6,
        marker: data[1] & 0x80 != 0,
        pt: data[1] & 0x7F,
        seq: u16::from_be_bytes([data[2], data[3]]),
        ts: u32::from_be_bytes([data[4], data[5], data[6], data[7]]),
        ssrc: u32::from_be_bytes([data[8], data[9], data[10], data[11]]),
        payload_len,
        header_len,
        payload: data.get(header_len..)?.to_vec(),
    })
}

/// A UDP socket on 127.0.0.1 whose thread records every RTP packet it receives.
pub struct RtpEndpoint {
    socket: Arc<UdpSocket>,
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<RtpRx>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl RtpEndpoint {
    /// Binds an even port (RTP convention; the server does not care) and starts recording.
    pub fn bind() -> RtpEndpoint {
        let deadline = Instant::now() + Duration::from_secs(5);
        let socket = loop {
            let s = UdpSocket::bind("127.0.0.1:0").expect("bind an RTP socket");
            if s.local_addr().map(|a| a.port() % 2 == 0).unwrap_or(false)
                || Instant::now() > deadline
            {
                break s;
            }
        };
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .expect("set read timeout");
        let addr = socket.local_addr().expect("RTP local address");
        let socket = Arc::new(socket);
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (socket, received, stop) = (socket.clone(), received.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, from)) = socket.recv_from(&mut buf) {
                        let at = Instant::now();
                        if let Some(p) = parse_rtp(&buf[..n], at, from) {
                            received.lock().unwrap_or_else(|e| e.into_inner()).push(p);
                        }
                    }
                }
            })
        };
        RtpEndpoint {
            socket,
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    /// Every packet received so far.
    pub fn packets(&self) -> Vec<RtpRx> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Packets received since `t`.
    pub fn packets_since(&self, t: Instant) -> Vec<RtpRx> {
        self.packets().into_iter().filter(|p| p.at >= t).collect()
    }

    /// Starts sending PCMU/PCMA silence (`pt` 0 or 8) to `to` from this socket, one 160-byte
    /// packet every 20 ms on a drift-free clock (packet n is due at start + n x 20 ms).
    pub fn start_sending(&self, to: SocketAddr, pt: u8) -> RtpSender {
        RtpSender::start(self.socket.clone(), to, pt)
    }
}

impl Drop for RtpEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One RFC 4733 key press queued on an [`RtpSender`].
#[derive(Debug, Clone, Copy)]
struct KeyPress {
    te_pt: u8,
    event: u8,
    /// How many 20 ms packets the key is held (the last of them carries the end bit).
    packets: u32,
}

/// The key press a sender is in the middle of.
struct KeyInProgress {
    key: KeyPress,
    /// The RTP timestamp of the event's start: every packet of the event carries it.
    ts: u32,
    /// Packets of the event sent so far.
    sent: u32,
}

/// The end packet of an event is sent three times (RFC 4733 §2.5.1.4).
const END_PACKETS: u32 = 3;

/// Key presses shared between an [`RtpSender`] and its thread.
#[derive(Default)]
struct Keys {
    queue: VecDeque<KeyPress>,
    /// When the first packet of each key press left, in order.
    started: Vec<Instant>,
    /// Key presses whose last end packet has been sent.
    done: u32,
}

/// A paced RTP source (see [`RtpEndpoint::start_sending`]); stops when dropped.
///
/// It can also type keys as RFC 4733 telephone-events ([`RtpSender::send_key`]) in the same
/// stream, as a phone does: same socket, SSRC and sequence numbers; while a key is sent the
/// event packets take the place of the audio packets.
pub struct RtpSender {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU32>,
    /// Time of the first and of the last packet sent.
    times: Arc<Mutex<(Option<Instant>, Option<Instant>)>>,
    keys: Arc<Mutex<Keys>>,
    thread: Option<JoinHandle<()>>,
}

/// The RFC 4733 payload (§2.3): event, E bit and volume (10, i.e. -10 dBm0), duration.
fn event_payload(event: u8, end: bool, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [event, if end { 0x80 } else { 0 } | 10, d[0], d[1]]
}

impl RtpSender {
    fn start(socket: Arc<UdpSocket>, to: SocketAddr, pt: u8) -> RtpSender {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU32::new(0));
        let times = Arc::new(Mutex::new((None, None)));
        let keys: Arc<Mutex<Keys>> = Arc::default();
        let silence = if pt == 8 { 0xD5 } else { 0xFF };
        let ssrc: u32 = rand::random();
        let seq0: u16 = rand::random();
        let ts0: u32 = rand::random();
        let thread = {
            let (stop, sent, times, keys) =
                (stop.clone(), sent.clone(), times.clone(), keys.clone());
            std::thread::spawn(move || {
                let start = Instant::now();
                let mut n: u32 = 0;
                let mut audio = vec![0u8; 12 + 160];
                audio[12..].fill(silence);
                let mut event = [0u8; 12 + 4];
                let mut current: Option<KeyInProgress> = None;
                while !stop.load(Ordering::Relaxed) {
                    let due = start + Duration::from_millis(20) * n;
                    let now = Instant::now();
                    if due > now {
                        std::thread::sleep(due - now);
                        continue;
                    }
                    let ts = ts0.wrapping_add(n.wrapping_mul(160));
                    if current.is_none() {
                        let mut k = keys.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(key) = k.queue.pop_front() {
                            k.started.push(Instant::now());
                            current = Some(KeyInProgress { key, ts, sent: 0 });
                        }
                    }
                    let pkt: &mut [u8] = match current.as_mut() {
                        Some(kp) => {
                            let held = kp.key.packets.max(1);
                            // Updates carry the duration so far; the end packets, the whole.
                            let units = kp.sent.min(held - 1).saturating_add(1).saturating_mul(160);
                            let duration = u16::try_from(units).unwrap_or(u16::MAX);
                            let end = kp.sent + 1 >= held;
                            event[1] = if kp.sent == 0 { 0x80 } else { 0 } | kp.key.te_pt;
                            event[4..8].copy_from_slice(&kp.ts.to_be_bytes());
                            event[12..].copy_from_slice(&event_payload(
                                kp.key.event,
                                end,
                                duration,
                            ));
                            kp.sent += 1;
                            if kp.sent >= held + END_PACKETS - 1 {
                                current = None;
                                keys.lock().unwrap_or_else(|e| e.into_inner()).done += 1;
                            }
                            &mut event
                        }
                        None => {
                            audio[1] = if n == 0 { 0x80 | pt } else { pt };
                            audio[4..8].copy_from_slice(&ts.to_be_bytes());
                            &mut audio
                        }
                    };
                    pkt[0] = 0x80;
                    pkt[2..4].copy_from_slice(&seq0.wrapping_add(n as u16).to_be_bytes());
                    pkt[8..12].copy_from_slice(&ssrc.to_be_bytes());
                    if socket.send_to(pkt, to).is_ok() {
                        let t = Instant::now();
                        let mut g = times.lock().unwrap_or_else(|e| e.into_inner());
                        g.0.get_or_insert(t);
                        g.1 = Some(t);
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    n += 1;
                }
            })
        };
        RtpSender {
            stop,
            sent,
            times,
            keys,
            thread: Some(thread),
        }
    }

    /// Queues a key press sent as RFC 4733 telephone-events with payload type `te_pt`, held
    /// for `held` (rounded up to 20 ms packets): a start packet with the marker bit, updates
    /// with the growing duration, then the end packet three times, all with the event's start
    /// timestamp. Keys are sent one after the other, in order. Panics on a key that is not
    /// `0`-`9`, `*`, `#`, `A`-`D`.
    pub fn send_key(&self, te_pt: u8, key: char, held: Duration) {
        let event = match key.to_ascii_uppercase() {
            c @ '0'..='9' => c as u8 - b'0',
            '*' => 10,
            '#' => 11,
            c @ 'A'..='D' => c as u8 - b'A' + 12,
            other => panic!("{other:?} is not a DTMF key"),
        };
        let packets = u32::try_from(held.as_millis().div_ceil(20))
            .unwrap_or(u32::MAX)
            .max(1);
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .queue
            .push_back(KeyPress {
                te_pt,
                event,
                packets,
            });
    }

    /// When the first packet of each key press sent so far left, in order.
    pub fn keys_started(&self) -> Vec<Instant> {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .started
            .clone()
    }

    /// Waits (bounded) until `n` key presses have been sent completely (end packets included);
    /// false on timeout.
    pub fn wait_keys_sent(&self, n: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.keys.lock().unwrap_or_else(|e| e.into_inner()).done >= n {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Packets sent so far.
    pub fn sent(&self) -> u32 {
        self.sent.load(Ordering::Relaxed)
    }

    /// When the first packet left (None before).
    pub fn first_sent_at(&self) -> Option<Instant> {
        self.times.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Stops sending; returns the time of the last packet sent.
    pub fn stop(mut self) -> Option<Instant> {
        self.halt();
        self.times.lock().unwrap_or_else(|e| e.into_inner()).1
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RtpSender {
    fn drop(&mut self) {
        self.halt();
    }
}
