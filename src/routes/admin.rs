//! `GET /admin`: for users with the `admin` role.

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::errors::page;
use crate::error::AppError;
use crate::layer::AuthUser;
use crate::negotiate::Format;
use crate::users::{AccountError, UserSummary};

/// The role that opens `/admin`.
pub const ADMIN_ROLE: &str = "admin";

#[derive(Template)]
#[template(path = "admin.html")]
struct AdminPage<'a> {
    paths: &'a crate::paths::Paths,
    users: Vec<AdminRow>,
    username: &'a str,
    csrf_token: &'a str,
}

/// A user as the admin page shows them.
struct AdminRow {
    username: String,
    roles: String,
    disabled: bool,
    created_at: String,
    created_at_text: String,
}

impl From<&UserSummary> for AdminRow {
    fn from(u: &UserSummary) -> Self {
        Self {
            username: u.username.clone(),
            roles: super::text::roles_text(&u.roles),
            disabled: u.disabled,
            created_at: u.created_at.clone(),
            created_at_text: super::text::readable_time(&u.created_at),
        }
    }
}

pub(crate) async fn admin(
    State(state): State<AppState>,
    user: AuthUser,
    format: Format,
) -> Result<Response, AppError> {
    if !user.has_role(ADMIN_ROLE) {
        return Err(AppError::Forbidden);
    }
    let users = state
        .auth
        .accounts()
        .list_users()
        .await
        .map_err(|e| match e {
            AccountError::Store(e) => AppError::from(e),
            other => AppError::Internal(other.into()),
        })?;
    Ok(match format {
        Format::Json => Json(serde_json::json!({ "users": users })).into_response(),
        Format::Html => page(
            StatusCode::OK,
            &AdminPage {
                paths: &state.auth.settings().paths,
                users: users.iter().map(AdminRow::from).collect(),
                username: &user.username,
                csrf_token: &user.csrf_token,
            },
        ),
    })
}
