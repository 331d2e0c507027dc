//! Universal device templates, universal line templates and user profiles: CRUD with the
//! checks done when they are saved (patterns with unknown tags, impossible security profiles,
//! dangling template references), so that provisioning a phone never meets a bad template.

use super::list::{run_list, ListSpec};
use super::{
    to_u32, validate_text, Backend, CallForward, CallForwards, DeviceTemplate, LineTemplate,
    ListQuery, NewDeviceTemplate, NewLineTemplate, NewUserProfile, Page, SecurityProfile,
    SpeedDial, Store, StoreError, Transport, UserProfile, WritePool,
};
use crate::provisioning::templates::validate_pattern;

// ---------------------------------------------------------------------------------------------
// Row decoding
// ---------------------------------------------------------------------------------------------

const DEVICE_TEMPLATE_COLUMNS: &str = "SELECT id, name, description_pattern, device_pool, \
     security_transport, security_digest, security_tls, line_keys, speed_dials, locale, \
     timezone, ntp_server, registrar_address, registrar_port, proxy_address, proxy_port, \
     resync_event";

macro_rules! device_template_from_row {
    ($row:expr) => {{
        let r = $row;
        (|| -> Result<DeviceTemplate, StoreError> {
            let transport: String = col!(r, "security_transport");
            let speed_dials: String = col!(r, "speed_dials");
            let speed_dials: Vec<SpeedDial> = serde_json::from_str(&speed_dials)
                .map_err(|e| StoreError::Corrupt(format!("speed dials: {e}")))?;
            let port = |v: i64, what: &str| {
                u16::try_from(v).map_err(|_| StoreError::Corrupt(format!("{what} {v}")))
            };
            Ok(DeviceTemplate {
                id: col!(r, "id"),
                spec: NewDeviceTemplate {
                    name: col!(r, "name"),
                    description_pattern: col!(r, "description_pattern"),
                    device_pool: col!(r, "device_pool"),
                    security: SecurityProfile {
                        transport: transport.parse().map_err(StoreError::Corrupt)?,
                        digest_required: col!(r, "security_digest"),
                        tls: col!(r, "security_tls"),
                    },
                    line_keys: to_u32(col!(r, "line_keys"), "line_keys")?,
                    speed_dials,
                    locale: col!(r, "locale"),
                    timezone: col!(r, "timezone"),
                    ntp_server: col!(r, "ntp_server"),
                    registrar_address: col!(r, "registrar_address"),
                    registrar_port: port(col!(r, "registrar_port"), "registrar_port")?,
                    proxy_address: col!(r, "proxy_address"),
                    proxy_port: port(col!(r, "proxy_port"), "proxy_port")?,
                    resync_event: col!(r, "resync_event"),
                },
            })
        })()
    }};
}

/// Decodes the call-forward columns shared by lines and line templates.
macro_rules! call_forwards_from_row {
    ($r:ident) => {
        CallForwards {
            all: CallForward {
                destination: col!($r, "cfwd_all_destination"),
                enabled: col!($r, "cfwd_all_enabled"),
            },
            busy: CallForward {
                destination: col!($r, "cfwd_busy_destination"),
                enabled: col!($r, "cfwd_busy_enabled"),
            },
            no_answer: CallForward {
                destination: col!($r, "cfwd_noanswer_destination"),
                enabled: col!($r, "cfwd_noanswer_enabled"),
            },
        }
    };
}
pub(super) use call_forwards_from_row;

const LINE_TEMPLATE_COLUMNS: &str = "SELECT id, name, caller_id_name_pattern, label_pattern, \
     context, voicemail_enabled, cfwd_all_destination, cfwd_all_enabled, cfwd_busy_destination, \
     cfwd_busy_enabled, cfwd_noanswer_destination, cfwd_noanswer_enabled, max_calls, busy_trigger";

