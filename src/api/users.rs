//! `/users`: the people who may self-provision a phone, and `/users/import` (CSV).
//!
//! A user is addressed by their user ID (`/users/jdoe`), the key admins and the IVR know them
//! by; a path segment that is no user's user ID but a number is taken as the store ID (Wazo
//! addresses users by ID or UUID the same way). PINs and passwords are accepted in clear over
//! the (TLS-terminated) API, hashed with argon2 before they reach the store, and never
//! returned: a user shows only `has_pin` and `has_password`.

use super::error::{ApiError, JsonBody, PathParams, QueryParams};
use super::list::{ListParams, Page};
use super::ApiState;
use crate::provisioning::secret::{hash_secret, run_hashing, validate_pin, MAX_SECRET_DIGITS};
use crate::store::{format_time, User, UserInput};
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserOut {
    /// Store ID (stable, numeric; what lines list in `user_ids`).
    pub id: i64,
    /// The user ID: the key in `/users/{user_id}`.
    pub user_id: String,
    /// Digits a caller may type at the IVR instead of the user ID.
    pub selfprov_id: Option<String>,
    pub first_name: String,
    pub last_name: String,
    /// Primary extension (digits).
    pub extension: String,
    /// Whether the user has a PIN (the PIN itself is never returned).
    pub has_pin: bool,
    /// Whether the user has a web-login password (never returned).
    pub has_password: bool,
    /// Whether the user may self-provision a phone.
    pub selfprov_enabled: bool,
    /// The user's profile; null: the settings' default profile applies.
    pub profile_id: Option<i64>,
    /// RFC 3339 UTC.
    pub created_at: String,
}

impl From<&User> for UserOut {
    fn from(u: &User) -> Self {
        let User {
            id,
            user_id,
            selfprov_id,
            first_name,
            last_name,
            extension,
            pin_hash,
            selfprov_enabled,
            created_at,
            profile_id,
            password_hash,
        } = u;
        UserOut {
            id: *id,
            user_id: user_id.clone(),
            selfprov_id: selfprov_id.clone(),
            first_name: first_name.clone(),
            last_name: last_name.clone(),
            extension: extension.clone(),
            has_pin: pin_hash.is_some(),
            has_password: password_hash.is_some(),
            selfprov_enabled: *selfprov_enabled,
            profile_id: *profile_id,
            created_at: format_time(*created_at),
        }
    }
}

/// The fields of a user a client sets (`POST /users`, one CSV row of `/users/import`; `PUT`
/// changes the fields it names).
#[derive(Clone, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct UserIn {
    /// Unique, no spaces, at most 128 characters. Required.
    pub user_id: String,
    /// 1 to 32 digits, unique, and not another user's user ID.
    pub selfprov_id: Option<String>,
    pub first_name: String,
    pub last_name: String,
    /// Primary extension, 1 to 32 digits, unique. Required.
    pub extension: String,
    /// 1 to 20 digits; stored as an argon2 hash. On `PUT`, absent or null keeps the PIN.
    pub pin: Option<String>,
    /// Web-login password, 8 to 128 characters; stored as an argon2 hash. On `PUT`, absent or
    /// null keeps it.
    pub password: Option<String>,
    /// Default true.
    pub selfprov_enabled: bool,
    /// The user's profile; null: the settings' default profile.
    pub profile_id: Option<i64>,
}

impl Default for UserIn {
    fn default() -> Self {
        UserIn {
            user_id: String::new(),
            selfprov_id: None,
            first_name: String::new(),
            last_name: String::new(),
            extension: String::new(),
            pin: None,
            password: None,
            selfprov_enabled: true,
            profile_id: None,
        }
    }
}

impl std::fmt::Debug for UserIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserIn")
            .field("user_id", &self.user_id)
            .field("extension", &self.extension)
            .field("has_pin", &self.pin.is_some())
            .field("has_password", &self.password.is_some())
            .finish_non_exhaustive()
    }
}

