//! Store errors: each says what went wrong and what to do about it, and none carries a secret.

/// An error from the store. [`StoreError::is_conflict`] tells the "409" cases (the request
/// clashes with what is stored) from failures of the store itself.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "store URL {0:?} is not supported: use sqlite://PATH or postgres://USER@HOST/DATABASE"
    )]
    UnsupportedUrl(String),
    #[error("cannot open the store {url}: {reason}")]
    Open { url: String, reason: String },
    #[error("migrating the store schema failed: {0}")]
    Migration(String),
    #[error(
        "the store's schema is at version {found}, newer than this selfprov knows (up to {supported}): \
         upgrade selfprov or point store.url at another database"
    )]
    SchemaTooNew { found: i64, supported: i64 },
    #[error("user {0} already exists: use a different user ID or remove the existing user first")]
    UserExists(String),
    #[error(
        "self-provisioning ID {selfprov_id} is already used by user {user}: choose another one"
    )]
    SelfProvIdTaken { selfprov_id: String, user: String },
    #[error("extension {extension} is already the primary extension of user {user}: choose another one or remove that user first")]
    ExtensionTaken { extension: String, user: String },
    #[error("{value} is already the {field} of user {user}: a caller typing it would be ambiguous; choose another value")]
    AmbiguousId {
        value: String,
        field: &'static str,
        user: String,
    },
    #[error("no user {0}: check the user ID (`selfprov user list` shows them)")]
    UnknownUser(String),
    #[error("user {0} is not allowed to self-provision a phone: add the user without --disabled")]
    UserDisabled(String),
    #[error("phone {device} is already bound to user {owner}: unbind it (or remove that user) before binding it to another user")]
    AlreadyBound { device: String, owner: String },
    #[error("the phone did not identify itself (no MAC, device name or SIP identity), so it cannot be bound")]
    NoIdentity,
    #[error("invalid {field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("no {what} with ID {id}")]
    NotFound { what: &'static str, id: i64 },
    #[error("a {what} with {field} {value:?} already exists: choose another {field}")]
    Duplicate {
        what: &'static str,
        field: &'static str,
        value: String,
    },
    #[error("{what} {id} is in use by {by}: remove that first")]
    InUse {
        what: &'static str,
        id: i64,
        by: String,
    },
    #[error("user {user} already has {max} device(s), the most their user profile allows: remove one of their phones first or raise the profile's max_devices")]
    DeviceLimit { user: String, max: u32 },
    #[error("user {user}'s profile {profile} does not allow self-provisioning: change the user's profile or set allow_provision")]
    ProvisionNotAllowed { user: String, profile: String },
    #[error("user {0} has no user profile and the self-provisioning settings have no default profile: set one")]
    NoProfile(String),
    #[error("device {device_id} is a {device_type} device and takes at most {max} line(s)")]
    LineLimit {
        device_id: i64,
        device_type: &'static str,
        max: u32,
    },
    #[error("device {device_id} already has a line at position {position}")]
    PositionTaken { device_id: i64, position: u32 },
    #[error("line {line_id} has no {missing}: associate one before putting the line on a device")]
    LineNotReady { line_id: i64, missing: &'static str },
    #[error(
        "autoregistration is disabled, so a new phone gets no number and no guest config: set \
         autoreg_start_dn and autoreg_end_dn (`selfprov settings update --data \
         '{{\"autoreg_start_dn\":\"7000\",\"autoreg_end_dn\":\"7099\"}}'` or PUT \
         /api/v1/selfprov/settings)"
    )]
    AutoregDisabled,
    #[error(
        "every number of the autoregistration range {start}-{end} is in use (by guest phones or \
         lines): widen the range (autoreg_start_dn/autoreg_end_dn in the self-provisioning \
         settings) or delete devices left in autoprov"
    )]
    AutoregRangeFull { start: String, end: String },
    #[error(
        "device {device_id} is in state {state}, not autoprov: put it back into autoprov first \
         (GET /api/v1/devices/{device_id}/autoprov)"
    )]
    NotAutoprov { device_id: i64, state: String },
    #[error("the store is busy (another process holds its write lock, or no connection was free): try again in a moment")]
    Busy,
    #[error("a concurrent change conflicted with this one ({0}): try again")]
    Conflict(String),
    #[error("the store holds data this selfprov cannot read: {0}")]
    Corrupt(String),
    #[error("store query failed: {0}")]
    Database(#[source] sqlx::Error),
}

