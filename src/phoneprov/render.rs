//! Rendering a [`PhoneConfig`] into a vendor file with minijinja templates. The defaults are
//! embedded (`src/phoneprov/templates/`); a file with the same name in the admin's
//! `templates_dir` replaces one. Every value written is escaped for the file's syntax: XML
//! entities for `.xml` templates, and for the `key = value` `.cfg` templates line breaks and
//! control characters are dropped (a display name must not be able to add a setting).
//!
//! Variables (documented in `docs/phones/templates.md`): `device` (`mac`, `mac_lower`, `model`,
//! `vendor`), `lines` (each `position`, `number`, `display_name`, `label`, `auth_username`,
//! `password`, `registrar_host`, `registrar_port`, `transport`, `proxy_host`, `proxy_port`,
//! `gs` for Grandstream's P-codes), `line_keys`, `speed_dials` (each `position`, `key`,
//! `number`, `label`), `locale`, `timezone`, `ntp_server`, `server` (`host`, `port`,
//! `transport`), `guest`, `yealink_model_code`, `config_url` (with `config_url_scheme` and
//! `config_url_rest`: the URL split at `://`).

use super::{FileKind, PhoneConfig, Vendor};
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, Output, State, UndefinedBehavior};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The embedded templates, by name. An override file in `templates_dir` has the same name.
pub const TEMPLATE_NAMES: &[&str] = &[
    "cisco-device.xml",
    "cisco-default.xml",
    "yealink-device.cfg",
    "yealink-model.cfg",
    "polycom-master.xml",
    "polycom-user.xml",
    "polycom-directory.xml",
    "grandstream-device.xml",
    "snom-device.xml",
];

fn embedded(name: &str) -> Option<&'static str> {
    Some(match name {
        "cisco-device.xml" => include_str!("templates/cisco-device.xml"),
        "cisco-default.xml" => include_str!("templates/cisco-default.xml"),
        "yealink-device.cfg" => include_str!("templates/yealink-device.cfg"),
        "yealink-model.cfg" => include_str!("templates/yealink-model.cfg"),
        "polycom-master.xml" => include_str!("templates/polycom-master.xml"),
        "polycom-user.xml" => include_str!("templates/polycom-user.xml"),
        "polycom-directory.xml" => include_str!("templates/polycom-directory.xml"),
        "grandstream-device.xml" => include_str!("templates/grandstream-device.xml"),
        "snom-device.xml" => include_str!("templates/snom-device.xml"),
        _ => return None,
    })
}

/// Why a file could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot read template override {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template {name}: {source}")]
    Template { name: String, source: Error },
    #[error("{kind:?} needs a device MAC")]
    NoMac { kind: FileKind },
    #[error("{vendor} files map lines 1 to {max} only; the device has line {position}")]
    LineNotMapped {
        vendor: Vendor,
        position: u32,
        max: u32,
    },
}

/// The template set: embedded defaults plus the admin's overrides, parsed once.
pub struct Renderer {
    env: Environment<'static>,
    overridden: Vec<&'static str>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Renderer")
            .field("overridden", &self.overridden)
            .finish_non_exhaustive()
    }
}

/// Writes `value` for an XML text node or attribute: the five entities, tab/CR/LF as character
/// references (an attribute keeps them through attribute-value normalisation), and characters
/// XML 1.0 forbids dropped.
fn write_xml(out: &mut Output, s: &str) -> std::fmt::Result {
    for c in s.chars() {
        match c {
            '&' => out.write_str("&amp;")?,
            '<' => out.write_str("&lt;")?,
            '>' => out.write_str("&gt;")?,
            '"' => out.write_str("&quot;")?,
            '\'' => out.write_str("&apos;")?,
            '\t' => out.write_str("&#9;")?,
            '\n' => out.write_str("&#10;")?,
            '\r' => out.write_str("&#13;")?,
            c if (c as u32) < 0x20 || matches!(c, '\u{FFFE}' | '\u{FFFF}') => {}
            c => {
                let mut buf = [0u8; 4];
                out.write_str(c.encode_utf8(&mut buf))?
            }
        }
    }
    Ok(())
}

/// A `key = value` value: one line, no control characters, surrounding blanks trimmed (the
/// phones trim them anyway).
fn write_cfg(out: &mut Output, s: &str) -> std::fmt::Result {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    out.write_str(cleaned.trim())
}

