//! End to end over TCP: a phone that closed its connections still gets selfprov's BYE and its
//! resync NOTIFY, over a connection selfprov opens to the phone's Contact (RFC 3261 §18.1.1),
//! with a TCP Via, rather than over UDP to the closed connection's ephemeral port.
//!
//! The phone is written here (SIPp cannot close a TCP connection in the middle of a call): it
//! listens on the port its Contact names, registers its guest account on one connection and
//! closes it, calls the IVR on a second one and types its keys as SIP INFO, then closes that
//! one before the server's closing prompt ends. Every wait is bounded.

mod common;

use common::http::{self, cfg_value};
use common::server::{Server, JDOE};
use selfprov::sip::digest::Challenge;
use selfprov::sip::framing::{Frame, StreamFramer};
use selfprov::sip::message::{parse, Message, Method, Request, Response};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

const YEALINK_MAC: &str = "805ec0a1b2c3";
const YEALINK_UA: &str = "Yealink SIP-T46S 66.86.0.15 80:5e:c0:a1:b2:c3";

/// One TCP connection with its framer.
struct Conn {
    stream: TcpStream,
    framer: StreamFramer,
    /// Opened by the server (accepted on the phone's listener), not by the phone.
    from_server: bool,
}

impl Conn {
    fn new(stream: TcpStream, from_server: bool) -> Conn {
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        Conn {
            stream,
            framer: StreamFramer::new(),
            from_server,
        }
    }

    fn send(&mut self, msg: &str) {
        self.stream.write_all(msg.as_bytes()).expect("TCP write");
    }

    /// The next complete message, if one arrives within 50 ms.
    fn poll(&mut self) -> Option<Message> {
        loop {
            match self.framer.next_frame() {
                Ok(Some(Frame::Message(data))) => {
                    return Some(parse(&data).expect("the server sends parseable SIP"))
                }
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => panic!("unframeable stream from the server: {e}"),
            }
            let mut buf = [0u8; 8192];
            match self.stream.read(&mut buf) {
                Ok(0) => return None,
                Ok(n) => self.framer.push(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                Err(e) => panic!("TCP read: {e}"),
            }
        }
    }

    fn response(&mut self, timeout: Duration) -> Response {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(Message::Response(r)) = self.poll() {
                if r.status >= 200 {
                    return r;
                }
            }
        }
        panic!("no final response within {timeout:?}");
    }
}

/// The phone: its listener (the Contact's port) and the connections it knows.
struct Phone {
    listener: TcpListener,
    port: u16,
    server: SocketAddr,
    number: String,
    auth_name: String,
    password: String,
    branch: u32,
}

impl Phone {
    fn contact(&self) -> String {
        format!(
            "<sip:{}@127.0.0.1:{};transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-{YEALINK_MAC}>\"",
            self.number, self.port
        )
    }

    fn via(&mut self) -> String {
        self.branch += 1;
        format!(
            "SIP/2.0/TCP 127.0.0.1:{};branch=z9hG4bKtcp{}x{};rport",
            self.port, self.port, self.branch
        )
    }

    fn connect(&self) -> Conn {
        let s = TcpStream::connect_timeout(&self.server, Duration::from_secs(5)).expect("connect");
        Conn::new(s, false)
    }

    fn register(&mut self, c: &mut Conn, cseq: u32, auth: Option<&str>) -> Response {
        let uri = format!("sip:{}", self.server);
        let via = self.via();
        let authz = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        c.send(&format!(
            "REGISTER {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
             From: <sip:{n}@127.0.0.1>;tag=reg1\r\nTo: <sip:{n}@127.0.0.1>\r\n\
             Call-ID: tcp-reg-{p}@127.0.0.1\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\n\
             {authz}Expires: 300\r\nUser-Agent: {YEALINK_UA}\r\nContent-Length: 0\r\n\r\n",
            n = self.number,
            p = self.port,
            contact = self.contact(),
        ));
        c.response(Duration::from_secs(10))
    }

    /// Waits for a request on any connection, accepting the ones the server opens.
    fn next_request(&mut self, conns: &mut Vec<Conn>, timeout: Duration) -> (Request, usize) {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.listener.accept() {
                Ok((s, _)) => conns.push(Conn::new(s, true)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => panic!("accept: {e}"),
            }
            for (i, c) in conns.iter_mut().enumerate() {
                if let Some(Message::Request(r)) = c.poll() {
                    return (r, i);
                }
            }
        }
        panic!("no request from the server within {timeout:?}");
    }
}

/// A 200 to `req`, copying what a response copies.
fn ok_for(req: &Request) -> String {
    let mut s = String::from("SIP/2.0 200 OK\r\n");
    for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
        for v in req.headers.get_all(name) {
            let v = if name == "To" && !v.contains("tag=") {
                format!("{v};tag=ph1")
            } else {
                v.to_owned()
            };
            s.push_str(&format!("{name}: {v}\r\n"));
        }
    }
    s.push_str("Content-Length: 0\r\n\r\n");
    s
}

