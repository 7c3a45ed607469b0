//! `GET/POST /setup`: a one-time link, printed in the log at start-up while
//! no user exists, that creates the first administrator. No default
//! password exists anywhere.

use std::sync::Mutex;

use super::AppState;
// The page and its form are the service's (feature `server`); the token's
// state is also read by the sign-in page.
#[cfg(feature = "server")]
use {
    super::{errors::page, input::Input, peer::Peer},
    crate::{
        csrf::tokens_match, error::AppError, negotiate::Format, secret::Password, session::Session,
        users::AccountError,
    },
    askama::Template,
    axum::{
        extract::{RawQuery, State},
        http::{HeaderMap, StatusCode, header},
        response::{IntoResponse, Redirect, Response},
    },
    serde::Deserialize,
};

/// The first-admin token: present until it is used or an account exists.
#[derive(Default)]
pub struct SetupToken(Mutex<Option<String>>);

impl std::fmt::Debug for SetupToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SetupToken([redacted])")
    }
}

impl SetupToken {
    /// A fresh random token.
    #[must_use]
    #[cfg(feature = "server")]
    pub fn generate() -> Self {
        Self(Mutex::new(Some(crate::random::random_base64::<32>())))
    }

    /// No token: setup is closed.
    #[must_use]
    pub fn closed() -> Self {
        Self::default()
    }

    /// Whether the setup link still works (no account existed when last looked).
    #[must_use]
    pub fn is_open(&self) -> bool {
        self.lock().is_some()
    }

    /// The token, to print the link.
    #[must_use]
    #[cfg(feature = "server")]
    pub fn reveal(&self) -> Option<String> {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[cfg(feature = "server")]
    fn matches(&self, given: &str) -> bool {
        self.lock()
            .as_deref()
            .is_some_and(|t| tokens_match(t, given))
    }

    fn close(&self) {
        *self.lock() = None;
    }

    #[cfg(feature = "server")]
    /// Consumes the token if `given` is it: of two submissions at the same
    /// moment, only one proceeds.
    fn take(&self, given: &str) -> Option<String> {
        let mut slot = self.lock();
        if slot.as_deref().is_some_and(|t| tokens_match(t, given)) {
            slot.take()
        } else {
            None
        }
    }

    #[cfg(feature = "server")]
    /// Puts a taken token back (the submission was refused for its input).
    fn restore(&self, token: String) {
        let mut slot = self.lock();
        if slot.is_none() {
            *slot = Some(token);
        }
    }
}

#[cfg(feature = "server")]
const ROUTE: &str = "POST /setup";

#[cfg(feature = "server")]
/// The form field an error belongs to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Field {
    Username,
    Password,
    PasswordConfirm,
    /// The form as a whole (an expired form).
    Form,
}

#[cfg(feature = "server")]
#[derive(Template)]
#[template(path = "setup.html")]
struct SetupPage<'a> {
    paths: &'a crate::paths::Paths,
    token: &'a str,
    csrf_token: &'a str,
    username: &'a str,
    error: Option<(Field, &'a str)>,
}

#[cfg(feature = "server")]
impl SetupPage<'_> {
    fn invalid(&self, field: Field) -> bool {
        self.error.is_some_and(|(f, _)| f == field)
    }

    fn focus(&self, field: Field) -> bool {
        match self.error {
            None | Some((Field::Form, _)) => field == Field::Username,
            Some((f, _)) => f == field,
        }
    }
}

#[cfg(feature = "server")]
/// Setup is closed: a page that says why and where to go instead.
#[derive(Template)]
#[template(path = "setup_closed.html")]
struct SetupClosed<'a> {
    paths: &'a crate::paths::Paths,
    done: bool,
}

