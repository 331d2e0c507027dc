//! The self-provisioning settings (one row, editable at run time), API tokens (stored as
//! SHA-256 hashes), and the audit trail (recording attempts, listing with filters).

use super::model::{from_millis, to_millis};
use super::{
    now_millis, validate_text, ApiToken, AuditEvent, AuditOutcome, AuditQuery, AuthMethod, Backend,
    DeviceIdentity, Page, SelfProvSettings, Store, StoreError, WritePool, MAX_DIGITS,
};
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Prefix of API tokens, so a leaked one is recognisable (e.g. by secret scanners).
const TOKEN_PREFIX: &str = "spt_";
/// Random characters after the prefix: 43 from 62 ≈ 256 bits.
const TOKEN_RANDOM_LEN: usize = 43;
/// `last_used` is refreshed at most this often (ms), so checking a token rarely writes.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;
/// The most IVR languages (Cisco's limit).
const MAX_LANGUAGES: usize = 9;

/// What [`Store::list_audit`] accepts: an [`AuditQuery`] (the API: a [`Page`]), or, as before
/// issue 3, a plain `u32` limit (the latest events as a `Vec`).
pub trait AuditListArg: sealed::Sealed {
    type Output;
    #[doc(hidden)]
    fn query(&self) -> AuditQuery;
    #[doc(hidden)]
    fn output(page: Page<AuditEvent>) -> Self::Output;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for u32 {}
    impl Sealed for &super::AuditQuery {}
}

impl AuditListArg for u32 {
    type Output = Vec<AuditEvent>;
    fn query(&self) -> AuditQuery {
        AuditQuery {
            limit: Some(*self),
            ..Default::default()
        }
    }
    fn output(page: Page<AuditEvent>) -> Vec<AuditEvent> {
        page.items
    }
}

impl AuditListArg for &AuditQuery {
    type Output = Page<AuditEvent>;
    fn query(&self) -> AuditQuery {
        (*self).clone()
    }
    fn output(page: Page<AuditEvent>) -> Page<AuditEvent> {
        page
    }
}

