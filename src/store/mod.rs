//! The persistent store: users, devices and bindings, and the admin domain around them (lines,
//! SIP endpoints, universal device and line templates, user profiles, self-provisioning
//! settings, API tokens, the audit trail). SQLite (WAL) is the embedded default; PostgreSQL
//! serves deployments with several selfprov nodes sharing one database.
//!
//! [`Store`] wraps a pool of either backend. Every query is written once, in SQL both SQLite and
//! PostgreSQL accept (`$N` parameters, `RETURNING`, `COALESCE`), and the [`with_pool!`] macro
//! instantiates the body for each concrete pool type: sqlx's typed API is then checked by the
//! compiler for both backends without a wall of generic bounds. Only starting a write
//! transaction differs per backend ([`WritePool`]). Rows are decoded by column name inside
//! those bodies (the `*_from_row!` macros), so one decoder serves both backends.
//!
//! Concurrency: the CLI and the server use the same SQLite file at once. Every write transaction
//! takes the write lock up front (`BEGIN IMMEDIATE` on SQLite, a transaction-scoped advisory lock
//! on PostgreSQL), so a read-then-write (find the device, then create it) can neither deadlock on
//! a lock upgrade nor interleave with another binder: two phones racing to bind the same new
//! device end up as one row. Waiting writers queue for the busy timeout. Uniqueness (extension,
//! MAC, names...) is checked inside those transactions, so a clash is reported as a precise
//! [`StoreError`] rather than a raw constraint violation.
//!
//! Migrations are embedded in the binary (`include_str!`, so it runs from any directory) and
//! applied under the same write lock, in a small versioned table with checksums.
//!
//! The methods are spread over files by resource: `users.rs`, `devices.rs`, `binding.rs`,
//! `lines.rs` (lines, SIP endpoints, associations), `templates.rs` (templates, profiles),
//! `admin.rs` (settings, API tokens, audit), `autoprov.rs` (autoregistration, the registrar's
//! credential lookup, config keys and the resync life of a phone), `outbox.rs` (the PBX outbox,
//! the objects selfprov owns at each PBX, delivery status), with the list helper in `list.rs`.
//!
//! PBX outbox: every change a PBX must learn of (a binding, an unbinding, a line or endpoint
//! edit, a deletion) writes its `pbx_outbox` rows inside its own write transaction, through the
//! `*_in_tx!` macros below (`lines_changed_in_tx!`, `unbind_in_tx!`...), so a change and what
//! the PBX is told commit or roll back together.

mod error;
mod migrations;
mod model;
mod records;

pub use admin::AuditListArg;
pub use autoprov::{is_config_key, AccountKind, Autoprov, SipAccount};
pub use error::StoreError;
pub use model::{
    format_time, AuditEvent, AuditOutcome, AuthMethod, Device, DeviceLine, DeviceState, NewUser,
    User, UserInput,
};
pub use outbox::{AwaitingDevice, OutboxRow, PbxObject, PbxStatus};
pub use records::{
    rfc3339, ApiToken, AuditQuery, BindOptions, Binding, CallForward, CallForwards, DeviceTemplate,
    DeviceType, Line, LineTemplate, ListQuery, NewDevice, NewDeviceTemplate, NewLine,
    NewLineTemplate, NewSipEndpoint, NewUserProfile, Page, Protocol, SecurityProfile,
    SelfProvSettings, SipEndpoint, SortDirection, SpeedDial, Transport, UserProfile,
};
pub use users::UserRef;

use crate::provisioning::identify::DeviceIdentity;
pub(crate) use error::redact_url;
use model::{from_millis, now_millis};
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Database, Transaction};
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
    /// Names of the configured PBX connectors: each change a PBX must learn of writes one
    /// outbox row per name (none: no outbox rows).
    pbx: std::sync::Arc<[String]>,
    /// True: a PBX connector reports its registrations, and a device becomes `provisioned`
    /// when its line registers there rather than when it fetches its file.
    registration_watch: bool,
    /// Bumped after a commit that wrote outbox rows (the delivery workers watch it).
    outbox_wake: std::sync::Arc<tokio::sync::watch::Sender<u64>>,
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