#[test]
fn a_phone_that_closed_its_connections_gets_the_bye_and_the_notify_over_new_ones() {
    let server = Server::start_with_autoreg(r#"["MD5", "SHA-256"]"#, vec![]);
    server.add_user(&JDOE);
    let prov = server.provisioning.expect("provisioning address");
    let r = http::get(prov, &format!("/{YEALINK_MAC}.cfg"), YEALINK_UA);
    assert_eq!(r.status, 200, "{}", r.body);
    let get = |k: &str| cfg_value(&r.body, k).unwrap_or_else(|| panic!("no {k}:\n{}", r.body));
    let listener = TcpListener::bind("127.0.0.1:0").expect("phone listener");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let mut phone = Phone {
        listener,
        port,
        server: server.sip,
        number: get("account.1.user_name"),
        auth_name: get("account.1.auth_name"),
        password: get("account.1.password"),
        branch: 0,
    };

    // 1. Register on connection A, then close it.
    let mut a = phone.connect();
    let r401 = phone.register(&mut a, 1, None);
    assert_eq!(r401.status, 401);
    let challenge = r401
        .headers
        .get_all("WWW-Authenticate")
        .find_map(|v| Challenge::parse(v).ok())
        .expect("a digest challenge");
    let uri = format!("sip:{}", server.sip);
    let auth = challenge.authorization(
        &phone.auth_name,
        &phone.password,
        "REGISTER",
        &uri,
        1,
        "0a4f113b",
    );
    let r200 = phone.register(&mut a, 2, Some(&auth));
    assert_eq!(r200.status, 200, "{r200:?}");
    drop(a);

    // 2. Call the IVR on connection B and type the keys as INFO.
    let rtp = UdpSocket::bind("127.0.0.1:0").expect("RTP socket");
    let rtp_port = rtp.local_addr().expect("addr").port();
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {rtp_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    );
    let mut b = phone.connect();
    let call_id = format!("tcp-call-{port}@127.0.0.1");
    let from = format!("<sip:{}@127.0.0.1>;tag=call1", phone.number);
    let via = phone.via();
    b.send(&format!(
        "INVITE sip:8000@{srv} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\n\
         To: <sip:8000@{srv}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: {contact}\r\n\
         User-Agent: {YEALINK_UA}\r\nContent-Type: application/sdp\r\nContent-Length: {len}\r\n\r\n{sdp}",
        srv = server.sip,
        contact = phone.contact(),
        len = sdp.len(),
    ));
    let ok = b.response(Duration::from_secs(10));
    assert_eq!(ok.status, 200, "{ok:?}");
    let to = ok.headers.get("To").expect("To").to_owned();
    let via = phone.via();
    b.send(&format!(
        "ACK sip:8000@{srv};transport=tcp SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
         From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
        srv = server.sip,
    ));
    let mut cseq = 1;
    let mut key = |b: &mut Conn, phone: &mut Phone, k: char, pause_ms: u64| {
        std::thread::sleep(Duration::from_millis(pause_ms));
        cseq += 1;
        let body = format!("Signal={k}\r\nDuration=160\r\n");
        let via = phone.via();
        b.send(&format!(
            "INFO sip:8000@{srv};transport=tcp SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INFO\r\n\
             Content-Type: application/dtmf-relay\r\nContent-Length: {len}\r\n\r\n{body}",
            srv = server.sip,
            len = body.len(),
        ));
        assert_eq!(b.response(Duration::from_secs(5)).status, 200, "INFO {k}");
    };
    for (i, k) in "1001#".chars().enumerate() {
        key(&mut b, &mut phone, k, if i == 0 { 3000 } else { 250 });
    }
    for (i, k) in "4321#".chars().enumerate() {
        key(&mut b, &mut phone, k, if i == 0 { 1750 } else { 250 });
    }
    key(&mut b, &mut phone, '1', 5750);
    // The phone drops its connection while the closing prompt plays.
    drop(b);

    // 3. The BYE comes on a connection the server opens to the Contact's port.
    let mut conns = Vec::new();
    let (bye, i) = phone.next_request(&mut conns, Duration::from_secs(30));
    assert_eq!(bye.method, Method::Bye, "{bye:?}");
    assert!(
        conns[i].from_server,
        "the BYE came on a connection the server opened"
    );
    assert!(
        bye.headers
            .get("Via")
            .unwrap_or_default()
            .starts_with("SIP/2.0/TCP "),
        "{bye:?}"
    );
    let reply = ok_for(&bye);
    conns[i].send(&reply);

    // 4. The resync NOTIFY, over TCP to the Contact too (the same new connection, reused).
    let (notify, j) = phone.next_request(&mut conns, Duration::from_secs(20));
    assert_eq!(notify.method, Method::Notify, "{notify:?}");
    assert!(conns[j].from_server);
    assert!(notify
        .headers
        .get("Via")
        .unwrap_or_default()
        .starts_with("SIP/2.0/TCP "));
    let reply = ok_for(&notify);
    conns[j].send(&reply);

    let device = server.assert_bound("jdoe", "1001");
    assert_eq!(device.raw["mac"], YEALINK_MAC.to_ascii_uppercase());
    let resync = common::wait_for(Duration::from_secs(10), || {
        let d = server.devices().into_iter().next()?;
        let outcome = d.raw["resync_outcome"].as_str()?.to_owned();
        outcome.contains(" 200 from").then_some(outcome)
    });
    assert!(
        resync.is_some(),
        "the NOTIFY's 200 was recorded: {:#}",
        server.devices()[0].raw
    );
    drop(rtp);
}
