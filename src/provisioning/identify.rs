//! Identifying the calling phone from what its INVITE says about itself: the MAC (Cisco
//! `+sip.instance` / `+u.sip!devicename` Contact parameters, or a MAC in the User-Agent), the
//! vendor, model and firmware (User-Agent patterns of common desk phones and test peers), and
//! the SIP identity (From URI `user@host`).
//!
//! Never the source IP: behind NAT many phones share one address, and an address says nothing
//! about which phone is calling (the weakness Wazo documents for its autoprov). Everything here
//! reads untrusted input: no panics, no indexing, unparseable headers are simply skipped.

use crate::sip::message::{Host, NameAddr, Request, Uri};

/// What a calling phone revealed about itself. The store finds a device by `mac`, else by
/// `device_name`, else by `sip_identity` (see [`crate::store::Store::bind_device`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceIdentity {
    /// 12 upper-case hex digits, no separators.
    pub mac: Option<String>,
    /// A vendor device name, e.g. Cisco `SEP001122AABBCC`.
    pub device_name: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub user_agent: Option<String>,
    /// From URI as `user@host` (host lower case), or the number of a `tel:` URI.
    pub sip_identity: String,
    /// The first Contact URI as written, for sending the phone a NOTIFY later.
    pub contact: Option<String>,
}

impl DeviceIdentity {
    /// The strongest key the phone gave, for logs and the audit trail: MAC, device name, or SIP
    /// identity.
    pub fn key(&self) -> &str {
        self.mac
            .as_deref()
            .or(self.device_name.as_deref())
            .unwrap_or(&self.sip_identity)
    }
}

/// Builds the identity of the phone that sent `invite`.
pub fn identify(invite: &Request) -> DeviceIdentity {
    let user_agent = invite
        .headers
        .get("User-Agent")
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    let contacts = invite.contacts().unwrap_or_default();

    let mut mac = None;
    let mut device_name = None;
    for c in &contacts {
        if mac.is_none() {
            mac = param_value(c, "+sip.instance").and_then(|v| mac_from_instance(&v));
        }
        if device_name.is_none() {
            device_name = cisco_device_name(c);
        }
    }
    // Cisco device names are "SEP" + MAC: the MAC is recoverable when the instance is missing.
    if mac.is_none() {
        mac = device_name.as_deref().and_then(|d| {
            let rest = strip_prefix_ci(d, "SEP")?;
            normalize_mac(rest)
        });
    }
    if mac.is_none() {
        mac = user_agent.as_deref().and_then(mac_in_text);
    }

    let product = user_agent
        .as_deref()
        .map(parse_user_agent)
        .unwrap_or_default();
    let sip_identity = invite
        .from()
        .map(|f| uri_identity(&f.uri))
        .unwrap_or_default();
    let contact = contacts.first().map(|c| c.uri.to_string());

    DeviceIdentity {
        mac,
        device_name,
        vendor: product.vendor,
        model: product.model,
        firmware: product.firmware,
        user_agent,
        sip_identity,
        contact,
    }
}

/// `user@host` of a SIP URI (host lower case: host names compare case-insensitively), the
/// number of a tel URI, or any other URI as written.
fn uri_identity(uri: &Uri) -> String {
    match uri {
        Uri::Sip(s) => {
            let host = match &s.host {
                Host::Name(n) => n.to_ascii_lowercase(),
                Host::V4(a) => a.to_string(),
                Host::V6(a) => format!("[{a}]"),
            };
            match s.user.as_deref().filter(|u| !u.is_empty()) {
                Some(u) => format!("{u}@{host}"),
                None => host,
            }
        }
        Uri::Tel(_) => uri.user().unwrap_or_default().to_string(),
        Uri::Other(o) => o.clone(),
    }
}

/// A Contact header parameter's value without surrounding quotes.
fn param_value(c: &NameAddr, name: &str) -> Option<String> {
    let v = c.params.get(name)??;
    Some(unquote(v).to_string())
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}

