//! The records the store holds and hands out: users, devices with their lines, audit events,
//! and the small enums stored as text (device state, auth method, audit outcome). The admin
//! domain's other records (lines, endpoints, templates, profiles...) are in `records.rs`.
//! Everything derives serde for the REST API; secrets are `skip_serializing`.

use super::records::{rfc3339, DeviceType, Protocol};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A user to add. `pin_hash` is an argon2 PHC string (see
/// [`crate::provisioning::secret::hash_secret`]), never the PIN itself.
#[derive(Clone, Default)]
pub struct NewUser {
    pub user_id: String,
    /// Digits a caller may type instead of the user ID; unique.
    pub selfprov_id: Option<String>,
    pub first_name: String,
    pub last_name: String,
    /// The primary extension (digits): line 1 of a phone bound to the user; unique.
    pub extension: String,
    pub pin_hash: Option<String>,
    pub selfprov_enabled: bool,
}

impl fmt::Debug for NewUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewUser")
            .field("user_id", &self.user_id)
            .field("selfprov_id", &self.selfprov_id)
            .field("extension", &self.extension)
            .field("has_pin", &self.pin_hash.is_some())
            .field("selfprov_enabled", &self.selfprov_enabled)
            .finish_non_exhaustive()
    }
}

/// A user to create through the admin API, or the full new content of one: [`NewUser`] (kept
/// as it was for the CLI) plus the user profile and the web-login password hash.
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UserInput {
    pub user_id: String,
    pub selfprov_id: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub extension: String,
    /// argon2 PHC string of the PIN. On update, `None` keeps the stored PIN (a client never
    /// sees the hash, so it could not send it back); every other field is replaced.
    #[serde(skip_serializing)]
    pub pin_hash: Option<String>,
    /// argon2 PHC string of the web-login password; on update `None` keeps the stored one.
    #[serde(skip_serializing)]
    pub password_hash: Option<String>,
    pub selfprov_enabled: bool,
    /// `None`: the settings' default profile applies.
    pub profile_id: Option<i64>,
}

impl fmt::Debug for UserInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserInput")
            .field("user_id", &self.user_id)
            .field("selfprov_id", &self.selfprov_id)
            .field("extension", &self.extension)
            .field("has_pin", &self.pin_hash.is_some())
            .field("has_password", &self.password_hash.is_some())
            .field("selfprov_enabled", &self.selfprov_enabled)
            .field("profile_id", &self.profile_id)
            .finish_non_exhaustive()
    }
}

impl From<NewUser> for UserInput {
    fn from(n: NewUser) -> Self {
        UserInput {
            user_id: n.user_id,
            selfprov_id: n.selfprov_id,
            first_name: n.first_name,
            last_name: n.last_name,
            extension: n.extension,
            pin_hash: n.pin_hash,
            password_hash: None,
            selfprov_enabled: n.selfprov_enabled,
            profile_id: None,
        }
    }
}

/// A stored user. `Debug` and serde never show the PIN or password hash.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub user_id: String,
    pub selfprov_id: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub extension: String,
    /// argon2 PHC string; `None`: the user has no PIN (secure modes refuse them a PIN login).
    #[serde(skip_serializing, default)]
    pub pin_hash: Option<String>,
    /// False: the user may not self-provision (the IVR refuses, and so does `bind_device`).
    pub selfprov_enabled: bool,
    #[serde(with = "rfc3339")]
    pub created_at: SystemTime,
    /// `None`: the settings' default profile applies.
    pub profile_id: Option<i64>,
    /// argon2 PHC string of the web-login password.
    #[serde(skip_serializing, default)]
    pub password_hash: Option<String>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("user_id", &self.user_id)
            .field("selfprov_id", &self.selfprov_id)
            .field("first_name", &self.first_name)
            .field("last_name", &self.last_name)
            .field("extension", &self.extension)
            .field("has_pin", &self.pin_hash.is_some())
            .field("selfprov_enabled", &self.selfprov_enabled)
            .field("created_at", &format_time(self.created_at))
            .field("profile_id", &self.profile_id)
            .field("has_password", &self.password_hash.is_some())
            .finish()
    }
}

