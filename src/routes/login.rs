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
use crate::auth::LoginError;
use crate::error::AppError;
use crate::negotiate::Format;
use crate::redirect::safe_next;
use crate::secret::Password;
use crate::session::Session;

#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage<'a> {
    pub(crate) csrf_token: &'a str,
    pub(crate) next: &'a str,
    pub(crate) username: &'a str,
    pub(crate) error: Option<&'a str>,
}

/// The `next` query parameter, if any.
pub(crate) fn next_param(query: Option<&str>) -> Option<String> {
    form_urlencoded_next(query?)
}

fn form_urlencoded_next(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "next").then(|| {
            let v = v.replace('+', " ");
            percent_encoding::percent_decode_str(&v)
                .decode_utf8()
                .map(|s| s.into_owned())
                .ok()
        })?
    })
}

pub(crate) fn render_form(
    state: &AppState,
    headers: &HeaderMap,
    next: &str,
    username: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let (token, cookie) = state.auth.login_csrf(headers);
    let mut response = page(
        status,
        &LoginPage {
            csrf_token: &token,
            next,
            username,
            error,
        },
    );
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

pub(crate) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let next = safe_next(next_param(query.as_deref()).as_deref()).to_owned();
    render_form(&state, &headers, &next, "", None, StatusCode::OK)
}

#[derive(Deserialize)]
pub(crate) struct LoginForm {
    username: String,
    password: Password,
    next: Option<String>,
    csrf_token: Option<String>,
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    Peer(peer): Peer,
    session: Session,
    format: Format,
    headers: HeaderMap,
    Input { value: form, kind }: Input<LoginForm>,
) -> Result<Response, AppError> {
    let auth = &state.auth;
    match kind {
        // Browsers cannot send a JSON body cross-site without a CORS
        // preflight, which latchkey never grants; the origin check remains.
        BodyKind::Json => {
            if !crate::csrf::same_origin(&headers, &auth.settings().public_origin) {
                return Err(AppError::Csrf);
            }
        }
        BodyKind::Form | BodyKind::Empty => {
            auth.check_login_csrf(&headers, form.csrf_token.as_deref())?
        }
    }
    let client = auth.client_ip(peer.ip(), &headers);
    let result = auth
        .login(&session, &form.username, &form.password, client)
        .await;
    let next = safe_next(form.next.as_deref());
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
            Err(e @ (LoginError::InvalidCredentials | LoginError::Throttled { .. })),
            Format::Html,
        ) => {
            let error = AppError::from(e);
            let status = error.status();
            let retry = match &error {
                AppError::Throttled { retry_after_secs } => Some(*retry_after_secs),
                _ => None,
            };
            let shown_name = if form.username.len() <= 256 {
                form.username.as_str()
            } else {
                ""
            };
            let mut response = render_form(
                &state,
                &headers,
                next,
                shown_name,
                Some(&error.to_string()),
                status,
            );
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
