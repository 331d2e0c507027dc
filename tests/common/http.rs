//! A minimal HTTP/1.1 client for the tests (one request per connection, `Connection: close`,
//! every read bounded): the provisioning server as a phone fetches from it, the admin API and
//! `/metrics`. Hand-written so that the tests see the exact status line and headers, and so that
//! no HTTP client crate is needed for a few GETs.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// A response: status, the head (status line and headers) and the body.
pub struct HttpResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// One request with `extra_headers` (each `Name: value`), no body.
pub fn request(addr: SocketAddr, method: &str, path: &str, extra_headers: &[&str]) -> HttpResponse {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for h in extra_headers {
        req += h;
        req += "\r\n";
    }
    req += "Content-Length: 0\r\nConnection: close\r\n\r\n";
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {text:?}"));
    // The servers send Content-Length, never chunked bodies: a chunked one would be misread.
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "unexpected transfer encoding: {head}"
    );
    HttpResponse {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// A GET as a phone makes it, with its User-Agent.
pub fn get(addr: SocketAddr, path: &str, user_agent: &str) -> HttpResponse {
    request(addr, "GET", path, &[&format!("User-Agent: {user_agent}")])
}

/// An admin API request with a bearer token; the status and the JSON body (Null if none).
pub fn api(addr: SocketAddr, method: &str, path: &str, token: &str) -> (u16, serde_json::Value) {
    let r = request(
        addr,
        method,
        path,
        &[&format!("Authorization: Bearer {token}")],
    );
    let json = serde_json::from_str(r.body.trim()).unwrap_or(serde_json::Value::Null);
    (r.status, json)
}

/// `key = value` of a Yealink-style `.cfg` file.
pub fn cfg_value(body: &str, key: &str) -> Option<String> {
    body.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == key).then(|| v.trim().to_string())
    })
}