/// Where a device is in its life: unknown phone in autoprov mode, bound and waiting for its new
/// configuration, provisioned, or failed to provision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceState {
    Autoprov,
    Provisioning,
    Provisioned,
    Error,
}

impl DeviceState {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Autoprov => "autoprov",
            DeviceState::Provisioning => "provisioning",
            DeviceState::Provisioned => "provisioned",
            DeviceState::Error => "error",
        }
    }
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "autoprov" => Ok(DeviceState::Autoprov),
            "provisioning" => Ok(DeviceState::Provisioning),
            "provisioned" => Ok(DeviceState::Provisioned),
            "error" => Ok(DeviceState::Error),
            other => Err(format!("unknown device state {other:?}")),
        }
    }
}

/// One line key of a phone: position 1 is the primary line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceLine {
    pub position: u32,
    /// The line's directory number.
    pub number: String,
    /// The line (`None` only for bindings made before lines existed, schema version 1).
    pub line_id: Option<i64>,
    /// The line's label.
    pub label: String,
}

/// A stored device with its owner's user ID and its lines (by position).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub id: i64,
    pub mac: Option<String>,
    pub device_name: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub user_agent: Option<String>,
    pub sip_identity: String,
    /// The owner's `user_id`.
    pub owner: Option<String>,
    /// The owner's store ID.
    pub owner_id: Option<i64>,
    pub state: DeviceState,
    pub protocol: Protocol,
    pub device_type: DeviceType,
    /// Expanded from the device template's description pattern when bound.
    pub description: String,
    /// The universal device template applied.
    pub template_id: Option<i64>,
    pub lines: Vec<DeviceLine>,
    #[serde(with = "rfc3339")]
    pub created_at: SystemTime,
    #[serde(with = "rfc3339")]
    pub last_seen: SystemTime,
    /// The number of the device's guest (autoprov) SIP account, from the autoregistration
    /// range; `None` once the device is provisioned (the number is released).
    #[serde(default)]
    pub autoreg_number: Option<String>,
    /// When selfprov last told the phone to resync (NOTIFY sent), and how that ended.
    #[serde(with = "rfc3339::option", default)]
    pub resync_at: Option<SystemTime>,
    #[serde(default)]
    pub resync_outcome: Option<String>,
    /// The last authorised config file fetch of the phone.
    #[serde(with = "rfc3339::option", default)]
    pub config_fetched_at: Option<SystemTime>,
    /// The address the phone last made an authenticated request from (REGISTER, keyed config
    /// fetch): the provisioning server serves its bare file paths to this address.
    #[serde(default)]
    pub last_ip: Option<String>,
}

/// How the caller proved the right to bind: nothing (non-secure mode), the user's PIN, or the
/// administrator's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMethod {
    None,
    Pin,
    AdminCode,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::None => "none",
            AuthMethod::Pin => "pin",
            AuthMethod::AdminCode => "admin-code",
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AuthMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" => Ok(AuthMethod::None),
            "pin" => Ok(AuthMethod::Pin),
            "admin-code" => Ok(AuthMethod::AdminCode),
            other => Err(format!("unknown auth method {other:?}")),
        }
    }
}

