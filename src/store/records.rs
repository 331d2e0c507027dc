//! The records of the admin domain (issue 3): lines, SIP endpoints, universal device and line
//! templates, user profiles, the self-provisioning settings, API tokens, and the list/page types
//! the REST API uses. Every record derives serde so the API can return it as JSON; secrets are
//! `skip_serializing` and hidden from `Debug`.
//!
//! Each resource `R` has a `NewR` (what a client sends: create and full-replace update) and `R`
//! = `id` + the `NewR` fields flattened + read-only fields (associations, times), so the JSON of
//! a record is one flat object, as in Wazo's API.

use super::model::DeviceState;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::SystemTime;

/// Serde for times: RFC 3339 UTC with milliseconds (`2026-11-02T09:30:00.123Z`).
pub mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::super::model::format_time(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<SystemTime>` (`null` for `None`).
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use std::time::SystemTime;

        pub fn serialize<S: Serializer>(t: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => super::serialize(t, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<SystemTime>, D::Error> {
            let s: Option<String> = Option::deserialize(d)?;
            s.map(|s| humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

/// Sort direction of a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortDirection {
    #[default]
    Asc,
    Desc,
}

/// How to page, sort and filter a list (Wazo's `limit`, `offset`, `order`, `direction`,
/// `search` query parameters).
///
/// `order` names a field of the resource; each `list_*` method accepts only the fields listed
/// in its doc (anything else is [`super::StoreError::Invalid`] with field `order`: a column name is
/// never taken from the request). `search` matches case-insensitively (ASCII) as a substring of
/// the resource's main text fields. `limit: None` returns every row from `offset` on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub limit: Option<u32>,
    pub offset: u32,
    pub order: Option<String>,
    pub direction: SortDirection,
    pub search: Option<String>,
}

/// One page of a list: `total` counts every row matching the search (not just this page).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub total: u64,
    pub items: Vec<T>,
}

// ---------------------------------------------------------------------------------------------
// Small enums stored as text
// ---------------------------------------------------------------------------------------------

macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// The name stored and used in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(
                        concat!("unknown ", stringify!($name), " {:?} (expected one of: {})"),
                        other,
                        [$($text),+].join(", ")
                    )),
                }
            }
        }
    };
}

text_enum! {
    /// SIP signalling transport.
    Transport { #[default] Udp = "udp", Tcp = "tcp", Tls = "tls" }
}

text_enum! {
    /// The protocol a phone speaks to the call server.
    Protocol { #[default] Sip = "sip", Sccp = "sccp" }
}

text_enum! {
    /// Cisco's third-party SIP device types: how many lines a device may have.
    DeviceType {
        /// One line.
        Basic = "basic",
        /// Up to eight lines.
        #[default]
        Advanced = "advanced",
    }
}

impl DeviceType {
    /// The most lines a device of this type may have.
    pub fn max_lines(self) -> u32 {
        match self {
            DeviceType::Basic => 1,
            DeviceType::Advanced => 8,
        }
    }
}

impl Protocol {
    /// As the `#Protocol#` tag writes it (`SIP`, `SCCP`).
    pub fn tag_value(self) -> &'static str {
        match self {
            Protocol::Sip => "SIP",
            Protocol::Sccp => "SCCP",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lines
// ---------------------------------------------------------------------------------------------

/// One call-forward setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallForward {
    /// Digits the call goes to; required when `enabled`.
    pub destination: Option<String>,
    pub enabled: bool,
}

/// Call forward all / busy / no answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallForwards {
    pub all: CallForward,
    pub busy: CallForward,
    pub no_answer: CallForward,
}

/// A line (directory number) to create, or the full new content of one (update replaces every
/// field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewLine {
    /// Directory number, digits; unique within `context`.
    pub number: String,
    /// Context (CUCM: partition).
    pub context: String,
    pub caller_id_name: String,
    /// Text shown next to the line key.
    pub label: String,
    /// Voicemail box; `None`: no voicemail.
    pub voicemail: Option<String>,
    pub call_forward: CallForwards,
    /// Default 4.
    pub max_calls: u32,
    /// Calls after which a new one gets busy; 1 to `max_calls`, default 2.
    pub busy_trigger: u32,
}

impl Default for NewLine {
    fn default() -> Self {
        NewLine {
            number: String::new(),
            context: "default".into(),
            caller_id_name: String::new(),
            label: String::new(),
            voicemail: None,
            call_forward: CallForwards::default(),
            max_calls: 4,
            busy_trigger: 2,
        }
    }
}

/// A stored line with its associations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub id: i64,
    #[serde(flatten)]
    pub spec: NewLine,
    /// Store IDs of the users the line belongs to, ascending.
    pub user_ids: Vec<i64>,
    /// The line's SIP endpoint.
    pub sip_endpoint_id: Option<i64>,
    /// Store IDs of the devices the line appears on, ascending.
    pub device_ids: Vec<i64>,
    #[serde(with = "rfc3339")]
    pub created_at: SystemTime,
}

