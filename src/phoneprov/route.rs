//! Which file a phone asks for: the requested path and the HTTP User-Agent mapped to vendor,
//! MAC, model and file kind. Input comes from the network: anything unexpected (directories,
//! `..`, odd characters, over-long names) gives `None`, never a panic.

use super::Vendor;

/// The files the renderers produce.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// Cisco `SEP<MAC>.cnf.xml`.
    CiscoDevice,
    /// Cisco `XmlDefault.cnf.xml` (phones with no file of their own).
    CiscoDefault,
    /// Yealink `<mac>.cfg`.
    YealinkDevice,
    /// Yealink `y0000000000xx.cfg`: the per-model common file; `code` is the two-digit `xx`.
    YealinkModel { code: String },
    /// Polycom `000000000000.cfg`: the master file of every phone without its own.
    PolycomMasterDefault,
    /// Polycom `<mac>.cfg`: the phone's master file, listing its `CONFIG_FILES`.
    PolycomMaster,
    /// Polycom `<mac>-user.cfg`: the `reg.N.*` accounts.
    PolycomUser,
    /// Polycom `<mac>-directory.xml`: the contact directory carrying the speed dials.
    PolycomDirectory,
    /// Grandstream `cfg<mac>.xml` (or `cfg<mac>`).
    GrandstreamDevice,
    /// Snom `snom<model>-<MAC>.htm` or `<MAC>.xml`.
    SnomDevice,
}

impl FileKind {
    /// The template that renders this kind (see [`super::TEMPLATE_NAMES`]).
    pub fn template_name(&self) -> &'static str {
        match self {
            FileKind::CiscoDevice => "cisco-device.xml",
            FileKind::CiscoDefault => "cisco-default.xml",
            FileKind::YealinkDevice => "yealink-device.cfg",
            FileKind::YealinkModel { .. } => "yealink-model.cfg",
            FileKind::PolycomMasterDefault | FileKind::PolycomMaster => "polycom-master.xml",
            FileKind::PolycomUser => "polycom-user.xml",
            FileKind::PolycomDirectory => "polycom-directory.xml",
            FileKind::GrandstreamDevice => "grandstream-device.xml",
            FileKind::SnomDevice => "snom-device.xml",
        }
    }

    /// Whether the file carries the phone's SIP accounts: fetching it is what "the phone has
    /// its new config" means (a Polycom master file or directory alone does not count).
    pub fn holds_credentials(&self) -> bool {
        matches!(
            self,
            FileKind::CiscoDevice
                | FileKind::YealinkDevice
                | FileKind::PolycomUser
                | FileKind::GrandstreamDevice
                | FileKind::SnomDevice
        )
    }

    /// Whether the file is specific to one phone (and so holds its SIP credentials).
    pub fn is_per_device(&self) -> bool {
        !matches!(
            self,
            FileKind::CiscoDefault | FileKind::YealinkModel { .. } | FileKind::PolycomMasterDefault
        )
    }
}

/// A recognised request. `mac` is 12 upper-case hex digits (the store's form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub vendor: Vendor,
    pub mac: Option<String>,
    pub model: Option<String>,
    pub kind: FileKind,
}

/// Longest file name considered; every real one is under 40 characters.
const MAX_NAME: usize = 64;

/// Maps a requested path (`/SEP001122AABBCC.cnf.xml`, `cfg000b82aabbcc.xml?x=1`) and the
/// HTTP User-Agent to the file asked for. The path must be one file name at the root (an
/// optional leading `/`, no other `/` or `\`); a query string is ignored. A `<mac>.cfg` is
/// Yealink or Polycom: the User-Agent decides, else the MAC's vendor prefix (OUI); neither
/// known gives `None`. A MAC in the User-Agent that contradicts the file name gives `None`
/// (someone is asking for another phone's file).
pub fn route(path: &str, user_agent: Option<&str>) -> Option<Request> {
    let path = path.split(['?', '#']).next().unwrap_or("");
    let name = path.strip_prefix('/').unwrap_or(path);
    if name.is_empty()
        || name.len() > MAX_NAME
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        || name.starts_with('.')
    {
        return None;
    }
    let ua = user_agent.map(parse_user_agent).unwrap_or_default();
    let mut req = route_name(name, &ua)?;
    if let (Some(from_name), Some(from_ua)) = (&req.mac, &ua.mac) {
        if from_name != from_ua && ua.vendor == Some(req.vendor) {
            return None;
        }
    }
    if req.model.is_none() && ua.vendor == Some(req.vendor) {
        req.model = ua.model;
    }
    if req.mac.is_none() && req.kind.is_per_device() && ua.vendor == Some(req.vendor) {
        req.mac = ua.mac;
    }
    Some(req)
}

