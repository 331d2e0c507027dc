//! Phone mode (`--register`): each caller behaves like a new desk phone instead of an anonymous
//! SIP client. It fetches its guest config from the provisioning server (`GET /<mac>.cfg` with a
//! Yealink User-Agent, as a phone out of its box does), registers the guest account it finds
//! there (answering the 401 digest challenge), dials the IVR (answering the 407), and, once the
//! server has hung up after a provisioning, waits for the resync NOTIFY on its registered
//! contact. That is how the last digit → NOTIFY latency of issue 6 is measured from outside.
//!
//! The HTTP client is a one-request HTTP/1.1 exchange over a tokio `TcpStream` (no client crate
//! in the project; the guest config is one small body with a Content-Length).

use anyhow::{bail, Context};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The guest account a phone finds in its config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guest {
    pub number: String,
    pub auth_name: String,
    pub password: String,
}

/// Yealink's OUI: the server's autoprovisioning recognises the vendor from MAC and User-Agent.
pub const MAC_PREFIX: &str = "805ec0";
pub const USER_AGENT: &str = "Yealink SIP-T46S 66.86.0.15";

/// Call number `n`'s MAC: the Yealink prefix and `n` in the last three bytes.
pub fn mac(n: u64) -> String {
    format!("{MAC_PREFIX}{:06x}", n & 0xff_ffff)
}

/// `GET /<mac>.cfg` from the provisioning server: the guest account in it.
pub async fn fetch_guest(
    server: SocketAddr,
    mac: &str,
    timeout: Duration,
) -> anyhow::Result<Guest> {
    let body = tokio::time::timeout(timeout, get(server, &format!("/{mac}.cfg")))
        .await
        .with_context(|| format!("no answer from {server} within {timeout:?}"))??;
    parse_guest(&body)
}

async fn get(server: SocketAddr, path: &str) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(server)
        .await
        .with_context(|| format!("connect to {server}"))?;
    // Yealink puts its MAC, with colons, at the end of its User-Agent.
    let mac = path.trim_start_matches('/').trim_end_matches(".cfg");
    let mac_colons: Vec<&str> = (0..mac.len())
        .step_by(2)
        .filter_map(|i| mac.get(i..i + 2))
        .collect();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nUser-Agent: {USER_AGENT} {}\r\n\
         Connection: close\r\n\r\n",
        mac_colons.join(":")
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::with_capacity(4096);
    s.take(1 << 20).read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("the HTTP response has no header end")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .context("the HTTP response has no status")?;
    if head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:"))
    {
        bail!("chunked HTTP responses are not supported");
    }
    if status != 200 {
        bail!("GET {path}: HTTP {status}: {}", body.trim());
    }
    Ok(body.to_string())
}

/// The account of a Yealink `.cfg` (`account.1.user_name = 2000` ...).
pub fn parse_guest(body: &str) -> anyhow::Result<Guest> {
    let get = |key: &str| {
        body.lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
            .with_context(|| format!("the config has no {key}"))
    };
    Ok(Guest {
        number: get("account.1.user_name")?,
        auth_name: get("account.1.auth_name")?,
        password: get("account.1.password")?,
    })
}

/// The REGISTER transaction of one phone.
#[derive(Debug, Clone)]
pub struct Registration {
    pub guest: Guest,
    pub call_id: String,
    pub from_tag: String,
    pub cseq: u32,
    /// User part of our Contact: the NOTIFY's Request-URI names it.
    pub contact_user: String,
}

impl Registration {
    /// A REGISTER (next CSeq, new branch) to `target` for 300 s, with `authorization` if given.
    pub fn register(
        &mut self,
        local: SocketAddr,
        target: SocketAddr,
        branch: &str,
        authorization: Option<&str>,
    ) -> String {
        self.cseq += 1;
        let aor = format!("sip:{}@{}", self.guest.number, target.ip());
        let mut m = format!(
            "REGISTER {} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {local};branch={branch};rport\r\n\
             Max-Forwards: 70\r\n\
             From: <{aor}>;tag={}\r\n\
             To: <{aor}>\r\n\
             Call-ID: {}\r\n\
             CSeq: {} REGISTER\r\n\
             Contact: <sip:{}@{local}>\r\n\
             Expires: 300\r\n\
             User-Agent: {USER_AGENT}\r\n",
            register_uri(target),
            self.from_tag,
            self.call_id,
            self.cseq,
            self.contact_user,
        );
        if let Some(a) = authorization {
            m += &format!("Authorization: {a}\r\n");
        }
        m += "Content-Length: 0\r\n\r\n";
        m
    }
}

/// The REGISTER's Request-URI (also the digest `uri`).
pub fn register_uri(target: SocketAddr) -> String {
    format!("sip:{target}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfprov::sip::message::{parse, Message};

    #[test]
    fn guest_config_and_register() {
        let body = "#!version:1.0.0.1\naccount.1.enable = 1\naccount.1.user_name = 2000\n\
                    account.1.auth_name = g2000\naccount.1.password = pw=x\n";
        let guest = parse_guest(body).unwrap();
        assert_eq!(
            guest,
            Guest {
                number: "2000".into(),
                auth_name: "g2000".into(),
                password: "pw=x".into()
            }
        );
        assert!(parse_guest("account.1.user_name = 1").is_err());
        assert_eq!(mac(0x1234), "805ec0001234");
        let mut r = Registration {
            guest,
            call_id: "r1".into(),
            from_tag: "f".into(),
            cseq: 0,
            contact_user: "ph7".into(),
        };
        let local = "127.0.0.1:40000".parse().unwrap();
        let target = "127.0.0.1:5060".parse().unwrap();
        r.register(local, target, "z9hG4bK1", None);
        let m = r.register(local, target, "z9hG4bK2", Some("Digest username=\"g2000\""));
        let Ok(Message::Request(req)) = parse(m.as_bytes()) else {
            panic!("REGISTER parses:\n{m}");
        };
        req.validate().unwrap();
        assert_eq!(req.cseq().unwrap().seq, 2);
        assert!(m.contains("Contact: <sip:ph7@127.0.0.1:40000>"), "{m}");
        assert!(m.contains("Authorization: Digest"), "{m}");
    }
}
