//! `GET /logout` (a confirmation page, changes nothing) and `POST /logout`.

use super::peer::Peer;

use askama::Template;
use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
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
    /// Where to go after signing out (forward-auth's `rd`), when allowed.
    rd: Option<&'a str>,
    /// The sign-in page, with `rd` when there is one.
    sign_in: String,
}

pub(crate) async fn page(
    State(state): State<AppState>,
    session: Session,
    format: Format,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let active = session.active();
    if format == Format::Json {
        return Json(serde_json::json!({ "signed_in": active.is_some() })).into_response();
    }
    let paths = &state.auth.settings().paths;
    if let Some(redirect) =
        super::canonical_redirect(&state, &headers, paths.logout(), query.as_deref())
    {
        return redirect;
    }
    let rd = super::query_param(query.as_deref(), "rd");
    page_html(&state, &session, rd.as_deref(), None, StatusCode::OK)
}

fn page_html(
    state: &AppState,
    session: &Session,
    rd: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let settings = state.auth.settings();
    let active = session.active();
    let rd = rd.filter(|rd| settings.returns.allows(rd));
    let sign_in = match rd {
        Some(rd) => format!(
            "{}?rd={}",
            settings.paths.login(),
            percent_encoding::utf8_percent_encode(rd, percent_encoding::NON_ALPHANUMERIC)
        ),
        None => settings.paths.login().to_owned(),
    };
    let mut response = render(
        status,
        &LogoutPage {
            paths: &settings.paths,
            username: active.map_or("", |a| a.username.as_str()),
            csrf_token: active.map(|a| a.csrf_token.as_str()),
            error,
            rd,
            sign_in,
        },
    );
    response.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        settings.form_page_csp.clone(),
    );
    response
}

#[derive(Deserialize)]
pub(crate) struct LogoutForm {
    csrf_token: Option<String>,
    /// Where to go afterwards (forward-auth's `rd`), followed only when allowed.
    rd: Option<String>,
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
            &state,
            &session,
            form.rd.as_deref(),
            Some("This page was out of date, so you are still signed in. Sign out now?"),
            StatusCode::FORBIDDEN,
        ));
    }
    let client = peer.client(auth, &headers);
    let logged_out = auth.logout(&session, client).await?;
    let rd = form
        .rd
        .as_deref()
        .filter(|rd| auth.settings().returns.allows(rd));
    Ok(match (format, rd) {
        (Format::Json, _) => {
            (logged_out, Json(serde_json::json!({ "signed_in": false }))).into_response()
        }
        // Back to the app that sent the browser here (a protected app then
        // sends it on to sign in again, with its own `rd`).
        (Format::Html, Some(rd)) => (logged_out, Redirect::to(rd)).into_response(),
        // The login page, which says so.
        (Format::Html, None) => {
            let signed_out = format!("{}?reason=signed_out", auth.settings().paths.login());
            (logged_out, Redirect::to(&signed_out)).into_response()
        }
    })
}
