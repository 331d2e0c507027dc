//! The persistent store: users, devices and bindings. SQLite (WAL) is the embedded default;
//! the interface does not assume SQLite.
//!
//! [`Store`] wraps a pool of either backend. Every query is written once, in SQL both SQLite and
//! PostgreSQL accept (`$N` parameters, `RETURNING`, `COALESCE`), and the [`with_pool!`] macro
//! instantiates the body for each concrete pool type: sqlx's typed API is then checked by the
//! compiler for both backends without a wall of generic bounds. Only starting a write
//! transaction differs per backend ([`WritePool`]).
//!
//! Concurrency: the CLI and the server use the same SQLite file at once. Every write transaction
//! takes the write lock up front (`BEGIN IMMEDIATE` on SQLite, a transaction-scoped advisory lock
//! on PostgreSQL), so a read-then-write (find the device, then create it) can neither deadlock on
//! a lock upgrade nor interleave with another binder: two phones racing to bind the same new
//! device end up as one row. Waiting writers queue for the busy timeout.
//!
//! Migrations are embedded in the binary (`include_str!`, so it runs from any directory) and
//! applied under the same write lock, in a small versioned table with checksums.

mod error;
mod migrations;
mod model;

pub use error::StoreError;
pub use model::{
    format_time, AuditEvent, AuditOutcome, AuthMethod, Device, DeviceState, Line, NewUser, User,
};

use crate::provisioning::identify::DeviceIdentity;
use error::redact_url;
use model::{from_millis, now_millis};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Database, Transaction};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// How long a writer waits for another process's write lock before giving up with
/// [`StoreError::Busy`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// PostgreSQL advisory lock key serialising selfprov's write transactions ("selfprov" in ASCII).
const PG_WRITE_LOCK: i64 = 0x7365_6c66_7072_6f76;

/// Longest user ID, name or identity field accepted.
const MAX_TEXT: usize = 128;
/// Longest extension or self-provisioning ID (digits).
const MAX_DIGITS: usize = 32;

/// The store. Cheap to clone (pools are shared); safe to use from many tasks at once.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .finish()
    }
}

/// Runs `$body` with `$pool` bound to the concrete pool of whichever backend the store uses.
/// The body is compiled once per backend, so it must only use API both pools share.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

/// Starting a transaction that will write, with the write lock taken first (see the module doc).
trait WritePool {
    type Db: Database;
    async fn begin_write(&self) -> Result<Transaction<'static, Self::Db>, sqlx::Error>;
}

impl WritePool for SqlitePool {
    type Db = sqlx::Sqlite;
    async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Sqlite>, sqlx::Error> {
        // A deferred transaction that reads and then writes fails with SQLITE_BUSY (no busy
        // handler is called for a lock upgrade); IMMEDIATE takes the write lock now and waits.
        self.begin_with("BEGIN IMMEDIATE").await
    }
}