/// Cisco: `+u.sip!devicename.ccm.cisco.com="SEP001122AABBCC"` (the suffix after `devicename`
/// varies with the call-control domain).
fn cisco_device_name(c: &NameAddr) -> Option<String> {
    c.params.0.iter().find_map(|(name, value)| {
        strip_prefix_ci(name, "+u.sip!devicename")?;
        let v = unquote(value.as_deref()?);
        (!v.is_empty()
            && v.len() <= 64
            && v.chars()
                .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_'))
        .then(|| v.to_string())
    })
}

/// `<urn:uuid:00000000-0000-0000-0000-001122AABBCC>`: Cisco puts the MAC in the last group and
/// zeros elsewhere. Other vendors use random UUIDs, which are not MACs: only this layout counts.
fn mac_from_instance(v: &str) -> Option<String> {
    let v = v.trim();
    let v = v
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(v);
    let uuid = strip_prefix_ci(v, "urn:uuid:")?;
    let (zeros, last) = uuid.rsplit_once('-')?;
    if zeros != "00000000-0000-0000-0000" {
        return None;
    }
    normalize_mac(last)
}

/// 12 hex digits, case-insensitive, into upper case. Refuses all-zero, broadcast and multicast
/// addresses: no phone has those, so they are something else (an ID, a hash fragment).
pub(crate) fn normalize_mac(s: &str) -> Option<String> {
    if s.len() != 12 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let upper = s.to_ascii_uppercase();
    let first = u8::from_str_radix(upper.get(0..2)?, 16).ok()?;
    if first & 1 == 1 || upper == "000000000000" {
        return None;
    }
    Some(upper)
}

/// Finds a MAC in free text (a User-Agent): `00:15:65:AA:BB:CC`, `00-15-65-aa-bb-cc`,
/// `0015.65aa.bbcc` or `001565AABBCC`, as a whole word (not part of a longer hex run).
fn mac_in_text(text: &str) -> Option<String> {
    text.split(|c: char| {
        c.is_whitespace() || matches!(c, '(' | ')' | ',' | ';' | '/' | '[' | ']' | '<' | '>' | '"')
    })
    .find_map(|word| {
        let word = word.trim_matches(|c: char| c == '.' || c == '-' || c == ':');
        let seps = [':', '-', '.'];
        let has_sep = word.contains(seps);
        let hex: String = word.chars().filter(|c| !seps.contains(c)).collect();
        if hex.len() != 12 {
            return None;
        }
        if has_sep && !separators_well_placed(word) {
            return None;
        }
        // A bare 12-hex word needs at least one letter or one digit mix to be plausible;
        // a firmware build number of 12 decimal digits is not a MAC.
        if !has_sep && hex.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        normalize_mac(&hex)
    })
}

/// `xx:xx:xx:xx:xx:xx`, `xx-xx-...` (groups of 2) or `xxxx.xxxx.xxxx` (groups of 4), one kind of
/// separator only.
fn separators_well_placed(word: &str) -> bool {
    for (sep, group) in [(':', 2usize), ('-', 2), ('.', 4)] {
        let parts: Vec<&str> = word.split(sep).collect();
        if parts.len() == 12 / group
            && parts
                .iter()
                .all(|p| p.len() == group && p.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return true;
        }
    }
    false
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| s.get(prefix.len()..))
        .flatten()
}

#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Product {
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
}

fn product(vendor: &str, model: Option<&str>, firmware: Option<&str>) -> Product {
    let clean = |s: Option<&str>| {
        s.map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty() && s.len() <= 64)
    };
    Product {
        vendor: Some(vendor.to_string()),
        model: clean(model),
        firmware: clean(firmware),
    }
}