macro_rules! line_template_from_row {
    ($row:expr) => {{
        let r = $row;
        (|| -> Result<LineTemplate, StoreError> {
            Ok(LineTemplate {
                id: col!(r, "id"),
                spec: NewLineTemplate {
                    name: col!(r, "name"),
                    caller_id_name_pattern: col!(r, "caller_id_name_pattern"),
                    label_pattern: col!(r, "label_pattern"),
                    context: col!(r, "context"),
                    voicemail_enabled: col!(r, "voicemail_enabled"),
                    call_forward: call_forwards_from_row!(r),
                    max_calls: to_u32(col!(r, "max_calls"), "max_calls")?,
                    busy_trigger: to_u32(col!(r, "busy_trigger"), "busy_trigger")?,
                },
            })
        })()
    }};
}

const PROFILE_COLUMNS: &str = "SELECT id, name, description, device_template_id, \
     line_template_id, allow_provision, max_devices";

macro_rules! profile_from_row {
    ($row:expr) => {{
        let r = $row;
        (|| -> Result<UserProfile, StoreError> {
            Ok(UserProfile {
                id: col!(r, "id"),
                spec: NewUserProfile {
                    name: col!(r, "name"),
                    description: col!(r, "description"),
                    device_template_id: col!(r, "device_template_id"),
                    line_template_id: col!(r, "line_template_id"),
                    allow_provision: col!(r, "allow_provision"),
                    max_devices: to_u32(col!(r, "max_devices"), "max_devices")?,
                },
            })
        })()
    }};
}

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

const DEVICE_TEMPLATES: ListSpec = ListSpec {
    select: DEVICE_TEMPLATE_COLUMNS,
    from: "FROM device_templates",
    orders: &[
        ("id", "id"),
        ("name", "name"),
        ("device_pool", "device_pool"),
        ("locale", "locale"),
    ],
    default_order: "name",
    key: "id",
    search: &["name", "description_pattern", "device_pool"],
};

const LINE_TEMPLATES: ListSpec = ListSpec {
    select: LINE_TEMPLATE_COLUMNS,
    from: "FROM line_templates",
    orders: &[("id", "id"), ("name", "name"), ("context", "context")],
    default_order: "name",
    key: "id",
    search: &["name", "caller_id_name_pattern", "label_pattern", "context"],
};

const PROFILES: ListSpec = ListSpec {
    select: PROFILE_COLUMNS,
    from: "FROM user_profiles",
    orders: &[
        ("id", "id"),
        ("name", "name"),
        ("max_devices", "max_devices"),
    ],
    default_order: "name",
    key: "id",
    search: &["name", "description"],
};

/// What refers to a kind of template: the column naming it in `user_profiles`, and the same
/// column prefixed `autoreg_` in `selfprov_settings`. Deleting a template checks both.
#[derive(Clone, Copy)]
struct TemplateUse {
    what: &'static str,
    table: &'static str,
    column: &'static str,
}

const DEVICE_TEMPLATE_USE: TemplateUse = TemplateUse {
    what: "device template",
    table: "device_templates",
    column: "device_template_id",
};

const LINE_TEMPLATE_USE: TemplateUse = TemplateUse {
    what: "line template",
    table: "line_templates",
    column: "line_template_id",
};

/// Binds the fields of a [`NewDeviceTemplate`] to `$query`, in the column order both the
/// `INSERT` and the `UPDATE` of device templates use; `$speed_dials` is their JSON text.
macro_rules! bind_device_template {
    ($query:expr, $new:ident, $speed_dials:ident) => {
        $query
            .bind($new.name.as_str())
            .bind($new.description_pattern.as_str())
            .bind($new.device_pool.as_str())
            .bind($new.security.transport.as_str())
            .bind($new.security.digest_required)
            .bind($new.security.tls)
            .bind(i64::from($new.line_keys))
            .bind($speed_dials.as_str())
            .bind($new.locale.as_str())
            .bind($new.timezone.as_str())
            .bind($new.ntp_server.as_deref())
            .bind($new.registrar_address.as_deref())
            .bind(i64::from($new.registrar_port))
            .bind($new.proxy_address.as_deref())
            .bind(i64::from($new.proxy_port))
            .bind($new.resync_event.as_deref())
    };
}