/// Reads column `$name` of `$row` as the type the context needs.
macro_rules! col {
    ($row:expr, $name:literal) => {
        sqlx::Row::try_get($row, $name)?
    };
}

/// Columns of a user row, for [`user_from_row!`].
macro_rules! user_columns {
    () => {
        "SELECT id, user_id, selfprov_id, first_name, last_name, extension, pin_hash, \
         selfprov_enabled, created_at, profile_id, password_hash FROM users"
    };
}

/// Decodes a row of [`user_columns!`] into a [`User`]; yields `Result<User, StoreError>`.
macro_rules! user_from_row {
    ($row:expr) => {{
        let r = $row;
        (|| -> Result<User, StoreError> {
            Ok(User {
                id: col!(r, "id"),
                user_id: col!(r, "user_id"),
                selfprov_id: col!(r, "selfprov_id"),
                first_name: col!(r, "first_name"),
                last_name: col!(r, "last_name"),
                extension: col!(r, "extension"),
                pin_hash: col!(r, "pin_hash"),
                selfprov_enabled: col!(r, "selfprov_enabled"),
                created_at: from_millis(col!(r, "created_at")),
                profile_id: col!(r, "profile_id"),
                password_hash: col!(r, "password_hash"),
            })
        })()
    }};
}

/// Columns of a device row with its owner's user ID, for [`device_from_row!`].
macro_rules! device_columns {
    () => {
        "SELECT d.id, d.mac, d.device_name, d.vendor, d.model, d.firmware, d.user_agent, \
         d.sip_identity, u.user_id AS owner, d.owner_id, d.state, d.protocol, d.device_type, \
         d.description, d.template_id, d.created_at, d.last_seen, d.autoreg_number, \
         d.resync_at, d.resync_outcome, d.config_fetched_at, d.last_ip \
         FROM devices d LEFT JOIN users u ON u.id = d.owner_id"
    };
}

/// Decodes a row of [`device_columns!`] (lines are added later); yields
/// `Result<Device, StoreError>`.
macro_rules! device_from_row {
    ($row:expr) => {{
        let r = $row;
        (|| -> Result<Device, StoreError> {
            let state: String = col!(r, "state");
            let protocol: String = col!(r, "protocol");
            let device_type: String = col!(r, "device_type");
            Ok(Device {
                id: col!(r, "id"),
                mac: col!(r, "mac"),
                device_name: col!(r, "device_name"),
                vendor: col!(r, "vendor"),
                model: col!(r, "model"),
                firmware: col!(r, "firmware"),
                user_agent: col!(r, "user_agent"),
                sip_identity: col!(r, "sip_identity"),
                owner: col!(r, "owner"),
                owner_id: col!(r, "owner_id"),
                state: state.parse().map_err(StoreError::Corrupt)?,
                protocol: protocol.parse().map_err(StoreError::Corrupt)?,
                device_type: device_type.parse().map_err(StoreError::Corrupt)?,
                description: col!(r, "description"),
                template_id: col!(r, "template_id"),
                lines: Vec::new(),
                created_at: from_millis(col!(r, "created_at")),
                last_seen: from_millis(col!(r, "last_seen")),
                autoreg_number: col!(r, "autoreg_number"),
                resync_at: {
                    let ms: Option<i64> = col!(r, "resync_at");
                    ms.map(from_millis)
                },
                resync_outcome: col!(r, "resync_outcome"),
                config_fetched_at: {
                    let ms: Option<i64> = col!(r, "config_fetched_at");
                    ms.map(from_millis)
                },
                last_ip: col!(r, "last_ip"),
            })
        })()
    }};
}