impl WritePool for PgPool {
    type Db = sqlx::Postgres;
    async fn begin_write(&self) -> Result<Transaction<'static, sqlx::Postgres>, sqlx::Error> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(PG_WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}

/// Columns of a user row, in the order of [`UserRow`].
macro_rules! user_columns {
    () => {
        "SELECT id, user_id, selfprov_id, first_name, last_name, extension, pin_hash, \
         selfprov_enabled, created_at FROM users"
    };
}

type UserRow = (
    i64,
    String,
    Option<String>,
    String,
    String,
    String,
    Option<String>,
    bool,
    i64,
);

fn user_from_row(r: UserRow) -> User {
    User {
        id: r.0,
        user_id: r.1,
        selfprov_id: r.2,
        first_name: r.3,
        last_name: r.4,
        extension: r.5,
        pin_hash: r.6,
        selfprov_enabled: r.7,
        created_at: from_millis(r.8),
    }
}

/// Columns of a device row with its owner's user ID, in the order of [`DeviceRow`].
macro_rules! device_columns {
    () => {
        "SELECT d.id, d.mac, d.device_name, d.vendor, d.model, d.firmware, d.user_agent, \
         d.sip_identity, u.user_id, d.state, d.created_at, d.last_seen \
         FROM devices d LEFT JOIN users u ON u.id = d.owner_id"
    };
}

type DeviceRow = (
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    String,
    i64,
    i64,
);

fn device_from_row(r: DeviceRow, lines: Vec<Line>) -> Result<Device, StoreError> {
    Ok(Device {
        id: r.0,
        mac: r.1,
        device_name: r.2,
        vendor: r.3,
        model: r.4,
        firmware: r.5,
        user_agent: r.6,
        sip_identity: r.7,
        owner: r.8,
        state: r.9.parse().map_err(StoreError::Corrupt)?,
        lines,
        created_at: from_millis(r.10),
        last_seen: from_millis(r.11),
    })
}

fn line_from_row((position, number): (i64, String)) -> Line {
    Line {
        position: u32::try_from(position).unwrap_or(0),
        number,
    }
}

/// Finds the stored device a phone is, inside a transaction: by MAC; else by device name (only
/// a row without a different MAC); else, for a phone that gives neither, by SIP identity (only a
/// row without MAC or device name: phones in autoprov often share one SIP account, so an
/// identity never matches a phone known by its hardware). Yields `Option<(id, owner_id)>`.
macro_rules! find_device {
    ($tx:ident, $identity:expr) => {{
        let identity: &DeviceIdentity = $identity;
        let mut found: Option<(i64, Option<i64>)> = None;
        if let Some(mac) = identity.mac.as_deref() {
            found = sqlx::query_as("SELECT id, owner_id FROM devices WHERE mac = $1")
                .bind(mac)
                .fetch_optional(&mut *$tx)
                .await?;
        }
        if found.is_none() {
            if let Some(name) = identity.device_name.as_deref() {
                let sql = if identity.mac.is_some() {
                    "SELECT id, owner_id FROM devices WHERE device_name = $1 AND mac IS NULL \
                     ORDER BY last_seen DESC, id DESC LIMIT 1"
                } else {
                    "SELECT id, owner_id FROM devices WHERE device_name = $1 \
                     ORDER BY last_seen DESC, id DESC LIMIT 1"
                };
                found = sqlx::query_as(sql)
                    .bind(name)
                    .fetch_optional(&mut *$tx)
                    .await?;
            }
        }
        if found.is_none() && identity.mac.is_none() && identity.device_name.is_none() {
            found = sqlx::query_as(
                "SELECT id, owner_id FROM devices WHERE sip_identity = $1 AND mac IS NULL \
                 AND device_name IS NULL ORDER BY last_seen DESC, id DESC LIMIT 1",
            )
            .bind(identity.sip_identity.as_str())
            .fetch_optional(&mut *$tx)
            .await?;
        }
        found
    }};
}

/// Inserts one audit row inside a transaction.
macro_rules! insert_audit {
    ($tx:ident, $device_id:expr, $device:expr, $user_id:expr, $auth:expr, $outcome:expr, $detail:expr) => {{
        let auth: Option<AuthMethod> = $auth;
        let outcome: AuditOutcome = $outcome;
        sqlx::query(
            "INSERT INTO audit_events (time, device_id, device, user_id, auth_method, outcome, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(now_millis())
        .bind($device_id)
        .bind($device)
        .bind($user_id)
        .bind(auth.map(AuthMethod::as_str))
        .bind(outcome.as_str())
        .bind($detail)
        .execute(&mut *$tx)
        .await?;
    }};
}

/// Clears a device's binding inside a transaction.
macro_rules! unbind_in_tx {
    ($tx:ident, $device_id:expr) => {{
        let device_id: i64 = $device_id;
        sqlx::query("DELETE FROM device_lines WHERE device_id = $1")
            .bind(device_id)
            .execute(&mut *$tx)
            .await?;
        sqlx::query("UPDATE devices SET owner_id = NULL, state = $2 WHERE id = $1")
            .bind(device_id)
            .bind(DeviceState::Autoprov.as_str())
            .execute(&mut *$tx)
            .await?;
    }};
}

impl Store {
    /// Opens (creating if needed) the store at `url` and brings its schema up to date.
    ///
    /// `sqlite://PATH` (relative to the working directory; `sqlite:///abs/path` for an absolute
    /// one) creates the parent folders and the file, and uses WAL, foreign keys and a busy
    /// timeout so the CLI and the server can share the file. `sqlite::memory:` gives a private
    /// in-memory store (tests). `postgres://...` connects to an existing database.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = if url.starts_with("sqlite:") {
            Store {
                backend: Backend::Sqlite(open_sqlite(url).await?),
            }
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let pool = PgPoolOptions::new()
                .max_connections(8)
                .acquire_timeout(BUSY_TIMEOUT)
                .connect(url)
                .await
                .map_err(|e| StoreError::Open {
                    url: redact_url(url),
                    reason: format!(
                        "{e}: check the host, credentials and that the database exists"
                    ),
                })?;
            Store {
                backend: Backend::Postgres(pool),
            }
        } else {
            return Err(StoreError::UnsupportedUrl(redact_url(url)));
        };
        store.migrate().await?;
        Ok(store)
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await)
    }

    /// The schema version the store is at (the highest migration applied).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        with_pool!(self, |pool| {
            let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM selfprov_schema")
                .fetch_one(pool)
                .await?;
            Ok(v.unwrap_or(0))
        })
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let list = match self.backend {
            Backend::Sqlite(_) => migrations::SQLITE,
            Backend::Postgres(_) => migrations::POSTGRES,
        };
        let supported = list.iter().map(|m| m.version).max().unwrap_or(0);
        let fail = |e: sqlx::Error| match StoreError::from(e) {
            StoreError::Busy => StoreError::Busy,
            other => StoreError::Migration(other.to_string()),
        };
        with_pool!(self, |pool| {
            // Under the write lock: two processes opening a new store at once apply each
            // migration exactly once.
            let mut tx = pool.begin_write().await.map_err(fail)?;
            sqlx::raw_sql(migrations::CREATE_TABLE)
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
            let applied: Vec<(i64, String)> =
                sqlx::query_as("SELECT version, checksum FROM selfprov_schema ORDER BY version")
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(fail)?;
            if let Some((found, _)) = applied.iter().find(|(v, _)| *v > supported) {
                return Err(StoreError::SchemaTooNew {
                    found: *found,
                    supported,
                });
            }
            for m in list {
                let checksum = migrations::checksum(m.sql);
                if let Some((_, stored)) = applied.iter().find(|(v, _)| *v == m.version) {
                    if *stored != checksum {
                        return Err(StoreError::Migration(format!(
                            "migration {} ({}) was changed after it was applied to this database: \
                             restore the original migration file",
                            m.version, m.description
                        )));
                    }
                    continue;
                }
                sqlx::raw_sql(m.sql).execute(&mut *tx).await.map_err(|e| {
                    StoreError::Migration(format!(
                        "migration {} ({}): {e}",
                        m.version, m.description
                    ))
                })?;
                sqlx::query(
                    "INSERT INTO selfprov_schema (version, description, checksum, applied_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(m.version)
                .bind(m.description)
                .bind(checksum)
                .bind(now_millis())
                .execute(&mut *tx)
                .await
                .map_err(fail)?;
                tracing::info!(
                    version = m.version,
                    description = m.description,
                    "store schema migrated"
                );
            }
            tx.commit().await.map_err(fail)?;
            Ok(())
        })
    }

    // ----------------------------------------------------------------------------------------
    // Users
    // ----------------------------------------------------------------------------------------

    /// Adds a user. Refuses (with a conflict error) a user ID, self-provisioning ID or extension
    /// already taken, and a self-provisioning ID equal to another user's user ID (or the
    /// reverse): the IVR looks up either, so such a pair would be ambiguous.
    pub async fn add_user(&self, new: NewUser) -> Result<User, StoreError> {
        validate_new_user(&new)?;
        let created = now_millis();
        let id = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let clashes: Vec<(String, Option<String>, String)> = sqlx::query_as(
                "SELECT user_id, selfprov_id, extension FROM users \
                 WHERE user_id = $1 OR extension = $2 OR selfprov_id = $3 \
                 OR selfprov_id = $1 OR user_id = $3",
            )
            .bind(new.user_id.as_str())
            .bind(new.extension.as_str())
            .bind(new.selfprov_id.as_deref())
            .fetch_all(&mut *tx)
            .await?;
            check_clashes(&new, &clashes)?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO users (user_id, selfprov_id, first_name, last_name, extension, pin_hash, \
                 selfprov_enabled, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            )
            .bind(new.user_id.as_str())
            .bind(new.selfprov_id.as_deref())
            .bind(new.first_name.as_str())
            .bind(new.last_name.as_str())
            .bind(new.extension.as_str())
            .bind(new.pin_hash.as_deref())
            .bind(new.selfprov_enabled)
            .bind(created)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            id
        });
        Ok(User {
            id,
            user_id: new.user_id,
            selfprov_id: new.selfprov_id,
            first_name: new.first_name,
            last_name: new.last_name,
            extension: new.extension,
            pin_hash: new.pin_hash,
            selfprov_enabled: new.selfprov_enabled,
            created_at: from_millis(created),
        })
    }

    /// Every user, by user ID.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = with_pool!(self, |pool| {
            sqlx::query_as(concat!(user_columns!(), " ORDER BY user_id"))
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(user_from_row).collect())
    }

    /// The user with this user ID.
    pub async fn get_user(&self, user_id: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = with_pool!(self, |pool| {
            sqlx::query_as(concat!(user_columns!(), " WHERE user_id = $1"))
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(user_from_row))
    }

    /// The user a caller means by the digits typed at the IVR: the user whose self-provisioning
    /// ID is `digits`, else the user whose user ID is `digits`. `None` for no match or for input
    /// that is not 1 to 32 digits. The caller must still check `selfprov_enabled` and the PIN.
    pub async fn find_user_for_ivr(&self, digits: &str) -> Result<Option<User>, StoreError> {
        if digits.is_empty()
            || digits.len() > MAX_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Ok(None);
        }
        let row: Option<UserRow> = with_pool!(self, |pool| {
            sqlx::query_as(concat!(
                user_columns!(),
                " WHERE selfprov_id = $1 OR user_id = $1 \
                 ORDER BY CASE WHEN selfprov_id = $1 THEN 0 ELSE 1 END LIMIT 1"
            ))
            .bind(digits)
            .fetch_optional(pool)
            .await?
        });
        Ok(row.map(user_from_row))
    }

    /// Removes a user and unbinds their phones (owner cleared, lines removed, state back to
    /// autoprov, an `unbound` audit event each). False when there was no such user.
    pub async fn remove_user(&self, user_id: &str) -> Result<bool, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let id: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some(id) = id else {
                return Ok(false);
            };
            let devices: Vec<(i64, Option<String>, Option<String>, String)> = sqlx::query_as(
                "SELECT id, mac, device_name, sip_identity FROM devices WHERE owner_id = $1",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            for (device_id, mac, name, sip_identity) in &devices {
                let key = mac.as_deref().or(name.as_deref()).unwrap_or(sip_identity);
                unbind_in_tx!(tx, *device_id);
                insert_audit!(
                    tx,
                    Some(*device_id),
                    key,
                    Some(user_id),
                    None,
                    AuditOutcome::Unbound,
                    "user removed"
                );
            }
            sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    // ----------------------------------------------------------------------------------------
    // Devices
    // ----------------------------------------------------------------------------------------

    /// Every device with its owner's user ID and its lines, oldest first.
    pub async fn list_devices(&self) -> Result<Vec<Device>, StoreError> {
        let (rows, lines): (Vec<DeviceRow>, Vec<(i64, i64, String)>) = with_pool!(self, |pool| {
            // One read transaction: devices and lines from the same snapshot.
            let mut tx = pool.begin().await?;
            let rows = sqlx::query_as(concat!(device_columns!(), " ORDER BY d.id"))
                .fetch_all(&mut *tx)
                .await?;
            let lines = sqlx::query_as(
                "SELECT device_id, position, number FROM device_lines ORDER BY device_id, position",
            )
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            (rows, lines)
        });
        let mut by_device: HashMap<i64, Vec<Line>> = HashMap::new();
        for (device_id, position, number) in lines {
            by_device
                .entry(device_id)
                .or_default()
                .push(line_from_row((position, number)));
        }
        rows.into_iter()
            .map(|r| {
                let lines = by_device.remove(&r.0).unwrap_or_default();
                device_from_row(r, lines)
            })
            .collect()
    }

    /// One device by its store ID.
    pub async fn get_device(&self, id: i64) -> Result<Option<Device>, StoreError> {
        let (row, lines): (Option<DeviceRow>, Vec<(i64, String)>) = with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let row = sqlx::query_as(concat!(device_columns!(), " WHERE d.id = $1"))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let lines = sqlx::query_as(
                "SELECT position, number FROM device_lines WHERE device_id = $1 ORDER BY position",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            (row, lines)
        });
        row.map(|r| device_from_row(r, lines.into_iter().map(line_from_row).collect()))
            .transpose()
    }

    /// Binds the calling phone to a user, in one transaction: finds the device (by MAC, else
    /// device name, else SIP identity, as described at `find_device!`) or creates it; records what the
    /// phone said about itself; makes the user its owner with line 1 = the user's extension;
    /// sets state `provisioning`; and writes a `bound` audit event.
    ///
    /// Binding a phone again to its owner succeeds (idempotent; state goes back to
    /// `provisioning` so the phone is configured again). A phone bound to another user is
    /// refused with [`StoreError::AlreadyBound`]; an unknown or disabled user with
    /// [`StoreError::UnknownUser`] / [`StoreError::UserDisabled`]. Refusals write their own
    /// audit event (and nothing else); any failure rolls everything back.
    pub async fn bind_device(
        &self,
        identity: &DeviceIdentity,
        user_id: &str,
        auth: AuthMethod,
    ) -> Result<Device, StoreError> {
        validate_identity(identity)?;
        let key = identity.key().to_string();
        let outcome: Result<i64, StoreError> = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let user: Option<(i64, String, bool)> = sqlx::query_as(
                "SELECT id, extension, selfprov_enabled FROM users WHERE user_id = $1",
            )
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
            let found = find_device!(tx, identity);
            let device_id = found.map(|(id, _)| id);
            let refusal = match (&user, found) {
                (None, _) => Some((
                    AuditOutcome::UnknownUser,
                    StoreError::UnknownUser(user_id.to_string()),
                )),
                (Some((_, _, false)), _) => Some((
                    AuditOutcome::UserDisabled,
                    StoreError::UserDisabled(user_id.to_string()),
                )),
                (Some((uid, _, true)), Some((_, Some(owner)))) if owner != *uid => {
                    let owner_name: Option<String> =
                        sqlx::query_scalar("SELECT user_id FROM users WHERE id = $1")
                            .bind(owner)
                            .fetch_optional(&mut *tx)
                            .await?;
                    let owner = owner_name.unwrap_or_else(|| format!("#{owner}"));
                    Some((
                        AuditOutcome::AlreadyBound,
                        StoreError::AlreadyBound {
                            device: key.clone(),
                            owner,
                        },
                    ))
                }
                _ => None,
            };
            if let Some((audit_outcome, err)) = refusal {
                // Nothing of the attempt is kept but its audit event.
                tx.rollback().await?;
                let mut tx = pool.begin_write().await?;
                let detail = match &err {
                    StoreError::AlreadyBound { owner, .. } => {
                        format!("phone is bound to user {owner}")
                    }
                    _ => String::new(),
                };
                insert_audit!(
                    tx,
                    device_id,
                    key.as_str(),
                    Some(user_id),
                    Some(auth),
                    audit_outcome,
                    detail
                );
                tx.commit().await?;
                Err(err)
            } else {
                let Some((owner_id, extension, _)) = user else {
                    return Err(StoreError::UnknownUser(user_id.to_string()));
                };
                let now = now_millis();
                let (id, detail) = match found {
                    Some((id, previous_owner)) => {
                        sqlx::query(
                            "UPDATE devices SET mac = COALESCE(mac, $2), \
                             device_name = COALESCE($3, device_name), vendor = COALESCE($4, vendor), \
                             model = COALESCE($5, model), firmware = COALESCE($6, firmware), \
                             user_agent = COALESCE($7, user_agent), sip_identity = $8, \
                             owner_id = $9, state = $10, last_seen = $11 WHERE id = $1",
                        )
                        .bind(id)
                        .bind(identity.mac.as_deref())
                        .bind(identity.device_name.as_deref())
                        .bind(identity.vendor.as_deref())
                        .bind(identity.model.as_deref())
                        .bind(identity.firmware.as_deref())
                        .bind(identity.user_agent.as_deref())
                        .bind(identity.sip_identity.as_str())
                        .bind(owner_id)
                        .bind(DeviceState::Provisioning.as_str())
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                        let detail = if previous_owner == Some(owner_id) {
                            format!("bound again to the same user; line 1 = {extension}")
                        } else {
                            format!("line 1 = {extension}")
                        };
                        (id, detail)
                    }
                    None => {
                        let id: i64 = sqlx::query_scalar(
                            "INSERT INTO devices (mac, device_name, vendor, model, firmware, user_agent, \
                             sip_identity, owner_id, state, created_at, last_seen) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10) RETURNING id",
                        )
                        .bind(identity.mac.as_deref())
                        .bind(identity.device_name.as_deref())
                        .bind(identity.vendor.as_deref())
                        .bind(identity.model.as_deref())
                        .bind(identity.firmware.as_deref())
                        .bind(identity.user_agent.as_deref())
                        .bind(identity.sip_identity.as_str())
                        .bind(owner_id)
                        .bind(DeviceState::Provisioning.as_str())
                        .bind(now)
                        .fetch_one(&mut *tx)
                        .await?;
                        (id, format!("new device; line 1 = {extension}"))
                    }
                };
                sqlx::query("DELETE FROM device_lines WHERE device_id = $1 AND position = 1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO device_lines (device_id, position, number) VALUES ($1, 1, $2)",
                )
                .bind(id)
                .bind(extension.as_str())
                .execute(&mut *tx)
                .await?;
                insert_audit!(
                    tx,
                    Some(id),
                    key.as_str(),
                    Some(user_id),
                    Some(auth),
                    AuditOutcome::Bound,
                    detail
                );
                tx.commit().await?;
                Ok(id)
            }
        });
        let id = outcome?;
        self.get_device(id).await?.ok_or_else(|| {
            StoreError::Conflict(format!("device {id} was removed right after it was bound"))
        })
    }

    /// Removes a device's binding: owner cleared, lines removed, state `autoprov`, and an
    /// `unbound` audit event. False when there is no such device.
    pub async fn unbind_device(&self, device_id: i64, detail: &str) -> Result<bool, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            // mac, device name, SIP identity, owner's user ID
            type Row = (Option<String>, Option<String>, String, Option<String>);
            let row: Option<Row> = sqlx::query_as(
                "SELECT d.mac, d.device_name, d.sip_identity, u.user_id FROM devices d \
                 LEFT JOIN users u ON u.id = d.owner_id WHERE d.id = $1",
            )
            .bind(device_id)
            .fetch_optional(&mut *tx)
            .await?;
            let Some((mac, name, sip_identity, owner)) = row else {
                return Ok(false);
            };
            let key = mac.as_deref().or(name.as_deref()).unwrap_or(&sip_identity);
            unbind_in_tx!(tx, device_id);
            insert_audit!(
                tx,
                Some(device_id),
                key,
                owner.as_deref(),
                None,
                AuditOutcome::Unbound,
                detail
            );
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Sets a device's state (the server: `provisioned` once the phone took its new
    /// configuration, `error` when it did not). False when there is no such device.
    pub async fn set_device_state(
        &self,
        device_id: i64,
        state: DeviceState,
    ) -> Result<bool, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query("UPDATE devices SET state = $2, last_seen = $3 WHERE id = $1")
                .bind(device_id)
                .bind(state.as_str())
                .bind(now_millis())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    // ----------------------------------------------------------------------------------------
    // Audit
    // ----------------------------------------------------------------------------------------

    /// Records an attempt that did not reach [`Store::bind_device`] (unknown ID, wrong PIN or
    /// admin code, too many attempts, hang-up...). Links it to the stored device when the phone
    /// is known. `detail` is free text for operators: NEVER put the digits a caller typed in it.
    pub async fn record_audit(
        &self,
        identity: &DeviceIdentity,
        user_id: Option<&str>,
        auth: Option<AuthMethod>,
        outcome: AuditOutcome,
        detail: &str,
    ) -> Result<(), StoreError> {
        let key = identity.key().to_string();
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let found = find_device!(tx, identity);
            insert_audit!(
                tx,
                found.map(|(id, _)| id),
                key.as_str(),
                user_id,
                auth,
                outcome,
                detail
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// The latest audit events, newest first.
    pub async fn list_audit(&self, limit: u32) -> Result<Vec<AuditEvent>, StoreError> {
        type Row = (
            i64,
            i64,
            Option<i64>,
            String,
            Option<String>,
            Option<String>,
            String,
            String,
        );
        let rows: Vec<Row> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT id, time, device_id, device, user_id, auth_method, outcome, detail \
                 FROM audit_events ORDER BY id DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(AuditEvent {
                    id: r.0,
                    time: from_millis(r.1),
                    device_id: r.2,
                    device: r.3,
                    user_id: r.4,
                    auth_method: r
                        .5
                        .map(|a| a.parse())
                        .transpose()
                        .map_err(StoreError::Corrupt)?,
                    outcome: r.6,
                    detail: r.7,
                })
            })
            .collect()
    }
}

