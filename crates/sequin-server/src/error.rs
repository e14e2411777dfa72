//! The server's error type: every refusal carries a status and a reason in plain words.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Missing or wrong credentials (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The request itself is wrong (400).
    #[error("{0}")]
    BadRequest(String),
    /// The right kind of key, but not allowed here (403).
    #[error("{0}")]
    Forbidden(String),
    /// No such segment (404).
    #[error("{0}")]
    NotFound(String),
    /// Conflicts with the current state, e.g. deleting a segment others use (409).
    #[error("{0}")]
    Conflict(String),
    /// The server could not do its part (500).
    #[error("{0}")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self {
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let mut response = (
            status,
            Json(serde_json::json!({ "success": false, "error": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Basic realm=\"sequin\""),
            );
        }
        response
    }
}
