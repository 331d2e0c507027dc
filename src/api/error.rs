//! The API's error type and the extractors that turn malformed requests into JSON errors.
//!
//! Every error the API returns is `{"message": "...", "field": "..."}` (`field` only when one
//! input is to blame). axum's own extractors answer in plain text, so the API uses the
//! wrappers here instead: [`JsonBody`] (400 for JSON that does not parse, 415 for a body that
//! is not JSON, 422 naming the field for JSON of the wrong shape) and [`QueryParams`] (400
//! naming the parameter).

use crate::store::StoreError;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{CONTENT_TYPE, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong and what to change.
    pub message: String,
    /// The input (body field, query parameter or path segment) at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error answer: a status and an [`ErrorBody`].
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub field: Option<String>,
    /// 401 only: the RFC 6750 `error` attribute of `WWW-Authenticate` (`invalid_token` when a
    /// token was presented and refused; absent when none was sent).
    pub(crate) bearer_error: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: None,
            bearer_error: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400: the request is malformed (query string, path segment, JSON syntax).
    pub fn bad_request(field: Option<&str>, message: impl Into<String>) -> Self {
        let e = ApiError::new(StatusCode::BAD_REQUEST, message);
        match field {
            Some(f) => e.with_field(f),
            None => e,
        }
    }

    /// 422: well-formed, but a field's value is not acceptable.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message).with_field(field)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(field: Option<&str>, message: impl Into<String>) -> Self {
        let e = ApiError::new(StatusCode::CONFLICT, message);
        match field {
            Some(f) => e.with_field(f),
            None => e,
        }
    }

    pub fn unauthorized(message: impl Into<String>, bearer_error: Option<&'static str>) -> Self {
        ApiError {
            bearer_error,
            ..ApiError::new(StatusCode::UNAUTHORIZED, message)
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            message: self.message,
            field: self.field,
        };
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 6750 §3: every 401 names the scheme; `error` only when a token was refused.
            let challenge = match self.bearer_error {
                Some(e) => format!("Bearer realm=\"selfprov\", error=\"{e}\""),
                None => "Bearer realm=\"selfprov\"".to_string(),
            };
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                resp.headers_mut().insert(WWW_AUTHENTICATE, v);
            }
        }
        resp
    }
}

/// The API name of a field the store reports in words ("user ID" → `user_id`).
pub fn api_field(store_field: &str) -> String {
    store_field
        .trim()
        .to_ascii_lowercase()
        .replace("self-provisioning", "selfprov")
        .replace(['-', ' '], "_")
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = e.to_string();
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let field = match &e {
            // `field` is where the value already lives; the request's field is the other one.
            StoreError::AmbiguousId { field, .. } => Some(if api_field(field) == "user_id" {
                "selfprov_id".to_string()
            } else {
                "user_id".to_string()
            }),
            other => other.field().map(api_field),
        };
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            // The store's own failures: logged in full, answered without internals.
            tracing::error!(error = %e, "store error in API request");
            return ApiError::internal("the store failed to answer: see the server log");
        }
        // The store checks list parameters too; those are query parameters: 400.
        let status = match field.as_deref() {
            Some("order" | "direction" | "limit" | "offset" | "search")
                if status == StatusCode::UNPROCESSABLE_ENTITY =>
            {
                StatusCode::BAD_REQUEST
            }
            _ => status,
        };
        let err = ApiError::new(status, message);
        match field {
            Some(f) => err.with_field(f),
            None => err,
        }
    }
}

/// A JSON request body, parsed with errors as [`ApiError`]s that name the field at fault.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "the body must be JSON: send Content-Type: application/json",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::new(e.status(), e.body_text()))?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Parses a JSON document into `T`: syntax errors are 400, shape errors 422 with the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut de) {
        Ok(v) => {
            // Trailing garbage after the document is a syntax error too.
            if let Err(e) = de.end() {
                return Err(ApiError::bad_request(
                    None,
                    format!("the body is not valid JSON: {e}"),
                ));
            }
            Ok(v)
        }
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            match inner.classify() {
                serde_json::error::Category::Data => {
                    let field = data_error_field(&path, &inner.to_string());
                    let message = match &field {
                        Some(f) => format!("field {f}: {}", strip_position(&inner.to_string())),
                        None => strip_position(&inner.to_string()).to_string(),
                    };
                    let e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message);
                    Err(match field {
                        Some(f) => e.with_field(f),
                        None => e,
                    })
                }
                _ => Err(ApiError::bad_request(
                    None,
                    format!("the body is not valid JSON: {inner}"),
                )),
            }
        }
    }
}

