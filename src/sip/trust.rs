//! Trusted proxies and the identities they assert (RFC 3325): which source addresses form the
//! trust domain (`sip.trusted_proxies`, IP addresses or CIDR blocks), and the AOR user a
//! `P-Asserted-Identity` from one of them names. A P-Asserted-Identity from any other source
//! is not considered at all (RFC 3325 §5: only a trusted element's assertion means anything).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::Deserialize;
use tracing::warn;

use super::message::Request;

/// An IP address or a CIDR block (`192.0.2.10`, `10.0.0.0/8`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a trusted-proxy entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR block (e.g. 192.0.2.10 or 10.0.0.0/8)")]
pub struct BadIpNet(pub String);

impl FromStr for IpNet {
    type Err = BadIpNet;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadIpNet(s.to_owned());
        let (a, p) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|&n| n <= max).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        Ok(IpNet { addr, prefix })
    }
}

impl TryFrom<String> for IpNet {
    type Error = BadIpNet;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl IpNet {
    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whether `ip` is one of the trusted proxies.
pub fn is_trusted(proxies: &[IpNet], ip: IpAddr) -> bool {
    proxies.iter().any(|n| n.contains(ip))
}

/// The AOR users (SIP user parts, tel numbers) a trusted proxy asserted in `req`'s
/// P-Asserted-Identity, in order. A malformed header is logged and asserts nothing.
pub fn asserted_users(req: &Request) -> Vec<String> {
    match req.asserted_identities() {
        Ok(ids) => ids
            .iter()
            .filter_map(|na| na.uri.user())
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect(),
        Err(e) => {
            warn!(error = %e, "malformed P-Asserted-Identity from a trusted proxy, ignored");
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse, Message};

    #[test]
    fn parses_addresses_and_blocks() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains("10.200.1.2".parse().unwrap()));
        assert!(!n.contains("11.0.0.1".parse().unwrap()));
        let one: IpNet = "192.0.2.10".parse().unwrap();
        assert!(one.contains("192.0.2.10".parse().unwrap()));
        assert!(!one.contains("192.0.2.11".parse().unwrap()));
        assert!(one.contains("::ffff:192.0.2.10".parse().unwrap()));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("203.0.113.1".parse().unwrap()));
        assert!(!all.contains("2001:db8::1".parse().unwrap()));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::5".parse().unwrap()));
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "proxy.example",
            "1.2.3/8",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
        assert_eq!(one.to_string(), "192.0.2.10/32");
    }

    #[test]
    fn config_key_takes_addresses_and_blocks_and_names_itself_when_bad() {
        use crate::config::Config;
        let c = Config::from_toml("[sip]\ntrusted_proxies = [\"10.0.0.5\", \"192.0.2.0/24\"]\n")
            .unwrap();
        assert_eq!(c.sip.trusted_proxies.len(), 2);
        assert!(is_trusted(
            &c.sip.trusted_proxies,
            "192.0.2.77".parse().unwrap()
        ));
        assert!(!is_trusted(
            &c.sip.trusted_proxies,
            "10.0.0.6".parse().unwrap()
        ));
        assert!(
            Config::default().sip.trusted_proxies.is_empty(),
            "none by default"
        );
        let e = Config::from_toml("[sip]\ntrusted_proxies = [\"proxy.example\"]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("trusted_proxies") && e.contains("proxy.example"),
            "{e}"
        );
    }

    fn invite(extra: &str) -> Request {
        let s = format!(
            "INVITE sip:8000@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKa\r\n\
             From: <sip:2000@h>;tag=1\r\nTo: <sip:8000@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\
             {extra}Content-Length: 0\r\n\r\n"
        );
        match parse(s.as_bytes()).unwrap() {
            Message::Request(r) => r,
            _ => panic!(),
        }
    }

    #[test]
    fn asserted_users_in_order() {
        let r = invite(
            "P-Asserted-Identity: \"Guest\" <sip:2000@proxy.example>\r\n\
             P-Asserted-Identity: <tel:+15551234>\r\n",
        );
        assert_eq!(asserted_users(&r), ["2000", "+15551234"]);
        assert!(asserted_users(&invite("")).is_empty());
        assert!(asserted_users(&invite("P-Asserted-Identity: <sip:2000@h\r\n")).is_empty());
    }
}
