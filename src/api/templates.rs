//! `/templates/device` and `/templates/line` (CUCM's universal device and line templates) and
//! `/user-profiles` (which templates apply to a user, whether and how many phones they may
//! self-provision). Patterns take the tags `#FirstName#`, `#LastName#`, `#UserID#`,
//! `#Extension#`, `#Product#`, `#Protocol#`; the store refuses an unknown tag when the template
//! is saved (422 naming the field).

use super::crud::{crud, Record};
use super::schema::{CallForwards, SecurityProfile, SpeedDial};
use crate::store::{
    DeviceTemplate, LineTemplate, NewDeviceTemplate, NewLineTemplate, NewUserProfile, UserProfile,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

// ---------------------------------------------------------------------------------------------
// Device templates
// ---------------------------------------------------------------------------------------------

/// The fields of a universal device template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceTemplateIn {
    /// Unique. Required.
    pub name: String,
    /// Device description pattern, default `#FirstName# #LastName# (#Product# #Protocol#)`.
    pub description_pattern: String,
    /// Device pool / site.
    pub device_pool: String,
    pub security: SecurityProfile,
    /// Line keys, 1 to 8.
    pub line_keys: u32,
    pub speed_dials: Vec<SpeedDial>,
    /// BCP 47 tag, e.g. `en-US`.
    pub locale: String,
    /// IANA time zone, e.g. `Europe/Paris`.
    pub timezone: String,
    pub ntp_server: Option<String>,
    /// Where the phone's lines register; null: the server the phone was given.
    pub registrar_address: Option<String>,
    pub registrar_port: u16,
    pub proxy_address: Option<String>,
    pub proxy_port: u16,
    /// The resync NOTIFY event for this template's phones (`check-sync`,
    /// `check-sync;reboot=true`, `resync`, `service-control`...); null: the vendor's default.
    pub resync_event: Option<String>,
}

impl From<&NewDeviceTemplate> for DeviceTemplateIn {
    fn from(t: &NewDeviceTemplate) -> Self {
        let NewDeviceTemplate {
            name,
            description_pattern,
            device_pool,
            security,
            line_keys,
            speed_dials,
            locale,
            timezone,
            ntp_server,
            registrar_address,
            registrar_port,
            proxy_address,
            proxy_port,
            resync_event,
        } = t;
        DeviceTemplateIn {
            name: name.clone(),
            description_pattern: description_pattern.clone(),
            device_pool: device_pool.clone(),
            security: security.into(),
            line_keys: *line_keys,
            speed_dials: speed_dials.iter().map(SpeedDial::from).collect(),
            locale: locale.clone(),
            timezone: timezone.clone(),
            ntp_server: ntp_server.clone(),
            registrar_address: registrar_address.clone(),
            registrar_port: *registrar_port,
            proxy_address: proxy_address.clone(),
            proxy_port: *proxy_port,
            resync_event: resync_event.clone(),
        }
    }
}

impl Default for DeviceTemplateIn {
    fn default() -> Self {
        (&NewDeviceTemplate::default()).into()
    }
}

impl From<&DeviceTemplate> for DeviceTemplateIn {
    fn from(t: &DeviceTemplate) -> Self {
        (&t.spec).into()
    }
}

impl From<DeviceTemplateIn> for NewDeviceTemplate {
    fn from(t: DeviceTemplateIn) -> Self {
        NewDeviceTemplate {
            name: t.name,
            description_pattern: t.description_pattern,
            device_pool: t.device_pool,
            security: t.security.into(),
            line_keys: t.line_keys,
            speed_dials: t.speed_dials.into_iter().map(Into::into).collect(),
            locale: t.locale,
            timezone: t.timezone,
            ntp_server: t.ntp_server,
            registrar_address: t.registrar_address,
            registrar_port: t.registrar_port,
            proxy_address: t.proxy_address,
            proxy_port: t.proxy_port,
            resync_event: t.resync_event,
        }
    }
}

/// A universal device template as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeviceTemplateOut {
    pub id: i64,
    #[serde(flatten)]
    pub fields: DeviceTemplateIn,
}

impl Record<DeviceTemplate> for DeviceTemplateOut {
    fn full(t: &DeviceTemplate) -> Self {
        DeviceTemplateOut {
            id: t.id,
            fields: (&t.spec).into(),
        }
    }
}

crud! {
    tag: "templates",
    collection: "/templates/device",
    item: "/templates/device/{template_id}",
    id: "template_id",
    what: "device template",
    record: DeviceTemplate,
    new: NewDeviceTemplate,
    input: DeviceTemplateIn,
    output: DeviceTemplateOut,
    store: [list_device_templates, get_device_template, create_device_template, update_device_template, delete_device_template],
    docs: [
        "List universal device templates. Orders by `name` (default), `id`, `device_pool`, `locale`; `search` looks in the name, description pattern and device pool.",
        "Create a universal device template.",
        "Get a universal device template.",
        "Change a universal device template: the fields in the body are replaced, the others kept.",
        "Delete a universal device template (refused while a profile or the settings use it).",
    ],
    handlers: [list_device_templates, create_device_template, get_device_template, update_device_template, delete_device_template],
}

// ---------------------------------------------------------------------------------------------
// Line templates
// ---------------------------------------------------------------------------------------------

/// The fields of a universal line template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LineTemplateIn {
    /// Unique. Required.
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