/// Vendor, model and firmware from a User-Agent. Unknown agents give an empty [`Product`] (the
/// raw User-Agent is still stored).
pub(crate) fn parse_user_agent(ua: &str) -> Product {
    let ua = ua.trim();
    let mut words = ua.split_whitespace();
    let first = words.next().unwrap_or("");
    let second = words.next();
    let third = words.next();

    // Cisco enterprise firmware: `Cisco-CP8851/14.2.1`; SPA/3PCC: `Cisco/SPA504G-7.6.2c`.
    if let Some(rest) = strip_prefix_ci(first, "Cisco-") {
        let (model, fw) = rest.split_once('/').unwrap_or((rest, ""));
        return product("Cisco", Some(model), Some(fw));
    }
    if let Some(rest) = strip_prefix_ci(first, "Cisco/") {
        let (model, fw) = rest.split_once('-').unwrap_or((rest, ""));
        return product("Cisco", Some(model), Some(fw));
    }
    // Yealink: `Yealink SIP-T46S 66.86.0.15` (the HTTP variant appends the MAC).
    if first.eq_ignore_ascii_case("Yealink") {
        return product("Yealink", second, third);
    }
    // Polycom: `PolycomVVX-VVX_411-UA/6.4.3.5018`, `PolycomSoundPointIP-SPIP_650-UA/4.0.4.2906`.
    if let Some(rest) = strip_prefix_ci(first, "Polycom") {
        let (left, fw) = rest.split_once('/').unwrap_or((rest, ""));
        let mut parts = left.split('-');
        let family = parts.next().unwrap_or("");
        let model = parts
            .next()
            .filter(|m| !m.eq_ignore_ascii_case("UA"))
            .unwrap_or(family);
        return product("Polycom", Some(model), Some(fw));
    }
    // Grandstream: `Grandstream GXP2170 1.0.11.23`; HTTP: `Grandstream Model HW GXP2170 SW 1.0.11.23 DevId ...`.
    if first.eq_ignore_ascii_case("Grandstream") {
        if second.is_some_and(|s| s.eq_ignore_ascii_case("Model")) {
            let all: Vec<&str> = ua.split_whitespace().collect();
            let after = |key: &str| {
                all.iter()
                    .position(|w| w.eq_ignore_ascii_case(key))
                    .and_then(|i| all.get(i + 1).copied())
            };
            return product("Grandstream", after("HW"), after("SW"));
        }
        return product("Grandstream", second, third);
    }
    // Snom: `snomD785/10.1.159.12`, `snom370-SIP 8.7.5.35`, `snom PA1/8.4.35`.
    if let Some(rest) = strip_prefix_ci(first, "snom") {
        let (model_part, fw) = if rest.is_empty() {
            let w = second.unwrap_or("");
            w.split_once('/').unwrap_or((w, third.unwrap_or("")))
        } else {
            rest.split_once('/').unwrap_or((rest, second.unwrap_or("")))
        };
        let model = model_part.strip_suffix("-SIP").unwrap_or(model_part);
        return product("Snom", Some(model), Some(fw));
    }
    // baresip: `baresip v1.0.0 (x86_64/Linux)`.
    if first.eq_ignore_ascii_case("baresip") {
        let fw = second.map(|v| v.strip_prefix('v').unwrap_or(v));
        return product("baresip", None, fw);
    }
    // SIPp: `SIPp/3.6.1`, `SIPp 3.6.1`, `SIPp/Linux`.
    if let Some(rest) = strip_prefix_ci(first, "SIPp") {
        let fw = rest
            .strip_prefix('/')
            .or(if rest.is_empty() { second } else { None });
        let fw = fw.filter(|v| v.starts_with(|c: char| c.is_ascii_digit() || c == 'v'));
        return product("SIPp", None, fw);
    }
    Product::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cisco_user_agents() {
        assert_eq!(
            parse_user_agent("Cisco-CP8851/14.2.1"),
            Product {
                vendor: Some("Cisco".into()),
                model: Some("CP8851".into()),
                firmware: Some("14.2.1".into())
            }
        );
        assert_eq!(
            parse_user_agent("Cisco/SPA504G-7.6.2c"),
            Product {
                vendor: Some("Cisco".into()),
                model: Some("SPA504G".into()),
                firmware: Some("7.6.2c".into())
            }
        );
    }

    #[test]
    fn yealink_user_agent() {
        let p = parse_user_agent("Yealink SIP-T46S 66.86.0.15");
        assert_eq!(p.vendor.as_deref(), Some("Yealink"));
        assert_eq!(p.model.as_deref(), Some("SIP-T46S"));
        assert_eq!(p.firmware.as_deref(), Some("66.86.0.15"));
    }

    #[test]
    fn polycom_user_agents() {
        let p = parse_user_agent("PolycomVVX-VVX_411-UA/6.4.3.5018");
        assert_eq!(
            (
                p.vendor.as_deref(),
                p.model.as_deref(),
                p.firmware.as_deref()
            ),
            (Some("Polycom"), Some("VVX_411"), Some("6.4.3.5018"))
        );
        let p = parse_user_agent("PolycomSoundPointIP-SPIP_650-UA/4.0.4.2906");
        assert_eq!(p.model.as_deref(), Some("SPIP_650"));
        assert_eq!(p.firmware.as_deref(), Some("4.0.4.2906"));
    }

    #[test]
    fn grandstream_user_agents() {
        let p = parse_user_agent("Grandstream GXP2170 1.0.11.23");
        assert_eq!(
            (
                p.vendor.as_deref(),
                p.model.as_deref(),
                p.firmware.as_deref()
            ),
            (Some("Grandstream"), Some("GXP2170"), Some("1.0.11.23"))
        );
        let http = "Grandstream Model HW GXP2170 V1.1A SW 1.0.11.23 DevId c074ad0a1b2c";
        let p = parse_user_agent(http);
        assert_eq!(
            (p.model.as_deref(), p.firmware.as_deref()),
            (Some("GXP2170"), Some("1.0.11.23"))
        );
        assert_eq!(mac_in_text(http).as_deref(), Some("C074AD0A1B2C"));
    }

    #[test]
    fn snom_user_agents() {
        let p = parse_user_agent("snomD785/10.1.159.12");
        assert_eq!(
            (
                p.vendor.as_deref(),
                p.model.as_deref(),
                p.firmware.as_deref()
            ),
            (Some("Snom"), Some("D785"), Some("10.1.159.12"))
        );
        let p = parse_user_agent("snom370-SIP 8.7.5.35");
        assert_eq!(
            (p.model.as_deref(), p.firmware.as_deref()),
            (Some("370"), Some("8.7.5.35"))
        );
    }

    #[test]
    fn test_peer_user_agents() {
        let p = parse_user_agent("baresip v1.0.0 (x86_64/Linux)");
        assert_eq!(
            (p.vendor.as_deref(), p.model, p.firmware.as_deref()),
            (Some("baresip"), None, Some("1.0.0"))
        );
        let p = parse_user_agent("SIPp/3.6.1");
        assert_eq!(
            (p.vendor.as_deref(), p.firmware.as_deref()),
            (Some("SIPp"), Some("3.6.1"))
        );
        let p = parse_user_agent("SIPp/Linux");
        assert_eq!((p.vendor.as_deref(), p.firmware), (Some("SIPp"), None));
        assert_eq!(parse_user_agent("Asterisk PBX 18.0.0"), Product::default());
        assert_eq!(parse_user_agent(""), Product::default());
    }

    #[test]
    fn macs_in_user_agents() {
        assert_eq!(
            mac_in_text("Yealink SIP-T46S 66.86.0.15 00:15:65:aa:bb:cc").as_deref(),
            Some("001565AABBCC")
        );
        assert_eq!(
            mac_in_text("snomD785/10.1.159.12 000413A1B2C3").as_deref(),
            Some("000413A1B2C3")
        );
        assert_eq!(
            mac_in_text("phone 0004.13a1.b2c3").as_deref(),
            Some("000413A1B2C3")
        );
        assert_eq!(
            mac_in_text("phone 00-04-13-A1-B2-C3").as_deref(),
            Some("000413A1B2C3")
        );
        // Not MACs: firmware numbers, mixed separators, longer hex runs, multicast, zeros.
        assert_eq!(mac_in_text("Yealink SIP-T46S 66.86.0.15"), None);
        assert_eq!(mac_in_text("build 201811220123"), None);
        assert_eq!(mac_in_text("x 00:04:13-A1:B2:C3"), None);
        assert_eq!(mac_in_text("x 000413A1B2C3D4"), None);
        assert_eq!(mac_in_text("x 01:00:5e:00:00:01"), None);
        assert_eq!(mac_in_text("x 00:00:00:00:00:00"), None);
        assert_eq!(mac_in_text("x ab:cd"), None);
        assert_eq!(
            mac_in_text("ünïcödé ☎ 00:15:65:aa:bb:cc"),
            Some("001565AABBCC".into())
        );
    }

    #[test]
    fn instance_urns() {
        assert_eq!(
            mac_from_instance("<urn:uuid:00000000-0000-0000-0000-0022905c8e3a>").as_deref(),
            Some("0022905C8E3A")
        );
        assert_eq!(
            mac_from_instance("urn:uuid:00000000-0000-0000-0000-0022905C8E3A").as_deref(),
            Some("0022905C8E3A")
        );
        // A random RFC 4122 UUID is no MAC.
        assert_eq!(
            mac_from_instance("<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"),
            None
        );
        assert_eq!(
            mac_from_instance("<urn:uuid:00000000-0000-0000-0000-0022905c8e>"),
            None
        );
        assert_eq!(mac_from_instance(""), None);
    }

    fn parse_request(text: &str) -> Request {
        match crate::sip::message::parse(text.replace('\n', "\r\n").as_bytes()) {
            Ok(crate::sip::message::Message::Request(r)) => r,
            other => panic!("test INVITE did not parse as a request: {other:?}"),
        }
    }

    // These use the SIP parser (src/sip/message.rs).
    #[test]
    fn identify_cisco_invite() {
        let req = parse_request(
            "INVITE sip:8000@192.0.2.10 SIP/2.0
Via: SIP/2.0/TCP 192.0.2.55:51234;branch=z9hG4bK1a2b3c4d
From: \"SEP0022905C8E3A\" <sip:autoprov@PBX.Example.com>;tag=0022905c8e3a00021a2b3c4d-5e6f7a8b
To: <sip:8000@pbx.example.com>
Call-ID: 0022905c-8e3a0002-11223344-55667788@192.0.2.55
Max-Forwards: 70
CSeq: 101 INVITE
User-Agent: Cisco-CP8851/14.2.1
Contact: <sip:autoprov@192.0.2.55:51234;transport=tcp>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-0022905c8e3a>\";+u.sip!devicename.ccm.cisco.com=\"SEP0022905C8E3A\";+u.sip!model.ccm.cisco.com=\"36670\"
Content-Length: 0

",
        );
        let id = identify(&req);
        assert_eq!(id.mac.as_deref(), Some("0022905C8E3A"));
        assert_eq!(id.device_name.as_deref(), Some("SEP0022905C8E3A"));
        assert_eq!(id.vendor.as_deref(), Some("Cisco"));
        assert_eq!(id.model.as_deref(), Some("CP8851"));
        assert_eq!(id.firmware.as_deref(), Some("14.2.1"));
        assert_eq!(id.sip_identity, "autoprov@pbx.example.com");
        assert_eq!(id.key(), "0022905C8E3A");
        assert!(
            id.contact
                .as_deref()
                .is_some_and(|c| c.contains("192.0.2.55:51234")),
            "{:?}",
            id.contact
        );
    }

    #[test]
    fn identify_cisco_device_name_only() {
        let req = parse_request(
            "INVITE sip:8000@192.0.2.10 SIP/2.0
Via: SIP/2.0/UDP 192.0.2.56:5060;branch=z9hG4bK99
From: <sip:2001@192.0.2.10>;tag=abc
To: <sip:8000@192.0.2.10>
Call-ID: x1@192.0.2.56
CSeq: 1 INVITE
User-Agent: Cisco-CP7841/11.0.1
Contact: <sip:2001@192.0.2.56:5060>;+u.sip!devicename.ccm.cisco.com=\"SEP00AABBCCDDEE\"
Content-Length: 0

",
        );
        let id = identify(&req);
        assert_eq!(id.mac.as_deref(), Some("00AABBCCDDEE"));
        assert_eq!(id.device_name.as_deref(), Some("SEP00AABBCCDDEE"));
        assert_eq!(id.sip_identity, "2001@192.0.2.10");
    }

    #[test]
    fn identify_yealink_invite_without_mac() {
        let req = parse_request(
            "INVITE sip:8000@10.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 10.0.0.23:5062;branch=z9hG4bK1234567890;rport
Via: SIP/2.0/UDP 10.0.0.99:5060;branch=z9hG4bKproxy
From: \"Reception\" <sip:ap9f3k@10.0.0.1:5060>;tag=1734563210
To: <sip:8000@10.0.0.1:5060>
Call-ID: 1739836752@10.0.0.23
CSeq: 1 INVITE
Contact: <sip:ap9f3k@10.0.0.23:5062>
Max-Forwards: 70
User-Agent: Yealink SIP-T46S 66.86.0.15
Content-Length: 0

",
        );
        let id = identify(&req);
        assert_eq!(
            id.mac, None,
            "the SIP User-Agent of a Yealink carries no MAC"
        );
        assert_eq!(id.device_name, None);
        assert_eq!(id.vendor.as_deref(), Some("Yealink"));
        assert_eq!(id.model.as_deref(), Some("SIP-T46S"));
        assert_eq!(id.firmware.as_deref(), Some("66.86.0.15"));
        assert_eq!(
            id.user_agent.as_deref(),
            Some("Yealink SIP-T46S 66.86.0.15")
        );
        assert_eq!(id.sip_identity, "ap9f3k@10.0.0.1");
        assert_eq!(id.key(), "ap9f3k@10.0.0.1");
    }

    #[test]
    fn identify_vendors_from_user_agent_with_mac() {
        for (ua, vendor, model, fw, mac) in [
            (
                "PolycomVVX-VVX_411-UA/6.4.3.5018",
                "Polycom",
                Some("VVX_411"),
                "6.4.3.5018",
                None,
            ),
            (
                "Grandstream GXP2170 1.0.11.23",
                "Grandstream",
                Some("GXP2170"),
                "1.0.11.23",
                None,
            ),
            (
                "snomD785/10.1.159.12 000413A1B2C3",
                "Snom",
                Some("D785"),
                "10.1.159.12",
                Some("000413A1B2C3"),
            ),
            (
                "baresip v1.0.0 (x86_64/Linux)",
                "baresip",
                None,
                "1.0.0",
                None,
            ),
            ("SIPp/3.6.1", "SIPp", None, "3.6.1", None),
        ] {
            let req = parse_request(&format!(
                "INVITE sip:8000@127.0.0.1 SIP/2.0
v: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKx
f: <sip:sipp@127.0.0.1:5070>;tag=1
t: <sip:8000@127.0.0.1>
i: 1-2@127.0.0.1
CSeq: 1 INVITE
m: <sip:sipp@127.0.0.1:5070>
User-Agent: {ua}
l: 0

"
            ));
            let id = identify(&req);
            assert_eq!(id.vendor.as_deref(), Some(vendor), "{ua}");
            assert_eq!(id.model.as_deref(), model, "{ua}");
            assert_eq!(id.firmware.as_deref(), Some(fw), "{ua}");
            assert_eq!(id.mac.as_deref(), mac, "{ua}");
            assert_eq!(id.sip_identity, "sipp@127.0.0.1", "{ua}");
        }
    }

    #[test]
    fn identify_tolerates_missing_and_bad_headers() {
        let req = Request {
            method: crate::sip::message::Method::Invite,
            uri: Uri::Other("urn:x".into()),
            headers: Default::default(),
            body: Default::default(),
        };
        let id = identify(&req);
        assert_eq!(id, DeviceIdentity::default());
    }
}