fn route_name(name: &str, ua: &UserAgent) -> Option<Request> {
    let req = |vendor, mac: Option<String>, model: Option<String>, kind| {
        Some(Request {
            vendor,
            mac,
            model,
            kind,
        })
    };
    // Cisco: SEP + upper-case MAC; the phone writes "SEP" in capitals, hex case is tolerated
    // because TFTP servers on case-insensitive file systems made both forms common.
    if name == "XmlDefault.cnf.xml" {
        return req(Vendor::Cisco, None, None, FileKind::CiscoDefault);
    }
    if let Some(rest) = name
        .strip_prefix("SEP")
        .and_then(|r| r.strip_suffix(".cnf.xml"))
    {
        return req(Vendor::Cisco, Some(mac(rest)?), None, FileKind::CiscoDevice);
    }
    // Polycom fixed names and suffixed per-MAC files (lower-case MAC, as Polycom requests).
    if name == "000000000000.cfg" {
        return req(Vendor::Polycom, None, None, FileKind::PolycomMasterDefault);
    }
    if let Some(rest) = name.strip_suffix("-user.cfg") {
        return req(
            Vendor::Polycom,
            Some(mac(rest)?),
            None,
            FileKind::PolycomUser,
        );
    }
    if let Some(rest) = name.strip_suffix("-directory.xml") {
        return req(
            Vendor::Polycom,
            Some(mac(rest)?),
            None,
            FileKind::PolycomDirectory,
        );
    }
    // Yealink per-model common file: y0000000000 + two digits.
    if let Some(code) = name
        .strip_prefix("y0000000000")
        .and_then(|r| r.strip_suffix(".cfg"))
    {
        if code.len() == 2 && code.bytes().all(|b| b.is_ascii_digit()) {
            return req(
                Vendor::Yealink,
                None,
                None,
                FileKind::YealinkModel {
                    code: code.to_string(),
                },
            );
        }
        return None;
    }
    // Grandstream: cfg<mac>.xml or cfg<mac>.
    if let Some(rest) = name.strip_prefix("cfg") {
        let rest = rest.strip_suffix(".xml").unwrap_or(rest);
        return req(
            Vendor::Grandstream,
            Some(mac(rest)?),
            None,
            FileKind::GrandstreamDevice,
        );
    }
    // Snom: snom<model>-<MAC>.htm, or <MAC>.xml.
    if let Some(rest) = name
        .strip_prefix("snom")
        .and_then(|r| r.strip_suffix(".htm"))
    {
        let (model, m) = rest.rsplit_once('-')?;
        if model.is_empty() || model.len() > 16 || !model.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return None;
        }
        return req(
            Vendor::Snom,
            Some(mac(m)?),
            Some(model.to_string()),
            FileKind::SnomDevice,
        );
    }
    if let Some(rest) = name.strip_suffix(".xml") {
        return req(Vendor::Snom, Some(mac(rest)?), None, FileKind::SnomDevice);
    }
    // <mac>.cfg: Yealink or Polycom.
    if let Some(rest) = name.strip_suffix(".cfg") {
        let m = mac(rest)?;
        let vendor = match ua.vendor {
            Some(v @ (Vendor::Yealink | Vendor::Polycom)) => v,
            Some(_) => return None,
            None => vendor_from_oui(&m)?,
        };
        let kind = match vendor {
            Vendor::Yealink => FileKind::YealinkDevice,
            _ => FileKind::PolycomMaster,
        };
        return req(vendor, Some(m), None, kind);
    }
    None
}

/// 12 hex digits (either case) into the store's upper-case form. All-zero, broadcast and
/// multicast addresses are refused: no phone has one.
fn mac(s: &str) -> Option<String> {
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

/// A few well-known vendor prefixes, to tell a Yealink from a Polycom `<mac>.cfg` request that
/// came without a recognisable User-Agent (TFTP has none).
fn vendor_from_oui(mac: &str) -> Option<Vendor> {
    const YEALINK: &[&str] = &["001565", "805EC0", "805E0C", "249AD8", "44DBD2", "C4FC22"];
    const POLYCOM: &[&str] = &["0004F2", "64167F", "482567"];
    let oui = mac.get(0..6)?;
    if YEALINK.contains(&oui) {
        Some(Vendor::Yealink)
    } else if POLYCOM.contains(&oui) {
        Some(Vendor::Polycom)
    } else {
        None
    }
}

/// What an HTTP User-Agent says about the phone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserAgent {
    pub vendor: Option<Vendor>,
    pub model: Option<String>,
    pub mac: Option<String>,
}

