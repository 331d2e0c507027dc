//! Binding a calling phone to a user (issue 3, "What binding does"), in ONE write transaction:
//!
//! 1. resolve the user's profile (or the settings' default profile) and its two templates;
//! 2. create or reuse the user's line for the primary extension, built from the line template
//!    (caller-ID name and label patterns expanded), and give it a SIP endpoint with generated
//!    credentials if it has none;
//! 3. apply the device template (description pattern with `#Product#` = the phone's model and
//!    `#Protocol#` = `SIP`), put the line at position 1, set the owner and state `provisioning`;
//! 4. refuse a phone bound to another user (unless the caller used the admin code and takeover
//!    is allowed: audited as `takeover`), a user whose profile does not allow self-provisioning,
//!    and a user who already owns as many devices as the profile allows;
//! 5. record an audit event (who, which phone, how authenticated, outcome).
//!
//! A refusal rolls the attempt back and then writes only its audit event; any failure leaves
//! nothing. Binding the same phone to the same user again changes nothing but the state (back
//! to `provisioning`) and `last_seen`: it is idempotent.

use super::lines::{generate_password, generate_username, insert_line_in_tx, insert_sip_in_tx};
use super::templates::{
    call_forwards_from_row, device_template_from_row, device_template_in_tx,
    line_template_from_row, line_template_in_tx, profile_from_row, profile_in_tx,
};
use super::{
    now_millis, to_u32, validate_identity, AuditOutcome, AuthMethod, Backend, BindOptions, Binding,
    CallForward, CallForwards, Device, DeviceIdentity, DeviceState, DeviceTemplate, LineTemplate,
    NewDeviceTemplate, NewLine, NewLineTemplate, NewSipEndpoint, NewUserProfile, Protocol,
    SecurityProfile, SpeedDial, Store, StoreError, UserProfile, WritePool,
};
use crate::provisioning::templates::{expand, PatternValues};

/// Why a binding was refused: the audit outcome and the error returned.
struct Refusal {
    outcome: AuditOutcome,
    error: StoreError,
    detail: String,
}

impl Store {
    /// Binds the calling phone to a user (the IVR's call, unchanged since issue 1): as
    /// [`Store::bind_device_with`], with takeover allowed when the settings'
    /// `allow_admin_takeover` is on; returns the device.
    pub async fn bind_device(
        &self,
        identity: &DeviceIdentity,
        user_id: &str,
        auth: AuthMethod,
    ) -> Result<Device, StoreError> {
        let allow_takeover = self.get_settings().await?.allow_admin_takeover;
        Ok(self
            .bind_device_with(identity, user_id, auth, &BindOptions { allow_takeover })
            .await?
            .device)
    }