/// Binds the fields of a [`NewLineTemplate`] to `$query`, in the column order both the
/// `INSERT` and the `UPDATE` of line templates use.
macro_rules! bind_line_template {
    ($query:expr, $new:ident) => {
        $query
            .bind($new.name.as_str())
            .bind($new.caller_id_name_pattern.as_str())
            .bind($new.label_pattern.as_str())
            .bind($new.context.as_str())
            .bind($new.voicemail_enabled)
            .bind($new.call_forward.all.destination.as_deref())
            .bind($new.call_forward.all.enabled)
            .bind($new.call_forward.busy.destination.as_deref())
            .bind($new.call_forward.busy.enabled)
            .bind($new.call_forward.no_answer.destination.as_deref())
            .bind($new.call_forward.no_answer.enabled)
            .bind(i64::from($new.max_calls))
            .bind(i64::from($new.busy_trigger))
    };
}

/// Fails with [`StoreError::Duplicate`] when another row of `$table` has this name.
macro_rules! check_name_free {
    ($tx:ident, $table:literal, $what:literal, $name:expr, $self_id:expr) => {{
        let name: &str = $name;
        let self_id: Option<i64> = $self_id;
        let other: Option<i64> = sqlx::query_scalar(concat!(
            "SELECT id FROM ",
            $table,
            " WHERE name = $1 AND id <> $2"
        ))
        .bind(name)
        .bind(self_id.unwrap_or(0))
        .fetch_optional(&mut *$tx)
        .await?;
        if other.is_some() {
            return Err(StoreError::Duplicate {
                what: $what,
                field: "name",
                value: name.to_string(),
            });
        }
    }};
}

