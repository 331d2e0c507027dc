//! Lines (directory numbers), SIP endpoints (the credentials a phone registers a line with), and
//! the associations of Wazo's REST flow: user ↔ line, line ↔ SIP endpoint, line ↔ device.
//!
//! A line may appear on several devices (a user's desk phones share the user's line, as a
//! CUCM shared line), but once per device; one SIP endpoint per line and one line per endpoint.

use super::list::{run_list, ListSpec};
use super::templates::{
    call_forwards_from_row, check_exists, validate_call_forwards, validate_call_limits,
    validate_dial_string,
};
use super::{
    from_millis, now_millis, to_u32, validate_digits, validate_text, Backend, CallForward,
    CallForwards, DeviceLine, DeviceType, Line, ListQuery, NewLine, NewSipEndpoint, Page,
    SipEndpoint, Store, StoreError, WritePool,
};
use rand::Rng;
use std::collections::HashMap;

const LINE_COLUMNS: &str = "SELECT id, number, context, caller_id_name, label, voicemail, \
     cfwd_all_destination, cfwd_all_enabled, cfwd_busy_destination, cfwd_busy_enabled, \
     cfwd_noanswer_destination, cfwd_noanswer_enabled, max_calls, busy_trigger, created_at";

/// Decodes a row of [`LINE_COLUMNS`] (associations are filled in later).
macro_rules! line_from_row {
    ($row:expr) => {{
        let r = $row;
        (|| -> Result<Line, StoreError> {
            Ok(Line {
                id: col!(r, "id"),
                spec: NewLine {
                    number: col!(r, "number"),
                    context: col!(r, "context"),
                    caller_id_name: col!(r, "caller_id_name"),
                    label: col!(r, "label"),
                    voicemail: col!(r, "voicemail"),
                    call_forward: call_forwards_from_row!(r),
                    max_calls: to_u32(col!(r, "max_calls"), "max_calls")?,
                    busy_trigger: to_u32(col!(r, "busy_trigger"), "busy_trigger")?,
                },
                user_ids: Vec::new(),
                sip_endpoint_id: None,
                device_ids: Vec::new(),
                created_at: from_millis(col!(r, "created_at")),
            })
        })()
    }};
}

const SIP_COLUMNS: &str = "SELECT s.id, s.auth_username, s.password, s.transport, \
     s.digest_required, s.created_at, le.line_id";

macro_rules! sip_from_row {
    ($row:expr) => {{
        let r = $row;
        (|| -> Result<SipEndpoint, StoreError> {
            let transport: String = col!(r, "transport");
            Ok(SipEndpoint {
                id: col!(r, "id"),
                auth_username: col!(r, "auth_username"),
                password: col!(r, "password"),
                transport: transport.parse().map_err(StoreError::Corrupt)?,
                digest_required: col!(r, "digest_required"),
                line_id: col!(r, "line_id"),
                created_at: from_millis(col!(r, "created_at")),
            })
        })()
    }};
}

const LINES: ListSpec = ListSpec {
    select: LINE_COLUMNS,
    from: "FROM lines",
    orders: &[
        ("id", "id"),
        ("number", "number"),
        ("context", "context"),
        ("caller_id_name", "caller_id_name"),
        ("label", "label"),
        ("created_at", "created_at"),
    ],
    default_order: "number",
    key: "id",
    search: &["number", "context", "caller_id_name", "label"],
};

const SIP_ENDPOINTS: ListSpec = ListSpec {
    select: SIP_COLUMNS,
    from: "FROM sip_endpoints s LEFT JOIN line_endpoints le ON le.sip_endpoint_id = s.id",
    orders: &[
        ("id", "s.id"),
        ("auth_username", "s.auth_username"),
        ("transport", "s.transport"),
        ("created_at", "s.created_at"),
    ],
    default_order: "id",
    key: "s.id",
    search: &["s.auth_username"],
};

/// Length of generated SIP passwords: 24 characters from 62 ≈ 143 bits.
const PASSWORD_LEN: usize = 24;
/// Length of generated SIP user names (lower case and digits, ≈ 52 bits: not a secret, but
/// not guessable from the extension either).
const USERNAME_LEN: usize = 10;