impl From<&User> for UserIn {
    /// The current state for a `PUT`: no PIN nor password (kept unless the body sets them).
    fn from(u: &User) -> Self {
        UserIn {
            user_id: u.user_id.clone(),
            selfprov_id: u.selfprov_id.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            extension: u.extension.clone(),
            pin: None,
            password: None,
            selfprov_enabled: u.selfprov_enabled,
            profile_id: u.profile_id,
        }
    }
}

/// Shortest and longest web-login password.
const PASSWORD_LEN: std::ops::RangeInclusive<usize> = 8..=128;

/// Hashes a secret off the async worker threads (argon2 is deliberately slow).
async fn hash_blocking(secret: String, what: &str) -> Result<String, ApiError> {
    let failed = |e: String| ApiError::internal(format!("hashing the {what} failed: {e}"));
    run_hashing(move || hash_secret(&secret))
        .await
        .ok_or_else(|| failed("the hashing thread failed".into()))?
        .map_err(|e| failed(e.to_string()))
}

/// Checks a user's secrets and hashes them into the store's input.
async fn user_input(body: UserIn) -> Result<UserInput, ApiError> {
    let pin_hash = match body.pin {
        None => None,
        Some(pin) => {
            validate_pin(&pin).map_err(|e| {
                ApiError::invalid("pin", format!("{e} (1 to {MAX_SECRET_DIGITS} digits 0-9)"))
            })?;
            Some(hash_blocking(pin, "PIN").await?)
        }
    };
    let password_hash = match body.password {
        None => None,
        Some(pw) => {
            if !PASSWORD_LEN.contains(&pw.chars().count()) {
                return Err(ApiError::invalid(
                    "password",
                    format!(
                        "the password must be {} to {} characters",
                        PASSWORD_LEN.start(),
                        PASSWORD_LEN.end()
                    ),
                ));
            }
            Some(hash_blocking(pw, "password").await?)
        }
    };
    Ok(UserInput {
        user_id: body.user_id,
        selfprov_id: body.selfprov_id.filter(|s| !s.is_empty()),
        first_name: body.first_name,
        last_name: body.last_name,
        extension: body.extension,
        pin_hash,
        password_hash,
        selfprov_enabled: body.selfprov_enabled,
        profile_id: body.profile_id,
    })
}

/// The user a path segment names: by user ID, else (a number) by store ID.
pub async fn resolve_user(state: &ApiState, key: &str) -> Result<User, ApiError> {
    if let Some(u) = state.store.get_user(key).await? {
        return Ok(u);
    }
    if let Ok(id) = key.parse::<i64>() {
        if let Some(u) = state.store.get_user(id).await? {
            return Ok(u);
        }
    }
    Err(ApiError::not_found(format!(
        "no user {key:?}: GET /users lists them"
    )))
}

/// List users.
///
/// Orders by `user_id` (default), `id`, `selfprov_id`, `first_name`, `last_name`, `extension`
/// or `created_at`; `search` looks in the IDs, names and extension.
#[utoipa::path(
    get,
    path = "/users",
    tag = "users",
    params(ListParams),
    responses(
        (status = 200, description = "One page of users", body = Page<UserOut>),
        (status = 400, description = "Bad list parameter", body = super::error::ErrorBody),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
    )
)]
pub async fn list_users(
    State(state): State<ApiState>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<Page<UserOut>>, ApiError> {
    let page = state.store.list_users_page(&params.to_query()).await?;
    Ok(Json(Page::from_store(page, |u| UserOut::from(u))))
}

/// Create a user.
#[utoipa::path(
    post,
    path = "/users",
    tag = "users",
    request_body = UserIn,
    responses(
        (status = 201, description = "Created", body = UserOut),
        (status = 400, description = "Body is not valid JSON", body = super::error::ErrorBody),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
        (status = 409, description = "User ID, self-provisioning ID or extension taken", body = super::error::ErrorBody),
        (status = 422, description = "A field is invalid", body = super::error::ErrorBody),
    )
)]
pub async fn create_user(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<UserIn>,
) -> Result<(StatusCode, Json<UserOut>), ApiError> {
    let new = user_input(body).await?;
    let user = state.store.create_user(new).await?;
    Ok((StatusCode::CREATED, Json(UserOut::from(&user))))
}

