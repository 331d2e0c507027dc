//! The API's JSON shapes shared by several resources (enums, call forwards, security profile,
//! speed dials), and the partial-update merge of `PUT`.
//!
//! The store's records derive serde but not utoipa's `ToSchema`, and an API must refuse unknown
//! fields (a typo would otherwise be silently ignored) while the store's records accept them.
//! So the API has its own types, converted to and from the store's with exhaustive struct
//! literals: a field added to a store record fails to compile here until the API shows it.

use super::error::ApiError;
use crate::store;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Declares an API enum mirroring a store enum, with conversions both ways.
macro_rules! mirror_enum {
    ($(#[$m:meta])* $name:ident <-> $store:ty { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant),+
        }

        impl From<$store> for $name {
            fn from(v: $store) -> Self {
                match v {
                    $(<$store>::$variant => $name::$variant),+
                }
            }
        }

        impl From<$name> for $store {
            fn from(v: $name) -> Self {
                match v {
                    $($name::$variant => <$store>::$variant),+
                }
            }
        }
    };
}

mirror_enum! {
    /// SIP signalling transport.
    Transport <-> store::Transport { Udp = "udp", Tcp = "tcp", Tls = "tls" }
}

mirror_enum! {
    /// The protocol a phone speaks.
    Protocol <-> store::Protocol { Sip = "sip", Sccp = "sccp" }
}

mirror_enum! {
    /// `basic`: one line; `advanced`: up to eight.
    DeviceType <-> store::DeviceType { Basic = "basic", Advanced = "advanced" }
}

mirror_enum! {
    /// Where a device is in its life.
    DeviceState <-> store::DeviceState {
        Autoprov = "autoprov",
        Provisioning = "provisioning",
        Provisioned = "provisioned",
        Error = "error",
    }
}

/// One call-forward setting.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CallForward {
    /// Digits the call goes to; required when `enabled`.
    pub destination: Option<String>,
    pub enabled: bool,
}

/// Call forward all / busy / no answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CallForwards {
    pub all: CallForward,
    pub busy: CallForward,
    pub no_answer: CallForward,
}

impl From<&store::CallForward> for CallForward {
    fn from(c: &store::CallForward) -> Self {
        let store::CallForward {
            destination,
            enabled,
        } = c;
        CallForward {
            destination: destination.clone(),
            enabled: *enabled,
        }
    }
}

impl From<CallForward> for store::CallForward {
    fn from(c: CallForward) -> Self {
        store::CallForward {
            destination: c.destination,
            enabled: c.enabled,
        }
    }
}

impl From<&store::CallForwards> for CallForwards {
    fn from(c: &store::CallForwards) -> Self {
        let store::CallForwards {
            all,
            busy,
            no_answer,
        } = c;
        CallForwards {
            all: all.into(),
            busy: busy.into(),
            no_answer: no_answer.into(),
        }
    }
}

impl From<CallForwards> for store::CallForwards {
    fn from(c: CallForwards) -> Self {
        store::CallForwards {
            all: c.all.into(),
            busy: c.busy.into(),
            no_answer: c.no_answer.into(),
        }
    }
}

/// The security profile of a device template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecurityProfile {
    pub transport: Transport,
    /// Digest authentication of the phone's requests.
    pub digest_required: bool,
    /// Encrypted signalling and media (TLS + SRTP); requires `transport: tls`.
    pub tls: bool,
}

impl From<&store::SecurityProfile> for SecurityProfile {
    fn from(s: &store::SecurityProfile) -> Self {
        let store::SecurityProfile {
            transport,
            digest_required,
            tls,
        } = s;
        SecurityProfile {
            transport: (*transport).into(),
            digest_required: *digest_required,
            tls: *tls,
        }
    }
}

impl From<SecurityProfile> for store::SecurityProfile {
    fn from(s: SecurityProfile) -> Self {
        store::SecurityProfile {
            transport: s.transport.into(),
            digest_required: s.digest_required,
            tls: s.tls,
        }
    }
}

impl Default for SecurityProfile {
    fn default() -> Self {
        (&store::SecurityProfile::default()).into()
    }
}

/// A speed-dial key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpeedDial {
    /// 1-based key position.
    pub position: u32,
    /// Digits (or `*`/`#`) dialled.
    pub number: String,
    pub label: String,
}

impl From<&store::SpeedDial> for SpeedDial {
    fn from(s: &store::SpeedDial) -> Self {
        let store::SpeedDial {
            position,
            number,
            label,
        } = s;
        SpeedDial {
            position: *position,
            number: number.clone(),
            label: label.clone(),
        }
    }
}

impl From<SpeedDial> for store::SpeedDial {
    fn from(s: SpeedDial) -> Self {
        store::SpeedDial {
            position: s.position,
            number: s.number,
            label: s.label,
        }
    }
}

/// Applies a `PUT` body to the current state of a resource: the fields the body names are
/// replaced (objects such as `call_forward` are merged field by field), the others kept, as
/// Wazo's `PUT` does. `null` sets an optional field to none.
pub fn merge(current: &mut Value, patch: Value) {
    match (current, patch) {
        (Value::Object(cur), Value::Object(p)) => {
            for (k, v) in p {
                match cur.get_mut(&k) {
                    Some(c) if c.is_object() && v.is_object() => merge(c, v),
                    _ => {
                        cur.insert(k, v);
                    }
                }
            }
        }
        (cur, p) => *cur = p,
    }
}

/// Converts the merged JSON to the input type, with errors naming the field (422).
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    let bytes = serde_json::to_vec(&v).map_err(|e| ApiError::internal(e.to_string()))?;
    super::error::parse_json(&bytes)
}

/// The partial update of `current` (an input type) by a `PUT` body.
pub fn apply_put<T: Serialize + DeserializeOwned>(
    current: &T,
    patch: Value,
) -> Result<T, ApiError> {
    if !patch.is_object() {
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "the body must be a JSON object of the fields to change",
        ));
    }
    let mut v = serde_json::to_value(current).map_err(|e| ApiError::internal(e.to_string()))?;
    merge(&mut v, patch);
    from_value(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_replaces_named_fields_only() {
        let mut cur = json!({"a": 1, "b": {"x": 1, "y": 2}, "c": "keep", "d": [1, 2]});
        merge(
            &mut cur,
            json!({"a": 2, "b": {"y": 3}, "d": [3], "e": null}),
        );
        assert_eq!(
            cur,
            json!({"a": 2, "b": {"x": 1, "y": 3}, "c": "keep", "d": [3], "e": null})
        );
    }

    #[test]
    fn put_refuses_unknown_fields_and_non_objects() {
        let cf = CallForwards::default();
        let e = apply_put(&cf, json!({"al": {}})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("al"));
        let e = apply_put(&cf, json!({"all": {"enabled": "yes"}})).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("all.enabled"));
        assert!(apply_put(&cf, json!([1])).is_err());
        let cf = apply_put(
            &cf,
            json!({"busy": {"enabled": true, "destination": "1002"}}),
        )
        .unwrap();
        assert!(cf.busy.enabled && !cf.all.enabled);
    }
}