/// A strong random SIP password (letters and digits: every phone's web UI and config format
/// accepts them). `rand::rng()` is a CSPRNG seeded from the OS.
pub(super) fn generate_password() -> String {
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// A random SIP auth user name.
pub(super) fn generate_username() -> String {
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..USERNAME_LEN)
        .map(|_| {
            let i = rng.random_range(0..CHARS.len());
            char::from(CHARS.get(i).copied().unwrap_or(b'a'))
        })
        .collect()
}

/// Inserts a SIP endpoint inside a transaction, generating what is missing; a generated user
/// name that happens to be taken is drawn again. Yields `Result<i64, StoreError>` via `?`.
macro_rules! insert_sip_in_tx {
    ($tx:ident, $new:expr, $now:expr) => {{
        let new: &NewSipEndpoint = $new;
        let password = new.password.clone().unwrap_or_else(generate_password);
        let username = new.auth_username.clone();
        let mut id: Option<i64> = None;
        for _ in 0..5 {
            let candidate = username.clone().unwrap_or_else(generate_username);
            let taken: Option<i64> =
                sqlx::query_scalar("SELECT id FROM sip_endpoints WHERE auth_username = $1")
                    .bind(candidate.as_str())
                    .fetch_optional(&mut *$tx)
                    .await?;
            if taken.is_some() {
                if username.is_some() {
                    return Err(StoreError::Duplicate {
                        what: "SIP endpoint",
                        field: "auth_username",
                        value: candidate,
                    });
                }
                continue;
            }
            id = Some(
                sqlx::query_scalar(
                    "INSERT INTO sip_endpoints (auth_username, password, transport, \
                     digest_required, created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
                )
                .bind(candidate.as_str())
                .bind(password.as_str())
                .bind(new.transport.as_str())
                .bind(new.digest_required)
                .bind($now)
                .fetch_one(&mut *$tx)
                .await?,
            );
            break;
        }
        id.ok_or_else(|| StoreError::Conflict("could not draw a free SIP user name".into()))?
    }};
}
pub(super) use insert_sip_in_tx;

/// Fails with [`StoreError::Duplicate`] when another line has this number in this context.
macro_rules! check_line_free {
    ($tx:ident, $new:expr, $self_id:expr) => {{
        let new: &NewLine = $new;
        let self_id: Option<i64> = $self_id;
        let other: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM lines WHERE number = $1 AND context = $2 AND id <> $3",
        )
        .bind(new.number.as_str())
        .bind(new.context.as_str())
        .bind(self_id.unwrap_or(0))
        .fetch_optional(&mut *$tx)
        .await?;
        if other.is_some() {
            return Err(StoreError::Duplicate {
                what: "line",
                field: "number",
                value: format!("{}@{}", new.number, new.context),
            });
        }
    }};
}

/// Inserts a line inside a transaction; yields its ID.
macro_rules! insert_line_in_tx {
    ($tx:ident, $new:expr, $now:expr) => {{
        let new: &NewLine = $new;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO lines (number, context, caller_id_name, label, voicemail, \
             cfwd_all_destination, cfwd_all_enabled, cfwd_busy_destination, cfwd_busy_enabled, \
             cfwd_noanswer_destination, cfwd_noanswer_enabled, max_calls, busy_trigger, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             RETURNING id",
        )
        .bind(new.number.as_str())
        .bind(new.context.as_str())
        .bind(new.caller_id_name.as_str())
        .bind(new.label.as_str())
        .bind(new.voicemail.as_deref())
        .bind(new.call_forward.all.destination.as_deref())
        .bind(new.call_forward.all.enabled)
        .bind(new.call_forward.busy.destination.as_deref())
        .bind(new.call_forward.busy.enabled)
        .bind(new.call_forward.no_answer.destination.as_deref())
        .bind(new.call_forward.no_answer.enabled)
        .bind(i64::from(new.max_calls))
        .bind(i64::from(new.busy_trigger))
        .bind($now)
        .fetch_one(&mut *$tx)
        .await?;
        id
    }};
}
pub(super) use insert_line_in_tx;

impl Store {
    // ------------------------------------------------------------------------------------------
    // Lines
    // ------------------------------------------------------------------------------------------