async fn open_sqlite(url: &str) -> Result<SqlitePool, StoreError> {
    let open_err = |reason: String| StoreError::Open {
        url: redact_url(url),
        reason,
    };
    let opts = SqliteConnectOptions::from_str(url).map_err(|e| open_err(e.to_string()))?;
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    let opts = opts.foreign_keys(true).busy_timeout(BUSY_TIMEOUT);
    let pool_opts = if in_memory {
        // One connection: every connection to `:memory:` would be its own database.
        SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
    } else {
        let path = opts.get_filename().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                open_err(format!(
                    "cannot create folder {}: {e}; create it or change store.url",
                    parent.display()
                ))
            })?;
        }
        SqlitePoolOptions::new().max_connections(4)
    };
    let opts = if in_memory {
        opts
    } else {
        // WAL: readers do not block the writer (the CLI can list while the server binds).
        // synchronous=NORMAL is durable against application crashes in WAL mode.
        opts.create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
    };
    pool_opts
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(opts)
        .await
        .map_err(|e| open_err(format!("{e}: check that the path in store.url is writable")))
}

fn validate_text(field: &'static str, value: &str, required: bool) -> Result<(), StoreError> {
    let invalid = |message: String| Err(StoreError::Invalid { field, message });
    if required && value.trim().is_empty() {
        return invalid("must not be empty".into());
    }
    if value.chars().count() > MAX_TEXT {
        return invalid(format!("must be at most {MAX_TEXT} characters"));
    }
    if value.chars().any(char::is_control) {
        return invalid("must not contain control characters".into());
    }
    Ok(())
}