fn formatter(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    if value.is_undefined() || value.is_none() {
        // SemiStrict already refused printing an undefined variable; `none` prints nothing.
        return Ok(());
    }
    let text = match value.as_str() {
        Some(s) => s.to_string(),
        None => value.to_string(),
    };
    let is_safe = value.is_safe();
    let r = match state.auto_escape() {
        _ if is_safe => out.write_str(&text),
        AutoEscape::Custom(n) if n == "xml" => write_xml(out, &text),
        AutoEscape::Custom(n) if n == "cfg" => write_cfg(out, &text),
        _ => out.write_str(&text),
    };
    r.map_err(|_| Error::new(ErrorKind::WriteFailure, "formatting failed"))
}

impl Renderer {
    /// The embedded templates only.
    pub fn new() -> Result<Renderer, RenderError> {
        Renderer::with_overrides(None)
    }

    /// The embedded templates, each replaced by the file of the same name in `templates_dir`
    /// when there is one. Only the names in [`TEMPLATE_NAMES`] are looked up; every template
    /// is parsed here, so a broken override is reported at start-up, not at a phone's request.
    pub fn with_overrides(templates_dir: Option<&Path>) -> Result<Renderer, RenderError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".xml") {
                AutoEscape::Custom("xml".into())
            } else if name.ends_with(".cfg") {
                AutoEscape::Custom("cfg".into())
            } else {
                AutoEscape::None
            }
        });
        env.set_formatter(formatter);
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .map_err(|source| RenderError::Template {
                name: "syntax".into(),
                source,
            })?;
        env.set_syntax(syntax);
        let mut overridden = Vec::new();
        for &name in TEMPLATE_NAMES {
            let source = match templates_dir.map(|d| d.join(name)) {
                Some(path) if path.is_file() => {
                    overridden.push(name);
                    std::fs::read_to_string(&path)
                        .map_err(|source| RenderError::Read { path, source })?
                }
                _ => embedded(name).unwrap_or_default().to_string(),
            };
            env.add_template_owned(name, source)
                .map_err(|source| RenderError::Template {
                    name: name.into(),
                    source,
                })?;
        }
        Ok(Renderer { env, overridden })
    }

    /// The template names replaced by a file of the admin's.
    pub fn overridden(&self) -> &[&'static str] {
        &self.overridden
    }

    /// Renders `kind` for `cfg`. Per-device files need `cfg.device.mac`.
    pub fn render(&self, kind: &FileKind, cfg: &PhoneConfig) -> Result<String, RenderError> {
        self.render_with_config_url(kind, cfg, None)
    }

    /// As [`Renderer::render`], telling the phone where to fetch its configuration next:
    /// `config_url` (absolute `http://` or `https://` URL of a folder, ending with `/`; the
    /// provisioning server's keyed URL `<public_url>/<config_key>/`). The templates write it
    /// into the vendor's provisioning-server setting where the vendor has one (Yealink
    /// `static.auto_provision.server.url`, Polycom `device.prov.serverName`, Grandstream
    /// `P237`, Snom `setting_server`); Cisco has none (DHCP option 150 names its TFTP server).
    pub fn render_with_config_url(
        &self,
        kind: &FileKind,
        cfg: &PhoneConfig,
        config_url: Option<&str>,
    ) -> Result<String, RenderError> {
        if kind.is_per_device() && cfg.device.mac.is_none() {
            return Err(RenderError::NoMac { kind: kind.clone() });
        }
        if *kind == FileKind::GrandstreamDevice {
            if let Some(l) = cfg
                .lines
                .iter()
                .find(|l| grandstream_codes(l.position).is_none())
            {
                return Err(RenderError::LineNotMapped {
                    vendor: Vendor::Grandstream,
                    position: l.position,
                    max: GS_ACCOUNTS,
                });
            }
        }
        let name = kind.template_name();
        let mut ctx = context(kind, cfg);
        if let Some(url) = config_url {
            let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
            ctx.config_url = Some(url);
            ctx.config_url_scheme = Some(scheme);
            ctx.config_url_rest = Some(rest);
        }
        let ctx = Value::from(minijinja::value::Serde(ctx));
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|source| RenderError::Template {
                name: name.into(),
                source,
            })
    }
}

/// Grandstream P-codes of one account. Account 1 has its own numbers; accounts 2 to 4 follow
/// the `P4xx`/`P5xx`/`P6xx` pattern (GXP21xx/GXP17xx). Later accounts use model-specific codes
/// and are not mapped.
#[derive(Debug, Clone, Serialize)]
struct GsCodes {
    active: u32,
    server: u32,
    proxy: u32,
    user: u32,
    auth: u32,
    password: u32,
    display_name: u32,
    label: u32,
}