#[cfg(feature = "server")]
fn render(
    state: &AppState,
    headers: &HeaderMap,
    token: &str,
    username: &str,
    error: Option<(Field, &str)>,
    status: StatusCode,
) -> Response {
    let (csrf, cookie) = state.auth.login_csrf(headers);
    let mut response = page(
        status,
        &SetupPage {
            paths: &state.auth.settings().paths,
            token,
            csrf_token: &csrf,
            username,
            error,
        },
    );
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[cfg(feature = "server")]
/// Whether `token` opens the setup form; otherwise the page to show
/// instead: setup is done (an account exists), or the link is not valid.
async fn open(state: &AppState, token: &str) -> Result<Result<(), Response>, AppError> {
    let any_users = state
        .auth
        .accounts()
        .any_users()
        .await
        .map_err(account_error)?;
    if any_users {
        state.setup.close();
        return Ok(Err(page(
            StatusCode::GONE,
            &SetupClosed {
                paths: &state.auth.settings().paths,
                done: true,
            },
        )));
    }
    if state.setup.matches(token) {
        Ok(Ok(()))
    } else {
        Ok(Err(page(
            StatusCode::NOT_FOUND,
            &SetupClosed {
                paths: &state.auth.settings().paths,
                done: false,
            },
        )))
    }
}

/// Closes the setup link once any account exists (made with the CLI, or
/// through another instance), so that the login page stops offering it.
pub(crate) async fn close_if_done(state: &AppState) {
    if state.setup.is_open() && state.auth.accounts().any_users().await.unwrap_or(false) {
        state.setup.close();
    }
}

#[cfg(feature = "server")]
fn account_error(e: AccountError) -> AppError {
    match e {
        AccountError::Store(e) => e.into(),
        AccountError::Hash(e) => AppError::Internal(e.into()),
        other => AppError::Unprocessable(other.to_string()),
    }
}

#[cfg(feature = "server")]
pub(crate) async fn page_get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let setup_path = state.auth.settings().paths.setup();
    if let Some(redirect) =
        super::canonical_redirect(&state, &headers, setup_path, query.as_deref())
    {
        return Ok(redirect);
    }
    let token = super::query_param(query.as_deref(), "token").unwrap_or_default();
    if let Err(closed) = open(&state, &token).await? {
        return Ok(closed);
    }
    Ok(render(&state, &headers, &token, "", None, StatusCode::OK))
}

#[cfg(feature = "server")]
#[derive(Deserialize)]
pub(crate) struct SetupForm {
    token: String,
    csrf_token: Option<String>,
    username: String,
    password: Password,
    password_confirm: Password,
}

#[cfg(feature = "server")]
pub(crate) async fn submit(
    State(state): State<AppState>,
    peer: Peer,
    session: Session,
    headers: HeaderMap,
    Input { value: form, .. }: Input<SetupForm>,
) -> Result<Response, AppError> {
    let checked = state
        .auth
        .check_login_csrf(&headers, form.csrf_token.as_deref());
    if super::stale_form(ROUTE, checked, Format::Html)? {
        if let Err(closed) = open(&state, &form.token).await? {
            return Ok(closed);
        }
        return Ok(render(
            &state,
            &headers,
            &form.token,
            &form.username,
            Some((
                Field::Form,
                "This form had expired, so nothing was created. Please fill it in again.",
            )),
            StatusCode::FORBIDDEN,
        ));
    }
    if let Err(closed) = open(&state, &form.token).await? {
        return Ok(closed);
    }
    // Counted only now: a cross-site page cannot use up a visitor's share.
    let client = peer.client(&state.auth, &headers);
    state.auth.admit(client)?;
    let Some(token) = state.setup.take(&form.token) else {
        return Ok(page(
            StatusCode::GONE,
            &SetupClosed {
                paths: &state.auth.settings().paths,
                done: true,
            },
        ));
    };
    let fail = |field: Field, message: &str| {
        state.setup.restore(token.clone());
        Ok(render(
            &state,
            &headers,
            &form.token,
            &form.username,
            Some((field, message)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ))
    };
    if !tokens_match(form.password.expose(), form.password_confirm.expose()) {
        return fail(Field::PasswordConfirm, "The two passwords differ.");
    }
    let accounts = state.auth.accounts();
    match accounts
        .create_user(
            &form.username,
            &form.password,
            &[super::admin::ADMIN_ROLE.to_owned()],
        )
        .await
    {
        Ok(_) => {}
        Err(AccountError::Username(e)) => {
            return fail(Field::Username, &super::text::sentence(&e.to_string()));
        }
        Err(AccountError::Password(e)) => {
            return fail(Field::Password, &super::text::sentence(&e.to_string()));
        }
        Err(e) => {
            state.setup.restore(token);
            return Err(account_error(e));
        }
    }
    let logged_in = state
        .auth
        .login(&session, &form.username, &form.password, client, &headers)
        .await?;
    let home = state.auth.settings().paths.home();
    Ok((logged_in, Redirect::to(home)).into_response())
}
