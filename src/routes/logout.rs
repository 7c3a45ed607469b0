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

#[derive(Template)]
#[template(path = "logout.html")]
struct LogoutPage<'a> {
    username: &'a str,
    csrf_token: Option<&'a str>,
}

pub(crate) async fn page(session: Session, format: Format) -> Response {
    let active = session.active();
    if format == Format::Json {
        return Json(serde_json::json!({ "signed_in": active.is_some() })).into_response();
    }
    page_html(active.map(|a| (a.username.as_str(), a.csrf_token.as_str())))
}

fn page_html(active: Option<(&str, &str)>) -> Response {
    render(
        StatusCode::OK,
        &LogoutPage {
            username: active.map_or("", |a| a.0),
            csrf_token: active.map(|a| a.1),
        },
    )
}

#[derive(Deserialize)]
pub(crate) struct LogoutForm {
    csrf_token: Option<String>,
}

pub(crate) async fn submit(
    State(state): State<AppState>,
    Peer(peer): Peer,
    session: Session,
    format: Format,
    headers: HeaderMap,
    Input { value: form, .. }: Input<LogoutForm>,
) -> Result<Response, AppError> {
    let auth = &state.auth;
    if session.active().is_some() {
        auth.check_csrf(&session, &headers, form.csrf_token.as_deref())?;
    } else if !crate::csrf::same_origin(&headers, &auth.settings().public_origin) {
        return Err(AppError::Csrf);
    }
    let client = auth.client_ip(peer.ip(), &headers);
    let logged_out = auth.logout(&session, client).await?;
    Ok(match format {
        Format::Json => {
            (logged_out, Json(serde_json::json!({ "signed_in": false }))).into_response()
        }
        Format::Html => (logged_out, Redirect::to("/login")).into_response(),
    })
}