/// Fails with [`StoreError::NotFound`] when `$table` has no row `$id`.
macro_rules! check_exists {
    ($tx:ident, $table:literal, $what:literal, $id:expr) => {{
        let id: i64 = $id;
        let found: Option<i64> =
            sqlx::query_scalar(concat!("SELECT id FROM ", $table, " WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut *$tx)
                .await?;
        if found.is_none() {
            return Err(StoreError::NotFound { what: $what, id });
        }
    }};
}

/// Fails with [`StoreError::Invalid`] naming `$field` when `$table` has no row `$id`.
macro_rules! check_ref {
    ($tx:ident, $table:literal, $field:literal, $what:literal, $id:expr) => {{
        let id: i64 = $id;
        let found: Option<i64> =
            sqlx::query_scalar(concat!("SELECT id FROM ", $table, " WHERE id = $1"))
                .bind(id)
                .fetch_optional(&mut *$tx)
                .await?;
        if found.is_none() {
            return Err(StoreError::Invalid {
                field: $field,
                message: format!(concat!("no ", $what, " with ID {}"), id),
            });
        }
    }};
}
pub(super) use {check_exists, check_ref};

impl Store {
    // ------------------------------------------------------------------------------------------
    // Device templates
    // ------------------------------------------------------------------------------------------

    /// A page of device templates. `order`: `id`, `name` (default), `device_pool`, `locale`;
    /// `search` looks in the name, description pattern and device pool.
    pub async fn list_device_templates(
        &self,
        q: &ListQuery,
    ) -> Result<Page<DeviceTemplate>, StoreError> {
        let sql = DEVICE_TEMPLATES.build(q)?;
        let (total, items) =
            with_pool!(self, |pool| run_list!(pool, sql, device_template_from_row))?;
        Ok(Page { total, items })
    }

    /// One device template.
    pub async fn get_device_template(&self, id: i64) -> Result<Option<DeviceTemplate>, StoreError> {
        let sql = format!("{DEVICE_TEMPLATE_COLUMNS} FROM device_templates WHERE id = $1");
        with_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref()
                .map(|r| device_template_from_row!(r))
                .transpose()
        })
    }

    /// Creates a device template. Refused: a name already used ([`StoreError::Duplicate`]), a
    /// description pattern with an unknown tag, TLS without the `tls` transport, line keys
    /// outside 1 to 8, bad speed dials ([`StoreError::Invalid`] naming the field).
    pub async fn create_device_template(
        &self,
        new: NewDeviceTemplate,
    ) -> Result<DeviceTemplate, StoreError> {
        validate_device_template(&new)?;
        let speed_dials = speed_dials_json(&new.speed_dials)?;
        let id: i64 = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            check_name_free!(tx, "device_templates", "device template", &new.name, None);
            let query = sqlx::query_scalar(
                "INSERT INTO device_templates (name, description_pattern, device_pool, \
                 security_transport, security_digest, security_tls, line_keys, speed_dials, \
                 locale, timezone, ntp_server, registrar_address, registrar_port, proxy_address, \
                 proxy_port, resync_event) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
                 $11, $12, $13, $14, $15, $16) RETURNING id",
            );
            let id: i64 = bind_device_template!(query, new, speed_dials)
                .fetch_one(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<i64, StoreError>(id)
        })?;
        Ok(DeviceTemplate { id, spec: new })
    }

    /// Replaces a device template (same checks as creating one). Devices already provisioned
    /// keep the description they were given; the other settings apply at their next
    /// configuration. [`StoreError::NotFound`] when there is no such template.
    pub async fn update_device_template(
        &self,
        id: i64,
        new: NewDeviceTemplate,
    ) -> Result<DeviceTemplate, StoreError> {
        validate_device_template(&new)?;
        let speed_dials = speed_dials_json(&new.speed_dials)?;
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            check_exists!(tx, "device_templates", "device template", id);
            check_name_free!(
                tx,
                "device_templates",
                "device template",
                &new.name,
                Some(id)
            );
            let query = sqlx::query(
                "UPDATE device_templates SET name = $2, description_pattern = $3, \
                 device_pool = $4, security_transport = $5, security_digest = $6, \
                 security_tls = $7, line_keys = $8, speed_dials = $9, locale = $10, \
                 timezone = $11, ntp_server = $12, registrar_address = $13, registrar_port = $14, \
                 proxy_address = $15, proxy_port = $16, resync_event = $17 WHERE id = $1",
            )
            .bind(id);
            bind_device_template!(query, new, speed_dials)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        Ok(DeviceTemplate { id, spec: new })
    }

    /// Deletes a device template. Refused with [`StoreError::InUse`] while a user profile or
    /// the autoregistration settings use it; devices made from it keep their settings (their
    /// `template_id` is cleared). False when there is no such template.
    pub async fn delete_device_template(&self, id: i64) -> Result<bool, StoreError> {
        self.delete_template(&DEVICE_TEMPLATE_USE, id).await
    }

    // ------------------------------------------------------------------------------------------
    // Line templates
    // ------------------------------------------------------------------------------------------

    /// A page of line templates. `order`: `id`, `name` (default), `context`; `search` looks in
    /// the name, patterns and context.
    pub async fn list_line_templates(
        &self,
        q: &ListQuery,
    ) -> Result<Page<LineTemplate>, StoreError> {
        let sql = LINE_TEMPLATES.build(q)?;
        let (total, items) = with_pool!(self, |pool| run_list!(pool, sql, line_template_from_row))?;
        Ok(Page { total, items })
    }

    /// One line template.
    pub async fn get_line_template(&self, id: i64) -> Result<Option<LineTemplate>, StoreError> {
        let sql = format!("{LINE_TEMPLATE_COLUMNS} FROM line_templates WHERE id = $1");
        with_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(|r| line_template_from_row!(r)).transpose()
        })
    }

    /// Creates a line template. Refused: a name already used, a caller-ID or label pattern with
    /// an unknown tag, an enabled call forward without destination, max calls outside 1 to 64,
    /// a busy trigger outside 1 to max calls.
    pub async fn create_line_template(
        &self,
        new: NewLineTemplate,
    ) -> Result<LineTemplate, StoreError> {
        validate_line_template(&new)?;
        let id: i64 = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            check_name_free!(tx, "line_templates", "line template", &new.name, None);
            let query = sqlx::query_scalar(
                "INSERT INTO line_templates (name, caller_id_name_pattern, label_pattern, context, \
                 voicemail_enabled, cfwd_all_destination, cfwd_all_enabled, cfwd_busy_destination, \
                 cfwd_busy_enabled, cfwd_noanswer_destination, cfwd_noanswer_enabled, max_calls, \
                 busy_trigger) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 RETURNING id",
            );
            let id: i64 = bind_line_template!(query, new).fetch_one(&mut *tx).await?;
            tx.commit().await?;
            Ok::<i64, StoreError>(id)
        })?;
        Ok(LineTemplate { id, spec: new })
    }

    /// Replaces a line template (same checks as creating one). Lines already made from it keep
    /// their values. [`StoreError::NotFound`] when there is no such template.
    pub async fn update_line_template(
        &self,
        id: i64,
        new: NewLineTemplate,
    ) -> Result<LineTemplate, StoreError> {
        validate_line_template(&new)?;
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            check_exists!(tx, "line_templates", "line template", id);
            check_name_free!(tx, "line_templates", "line template", &new.name, Some(id));
            let query = sqlx::query(
                "UPDATE line_templates SET name = $2, caller_id_name_pattern = $3, \
                 label_pattern = $4, context = $5, voicemail_enabled = $6, \
                 cfwd_all_destination = $7, cfwd_all_enabled = $8, cfwd_busy_destination = $9, \
                 cfwd_busy_enabled = $10, cfwd_noanswer_destination = $11, \
                 cfwd_noanswer_enabled = $12, max_calls = $13, busy_trigger = $14 WHERE id = $1",
            )
            .bind(id);
            bind_line_template!(query, new).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        Ok(LineTemplate { id, spec: new })
    }

    /// Deletes a line template; refused with [`StoreError::InUse`] while a user profile or the
    /// autoregistration settings use it. False when there is no such template.
    pub async fn delete_line_template(&self, id: i64) -> Result<bool, StoreError> {
        self.delete_template(&LINE_TEMPLATE_USE, id).await
    }

    /// Deletes template `id` of `kind` unless a user profile or the autoregistration settings
    /// refer to it ([`StoreError::InUse`]). False when there is no such template.
    async fn delete_template(&self, kind: &TemplateUse, id: i64) -> Result<bool, StoreError> {
        let TemplateUse {
            what,
            table,
            column,
        } = *kind;
        // Table and column names come from the `TemplateUse` constants, never from input.
        let exists = format!("SELECT id FROM {table} WHERE id = $1");
        let profile_sql =
            format!("SELECT name FROM user_profiles WHERE {column} = $1 ORDER BY id LIMIT 1");
        let settings_sql = format!("SELECT id FROM selfprov_settings WHERE autoreg_{column} = $1");
        let delete = format!("DELETE FROM {table} WHERE id = $1");
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let found: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(exists))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if found.is_none() {
                return Ok(false);
            }
            let profile: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(profile_sql))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(p) = profile {
                return Err(StoreError::InUse {
                    what,
                    id,
                    by: format!("user profile {p:?}"),
                });
            }
            let settings: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(settings_sql))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if settings.is_some() {
                return Err(StoreError::InUse {
                    what,
                    id,
                    by: "the autoregistration settings".into(),
                });
            }
            sqlx::query(sqlx::AssertSqlSafe(delete))
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    // ------------------------------------------------------------------------------------------
    // User profiles
    // ------------------------------------------------------------------------------------------

    /// A page of user profiles. `order`: `id`, `name` (default), `max_devices`; `search` looks
    /// in the name and description.
    pub async fn list_user_profiles(&self, q: &ListQuery) -> Result<Page<UserProfile>, StoreError> {
        let sql = PROFILES.build(q)?;
        let (total, items) = with_pool!(self, |pool| run_list!(pool, sql, profile_from_row))?;
        Ok(Page { total, items })
    }

    /// One user profile.
    pub async fn get_user_profile(&self, id: i64) -> Result<Option<UserProfile>, StoreError> {
        let sql = format!("{PROFILE_COLUMNS} FROM user_profiles WHERE id = $1");
        with_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(|r| profile_from_row!(r)).transpose()
        })
    }

    /// Creates a user profile. Refused: a name already used, a template that does not exist
    /// ([`StoreError::Invalid`] naming `device_template_id` / `line_template_id`), max devices
    /// over 1000.
    pub async fn create_user_profile(
        &self,
        new: NewUserProfile,
    ) -> Result<UserProfile, StoreError> {
        validate_profile(&new)?;
        let id: i64 = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            check_name_free!(tx, "user_profiles", "user profile", &new.name, None);
            check_ref!(
                tx,
                "device_templates",
                "device_template_id",
                "device template",
                new.device_template_id
            );
            check_ref!(
                tx,
                "line_templates",
                "line_template_id",
                "line template",
                new.line_template_id
            );
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO user_profiles (name, description, device_template_id, \
                 line_template_id, allow_provision, max_devices) VALUES ($1, $2, $3, $4, $5, $6) \
                 RETURNING id",
            )
            .bind(new.name.as_str())
            .bind(new.description.as_str())
            .bind(new.device_template_id)
            .bind(new.line_template_id)
            .bind(new.allow_provision)
            .bind(i64::from(new.max_devices))
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<i64, StoreError>(id)
        })?;
        Ok(UserProfile { id, spec: new })
    }

    /// Replaces a user profile (same checks as creating one). A lower `max_devices` does not
    /// unbind phones; it refuses new ones. [`StoreError::NotFound`] when there is no such
    /// profile.
    pub async fn update_user_profile(
        &self,
        id: i64,
        new: NewUserProfile,
    ) -> Result<UserProfile, StoreError> {
        validate_profile(&new)?;
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            check_exists!(tx, "user_profiles", "user profile", id);
            check_name_free!(tx, "user_profiles", "user profile", &new.name, Some(id));
            check_ref!(
                tx,
                "device_templates",
                "device_template_id",
                "device template",
                new.device_template_id
            );
            check_ref!(
                tx,
                "line_templates",
                "line_template_id",
                "line template",
                new.line_template_id
            );
            sqlx::query(
                "UPDATE user_profiles SET name = $2, description = $3, device_template_id = $4, \
                 line_template_id = $5, allow_provision = $6, max_devices = $7 WHERE id = $1",
            )
            .bind(id)
            .bind(new.name.as_str())
            .bind(new.description.as_str())
            .bind(new.device_template_id)
            .bind(new.line_template_id)
            .bind(new.allow_provision)
            .bind(i64::from(new.max_devices))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        Ok(UserProfile { id, spec: new })
    }

    /// Deletes a user profile; its users fall back to the default profile. Refused with
    /// [`StoreError::InUse`] for the settings' default profile. False when there is no such
    /// profile.
    pub async fn delete_user_profile(&self, id: i64) -> Result<bool, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let found: Option<i64> =
                sqlx::query_scalar("SELECT id FROM user_profiles WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if found.is_none() {
                return Ok(false);
            }
            let default: Option<i64> = sqlx::query_scalar(
                "SELECT id FROM selfprov_settings WHERE default_profile_id = $1",
            )
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
            if default.is_some() {
                return Err(StoreError::InUse {
                    what: "user profile",
                    id,
                    by: "the self-provisioning settings (default profile)".into(),
                });
            }
            sqlx::query("DELETE FROM user_profiles WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }
}

