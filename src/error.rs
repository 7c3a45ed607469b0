//! The HTTP boundary's error: a short, stable code and message for the
//! client; the cause chain for the log.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::store::StoreError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Malformed request (bad syntax, invalid UTF-8).
    #[error("{0}")]
    BadRequest(String),
    /// The body is of a type this route does not read.
    #[error("unsupported content type; send application/x-www-form-urlencoded or application/json")]
    UnsupportedMediaType,
    /// The body is over the size limit.
    #[error("request body too large")]
    PayloadTooLarge,
    /// The request's cookies are larger than any cookie latchkey sets could make them.
    #[error("cookies too large")]
    CookiesTooLarge,
    /// Well-formed but unacceptable input (missing field, too long, weak password).
    #[error("{0}")]
    Unprocessable(String),
    /// Wrong username or password; deliberately says which of neither.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// Too many failed logins.
    #[error("too many failed login attempts; try again later")]
    Throttled {
        /// Seconds until the lock ends.
        retry_after_secs: u64,
    },
    /// Too many sign-in (or setup) requests from one client address.
    #[error("too many sign-in requests from your address; try again later")]
    RateLimited {
        /// Seconds until the address's share is renewed.
        retry_after_secs: u64,
    },
    /// No valid session. Browsers are sent to the login page, coming back to `next`.
    #[error("sign-in required")]
    NotAuthenticated {
        /// Where to return after signing in.
        next: Option<String>,
        /// The request carried a session that has ended (not merely none).
        ended: bool,
    },
    /// Signed in, but without the needed role.
    #[error("you do not have access to this page")]
    Forbidden,
    /// A possible cross-site request forgery: a cross-site request, or a
    /// missing or stale token.
    #[error("request refused by the cross-site request check: {0}")]
    Csrf(crate::csrf::CsrfRefusal),
    /// No such page.
    #[error("not found")]
    NotFound,
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A name or record that already exists.
    #[error("{0}")]
    Conflict(String),
    /// The request (its body, or the work it asked for) took longer than
    /// `LATCHKEY_REQUEST_TIMEOUT`.
    #[error("the request took too long; try again")]
    RequestTimeout,
    /// Too much work queued (the password hashing pool is full).
    #[error("the service is busy; try again shortly")]
    Busy,
    /// The store did not answer. Never treated as signed in or signed out.
    #[error("the session store is unavailable; try again shortly")]
    StoreUnavailable(#[source] StoreError),
    /// Anything else; details go to the log only.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

/// What [`AppError`] leaves in the response's extensions, so that a
/// rendering layer can turn it into an HTML page for browsers.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    /// Stable machine-readable code, as in the JSON body's `error`.
    pub code: &'static str,
    /// The message shown to the client.
    pub message: std::borrow::Cow<'static, str>,
    /// For [`AppError::NotAuthenticated`]: the path to come back to.
    pub login_next: Option<String>,
    /// For [`AppError::NotAuthenticated`]: a session ended (say so).
    pub session_ended: bool,
    /// For [`AppError::Csrf`]: why.
    pub csrf: Option<crate::csrf::CsrfRefusal>,
}

impl AppError {
    /// HTTP status.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::CookiesTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::InvalidCredentials | Self::NotAuthenticated { .. } => StatusCode::UNAUTHORIZED,
            Self::Throttled { .. } | Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Forbidden | Self::Csrf(_) => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::Busy | Self::StoreUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::CookiesTooLarge => "cookies_too_large",
            Self::Unprocessable(_) => "invalid_input",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Throttled { .. } => "too_many_attempts",
            Self::RateLimited { .. } => "too_many_requests",
            Self::NotAuthenticated { .. } => "not_authenticated",
            Self::Forbidden => "forbidden",
            Self::Csrf(_) => "csrf_failed",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::RequestTimeout => "request_timeout",
            Self::Busy => "busy",
            Self::StoreUnavailable(_) => "store_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }
}

/// The JSON body of every error.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'static str,
    message: &'a str,
}

impl AppError {
    /// The client's message; static where it can be, so that frequent
    /// answers (401 for a stale cookie) allocate nothing for it.
    fn message(&self) -> std::borrow::Cow<'static, str> {
        use std::borrow::Cow;
        match self {
            Self::BadRequest(m) | Self::Unprocessable(m) | Self::Conflict(m) => {
                Cow::Owned(m.clone())
            }
            Self::UnsupportedMediaType => Cow::Borrowed(
                "unsupported content type; send application/x-www-form-urlencoded or application/json",
            ),
            Self::PayloadTooLarge => Cow::Borrowed("request body too large"),
            Self::CookiesTooLarge => Cow::Borrowed("cookies too large"),
            Self::InvalidCredentials => Cow::Borrowed("invalid username or password"),
            Self::Throttled { .. } => {
                Cow::Borrowed("too many failed login attempts; try again later")
            }
            Self::RateLimited { .. } => {
                Cow::Borrowed("too many sign-in requests from your address; try again later")
            }
            Self::NotAuthenticated { .. } => Cow::Borrowed("sign-in required"),
            Self::Forbidden => Cow::Borrowed("you do not have access to this page"),
            Self::Csrf(_) => Cow::Owned(self.to_string()),
            Self::NotFound => Cow::Borrowed("not found"),
            Self::MethodNotAllowed => Cow::Borrowed("method not allowed"),
            Self::RequestTimeout => Cow::Borrowed("the request took too long; try again"),
            Self::Busy => Cow::Borrowed("the service is busy; try again shortly"),
            Self::StoreUnavailable(_) => {
                Cow::Borrowed("the session store is unavailable; try again shortly")
            }
            Self::Internal(_) => Cow::Borrowed("internal error"),
        }
    }
}

/// The error and its sources, one line, for logs.
#[must_use]
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict => Self::Conflict("already exists".into()),
            other => Self::StoreUnavailable(other),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %chain(&self), code = self.code(), "request failed");
        }
        let message = self.message();
        let code = self.code();
        let mut response = (
            status,
            Json(ErrorBody {
                error: code,
                message: &message,
            }),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match &self {
            Self::Throttled { retry_after_secs } | Self::RateLimited { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            Self::Busy | Self::StoreUnavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        let (login_next, session_ended, csrf) = match self {
            Self::NotAuthenticated { next, ended } => (next, ended, None),
            Self::Csrf(refusal) => (None, false, Some(refusal)),
            _ => (None, false, None),
        };
        response.extensions_mut().insert(ErrorInfo {
            code,
            message,
            login_next,
            session_ended,
            csrf,
        });
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_message_is_the_display_text() {
        let all = [
            AppError::BadRequest("x".into()),
            AppError::UnsupportedMediaType,
            AppError::PayloadTooLarge,
            AppError::CookiesTooLarge,
            AppError::Unprocessable("y".into()),
            AppError::InvalidCredentials,
            AppError::Throttled {
                retry_after_secs: 3,
            },
            AppError::NotAuthenticated {
                next: None,
                ended: false,
            },
            AppError::Forbidden,
            AppError::Csrf(crate::csrf::CsrfRefusal::TokenMissing),
            AppError::NotFound,
            AppError::MethodNotAllowed,
            AppError::Conflict("z".into()),
            AppError::RequestTimeout,
            AppError::Busy,
            AppError::StoreUnavailable(StoreError::Corrupt("secret detail".into())),
            AppError::Internal(anyhow::anyhow!("secret detail")),
        ];
        for e in all {
            assert_eq!(e.message(), e.to_string());
            assert!(
                !e.message().contains("secret detail"),
                "causes stay in the log"
            );
        }
    }
}
