//! Configuration: one TOML file, every key optional with a default that works out of the box.
//! `docs/configuration.md` documents each key; `deploy/selfprov.toml` is a commented sample.
//!
//! Unknown keys are refused (a typo must not be silently ignored) and every error names the key.

use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub sip: SipConfig,
    pub rtp: RtpConfig,
    pub ivr: IvrConfig,
    pub store: StoreConfig,
    pub langpacks: LangpackConfig,
    pub http: HttpConfig,
    pub provisioning: ProvisioningConfig,
    pub registrar: RegistrarConfig,
    pub log: LogConfig,
    /// The call-control systems told of every line a binding makes live (`[[pbx]]` tables);
    /// none: lines register at selfprov.
    pub pbx: Vec<crate::pbx::PbxConfig>,
}

/// How the provisioning server protects a provisioned phone's config file (it holds SIP
/// passwords). See docs/configuration.md for the trade-offs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileAuth {
    /// A provisioned phone's files are served only under `/<device key>/<file>`: the key is a
    /// random secret per device, written into the guest config as the phone's new config URL.
    UrlKey,
    /// As `url-key`, and the bare path also works with HTTP digest auth (RFC 7616) using the
    /// credentials of the device's line 1.
    UrlKeyOrDigest,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisioningConfig {
    /// HTTP listener serving phone config files at the root path (the phones' network, apart
    /// from the admin API). Port 0 picks a free port.
    pub http_listen: SocketAddr,
    /// TFTP listener (UDP) for phones that only speak TFTP. Off when unset.
    pub tftp_listen: Option<SocketAddr>,
    /// Folder of template overrides (`<vendor>/<file>.j2`); unset: the built-in templates.
    pub templates_dir: Option<PathBuf>,
    /// Base URL phones are told to fetch from (the guest config's next config URL). Unset:
    /// `http://<sip public address>:<http_listen port>`.
    pub public_url: Option<String>,
    /// Protection of provisioned phones' config files.
    pub file_auth: FileAuth,
    /// Requests naming an unknown MAC accepted per source IP per minute (scanners guess MACs);
    /// beyond it: 429 and a logged drop.
    pub unknown_mac_per_minute: u32,
    /// A device told to resync that has not fetched its new config within this many seconds is
    /// flagged `error`.
    pub resync_timeout_secs: u64,
}