    /// A page of lines with their associations. `order`: `id`, `number` (default), `context`,
    /// `caller_id_name`, `label`, `created_at`; `search` looks in the number, context,
    /// caller-ID name and label.
    pub async fn list_lines(&self, q: &ListQuery) -> Result<Page<Line>, StoreError> {
        let sql = LINES.build(q)?;
        let (total, mut items) = with_pool!(self, |pool| run_list!(pool, sql, line_from_row))?;
        self.fill_line_associations(&mut items).await?;
        Ok(Page { total, items })
    }

    /// One line with its associations.
    pub async fn get_line(&self, id: i64) -> Result<Option<Line>, StoreError> {
        let sql = format!("{LINE_COLUMNS} FROM lines WHERE id = $1");
        let line = with_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(|r| line_from_row!(r)).transpose()
        })?;
        let Some(line) = line else {
            return Ok(None);
        };
        let mut lines = [line];
        self.fill_line_associations(&mut lines).await?;
        let [line] = lines;
        Ok(Some(line))
    }

    /// Fills in users, SIP endpoint and devices of these lines.
    async fn fill_line_associations(&self, lines: &mut [Line]) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        // Integers read from the store: safe to splice.
        let list = lines
            .iter()
            .map(|l| l.id.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let users_sql =
            format!("SELECT line_id, user_id FROM user_lines WHERE line_id IN ({list})");
        let sip_sql = format!(
            "SELECT line_id, sip_endpoint_id FROM line_endpoints WHERE line_id IN ({list})"
        );
        let dev_sql =
            format!("SELECT line_id, device_id FROM device_lines WHERE line_id IN ({list})");
        type Pairs = Vec<(i64, i64)>;
        let (users, sips, devices): (Pairs, Pairs, Pairs) = with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let users = sqlx::query_as(sqlx::AssertSqlSafe(users_sql))
                .fetch_all(&mut *tx)
                .await?;
            let sips = sqlx::query_as(sqlx::AssertSqlSafe(sip_sql))
                .fetch_all(&mut *tx)
                .await?;
            let devices = sqlx::query_as(sqlx::AssertSqlSafe(dev_sql))
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            (users, sips, devices)
        });
        let mut by_line: HashMap<i64, &mut Line> = lines.iter_mut().map(|l| (l.id, l)).collect();
        for (line, user) in users {
            if let Some(l) = by_line.get_mut(&line) {
                l.user_ids.push(user);
            }
        }
        for (line, sip) in sips {
            if let Some(l) = by_line.get_mut(&line) {
                l.sip_endpoint_id = Some(sip);
            }
        }
        for (line, device) in devices {
            if let Some(l) = by_line.get_mut(&line) {
                l.device_ids.push(device);
            }
        }
        for l in by_line.into_values() {
            l.user_ids.sort_unstable();
            l.device_ids.sort_unstable();
        }
        Ok(())
    }

    /// Creates a line. Refused: a number already used in the same context
    /// ([`StoreError::Duplicate`] on `number`), a number that is not digits, bad call
    /// forwards or call limits ([`StoreError::Invalid`] naming the field).
    pub async fn create_line(&self, new: NewLine) -> Result<Line, StoreError> {
        validate_line(&new)?;
        let now = now_millis();
        let id: i64 = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            check_line_free!(tx, &new, None);
            let id = insert_line_in_tx!(tx, &new, now);
            tx.commit().await?;
            Ok::<i64, StoreError>(id)
        })?;
        self.get_line(id)
            .await?
            .ok_or(StoreError::NotFound { what: "line", id })
    }

    /// Replaces a line's fields (associations stay). Same checks as [`Store::create_line`];
    /// [`StoreError::NotFound`] when there is no such line.
    pub async fn update_line(&self, id: i64, new: NewLine) -> Result<Line, StoreError> {
        validate_line(&new)?;
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            check_exists!(tx, "lines", "line", id);
            check_line_free!(tx, &new, Some(id));
            sqlx::query(
                "UPDATE lines SET number = $2, context = $3, caller_id_name = $4, label = $5, \
                 voicemail = $6, cfwd_all_destination = $7, cfwd_all_enabled = $8, \
                 cfwd_busy_destination = $9, cfwd_busy_enabled = $10, \
                 cfwd_noanswer_destination = $11, cfwd_noanswer_enabled = $12, max_calls = $13, \
                 busy_trigger = $14 WHERE id = $1",
            )
            .bind(id)
            .bind(new.number.as_str())
            .bind(new.context.as_str())
            .bind(new.caller_id_name.as_str())
            .bind(new.label.as_str())
            .bind(new.voicemail.as_deref())
            .bind(new.call_forward.all.destination.as_deref())
            .bind(new.call_forward.all.enabled)
            .bind(new.call_forward.busy.destination.as_deref())
            .bind(new.call_forward.busy.enabled)
            .bind(new.call_forward.no_answer.destination.as_deref())
            .bind(new.call_forward.no_answer.enabled)
            .bind(i64::from(new.max_calls))
            .bind(i64::from(new.busy_trigger))
            .execute(&mut *tx)
            .await?;
            // Keep the denormalised number of device appearances in step.
            sqlx::query("UPDATE device_lines SET number = $2 WHERE line_id = $1")
                .bind(id)
                .bind(new.number.as_str())
                .execute(&mut *tx)
                .await?;
            lines_changed_in_tx!(&self.pbx, tx, &[id]);
            tx.commit().await?;
            self.outbox_written();
            Ok::<(), StoreError>(())
        })?;
        self.get_line(id)
            .await?
            .ok_or(StoreError::NotFound { what: "line", id })
    }

    /// Deletes a line and its associations (users, endpoint, device appearances); its SIP
    /// endpoint stays (delete it separately). False when there is no such line.
    pub async fn delete_line(&self, id: i64) -> Result<bool, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let number: Option<String> =
                sqlx::query_scalar("SELECT number FROM lines WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let done = sqlx::query("DELETE FROM lines WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            if number.is_some() {
                let event = crate::pbx::event::PbxEvent::LineDeleted {
                    line_id: id,
                    number,
                };
                enqueue_in_tx!(&self.pbx, tx, &event);
            }
            tx.commit().await?;
            self.outbox_written();
            Ok(done.rows_affected() > 0)
        })
    }

    // ------------------------------------------------------------------------------------------
    // SIP endpoints
    // ------------------------------------------------------------------------------------------

    /// A page of SIP endpoints (passwords are in the records but never serialised). `order`:
    /// `id` (default), `auth_username`, `transport`, `created_at`; `search` looks in the user
    /// name.
    pub async fn list_sip_endpoints(&self, q: &ListQuery) -> Result<Page<SipEndpoint>, StoreError> {
        let sql = SIP_ENDPOINTS.build(q)?;
        let (total, items) = with_pool!(self, |pool| run_list!(pool, sql, sip_from_row))?;
        Ok(Page { total, items })
    }

    /// One SIP endpoint, with its password (for the provisioning server).
    pub async fn get_sip_endpoint(&self, id: i64) -> Result<Option<SipEndpoint>, StoreError> {
        let sql = format!(
            "{SIP_COLUMNS} FROM sip_endpoints s \
             LEFT JOIN line_endpoints le ON le.sip_endpoint_id = s.id WHERE s.id = $1"
        );
        with_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(|r| sip_from_row!(r)).transpose()
        })
    }

    /// Creates a SIP endpoint; a missing user name or password is generated (24 random
    /// letters and digits). The returned record holds the password: hand it to the phone's
    /// configuration, never to a log. A user name already used is [`StoreError::Duplicate`].
    pub async fn create_sip_endpoint(
        &self,
        new: NewSipEndpoint,
    ) -> Result<SipEndpoint, StoreError> {
        validate_sip(&new)?;
        let now = now_millis();
        let id: i64 = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let id = insert_sip_in_tx!(tx, &new, now);
            tx.commit().await?;
            Ok::<i64, StoreError>(id)
        })?;
        self.get_sip_endpoint(id)
            .await?
            .ok_or(StoreError::NotFound {
                what: "SIP endpoint",
                id,
            })
    }

    /// Replaces a SIP endpoint's transport and digest setting; a given user name or password
    /// replaces the stored one, `None` keeps it. [`StoreError::NotFound`] when there is no such
    /// endpoint.
    pub async fn update_sip_endpoint(
        &self,
        id: i64,
        new: NewSipEndpoint,
    ) -> Result<SipEndpoint, StoreError> {
        validate_sip(&new)?;
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            check_exists!(tx, "sip_endpoints", "SIP endpoint", id);
            if let Some(u) = new.auth_username.as_deref() {
                let other: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM sip_endpoints WHERE auth_username = $1 AND id <> $2",
                )
                .bind(u)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                if other.is_some() {
                    return Err(StoreError::Duplicate {
                        what: "SIP endpoint",
                        field: "auth_username",
                        value: u.to_string(),
                    });
                }
            }
            sqlx::query(
                "UPDATE sip_endpoints SET auth_username = COALESCE($2, auth_username), \
                 password = COALESCE($3, password), transport = $4, digest_required = $5 \
                 WHERE id = $1",
            )
            .bind(id)
            .bind(new.auth_username.as_deref())
            .bind(new.password.as_deref())
            .bind(new.transport.as_str())
            .bind(new.digest_required)
            .execute(&mut *tx)
            .await?;
            let lines: Vec<i64> =
                sqlx::query_scalar("SELECT line_id FROM line_endpoints WHERE sip_endpoint_id = $1")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
            lines_changed_in_tx!(&self.pbx, tx, &lines);
            tx.commit().await?;
            self.outbox_written();
            Ok::<(), StoreError>(())
        })?;
        self.get_sip_endpoint(id)
            .await?
            .ok_or(StoreError::NotFound {
                what: "SIP endpoint",
                id,
            })
    }

    /// Deletes a SIP endpoint; refused with [`StoreError::InUse`] while a line uses it
    /// (dissociate first, as in Wazo). False when there is no such endpoint.
    pub async fn delete_sip_endpoint(&self, id: i64) -> Result<bool, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let line: Option<i64> =
                sqlx::query_scalar("SELECT line_id FROM line_endpoints WHERE sip_endpoint_id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(line) = line {
                return Err(StoreError::InUse {
                    what: "SIP endpoint",
                    id,
                    by: format!("line {line}"),
                });
            }
            let done = sqlx::query("DELETE FROM sip_endpoints WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    // ------------------------------------------------------------------------------------------
    // Associations
    // ------------------------------------------------------------------------------------------

    /// Gives a line to a user (`PUT /users/{user_id}/lines/{line_id}`). Idempotent.
    /// [`StoreError::NotFound`] for a missing user or line.
    pub async fn associate_user_line(&self, user_id: i64, line_id: i64) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            check_exists!(tx, "users", "user", user_id);
            check_exists!(tx, "lines", "line", line_id);
            let present: Option<i64> = sqlx::query_scalar(
                "SELECT user_id FROM user_lines WHERE user_id = $1 AND line_id = $2",
            )
            .bind(user_id)
            .bind(line_id)
            .fetch_optional(&mut *tx)
            .await?;
            if present.is_none() {
                sqlx::query("INSERT INTO user_lines (user_id, line_id) VALUES ($1, $2)")
                    .bind(user_id)
                    .bind(line_id)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    /// Takes a line from a user. False when they were not associated.
    pub async fn dissociate_user_line(
        &self,
        user_id: i64,
        line_id: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query("DELETE FROM user_lines WHERE user_id = $1 AND line_id = $2")
                .bind(user_id)
                .bind(line_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// Gives a line its SIP endpoint (`PUT /lines/{line_id}/endpoints/sip/{sip_id}`).
    /// Idempotent for the same pair; [`StoreError::InUse`] when the line has another endpoint
    /// or the endpoint serves another line; [`StoreError::NotFound`] for a missing one.
    pub async fn associate_line_endpoint(
        &self,
        line_id: i64,
        sip_id: i64,
    ) -> Result<(), StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            check_exists!(tx, "lines", "line", line_id);
            check_exists!(tx, "sip_endpoints", "SIP endpoint", sip_id);
            let pairs: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT line_id, sip_endpoint_id FROM line_endpoints \
                 WHERE line_id = $1 OR sip_endpoint_id = $2",
            )
            .bind(line_id)
            .bind(sip_id)
            .fetch_all(&mut *tx)
            .await?;
            if pairs.contains(&(line_id, sip_id)) {
                return Ok(());
            }
            if let Some((_, other)) = pairs.iter().find(|(l, _)| *l == line_id) {
                return Err(StoreError::InUse {
                    what: "line",
                    id: line_id,
                    by: format!("SIP endpoint {other} (dissociate it first)"),
                });
            }
            if let Some((other, _)) = pairs.first() {
                return Err(StoreError::InUse {
                    what: "SIP endpoint",
                    id: sip_id,
                    by: format!("line {other}"),
                });
            }
            sqlx::query("INSERT INTO line_endpoints (line_id, sip_endpoint_id) VALUES ($1, $2)")
                .bind(line_id)
                .bind(sip_id)
                .execute(&mut *tx)
                .await?;
            lines_changed_in_tx!(&self.pbx, tx, &[line_id]);
            tx.commit().await?;
            self.outbox_written();
            Ok(())
        })
    }

    /// Takes a line's SIP endpoint away. Refused with [`StoreError::InUse`] while the line is
    /// on a device (the phone registers with it). False when they were not associated.
    pub async fn dissociate_line_endpoint(
        &self,
        line_id: i64,
        sip_id: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let present: Option<i64> = sqlx::query_scalar(
                "SELECT line_id FROM line_endpoints WHERE line_id = $1 AND sip_endpoint_id = $2",
            )
            .bind(line_id)
            .bind(sip_id)
            .fetch_optional(&mut *tx)
            .await?;
            if present.is_none() {
                return Ok(false);
            }
            let device: Option<i64> = sqlx::query_scalar(
                "SELECT device_id FROM device_lines WHERE line_id = $1 ORDER BY device_id LIMIT 1",
            )
            .bind(line_id)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(device) = device {
                return Err(StoreError::InUse {
                    what: "line",
                    id: line_id,
                    by: format!("device {device} (dissociate the line from it first)"),
                });
            }
            sqlx::query("DELETE FROM line_endpoints WHERE line_id = $1")
                .bind(line_id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Puts a line on a device at the lowest free position (`PUT
    /// /lines/{line_id}/devices/{device_id}`); see [`Store::associate_line_device_at`].
    pub async fn associate_line_device(
        &self,
        line_id: i64,
        device_id: i64,
    ) -> Result<DeviceLine, StoreError> {
        self.associate_line_device_at(line_id, device_id, None)
            .await
    }

    /// Puts a line on a device at `position` (or the lowest free one). Checks, as Wazo does:
    /// the line has a SIP endpoint and a user ([`StoreError::LineNotReady`]); the position is
    /// free ([`StoreError::PositionTaken`]); the device type's line limit (basic 1, advanced 8:
    /// [`StoreError::LineLimit`]). The same line already on the device: returns its
    /// appearance unchanged (idempotent).
    pub async fn associate_line_device_at(
        &self,
        line_id: i64,
        device_id: i64,
        position: Option<u32>,
    ) -> Result<DeviceLine, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let line: Option<(String, String)> =
                sqlx::query_as("SELECT number, label FROM lines WHERE id = $1")
                    .bind(line_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((number, label)) = line else {
                return Err(StoreError::NotFound {
                    what: "line",
                    id: line_id,
                });
            };
            let device_type: Option<String> =
                sqlx::query_scalar("SELECT device_type FROM devices WHERE id = $1")
                    .bind(device_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(device_type) = device_type else {
                return Err(StoreError::NotFound {
                    what: "device",
                    id: device_id,
                });
            };
            let device_type: DeviceType = device_type.parse().map_err(StoreError::Corrupt)?;
            let present: Vec<(i64, Option<i64>)> = sqlx::query_as(
                "SELECT position, line_id FROM device_lines WHERE device_id = $1 ORDER BY position",
            )
            .bind(device_id)
            .fetch_all(&mut *tx)
            .await?;
            if let Some((pos, _)) = present.iter().find(|(_, l)| *l == Some(line_id)) {
                return Ok(DeviceLine {
                    position: to_u32(*pos, "position")?,
                    number,
                    line_id: Some(line_id),
                    label,
                });
            }
            let has_endpoint: Option<i64> =
                sqlx::query_scalar("SELECT sip_endpoint_id FROM line_endpoints WHERE line_id = $1")
                    .bind(line_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if has_endpoint.is_none() {
                return Err(StoreError::LineNotReady {
                    line_id,
                    missing: "SIP endpoint",
                });
            }
            let has_user: Option<i64> = sqlx::query_scalar(
                "SELECT user_id FROM user_lines WHERE line_id = $1 ORDER BY user_id LIMIT 1",
            )
            .bind(line_id)
            .fetch_optional(&mut *tx)
            .await?;
            if has_user.is_none() {
                return Err(StoreError::LineNotReady {
                    line_id,
                    missing: "user",
                });
            }
            let max = device_type.max_lines();
            if present.len() >= max as usize {
                return Err(StoreError::LineLimit {
                    device_id,
                    device_type: device_type.as_str(),
                    max,
                });
            }
            let taken: Vec<i64> = present.iter().map(|(p, _)| *p).collect();
            let position = match position {
                Some(p) => {
                    if p == 0 || p > max {
                        return Err(StoreError::Invalid {
                            field: "position",
                            message: format!(
                                "{p} must be 1 to {max} on a {} device",
                                device_type.as_str()
                            ),
                        });
                    }
                    if taken.contains(&i64::from(p)) {
                        return Err(StoreError::PositionTaken {
                            device_id,
                            position: p,
                        });
                    }
                    p
                }
                None => (1..=max)
                    .find(|p| !taken.contains(&i64::from(*p)))
                    .unwrap_or(max),
            };
            sqlx::query(
                "INSERT INTO device_lines (device_id, position, number, line_id) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(device_id)
            .bind(i64::from(position))
            .bind(number.as_str())
            .bind(line_id)
            .execute(&mut *tx)
            .await?;
            lines_changed_in_tx!(&self.pbx, tx, &[line_id]);
            tx.commit().await?;
            self.outbox_written();
            Ok(DeviceLine {
                position,
                number,
                line_id: Some(line_id),
                label,
            })
        })
    }

    /// Takes a line off a device; the line's password is rotated (the device keeps no working
    /// credentials for it) and the PBX connectors told. False when it was not on it.
    pub async fn dissociate_line_device(
        &self,
        line_id: i64,
        device_id: i64,
    ) -> Result<bool, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let done =
                sqlx::query("DELETE FROM device_lines WHERE line_id = $1 AND device_id = $2")
                    .bind(line_id)
                    .bind(device_id)
                    .execute(&mut *tx)
                    .await?;
            if done.rows_affected() > 0 {
                // The phone that loses the line loses its credentials.
                rotate_line_passwords_in_tx!(tx, &[line_id]);
                lines_changed_in_tx!(&self.pbx, tx, &[line_id]);
            }
            tx.commit().await?;
            self.outbox_written();
            Ok(done.rows_affected() > 0)
        })
    }
}