fn token_hash(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the settings row (there is only ever row 1), if it exists.
const UPDATE_SETTINGS: &str = "UPDATE selfprov_settings SET auth_mode = $1, \
     admin_code_hash = $2, ivr_extensions = $3, languages = $4, default_profile_id = $5, \
     autoreg_start_dn = $6, autoreg_end_dn = $7, autoreg_device_template_id = $8, \
     autoreg_line_template_id = $9, allow_admin_takeover = $10 WHERE id = 1";

/// Creates the settings row, with the parameters of [`UPDATE_SETTINGS`].
const INSERT_SETTINGS: &str = "INSERT INTO selfprov_settings (id, auth_mode, admin_code_hash, \
     ivr_extensions, languages, default_profile_id, autoreg_start_dn, autoreg_end_dn, \
     autoreg_device_template_id, autoreg_line_template_id, allow_admin_takeover) \
     VALUES (1, $1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

impl Store {
    // ------------------------------------------------------------------------------------------
    // Settings
    // ------------------------------------------------------------------------------------------

    /// The self-provisioning settings (the defaults seeded by the migration until changed).
    pub async fn get_settings(&self) -> Result<SelfProvSettings, StoreError> {
        type Row = (
            String,
            Option<String>,
            String,
            String,
            Option<i64>,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<i64>,
            bool,
        );
        let row: Option<Row> = with_pool!(self, |pool| {
            sqlx::query_as(
                "SELECT auth_mode, admin_code_hash, ivr_extensions, languages, default_profile_id, \
                 autoreg_start_dn, autoreg_end_dn, autoreg_device_template_id, \
                 autoreg_line_template_id, allow_admin_takeover FROM selfprov_settings WHERE id = 1",
            )
            .fetch_optional(pool)
            .await?
        });
        let Some(r) = row else {
            return Ok(SelfProvSettings::default());
        };
        let list = |what: &str, s: &str| -> Result<Vec<String>, StoreError> {
            serde_json::from_str(s)
                .map_err(|e| StoreError::Corrupt(format!("settings {what}: {e}")))
        };
        Ok(SelfProvSettings {
            auth_mode: r.0,
            admin_code_hash: r.1,
            ivr_extensions: list("ivr_extensions", &r.2)?,
            languages: list("languages", &r.3)?,
            default_profile_id: r.4,
            autoreg_start_dn: r.5,
            autoreg_end_dn: r.6,
            autoreg_device_template_id: r.7,
            autoreg_line_template_id: r.8,
            allow_admin_takeover: r.9,
        })
    }

    /// Replaces the settings (every field: read them, change, write back; `admin_code_hash`
    /// `None` removes the admin code). Refused with [`StoreError::Invalid`] naming the field:
    /// an unknown auth mode, an admin code that is not an argon2 hash, no or non-digit IVR
    /// extensions, 0 or more than 9 languages (or a repeated one), a profile or template that
    /// does not exist, an autoregistration range that is half given, not digits, of different
    /// lengths or reversed.
    pub async fn update_settings(
        &self,
        s: SelfProvSettings,
    ) -> Result<SelfProvSettings, StoreError> {
        validate_settings(&s)?;
        let extensions = serde_json::to_string(&s.ivr_extensions)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let languages =
            serde_json::to_string(&s.languages).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            for (field, table, id) in [
                ("default_profile_id", "user_profiles", s.default_profile_id),
                (
                    "autoreg_device_template_id",
                    "device_templates",
                    s.autoreg_device_template_id,
                ),
                (
                    "autoreg_line_template_id",
                    "line_templates",
                    s.autoreg_line_template_id,
                ),
            ] {
                let Some(id) = id else { continue };
                // `table` is one of the three constants above.
                let found: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "SELECT id FROM {table} WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                if found.is_none() {
                    return Err(StoreError::Invalid {
                        field,
                        message: format!("no {} with ID {id}", table.trim_end_matches('s')),
                    });
                }
            }
            // The settings row is updated, or inserted the first time; both statements take
            // the same ten parameters.
            for sql in [UPDATE_SETTINGS, INSERT_SETTINGS] {
                let done = sqlx::query(sql)
                    .bind(s.auth_mode.as_str())
                    .bind(s.admin_code_hash.as_deref())
                    .bind(extensions.as_str())
                    .bind(languages.as_str())
                    .bind(s.default_profile_id)
                    .bind(s.autoreg_start_dn.as_deref())
                    .bind(s.autoreg_end_dn.as_deref())
                    .bind(s.autoreg_device_template_id)
                    .bind(s.autoreg_line_template_id)
                    .bind(s.allow_admin_takeover)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() > 0 {
                    break;
                }
            }
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        Ok(s)
    }

    // ------------------------------------------------------------------------------------------
    // API tokens
    // ------------------------------------------------------------------------------------------

    /// Creates an API token named `name` (a note for admins, e.g. who uses it). Returns its ID
    /// and the token itself: shown this once, only its SHA-256 is stored.
    pub async fn create_api_token(&self, name: &str) -> Result<(i64, String), StoreError> {
        validate_text("name", name, true)?;
        let random: String = rand::rng()
            .sample_iter(&rand::distr::Alphanumeric)
            .take(TOKEN_RANDOM_LEN)
            .map(char::from)
            .collect();
        let secret = format!("{TOKEN_PREFIX}{random}");
        let hash = token_hash(&secret);
        let id: i64 = with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO api_tokens (name, token_hash, created_at) VALUES ($1, $2, $3) \
                 RETURNING id",
            )
            .bind(name)
            .bind(hash.as_str())
            .bind(now_millis())
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            id
        });
        Ok((id, secret))
    }

    /// Whether `secret` is a valid API token; records when it was last used (at most once a
    /// minute). Tokens are 256 random bits, so a fast hash is right (no guessing to slow down);
    /// the stored hash is found by index and compared again in constant time.
    pub async fn verify_api_token(&self, secret: &str) -> Result<bool, StoreError> {
        if secret.len() != TOKEN_PREFIX.len() + TOKEN_RANDOM_LEN
            || !secret.starts_with(TOKEN_PREFIX)
        {
            return Ok(false);
        }
        let hash = token_hash(secret);
        let row: Option<(i64, String, Option<i64>)> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT id, token_hash, last_used FROM api_tokens WHERE token_hash = $1")
                .bind(hash.as_str())
                .fetch_optional(pool)
                .await?
        });
        let Some((id, stored, last_used)) = row else {
            return Ok(false);
        };
        if !bool::from(stored.as_bytes().ct_eq(hash.as_bytes())) {
            return Ok(false);
        }
        let now = now_millis();
        if last_used.is_none_or(|t| now - t >= LAST_USED_GRANULARITY_MS) {
            // One statement in autocommit: no read-then-write, so no write lock held across
            // awaits; a busy store only delays this bookkeeping.
            with_pool!(self, |pool| {
                sqlx::query("UPDATE api_tokens SET last_used = $2 WHERE id = $1")
                    .bind(id)
                    .bind(now)
                    .execute(pool)
                    .await?;
            });
        }
        Ok(true)
    }

    /// The API tokens (names and times; never the tokens), oldest first.
    pub async fn list_api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows: Vec<(i64, String, i64, Option<i64>)> = with_pool!(self, |pool| {
            sqlx::query_as("SELECT id, name, created_at, last_used FROM api_tokens ORDER BY id")
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(id, name, created, used)| ApiToken {
                id,
                name,
                created_at: from_millis(created),
                last_used: used.map(from_millis),
            })
            .collect())
    }

    /// Revokes an API token. False when there is no such token.
    pub async fn delete_api_token(&self, id: i64) -> Result<bool, StoreError> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let done = sqlx::query("DELETE FROM api_tokens WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    // ------------------------------------------------------------------------------------------
    // Audit
    // ------------------------------------------------------------------------------------------

    /// Records an attempt that did not reach [`Store::bind_device`] (unknown ID, wrong PIN or
    /// admin code, too many attempts, hang-up...). Links it to the stored device when the phone
    /// is known. `detail` is free text for operators: NEVER put the digits a caller typed in it.
    pub async fn record_audit(
        &self,
        identity: &DeviceIdentity,
        user_id: Option<&str>,
        auth: Option<AuthMethod>,
        outcome: AuditOutcome,
        detail: &str,
    ) -> Result<(), StoreError> {
        let key = identity.key().to_string();
        with_pool!(self, |pool| {
            let mut tx = pool.begin_write().await?;
            let found = find_device!(tx, identity);
            insert_audit!(
                tx,
                found.map(|(id, _)| id),
                key.as_str(),
                user_id,
                auth,
                outcome,
                detail
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// Audit events, newest first. With an [`AuditQuery`]: filtered by device key, user ID,
    /// outcome and time (`since`/`until` inclusive), paged, as a [`Page`] whose `total` counts
    /// every match. With a `u32`: the latest that many events, as a `Vec` (the form used
    /// before the API existed).
    pub async fn list_audit<Q: AuditListArg>(&self, q: Q) -> Result<Q::Output, StoreError> {
        let q = q.query();
        let since = q.since.map(to_millis);
        let until = q.until.map(to_millis);
        let limit = q.limit.map_or(i64::MAX, i64::from);
        let offset = i64::from(q.offset);
        const FILTER: &str = "WHERE ($1 IS NULL OR device = $1) AND ($2 IS NULL OR user_id = $2) \
             AND ($3 IS NULL OR outcome = $3) AND ($4 IS NULL OR time >= $4) \
             AND ($5 IS NULL OR time <= $5)";
        type Row = (
            i64,
            i64,
            Option<i64>,
            String,
            Option<String>,
            Option<String>,
            String,
            String,
        );
        let (total, rows): (i64, Vec<Row>) = with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT COUNT(*) FROM audit_events {FILTER}"
            )))
            .bind(q.device.as_deref())
            .bind(q.user.as_deref())
            .bind(q.outcome.as_deref())
            .bind(since)
            .bind(until)
            .fetch_one(&mut *tx)
            .await?;
            let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT id, time, device_id, device, user_id, auth_method, outcome, detail \
                 FROM audit_events {FILTER} ORDER BY id DESC LIMIT $6 OFFSET $7"
            )))
            .bind(q.device.as_deref())
            .bind(q.user.as_deref())
            .bind(q.outcome.as_deref())
            .bind(since)
            .bind(until)
            .bind(limit)
            .bind(offset)
            .fetch_all(&mut *tx)
            .await?;
            tx.commit().await?;
            (total, rows)
        });
        let items = rows
            .into_iter()
            .map(|r| {
                Ok(AuditEvent {
                    id: r.0,
                    time: from_millis(r.1),
                    device_id: r.2,
                    device: r.3,
                    user_id: r.4,
                    auth_method: r
                        .5
                        .map(|a| a.parse())
                        .transpose()
                        .map_err(StoreError::Corrupt)?,
                    outcome: r.6,
                    detail: r.7,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(Q::output(Page {
            total: u64::try_from(total).unwrap_or(0),
            items,
        }))
    }
}

fn validate_settings(s: &SelfProvSettings) -> Result<(), StoreError> {
    let invalid =
        |field: &'static str, message: String| Err(StoreError::Invalid { field, message });
    if s.auth_mode().is_none() {
        return invalid(
            "auth_mode",
            format!(
                "{:?} must be non-secure, secure-users or secure-users-and-admins",
                s.auth_mode
            ),
        );
    }
    if s.admin_code_hash
        .as_deref()
        .is_some_and(|h| !h.starts_with("$argon2"))
    {
        return invalid(
            "admin_code_hash",
            "must be an argon2 PHC string (hash the code first)".into(),
        );
    }
    if s.auth_mode == "secure-users-and-admins" && s.admin_code_hash.is_none() {
        return invalid(
            "admin_code",
            "auth_mode secure-users-and-admins needs an admin code: set admin_code (1 to 20 \
             digits) in the same change, or choose secure-users"
                .into(),
        );
    }
    if s.ivr_extensions.is_empty() || s.ivr_extensions.len() > 16 {
        return invalid("ivr_extensions", "give 1 to 16 extensions".into());
    }
    for (i, e) in s.ivr_extensions.iter().enumerate() {
        if e.is_empty() || e.len() > MAX_DIGITS || !e.bytes().all(|b| b.is_ascii_digit()) {
            return invalid("ivr_extensions", format!("{e:?} must be digits"));
        }
        if s.ivr_extensions
            .get(..i)
            .is_some_and(|before| before.contains(e))
        {
            return invalid("ivr_extensions", format!("{e} is listed twice"));
        }
    }
    if s.languages.is_empty() || s.languages.len() > MAX_LANGUAGES {
        return invalid(
            "languages",
            format!("give 1 to {MAX_LANGUAGES} languages, highest priority first"),
        );
    }
    for (i, l) in s.languages.iter().enumerate() {
        if l.is_empty()
            || l.len() > 35
            || !l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return invalid(
                "languages",
                format!("{l:?} is not a language tag like en-US"),
            );
        }
        if s.languages
            .get(..i)
            .is_some_and(|before| before.contains(l))
        {
            return invalid("languages", format!("{l} is listed twice"));
        }
    }
    match (s.autoreg_start_dn.as_deref(), s.autoreg_end_dn.as_deref()) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            for (field, v) in [("autoreg_start_dn", a), ("autoreg_end_dn", b)] {
                if v.is_empty() || v.len() > MAX_DIGITS || !v.bytes().all(|c| c.is_ascii_digit()) {
                    return invalid(field, format!("{v:?} must be digits"));
                }
            }
            // Same length, so string order is numeric order (and leading zeros are kept).
            if a.len() != b.len() {
                return invalid(
                    "autoreg_end_dn",
                    "start and end must have the same number of digits".into(),
                );
            }
            if a > b {
                return invalid("autoreg_end_dn", format!("{b} is before the start {a}"));
            }
        }
        (Some(_), None) => return invalid("autoreg_end_dn", "give both ends of the range".into()),
        (None, Some(_)) => {
            return invalid("autoreg_start_dn", "give both ends of the range".into())
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_checks_name_the_field() {
        validate_settings(&SelfProvSettings::default()).unwrap();
        let field = |s: SelfProvSettings| match validate_settings(&s) {
            Err(StoreError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let d = SelfProvSettings::default;
        assert_eq!(
            field(SelfProvSettings {
                auth_mode: "secure".into(),
                ..d()
            }),
            "auth_mode"
        );
        assert_eq!(
            field(SelfProvSettings {
                languages: (0..10).map(|i| format!("l{i}")).collect(),
                ..d()
            }),
            "languages"
        );
        assert_eq!(
            field(SelfProvSettings {
                languages: vec!["en-US".into(), "en-US".into()],
                ..d()
            }),
            "languages"
        );
        assert_eq!(
            field(SelfProvSettings {
                ivr_extensions: vec![],
                ..d()
            }),
            "ivr_extensions"
        );
        assert_eq!(
            field(SelfProvSettings {
                autoreg_start_dn: Some("2000".into()),
                autoreg_end_dn: Some("1999".into()),
                ..d()
            }),
            "autoreg_end_dn"
        );
        assert_eq!(
            field(SelfProvSettings {
                autoreg_start_dn: Some("2000".into()),
                ..d()
            }),
            "autoreg_end_dn"
        );
        assert_eq!(
            field(SelfProvSettings {
                admin_code_hash: Some("1234".into()),
                ..d()
            }),
            "admin_code_hash"
        );
        let nine = SelfProvSettings {
            languages: (1..=9).map(|i| format!("l{i}")).collect(),
            autoreg_start_dn: Some("0100".into()),
            autoreg_end_dn: Some("0199".into()),
            ..d()
        };
        validate_settings(&nine).unwrap();
    }

    #[test]
    fn token_hash_is_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
