//! Phone provisioning files (issue 4, first slice): the vendor-neutral view of what a phone needs
//! to register its lines ([`PhoneConfig`]), built from store records or for a guest (autoprov)
//! phone; the per-vendor renderers (Cisco SIP, Yealink, Polycom, Grandstream, Snom) driven by
//! admin-overridable minijinja templates ([`render`]); and the routing of a requested file name
//! plus HTTP User-Agent to a vendor, MAC, model and file kind ([`route`]).
//!
//! Everything here but [`serve`] is pure: no sockets, no store access. [`serve`] is the
//! provisioning HTTP server (guest configs for autoprov phones, keyed or source-IP-checked
//! provisioned configs); [`tftp`] serves the same files over TFTP (RFC 1350, read-only) for
//! phones that only speak TFTP. The guest registrar and the resync NOTIFY are built on top.

pub mod render;
pub mod route;
pub mod serve;
pub mod tftp;

pub use render::{RenderError, Renderer, TEMPLATE_NAMES};
pub use route::{route, FileKind, Request};

use crate::store::{Device, DeviceTemplate, Line, SipEndpoint, Transport};
use serde::Serialize;
use std::fmt;

/// The phone vendors whose file formats are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    Cisco,
    Yealink,
    Polycom,
    Grandstream,
    Snom,
}

impl Vendor {
    pub fn as_str(self) -> &'static str {
        match self {
            Vendor::Cisco => "cisco",
            Vendor::Yealink => "yealink",
            Vendor::Polycom => "polycom",
            Vendor::Grandstream => "grandstream",
            Vendor::Snom => "snom",
        }
    }

    /// Case-insensitive vendor name as stored on a device (`Yealink`, `cisco`...).
    pub fn parse(s: &str) -> Option<Vendor> {
        [
            Vendor::Cisco,
            Vendor::Yealink,
            Vendor::Polycom,
            Vendor::Grandstream,
            Vendor::Snom,
        ]
        .into_iter()
        .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The phone itself. `mac` is 12 upper-case hex digits (the store's form) or `None` for the
/// vendor-wide default files (`XmlDefault.cnf.xml`, `000000000000.cfg`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    pub mac: Option<String>,
    pub model: Option<String>,
    pub vendor: Option<Vendor>,
}

/// Where a phone sends SIP: selfprov's own registrar, used for guest configs, for the default
/// files, and for lines whose device template names no registrar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipServer {
    pub host: String,
    pub port: u16,
    pub transport: Transport,
    /// The site's PBX (the first `[[pbx]]` table): where lines register when their device
    /// template names no registrar. Their digest user is then the line's number, the account
    /// the PBX connector created (`crate::pbx`). `None`: lines register at selfprov.
    pub pbx: Option<crate::pbx::LineRegistrar>,
}

/// One SIP account on a line key.
#[derive(Clone, PartialEq, Eq)]
pub struct LineConfig {
    /// 1-based line key.
    pub position: u32,
    /// The directory number: the SIP user part of the account's address of record.
    pub number: String,
    /// Caller ID name sent in From.
    pub display_name: String,
    /// Text next to the line key.
    pub label: String,
    /// Digest user name.
    pub auth_username: String,
    /// Digest password (written into the file: the file is a secret).
    pub password: String,
    pub registrar_host: String,
    pub registrar_port: u16,
    pub transport: Transport,
    /// Outbound proxy host and port, when the template names one.
    pub proxy: Option<(String, u16)>,
}

impl fmt::Debug for LineConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineConfig")
            .field("position", &self.position)
            .field("number", &self.number)
            .field("display_name", &self.display_name)
            .field("label", &self.label)
            .field("auth_username", &self.auth_username)
            .field("password", &"***")
            .field("registrar_host", &self.registrar_host)
            .field("registrar_port", &self.registrar_port)
            .field("transport", &self.transport)
            .field("proxy", &self.proxy)
            .finish()
    }
}