// ---------------------------------------------------------------------------------------------
// SIP endpoints
// ---------------------------------------------------------------------------------------------

/// A SIP endpoint to create, or the new content of one. `None` credentials are generated on
/// create and kept as they are on update.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewSipEndpoint {
    /// Digest user name; unique. `None`: generated (10 random lower-case letters and digits).
    pub auth_username: Option<String>,
    /// Digest password. `None`: generated (24 random letters and digits).
    #[serde(skip_serializing)]
    pub password: Option<String>,
    pub transport: Transport,
    pub digest_required: bool,
}

impl Default for NewSipEndpoint {
    fn default() -> Self {
        NewSipEndpoint {
            auth_username: None,
            password: None,
            transport: Transport::Udp,
            digest_required: true,
        }
    }
}

impl fmt::Debug for NewSipEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewSipEndpoint")
            .field("auth_username", &self.auth_username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("transport", &self.transport)
            .field("digest_required", &self.digest_required)
            .finish()
    }
}

/// A stored SIP endpoint. The password is never serialised nor shown by `Debug`: read it from
/// the field (the provisioning server writes it into the phone's configuration).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SipEndpoint {
    pub id: i64,
    pub auth_username: String,
    #[serde(skip_serializing, default)]
    pub password: String,
    pub transport: Transport,
    pub digest_required: bool,
    /// The line using this endpoint.
    pub line_id: Option<i64>,
    #[serde(with = "rfc3339")]
    pub created_at: SystemTime,
}

impl fmt::Debug for SipEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipEndpoint")
            .field("id", &self.id)
            .field("auth_username", &self.auth_username)
            .field("password", &"***")
            .field("transport", &self.transport)
            .field("digest_required", &self.digest_required)
            .field("line_id", &self.line_id)
            .finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------------------------
// Devices (the API's view; the store's Device is in model.rs)
// ---------------------------------------------------------------------------------------------

/// A device an admin registers by hand (or the new content of one: every field is replaced;
/// owner and lines change only through binding and line associations).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewDevice {
    /// 12 hex digits; separators (`:`/`-`/`.`) and lower case are accepted and normalised.
    pub mac: Option<String>,
    /// A vendor device name (Cisco `SEP…`). A device needs a MAC or a device name.
    pub device_name: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub protocol: Protocol,
    pub device_type: DeviceType,
    pub description: String,
    /// The universal device template applied to the device.
    pub template_id: Option<i64>,
    /// Default `autoprov`.
    pub state: Option<DeviceState>,
}

// ---------------------------------------------------------------------------------------------
// Templates and profiles
// ---------------------------------------------------------------------------------------------

/// A speed dial key of a device template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeedDial {
    /// 1-based key position.
    pub position: u32,
    /// Digits (or `*`/`#`) dialled.
    pub number: String,
    pub label: String,
}

/// The security profile of a device template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityProfile {
    pub transport: Transport,
    /// Digest authentication of the phone's requests.
    pub digest_required: bool,
    /// Encrypted signalling and media (TLS + SRTP); requires `transport: tls`.
    pub tls: bool,
}

impl Default for SecurityProfile {
    fn default() -> Self {
        SecurityProfile {
            transport: Transport::Udp,
            digest_required: true,
            tls: false,
        }
    }
}

/// A universal device template to create, or the full new content of one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewDeviceTemplate {
    /// Unique.
    pub name: String,
    /// Pattern (see [`crate::provisioning::templates`]); validated when saved.
    pub description_pattern: String,
    /// Device pool / site.
    pub device_pool: String,
    pub security: SecurityProfile,
    /// Line keys the phone gets, 1 to 8.
    pub line_keys: u32,
    pub speed_dials: Vec<SpeedDial>,
    /// BCP 47 tag, e.g. `en-US`.
    pub locale: String,
    /// IANA time zone, e.g. `Europe/Paris`.
    pub timezone: String,
    pub ntp_server: Option<String>,
    /// Where the phone's lines register; `None`: the phone uses the server it was given.
    pub registrar_address: Option<String>,
    pub registrar_port: u16,
    pub proxy_address: Option<String>,
    pub proxy_port: u16,
    /// The resync NOTIFY event for this template's phones instead of the vendor's default
    /// (see [`crate::provisioning::resync`]); `None`: the vendor's default.
    #[serde(default)]
    pub resync_event: Option<String>,
}

