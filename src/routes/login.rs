//! `GET /login` and `POST /login`.

use super::peer::Peer;

use askama::Template;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::AppState;
use super::errors::page;
use super::input::{BodyKind, Input};
use super::text::wait_in_words;
use super::{query_param, stale_form};
use crate::auth::LoginError;
use crate::error::AppError;
use crate::negotiate::Format;
use crate::secret::Password;
use crate::session::Session;

const ROUTE: &str = "POST /login";

const SIGNED_OUT: &str = "You have been signed out.";

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage<'a> {
    paths: &'a crate::paths::Paths,
    csrf_token: &'a str,
    next: &'a str,
    username: &'a str,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    /// The notice's style: `notice` (done, green) or `info` (neutral).
    notice_class: &'a str,
    /// The error concerns what was typed (the fields are marked invalid),
    /// rather than the account or the form (a lock, an expired form).
    field_error: bool,
    /// Who is signed in already, with their session's token for signing out.
    signed_in: Option<(&'a str, &'a str)>,
    /// No account exists yet (as far as this server knows).
    setup_open: bool,
}

/// What the login form shows besides its fields.
struct FormView<'a> {
    next: &'a str,
    username: &'a str,
    error: Option<&'a str>,
    notice: Option<&'a str>,
    field_error: bool,
}

fn render_form(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    view: &FormView<'_>,
    status: StatusCode,
) -> Response {
    let (token, cookie) = state.auth.login_csrf(headers);
    let mut response = page(
        status,
        &LoginPage {
            paths: &state.auth.settings().paths,
            csrf_token: &token,
            next: view.next,
            username: view.username,
            error: view.error,
            notice: view.notice,
            notice_class: if view.notice == Some(SIGNED_OUT) {
                "notice"
            } else {
                "info"
            },
            field_error: view.field_error,
            signed_in: session
                .active()
                .map(|a| (a.username.as_str(), a.csrf_token.as_str())),
            setup_open: state.setup.is_open(),
        },
    );
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        state.auth.settings().form_page_csp.clone(),
    );
    response
}

pub(crate) async fn show(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let paths = &state.auth.settings().paths;
    if let Some(redirect) =
        super::canonical_redirect(&state, &headers, paths.login(), query.as_deref())
    {
        return redirect;
    }
    super::setup::close_if_done(&state).await;
    // `rd` is where forward-auth sent the browser from: an absolute URL.
    let next =
        query_param(query.as_deref(), "next").or_else(|| query_param(query.as_deref(), "rd"));
    if session.active().is_some()
        && let Some(next) = &next
    {
        // Sent here for a page while already signed in (another tab, or
        // another name of this host): straight on to that page.
        return Redirect::to(super::destination(&state.auth, Some(next))).into_response();
    }
    let notice = match query_param(query.as_deref(), "reason").as_deref() {
        Some("signed_out") => Some(SIGNED_OUT),
        Some("ended") if session.active().is_none() => {
            Some("Your session ended. Please sign in again.")
        }
        _ => None,
    };
    let view = FormView {
        next: super::destination(&state.auth, next.as_deref()),
        username: "",
        error: None,
        notice,
        field_error: false,
    };
    render_form(&state, &session, &headers, &view, StatusCode::OK)
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    username: String,
    password: Password,
    next: Option<String>,
    csrf_token: Option<String>,
}