    /// Binds the calling phone to user `user_id` in one transaction (see the module doc) and
    /// returns the device, its line 1, that line's SIP endpoint (with the credentials the phone
    /// must be given) and the device template applied.
    ///
    /// The device is found by MAC, else device name, else SIP identity, or created. Refusals,
    /// each with its own audit event: [`StoreError::UnknownUser`], [`StoreError::UserDisabled`],
    /// [`StoreError::NoProfile`], [`StoreError::ProvisionNotAllowed`],
    /// [`StoreError::AlreadyBound`] (a phone of another user, unless `auth` is
    /// [`AuthMethod::AdminCode`] and `options.allow_takeover`), [`StoreError::DeviceLimit`]
    /// (the user already owns the profile's `max_devices` phones), [`StoreError::InUse`] (the
    /// extension's line belongs to another user).
    pub async fn bind_device_with(
        &self,
        identity: &DeviceIdentity,
        user_id: &str,
        auth: AuthMethod,
        options: &BindOptions,
    ) -> Result<Binding, StoreError> {
        validate_identity(identity)?;
        let key = identity.key().to_string();
        // (device id, line id, sip id, template, previous owner taken over from)
        type Done = (i64, i64, i64, DeviceTemplate, Option<String>);
        let done: Done = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            type UserRow = (i64, String, String, String, bool, Option<i64>);
            let user: Option<UserRow> = sqlx::query_as(
                "SELECT id, first_name, last_name, extension, selfprov_enabled, profile_id \
                 FROM users WHERE user_id = $1",
            )
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
            let found = find_device!(tx, identity);
            let device_id = found.map(|(id, _)| id);

            // Everything that can refuse, before anything is written.
            let mut refusal: Option<Refusal> = None;
            let mut plan: Option<(UserRow, UserProfile, Option<String>)> = None;
            match user {
                None => {
                    refusal = Some(Refusal {
                        outcome: AuditOutcome::UnknownUser,
                        error: StoreError::UnknownUser(user_id.to_string()),
                        detail: String::new(),
                    })
                }
                Some(u) if !u.4 => {
                    refusal = Some(Refusal {
                        outcome: AuditOutcome::UserDisabled,
                        error: StoreError::UserDisabled(user_id.to_string()),
                        detail: String::new(),
                    })
                }
                Some(u) => {
                    let profile_id = match u.5 {
                        Some(p) => Some(p),
                        None => sqlx::query_scalar::<_, Option<i64>>(
                            "SELECT default_profile_id FROM selfprov_settings WHERE id = 1",
                        )
                        .fetch_optional(&mut *tx)
                        .await?
                        .flatten(),
                    };
                    let profile: Option<UserProfile> = match profile_id {
                        Some(p) => profile_in_tx!(tx, p),
                        None => None,
                    };
                    match profile {
                        None => {
                            refusal = Some(Refusal {
                                outcome: AuditOutcome::NotAllowed,
                                error: StoreError::NoProfile(user_id.to_string()),
                                detail: "no user profile and no default profile".into(),
                            })
                        }
                        Some(p) if !p.spec.allow_provision => {
                            refusal = Some(Refusal {
                                outcome: AuditOutcome::NotAllowed,
                                detail: format!("profile {:?} does not allow it", p.spec.name),
                                error: StoreError::ProvisionNotAllowed {
                                    user: user_id.to_string(),
                                    profile: p.spec.name,
                                },
                            })
                        }
                        Some(p) => {
                            let previous_owner = found.and_then(|(_, o)| o).filter(|o| *o != u.0);
                            let mut taken_from = None;
                            if let Some(owner) = previous_owner {
                                let owner_name: String = sqlx::query_scalar::<_, String>(
                                    "SELECT user_id FROM users WHERE id = $1",
                                )
                                .bind(owner)
                                .fetch_optional(&mut *tx)
                                .await?
                                .unwrap_or_else(|| format!("#{owner}"));
                                if auth == AuthMethod::AdminCode && options.allow_takeover {
                                    taken_from = Some(owner_name);
                                } else {
                                    refusal = Some(Refusal {
                                        outcome: AuditOutcome::AlreadyBound,
                                        detail: format!("phone is bound to user {owner_name}"),
                                        error: StoreError::AlreadyBound {
                                            device: key.clone(),
                                            owner: owner_name,
                                        },
                                    });
                                }
                            }
                            let already_mine = found.and_then(|(_, o)| o) == Some(u.0);
                            if refusal.is_none() && !already_mine {
                                let owned: i64 = sqlx::query_scalar(
                                    "SELECT COUNT(*) FROM devices WHERE owner_id = $1",
                                )
                                .bind(u.0)
                                .fetch_one(&mut *tx)
                                .await?;
                                let max = p.spec.max_devices;
                                if owned >= i64::from(max) {
                                    refusal = Some(Refusal {
                                        outcome: AuditOutcome::DeviceLimit,
                                        detail: format!(
                                            "user owns {owned} device(s); profile {:?} allows {max}",
                                            p.spec.name
                                        ),
                                        error: StoreError::DeviceLimit {
                                            user: user_id.to_string(),
                                            max,
                                        },
                                    });
                                }
                            }
                            if refusal.is_none() {
                                plan = Some((u, p, taken_from));
                            }
                        }
                    }
                }
            }
            if let Some(r) = refusal {
                // Nothing of the attempt is kept but its audit event.
                tx.rollback().await?;
                let mut tx = pool.begin_write().await?;
                insert_audit!(
                    tx,
                    device_id,
                    key.as_str(),
                    Some(user_id),
                    Some(auth),
                    r.outcome,
                    r.detail
                );
                tx.commit().await?;
                return Err(r.error);
            }
            let Some((user, profile, taken_from)) = plan else {
                return Err(StoreError::Corrupt("binding plan missing".into()));
            };
            let (uid, first_name, last_name, extension, _, _) = user;

            // 1. The templates (foreign keys guarantee they exist).
            let dt: Option<DeviceTemplate> =
                device_template_in_tx!(tx, profile.spec.device_template_id);
            let lt: Option<LineTemplate> = line_template_in_tx!(tx, profile.spec.line_template_id);
            let (Some(dt), Some(lt)) = (dt, lt) else {
                return Err(StoreError::Corrupt(format!(
                    "user profile {} names a template that does not exist",
                    profile.id
                )));
            };
            let product = identity.model.clone().unwrap_or_default();
            let values = PatternValues {
                first_name: &first_name,
                last_name: &last_name,
                user_id,
                extension: &extension,
                product: &product,
                protocol: Protocol::Sip.tag_value(),
            };
            let now = now_millis();

            // 2. The user's line for the primary extension, and its SIP endpoint.
            let mine: Option<i64> = sqlx::query_scalar(
                "SELECT l.id FROM lines l JOIN user_lines ul ON ul.line_id = l.id \
                 WHERE ul.user_id = $1 AND l.number = $2 ORDER BY l.id LIMIT 1",
            )
            .bind(uid)
            .bind(extension.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let (line_id, line_note) = match mine {
                Some(id) => (id, "existing line"),
                None => {
                    let existing: Option<i64> = sqlx::query_scalar(
                        "SELECT id FROM lines WHERE number = $1 AND context = $2",
                    )
                    .bind(extension.as_str())
                    .bind(lt.spec.context.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                    let (id, note) = match existing {
                        Some(id) => {
                            let other: Option<String> = sqlx::query_scalar(
                                "SELECT u.user_id FROM user_lines ul JOIN users u \
                                 ON u.id = ul.user_id WHERE ul.line_id = $1 LIMIT 1",
                            )
                            .bind(id)
                            .fetch_optional(&mut *tx)
                            .await?;
                            if let Some(other) = other {
                                return Err(StoreError::InUse {
                                    what: "line",
                                    id,
                                    by: format!("user {other} (extension {extension})"),
                                });
                            }
                            (id, "unassigned line reused")
                        }
                        None => {
                            let new = NewLine {
                                number: extension.clone(),
                                context: lt.spec.context.clone(),
                                caller_id_name: expand(&lt.spec.caller_id_name_pattern, &values),
                                label: expand(&lt.spec.label_pattern, &values),
                                voicemail: lt.spec.voicemail_enabled.then(|| extension.clone()),
                                call_forward: lt.spec.call_forward.clone(),
                                max_calls: lt.spec.max_calls,
                                busy_trigger: lt.spec.busy_trigger,
                            };
                            (insert_line_in_tx!(tx, &new, now), "new line")
                        }
                    };
                    sqlx::query("INSERT INTO user_lines (user_id, line_id) VALUES ($1, $2)")
                        .bind(uid)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    (id, note)
                }
            };
            let sip: Option<i64> =
                sqlx::query_scalar("SELECT sip_endpoint_id FROM line_endpoints WHERE line_id = $1")
                    .bind(line_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let sip_id = match sip {
                Some(id) => id,
                None => {
                    let new = NewSipEndpoint {
                        auth_username: None,
                        password: None,
                        transport: dt.spec.security.transport,
                        digest_required: dt.spec.security.digest_required,
                    };
                    let id = insert_sip_in_tx!(tx, &new, now);
                    sqlx::query(
                        "INSERT INTO line_endpoints (line_id, sip_endpoint_id) VALUES ($1, $2)",
                    )
                    .bind(line_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    id
                }
            };

            // The lines the phone had before (a phone new to this user loses them).
            let had: Vec<i64> = match device_id {
                Some(d) => device_line_ids_in_tx!(tx, d),
                None => Vec::new(),
            };

            // 3. The device, built from the device template.
            let description = expand(&dt.spec.description_pattern, &values);
            let (id, device_note) = match found {
                Some((id, previous_owner)) => {
                    sqlx::query(
                        "UPDATE devices SET mac = COALESCE(mac, $2), \
                         device_name = COALESCE($3, device_name), vendor = COALESCE($4, vendor), \
                         model = COALESCE($5, model), firmware = COALESCE($6, firmware), \
                         user_agent = COALESCE($7, user_agent), sip_identity = $8, \
                         owner_id = $9, state = $10, last_seen = $11, protocol = $12, \
                         description = $13, template_id = $14 WHERE id = $1",
                    )
                    .bind(id)
                    .bind(identity.mac.as_deref())
                    .bind(identity.device_name.as_deref())
                    .bind(identity.vendor.as_deref())
                    .bind(identity.model.as_deref())
                    .bind(identity.firmware.as_deref())
                    .bind(identity.user_agent.as_deref())
                    .bind(identity.sip_identity.as_str())
                    .bind(uid)
                    .bind(DeviceState::Provisioning.as_str())
                    .bind(now)
                    .bind(Protocol::Sip.as_str())
                    .bind(description.as_str())
                    .bind(dt.id)
                    .execute(&mut *tx)
                    .await?;
                    if previous_owner != Some(uid) {
                        // A phone new to this user is rebuilt: no line of someone else stays.
                        sqlx::query("DELETE FROM device_lines WHERE device_id = $1")
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                    let note = if previous_owner == Some(uid) {
                        "bound again to the same user"
                    } else {
                        "known device"
                    };
                    (id, note)
                }
                None => {
                    let id: i64 = sqlx::query_scalar(
                        "INSERT INTO devices (mac, device_name, vendor, model, firmware, \
                         user_agent, sip_identity, owner_id, state, created_at, last_seen, \
                         protocol, description, template_id) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, $11, $12, $13) \
                         RETURNING id",
                    )
                    .bind(identity.mac.as_deref())
                    .bind(identity.device_name.as_deref())
                    .bind(identity.vendor.as_deref())
                    .bind(identity.model.as_deref())
                    .bind(identity.firmware.as_deref())
                    .bind(identity.user_agent.as_deref())
                    .bind(identity.sip_identity.as_str())
                    .bind(uid)
                    .bind(DeviceState::Provisioning.as_str())
                    .bind(now)
                    .bind(Protocol::Sip.as_str())
                    .bind(description.as_str())
                    .bind(dt.id)
                    .fetch_one(&mut *tx)
                    .await?;
                    (id, "new device")
                }
            };
            // Line 1 = the user's line (moved there if the phone had it elsewhere).
            sqlx::query(
                "DELETE FROM device_lines WHERE device_id = $1 AND (position = 1 OR line_id = $2)",
            )
            .bind(id)
            .bind(line_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO device_lines (device_id, position, number, line_id) \
                 VALUES ($1, 1, $2, $3)",
            )
            .bind(id)
            .bind(extension.as_str())
            .bind(line_id)
            .execute(&mut *tx)
            .await?;

            // 4. What the PBX must learn: lines the phone lost (their passwords rotated, as
            // on an unbind), the user's line, and the binding itself.
            let lost: Vec<i64> = had.iter().copied().filter(|l| *l != line_id).collect();
            rotate_line_passwords_in_tx!(tx, &lost);
            let now_on: Vec<i64> = device_line_ids_in_tx!(tx, id);
            let mut touched = lost.clone();
            touched.push(line_id);
            lines_changed_in_tx!(&self.pbx, tx, &touched);
            let bound = crate::pbx::event::PbxEvent::DeviceBound(crate::pbx::event::DeviceChange {
                device_id: id,
                mac: identity.mac.clone(),
                vendor: identity.vendor.clone(),
                model: identity.model.clone(),
                user_id: Some(user_id.to_string()),
                line_ids: now_on,
            });
            enqueue_in_tx!(&self.pbx, tx, &bound);

            // 5. The audit event.
            let (outcome, detail) = match &taken_from {
                Some(from) => (
                    AuditOutcome::Takeover,
                    format!(
                        "taken over from user {from} with the admin code; line 1 = {extension} \
                         ({line_note}); device template {:?}",
                        dt.spec.name
                    ),
                ),
                None => (
                    AuditOutcome::Bound,
                    format!(
                        "{device_note}; line 1 = {extension} ({line_note}); device template {:?}",
                        dt.spec.name
                    ),
                ),
            };
            insert_audit!(
                tx,
                Some(id),
                key.as_str(),
                Some(user_id),
                Some(auth),
                outcome,
                detail
            );
            tx.commit().await?;
            self.outbox_written();
            (id, line_id, sip_id, dt, taken_from)
        });
        let (device_id, line_id, sip_id, device_template, taken_over_from) = done;
        let gone = |what: &str| {
            StoreError::Conflict(format!(
                "the {what} was removed right after the phone was bound"
            ))
        };
        let device = self
            .get_device(device_id)
            .await?
            .ok_or_else(|| gone("device"))?;
        let line = self.get_line(line_id).await?.ok_or_else(|| gone("line"))?;
        let sip_endpoint = self
            .get_sip_endpoint(sip_id)
            .await?
            .ok_or_else(|| gone("SIP endpoint"))?;
        Ok(Binding {
            device,
            line,
            sip_endpoint,
            device_template,
            taken_over_from,
        })
    }
}