const GS_ACCOUNTS: u32 = 4;

fn grandstream_codes(position: u32) -> Option<GsCodes> {
    match position {
        1 => Some(GsCodes {
            active: 271,
            server: 47,
            proxy: 48,
            user: 35,
            auth: 36,
            password: 34,
            display_name: 3,
            label: 270,
        }),
        2..=GS_ACCOUNTS => {
            let b = (position + 2) * 100;
            Some(GsCodes {
                active: b + 1,
                server: b + 2,
                proxy: b + 3,
                user: b + 4,
                auth: b + 5,
                password: b + 6,
                display_name: b + 7,
                label: b + 17,
            })
        }
        _ => None,
    }
}

#[derive(Serialize)]
struct Ctx<'a> {
    device: DeviceCtx<'a>,
    lines: Vec<LineCtx<'a>>,
    line_keys: u32,
    speed_dials: Vec<SpeedDialCtx<'a>>,
    locale: &'a str,
    timezone: &'a str,
    ntp_server: Option<&'a str>,
    server: ServerCtx<'a>,
    guest: bool,
    yealink_model_code: Option<&'a str>,
    /// Where the phone fetches its configuration next (see
    /// [`Renderer::render_with_config_url`]), its scheme, and the rest after `://`.
    config_url: Option<&'a str>,
    config_url_scheme: Option<&'a str>,
    config_url_rest: Option<&'a str>,
}

#[derive(Serialize)]
struct DeviceCtx<'a> {
    mac: Option<&'a str>,
    mac_lower: Option<String>,
    model: Option<&'a str>,
    vendor: Option<&'static str>,
}

#[derive(Serialize)]
struct LineCtx<'a> {
    position: u32,
    number: &'a str,
    display_name: &'a str,
    label: &'a str,
    auth_username: &'a str,
    password: &'a str,
    registrar_host: &'a str,
    registrar_port: u16,
    transport: &'static str,
    proxy_host: Option<&'a str>,
    proxy_port: Option<u16>,
    gs: Option<GsCodes>,
}

#[derive(Serialize)]
struct SpeedDialCtx<'a> {
    position: u32,
    /// 1-based key: after the line keys.
    key: u32,
    number: &'a str,
    label: &'a str,
}

#[derive(Serialize)]
struct ServerCtx<'a> {
    host: &'a str,
    port: u16,
    transport: &'static str,
}

fn context<'a>(kind: &'a FileKind, cfg: &'a PhoneConfig) -> Ctx<'a> {
    Ctx {
        device: DeviceCtx {
            mac: cfg.device.mac.as_deref(),
            mac_lower: cfg.device.mac.as_ref().map(|m| m.to_ascii_lowercase()),
            model: cfg.device.model.as_deref(),
            vendor: cfg.device.vendor.map(Vendor::as_str),
        },
        lines: cfg
            .lines
            .iter()
            .map(|l| LineCtx {
                position: l.position,
                number: &l.number,
                display_name: &l.display_name,
                label: &l.label,
                auth_username: &l.auth_username,
                password: &l.password,
                registrar_host: &l.registrar_host,
                registrar_port: l.registrar_port,
                transport: l.transport.as_str(),
                proxy_host: l.proxy.as_ref().map(|p| p.0.as_str()),
                proxy_port: l.proxy.as_ref().map(|p| p.1),
                gs: grandstream_codes(l.position),
            })
            .collect(),
        line_keys: cfg.line_keys,
        speed_dials: cfg
            .speed_dials
            .iter()
            .map(|s| SpeedDialCtx {
                position: s.position,
                key: cfg.line_keys.saturating_add(s.position),
                number: &s.number,
                label: &s.label,
            })
            .collect(),
        locale: &cfg.locale,
        timezone: &cfg.timezone,
        ntp_server: cfg.ntp_server.as_deref(),
        server: ServerCtx {
            host: &cfg.server.host,
            port: cfg.server.port,
            transport: cfg.server.transport.as_str(),
        },
        guest: cfg.guest,
        yealink_model_code: match kind {
            FileKind::YealinkModel { code } => Some(code.as_str()),
            _ => None,
        },
        config_url: None,
        config_url_scheme: None,
        config_url_rest: None,
    }
}