pub(super) fn validate_line(l: &NewLine) -> Result<(), StoreError> {
    validate_digits("number", &l.number)?;
    validate_text("context", &l.context, true)?;
    validate_text("caller_id_name", &l.caller_id_name, false)?;
    validate_text("label", &l.label, false)?;
    if let Some(v) = l.voicemail.as_deref() {
        validate_dial_string("voicemail", v)?;
    }
    validate_call_forwards(&l.call_forward)?;
    validate_call_limits(l.max_calls, l.busy_trigger)
}

fn validate_sip(s: &NewSipEndpoint) -> Result<(), StoreError> {
    if let Some(u) = s.auth_username.as_deref() {
        if u.is_empty()
            || u.len() > 64
            || !u
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(StoreError::Invalid {
                field: "auth_username",
                message: "must be 1 to 64 characters A-Z a-z 0-9 . _ -".into(),
            });
        }
    }
    if let Some(p) = s.password.as_deref() {
        // Never echo the password in the message.
        if p.len() < 8 || p.len() > 128 || !p.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(StoreError::Invalid {
                field: "password",
                message: "must be 8 to 128 printable ASCII characters without spaces".into(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_credentials_are_strong_and_distinct() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        let u = generate_username();
        assert_eq!(u.len(), USERNAME_LEN);
        assert!(u
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        validate_sip(&NewSipEndpoint {
            auth_username: Some(u),
            password: Some(a),
            ..Default::default()
        })
        .unwrap();
    }

    #[test]
    fn bad_sip_password_error_does_not_echo_it() {
        let e = validate_sip(&NewSipEndpoint {
            password: Some("short\u{1}".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(!e.to_string().contains("short"), "{e}");
    }
}
