//! `GET /profile`: who is signed in.

use askama::Template;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::errors::page;
use crate::negotiate::Format;
use crate::session::AuthUser;
use crate::users::rfc3339;

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage<'a> {
    username: &'a str,
    roles: &'a [String],
    signed_in_at: String,
    csrf_token: &'a str,
    is_admin: bool,
}

pub(crate) async fn index() -> Redirect {
    Redirect::to("/profile")
}

pub(crate) async fn profile(user: AuthUser, format: Format) -> Response {
    match format {
        Format::Json => Json(serde_json::json!({
            "username": user.username,
            "roles": user.roles,
            "csrf_token": user.csrf_token,
            "signed_in_at": rfc3339(user.created_at),
        }))
        .into_response(),
        Format::Html => page(
            StatusCode::OK,
            &ProfilePage {
                username: &user.username,
                roles: &user.roles,
                signed_in_at: rfc3339(user.created_at),
                csrf_token: &user.csrf_token,
                is_admin: user.has_role("admin"),
            },
        ),
    }
}