/// What happened in an audited attempt. Stored as its kebab-case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuditOutcome {
    /// The phone was bound (or bound again to the same user).
    Bound,
    /// The phone, bound to another user, was taken over with the admin code.
    Takeover,
    /// Refused: the user already has as many devices as the profile allows.
    DeviceLimit,
    /// Refused: the user's profile does not allow self-provisioning.
    NotAllowed,
    /// The phone's binding was removed (user removed or device unbound).
    Unbound,
    /// Refused: the phone belongs to another user.
    AlreadyBound,
    /// No user matches the digits entered.
    UnknownUser,
    /// The user may not self-provision.
    UserDisabled,
    /// Wrong PIN.
    BadPin,
    /// Wrong administrator code.
    BadAdminCode,
    /// Secure mode, but the user has no PIN.
    NoPin,
    /// The caller ran out of attempts.
    TooManyAttempts,
    /// The caller hung up or timed out before finishing.
    Abandoned,
    /// An internal failure (store, hashing).
    Error,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Bound => "bound",
            AuditOutcome::Takeover => "takeover",
            AuditOutcome::DeviceLimit => "device-limit",
            AuditOutcome::NotAllowed => "not-allowed",
            AuditOutcome::Unbound => "unbound",
            AuditOutcome::AlreadyBound => "already-bound",
            AuditOutcome::UnknownUser => "unknown-user",
            AuditOutcome::UserDisabled => "user-disabled",
            AuditOutcome::BadPin => "bad-pin",
            AuditOutcome::BadAdminCode => "bad-admin-code",
            AuditOutcome::NoPin => "no-pin",
            AuditOutcome::TooManyAttempts => "too-many-attempts",
            AuditOutcome::Abandoned => "abandoned",
            AuditOutcome::Error => "error",
        }
    }
}

impl fmt::Display for AuditOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One audit-trail entry, as read back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: i64,
    #[serde(with = "rfc3339")]
    pub time: SystemTime,
    pub device_id: Option<i64>,
    /// The key the phone identified itself by (MAC, device name or SIP identity).
    pub device: String,
    pub user_id: Option<String>,
    pub auth_method: Option<AuthMethod>,
    /// An [`AuditOutcome`] name.
    pub outcome: String,
    pub detail: String,
}

/// RFC 3339 UTC with milliseconds, as the CLI prints times (`2026-11-02T09:30:00.123Z`).
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Times are stored as UTC milliseconds since the Unix epoch.
pub(crate) fn to_millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis())
            .map(|m| -m)
            .unwrap_or(i64::MIN),
    }
}

pub(crate) fn from_millis(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        UNIX_EPOCH.checked_add(d).unwrap_or(UNIX_EPOCH)
    } else {
        UNIX_EPOCH.checked_sub(d).unwrap_or(UNIX_EPOCH)
    }
}

/// Now, truncated to what the store keeps (milliseconds), so a value written and read back
/// compares equal.
pub(crate) fn now_millis() -> i64 {
    to_millis(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip() {
        for s in [
            DeviceState::Autoprov,
            DeviceState::Provisioning,
            DeviceState::Provisioned,
            DeviceState::Error,
        ] {
            assert_eq!(s.as_str().parse::<DeviceState>(), Ok(s));
        }
        for a in [AuthMethod::None, AuthMethod::Pin, AuthMethod::AdminCode] {
            assert_eq!(a.as_str().parse::<AuthMethod>(), Ok(a));
        }
        assert!("bound".parse::<DeviceState>().is_err());
    }

    #[test]
    fn times_round_trip_and_format() {
        let t = from_millis(1_700_000_000_123);
        assert_eq!(to_millis(t), 1_700_000_000_123);
        assert_eq!(format_time(t), "2023-11-14T22:13:20.123Z");
        assert_eq!(to_millis(from_millis(-5)), -5);
    }

    #[test]
    fn debug_hides_pin_hash() {
        let u = User {
            id: 1,
            user_id: "jdoe".into(),
            selfprov_id: None,
            first_name: String::new(),
            last_name: String::new(),
            extension: "1001".into(),
            pin_hash: Some("$argon2id$v=19$secret".into()),
            selfprov_enabled: true,
            created_at: UNIX_EPOCH,
            profile_id: None,
            password_hash: Some("$argon2id$v=19$pw".into()),
        };
        let d = format!("{u:?}");
        assert!(!d.contains("argon2"), "{d}");
        assert!(d.contains("has_pin: true"), "{d}");
        let j = serde_json::to_string(&u).unwrap();
        assert!(!j.contains("argon2"), "{j}");
        assert!(
            j.contains("\"created_at\":\"1970-01-01T00:00:00.000Z\""),
            "{j}"
        );
    }
}
