//! Users: the CLI's methods (`add_user`, `list_users`, `get_user`, `remove_user`), the IVR's
//! look-up (`find_user_for_ivr`), and the admin API's CRUD (`list_users_page`, `create_user`,
//! `update_user`, `delete_user`).

use super::list::{run_list, ListSpec};
use super::templates::check_ref;
use super::{
    check_clashes, from_millis, now_millis, to_u32, validate_new_user, AuditOutcome, AuthMethod,
    Backend, DeviceState, ListQuery, NewUser, Page, Store, StoreError, User, UserInput, WritePool,
    MAX_DIGITS,
};

const USERS: ListSpec = ListSpec {
    select: "SELECT id, user_id, selfprov_id, first_name, last_name, extension, pin_hash, \
             selfprov_enabled, created_at, profile_id, password_hash",
    from: "FROM users",
    orders: &[
        ("id", "id"),
        ("user_id", "user_id"),
        ("selfprov_id", "selfprov_id"),
        ("first_name", "first_name"),
        ("last_name", "last_name"),
        ("extension", "extension"),
        ("created_at", "created_at"),
    ],
    default_order: "user_id",
    key: "id",
    search: &[
        "user_id",
        "selfprov_id",
        "first_name",
        "last_name",
        "extension",
    ],
};

/// How [`Store::get_user`] names a user: by store ID (`i64`, the API) or by user ID (`&str`,
/// the CLI and the IVR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserRef<'a> {
    Id(i64),
    UserId(&'a str),
}

impl From<i64> for UserRef<'_> {
    fn from(id: i64) -> Self {
        UserRef::Id(id)
    }
}

impl<'a> From<&'a str> for UserRef<'a> {
    fn from(s: &'a str) -> Self {
        UserRef::UserId(s)
    }
}

impl<'a> From<&'a String> for UserRef<'a> {
    fn from(s: &'a String) -> Self {
        UserRef::UserId(s)
    }
}

impl Store {
    /// Adds a user (the CLI's form: no profile, no password). Refuses (with a conflict error) a
    /// user ID, self-provisioning ID or extension already taken, and a self-provisioning ID
    /// equal to another user's user ID (or the reverse): the IVR looks up either, so such a pair
    /// would be ambiguous.
    pub async fn add_user(&self, new: NewUser) -> Result<User, StoreError> {
        self.create_user(new.into()).await
    }

