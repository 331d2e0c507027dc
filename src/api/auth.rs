//! Bearer-token authentication of every protected route.
//!
//! The token travels as `Authorization: Bearer <token>` (RFC 6750 §2.1; the scheme name is
//! case-insensitive, RFC 7235 §2.1). Wazo's clients send `X-Auth-Token: <token>` instead, so
//! that header is accepted too. A request without a token, or with one the store does not know,
//! gets a 401 with a JSON body and `WWW-Authenticate: Bearer realm="selfprov"` (plus
//! `error="invalid_token"` when a token was presented, RFC 6750 §3). Tokens are never logged.

use super::error::ApiError;
use super::ApiState;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Longest token accepted (longer ones are refused without asking the store).
const MAX_TOKEN_LEN: usize = 512;

/// The token a request carries, if any: `Err` for a malformed `Authorization` header.
fn bearer_token(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    if let Some(v) = headers.get(AUTHORIZATION) {
        let v = v.to_str().map_err(|_| {
            ApiError::unauthorized(
                "the Authorization header is not text",
                Some("invalid_request"),
            )
        })?;
        let (scheme, token) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::unauthorized(
                "use Authorization: Bearer <token> (selfprov token create prints one)",
                Some("invalid_request"),
            ));
        }
        let token = token.trim();
        return Ok(Some(token.to_string()).filter(|t| !t.is_empty()));
    }
    if let Some(v) = headers.get("x-auth-token") {
        let token = v.to_str().map(str::trim).unwrap_or("");
        return Ok(Some(token.to_string()).filter(|t| !t.is_empty()));
    }
    Ok(None)
}

/// The middleware: lets the request through only with a valid token.
pub async fn require_token(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let token = match bearer_token(req.headers()) {
        Ok(Some(t)) => t,
        Ok(None) => {
            return ApiError::unauthorized(
                "this API needs a token: send Authorization: Bearer <token> \
                 (selfprov token create --config PATH prints one)",
                None,
            )
            .into_response()
        }
        Err(e) => return e.into_response(),
    };
    let valid = if token.len() > MAX_TOKEN_LEN {
        Ok(false)
    } else {
        state.verify_token(&token).await
    };
    match valid {
        Ok(true) => next.run(req).await,
        Ok(false) => {
            tracing::info!(method = %req.method(), path = %req.uri().path(), "API request with an unknown token refused");
            ApiError::unauthorized(
                "the token is not valid (revoked, mistyped, or from another selfprov store)",
                Some("invalid_token"),
            )
            .into_response()
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn extracts_tokens() {
        assert_eq!(
            bearer_token(&headers("authorization", "Bearer abc")).unwrap(),
            Some("abc".into())
        );
        assert_eq!(
            bearer_token(&headers("authorization", "bearer   abc ")).unwrap(),
            Some("abc".into())
        );
        assert_eq!(
            bearer_token(&headers("x-auth-token", "abc")).unwrap(),
            Some("abc".into())
        );
        assert_eq!(
            bearer_token(&headers("authorization", "Bearer")).unwrap(),
            None
        );
        assert!(bearer_token(&headers("authorization", "Basic YTpi")).is_err());
        assert_eq!(bearer_token(&HeaderMap::new()).unwrap(), None);
    }
}