/// The lines of devices, as `(device_id, DeviceLine)` rows: `SELECT` + this + a `WHERE`.
/// The number and label come from the line when there is one (they follow later edits).
const DEVICE_LINE_SELECT: &str = "SELECT dl.device_id, dl.position, \
     COALESCE(l.number, dl.number) AS number, dl.line_id, COALESCE(l.label, '') AS label \
     FROM device_lines dl LEFT JOIN lines l ON l.id = dl.line_id";

/// Decodes a row of [`DEVICE_LINE_SELECT`]; yields `Result<(i64, DeviceLine), StoreError>`.
macro_rules! device_line_from_row {
    ($row:expr) => {{
        let r = $row;
        (|| -> Result<(i64, DeviceLine), StoreError> {
            let position: i64 = col!(r, "position");
            Ok((
                col!(r, "device_id"),
                DeviceLine {
                    position: u32::try_from(position)
                        .map_err(|_| StoreError::Corrupt(format!("line position {position}")))?,
                    number: col!(r, "number"),
                    line_id: col!(r, "line_id"),
                    label: col!(r, "label"),
                },
            ))
        })()
    }};
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

/// Inside a transaction: the key a device is audited under (MAC, else device name, else SIP
/// identity) and its owner's user ID; `None` when there is no such device.
macro_rules! device_audit_key_in_tx {
    ($tx:ident, $device_id:expr) => {{
        // mac, device name, SIP identity, owner's user ID
        type Row = (Option<String>, Option<String>, String, Option<String>);
        let row: Option<Row> = sqlx::query_as(
            "SELECT d.mac, d.device_name, d.sip_identity, u.user_id FROM devices d \
             LEFT JOIN users u ON u.id = d.owner_id WHERE d.id = $1",
        )
        .bind($device_id)
        .fetch_optional(&mut *$tx)
        .await?;
        row.map(|(mac, name, sip_identity, owner)| (mac.or(name).unwrap_or(sip_identity), owner))
    }};
}

/// Inside a transaction: the store IDs of the lines on device `$device_id`, ascending.
macro_rules! device_line_ids_in_tx {
    ($tx:ident, $device_id:expr) => {{
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT line_id FROM device_lines WHERE device_id = $1 \
             AND line_id IS NOT NULL ORDER BY line_id",
        )
        .bind($device_id)
        .fetch_all(&mut *$tx)
        .await?;
        ids
    }};
}

/// Inside a transaction: the live state of line `$line_id` for the PBX ([`LineState`]), or
/// `None` when the line is gone, has no SIP endpoint or appears on no device.
macro_rules! line_state_in_tx {
    ($tx:ident, $line_id:expr) => {{
        let line_id: i64 = $line_id;
        // number, context, caller-ID name, voicemail, max calls, auth user, password, transport
        type Row = (
            String,
            String,
            String,
            Option<String>,
            i64,
            String,
            String,
            String,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT l.number, l.context, l.caller_id_name, l.voicemail, l.max_calls, \
             s.auth_username, s.password, s.transport FROM lines l \
             JOIN line_endpoints le ON le.line_id = l.id \
             JOIN sip_endpoints s ON s.id = le.sip_endpoint_id WHERE l.id = $1",
        )
        .bind(line_id)
        .fetch_optional(&mut *$tx)
        .await?;
        let devices: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT device_id FROM device_lines WHERE line_id = $1 ORDER BY device_id",
        )
        .bind(line_id)
        .fetch_all(&mut *$tx)
        .await?;
        match row {
            Some(r) if !devices.is_empty() => Some(crate::pbx::event::LineState {
                line_id,
                number: r.0,
                context: r.1,
                caller_id_name: r.2,
                voicemail: r.3,
                max_calls: to_u32(r.4, "max_calls")?,
                auth_username: r.5,
                password: r.6,
                transport: r.7,
                device_ids: devices,
            }),
            _ => None,
        }
    }};
}