/// Get a user.
#[utoipa::path(
    get,
    path = "/users/{user_id}",
    tag = "users",
    params(("user_id" = String, Path, description = "The user ID (or the user's numeric store ID)")),
    responses(
        (status = 200, description = "The user", body = UserOut),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
        (status = 404, description = "No such user", body = super::error::ErrorBody),
    )
)]
pub async fn get_user(
    State(state): State<ApiState>,
    PathParams(user_id): PathParams<String>,
) -> Result<Json<UserOut>, ApiError> {
    Ok(Json(UserOut::from(&resolve_user(&state, &user_id).await?)))
}

/// Change a user: the fields in the body are replaced, the others kept (a PIN or password can
/// be changed, not removed).
#[utoipa::path(
    put,
    path = "/users/{user_id}",
    tag = "users",
    params(("user_id" = String, Path, description = "The user ID (or the user's numeric store ID)")),
    request_body(content = UserIn, description = "The fields to change"),
    responses(
        (status = 204, description = "Updated"),
        (status = 400, description = "Body is not valid JSON", body = super::error::ErrorBody),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
        (status = 404, description = "No such user", body = super::error::ErrorBody),
        (status = 409, description = "User ID, self-provisioning ID or extension taken", body = super::error::ErrorBody),
        (status = 422, description = "A field is invalid", body = super::error::ErrorBody),
    )
)]
pub async fn update_user(
    State(state): State<ApiState>,
    PathParams(user_id): PathParams<String>,
    JsonBody(patch): JsonBody<serde_json::Value>,
) -> Result<StatusCode, ApiError> {
    let current = resolve_user(&state, &user_id).await?;
    let body: UserIn = super::schema::apply_put(&UserIn::from(&current), patch)?;
    let input = user_input(body).await?;
    state.store.update_user(current.id, input).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Delete a user; their phones are unbound (back to autoprov, audited), their lines stay.
#[utoipa::path(
    delete,
    path = "/users/{user_id}",
    tag = "users",
    params(("user_id" = String, Path, description = "The user ID (or the user's numeric store ID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
        (status = 404, description = "No such user", body = super::error::ErrorBody),
    )
)]
pub async fn delete_user(
    State(state): State<ApiState>,
    PathParams(user_id): PathParams<String>,
) -> Result<StatusCode, ApiError> {
    let user = resolve_user(&state, &user_id).await?;
    if state.store.delete_user(user.id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no user {user_id:?}")))
    }
}

/// The answer of `POST /users/import`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportResult {
    /// Users created.
    pub created: u64,
    /// Rows not applied, in file order.
    pub errors: Vec<ImportError>,
}

/// A CSV row that was not applied (nothing of it was).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ImportError {
    /// Row number as a spreadsheet shows it: the header is row 1, the first user row 2.
    pub row: u64,
    pub message: String,
    /// The column at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Columns `/users/import` takes (the header row names them, in any order).
pub const IMPORT_COLUMNS: &[&str] = &[
    "user_id",
    "selfprov_id",
    "first_name",
    "last_name",
    "extension",
    "pin",
    "password",
    "selfprov_enabled",
    "profile_id",
];

/// Most user rows one import takes.
pub const MAX_IMPORT_ROWS: usize = 10_000;

