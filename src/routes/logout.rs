//! `GET /logout` (a confirmation page, changes nothing) and `POST /logout`.

use super::peer::Peer;

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::AppState;
use super::errors::page as render;
use super::input::Input;
use crate::error::AppError;
use crate::negotiate::Format;
use crate::session::Session;

const ROUTE: &str = "POST /logout";

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    paths: &'a crate::paths::Paths,
    username: &'a str,
    csrf_token: Option<&'a str>,
    error: Option<&'a str>,
}

pub(crate) async fn page(
    State(state): State<AppState>,
    session: Session,
    format: Format,
    headers: HeaderMap,
) -> Response {
    let active = session.active();
    if format == Format::Json {
        return Json(serde_json::json!({ "signed_in": active.is_some() })).into_response();
    }
    let paths = &state.auth.settings().paths;
    if let Some(redirect) = super::canonical_redirect(&state, &headers, paths.logout(), None) {
        return redirect;
    }
    page_html(paths, &session, None, StatusCode::OK)
}

fn page_html(
    paths: &crate::paths::Paths,
    session: &Session,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let active = session.active();
    render(
        status,
        &LogoutPage {
            paths,
            username: active.map_or("", |a| a.username.as_str()),
            csrf_token: active.map(|a| a.csrf_token.as_str()),
            error,
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct LogoutForm {
    csrf_token: Option<String>,
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    peer: Peer,
    session: Session,
    format: Format,
    headers: HeaderMap,
    Input { value: form, .. }: Input<LogoutForm>,
) -> Result<Response, AppError> {
    let auth = &state.auth;
    let checked = if session.active().is_some() {
        auth.check_logout_csrf(&session, &headers, form.csrf_token.as_deref())
    } else {
        // Nobody to sign out: only a cross-site request is worth refusing.
        crate::csrf::check_origin(&headers, &auth.settings().origins).map_err(AppError::Csrf)
    };
    if super::stale_form(ROUTE, checked, format)? {
        // A page of this site whose token went stale: ask again, with a
        // fresh token. The person is still signed in and should know it.
        return Ok(page_html(
            &auth.settings().paths,
            &session,
            Some("This page was out of date, so you are still signed in. Sign out now?"),
            StatusCode::FORBIDDEN,
        ));
    }
    let client = peer.client(auth, &headers);
    let logged_out = auth.logout(&session, client).await?;
    Ok(match format {
        Format::Json => {
            (logged_out, Json(serde_json::json!({ "signed_in": false }))).into_response()
        }
        // The login page, which says so.
        Format::Html => {
            let signed_out = format!("{}?reason=signed_out", auth.settings().paths.login());
            (logged_out, Redirect::to(&signed_out)).into_response()
        }
    })
}