    /// Creates a user, with the same checks as [`Store::add_user`]; `profile_id` must name an
    /// existing profile ([`StoreError::Invalid`] with field `profile_id` otherwise).
    pub async fn create_user(&self, new: UserInput) -> Result<User, StoreError> {
        validate_new_user(&new)?;
        let created = now_millis();
        let id: i64 = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let clashes: Vec<(String, Option<String>, String)> = sqlx::query_as(
                "SELECT user_id, selfprov_id, extension FROM users \
                 WHERE user_id = $1 OR extension = $2 OR selfprov_id = $3 \
                 OR selfprov_id = $1 OR user_id = $3",
            )
            .bind(new.user_id.as_str())
            .bind(new.extension.as_str())
            .bind(new.selfprov_id.as_deref())
            .fetch_all(&mut *tx)
            .await?;
            check_clashes(&new, &clashes)?;
            if let Some(p) = new.profile_id {
                check_ref!(tx, "user_profiles", "profile_id", "user profile", p);
            }
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO users (user_id, selfprov_id, first_name, last_name, extension, \
                 pin_hash, selfprov_enabled, created_at, profile_id, password_hash) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            )
            .bind(new.user_id.as_str())
            .bind(new.selfprov_id.as_deref())
            .bind(new.first_name.as_str())
            .bind(new.last_name.as_str())
            .bind(new.extension.as_str())
            .bind(new.pin_hash.as_deref())
            .bind(new.selfprov_enabled)
            .bind(created)
            .bind(new.profile_id)
            .bind(new.password_hash.as_deref())
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            id
        });
        Ok(User {
            id,
            user_id: new.user_id,
            selfprov_id: new.selfprov_id,
            first_name: new.first_name,
            last_name: new.last_name,
            extension: new.extension,
            pin_hash: new.pin_hash,
            selfprov_enabled: new.selfprov_enabled,
            created_at: from_millis(created),
            profile_id: new.profile_id,
            password_hash: new.password_hash,
        })
    }

    /// Replaces a user's fields (same checks as [`Store::create_user`], against the other
    /// users). `pin_hash` / `password_hash` `None` keep the stored hash. The user's phones keep
    /// their lines: a changed extension applies to phones provisioned from then on.
    /// [`StoreError::NotFound`] when there is no such user.
    pub async fn update_user(&self, id: i64, new: UserInput) -> Result<User, StoreError> {
        validate_new_user(&new)?;
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() {
                return Err(StoreError::NotFound { what: "user", id });
            }
            let clashes: Vec<(String, Option<String>, String)> = sqlx::query_as(
                "SELECT user_id, selfprov_id, extension FROM users \
                 WHERE (user_id = $1 OR extension = $2 OR selfprov_id = $3 \
                 OR selfprov_id = $1 OR user_id = $3) AND id <> $4",
            )
            .bind(new.user_id.as_str())
            .bind(new.extension.as_str())
            .bind(new.selfprov_id.as_deref())
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            check_clashes(&new, &clashes)?;
            if let Some(p) = new.profile_id {
                check_ref!(tx, "user_profiles", "profile_id", "user profile", p);
            }
            sqlx::query(
                "UPDATE users SET user_id = $2, selfprov_id = $3, first_name = $4, last_name = $5, \
                 extension = $6, pin_hash = COALESCE($7, pin_hash), selfprov_enabled = $8, \
                 profile_id = $9, password_hash = COALESCE($10, password_hash) WHERE id = $1",
            )
            .bind(id)
            .bind(new.user_id.as_str())
            .bind(new.selfprov_id.as_deref())
            .bind(new.first_name.as_str())
            .bind(new.last_name.as_str())
            .bind(new.extension.as_str())
            .bind(new.pin_hash.as_deref())
            .bind(new.selfprov_enabled)
            .bind(new.profile_id)
            .bind(new.password_hash.as_deref())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        self.get_user(id)
            .await?
            .ok_or(StoreError::NotFound { what: "user", id })
    }

    /// Every user, by user ID (the CLI's list; the API pages with [`Store::list_users_page`]).
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        Ok(self.list_users_page(&ListQuery::default()).await?.items)
    }

    /// A page of users. `order`: `id`, `user_id` (default), `selfprov_id`, `first_name`,
    /// `last_name`, `extension`, `created_at`; `search` looks in the IDs, names and extension.
    ///
    /// Named `_page` because the CLI's `list_users()` keeps its name.
    pub async fn list_users_page(&self, q: &ListQuery) -> Result<Page<User>, StoreError> {
        let sql = USERS.build(q)?;
        let (total, items) = with_pool!(self, |pool| run_list!(pool, sql, user_from_row))?;
        Ok(Page { total, items })
    }

    /// One user, by store ID (`get_user(7)`) or user ID (`get_user("jdoe")`).
    pub async fn get_user<'a>(
        &self,
        user: impl Into<UserRef<'a>>,
    ) -> Result<Option<User>, StoreError> {
        let user = user.into();
        with_pool!(self, |pool| {
            let row = match user {
                UserRef::Id(id) => {
                    sqlx::query(concat!(user_columns!(), " WHERE id = $1"))
                        .bind(id)
                        .fetch_optional(pool)
                        .await?
                }
                UserRef::UserId(u) => {
                    sqlx::query(concat!(user_columns!(), " WHERE user_id = $1"))
                        .bind(u)
                        .fetch_optional(pool)
                        .await?
                }
            };
            row.as_ref().map(|r| user_from_row!(r)).transpose()
        })
    }

    /// The user a caller means by the digits typed at the IVR: the user whose self-provisioning
    /// ID is `digits`, else the user whose user ID is `digits`. `None` for no match or for input
    /// that is not 1 to 32 digits. The caller must still check `selfprov_enabled` and the PIN.
    pub async fn find_user_for_ivr(&self, digits: &str) -> Result<Option<User>, StoreError> {
        if digits.is_empty()
            || digits.len() > MAX_DIGITS
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return Ok(None);
        }
        with_pool!(self, |pool| {
            let row = sqlx::query(concat!(
                user_columns!(),
                " WHERE selfprov_id = $1 OR user_id = $1 \
                 ORDER BY CASE WHEN selfprov_id = $1 THEN 0 ELSE 1 END LIMIT 1"
            ))
            .bind(digits)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(|r| user_from_row!(r)).transpose()
        })
    }

    /// Removes a user by user ID and unbinds their phones (owner cleared, lines removed, state
    /// back to autoprov, an `unbound` audit event each). False when there was no such user.
    pub async fn remove_user(&self, user_id: &str) -> Result<bool, StoreError> {
        match self.get_user(user_id).await? {
            Some(u) => self.delete_user(u.id).await,
            None => Ok(false),
        }
    }

    /// Deletes a user by store ID, as [`Store::remove_user`] does. The user's lines stay (an
    /// admin may give them to someone else); their association with the user goes.
    pub async fn delete_user(&self, id: i64) -> Result<bool, StoreError> {
        let deleted = self.delete_user_in_tx(id).await?;
        self.outbox_written();
        Ok(deleted)
    }

    async fn delete_user_in_tx(&self, id: i64) -> Result<bool, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let user_id: Option<String> =
                sqlx::query_scalar("SELECT user_id FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(user_id) = user_id else {
                return Ok(false);
            };
            let devices: Vec<(i64, Option<String>, Option<String>, String)> = sqlx::query_as(
                "SELECT id, mac, device_name, sip_identity FROM devices WHERE owner_id = $1",
            )
            .bind(id)
            .fetch_all(&mut *tx)
            .await?;
            for (device_id, mac, name, sip_identity) in &devices {
                let key = mac.as_deref().or(name.as_deref()).unwrap_or(sip_identity);
                let _others = unbind_in_tx!(&self.pbx, tx, *device_id);
                insert_audit!(
                    tx,
                    Some(*device_id),
                    key,
                    Some(user_id.as_str()),
                    None,
                    AuditOutcome::Unbound,
                    "user removed"
                );
            }
            sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(true)
        })
    }
}