/// Reads a device template inside a transaction (binding); yields `Option<DeviceTemplate>`.
macro_rules! device_template_in_tx {
    ($tx:ident, $id:expr) => {{
        let row = sqlx::query(
            "SELECT id, name, description_pattern, device_pool, security_transport, \
             security_digest, security_tls, line_keys, speed_dials, locale, timezone, \
             ntp_server, registrar_address, registrar_port, proxy_address, proxy_port, \
             resync_event FROM device_templates WHERE id = $1",
        )
        .bind($id)
        .fetch_optional(&mut *$tx)
        .await?;
        row.as_ref()
            .map(|r| device_template_from_row!(r))
            .transpose()?
    }};
}

/// Reads a line template inside a transaction (binding); yields `Option<LineTemplate>`.
macro_rules! line_template_in_tx {
    ($tx:ident, $id:expr) => {{
        let row = sqlx::query(
            "SELECT id, name, caller_id_name_pattern, label_pattern, context, voicemail_enabled, \
             cfwd_all_destination, cfwd_all_enabled, cfwd_busy_destination, cfwd_busy_enabled, \
             cfwd_noanswer_destination, cfwd_noanswer_enabled, max_calls, busy_trigger \
             FROM line_templates WHERE id = $1",
        )
        .bind($id)
        .fetch_optional(&mut *$tx)
        .await?;
        row.as_ref()
            .map(|r| line_template_from_row!(r))
            .transpose()?
    }};
}