fn clean_model(s: &str) -> Option<String> {
    let s: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(32)
        .collect();
    (!s.is_empty()).then_some(s)
}

/// Reads vendor, model and MAC from a provisioning User-Agent:
/// `Yealink SIP-T46S 66.85.0.5 00:15:65:aa:bb:cc`,
/// `Grandstream Model HW GXP2170 SW 1.0.11.3 DevId 000b82aabbcc`,
/// `Mozilla/4.0 (compatible; snomD785-SIP 10.1.33.33 ...; 00:04:13:aa:bb:cc)`,
/// `FileTransport PolycomVVX-VVX_410-UA/5.9.5.0614`, `Cisco-CP8851/12.1.1`.
pub fn parse_user_agent(ua: &str) -> UserAgent {
    let ua = ua.get(..ua.len().min(512)).unwrap_or("");
    let words: Vec<&str> = ua
        .split(|c: char| c.is_whitespace() || matches!(c, '(' | ')' | ';' | ','))
        .filter(|w| !w.is_empty())
        .collect();
    let mac_word = words.iter().rev().find_map(|w| mac_in_word(w));
    let lower = ua.to_ascii_lowercase();
    if let Some(i) = words.iter().position(|w| w.eq_ignore_ascii_case("yealink")) {
        let model = words.get(i + 1).and_then(|m| {
            let m = m.strip_prefix("SIP-").unwrap_or(m);
            clean_model(m)
        });
        return UserAgent {
            vendor: Some(Vendor::Yealink),
            model,
            mac: mac_word,
        };
    }
    if words
        .first()
        .is_some_and(|w| w.eq_ignore_ascii_case("grandstream"))
    {
        // "Grandstream Model HW GXP2170 SW ..." or "Grandstream GXP2135 (HW 1.0) SW ...".
        let model = words
            .iter()
            .skip(1)
            .find(|w| !matches!(w.to_ascii_lowercase().as_str(), "model" | "hw"))
            .and_then(|m| clean_model(m));
        let mac = words
            .iter()
            .position(|w| w.eq_ignore_ascii_case("devid"))
            .and_then(|i| words.get(i + 1))
            .and_then(|w| mac_in_word(w));
        return UserAgent {
            vendor: Some(Vendor::Grandstream),
            model,
            mac,
        };
    }
    if let Some(w) = words
        .iter()
        .find(|w| w.len() > 4 && w.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("snom")))
    {
        let rest = w.get(4..).unwrap_or("");
        let model = clean_model(rest.split('-').next().unwrap_or(""));
        return UserAgent {
            vendor: Some(Vendor::Snom),
            model,
            mac: mac_word,
        };
    }
    if let Some(i) = lower.find("polycom") {
        // PolycomVVX-VVX_410-UA/5.9 or PolycomSoundPointIP-SPIP_650-UA/4.0: the model is the
        // second dash-separated part; the MAC is only in the file name.
        let tail = ua.get(i..).unwrap_or("");
        let model = tail
            .split_whitespace()
            .next()
            .and_then(|t| t.split('-').nth(1))
            .and_then(|m| clean_model(&m.replace('_', "")));
        return UserAgent {
            vendor: Some(Vendor::Polycom),
            model,
            mac: None,
        };
    }
    if let Some(rest) = words.first().and_then(|w| w.strip_prefix("Cisco-")) {
        return UserAgent {
            vendor: Some(Vendor::Cisco),
            model: clean_model(rest.split('/').next().unwrap_or("")),
            mac: None,
        };
    }
    UserAgent::default()
}

/// `00:15:65:aa:bb:cc`, `00-15-65-aa-bb-cc` or `001565aabbcc` (with at least one letter or
/// separator: a 12-digit build number is not a MAC).
fn mac_in_word(w: &str) -> Option<String> {
    for sep in [':', '-'] {
        let parts: Vec<&str> = w.split(sep).collect();
        if parts.len() == 6 && parts.iter().all(|p| p.len() == 2) {
            return mac(&parts.concat());
        }
    }
    if w.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    mac(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_forms() {
        assert_eq!(mac("001565aabbcc").as_deref(), Some("001565AABBCC"));
        assert_eq!(mac("000000000000"), None);
        assert_eq!(mac("011565aabbcc"), None, "multicast");
        assert_eq!(mac("001565aabbc"), None);
        assert_eq!(mac("00156€aabbc"), None);
        assert_eq!(mac_in_word("001565123456").as_deref(), None);
        assert_eq!(
            mac_in_word("00:15:65:12:34:56").as_deref(),
            Some("001565123456")
        );
    }
}
