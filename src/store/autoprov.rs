//! The phone's side of the store (issue 4): autoregistration and the provisioning life of a
//! device.
//!
//! - An unknown phone asking for its config file gets a device in state `autoprov`, a guest SIP
//!   account of its own (a `sip_endpoints` row on no line, referenced by
//!   `devices.guest_endpoint_id`, numbered with the next free number of the settings'
//!   autoregistration range) and a random `config_key` (its provisioned files are served under
//!   `/<config_key>/<file>`): [`Store::autoprov_device`], all in ONE write transaction, so two
//!   phones at once never get the same number (the write lock serialises allocators; unique
//!   indexes on `autoreg_number`, `config_key` and `guest_endpoint_id` back it up).
//! - The registrar's digest credential lookup: [`Store::find_sip_account`] (guest accounts and
//!   line accounts), and [`Store::record_registration`] (the source address of an authenticated
//!   REGISTER, which the provisioning server trusts for bare-path fetches).
//! - Resync bookkeeping: [`Store::record_resync`], [`Store::config_fetched`] (`provisioning` →
//!   `provisioned`, guest account released), [`Store::flag_stale_resyncs`] (→ `error`).
//! - Back to autoprov: [`Store::reset_to_autoprov`] (Wazo's `GET /devices/{id}/autoprov`).
//!
//! Numbers are compared as digit strings of the range's width: `0100`..`0199` allocates
//! `0100`, `0101`... and skips any number already used by a line (any context), a user's
//! primary extension, another guest, or an IVR extension.

use super::lines::{generate_password, generate_username, insert_sip_in_tx};
use super::{
    from_millis, now_millis, to_u32, validate_text, AuditOutcome, AuthMethod, Backend, Device,
    DeviceState, NewSipEndpoint, Store, StoreError, WritePool,
};
use crate::phoneprov::GuestAccount;
use std::collections::HashSet;
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// What a SIP account belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccountKind {
    /// The guest (autoprov) account of a device.
    Guest { device_id: i64 },
    /// The SIP endpoint of a line.
    Line { line_id: i64 },
}

/// A digest credential the registrar verifies REGISTER and INVITE against. `Debug` hides the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct SipAccount {
    pub endpoint_id: i64,
    pub auth_username: String,
    pub password: String,
    /// The AOR user part: the guest's autoreg number, or the line's number.
    pub number: String,
    pub kind: AccountKind,
}

impl fmt::Debug for SipAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SipAccount")
            .field("endpoint_id", &self.endpoint_id)
            .field("auth_username", &self.auth_username)
            .field("password", &"***")
            .field("number", &self.number)
            .field("kind", &self.kind)
            .finish()
    }
}

/// A device in autoprov with its guest account and config key. `Debug` hides the password and
/// the key.
#[derive(Clone, PartialEq, Eq)]
pub struct Autoprov {
    pub device: Device,
    pub account: GuestAccount,
    /// The secret path segment of the device's config URL (`/<config_key>/<file>`).
    pub config_key: String,
    /// True: the device was created by this call; false: it already existed in autoprov.
    pub created: bool,
    /// After a reset to autoprov: the other devices that shared a line with it (their line's
    /// password changed, so they need a resync).
    pub resync_others: Vec<i64>,
}

impl fmt::Debug for Autoprov {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Autoprov")
            .field("device", &self.device)
            .field("account", &self.account)
            .field("config_key", &"***")
            .field("created", &self.created)
            .field("resync_others", &self.resync_others)
            .finish()
    }
}

/// Length of a config key: 32 lower-case hex digits (128 random bits).
const CONFIG_KEY_LEN: usize = 32;
/// Longest User-Agent kept (longer ones are cut, not refused: it comes from the network).
const MAX_USER_AGENT: usize = 1024;
/// Longest resync outcome text.
const MAX_OUTCOME: usize = 128;