/// Reads a user profile inside a transaction (binding); yields `Option<UserProfile>`.
macro_rules! profile_in_tx {
    ($tx:ident, $id:expr) => {{
        let row = sqlx::query(
            "SELECT id, name, description, device_template_id, line_template_id, \
             allow_provision, max_devices FROM user_profiles WHERE id = $1",
        )
        .bind($id)
        .fetch_optional(&mut *$tx)
        .await?;
        row.as_ref().map(|r| profile_from_row!(r)).transpose()?
    }};
}
pub(super) use {
    device_template_from_row, device_template_in_tx, line_template_from_row, line_template_in_tx,
    profile_from_row, profile_in_tx,
};

fn pattern(field: &'static str, value: &str) -> Result<(), StoreError> {
    validate_pattern(field, value).map_err(|e| StoreError::Invalid {
        field,
        message: e.to_string(),
    })
}

fn validate_name(name: &str) -> Result<(), StoreError> {
    validate_text("name", name, true)
}

/// Digits, `*`, `#`, `+`: what a forward or a speed dial may dial.
pub(super) fn validate_dial_string(field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.is_empty()
        || value.len() > 32
        || !value
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'*' | b'#' | b'+'))
    {
        return Err(StoreError::Invalid {
            field,
            message: format!("{value:?} must be 1 to 32 characters 0-9 * # +"),
        });
    }
    Ok(())
}

