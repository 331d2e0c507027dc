//! Devices: the CLI's and server's methods (`list_devices`, `get_device`, `unbind_device`,
//! `set_device_state`) and the admin API's CRUD (`list_devices_page`, `create_device`,
//! `update_device`, `delete_device`).

use super::list::{run_list, ListSpec};
use super::{
    from_millis, now_millis, to_u32, validate_text, AuditOutcome, AuthMethod, Backend, Device,
    DeviceLine, DeviceState, ListQuery, NewDevice, Page, Store, StoreError, WritePool,
    DEVICE_LINE_SELECT,
};
use std::collections::HashMap;

const DEVICES: ListSpec = ListSpec {
    select: "SELECT d.id, d.mac, d.device_name, d.vendor, d.model, d.firmware, d.user_agent, \
             d.sip_identity, u.user_id AS owner, d.owner_id, d.state, d.protocol, d.device_type, \
             d.description, d.template_id, d.created_at, d.last_seen, d.autoreg_number, \
             d.resync_at, d.resync_outcome, d.config_fetched_at, d.last_ip",
    from: "FROM devices d LEFT JOIN users u ON u.id = d.owner_id",
    orders: &[
        ("id", "d.id"),
        ("mac", "d.mac"),
        ("device_name", "d.device_name"),
        ("vendor", "d.vendor"),
        ("model", "d.model"),
        ("state", "d.state"),
        ("description", "d.description"),
        ("owner", "u.user_id"),
        ("created_at", "d.created_at"),
        ("last_seen", "d.last_seen"),
    ],
    default_order: "id",
    key: "d.id",
    search: &[
        "d.mac",
        "d.device_name",
        "d.vendor",
        "d.model",
        "d.description",
        "d.sip_identity",
        "u.user_id",
    ],
};

/// Checks, inside a write transaction, that the MAC is free and the template exists; returns
/// the error from the enclosing function otherwise.
macro_rules! check_device_refs {
    ($tx:ident, $new:expr, $self_id:expr) => {{
        let new: &NewDevice = $new;
        let self_id: Option<i64> = $self_id;
        if let Some(mac) = new.mac.as_deref() {
            let other: Option<i64> =
                sqlx::query_scalar("SELECT id FROM devices WHERE mac = $1 AND id <> $2")
                    .bind(mac)
                    .bind(self_id.unwrap_or(0))
                    .fetch_optional(&mut *$tx)
                    .await?;
            if other.is_some() {
                return Err(StoreError::Duplicate {
                    what: "device",
                    field: "mac",
                    value: mac.to_string(),
                });
            }
        }
        if let Some(t) = new.template_id {
            let found: Option<i64> =
                sqlx::query_scalar("SELECT id FROM device_templates WHERE id = $1")
                    .bind(t)
                    .fetch_optional(&mut *$tx)
                    .await?;
            if found.is_none() {
                return Err(StoreError::Invalid {
                    field: "template_id",
                    message: format!("no device template with ID {t}"),
                });
            }
        }
    }};
}

impl Store {
    /// Every device with its owner's user ID and its lines, oldest first (the CLI's list; the
    /// API pages with [`Store::list_devices_page`]).
    pub async fn list_devices(&self) -> Result<Vec<Device>, StoreError> {
        Ok(self.list_devices_page(&ListQuery::default()).await?.items)
    }

    /// A page of devices with their lines. `order`: `id` (default), `mac`, `device_name`,
    /// `vendor`, `model`, `state`, `description`, `owner`, `created_at`, `last_seen`;
    /// `search` looks in the MAC, names, vendor, model, description, SIP identity and owner.
    ///
    /// Named `_page` because the CLI's `list_devices()` keeps its name.
    pub async fn list_devices_page(&self, q: &ListQuery) -> Result<Page<Device>, StoreError> {
        let sql = DEVICES.build(q)?;
        let (total, mut items) = with_pool!(self, |pool| run_list!(pool, sql, device_from_row))?;
        let ids: Vec<i64> = items.iter().map(|d| d.id).collect();
        let mut lines = self.device_lines(&ids).await?;
        for d in &mut items {
            d.lines = lines.remove(&d.id).unwrap_or_default();
        }
        Ok(Page { total, items })
    }