/// Inside a write transaction: one outbox row for `$event` per configured PBX connector
/// (`$connectors`, the names from the config). Nothing when no connector is configured.
macro_rules! enqueue_in_tx {
    ($connectors:expr, $tx:ident, $event:expr) => {{
        let connectors: &[String] = $connectors;
        let event: &crate::pbx::event::PbxEvent = $event;
        if !connectors.is_empty() {
            let payload = serde_json::to_string(event)
                .map_err(|e| StoreError::Corrupt(format!("encoding a PBX event: {e}")))?;
            let now = now_millis();
            for connector in connectors {
                sqlx::query(
                    "INSERT INTO pbx_outbox (connector, event, payload, created_at, \
                     next_attempt_at) VALUES ($1, $2, $3, $4, $4)",
                )
                .bind(connector.as_str())
                .bind(event.name())
                .bind(payload.as_str())
                .bind(now)
                .execute(&mut *$tx)
                .await?;
            }
        }
    }};
}

/// Inside a write transaction: tells the PBX connectors the state each line of `$lines` is in
/// now (`line.upserted` when live, else `line.deleted`).
macro_rules! lines_changed_in_tx {
    ($connectors:expr, $tx:ident, $lines:expr) => {{
        let connectors: &[String] = $connectors;
        if !connectors.is_empty() {
            let mut ids: Vec<i64> = $lines.iter().copied().collect();
            ids.sort_unstable();
            ids.dedup();
            for line_id in ids {
                let event = match line_state_in_tx!($tx, line_id) {
                    Some(state) => crate::pbx::event::PbxEvent::LineUpserted(state),
                    None => {
                        let number: Option<String> =
                            sqlx::query_scalar("SELECT number FROM lines WHERE id = $1")
                                .bind(line_id)
                                .fetch_optional(&mut *$tx)
                                .await?;
                        crate::pbx::event::PbxEvent::LineDeleted { line_id, number }
                    }
                };
                enqueue_in_tx!(connectors, $tx, &event);
            }
        }
    }};
}

/// Inside a write transaction: new passwords for the SIP endpoints of `$lines`. A phone that
/// loses a line loses its credentials with it: the user's other phones on the line get the new
/// password at their next resync (selfprov's registrar and the PBX see the same change).
macro_rules! rotate_line_passwords_in_tx {
    ($tx:ident, $lines:expr) => {{
        for line_id in $lines.iter().copied() {
            let line_id: i64 = line_id;
            sqlx::query(
                "UPDATE sip_endpoints SET password = $2 WHERE id = \
                 (SELECT sip_endpoint_id FROM line_endpoints WHERE line_id = $1)",
            )
            .bind(line_id)
            .bind(super::lines::generate_password())
            .execute(&mut *$tx)
            .await?;
        }
    }};
}

/// Inside a transaction: the devices other than `$device_id` on any line of `$lines` (they
/// need a resync when those lines' credentials change).
macro_rules! other_devices_on_lines_in_tx {
    ($tx:ident, $device_id:expr, $lines:expr) => {{
        let device_id: i64 = $device_id;
        let mut others: Vec<i64> = Vec::new();
        for line_id in $lines.iter().copied() {
            let line_id: i64 = line_id;
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT DISTINCT device_id FROM device_lines WHERE line_id = $1 AND device_id <> $2",
            )
            .bind(line_id)
            .bind(device_id)
            .fetch_all(&mut *$tx)
            .await?;
            others.extend(ids);
        }
        others.sort_unstable();
        others.dedup();
        others
    }};
}

