//! `/devices`: the phones selfprov knows, with their owner, state and lines.
//!
//! Phones create themselves by calling the IVR; admins may also register one by hand, find one
//! (`?search=<mac>`, in any of the usual MAC spellings), change its template, type or state, and
//! delete it. Owner and lines change through binding and `/lines/{id}/devices/{id}`.

use super::crud::{crud, Record};
use super::schema::{DeviceState, DeviceType, Protocol};
use crate::store::{format_time, Device, DeviceLine, ListQuery, NewDevice};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The fields of a device a client sets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceIn {
    /// 12 hex digits; separators (`:` `-` `.`) and lower case are accepted and normalised.
    /// A device needs a MAC or a device name.
    pub mac: Option<String>,
    /// A vendor device name (Cisco `SEP…`).
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

impl From<&NewDevice> for DeviceIn {
    fn from(d: &NewDevice) -> Self {
        let NewDevice {
            mac,
            device_name,
            vendor,
            model,
            firmware,
            protocol,
            device_type,
            description,
            template_id,
            state,
        } = d;
        DeviceIn {
            mac: mac.clone(),
            device_name: device_name.clone(),
            vendor: vendor.clone(),
            model: model.clone(),
            firmware: firmware.clone(),
            protocol: (*protocol).into(),
            device_type: (*device_type).into(),
            description: description.clone(),
            template_id: *template_id,
            state: state.map(Into::into),
        }
    }
}

impl Default for DeviceIn {
    fn default() -> Self {
        (&NewDevice::default()).into()
    }
}

impl From<&Device> for DeviceIn {
    fn from(d: &Device) -> Self {
        DeviceIn {
            mac: d.mac.clone(),
            device_name: d.device_name.clone(),
            vendor: d.vendor.clone(),
            model: d.model.clone(),
            firmware: d.firmware.clone(),
            protocol: d.protocol.into(),
            device_type: d.device_type.into(),
            description: d.description.clone(),
            template_id: d.template_id,
            state: Some(d.state.into()),
        }
    }
}

impl From<DeviceIn> for NewDevice {
    fn from(d: DeviceIn) -> Self {
        NewDevice {
            mac: d.mac,
            device_name: d.device_name,
            vendor: d.vendor,
            model: d.model,
            firmware: d.firmware,
            protocol: d.protocol.into(),
            device_type: d.device_type.into(),
            description: d.description,
            template_id: d.template_id,
            state: d.state.map(Into::into),
        }
    }
}

/// A line key of a device.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceLineOut {
    /// 1 is the primary line.
    pub position: u32,
    /// The directory number on that key.
    pub number: String,
    /// The line's ID.
    pub line_id: Option<i64>,
    /// Text shown next to the key.
    pub label: String,
}

/// A device as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceOut {
    pub id: i64,
    /// 12 upper-case hex digits.
    pub mac: Option<String>,
    pub device_name: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub user_agent: Option<String>,
    /// The SIP identity (From URI user@host) the phone called with.
    pub sip_identity: String,
    /// The owner's user ID.
    pub owner: Option<String>,
    /// The owner's store ID.
    pub owner_id: Option<i64>,
    pub state: DeviceState,
    pub protocol: Protocol,
    pub device_type: DeviceType,
    pub description: String,
    pub template_id: Option<i64>,
    pub lines: Vec<DeviceLineOut>,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC.
    pub last_seen: String,
    /// The guest (autoprov) account's number, while the phone has one.
    pub autoreg_number: Option<String>,
    /// When the last resync NOTIFY was sent (RFC 3339 UTC) and what came of it, e.g.
    /// `check-sync;reboot=true 200 from 10.0.0.7:5060`.
    pub resync_at: Option<String>,
    pub resync_outcome: Option<String>,
    /// When the phone last fetched its config (RFC 3339 UTC).
    pub config_fetched_at: Option<String>,
    /// The address of its last authenticated request (REGISTER or config fetch).
    pub last_ip: Option<String>,
}

impl Record<Device> for DeviceOut {
    fn full(d: &Device) -> Self {
        let Device {
            id,
            mac,
            device_name,
            vendor,
            model,
            firmware,
            user_agent,
            sip_identity,
            owner,
            owner_id,
            state,
            protocol,
            device_type,
            description,
            template_id,
            lines,
            created_at,
            last_seen,
            autoreg_number,
            resync_at,
            resync_outcome,
            config_fetched_at,
            last_ip,
        } = d;
        DeviceOut {
            id: *id,
            mac: mac.clone(),
            device_name: device_name.clone(),
            vendor: vendor.clone(),
            model: model.clone(),
            firmware: firmware.clone(),
            user_agent: user_agent.clone(),
            sip_identity: sip_identity.clone(),
            owner: owner.clone(),
            owner_id: *owner_id,
            state: (*state).into(),
            protocol: (*protocol).into(),
            device_type: (*device_type).into(),
            description: description.clone(),
            template_id: *template_id,
            lines: lines
                .iter()
                .map(|l| {
                    let DeviceLine {
                        position,
                        number,
                        line_id,
                        label,
                    } = l;
                    DeviceLineOut {
                        position: *position,
                        number: number.clone(),
                        line_id: *line_id,
                        label: label.clone(),
                    }
                })
                .collect(),
            created_at: format_time(*created_at),
            last_seen: format_time(*last_seen),
            autoreg_number: autoreg_number.clone(),
            resync_at: resync_at.map(format_time),
            resync_outcome: resync_outcome.clone(),
            config_fetched_at: config_fetched_at.map(format_time),
            last_ip: last_ip.clone(),
        }
    }