    /// The lines of these devices, by position.
    pub(super) async fn device_lines(
        &self,
        ids: &[i64],
    ) -> Result<HashMap<i64, Vec<DeviceLine>>, StoreError> {
        let mut out: HashMap<i64, Vec<DeviceLine>> = HashMap::new();
        if ids.is_empty() {
            return Ok(out);
        }
        // Integers read from the store: safe to splice, and one query instead of one per device.
        let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let sql = format!(
            "{DEVICE_LINE_SELECT} WHERE dl.device_id IN ({list}) ORDER BY dl.device_id, dl.position"
        );
        let rows: Vec<(i64, DeviceLine)> = with_pool!(self, |pool| {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|r| device_line_from_row!(r))
                .collect::<Result<Vec<_>, StoreError>>()
        })?;
        for (device_id, line) in rows {
            out.entry(device_id).or_default().push(line);
        }
        Ok(out)
    }

    /// One device by its store ID, with its lines.
    pub async fn get_device(&self, id: i64) -> Result<Option<Device>, StoreError> {
        let device = with_pool!(self, |pool| {
            let row = sqlx::query(concat!(device_columns!(), " WHERE d.id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(|r| device_from_row!(r)).transpose()
        })?;
        let Some(mut device) = device else {
            return Ok(None);
        };
        device.lines = self
            .device_lines(&[id])
            .await?
            .remove(&id)
            .unwrap_or_default();
        Ok(Some(device))
    }

    /// Registers a device by hand (Wazo's `POST /devices`): it needs a MAC or a device name;
    /// a MAC already known is [`StoreError::Duplicate`]. No owner, no lines.
    pub async fn create_device(&self, new: NewDevice) -> Result<Device, StoreError> {
        let new = validate_new_device(new)?;
        let now = now_millis();
        let id: i64 = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            check_device_refs!(tx, &new, None);
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO devices (mac, device_name, vendor, model, firmware, sip_identity, \
                 state, protocol, device_type, description, template_id, created_at, last_seen) \
                 VALUES ($1, $2, $3, $4, $5, '', $6, $7, $8, $9, $10, $11, $11) RETURNING id",
            )
            .bind(new.mac.as_deref())
            .bind(new.device_name.as_deref())
            .bind(new.vendor.as_deref())
            .bind(new.model.as_deref())
            .bind(new.firmware.as_deref())
            .bind(new.state.unwrap_or(DeviceState::Autoprov).as_str())
            .bind(new.protocol.as_str())
            .bind(new.device_type.as_str())
            .bind(new.description.as_str())
            .bind(new.template_id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<i64, StoreError>(id)
        })?;
        self.get_device(id)
            .await?
            .ok_or(StoreError::NotFound { what: "device", id })
    }

    /// Replaces a device's descriptive fields (owner and lines change through binding and line
    /// associations). A device type with fewer lines than the device has is refused with
    /// [`StoreError::LineLimit`]. `state: None` keeps the state.
    pub async fn update_device(&self, id: i64, new: NewDevice) -> Result<Device, StoreError> {
        let new = validate_new_device(new)?;
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM devices WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound { what: "device", id });
            }
            check_device_refs!(tx, &new, Some(id));
            let lines: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM device_lines WHERE device_id = $1")
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
            let max = new.device_type.max_lines();
            if lines > i64::from(max) {
                return Err(StoreError::LineLimit {
                    device_id: id,
                    device_type: new.device_type.as_str(),
                    max,
                });
            }
            sqlx::query(
                "UPDATE devices SET mac = $2, device_name = $3, vendor = $4, model = $5, \
                 firmware = $6, state = COALESCE($7, state), protocol = $8, device_type = $9, \
                 description = $10, template_id = $11 WHERE id = $1",
            )
            .bind(id)
            .bind(new.mac.as_deref())
            .bind(new.device_name.as_deref())
            .bind(new.vendor.as_deref())
            .bind(new.model.as_deref())
            .bind(new.firmware.as_deref())
            .bind(new.state.map(DeviceState::as_str))
            .bind(new.protocol.as_str())
            .bind(new.device_type.as_str())
            .bind(new.description.as_str())
            .bind(new.template_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        self.get_device(id)
            .await?
            .ok_or(StoreError::NotFound { what: "device", id })
    }

    /// Deletes a device and its line appearances (the lines themselves stay); its audit events
    /// keep the device key. False when there is no such device.
    pub async fn delete_device(&self, id: i64) -> Result<bool, StoreError> {
        let done = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            // Its lines lose a phone: unbound first, so their credentials rotate and the PBX
            // connectors learn of it.
            let _others = unbind_in_tx!(&self.pbx, tx, id);
            let done = sqlx::query("DELETE FROM devices WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<bool, StoreError>(done.rows_affected() > 0)
        })?;
        self.outbox_written();
        Ok(done)
    }

    /// Removes a device's binding: owner cleared, lines removed, state `autoprov`, and an
    /// `unbound` audit event. False when there is no such device.
    pub async fn unbind_device(&self, device_id: i64, detail: &str) -> Result<bool, StoreError> {
        Ok(self
            .unbind_device_resync(device_id, detail)
            .await?
            .is_some())
    }

    /// As [`Store::unbind_device`]; `Some` with the other devices that shared a line with it:
    /// those lines' passwords changed, so they need a resync. `None` when there is no such
    /// device.
    pub async fn unbind_device_resync(
        &self,
        device_id: i64,
        detail: &str,
    ) -> Result<Option<Vec<i64>>, StoreError> {
        let others = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let Some((key, owner)) = device_audit_key_in_tx!(tx, device_id) else {
                return Ok(None);
            };
            let others = unbind_in_tx!(&self.pbx, tx, device_id);
            insert_audit!(
                tx,
                Some(device_id),
                &key,
                owner.as_deref(),
                None,
                AuditOutcome::Unbound,
                detail
            );
            tx.commit().await?;
            Ok::<Vec<i64>, StoreError>(others)
        })?;
        self.outbox_written();
        Ok(Some(others))
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
}

/// Normalises the MAC (hex digits only, upper case) and checks the text fields.
fn validate_new_device(mut new: NewDevice) -> Result<NewDevice, StoreError> {
    if let Some(mac) = new.mac.take() {
        let hex: String = mac
            .chars()
            .filter(|c| !matches!(c, ':' | '-' | '.'))
            .collect::<String>()
            .to_ascii_uppercase();
        if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::Invalid {
                field: "mac",
                message: format!("{mac:?} must be 12 hex digits (separators : - . allowed)"),
            });
        }
        new.mac = Some(hex);
    }
    if new.mac.is_none()
        && new
            .device_name
            .as_deref()
            .is_none_or(|n| n.trim().is_empty())
    {
        return Err(StoreError::Invalid {
            field: "mac",
            message: "a device needs a MAC or a device name".into(),
        });
    }
    for (field, value) in [
        ("device_name", new.device_name.as_deref()),
        ("vendor", new.vendor.as_deref()),
        ("model", new.model.as_deref()),
        ("firmware", new.firmware.as_deref()),
        ("description", Some(new.description.as_str())),
    ] {
        validate_text(field, value.unwrap_or(""), false)?;
    }
    Ok(new)
}