/// A speed-dial key; `position` is 1-based among the speed dials (vendors place them after the
/// line keys, see [`PhoneConfig::line_keys`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeedDialConfig {
    pub position: u32,
    pub number: String,
    pub label: String,
}

/// Everything a vendor file is rendered from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneConfig {
    pub device: DeviceInfo,
    /// Sorted by position, positions unique.
    pub lines: Vec<LineConfig>,
    /// How many keys are line keys (at least `lines.len()`): speed dials start after them.
    pub line_keys: u32,
    pub speed_dials: Vec<SpeedDialConfig>,
    /// BCP 47 tag (`en-US`); vendors' own language names are not derived from it.
    pub locale: String,
    /// IANA zone (`Europe/Paris`); see the vendor pages for how each template uses it.
    pub timezone: String,
    pub ntp_server: Option<String>,
    /// selfprov's SIP address (default files and lines without a template registrar).
    pub server: SipServer,
    /// A guest (autoprov) config: one account, a speed dial to the IVR.
    pub guest: bool,
}

/// Why a [`PhoneConfig`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("line {position} of the device has no line record or no SIP endpoint")]
    MissingLine { position: u32 },
    #[error("two lines at position {position}")]
    DuplicatePosition { position: u32 },
    #[error("the device has {lines} lines; its type allows {max}")]
    TooManyLines { lines: usize, max: u32 },
}

/// One line of a device with the records it is built from.
#[derive(Debug, Clone, Copy)]
pub struct StoreLine<'a> {
    pub line: &'a Line,
    pub endpoint: &'a SipEndpoint,
}

fn non_empty(s: &str, fallback: &str) -> String {
    if s.trim().is_empty() {
        fallback.to_string()
    } else {
        s.to_string()
    }
}