impl Default for ProvisioningConfig {
    fn default() -> Self {
        ProvisioningConfig {
            http_listen: "0.0.0.0:8081".parse().unwrap(),
            tftp_listen: None,
            templates_dir: None,
            public_url: None,
            file_auth: FileAuth::UrlKey,
            unknown_mac_per_minute: 30,
            resync_timeout_secs: 300,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrarConfig {
    /// Digest realm of REGISTER and INVITE challenges.
    pub realm: String,
    /// Guest (autoprov) accounts may register (Wazo's `guest` switch).
    pub guest: bool,
    /// How many guest accounts may be registered at once; beyond it REGISTER gets 503.
    pub max_guests: usize,
    /// Expires below this gets 423 Interval Too Brief with Min-Expires (RFC 3261 §10.3).
    pub min_expires_secs: u32,
    /// Expires above this is shortened to it in the 200.
    pub max_expires_secs: u32,
    /// Expires granted when the REGISTER names none.
    pub default_expires_secs: u32,
    /// Lifetime of a digest nonce; an older one is answered with `stale=true`.
    pub nonce_lifetime_secs: u64,
    /// Digest algorithms offered, one challenge each, in this order (RFC 8760: a client answers
    /// the first it supports): `SHA-256`, `MD5`, `SHA-512-256`. The default is `["MD5"]`
    /// because MD5-only clients do not all skip a challenge they cannot answer: baresip's libre
    /// (before re 3.12) gives up on the whole 401 when any challenge is not MD5, SIPp 3.6 takes
    /// the first. Add `SHA-256` (first) when every phone on the network supports it.
    pub digest_algorithms: Vec<String>,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            realm: "selfprov".into(),
            guest: true,
            max_guests: 1000,
            min_expires_secs: 60,
            max_expires_secs: 3600,
            default_expires_secs: 3600,
            nonce_lifetime_secs: 300,
            digest_algorithms: vec!["MD5".into()],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// The admin REST API (`/api/v1`). Keep it off the phones' network.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "0.0.0.0:8080".parse().unwrap(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SipConfig {
    /// Address for both UDP and TCP. Port 0 picks a free port (tests use this).
    pub listen: SocketAddr,
    /// Address put in Contact, Via and SDP when the listen address is a wildcard or behind NAT.
    pub public_address: Option<IpAddr>,
    /// User-Agent / Server header value.
    pub user_agent: String,
    /// Concurrent calls above which new INVITEs get 503 with Retry-After.
    pub max_calls: usize,
    /// Proxies (IP addresses or CIDR blocks) whose INVITEs are not challenged and whose
    /// P-Asserted-Identity names the calling account (RFC 3325). Empty: none.
    pub trusted_proxies: Vec<crate::sip::trust::IpNet>,
}

impl Default for SipConfig {
    fn default() -> Self {
        SipConfig {
            listen: "0.0.0.0:5060".parse().unwrap(),
            public_address: None,
            user_agent: format!("selfprov/{}", env!("CARGO_PKG_VERSION")),
            max_calls: 10_000,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtpConfig {
    pub port_min: u16,
    pub port_max: u16,
    /// A call whose caller sends no RTP for this long is hung up.
    pub inactivity_timeout_ms: u64,
    /// 0: the media engines are tasks on the runtime. 1-99: each runs on a thread of its own at
    /// this `SCHED_FIFO` priority (needs root or CAP_SYS_NICE; see `server::media_engine`).
    pub realtime_priority: u8,
}

impl Default for RtpConfig {
    fn default() -> Self {
        RtpConfig {
            port_min: 10000,
            port_max: 20000,
            inactivity_timeout_ms: 30_000,
            realtime_priority: 0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// The ID alone binds the phone.
    NonSecure,
    /// The ID, then the user's PIN.
    SecureUsers,
    /// The ID, then the user's PIN or the administrator's authentication code.
    SecureUsersAndAdmins,
}

impl std::str::FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "non-secure" => Ok(AuthMode::NonSecure),
            "secure-users" => Ok(AuthMode::SecureUsers),
            "secure-users-and-admins" => Ok(AuthMode::SecureUsersAndAdmins),
            other => Err(format!(
                "unknown auth mode {other:?}: use non-secure, secure-users or secure-users-and-admins"
            )),
        }
    }
}

impl AuthMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMode::NonSecure => "non-secure",
            AuthMode::SecureUsers => "secure-users",
            AuthMode::SecureUsersAndAdmins => "secure-users-and-admins",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IvrConfig {
    /// Request-URI user parts answered as the IVR.
    ///
    /// This key, `auth_mode` and `admin_auth_code` are self-provisioning settings: they live in
    /// the store (editable at run time through the API and `selfprov settings`). When set in the
    /// file, they are written to the stored settings at start-up; unset, the stored values apply
    /// (a new store starts with `["8000"]`, `secure-users` and no admin code).
    pub extensions: Option<Vec<String>>,
    pub auth_mode: Option<AuthMode>,
    /// The administrator's authentication code: 0 to 20 digits, or an argon2 PHC hash of them
    /// (`$argon2id$...`, as printed by `selfprov secret hash`). Empty: no admin code.
    pub admin_auth_code: Option<String>,
    pub first_digit_timeout_ms: u64,
    pub inter_digit_timeout_ms: u64,
    pub max_attempts: u32,
    /// The IVR languages (pack tags under `langpacks.dir`), highest priority first, at most 9:
    /// with two or more, calls start with a language menu. A self-provisioning setting like
    /// `extensions`: when set here it is written to the stored settings at start-up; unset,
    /// the stored `languages` apply (a new store: `["en-US"]`).
    pub languages: Option<Vec<String>>,
    /// One language: the same as `languages = [language]` (kept for existing config files).
    pub language: Option<String>,
}

impl Default for IvrConfig {
    fn default() -> Self {
        IvrConfig {
            extensions: None,
            auth_mode: None,
            admin_auth_code: None,
            first_digit_timeout_ms: 10_000,
            inter_digit_timeout_ms: 5_000,
            max_attempts: 3,
            languages: None,
            language: None,
        }
    }
}

impl IvrConfig {
    pub fn first_digit_timeout(&self) -> Duration {
        Duration::from_millis(self.first_digit_timeout_ms)
    }
    pub fn inter_digit_timeout(&self) -> Duration {
        Duration::from_millis(self.inter_digit_timeout_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://PATH` (created on first start) or `postgres://...`.
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: "sqlite://selfprov-data/selfprov.db".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LangpackConfig {
    /// Folder holding `<language tag>/` packs.
    pub dir: PathBuf,
    /// The prompt catalogue (prompt IDs and English texts).
    pub catalogue: PathBuf,
}

impl Default for LangpackConfig {
    fn default() -> Self {
        LangpackConfig {
            dir: default_data_path("lang-packs"),
            catalogue: default_data_path("prompts/catalogue.toml"),
        }
    }
}

/// Shipped data (prompts, packs) is found next to the working directory when run from a checkout,
/// else under `/usr/share/selfprov` (the layout `deploy/` installs).
fn default_data_path(rel: &str) -> PathBuf {
    let local = PathBuf::from(rel);
    if local.exists() {
        return local;
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join(rel);
    if manifest.exists() {
        return manifest;
    }
    Path::new("/usr/share/selfprov").join(rel)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `tracing` filter directive, overridden by `RUST_LOG`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}

/// A configuration error that names the key and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

impl Config {
    /// Loads `path`, or the defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let cfg = match path {
            None => Config::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.into(),
                    source,
                })?;
                Config::from_toml(&text).map_err(|e| match e {
                    ConfigError::Parse { message, .. } => ConfigError::Parse {
                        path: p.into(),
                        message,
                    },
                    other => other,
                })?
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: String| Err(ConfigError::Invalid { key, message });
        if self.rtp.port_min == 0 || self.rtp.port_min > self.rtp.port_max {
            return invalid(
                "rtp.port_min",
                format!(
                    "must be between 1 and rtp.port_max ({}); got {}",
                    self.rtp.port_max, self.rtp.port_min
                ),
            );
        }
        if self.rtp.realtime_priority > 99 {
            return invalid(
                "rtp.realtime_priority",
                format!(
                    "must be 0 (off) or a SCHED_FIFO priority from 1 to 99; got {}",
                    self.rtp.realtime_priority
                ),
            );
        }
        if self.sip.max_calls == 0 {
            return invalid("sip.max_calls", "must be at least 1".into());
        }
        if let Some(exts) = &self.ivr.extensions {
            if exts.is_empty() {
                return invalid(
                    "ivr.extensions",
                    "give at least one extension, e.g. [\"8000\"]".into(),
                );
            }
            if let Some(bad) = exts.iter().find(|e| {
                e.is_empty()
                    || !e
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
            }) {
                return invalid(
                    "ivr.extensions",
                    format!("{bad:?} is not a dialable extension (digits, * and # only)"),
                );
            }
        }
        let code = self.ivr.admin_auth_code.as_deref();
        if let Some(code) = code {
            if !code.starts_with("$argon2")
                && (code.len() > 20 || !code.bytes().all(|b| b.is_ascii_digit()))
            {
                return invalid(
                    "ivr.admin_auth_code",
                    "must be 0 to 20 digits, or an argon2 hash from `selfprov secret hash`".into(),
                );
            }
        }
        if self.ivr.auth_mode == Some(AuthMode::SecureUsersAndAdmins) && code == Some("") {
            return invalid(
                "ivr.admin_auth_code",
                "auth_mode secure-users-and-admins needs an admin code".into(),
            );
        }
        if self.ivr.first_digit_timeout_ms == 0 || self.ivr.inter_digit_timeout_ms == 0 {
            return invalid(
                "ivr.first_digit_timeout_ms",
                "digit timeouts must be above 0".into(),
            );
        }
        if self.ivr.languages.is_some() && self.ivr.language.is_some() {
            return invalid(
                "ivr.language",
                "set either ivr.languages or ivr.language, not both".into(),
            );
        }
        if let Some(langs) = &self.ivr.languages {
            if langs.is_empty() || langs.len() > 9 {
                return invalid(
                    "ivr.languages",
                    format!("{} languages: give 1 to 9 pack tags", langs.len()),
                );
            }
        }
        if self.ivr.max_attempts == 0 {
            return invalid("ivr.max_attempts", "must be at least 1".into());
        }
        if !(self.store.url.starts_with("sqlite:")
            || self.store.url.starts_with("postgres://")
            || self.store.url.starts_with("postgresql://"))
        {
            return invalid(
                "store.url",
                format!("{:?}: use sqlite://PATH or postgres://...", self.store.url),
            );
        }
        let r = &self.registrar;
        if r.min_expires_secs == 0
            || r.min_expires_secs > r.max_expires_secs
            || !(r.min_expires_secs..=r.max_expires_secs).contains(&r.default_expires_secs)
        {
            return invalid(
                "registrar.min_expires_secs",
                "need 0 < min_expires_secs <= default_expires_secs <= max_expires_secs".into(),
            );
        }
        if r.realm.is_empty() || r.realm.contains('"') || r.realm.contains('\\') {
            return invalid(
                "registrar.realm",
                "must be non-empty, without quotes or backslashes".into(),
            );
        }
        if r.digest_algorithms.is_empty()
            || r.digest_algorithms
                .iter()
                .any(|a| crate::sip::digest::Algorithm::from_name(a).is_none())
        {
            return invalid(
                "registrar.digest_algorithms",
                format!(
                    "{:?}: give one or more of \"SHA-256\", \"MD5\", \"SHA-512-256\"",
                    r.digest_algorithms
                ),
            );
        }
        if r.nonce_lifetime_secs == 0 {
            return invalid("registrar.nonce_lifetime_secs", "must be at least 1".into());
        }
        if self.provisioning.unknown_mac_per_minute == 0 {
            return invalid(
                "provisioning.unknown_mac_per_minute",
                "must be at least 1 (0 would refuse every new phone)".into(),
            );
        }
        if let Some(url) = &self.provisioning.public_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return invalid(
                    "provisioning.public_url",
                    format!("{url:?}: give a full URL such as http://10.0.0.5:8081"),
                );
            }
        }
        if let Err(message) = crate::pbx::config::validate_all(&self.pbx) {
            return invalid("pbx", message);
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return invalid(
                "log.format",
                format!("{:?}: use \"text\" or \"json\"", self.log.format),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let c = Config::load(None).unwrap();
        assert_eq!(c.sip.listen.port(), 5060);
        assert_eq!(c.ivr.extensions, None, "stored settings apply");
        assert_eq!(c.ivr.auth_mode, None);
    }

    #[test]
    fn unknown_key_is_refused_with_its_name() {
        let e = Config::from_toml("[ivr]\nextensionz = [\"1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("extensionz"), "{e}");
    }

    #[test]
    fn bad_value_names_key() {
        let c = Config::from_toml("[ivr]\nadmin_auth_code = \"12ab\"\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("ivr.admin_auth_code"), "{e}");
        let c = Config::from_toml("[rtp]\nport_min = 3000\nport_max = 2000\n").unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("rtp.port_min"));
        let c = Config::from_toml("[rtp]\nrealtime_priority = 100\n").unwrap();
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("rtp.realtime_priority") && e.contains("1 to 99"),
            "{e}"
        );
        let c = Config::from_toml("[rtp]\nrealtime_priority = 99\n").unwrap();
        assert!(c.validate().is_ok());
        assert_eq!(Config::default().rtp.realtime_priority, 0, "off by default");
    }

    #[test]
    fn auth_mode_names() {
        let c = Config::from_toml("[ivr]\nauth_mode = \"non-secure\"\n").unwrap();
        assert_eq!(c.ivr.auth_mode, Some(AuthMode::NonSecure));
    }
}