/// Checks the call forwards of a line or line template.
pub(super) fn validate_call_forwards(cf: &CallForwards) -> Result<(), StoreError> {
    for (field, f) in [
        ("call_forward.all", &cf.all),
        ("call_forward.busy", &cf.busy),
        ("call_forward.no_answer", &cf.no_answer),
    ] {
        match f.destination.as_deref() {
            Some(d) => validate_dial_string(field, d)?,
            None if f.enabled => {
                return Err(StoreError::Invalid {
                    field,
                    message: "enabled without a destination".into(),
                })
            }
            None => {}
        }
    }
    Ok(())
}

/// Checks max calls (1 to 64) and busy trigger (1 to max calls).
pub(super) fn validate_call_limits(max_calls: u32, busy_trigger: u32) -> Result<(), StoreError> {
    if !(1..=64).contains(&max_calls) {
        return Err(StoreError::Invalid {
            field: "max_calls",
            message: format!("{max_calls} must be 1 to 64"),
        });
    }
    if !(1..=max_calls).contains(&busy_trigger) {
        return Err(StoreError::Invalid {
            field: "busy_trigger",
            message: format!("{busy_trigger} must be 1 to max_calls ({max_calls})"),
        });
    }
    Ok(())
}

fn validate_device_template(t: &NewDeviceTemplate) -> Result<(), StoreError> {
    validate_name(&t.name)?;
    if let Some(ev) = &t.resync_event {
        crate::provisioning::resync::validate_override(ev).map_err(|e| StoreError::Invalid {
            field: "resync_event",
            message: e.to_string(),
        })?;
    }
    pattern("description_pattern", &t.description_pattern)?;
    validate_text("device_pool", &t.device_pool, true)?;
    if t.security.tls && t.security.transport != Transport::Tls {
        return Err(StoreError::Invalid {
            field: "security.tls",
            message: "TLS (encrypted signalling and media) needs transport \"tls\"".into(),
        });
    }
    if !(1..=8).contains(&t.line_keys) {
        return Err(StoreError::Invalid {
            field: "line_keys",
            message: format!("{} must be 1 to 8", t.line_keys),
        });
    }
    if t.speed_dials.len() > 64 {
        return Err(StoreError::Invalid {
            field: "speed_dials",
            message: "at most 64 speed dials".into(),
        });
    }
    let mut positions = std::collections::HashSet::new();
    for sd in &t.speed_dials {
        if sd.position == 0 || sd.position > 64 || !positions.insert(sd.position) {
            return Err(StoreError::Invalid {
                field: "speed_dials",
                message: format!("position {} must be 1 to 64 and used once", sd.position),
            });
        }
        validate_dial_string("speed_dials", &sd.number)?;
        validate_text("speed_dials", &sd.label, false)?;
    }
    for (field, value, required) in [
        ("locale", Some(t.locale.as_str()), true),
        ("timezone", Some(t.timezone.as_str()), true),
        ("ntp_server", t.ntp_server.as_deref(), false),
        ("registrar_address", t.registrar_address.as_deref(), false),
        ("proxy_address", t.proxy_address.as_deref(), false),
    ] {
        if let Some(v) = value {
            validate_text(field, v, required)?;
            if v.contains(char::is_whitespace) {
                return Err(StoreError::Invalid {
                    field,
                    message: format!("{v:?} must not contain spaces"),
                });
            }
        }
    }
    for (field, port) in [
        ("registrar_port", t.registrar_port),
        ("proxy_port", t.proxy_port),
    ] {
        if port == 0 {
            return Err(StoreError::Invalid {
                field,
                message: "must be 1 to 65535".into(),
            });
        }
    }
    Ok(())
}