    /// A MAC typed with separators (`00:1a:2b:...`, `001A.2B3C...`) searches the stored form.
    fn adjust_query(q: &mut ListQuery) {
        if let Some(s) = q.search.as_deref() {
            if let Some(mac) = mac_search_form(s) {
                q.search = Some(mac);
            }
        }
    }
}

/// The stored form of a MAC (or part of one) typed with separators; `None` when the text has
/// no separator or is not hex digits and separators.
fn mac_search_form(s: &str) -> Option<String> {
    let s = s.trim();
    if !s.contains([':', '-', '.']) {
        return None;
    }
    let hex: String = s
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect();
    (!hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_uppercase())
}

crud! {
    tag: "devices",
    collection: "/devices",
    item: "/devices/{device_id}",
    id: "device_id",
    what: "device",
    record: Device,
    new: NewDevice,
    input: DeviceIn,
    output: DeviceOut,
    store: [list_devices_page, get_device, create_device, update_device, delete_device],
    docs: [
        "List devices. Orders by `id` (default), `mac`, `device_name`, `vendor`, `model`, `state`, `description`, `owner`, `created_at`, `last_seen`; `search` looks in the MAC (typed with or without separators), names, vendor, model, description, SIP identity and owner.",
        "Register a device by hand (phones calling the IVR register themselves).",
        "Get a device with its owner and lines.",
        "Change a device: the fields in the body are replaced, the others kept.",
        "Delete a device (its binding and lines go with it; audited).",
    ],
    handlers: [list_devices, create_device, get_device, update_device, delete_device],
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_search_forms() {
        assert_eq!(mac_search_form("00:1a:2b").as_deref(), Some("001A2B"));
        assert_eq!(mac_search_form("001A.2B3C").as_deref(), Some("001A2B3C"));
        assert_eq!(
            mac_search_form("001a2b"),
            None,
            "no separator: searched as typed"
        );
        assert_eq!(mac_search_form("cisco-phone"), None);
        assert_eq!(mac_search_form("::"), None);
    }
}

/// What `POST /devices/{id}/resync` and `GET /devices/{id}/autoprov` answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ResyncQueued {
    /// The device as it is now (after `autoprov`: back in state autoprov, no lines).
    pub device: DeviceOut,
    /// Whether a resync NOTIFY was queued (false: this process runs no SIP server, e.g. the
    /// CLI; the phone picks up its config when it next restarts).
    pub resync_queued: bool,
}

fn queue_resync(state: &super::ApiState, id: i64) -> bool {
    state.resync.as_ref().is_some_and(|tx| tx.send(id).is_ok())
}

/// Tell a phone to re-read its configuration now.
///
/// Sends the vendor's resync NOTIFY (check-sync, Cisco service-control) to every live
/// registration of the device's accounts. The outcome appears in the device's
/// `resync_outcome` a moment later; a device that then fetches no config within
/// `provisioning.resync_timeout_secs` goes to state `error`.
#[utoipa::path(
    post,
    path = "/devices/{device_id}/resync",
    tag = "devices",
    params(("device_id" = i64, Path, description = "The device's ID")),
    responses(
        (status = 202, description = "Resync queued", body = ResyncQueued),
        (status = 400, description = "Bad ID", body = super::error::ErrorBody),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
        (status = 404, description = "No such device", body = super::error::ErrorBody),
    )
)]
pub async fn resync_device(
    axum::extract::State(state): axum::extract::State<super::ApiState>,
    super::error::PathParams(id): super::error::PathParams<String>,
) -> Result<(axum::http::StatusCode, axum::Json<ResyncQueued>), super::error::ApiError> {
    let id = super::error::path_id("device_id", &id)?;
    let device = state
        .store
        .get_device(id)
        .await?
        .ok_or_else(|| super::error::not_found_id("device", id))?;
    let resync_queued = queue_resync(&state, id);
    Ok((
        axum::http::StatusCode::ACCEPTED,
        axum::Json(ResyncQueued {
            device: DeviceOut::full(&device),
            resync_queued,
        }),
    ))
}

/// Put a phone back into autoprov (as Wazo's `GET /devices/{id}/autoprov`).
///
/// Removes its lines and owner, gives it a guest account again (its old number if still
/// free), draws a new config URL key, and tells it to resync: it fetches the guest config and
/// can be provisioned again through the IVR. Audited as `unbound`.
#[utoipa::path(
    get,
    path = "/devices/{device_id}/autoprov",
    tag = "devices",
    params(("device_id" = i64, Path, description = "The device's ID")),
    responses(
        (status = 200, description = "Back in autoprov", body = ResyncQueued),
        (status = 400, description = "Bad ID", body = super::error::ErrorBody),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
        (status = 404, description = "No such device", body = super::error::ErrorBody),
        (status = 409, description = "Autoregistration off or its range full", body = super::error::ErrorBody),
    )
)]
pub async fn autoprov_device(
    axum::extract::State(state): axum::extract::State<super::ApiState>,
    super::error::PathParams(id): super::error::PathParams<String>,
) -> Result<axum::Json<ResyncQueued>, super::error::ApiError> {
    let id = super::error::path_id("device_id", &id)?;
    if state.store.get_device(id).await?.is_none() {
        return Err(super::error::not_found_id("device", id));
    }
    let autoprov = state.store.reset_to_autoprov(id).await?;
    let resync_queued = queue_resync(&state, id);
    // The phones that shared a line with it got that line's new password.
    for other in &autoprov.resync_others {
        queue_resync(&state, *other);
    }
    Ok(axum::Json(ResyncQueued {
        device: DeviceOut::full(&autoprov.device),
        resync_queued,
    }))
}