/// Clears a device's binding inside a transaction: its lines go (their passwords rotated, see
/// [`rotate_line_passwords_in_tx!`]), owner cleared, state `autoprov`, and the PBX connectors
/// told (`device.unbound`, then each line's new state). Yields the other devices on the lines
/// it lost, which need a resync for the new passwords.
macro_rules! unbind_in_tx {
    ($connectors:expr, $tx:ident, $device_id:expr) => {{
        let device_id: i64 = $device_id;
        let lost: Vec<i64> = device_line_ids_in_tx!($tx, device_id);
        type Info = (
            Option<String>,
            Option<String>,
            Option<String>,
            Option<String>,
        );
        let info: Option<Info> = sqlx::query_as(
            "SELECT d.mac, d.vendor, d.model, u.user_id FROM devices d \
             LEFT JOIN users u ON u.id = d.owner_id WHERE d.id = $1",
        )
        .bind(device_id)
        .fetch_optional(&mut *$tx)
        .await?;
        sqlx::query("DELETE FROM device_lines WHERE device_id = $1")
            .bind(device_id)
            .execute(&mut *$tx)
            .await?;
        sqlx::query("UPDATE devices SET owner_id = NULL, state = $2 WHERE id = $1")
            .bind(device_id)
            .bind(DeviceState::Autoprov.as_str())
            .execute(&mut *$tx)
            .await?;
        rotate_line_passwords_in_tx!($tx, &lost);
        let others: Vec<i64> = other_devices_on_lines_in_tx!($tx, device_id, &lost);
        if let Some((mac, vendor, model, owner)) = info {
            if owner.is_some() || !lost.is_empty() {
                let event =
                    crate::pbx::event::PbxEvent::DeviceUnbound(crate::pbx::event::DeviceChange {
                        device_id,
                        mac,
                        vendor,
                        model,
                        user_id: owner,
                        line_ids: lost.clone(),
                    });
                enqueue_in_tx!($connectors, $tx, &event);
            }
        }
        lines_changed_in_tx!($connectors, $tx, &lost);
        others
    }};
}

mod admin;
mod autoprov;
mod binding;
mod devices;
mod lines;
mod list;
mod outbox;
mod templates;
mod users;

impl Store {
    /// Opens (creating if needed) the store at `url` and brings its schema up to date.
    ///
    /// `sqlite://PATH` (relative to the working directory; `sqlite:///abs/path` for an absolute
    /// one) creates the parent folders and the file, and uses WAL, foreign keys and a busy
    /// timeout so the CLI and the server can share the file. `sqlite::memory:` gives a private
    /// in-memory store (tests). `postgres://...` connects to an existing database.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let store = if url.starts_with("sqlite:") {
            Store::with_backend(Backend::Sqlite(open_sqlite(url).await?))
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
            Store::with_backend(Backend::Postgres(pool))
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
    // Switching a fresh file to WAL needs an exclusive lock, and SQLite answers SQLITE_BUSY at
    // once (no busy handler) while another process is creating the same database: two
    // processes started together on a new store (the server and a CLI command) would see
    // "database is locked". That one case is retried until BUSY_TIMEOUT.
    let pool_opts = pool_opts.acquire_timeout(BUSY_TIMEOUT);
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match pool_opts.clone().connect_with(opts.clone()).await {
            Ok(pool) => return Ok(pool),
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("5") && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => {
                return Err(open_err(format!(
                    "{e}: check that the path in store.url is writable"
                )))
            }
        }
    }
}

/// A count or number read from the store as `u32` ([`StoreError::Corrupt`] when out of range).
fn to_u32(v: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v} is out of range")))
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

fn validate_new_user(new: &UserInput) -> Result<(), StoreError> {
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
    for (field, hash) in [
        ("PIN hash", &new.pin_hash),
        ("password hash", &new.password_hash),
    ] {
        if hash.as_ref().is_some_and(|h| !h.starts_with("$argon2")) {
            return Err(StoreError::Invalid {
                field,
                message: "must be an argon2 PHC string (hash the secret first)".into(),
            });
        }
    }
    Ok(())
}

fn check_clashes(
    new: &UserInput,
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
