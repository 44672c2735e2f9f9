//! OAuth error answers in the two shapes strict servers use.
//!
//! Why both: RFC 6749 servers answer `400 {"error":"invalid_grant",…}`, while
//! OpenAI answers `401 {"error":{"code":"refresh_token_reused",…}}`. A broker
//! that parses only one shape misclassifies the other as transient and keeps
//! hammering a dead refresh token, so the fake can speak either.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::config::ErrorShape;
use super::families::RefreshError;

/// An error answer of an OAuth endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OAuthError {
    pub status: u16,
    pub code: String,
    pub description: String,
    pub shape: ErrorShape,
}

impl OAuthError {
    /// Flat shape, whatever the server's configured shape (RFC 8628 polling,
    /// device and revocation endpoints).
    pub(crate) fn flat(status: u16, code: &str, description: &str) -> Self {
        Self {
            status,
            code: code.to_owned(),
            description: description.to_owned(),
            shape: ErrorShape::Flat,
        }
    }

    /// The configured shape with the same code and status in both.
    pub(crate) fn shaped(shape: ErrorShape, status: u16, code: &str, description: &str) -> Self {
        Self {
            shape,
            ..Self::flat(status, code, description)
        }
    }

    pub(crate) fn invalid_request(shape: ErrorShape, description: &str) -> Self {
        Self::shaped(shape, 400, "invalid_request", description)
    }

    pub(crate) fn invalid_client(shape: ErrorShape) -> Self {
        Self::shaped(shape, 401, "invalid_client", "client authentication failed")
    }

    /// A rejected refresh token: `invalid_grant` (400) in the flat shape,
    /// the OpenAI provider codes (401) in the nested one.
    pub(crate) fn refresh(shape: ErrorShape, why: RefreshError) -> Self {
        let (nested_code, description) = match why {
            RefreshError::Reused => (
                "refresh_token_reused",
                "refresh token was already used; the token family has been revoked",
            ),
            RefreshError::Revoked => (
                "refresh_token_invalidated",
                "refresh token has been revoked",
            ),
            RefreshError::Unknown => ("refresh_token_invalidated", "refresh token is not valid"),
            RefreshError::Expired => ("refresh_token_expired", "refresh token has expired"),
        };
        match shape {
            ErrorShape::Flat => Self::flat(400, "invalid_grant", description),
            ErrorShape::Nested => Self::shaped(shape, 401, nested_code, description),
            ErrorShape::Github => Self::shaped(shape, 200, "bad_refresh_token", description),
        }
    }

    pub(crate) fn body(&self) -> serde_json::Value {
        match self.shape {
            ErrorShape::Flat | ErrorShape::Github => json!({
                "error": self.code,
                "error_description": self.description,
            }),
            ErrorShape::Nested => json!({
                "error": {
                    "code": self.code,
                    "message": self.description,
                    "type": "invalid_request_error",
                    "param": null,
                }
            }),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut resp = (
            status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            self.body().to_string(),
        )
            .into_response();
        if self.status == 401 && self.code == "invalid_client" {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"fake\""),
            );
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes() {
        let flat = OAuthError::refresh(ErrorShape::Flat, RefreshError::Reused);
        assert_eq!(flat.status, 400);
        assert_eq!(flat.body()["error"], "invalid_grant");
        let nested = OAuthError::refresh(ErrorShape::Nested, RefreshError::Reused);
        assert_eq!(nested.status, 401);
        assert_eq!(nested.body()["error"]["code"], "refresh_token_reused");
        let inv = OAuthError::refresh(ErrorShape::Nested, RefreshError::Unknown);
        assert_eq!(inv.body()["error"]["code"], "refresh_token_invalidated");
        let github = OAuthError::refresh(ErrorShape::Github, RefreshError::Revoked);
        assert_eq!(github.status, 200);
        assert_eq!(github.body()["error"], "bad_refresh_token");
    }
}