fn speed_dials_json(sd: &[SpeedDial]) -> Result<String, StoreError> {
    serde_json::to_string(sd).map_err(|e| StoreError::Invalid {
        field: "speed_dials",
        message: e.to_string(),
    })
}

fn validate_line_template(t: &NewLineTemplate) -> Result<(), StoreError> {
    validate_name(&t.name)?;
    pattern("caller_id_name_pattern", &t.caller_id_name_pattern)?;
    pattern("label_pattern", &t.label_pattern)?;
    validate_text("context", &t.context, true)?;
    validate_call_forwards(&t.call_forward)?;
    validate_call_limits(t.max_calls, t.busy_trigger)
}

fn validate_profile(p: &NewUserProfile) -> Result<(), StoreError> {
    validate_name(&p.name)?;
    validate_text("description", &p.description, false)?;
    if p.max_devices > 1000 {
        return Err(StoreError::Invalid {
            field: "max_devices",
            message: format!("{} must be 0 to 1000", p.max_devices),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_template_checks_name_the_field() {
        let ok = NewDeviceTemplate {
            name: "t".into(),
            ..Default::default()
        };
        validate_device_template(&ok).unwrap();
        let field = |t: NewDeviceTemplate| match validate_device_template(&t) {
            Err(StoreError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(NewDeviceTemplate {
                description_pattern: "#Name#".into(),
                ..ok.clone()
            }),
            "description_pattern"
        );
        assert_eq!(
            field(NewDeviceTemplate {
                security: SecurityProfile {
                    tls: true,
                    ..Default::default()
                },
                ..ok.clone()
            }),
            "security.tls"
        );
        assert_eq!(
            field(NewDeviceTemplate {
                line_keys: 9,
                ..ok.clone()
            }),
            "line_keys"
        );
        let sd = |position: u32, number: &str| SpeedDial {
            position,
            number: number.into(),
            label: "x".into(),
        };
        assert_eq!(
            field(NewDeviceTemplate {
                speed_dials: vec![sd(1, "8000"), sd(1, "8001")],
                ..ok.clone()
            }),
            "speed_dials"
        );
        assert_eq!(
            field(NewDeviceTemplate {
                speed_dials: vec![sd(1, "80 00")],
                ..ok.clone()
            }),
            "speed_dials"
        );
        assert_eq!(
            field(NewDeviceTemplate {
                name: " ".into(),
                ..ok.clone()
            }),
            "name"
        );
    }

    #[test]
    fn line_template_checks_name_the_field() {
        let ok = NewLineTemplate {
            name: "t".into(),
            ..Default::default()
        };
        validate_line_template(&ok).unwrap();
        let field = |t: NewLineTemplate| match validate_line_template(&t) {
            Err(StoreError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(NewLineTemplate {
                label_pattern: "#Extension# #Dept#".into(),
                ..ok.clone()
            }),
            "label_pattern"
        );
        assert_eq!(
            field(NewLineTemplate {
                busy_trigger: 5,
                ..ok.clone()
            }),
            "busy_trigger"
        );
        assert_eq!(
            field(NewLineTemplate {
                max_calls: 0,
                ..ok.clone()
            }),
            "max_calls"
        );
        let mut cf = CallForwards::default();
        cf.busy.enabled = true;
        assert_eq!(
            field(NewLineTemplate {
                call_forward: cf,
                ..ok.clone()
            }),
            "call_forward.busy"
        );
    }
}