impl From<&NewLineTemplate> for LineTemplateIn {
    fn from(t: &NewLineTemplate) -> Self {
        let NewLineTemplate {
            name,
            caller_id_name_pattern,
            label_pattern,
            context,
            voicemail_enabled,
            call_forward,
            max_calls,
            busy_trigger,
        } = t;
        LineTemplateIn {
            name: name.clone(),
            caller_id_name_pattern: caller_id_name_pattern.clone(),
            label_pattern: label_pattern.clone(),
            context: context.clone(),
            voicemail_enabled: *voicemail_enabled,
            call_forward: call_forward.into(),
            max_calls: *max_calls,
            busy_trigger: *busy_trigger,
        }
    }
}

impl Default for LineTemplateIn {
    fn default() -> Self {
        (&NewLineTemplate::default()).into()
    }
}

impl From<&LineTemplate> for LineTemplateIn {
    fn from(t: &LineTemplate) -> Self {
        (&t.spec).into()
    }
}

impl From<LineTemplateIn> for NewLineTemplate {
    fn from(t: LineTemplateIn) -> Self {
        NewLineTemplate {
            name: t.name,
            caller_id_name_pattern: t.caller_id_name_pattern,
            label_pattern: t.label_pattern,
            context: t.context,
            voicemail_enabled: t.voicemail_enabled,
            call_forward: t.call_forward.into(),
            max_calls: t.max_calls,
            busy_trigger: t.busy_trigger,
        }
    }
}

/// A universal line template as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LineTemplateOut {
    pub id: i64,
    #[serde(flatten)]
    pub fields: LineTemplateIn,
}

impl Record<LineTemplate> for LineTemplateOut {
    fn full(t: &LineTemplate) -> Self {
        LineTemplateOut {
            id: t.id,
            fields: (&t.spec).into(),
        }
    }
}

crud! {
    tag: "templates",
    collection: "/templates/line",
    item: "/templates/line/{template_id}",
    id: "template_id",
    what: "line template",
    record: LineTemplate,
    new: NewLineTemplate,
    input: LineTemplateIn,
    output: LineTemplateOut,
    store: [list_line_templates, get_line_template, create_line_template, update_line_template, delete_line_template],
    docs: [
        "List universal line templates. Orders by `name` (default), `id`, `context`; `search` looks in the name, patterns and context.",
        "Create a universal line template.",
        "Get a universal line template.",
        "Change a universal line template: the fields in the body are replaced, the others kept.",
        "Delete a universal line template (refused while a profile or the settings use it).",
    ],
    handlers: [list_line_templates, create_line_template, get_line_template, update_line_template, delete_line_template],
}

// ---------------------------------------------------------------------------------------------
// User profiles
// ---------------------------------------------------------------------------------------------

/// The fields of a user profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UserProfileIn {
    /// Unique. Required.
    pub name: String,
    pub description: String,
    /// Required: the universal device template of the profile's users.
    pub device_template_id: i64,
    /// Required: the universal line template of the profile's users.
    pub line_template_id: i64,
    /// May users of this profile self-provision phones (default false, as in CUCM).
    pub allow_provision: bool,
    /// The most devices a user may own, 0 to 1000 (default 10).
    pub max_devices: u32,
}

impl From<&NewUserProfile> for UserProfileIn {
    fn from(p: &NewUserProfile) -> Self {
        let NewUserProfile {
            name,
            description,
            device_template_id,
            line_template_id,
            allow_provision,
            max_devices,
        } = p;
        UserProfileIn {
            name: name.clone(),
            description: description.clone(),
            device_template_id: *device_template_id,
            line_template_id: *line_template_id,
            allow_provision: *allow_provision,
            max_devices: *max_devices,
        }
    }
}

impl Default for UserProfileIn {
    fn default() -> Self {
        (&NewUserProfile::default()).into()
    }
}

impl From<&UserProfile> for UserProfileIn {
    fn from(p: &UserProfile) -> Self {
        (&p.spec).into()
    }
}

impl From<UserProfileIn> for NewUserProfile {
    fn from(p: UserProfileIn) -> Self {
        NewUserProfile {
            name: p.name,
            description: p.description,
            device_template_id: p.device_template_id,
            line_template_id: p.line_template_id,
            allow_provision: p.allow_provision,
            max_devices: p.max_devices,
        }
    }
}

/// A user profile as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserProfileOut {
    pub id: i64,
    #[serde(flatten)]
    pub fields: UserProfileIn,
}

impl Record<UserProfile> for UserProfileOut {
    fn full(p: &UserProfile) -> Self {
        UserProfileOut {
            id: p.id,
            fields: (&p.spec).into(),
        }
    }
}

crud! {
    tag: "user-profiles",
    collection: "/user-profiles",
    item: "/user-profiles/{profile_id}",
    id: "profile_id",
    what: "user profile",
    record: UserProfile,
    new: NewUserProfile,
    input: UserProfileIn,
    output: UserProfileOut,
    store: [list_user_profiles, get_user_profile, create_user_profile, update_user_profile, delete_user_profile],
    docs: [
        "List user profiles. Orders by `name` (default), `id`, `max_devices`; `search` looks in the name and description.",
        "Create a user profile.",
        "Get a user profile.",
        "Change a user profile: the fields in the body are replaced, the others kept.",
        "Delete a user profile (refused while the settings use it as the default; its users fall back to the default profile).",
    ],
    handlers: [list_user_profiles, create_user_profile, get_user_profile, update_user_profile, delete_user_profile],
}