fn validate_digits(field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > MAX_DIGITS || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(StoreError::Invalid {
            field,
            message: format!(
                "{value:?} must be 1 to {MAX_DIGITS} digits 0-9 (it is typed on a keypad)"
            ),
        });
    }
    Ok(())
}

fn validate_new_user(new: &NewUser) -> Result<(), StoreError> {
    validate_text("user ID", &new.user_id, true)?;
    if new.user_id.trim() != new.user_id || new.user_id.contains(char::is_whitespace) {
        return Err(StoreError::Invalid {
            field: "user ID",
            message: "must not contain spaces".into(),
        });
    }
    validate_text("first name", &new.first_name, false)?;
    validate_text("last name", &new.last_name, false)?;
    validate_digits("extension", &new.extension)?;
    if let Some(sp) = &new.selfprov_id {
        validate_digits("self-provisioning ID", sp)?;
    }
    if let Some(h) = &new.pin_hash {
        if !h.starts_with("$argon2") {
            return Err(StoreError::Invalid {
                field: "PIN hash",
                message: "must be an argon2 PHC string (hash the PIN first)".into(),
            });
        }
    }
    Ok(())
}

fn check_clashes(
    new: &NewUser,
    clashes: &[(String, Option<String>, String)],
) -> Result<(), StoreError> {
    if clashes.iter().any(|(u, _, _)| *u == new.user_id) {
        return Err(StoreError::UserExists(new.user_id.clone()));
    }
    if let Some((u, _, _)) = clashes.iter().find(|(_, _, e)| *e == new.extension) {
        return Err(StoreError::ExtensionTaken {
            extension: new.extension.clone(),
            user: u.clone(),
        });
    }
    if let Some(sp) = &new.selfprov_id {
        if let Some((u, _, _)) = clashes
            .iter()
            .find(|(_, s, _)| s.as_deref() == Some(sp.as_str()))
        {
            return Err(StoreError::SelfProvIdTaken {
                selfprov_id: sp.clone(),
                user: u.clone(),
            });
        }
        if let Some((u, _, _)) = clashes.iter().find(|(u, _, _)| u == sp) {
            return Err(StoreError::AmbiguousId {
                value: sp.clone(),
                field: "user ID",
                user: u.clone(),
            });
        }
    }
    if let Some((u, _, _)) = clashes
        .iter()
        .find(|(_, s, _)| s.as_deref() == Some(new.user_id.as_str()))
    {
        return Err(StoreError::AmbiguousId {
            value: new.user_id.clone(),
            field: "self-provisioning ID",
            user: u.clone(),
        });
    }
    Ok(())
}

fn validate_identity(identity: &DeviceIdentity) -> Result<(), StoreError> {
    if identity.mac.is_none()
        && identity.device_name.is_none()
        && identity.sip_identity.trim().is_empty()
    {
        return Err(StoreError::NoIdentity);
    }
    if let Some(mac) = &identity.mac {
        if mac.len() != 12
            || !mac
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
        {
            return Err(StoreError::Invalid {
                field: "MAC",
                message: format!("{mac:?} must be 12 upper-case hex digits"),
            });
        }
    }
    for (field, value) in [
        ("device name", identity.device_name.as_deref()),
        ("vendor", identity.vendor.as_deref()),
        ("model", identity.model.as_deref()),
        ("firmware", identity.firmware.as_deref()),
        ("SIP identity", Some(identity.sip_identity.as_str())),
    ] {
        validate_text(field, value.unwrap_or(""), false)?;
    }
    // A User-Agent is stored as sent, but bounded.
    if identity
        .user_agent
        .as_ref()
        .is_some_and(|ua| ua.len() > 1024)
    {
        return Err(StoreError::Invalid {
            field: "User-Agent",
            message: "longer than 1024 bytes".into(),
        });
    }
    Ok(())
}
