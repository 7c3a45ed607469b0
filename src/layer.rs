//! The layer that recognises a session on every request, and the extractors
//! that hand it to handlers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use futures_util::future::Either;
use tower::{Layer, Service};

use crate::auth::{Auth, Quick, Resolution};
use crate::error::AppError;
use crate::session::{ActiveSession, Session};

tokio::task_local! {
    /// The request's session, set by [`SessionLayer`] around the inner
    /// service's future: cheaper than a request extension (no map, no box)
    /// on the path every request takes.
    static CURRENT: Session;
}

/// The request's session, while the session layer's inner service runs.
pub(crate) fn current() -> Result<Session, AppError> {
    CURRENT.try_with(Clone::clone).map_err(|_| {
        AppError::Internal(anyhow::anyhow!(
            "latchkey's Session, AuthUser or guards used on a route without Auth::layer"
        ))
    })
}

/// The refusal of a request that needs someone signed in: JSON clients get
/// 401; a browser (with [`crate::PageLayer`]) is sent to the login page and
/// brought back to `uri` afterwards.
pub(crate) fn sign_in_required(
    session: &Session,
    headers: &axum::http::HeaderMap,
    uri: &axum::http::Uri,
) -> AppError {
    // Only a browser is sent back here after signing in.
    let browser = crate::negotiate::Format::of(headers) == crate::negotiate::Format::Html;
    AppError::NotAuthenticated {
        next: browser
            .then(|| uri.path_and_query().map(|p| p.as_str().to_owned()))
            .flatten(),
        ended: session.ended,
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = AppError;

    async fn from_request_parts(_: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        current()
    }
}

/// Extracts the signed-in session or refuses the request: JSON clients get
/// 401 `not_authenticated`, browsers (with the service's error pages) are
/// sent to the login page and brought back afterwards.
#[derive(Debug, Clone)]
pub struct AuthUser(pub Arc<ActiveSession>);

impl std::ops::Deref for AuthUser {
    type Target = ActiveSession;
    fn deref(&self) -> &ActiveSession {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for AuthUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, state).await?;
        match session.active {
            Some(active) => Ok(Self(active)),
            None => Err(sign_in_required(&session, &parts.headers, &parts.uri)),
        }
    }
}

/// Requests whose `Cookie` headers are longer than this are refused with 431:
/// browsers cap a cookie at 4 KiB, and latchkey's own are under 200 bytes.
const MAX_COOKIE_BYTES: usize = 16 * 1024;

/// Recognises the session cookie on every request: verifies its signature
/// (no store access for forged cookies), loads the session, enforces the
/// timeouts and the user's current state, and puts a [`Session`] into the
/// request. When the store does not answer the request gets 503: it is never
/// treated as signed out (or in) by mistake.
#[derive(Debug, Clone)]
pub struct SessionLayer {
    auth: Auth,
}

impl Auth {
    /// The tower layer that recognises sessions; add it around every route
    /// that uses [`Session`] or [`crate::AuthUser`].
    #[must_use]
    pub fn layer(&self) -> SessionLayer {
        SessionLayer::new(self.clone())
    }
}

impl SessionLayer {
    pub(crate) fn new(auth: Auth) -> Self {
        Self { auth }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            auth: self.auth.clone(),
            inner,
        }
    }
}

/// The service made by [`SessionLayer`].
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    auth: Auth,
    inner: S,
}

impl<S> Service<Request> for SessionService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<
        tokio::task::futures::TaskLocalFuture<Session, S::Future>,
        Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let cookie_bytes: usize = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .map(|v| v.len())
            .sum();
        if cookie_bytes > MAX_COOKIE_BYTES {
            return Either::Right(Box::pin(async {
                Ok(AppError::CookiesTooLarge.into_response())
            }));
        }
        // The common cases (no cookie, a forged one, a cached session) are
        // decided without waiting, and the inner service is called directly.
        // A request that may change state is decided on the stores' data,
        // never on the cache (see `Auth::quick`).
        let fresh = !req.method().is_safe();
        let (key, resign) = match self.auth.quick(req.headers(), fresh) {
            Quick::Anonymous => {
                return Either::Left(CURRENT.scope(Session::anonymous(), self.inner.call(req)));
            }
            Quick::Active(active) => {
                let session = Session::signed_in(active);
                return Either::Left(CURRENT.scope(session, self.inner.call(req)));
            }
            Quick::Store(key) => (key, None),
            Quick::Resign(token) => (token.key(), Some(token)),
        };
        // The clone that was made ready goes into the future; a fresh clone stays.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Either::Right(Box::pin(async move {
            let (session, new_cookie) = match auth.resolve(key, fresh).await {
                Ok(Resolution::Anonymous) => (
                    Session {
                        ended: true,
                        ..Session::default()
                    },
                    None,
                ),
                Ok(Resolution::Active(a)) => (
                    Session::signed_in(a),
                    // Signed with a previous secret: the same session, signed anew.
                    resign.map(|token| auth.session_cookie(&token)),
                ),
                Ok(Resolution::Rotated(a, cookie, old)) => (
                    Session {
                        rotated_from: Some(old),
                        ..Session::signed_in(a)
                    },
                    Some(cookie),
                ),
                Err(e) => return Ok(AppError::StoreUnavailable(e).into_response()),
            };
            let mut response = CURRENT.scope(session, inner.call(req)).await?;
            if let Some(cookie) = new_cookie {
                let prefix = format!("{}=", auth.settings().cookies.session_name());
                let handler_set_it = response
                    .headers()
                    .get_all(header::SET_COOKIE)
                    .iter()
                    .any(|v| v.as_bytes().starts_with(prefix.as_bytes()));
                if !handler_set_it {
                    let headers = response.headers_mut();
                    headers.append(header::SET_COOKIE, cookie);
                    // A session cookie must never sit in a shared cache, even
                    // on an answer (a stylesheet) that is otherwise cacheable.
                    headers.insert(
                        header::CACHE_CONTROL,
                        axum::http::HeaderValue::from_static("no-store"),
                    );
                }
            }
            Ok(response)
        }))
    }
}
