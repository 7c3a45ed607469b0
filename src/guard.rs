//! Route guards for an app's own routes, inside [`Auth::layer`]: sign-in
//! required, a role required, and the cross-site request check for
//! state-changing routes. Each refusal is latchkey's error answer: JSON for
//! API clients, and with [`crate::PageLayer`] a page (or the login page) for
//! browsers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::auth::Auth;
use crate::error::AppError;

/// The largest form body [`CsrfLayer`] reads to find the `csrf_token`
/// field; a bigger form must send the token in `X-CSRF-Token`.
pub const MAX_FORM_BYTES: usize = 1024 * 1024;

type BoxFuture = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// Only signed-in users pass: see [`require_role`] for one with a role.
///
/// ```no_run
/// # use axum::{Router, routing::get};
/// # async fn notes() {}
/// # async fn app() -> Result<(), latchkey::BuildError> {
/// # let auth = latchkey::Auth::builder().database_url("memory:").build().await?;
/// let app: Router = Router::new()
///     .route("/notes", get(notes))
///     .route_layer(latchkey::login_required())
///     .layer(auth.layer());
/// # Ok(()) }
/// ```
#[must_use]
pub fn login_required() -> RequireRole {
    RequireRole { role: None }
}

/// Only signed-in users with `role` pass; others signed in get 403, and
/// anonymous visitors are asked to sign in (401, or the login page).
///
/// ```no_run
/// # use axum::{Router, routing::get};
/// # async fn admin() {}
/// # async fn app() -> Result<(), latchkey::BuildError> {
/// # let auth = latchkey::Auth::builder().database_url("memory:").build().await?;
/// let app: Router = Router::new()
///     .route("/admin", get(admin).route_layer(latchkey::require_role("admin")))
///     .layer(auth.layer());
/// # Ok(()) }
/// ```
#[must_use]
pub fn require_role(role: impl Into<Arc<str>>) -> RequireRole {
    RequireRole {
        role: Some(role.into()),
    }
}

/// The layer of [`login_required`] and [`require_role`].
#[derive(Debug, Clone)]
pub struct RequireRole {
    role: Option<Arc<str>>,
}

impl<S> Layer<S> for RequireRole {
    type Service = RequireRoleService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequireRoleService {
            inner,
            role: self.role.clone(),
        }
    }
}

/// The service made by [`RequireRole`].
#[derive(Debug, Clone)]
pub struct RequireRoleService<S> {
    inner: S,
    role: Option<Arc<str>>,
}

impl<S> Service<Request> for RequireRoleService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let role = self.role.clone();
        // The session is known only inside the session layer's future.
        Box::pin(async move {
            let session = match crate::layer::current() {
                Ok(session) => session,
                Err(e) => return Ok(e.into_response()),
            };
            match (session.active(), role) {
                (None, _) => Ok(
                    crate::layer::sign_in_required(&session, req.headers(), req.uri())
                        .into_response(),
                ),
                (Some(active), Some(role)) if !active.has_role(&role) => {
                    Ok(AppError::Forbidden.into_response())
                }
                (Some(_), _) => inner.call(req).await,
            }
        })
    }
}

/// Refuses forged state-changing requests (any method but GET, HEAD and
/// OPTIONS) on an app's own routes: a browser's request from another origin
/// than the public URL's, and a request without the signed-in session's
/// CSRF token, in the `X-CSRF-Token` header or a form's `csrf_token` field
/// (the token is [`crate::ActiveSession::csrf_token`]). Refused requests
/// get 403 `csrf_failed` (the JSON answer's message names the origin
/// refused and those expected; a browser, with [`crate::PageLayer`], gets a
/// page saying the request came from elsewhere and nothing was changed); the
/// route's handler never runs. A request of this site
/// with nobody signed in is asked to sign in instead (401, or the login
/// page with [`crate::PageLayer`]).
#[derive(Debug, Clone)]
pub struct CsrfLayer {
    auth: Auth,
}

impl Auth {
    /// The cross-site request check as a layer for an app's state-changing
    /// routes; see [`CsrfLayer`].
    #[must_use]
    pub fn csrf(&self) -> CsrfLayer {
        CsrfLayer { auth: self.clone() }
    }
}

impl<S> Layer<S> for CsrfLayer {
    type Service = CsrfService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CsrfService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service made by [`CsrfLayer`].
#[derive(Debug, Clone)]
pub struct CsrfService<S> {
    inner: S,
    auth: Auth,
}

impl<S> Service<Request> for CsrfService<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = futures_util::future::Either<S::Future, BoxFuture>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        use futures_util::future::Either;
        if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
            return Either::Left(self.inner.call(req));
        }
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Either::Right(Box::pin(async move {
            let session = match crate::layer::current() {
                Ok(session) => session,
                Err(e) => return Ok(e.into_response()),
            };
            // Nobody signed in (the session ended while the form was open):
            // a request from this site is asked to sign in, as a page would
            // be; another site's is refused as a forgery all the same.
            if session.active().is_none() {
                let origin = crate::csrf::check_origin(req.headers(), &auth.settings().origins);
                return Ok(match origin {
                    Ok(()) => crate::layer::sign_in_required(&session, req.headers(), req.uri()),
                    Err(refusal) => AppError::Csrf(refusal),
                }
                .into_response());
            }
            let (req, form_token) = match form_token(req).await {
                Ok(read) => read,
                Err(e) => return Ok(e.into_response()),
            };
            match auth.check_csrf(&session, req.headers(), form_token.as_deref()) {
                Ok(()) => inner.call(req).await,
                Err(e) => {
                    if let AppError::Csrf(refusal) = &e {
                        tracing::warn!(
                            path = req.uri().path(),
                            reason = %refusal,
                            "request refused by the cross-site request check"
                        );
                    }
                    Ok(e.into_response())
                }
            }
        }))
    }
}

/// The `csrf_token` field of a URL-encoded form, with the request put back
/// together for the handler. Other bodies are left unread: their token must
/// come in the header.
async fn form_token(req: Request) -> Result<(Request, Option<String>), AppError> {
    let is_form = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|t| {
                t.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form || req.headers().contains_key(crate::csrf::HEADER) {
        return Ok((req, None));
    }
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
        .await
        .map_err(|_| AppError::PayloadTooLarge)?;
    let token = url::form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == "csrf_token")
        .map(|(_, value)| value.into_owned());
    Ok((Request::from_parts(parts, Body::from(bytes)), token))
}
