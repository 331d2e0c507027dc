//! What a PBX is told: the events of the outbox, as stored (JSON) and as a webhook receives them.
//!
//! A line is *live* when it appears on at least one device: then the PBX must know its account
//! (`line.upserted`, carrying the whole desired state, so delivering it twice or late is
//! harmless); when it appears on none, or is deleted, the PBX must forget it (`line.deleted`).
//! `device.bound` / `device.unbound` tell receivers that track devices (a webhook) which phone
//! got or lost which lines; the database connectors need only the line events.

use serde::{Deserialize, Serialize};

/// The account a live line has at the PBX. The PBX user is the line's number (the address of
/// record's user part: what Kamailio's registrar and an Asterisk dialplan `PJSIP/${EXTEN}` look
/// up); the password is the line's SIP endpoint's.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineState {
    pub line_id: i64,
    /// The directory number, also the PBX account's user name.
    pub number: String,
    pub context: String,
    pub caller_id_name: String,
    /// Voicemail box, when the line template gives the line one.
    pub voicemail: Option<String>,
    pub max_calls: u32,
    /// The SIP endpoint's own digest user name (what selfprov's registrar checks).
    pub auth_username: String,
    pub password: String,
    /// `udp`, `tcp` or `tls`.
    pub transport: String,
    /// Store IDs of the devices the line appears on, ascending (never empty).
    pub device_ids: Vec<i64>,
}

impl std::fmt::Debug for LineState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineState")
            .field("line_id", &self.line_id)
            .field("number", &self.number)
            .field("context", &self.context)
            .field("auth_username", &self.auth_username)
            .field("password", &"***")
            .field("device_ids", &self.device_ids)
            .finish_non_exhaustive()
    }
}

/// A device's side of a binding change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceChange {
    pub device_id: i64,
    /// 12 upper-case hex digits, when known.
    pub mac: Option<String>,
    pub vendor: Option<String>,
    pub model: Option<String>,
    /// The owner's user ID (the new owner for `device.bound`, the one it had for
    /// `device.unbound`).
    pub user_id: Option<String>,
    /// Store IDs of the lines concerned (bound: the lines it has now; unbound: the ones it lost).
    pub line_ids: Vec<i64>,
}

/// One outbox event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
pub enum PbxEvent {
    #[serde(rename = "line.upserted")]
    LineUpserted(LineState),
    #[serde(rename = "line.deleted")]
    LineDeleted {
        line_id: i64,
        number: Option<String>,
    },
    #[serde(rename = "device.bound")]
    DeviceBound(DeviceChange),
    #[serde(rename = "device.unbound")]
    DeviceUnbound(DeviceChange),
}

impl PbxEvent {
    /// The event's name (`line.upserted`...), as stored and as a webhook's `event`.
    pub fn name(&self) -> &'static str {
        match self {
            PbxEvent::LineUpserted(_) => "line.upserted",
            PbxEvent::LineDeleted { .. } => "line.deleted",
            PbxEvent::DeviceBound(_) => "device.bound",
            PbxEvent::DeviceUnbound(_) => "device.unbound",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_its_name_as_tag() {
        let e = PbxEvent::LineDeleted {
            line_id: 7,
            number: Some("1001".into()),
        };
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(
            json,
            r#"{"event":"line.deleted","data":{"line_id":7,"number":"1001"}}"#
        );
        assert_eq!(serde_json::from_str::<PbxEvent>(&json).unwrap(), e);
        assert_eq!(e.name(), "line.deleted");
    }

    #[test]
    fn debug_hides_the_password() {
        let s = LineState {
            line_id: 1,
            number: "1001".into(),
            context: "default".into(),
            caller_id_name: "Jane".into(),
            voicemail: None,
            max_calls: 4,
            auth_username: "abc".into(),
            password: "hunter2hunter2".into(),
            transport: "udp".into(),
            device_ids: vec![3],
        };
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