/// The field a serde data error is about: its path, or for "missing field `x`" / "unknown field
/// `x`" (reported at the parent's path) the named field under that path.
fn data_error_field(path: &str, message: &str) -> Option<String> {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| message.strip_prefix(p))
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string);
    let parent = (path != "." && !path.is_empty()).then(|| path.to_string());
    match (parent, named) {
        // serde_path_to_error puts an unknown key in the path for some types, not others.
        (Some(p), Some(n)) if p == n || p.ends_with(&format!(".{n}")) => Some(p),
        (Some(p), Some(n)) => Some(format!("{p}.{n}")),
        (None, Some(n)) => Some(n),
        (Some(p), None) => Some(p),
        (None, None) => None,
    }
}

/// serde_json's messages end in " at line L column C"; for one-line API bodies that is noise.
fn strip_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => message.get(..i).unwrap_or(message),
        None => message,
    }
}

/// Query-string parameters parsed by hand ([`FromQuery`]), so every error is a 400 naming the
/// parameter and unknown parameters are refused rather than silently ignored (a typo such as
/// `?serach=` would otherwise return everything).
#[derive(Debug, Clone, Copy, Default)]
pub struct QueryParams<T>(pub T);

/// A set of query parameters built from the decoded `name=value` pairs.
pub trait FromQuery: Sized {
    fn from_pairs(pairs: Vec<(String, String)>) -> Result<Self, ApiError>;
}

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: FromQuery,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|e| ApiError::bad_request(None, format!("bad query string: {e}")))?;
        T::from_pairs(pairs).map(QueryParams)
    }
}

/// Parses one query parameter's value, naming it in the error.
pub fn query_value<T: std::str::FromStr>(name: &str, value: &str, what: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e| {
        ApiError::bad_request(
            Some(name),
            format!("query parameter {name}={value:?}: {e}; expected {what}"),
        )
    })
}

/// The error for a query parameter the route does not know.
pub fn unknown_query_param(name: &str, known: &[&str]) -> ApiError {
    ApiError::bad_request(
        Some(name),
        format!(
            "unknown query parameter {name:?}: this route takes {}",
            known.join(", ")
        ),
    )
}

/// Path segments, with axum's plain-text rejection turned into a JSON 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct PathParams<T>(pub T);

impl<T, S> FromRequestParts<S> for PathParams<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| PathParams(v))
            .map_err(|e| ApiError::bad_request(None, e.body_text()))
    }
}

/// A numeric ID from a path segment; 400 naming the segment when it is not one.
pub fn path_id(name: &str, value: &str) -> Result<i64, ApiError> {
    value.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_request(
            Some(name),
            format!("{name} {value:?} is not an ID (a whole number >= 1)"),
        )
    })
}

/// 404 for a resource addressed by numeric ID.
pub fn not_found_id(what: &str, id: i64) -> ApiError {
    ApiError::not_found(format!("no {what} with ID {id}"))
}

impl From<std::convert::Infallible> for ApiError {
    fn from(e: std::convert::Infallible) -> Self {
        match e {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
        inner: Option<Inner>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        flag: bool,
    }

    #[test]
    fn json_errors_name_the_field() {
        let e = parse_json::<Body>(br#"{"name": "a", "count": "x"}"#).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(e.field.as_deref(), Some("count"));

        let e = parse_json::<Body>(br#"{"name": "a"}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("count"), "{e:?}");

        let e = parse_json::<Body>(br#"{"name": "a", "count": 1, "bogus": 2}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("bogus"), "{e:?}");

        let e = parse_json::<Body>(br#"{"name": "a", "count": 1, "inner": {}}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inner.flag"), "{e:?}");

        let e = parse_json::<Body>(br#"{"name": "a", "count": 1"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert_eq!(e.field, None);

        let e = parse_json::<Body>(br#"{"name": "a", "count": 1} x"#).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);

        assert!(parse_json::<Body>(br#"{"name": "a", "count": 1}"#).is_ok());

        #[derive(Debug, serde::Deserialize)]
        #[serde(default, deny_unknown_fields)]
        #[allow(dead_code)]
        #[derive(Default)]
        struct Defaulted {
            name: String,
        }
        let e = parse_json::<Defaulted>(br#"{"colour": 1}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("colour"), "{e:?}");
    }

    #[test]
    fn store_fields_become_api_fields() {
        assert_eq!(api_field("user ID"), "user_id");
        assert_eq!(api_field("self-provisioning ID"), "selfprov_id");
        assert_eq!(api_field("MAC"), "mac");
        assert_eq!(api_field("caller-ID name"), "caller_id_name");
    }
}