/// Import users from CSV.
///
/// The first row names the columns (`user_id` and `extension` required; also `selfprov_id`,
/// `first_name`, `last_name`, `pin`, `password`, `profile_id`, `selfprov_enabled` as
/// true/false/yes/no/1/0, empty = true).
/// Each row is created on its own: valid rows are applied, each refused row is reported with its
/// row number, and nothing of a refused row is kept. A header that cannot be used refuses the
/// whole file (400).
#[utoipa::path(
    post,
    path = "/users/import",
    tag = "users",
    request_body(content = String, content_type = "text/csv", description = "CSV with a header row"),
    responses(
        (status = 200, description = "Rows applied and rows refused", body = ImportResult),
        (status = 400, description = "Unusable CSV header or encoding", body = super::error::ErrorBody),
        (status = 401, description = "No valid token", body = super::error::ErrorBody),
        (status = 415, description = "Not text/csv", body = super::error::ErrorBody),
    )
)]
pub async fn import_users(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let mime = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if !matches!(mime.as_str(), "text/csv" | "application/csv" | "text/plain") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "the body must be CSV: send Content-Type: text/csv",
        ));
    }
    // Too large (axum's 2 MiB default limit) or unreadable: a JSON error, not axum's text.
    let body = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    let rows = parse_import(&body)?;
    let mut result = ImportResult {
        created: 0,
        errors: Vec::new(),
    };
    for (row, parsed) in rows {
        let outcome = match parsed {
            Ok(create) => match user_input(create).await {
                Ok(new) => state.store.create_user(new).await.map_err(ApiError::from),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match outcome {
            Ok(_) => result.created += 1,
            Err(e) if e.status.is_server_error() && e.status != StatusCode::SERVICE_UNAVAILABLE => {
                // The store itself failed: stop, and say how far the import got.
                return Err(ApiError::internal(format!(
                    "the store failed at row {row}; {} users were created before it: see the server log",
                    result.created
                )));
            }
            Err(e) => result.errors.push(ImportError {
                row,
                message: e.message,
                field: e.field,
            }),
        }
    }
    Ok(Json(result))
}

/// The rows of an import: (row number, the user or the row's error).
pub type ImportRows = Vec<(u64, Result<UserIn, ApiError>)>;

/// Parses the CSV into (row number, user or the row's error). Errors for the file as a whole
/// (encoding, header) are returned as one 400.
pub fn parse_import(body: &[u8]) -> Result<ImportRows, ApiError> {
    // A UTF-8 byte-order mark (spreadsheets write one) is not part of the first column's name.
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(body);
    let headers = reader
        .headers()
        .map_err(|e| ApiError::bad_request(None, format!("cannot read the CSV header row: {e}")))?
        .clone();
    let mut columns: Vec<&'static str> = Vec::new();
    for h in headers.iter() {
        let name = h.to_ascii_lowercase();
        let Some(known) = IMPORT_COLUMNS.iter().find(|c| **c == name) else {
            return Err(ApiError::bad_request(
                Some(h),
                format!(
                    "unknown CSV column {h:?} in the header row: the columns are {}",
                    IMPORT_COLUMNS.join(", ")
                ),
            ));
        };
        if columns.contains(known) {
            return Err(ApiError::bad_request(
                Some(h),
                format!("CSV column {h:?} appears twice in the header row"),
            ));
        }
        columns.push(known);
    }
    for required in ["user_id", "extension"] {
        if !columns.contains(&required) {
            return Err(ApiError::bad_request(
                Some(required),
                format!("the CSV header row has no {required} column (it is required)"),
            ));
        }
    }
    let mut out = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut last_line = 1u64;
    loop {
        if out.len() >= MAX_IMPORT_ROWS {
            return Err(ApiError::bad_request(
                None,
                format!("more than {MAX_IMPORT_ROWS} rows: split the file"),
            ));
        }
        match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {
                // The line the row starts on: what a spreadsheet calls its row (the csv reader
                // skips blank lines, so counting records would drift).
                let row = record
                    .position()
                    .map_or(last_line + 1, |p| record_line(body, p));
                last_line = row;
                if record.iter().all(str::is_empty) {
                    continue;
                }
                out.push((row, row_to_user(&columns, &record)));
            }
            Err(e) => {
                let row = e.position().map_or(last_line + 1, |p| p.line());
                last_line = row;
                let unrecoverable = matches!(e.kind(), csv::ErrorKind::Io(_));
                out.push((
                    row,
                    Err(ApiError::bad_request(None, format!("unreadable row: {e}"))),
                ));
                if unrecoverable {
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// The line a record starts on. The csv reader reports the position where it started reading,
/// before the blank lines it skips; count those too.
fn record_line(body: &[u8], p: &csv::Position) -> u64 {
    let start = usize::try_from(p.byte()).unwrap_or(usize::MAX);
    let skipped = body
        .get(start..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .filter(|b| **b == b'\n')
        .count();
    p.line().saturating_add(u64::try_from(skipped).unwrap_or(0))
}

fn row_to_user(columns: &[&'static str], record: &csv::StringRecord) -> Result<UserIn, ApiError> {
    if record.len() != columns.len() {
        return Err(ApiError::bad_request(
            None,
            format!(
                "the row has {} fields, the header {}",
                record.len(),
                columns.len()
            ),
        ));
    }
    let mut u = UserIn::default();
    for (column, value) in columns.iter().zip(record.iter()) {
        let opt = || Some(value.to_string()).filter(|v| !v.is_empty());
        match *column {
            "user_id" => u.user_id = value.to_string(),
            "selfprov_id" => u.selfprov_id = opt(),
            "first_name" => u.first_name = value.to_string(),
            "last_name" => u.last_name = value.to_string(),
            "extension" => u.extension = value.to_string(),
            "pin" => u.pin = opt(),
            "password" => u.password = opt(),
            "profile_id" => {
                u.profile_id = match value {
                    "" => None,
                    v => Some(v.parse().map_err(|_| {
                        ApiError::invalid("profile_id", format!("{v:?} is not a profile ID"))
                    })?),
                }
            }
            "selfprov_enabled" => {
                u.selfprov_enabled = match value.to_ascii_lowercase().as_str() {
                    "" | "true" | "yes" | "1" => true,
                    "false" | "no" | "0" => false,
                    _ => {
                        return Err(ApiError::invalid(
                            "selfprov_enabled",
                            format!("{value:?} is not true/false, yes/no or 1/0"),
                        ))
                    }
                }
            }
            _ => {}
        }
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_parses_rows_and_numbers_them() {
        let csv = "\u{feff}user_id,extension,pin,selfprov_enabled\n\
                   alice,1001,1234,\n\
                   \n\
                   bob,1002,,no\n\
                   carol,1003\n\
                   dave,1004,,maybe\n";
        let rows = parse_import(csv.as_bytes()).unwrap();
        let rows: Vec<_> = rows
            .into_iter()
            .map(|(r, u)| (r, u.map(|u| u.user_id)))
            .collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].0, 2);
        assert_eq!(rows[0].1.as_deref().ok(), Some("alice"));
        // The blank line 3 is skipped but still counted.
        assert_eq!(rows[1].0, 4);
        assert_eq!(rows[2].0, 5);
        assert!(rows[2].1.is_err(), "short row");
        assert_eq!(rows[3].0, 6);
        assert_eq!(
            rows[3].1.as_ref().unwrap_err().field.as_deref(),
            Some("selfprov_enabled")
        );
    }

    #[test]
    fn import_refuses_bad_headers() {
        assert_eq!(
            parse_import(b"user_id,extension,colour\n")
                .unwrap_err()
                .field
                .as_deref(),
            Some("colour")
        );
        assert_eq!(
            parse_import(b"user_id,pin\n").unwrap_err().field.as_deref(),
            Some("extension")
        );
        assert!(parse_import(b"user_id,extension,user_id\n").is_err());
    }
}