impl Default for NewDeviceTemplate {
    fn default() -> Self {
        NewDeviceTemplate {
            name: String::new(),
            description_pattern: "#FirstName# #LastName# (#Product# #Protocol#)".into(),
            device_pool: "default".into(),
            security: SecurityProfile::default(),
            line_keys: 1,
            speed_dials: Vec::new(),
            locale: "en-US".into(),
            timezone: "UTC".into(),
            ntp_server: None,
            registrar_address: None,
            registrar_port: 5060,
            proxy_address: None,
            proxy_port: 5060,
            resync_event: None,
        }
    }
}

/// A stored universal device template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTemplate {
    pub id: i64,
    #[serde(flatten)]
    pub spec: NewDeviceTemplate,
}

/// A universal line template to create, or the full new content of one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewLineTemplate {
    /// Unique.
    pub name: String,
    pub caller_id_name_pattern: String,
    pub label_pattern: String,
    pub context: String,
    /// The line gets a voicemail box numbered as the line.
    pub voicemail_enabled: bool,
    pub call_forward: CallForwards,
    pub max_calls: u32,
    pub busy_trigger: u32,
}

impl Default for NewLineTemplate {
    fn default() -> Self {
        NewLineTemplate {
            name: String::new(),
            caller_id_name_pattern: "#FirstName# #LastName#".into(),
            label_pattern: "#Extension# - #FirstName#".into(),
            context: "default".into(),
            voicemail_enabled: false,
            call_forward: CallForwards::default(),
            max_calls: 4,
            busy_trigger: 2,
        }
    }
}

/// A stored universal line template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineTemplate {
    pub id: i64,
    #[serde(flatten)]
    pub spec: NewLineTemplate,
}

/// A user profile to create, or the full new content of one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NewUserProfile {
    /// Unique.
    pub name: String,
    pub description: String,
    pub device_template_id: i64,
    pub line_template_id: i64,
    /// May users of this profile self-provision phones (Cisco's default: no).
    pub allow_provision: bool,
    /// The most devices a user may own, 0 to 1000 (default 10).
    pub max_devices: u32,
}

impl Default for NewUserProfile {
    fn default() -> Self {
        NewUserProfile {
            name: String::new(),
            description: String::new(),
            device_template_id: 0,
            line_template_id: 0,
            allow_provision: false,
            max_devices: 10,
        }
    }
}

/// A stored user profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserProfile {
    pub id: i64,
    #[serde(flatten)]
    pub spec: NewUserProfile,
}

// ---------------------------------------------------------------------------------------------
// Settings, tokens, audit queries, binding
// ---------------------------------------------------------------------------------------------

/// The self-provisioning settings (one per store), editable at run time.
/// [`super::Store::update_settings`] replaces all of them: read, change, write back.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SelfProvSettings {
    /// `non-secure`, `secure-users` or `secure-users-and-admins` (the config's `ivr.auth_mode`
    /// names).
    pub auth_mode: String,
    /// argon2 PHC string of the administrator's code (0 to 20 digits before hashing); `None`:
    /// no code. Never serialised: an API reports [`SelfProvSettings::has_admin_code`] instead.
    #[serde(skip_serializing)]
    pub admin_code_hash: Option<String>,
    /// Extensions answered by the IVR, digits.
    pub ivr_extensions: Vec<String>,
    /// IVR languages (language tags), highest priority first; 1 to 9.
    pub languages: Vec<String>,
    /// Profile of users who have none.
    pub default_profile_id: Option<i64>,
    /// Autoregistration directory-number range (digits, start <= end, same length).
    pub autoreg_start_dn: Option<String>,
    pub autoreg_end_dn: Option<String>,
    pub autoreg_device_template_id: Option<i64>,
    pub autoreg_line_template_id: Option<i64>,
    /// May a caller authenticated with the admin code take over a phone bound to another user
    /// (audited as `takeover`).
    pub allow_admin_takeover: bool,
}

impl Default for SelfProvSettings {
    fn default() -> Self {
        SelfProvSettings {
            auth_mode: "secure-users".into(),
            admin_code_hash: None,
            ivr_extensions: vec!["8000".into()],
            languages: vec!["en-US".into()],
            default_profile_id: None,
            autoreg_start_dn: None,
            autoreg_end_dn: None,
            autoreg_device_template_id: None,
            autoreg_line_template_id: None,
            allow_admin_takeover: false,
        }
    }
}

impl SelfProvSettings {
    /// Whether an admin code is set.
    pub fn has_admin_code(&self) -> bool {
        self.admin_code_hash.is_some()
    }

    /// The auth mode as the config's enum.
    pub fn auth_mode(&self) -> Option<crate::config::AuthMode> {
        use crate::config::AuthMode;
        match self.auth_mode.as_str() {
            "non-secure" => Some(AuthMode::NonSecure),
            "secure-users" => Some(AuthMode::SecureUsers),
            "secure-users-and-admins" => Some(AuthMode::SecureUsersAndAdmins),
            _ => None,
        }
    }
}