/// A fresh config key. `rand::rng()` is a CSPRNG seeded from the OS.
fn new_config_key() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// True for a string shaped like a config key (checked before any lookup).
pub fn is_config_key(s: &str) -> bool {
    s.len() == CONFIG_KEY_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// 12 upper-case hex digits from a MAC written with or without `:`/`-`/`.` separators.
fn normalize_mac(mac: &str) -> Option<String> {
    let hex: String = mac
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect::<String>()
        .to_ascii_uppercase();
    (hex.len() == 12 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// Text from the network made storable: control characters become spaces, cut to `max`
/// characters, blank → `None`.
fn clean_text(s: Option<&str>, max: usize) -> Option<String> {
    let s: String = s?
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// The lowest number of `start..=end` (digit strings of one width) not in `used`. Runs at most
/// `used.len() + 1` steps whatever the range's size.
fn pick_number(start: &str, end: &str, used: &[String]) -> Result<String, StoreError> {
    let width = start.len();
    let parse = |field: &'static str, s: &str| -> Result<u128, StoreError> {
        if s.is_empty() || s.len() > 32 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(StoreError::Invalid {
                field,
                message: format!("{s:?} must be 1 to 32 digits: fix the autoregistration range"),
            });
        }
        s.parse().map_err(|_| StoreError::Invalid {
            field,
            message: format!("{s:?} is not a number"),
        })
    };
    let (lo, hi) = (
        parse("autoreg_start_dn", start)?,
        parse("autoreg_end_dn", end)?,
    );
    if end.len() != width || lo > hi {
        return Err(StoreError::Invalid {
            field: "autoreg_end_dn",
            message: format!(
                "the range {start}-{end} must have bounds of one length, start <= end: fix the \
                 autoregistration range"
            ),
        });
    }
    let taken: HashSet<u128> = used
        .iter()
        .filter(|u| u.len() == width && u.bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|u| u.parse().ok())
        .collect();
    let mut n = lo;
    loop {
        if !taken.contains(&n) {
            return Ok(format!("{n:0width$}"));
        }
        if n >= hi {
            return Err(StoreError::AutoregRangeFull {
                start: start.to_string(),
                end: end.to_string(),
            });
        }
        n += 1;
    }
}

/// Inside a write transaction: the next free number of the autoregistration range. Yields
/// `String`; returns [`StoreError::AutoregDisabled`] / [`StoreError::AutoregRangeFull`] from
/// the enclosing function.
macro_rules! next_autoreg_number {
    ($tx:ident) => {{
        type Range = (Option<String>, Option<String>, String);
        let range: Option<Range> = sqlx::query_as(
            "SELECT autoreg_start_dn, autoreg_end_dn, ivr_extensions FROM selfprov_settings \
             WHERE id = 1",
        )
        .fetch_optional(&mut *$tx)
        .await?;
        let (start, end, ivr) = match range {
            Some((Some(s), Some(e), ivr)) => (s, e, ivr),
            _ => return Err(StoreError::AutoregDisabled),
        };
        let width = i64::try_from(start.len()).unwrap_or(i64::MAX);
        // Only numbers of the range's width can clash; the range check itself is done in Rust
        // (numerically), not by the database's collation.
        let mut used: Vec<String> = sqlx::query_scalar(
            "SELECT number FROM lines WHERE length(number) = $1 \
             UNION SELECT autoreg_number FROM devices \
             WHERE autoreg_number IS NOT NULL AND length(autoreg_number) = $1 \
             UNION SELECT extension FROM users WHERE length(extension) = $1",
        )
        .bind(width)
        .fetch_all(&mut *$tx)
        .await?;
        used.extend(serde_json::from_str::<Vec<String>>(&ivr).unwrap_or_default());
        pick_number(&start, &end, &used)?
    }};
}

/// Inside a write transaction: a new guest SIP endpoint (random user name and password).
/// Yields `(endpoint_id, auth_username, password)`.
macro_rules! insert_guest_endpoint {
    ($tx:ident, $now:expr) => {{
        let password = generate_password();
        let new = NewSipEndpoint {
            auth_username: None,
            password: Some(password.clone()),
            ..NewSipEndpoint::default()
        };
        let id: i64 = insert_sip_in_tx!($tx, &new, $now);
        let username: String =
            sqlx::query_scalar("SELECT auth_username FROM sip_endpoints WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *$tx)
                .await?;
        (id, username, password)
    }};
}

/// Inside a write transaction: gives device `$id` a guest account if it lacks one (or lacks a
/// number), and a config key if it has none. `$keep_number` false: a number now used by a line
/// or user is replaced. Returns errors from the enclosing function.
macro_rules! ensure_guest_in_tx {
    ($tx:ident, $id:expr, $now:expr, $keep_number:expr) => {{
        let id: i64 = $id;
        let row: (Option<i64>, Option<String>, Option<String>) = sqlx::query_as(
            "SELECT guest_endpoint_id, autoreg_number, config_key FROM devices WHERE id = $1",
        )
        .bind(id)
        .fetch_one(&mut *$tx)
        .await?;
        let (endpoint, mut number, key) = row;
        if let (Some(n), false) = (number.as_deref(), $keep_number) {
            let clash: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM lines WHERE number = $1 UNION SELECT id FROM users WHERE extension = $1",
            )
            .bind(n)
            .fetch_optional(&mut *$tx)
            .await?;
            if clash.is_some() {
                sqlx::query("UPDATE devices SET autoreg_number = NULL WHERE id = $1")
                    .bind(id)
                    .execute(&mut *$tx)
                    .await?;
                number = None;
            }
        }
        if number.is_none() {
            let n = next_autoreg_number!($tx);
            sqlx::query("UPDATE devices SET autoreg_number = $2 WHERE id = $1")
                .bind(id)
                .bind(n.as_str())
                .execute(&mut *$tx)
                .await?;
        }
        if endpoint.is_none() {
            let (ep, _, _) = insert_guest_endpoint!($tx, $now);
            sqlx::query("UPDATE devices SET guest_endpoint_id = $2 WHERE id = $1")
                .bind(id)
                .bind(ep)
                .execute(&mut *$tx)
                .await?;
        }
        if key.is_none() {
            sqlx::query("UPDATE devices SET config_key = $2 WHERE id = $1")
                .bind(id)
                .bind(new_config_key())
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

/// Inside a write transaction: removes device `$id`'s guest account (endpoint deleted, number
/// released).
macro_rules! release_guest_in_tx {
    ($tx:ident, $id:expr) => {{
        let id: i64 = $id;
        let endpoint: Option<i64> =
            sqlx::query_scalar("SELECT guest_endpoint_id FROM devices WHERE id = $1")
                .bind(id)
                .fetch_one(&mut *$tx)
                .await?;
        sqlx::query(
            "UPDATE devices SET guest_endpoint_id = NULL, autoreg_number = NULL WHERE id = $1",
        )
        .bind(id)
        .execute(&mut *$tx)
        .await?;
        if let Some(ep) = endpoint {
            // A guest endpoint is on no line; the guard keeps a line's endpoint should one
            // ever be referenced by mistake.
            sqlx::query(
                "DELETE FROM sip_endpoints WHERE id = $1 \
                 AND NOT EXISTS (SELECT 1 FROM line_endpoints WHERE sip_endpoint_id = $1)",
            )
            .bind(ep)
            .execute(&mut *$tx)
            .await?;
        }
    }};
}

impl Store {
    /// Devices by store ID, with their lines, in ID order (missing IDs are skipped).
    pub(super) async fn get_devices(&self, ids: &[i64]) -> Result<Vec<Device>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // Integers: safe to splice.
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!("{} WHERE d.id IN ({list}) ORDER BY d.id", device_columns!());
        let mut devices: Vec<Device> = with_pool!(self, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| device_from_row!(r))
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        let mut lines = self.device_lines(ids).await?;
        for d in &mut devices {
            d.lines = lines.remove(&d.id).unwrap_or_default();
        }
        Ok(devices)
    }

    /// The digest credential of `auth_username`, for the registrar (REGISTER and INVITE): a
    /// line's endpoint (number = the line's number) or a device's guest account (number = its
    /// autoreg number). `None`: no such user name, or an endpoint on no line and no device
    /// (it has no address of record to register).
    pub async fn find_sip_account(
        &self,
        auth_username: &str,
    ) -> Result<Option<SipAccount>, StoreError> {
        type Row = (
            i64,
            String,
            String,
            Option<i64>,
            Option<String>,
            Option<i64>,
            Option<String>,
        );
        let row: Option<Row> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT s.id, s.auth_username, s.password, le.line_id, l.number, d.id, \
                 d.autoreg_number FROM sip_endpoints s \
                 LEFT JOIN line_endpoints le ON le.sip_endpoint_id = s.id \
                 LEFT JOIN lines l ON l.id = le.line_id \
                 LEFT JOIN devices d ON d.guest_endpoint_id = s.id \
                 WHERE s.auth_username = $1",
            )
            .bind(auth_username)
            .fetch_optional(pool)
            .await?
        });
        let Some((endpoint_id, auth_username, password, line_id, line_number, device, guest)) = row
        else {
            return Ok(None);
        };
        let (number, kind) = match (line_id, line_number, device, guest) {
            (Some(line_id), Some(number), _, _) => (number, AccountKind::Line { line_id }),
            (_, _, Some(device_id), Some(number)) => (number, AccountKind::Guest { device_id }),
            _ => return Ok(None),
        };
        Ok(Some(SipAccount {
            endpoint_id,
            auth_username,
            password,
            number,
            kind,
        }))
    }

    /// The device with this MAC (any separators, any case). `None` also for a string that is
    /// not a MAC.
    pub async fn find_device_by_mac(&self, mac: &str) -> Result<Option<Device>, StoreError> {
        let Some(mac) = normalize_mac(mac) else {
            return Ok(None);
        };
        let id: Option<i64> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT id FROM devices WHERE mac = $1")
                .bind(mac.as_str())
                .fetch_optional(pool)
                .await?
        });
        match id {
            Some(id) => self.get_device(id).await,
            None => Ok(None),
        }
    }

    /// The device whose config key this is. `None` also for a string not shaped like a key.
    pub async fn find_device_by_config_key(&self, key: &str) -> Result<Option<Device>, StoreError> {
        if !is_config_key(key) {
            return Ok(None);
        }
        let id: Option<i64> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT id FROM devices WHERE config_key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await?
        });
        match id {
            Some(id) => self.get_device(id).await,
            None => Ok(None),
        }
    }

    /// The devices that carry SIP endpoint `endpoint_id`: the device whose guest account it is,
    /// and every device with the endpoint's line (a shared line is on several).
    pub async fn devices_for_account(&self, endpoint_id: i64) -> Result<Vec<Device>, StoreError> {
        let ids: Vec<i64> = with_pool!(self, |pool| {
            sqlx::query_scalar(
                "SELECT id FROM devices WHERE guest_endpoint_id = $1 \
                 UNION SELECT dl.device_id FROM device_lines dl \
                 JOIN line_endpoints le ON le.line_id = dl.line_id \
                 WHERE le.sip_endpoint_id = $1",
            )
            .bind(endpoint_id)
            .fetch_all(pool)
            .await?
        });
        self.get_devices(&ids).await
    }

    /// An unknown MAC becomes a device in state `autoprov` with the next free number of the
    /// autoregistration range, a guest SIP account of its own, a config key, and the settings'
    /// autoregistration device template; a device already in autoprov gets its existing account
    /// back (idempotent: `created` false; one missing its account or key gets them). All in one
    /// write transaction.
    ///
    /// Errors: [`StoreError::AutoregDisabled`] (no range in the settings),
    /// [`StoreError::AutoregRangeFull`], [`StoreError::NotAutoprov`] (the MAC is a device in
    /// another state), [`StoreError::Invalid`] (not a MAC, bad vendor).
    pub async fn autoprov_device(
        &self,
        mac: &str,
        vendor: &str,
        model: Option<&str>,
        user_agent: Option<&str>,
    ) -> Result<Autoprov, StoreError> {
        let Some(mac) = normalize_mac(mac) else {
            return Err(StoreError::Invalid {
                field: "mac",
                message: format!("{mac:?} must be 12 hex digits"),
            });
        };
        validate_text("vendor", vendor, true)?;
        let model = clean_text(model, super::MAX_TEXT);
        let user_agent = clean_text(user_agent, MAX_USER_AGENT);
        let now = now_millis();
        let (id, created): (i64, bool) = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let found: Option<(i64, String)> =
                sqlx::query_as("SELECT id, state FROM devices WHERE mac = $1")
                    .bind(mac.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
            let (id, created) = match found {
                Some((id, state)) if state != DeviceState::Autoprov.as_str() => {
                    return Err(StoreError::NotAutoprov {
                        device_id: id,
                        state,
                    });
                }
                Some((id, _)) => {
                    sqlx::query(
                        "UPDATE devices SET vendor = COALESCE(vendor, $2), \
                         model = COALESCE($3, model), user_agent = COALESCE($4, user_agent), \
                         last_seen = $5 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(vendor)
                    .bind(model.as_deref())
                    .bind(user_agent.as_deref())
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                    ensure_guest_in_tx!(tx, id, now, true);
                    (id, false)
                }
                None => {
                    let number = next_autoreg_number!(tx);
                    let (endpoint, _, _) = insert_guest_endpoint!(tx, now);
                    let template: Option<i64> = sqlx::query_scalar::<_, Option<i64>>(
                        "SELECT autoreg_device_template_id FROM selfprov_settings WHERE id = 1",
                    )
                    .fetch_optional(&mut *tx)
                    .await?
                    .flatten();
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO devices (mac, vendor, model, user_agent, sip_identity, \
                         state, template_id, created_at, last_seen, config_key, \
                         guest_endpoint_id, autoreg_number) \
                         VALUES ($1, $2, $3, $4, '', $5, $6, $7, $7, $8, $9, $10) RETURNING id",
                    )
                    .bind(mac.as_str())
                    .bind(vendor)
                    .bind(model.as_deref())
                    .bind(user_agent.as_deref())
                    .bind(DeviceState::Autoprov.as_str())
                    .bind(template)
                    .bind(now)
                    .bind(new_config_key())
                    .bind(endpoint)
                    .bind(number.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                    (id, true)
                }
            };
            tx.commit().await?;
            Ok::<(i64, bool), StoreError>((id, created))
        })?;
        self.autoprov_record(id, created).await
    }

    /// The [`Autoprov`] record of a device that has a guest account.
    async fn autoprov_record(&self, id: i64, created: bool) -> Result<Autoprov, StoreError> {
        let device = self
            .get_device(id)
            .await?
            .ok_or(StoreError::NotFound { what: "device", id })?;
        let account = self.guest_account(id).await?.ok_or_else(|| {
            StoreError::Conflict(format!("device {id}'s guest account was removed meanwhile"))
        })?;
        let config_key = self.device_config_key(id).await?;
        Ok(Autoprov {
            device,
            account,
            config_key,
            created,
            resync_others: Vec::new(),
        })
    }

    /// The guest account of a device: `None` when it has none (never had, or released when the
    /// device was provisioned).
    pub async fn guest_account(&self, device_id: i64) -> Result<Option<GuestAccount>, StoreError> {
        let row: Option<(Option<String>, String, String)> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT d.autoreg_number, s.auth_username, s.password FROM devices d \
                 JOIN sip_endpoints s ON s.id = d.guest_endpoint_id WHERE d.id = $1",
            )
            .bind(device_id)
            .fetch_optional(pool)
            .await?
        });
        Ok(match row {
            Some((Some(number), auth_username, password)) => Some(GuestAccount {
                number,
                auth_username,
                password,
            }),
            _ => None,
        })
    }

    /// The device's config key, created if it has none. [`StoreError::NotFound`] without such
    /// a device.
    pub async fn device_config_key(&self, device_id: i64) -> Result<String, StoreError> {
        let found: Option<Option<String>> = with_pool!(self, |pool| {
            sqlx::query_scalar("SELECT config_key FROM devices WHERE id = $1")
                .bind(device_id)
                .fetch_optional(pool)
                .await?
        });
        match found {
            None => Err(StoreError::NotFound {
                what: "device",
                id: device_id,
            }),
            Some(Some(key)) => Ok(key),
            Some(None) => with_pool!(self, |pool| {
                let mut tx = pool.begin_write().await?;
                // Another writer may have set it meanwhile: keep theirs.
                let key: String = match sqlx::query_scalar::<_, Option<String>>(
                    "SELECT config_key FROM devices WHERE id = $1",
                )
                .bind(device_id)
                .fetch_one(&mut *tx)
                .await?
                {
                    Some(k) => k,
                    None => {
                        let k = new_config_key();
                        sqlx::query("UPDATE devices SET config_key = $2 WHERE id = $1")
                            .bind(device_id)
                            .bind(k.as_str())
                            .execute(&mut *tx)
                            .await?;
                        k
                    }
                };
                tx.commit().await?;
                Ok(key)
            }),
        }
    }

    /// Records a resync request sent to the device (now) and its outcome (`"200"`,
    /// `"timeout"`, `"no-contact"`...). [`StoreError::NotFound`] without such a device.
    pub async fn record_resync(&self, device_id: i64, outcome: &str) -> Result<(), StoreError> {
        validate_text("resync outcome", outcome, true)?;
        if outcome.len() > MAX_OUTCOME {
            return Err(StoreError::Invalid {
                field: "resync outcome",
                message: format!("longer than {MAX_OUTCOME} bytes"),
            });
        }
        let done = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let done =
                sqlx::query("UPDATE devices SET resync_at = $2, resync_outcome = $3 WHERE id = $1")
                    .bind(device_id)
                    .bind(now_millis())
                    .bind(outcome)
                    .execute(&mut *tx)
                    .await?;
            tx.commit().await?;
            Ok::<u64, StoreError>(done.rows_affected())
        })?;
        if done == 0 {
            return Err(StoreError::NotFound {
                what: "device",
                id: device_id,
            });
        }
        Ok(())
    }

    /// An authorised config fetch by the device from `ip`: sets `config_fetched_at`, `last_ip`
    /// and `last_seen`. A device in `provisioning` (or `error`: it came back late) that has
    /// lines moves to `provisioned` and its guest account is released (its number returns to
    /// the range). Do not call it for a guest config served to a device in autoprov: that
    /// fetch is not authenticated and must not make `ip` trusted.
    pub async fn config_fetched(&self, device_id: i64, ip: IpAddr) -> Result<Device, StoreError> {
        let now = now_millis();
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let state: Option<String> =
                sqlx::query_scalar("SELECT state FROM devices WHERE id = $1")
                    .bind(device_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(state) = state else {
                return Err(StoreError::NotFound {
                    what: "device",
                    id: device_id,
                });
            };
            sqlx::query(
                "UPDATE devices SET config_fetched_at = $2, last_ip = $3, last_seen = $2 \
                 WHERE id = $1",
            )
            .bind(device_id)
            .bind(now)
            .bind(ip.to_string())
            .execute(&mut *tx)
            .await?;
            let state: DeviceState = state.parse().map_err(StoreError::Corrupt)?;
            // With a PBX reporting registrations, the line registering there is what makes
            // the device provisioned (Store::line_registered), not this fetch.
            if matches!(state, DeviceState::Provisioning | DeviceState::Error)
                && !self.registration_watch
            {
                let lines: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM device_lines WHERE device_id = $1")
                        .bind(device_id)
                        .fetch_one(&mut *tx)
                        .await?;
                if lines > 0 {
                    sqlx::query("UPDATE devices SET state = $2 WHERE id = $1")
                        .bind(device_id)
                        .bind(DeviceState::Provisioned.as_str())
                        .execute(&mut *tx)
                        .await?;
                    release_guest_in_tx!(tx, device_id);
                }
            }
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        self.get_device(device_id)
            .await?
            .ok_or(StoreError::NotFound {
                what: "device",
                id: device_id,
            })
    }

    /// A successful (digest-verified) REGISTER of SIP endpoint `endpoint_id` from `ip`: the
    /// `last_ip` and `last_seen` of the devices carrying the account; a device waiting for its
    /// new config (`provisioning`, `error`) that registers with a line account is `provisioned`.
    pub async fn record_registration(
        &self,
        endpoint_id: i64,
        ip: IpAddr,
    ) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            sqlx::query(
                "UPDATE devices SET last_ip = $2, last_seen = $3 WHERE guest_endpoint_id = $1 \
                 OR id IN (SELECT dl.device_id FROM device_lines dl \
                 JOIN line_endpoints le ON le.line_id = dl.line_id \
                 WHERE le.sip_endpoint_id = $1)",
            )
            .bind(endpoint_id)
            .bind(ip.to_string())
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
            // A phone that registers with its line's account has its new config, whether or not
            // its fetch was seen (another provisioning server, a cached file): provisioned, and
            // its guest account goes back to the range.
            let waiting: Vec<i64> = sqlx::query_scalar(
                "SELECT DISTINCT dl.device_id FROM device_lines dl \
                 JOIN line_endpoints le ON le.line_id = dl.line_id \
                 JOIN devices d ON d.id = dl.device_id \
                 WHERE le.sip_endpoint_id = $1 AND d.state IN ($2, $3)",
            )
            .bind(endpoint_id)
            .bind(DeviceState::Provisioning.as_str())
            .bind(DeviceState::Error.as_str())
            .fetch_all(&mut *tx)
            .await?;
            for device_id in waiting {
                sqlx::query("UPDATE devices SET state = $2 WHERE id = $1")
                    .bind(device_id)
                    .bind(DeviceState::Provisioned.as_str())
                    .execute(&mut *tx)
                    .await?;
                release_guest_in_tx!(tx, device_id);
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Devices in `provisioning` told to resync (a recorded `resync_at`) more than `timeout`
    /// ago without fetching their new config: set to `error` and returned (they show in
    /// `GET /devices?state=error`). A bound device never told to resync is not flagged: record
    /// an outcome such as `"no-contact"` with [`Store::record_resync`] when no NOTIFY could be
    /// sent.
    pub async fn flag_stale_resyncs(&self, timeout: Duration) -> Result<Vec<Device>, StoreError> {
        let timeout_ms = i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_millis().saturating_sub(timeout_ms);
        let ids: Vec<i64> = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let ids: Vec<i64> = sqlx::query_scalar(
                "UPDATE devices SET state = $1 WHERE state = $2 AND resync_at IS NOT NULL \
                 AND resync_at < $3 RETURNING id",
            )
            .bind(DeviceState::Error.as_str())
            .bind(DeviceState::Provisioning.as_str())
            .bind(cutoff)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<Vec<i64>, StoreError>(ids)
        })?;
        self.get_devices(&ids).await
    }

    /// The device's line registered at the PBX: a device still in `provisioning` (or `error`) becomes
    /// `provisioned` and its guest account is released. False when it was not in
    /// `provisioning` (any more).
    pub async fn line_registered(&self, device_id: i64) -> Result<bool, StoreError> {
        let changed = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query(
                "UPDATE devices SET state = $2, last_seen = $5 WHERE id = $1 AND state IN ($3, $4)",
            )
            .bind(device_id)
            .bind(DeviceState::Provisioned.as_str())
            .bind(DeviceState::Provisioning.as_str())
            .bind(DeviceState::Error.as_str())
            .bind(now_millis())
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() > 0 {
                release_guest_in_tx!(tx, device_id);
            }
            tx.commit().await?;
            Ok::<bool, StoreError>(done.rows_affected() > 0)
        })?;
        Ok(changed)
    }

    /// Puts a device back into autoprov (Wazo's `GET /devices/{id}/autoprov`), in one write
    /// transaction: lines and owner removed, resync state and `last_ip` cleared, a NEW config
    /// key (old URLs stop working), and a guest account: the device's own if it still has one
    /// whose number no line or user took meanwhile, else a new one. Audited as `unbound`.
    /// [`StoreError::NotFound`], or the autoregistration errors when a number is needed.
    pub async fn reset_to_autoprov(&self, device_id: i64) -> Result<Autoprov, StoreError> {
        let now = now_millis();
        let others = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let Some((key, owner)) = device_audit_key_in_tx!(tx, device_id) else {
                return Err(StoreError::NotFound {
                    what: "device",
                    id: device_id,
                });
            };
            let others = unbind_in_tx!(&self.pbx, tx, device_id);
            sqlx::query(
                "UPDATE devices SET config_key = $2, resync_at = NULL, resync_outcome = NULL, \
                 last_ip = NULL, last_seen = $3 WHERE id = $1",
            )
            .bind(device_id)
            .bind(new_config_key())
            .bind(now)
            .execute(&mut *tx)
            .await?;
            ensure_guest_in_tx!(tx, device_id, now, false);
            insert_audit!(
                tx,
                Some(device_id),
                &key,
                owner.as_deref(),
                None::<AuthMethod>,
                AuditOutcome::Unbound,
                "reset to autoprov"
            );
            tx.commit().await?;
            Ok::<Vec<i64>, StoreError>(others)
        })?;
        self.outbox_written();
        let mut record = self.autoprov_record(device_id, false).await?;
        record.resync_others = others;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn picks_lowest_free_keeping_leading_zeros() {
        assert_eq!(pick_number("0100", "0199", &[]).unwrap(), "0100");
        assert_eq!(
            pick_number(
                "0100",
                "0199",
                &s(&["0100", "0101", "0103", "100", "00101"])
            )
            .unwrap(),
            "0102"
        );
        assert_eq!(pick_number("7", "7", &[]).unwrap(), "7");
        assert!(matches!(
            pick_number("0100", "0101", &s(&["0100", "0101"])),
            Err(StoreError::AutoregRangeFull { .. })
        ));
        // A huge range with nothing used: found at once; the loop is bounded by `used`.
        let start = "1".repeat(32);
        let end = "9".repeat(32);
        assert_eq!(pick_number(&start, &end, &[]).unwrap(), start);
        assert!(matches!(
            pick_number("0199", "0100", &[]),
            Err(StoreError::Invalid { .. })
        ));
        assert!(matches!(
            pick_number("100", "1999", &[]),
            Err(StoreError::Invalid { .. })
        ));
        assert!(matches!(
            pick_number("1a", "19", &[]),
            Err(StoreError::Invalid { .. })
        ));
    }

    #[test]
    fn macs_keys_and_text() {
        assert_eq!(
            normalize_mac("00:15:65:aa:bb:cc").as_deref(),
            Some("001565AABBCC")
        );
        assert_eq!(
            normalize_mac("0015.65aa.bbcc").as_deref(),
            Some("001565AABBCC")
        );
        assert_eq!(normalize_mac("001565AABBC"), None);
        assert_eq!(normalize_mac("001565AABBCG"), None);
        let k = new_config_key();
        assert!(is_config_key(&k), "{k}");
        assert_ne!(k, new_config_key());
        assert!(!is_config_key(&"A".repeat(32)), "upper case is not a key");
        assert!(!is_config_key(&"a".repeat(31)));
        assert!(!is_config_key("../etc/passwd"));
        assert_eq!(clean_text(Some("  a\r\nb "), 10).as_deref(), Some("a  b"));
        assert_eq!(clean_text(Some(" \t "), 10), None);
        assert_eq!(clean_text(Some("abcdef"), 3).as_deref(), Some("abc"));
    }

    #[test]
    fn debug_hides_secrets() {
        let a = SipAccount {
            endpoint_id: 1,
            auth_username: "u".into(),
            password: "hunter2hunter2".into(),
            number: "7000".into(),
            kind: AccountKind::Guest { device_id: 3 },
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