/// The message a person sees for a refused sign-in.
fn page_message(error: &AppError) -> String {
    match error {
        AppError::Throttled { retry_after_secs } => format!(
            "Too many failed sign-in attempts. \
             Sign-in is locked: try again in {}.",
            wait_in_words(*retry_after_secs)
        ),
        AppError::RateLimited { retry_after_secs } => format!(
            "Too many sign-in requests from your address. Try again in {}.",
            wait_in_words(*retry_after_secs)
        ),
        AppError::InvalidCredentials => {
            "The username or password is not right. Check them and try again.".to_owned()
        }
        other => other.to_string(),
    }
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    peer: Peer,
    session: Session,
    format: Format,
    headers: HeaderMap,
    Input { value: form, kind }: Input<LoginForm>,
) -> Result<Response, AppError> {
    let auth = &state.auth;
    if format == Format::Html {
        super::setup::close_if_done(&state).await;
    }
    let next = super::destination(auth, form.next.as_deref());
    let shown_name = if form.username.len() <= 256 {
        form.username.as_str()
    } else {
        ""
    };
    let checked = match kind {
        // Browsers cannot send a JSON body cross-site without a CORS
        // preflight, which latchkey never grants; the origin check remains.
        BodyKind::Json => {
            crate::csrf::check_origin(&headers, &auth.settings().origins).map_err(AppError::Csrf)
        }
        BodyKind::Form | BodyKind::Empty => {
            auth.check_login_csrf(&headers, form.csrf_token.as_deref())
        }
    };
    if stale_form(ROUTE, checked, format)? {
        // A second click on "Sign in" after the first one worked: the
        // person is signed in, so they go where they were going.
        if session.active().is_some() {
            return Ok(Redirect::to(next).into_response());
        }
        // One of this site's own forms whose token went stale (cookies
        // cleared, a form left open): a fresh form, nothing else happens.
        let view = FormView {
            next,
            username: shown_name,
            error: Some(
                "This sign-in form had expired, so nothing was sent. Please sign in again.",
            ),
            notice: None,
            field_error: false,
        };
        return Ok(render_form(
            &state,
            &session,
            &headers,
            &view,
            StatusCode::FORBIDDEN,
        ));
    }
    let client = peer.client(auth, &headers);
    let result = auth
        .login(&session, &form.username, &form.password, client, &headers)
        .await;
    match (result, format) {
        (Ok(logged_in), Format::Json) => {
            let s = &logged_in.session;
            let body = Json(serde_json::json!({
                "username": s.username,
                "roles": s.roles,
                "csrf_token": s.csrf_token,
            }));
            Ok((logged_in, body).into_response())
        }
        (Ok(logged_in), Format::Html) => Ok((logged_in, Redirect::to(next)).into_response()),
        (
            Err(
                e @ (LoginError::InvalidCredentials
                | LoginError::Throttled { .. }
                | LoginError::RateLimited { .. }
                | LoginError::InvalidCredentialsNowLocked { .. }),
            ),
            Format::Html,
        ) => {
            // A page says at once that this failure locked the account.
            let error = match e {
                LoginError::InvalidCredentialsNowLocked { retry_after } => {
                    AppError::from(LoginError::Throttled { retry_after })
                }
                e => AppError::from(e),
            };
            let status = error.status();
            let retry = match &error {
                AppError::Throttled { retry_after_secs }
                | AppError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
                _ => None,
            };
            let message = page_message(&error);
            let view = FormView {
                next,
                username: shown_name,
                error: Some(&message),
                notice: None,
                field_error: retry.is_none(),
            };
            // The failed attempt did not touch the request's session.
            let mut response = render_form(&state, &session, &headers, &view, status);
            if let Some(secs) = retry {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, secs.into());
            }
            Ok(response)
        }
        (Err(e), _) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_limit_is_not_called_a_failure() {
        let m = page_message(&AppError::RateLimited {
            retry_after_secs: 48,
        });
        assert_eq!(
            m,
            "Too many sign-in requests from your address. Try again in 48 seconds."
        );
    }

    #[test]
    fn query_parameters_are_decoded() {
        let q = Some("next=%2Fadmin%3Fa%3D1&reason=ended&flag");
        assert_eq!(query_param(q, "next").as_deref(), Some("/admin?a=1"));
        assert_eq!(query_param(q, "reason").as_deref(), Some("ended"));
        assert_eq!(query_param(q, "flag").as_deref(), Some(""));
        assert_eq!(query_param(q, "other"), None);
        assert_eq!(query_param(None, "next"), None);
    }

    #[test]
    fn a_lockout_says_how_long_to_wait() {
        let m = page_message(&AppError::Throttled {
            retry_after_secs: 14 * 60 - 3,
        });
        assert!(m.contains("try again in 14 minutes"), "{m}");
    }
}