impl StoreError {
    /// True for errors where the request clashes with stored data (HTTP would say 409): the
    /// caller must change the request, retrying it unchanged will not help.
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            StoreError::UserExists(_)
                | StoreError::SelfProvIdTaken { .. }
                | StoreError::ExtensionTaken { .. }
                | StoreError::AmbiguousId { .. }
                | StoreError::AlreadyBound { .. }
                | StoreError::Duplicate { .. }
                | StoreError::InUse { .. }
                | StoreError::DeviceLimit { .. }
                | StoreError::LineLimit { .. }
                | StoreError::PositionTaken { .. }
                | StoreError::AutoregRangeFull { .. }
                | StoreError::NotAutoprov { .. }
        )
    }

    /// True when the request names something that does not exist (HTTP 404).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            StoreError::NotFound { .. } | StoreError::UnknownUser(_)
        )
    }

    /// True when the request itself is wrong (HTTP 400/422): a field's value, or an association
    /// whose preconditions are not met.
    pub fn is_invalid(&self) -> bool {
        matches!(
            self,
            StoreError::Invalid { .. } | StoreError::LineNotReady { .. } | StoreError::NoIdentity
        )
    }

    /// The HTTP status an API should answer with: 404, 409, 422, 403 (self-provisioning not
    /// allowed or disabled), 503 (busy, retry) or 500.
    pub fn http_status(&self) -> u16 {
        if self.is_not_found() {
            404
        } else if self.is_conflict() {
            409
        } else if self.is_invalid() {
            422
        } else {
            match self {
                StoreError::UserDisabled(_)
                | StoreError::ProvisionNotAllowed { .. }
                | StoreError::NoProfile(_)
                | StoreError::AutoregDisabled => 403,
                StoreError::Busy | StoreError::Conflict(_) => 503,
                _ => 500,
            }
        }
    }

    /// The field an [`StoreError::Invalid`] or [`StoreError::Duplicate`] error is about.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            StoreError::Invalid { field, .. } | StoreError::Duplicate { field, .. } => Some(field),
            StoreError::UserExists(_) => Some("user_id"),
            StoreError::ExtensionTaken { .. } => Some("extension"),
            StoreError::SelfProvIdTaken { .. } => Some("selfprov_id"),
            _ => None,
        }
    }

    /// True when retrying the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Busy | StoreError::Conflict(_))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut => StoreError::Busy,
            sqlx::Error::Database(db) => {
                // SQLite: SQLITE_BUSY (5) / SQLITE_LOCKED (6), possibly as extended codes whose
                // low byte is the primary code. PostgreSQL: deadlock, lock timeout, serialization.
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                let sqlite_busy = code.parse::<i64>().is_ok_and(|n| matches!(n & 0xff, 5 | 6));
                if sqlite_busy || matches!(code.as_str(), "40P01" | "55P03" | "40001") {
                    StoreError::Busy
                } else if db.is_unique_violation() {
                    StoreError::Conflict(db.message().to_string())
                } else {
                    StoreError::Database(e)
                }
            }
            _ => StoreError::Database(e),
        }
    }
}

/// The URL with any password replaced by `***`, for error messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest_start = scheme_end + 3;
    let Some(rest) = url.get(rest_start..) else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(authority) = rest.get(..authority_end) else {
        return url.to_string();
    };
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let Some(userinfo) = authority.get(..at) else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!(
            "{}{}:***{}",
            url.get(..rest_start).unwrap_or_default(),
            user,
            rest.get(at..).unwrap_or_default()
        ),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_url("postgres://sp:s3cr3t@db.example/selfprov"),
            "postgres://sp:***@db.example/selfprov"
        );
        assert_eq!(
            redact_url("postgres://sp@db/selfprov"),
            "postgres://sp@db/selfprov"
        );
        assert_eq!(
            redact_url("sqlite://data/selfprov.db"),
            "sqlite://data/selfprov.db"
        );
        assert_eq!(redact_url("sqlite://data/a@b.db"), "sqlite://data/a@b.db");
        assert_eq!(redact_url("postgres://a:b:c@h"), "postgres://a:***@h");
        assert_eq!(redact_url("weird"), "weird");
    }

    #[test]
    fn conflict_classification() {
        assert!(StoreError::UserExists("x".into()).is_conflict());
        assert!(!StoreError::Busy.is_conflict());
        assert!(StoreError::Busy.is_transient());
        let nf = StoreError::NotFound {
            what: "line",
            id: 4,
        };
        assert_eq!(
            (nf.http_status(), nf.to_string().as_str()),
            (404, "no line with ID 4")
        );
        let dup = StoreError::Duplicate {
            what: "device",
            field: "mac",
            value: "0011".into(),
        };
        assert_eq!((dup.http_status(), dup.field()), (409, Some("mac")));
        let inv = StoreError::Invalid {
            field: "order",
            message: "x".into(),
        };
        assert_eq!(inv.http_status(), 422);
        assert_eq!(
            StoreError::DeviceLimit {
                user: "j".into(),
                max: 1
            }
            .http_status(),
            409
        );
        let off = StoreError::AutoregDisabled;
        assert_eq!(off.http_status(), 403);
        assert!(off.to_string().contains("autoreg_start_dn"), "{off}");
        assert!(
            off.to_string().contains("/api/v1/selfprov/settings"),
            "{off}"
        );
        let full = StoreError::AutoregRangeFull {
            start: "0100".into(),
            end: "0199".into(),
        };
        assert_eq!(full.http_status(), 409);
        assert!(full.to_string().contains("0100-0199"), "{full}");
        assert!(StoreError::UserExists("jdoe".into())
            .to_string()
            .contains("user jdoe already exists"));
    }
}
