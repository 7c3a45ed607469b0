//! `GET /profile`: who is signed in.

use askama::Template;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::errors::page;
use crate::layer::AuthUser;
use crate::negotiate::Format;

#[derive(Template)]
#[template(path = "profile.html")]
struct ProfilePage<'a> {
    paths: &'a crate::paths::Paths,
    username: &'a str,
    display_name: Option<&'a str>,
    email: Option<&'a str>,
    roles: String,
    signed_in_at: &'a str,
    signed_in_at_text: String,
    csrf_token: &'a str,
    is_admin: bool,
}

pub(crate) async fn index() -> Redirect {
    Redirect::to("/profile")
}

/// `GET /profile` as JSON; borrowed, so answering costs one buffer.
#[derive(serde::Serialize)]
struct ProfileJson<'a> {
    username: &'a str,
    roles: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    display_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    csrf_token: &'a str,
    signed_in_at: &'a str,
}

pub(crate) async fn profile(user: AuthUser, format: Format) -> Response {
    match format {
        Format::Json => Json(ProfileJson {
            username: &user.username,
            roles: &user.roles,
            display_name: user.display_name.as_deref(),
            email: user.email.as_deref(),
            csrf_token: &user.csrf_token,
            signed_in_at: &user.signed_in_at,
        })
        .into_response(),
        Format::Html => page(
            StatusCode::OK,
            &ProfilePage {
                paths: &crate::paths::Paths::service(),
                username: &user.username,
                display_name: user.display_name.as_deref(),
                email: user.email.as_deref(),
                roles: super::text::roles_text(&user.roles),
                signed_in_at: &user.signed_in_at,
                signed_in_at_text: super::text::readable_time(&user.signed_in_at),
                csrf_token: &user.csrf_token,
                is_admin: user.has_role("admin"),
            },
        ),
    }
}