impl fmt::Debug for SelfProvSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfProvSettings")
            .field("auth_mode", &self.auth_mode)
            .field("has_admin_code", &self.has_admin_code())
            .field("ivr_extensions", &self.ivr_extensions)
            .field("languages", &self.languages)
            .field("default_profile_id", &self.default_profile_id)
            .field("autoreg_start_dn", &self.autoreg_start_dn)
            .field("autoreg_end_dn", &self.autoreg_end_dn)
            .field(
                "autoreg_device_template_id",
                &self.autoreg_device_template_id,
            )
            .field("autoreg_line_template_id", &self.autoreg_line_template_id)
            .field("allow_admin_takeover", &self.allow_admin_takeover)
            .finish()
    }
}

/// An API token as listed (never the token itself, nor its hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    #[serde(with = "rfc3339")]
    pub created_at: SystemTime,
    #[serde(with = "rfc3339::option")]
    pub last_used: Option<SystemTime>,
}

/// Filters of [`super::Store::list_audit`]; every filter is optional, results newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    /// The device key (MAC, device name or SIP identity) exactly as recorded.
    pub device: Option<String>,
    /// The user ID exactly as recorded.
    pub user: Option<String>,
    /// An outcome name (`bound`, `bad-pin`, ...).
    pub outcome: Option<String>,
    /// Events at or after this time.
    #[serde(with = "rfc3339::option")]
    pub since: Option<SystemTime>,
    /// Events at or before this time.
    #[serde(with = "rfc3339::option")]
    pub until: Option<SystemTime>,
    pub limit: Option<u32>,
    pub offset: u32,
}

/// Options of [`super::Store::bind_device_with`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BindOptions {
    /// A caller authenticated with the admin code may take over a phone bound to another user
    /// (the settings' `allow_admin_takeover`); ignored for other auth methods.
    pub allow_takeover: bool,
}

/// What [`super::Store::bind_device_with`] produced: the device, its line 1 and that line's
/// SIP endpoint (with the credentials the phone must be configured with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub device: super::Device,
    pub line: Line,
    pub sip_endpoint: SipEndpoint,
    /// The device template applied.
    pub device_template: DeviceTemplate,
    /// True when the phone was taken over from another user.
    pub taken_over_from: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_serialised_nor_debugged() {
        let e = SipEndpoint {
            id: 1,
            auth_username: "abc".into(),
            password: "Sup3rS3cretPassw0rdXXXXX".into(),
            transport: Transport::Udp,
            digest_required: true,
            line_id: None,
            created_at: SystemTime::UNIX_EPOCH,
        };
        let json = serde_json::to_string(&e).unwrap();
        assert!(!json.contains("Sup3r"), "{json}");
        assert!(!format!("{e:?}").contains("Sup3r"));
        let n = NewSipEndpoint {
            password: Some("Sup3rS3cret".into()),
            ..Default::default()
        };
        assert!(!serde_json::to_string(&n).unwrap().contains("Sup3r"));
        assert!(!format!("{n:?}").contains("Sup3r"));
        let s = SelfProvSettings {
            admin_code_hash: Some("$argon2id$v=19$xyz".into()),
            ..Default::default()
        };
        assert!(!serde_json::to_string(&s).unwrap().contains("argon2"));
        assert!(!format!("{s:?}").contains("argon2"));
    }

    #[test]
    fn records_are_flat_json_with_rfc3339_times() {
        let l = Line {
            id: 7,
            spec: NewLine {
                number: "1001".into(),
                ..Default::default()
            },
            user_ids: vec![1],
            sip_endpoint_id: Some(3),
            device_ids: vec![],
            created_at: SystemTime::UNIX_EPOCH,
        };
        let v = serde_json::to_value(&l).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["number"], "1001");
        assert_eq!(v["max_calls"], 4);
        assert_eq!(v["busy_trigger"], 2);
        assert_eq!(v["call_forward"]["busy"]["enabled"], false);
        assert_eq!(v["created_at"], "1970-01-01T00:00:00.000Z");
        let back: Line = serde_json::from_value(v).unwrap();
        assert_eq!(back, l);
        let q: ListQuery =
            serde_json::from_str(r#"{"limit":5,"direction":"desc","order":"number"}"#).unwrap();
        assert_eq!(q.direction, SortDirection::Desc);
        assert_eq!(q.offset, 0);
        let a: AuditQuery = serde_json::from_str(r#"{"since":"2026-01-02T03:04:05Z"}"#).unwrap();
        assert!(a.since.is_some());
        assert!(serde_json::from_str::<NewDevice>(r#"{"device_type":"huge"}"#).is_err());
        assert_eq!("tls".parse::<Transport>(), Ok(Transport::Tls));
        assert!("TLS".parse::<Transport>().is_err());
        assert_eq!(DeviceType::Basic.max_lines(), 1);
        assert_eq!(DeviceType::Advanced.max_lines(), 8);
    }
}