impl PhoneConfig {
    /// Builds a provisioned phone's config from the store: the device (its `lines` give the
    /// positions and labels), each line with its SIP endpoint (matched by the device line's
    /// `line_id`), and the device template (registrar, proxy, speed dials, locale, time zone,
    /// NTP). Without a template, or when it names no registrar, lines register with `server`.
    pub fn from_store(
        device: &Device,
        lines: &[StoreLine<'_>],
        template: Option<&DeviceTemplate>,
        server: &SipServer,
    ) -> Result<PhoneConfig, BuildError> {
        let max = device.device_type.max_lines();
        if device.lines.len() > max as usize {
            return Err(BuildError::TooManyLines {
                lines: device.lines.len(),
                max,
            });
        }
        let spec = template.map(|t| &t.spec);
        let template_registrar = spec.and_then(|s| s.registrar_address.clone());
        // Lines a PBX serves use the account its connector made: user = the line's number.
        let at_pbx = template_registrar.is_none() && server.pbx.is_some();
        let (reg_host, reg_port) = match (&template_registrar, &server.pbx) {
            (Some(h), _) => (h.clone(), spec.map_or(server.port, |s| s.registrar_port)),
            (None, Some(p)) => (p.host.clone(), p.port),
            (None, None) => (server.host.clone(), server.port),
        };
        let proxy = match (spec.and_then(|s| s.proxy_address.clone()), &server.pbx) {
            (Some(h), _) => Some((h, spec.map_or(5060, |s| s.proxy_port))),
            (None, Some(p)) if at_pbx => p.proxy.clone(),
            _ => None,
        };
        let mut out = Vec::with_capacity(device.lines.len());
        for dl in &device.lines {
            if out.iter().any(|l: &LineConfig| l.position == dl.position) {
                return Err(BuildError::DuplicatePosition {
                    position: dl.position,
                });
            }
            let found = lines
                .iter()
                .find(|sl| Some(sl.line.id) == dl.line_id && sl.endpoint.line_id == dl.line_id)
                .ok_or(BuildError::MissingLine {
                    position: dl.position,
                })?;
            let number = dl.number.clone();
            out.push(LineConfig {
                position: dl.position,
                display_name: non_empty(&found.line.spec.caller_id_name, &number),
                label: non_empty(&dl.label, &non_empty(&found.line.spec.label, &number)),
                auth_username: if at_pbx {
                    dl.number.clone()
                } else {
                    found.endpoint.auth_username.clone()
                },
                password: found.endpoint.password.clone(),
                registrar_host: reg_host.clone(),
                registrar_port: reg_port,
                transport: found.endpoint.transport,
                proxy: proxy.clone(),
                number,
            });
        }
        out.sort_by_key(|l| l.position);
        let line_keys = spec
            .map_or(0, |s| s.line_keys)
            .max(out.last().map_or(0, |l| l.position));
        let mut speed_dials: Vec<SpeedDialConfig> = spec
            .map(|s| {
                s.speed_dials
                    .iter()
                    .map(|sd| SpeedDialConfig {
                        position: sd.position,
                        number: sd.number.clone(),
                        label: non_empty(&sd.label, &sd.number),
                    })
                    .collect()
            })
            .unwrap_or_default();
        speed_dials.sort_by_key(|s| s.position);
        Ok(PhoneConfig {
            device: DeviceInfo {
                mac: device.mac.clone(),
                model: device.model.clone(),
                vendor: device.vendor.as_deref().and_then(Vendor::parse),
            },
            lines: out,
            line_keys,
            speed_dials,
            locale: spec.map_or_else(|| "en-US".into(), |s| s.locale.clone()),
            timezone: spec.map_or_else(|| "UTC".into(), |s| s.timezone.clone()),
            ntp_server: spec.and_then(|s| s.ntp_server.clone()),
            server: server.clone(),
            guest: false,
        })
    }

    /// A guest (autoprov) config: one SIP account unique to this phone (`account`), registering
    /// with selfprov, labelled "Dial <ivr> to set up", and speed dial 1 to the IVR extension.
    /// `template` (the autoregistration device template) gives locale, time zone and NTP.
    pub fn guest(
        device: DeviceInfo,
        account: &GuestAccount,
        ivr_extension: &str,
        server: &SipServer,
        template: Option<&DeviceTemplate>,
    ) -> PhoneConfig {
        let spec = template.map(|t| &t.spec);
        PhoneConfig {
            device,
            lines: vec![LineConfig {
                position: 1,
                number: account.number.clone(),
                display_name: format!("Guest {}", account.number),
                label: format!("Dial {ivr_extension} to set up"),
                auth_username: account.auth_username.clone(),
                password: account.password.clone(),
                registrar_host: server.host.clone(),
                registrar_port: server.port,
                transport: server.transport,
                proxy: None,
            }],
            line_keys: 1,
            speed_dials: vec![SpeedDialConfig {
                position: 1,
                number: ivr_extension.to_string(),
                label: "IVR".into(),
            }],
            locale: spec.map_or_else(|| "en-US".into(), |s| s.locale.clone()),
            timezone: spec.map_or_else(|| "UTC".into(), |s| s.timezone.clone()),
            ntp_server: spec.and_then(|s| s.ntp_server.clone()),
            server: server.clone(),
            guest: true,
        }
    }

    /// A config with no lines, for the vendor-wide default files (`XmlDefault.cnf.xml`,
    /// `000000000000.cfg`, `y0000000000xx.cfg`).
    pub fn defaults(server: &SipServer, model: Option<String>, vendor: Vendor) -> PhoneConfig {
        PhoneConfig {
            device: DeviceInfo {
                mac: None,
                model,
                vendor: Some(vendor),
            },
            lines: Vec::new(),
            line_keys: 0,
            speed_dials: Vec::new(),
            locale: "en-US".into(),
            timezone: "UTC".into(),
            ntp_server: None,
            server: server.clone(),
            guest: false,
        }
    }
}

/// The autoprov account of one guest phone: its autoregistration number and digest credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct GuestAccount {
    pub number: String,
    pub auth_username: String,
    pub password: String,
}

impl fmt::Debug for GuestAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuestAccount")
            .field("number", &self.number)
            .field("auth_username", &self.auth_username)
            .field("password", &"***")
            .finish()
    }
}
