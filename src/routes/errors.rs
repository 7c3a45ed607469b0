//! Error pages: the library answers errors in JSON; browsers get HTML here,
//! and anonymous visitors of protected pages are sent to the login page.

use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::error::{AppError, ErrorInfo};
use crate::negotiate::Format;

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: String,
    message: &'a str,
}

/// Renders a page with a status; a template failure becomes a plain 500.
pub(crate) fn page(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => AppError::Internal(e.into()).into_response(),
    }
}

/// Turns [`AppError`] responses into HTML for browsers.
pub async fn render_errors(req: Request, next: Next) -> Response {
    // Only the two headers that decide the format are kept (cheap clones);
    // they are parsed only when the answer is an error.
    let accept = req.headers().get(header::ACCEPT).cloned();
    let content_type = req.headers().get(header::CONTENT_TYPE).cloned();
    let response = next.run(req).await;
    if response.extensions().get::<ErrorInfo>().is_none() {
        return response;
    }
    let mut negotiation = HeaderMap::new();
    negotiation.extend(accept.map(|v| (header::ACCEPT, v)));
    negotiation.extend(content_type.map(|v| (header::CONTENT_TYPE, v)));
    if Format::of(&negotiation) == Format::Json {
        return response;
    }
    let Some(info) = response.extensions().get::<ErrorInfo>().cloned() else {
        return response;
    };
    let status = response.status();
    if info.code == "not_authenticated" {
        let next = info.login_next.as_deref().unwrap_or("/profile");
        let target = format!(
            "/login?next={}",
            percent_encoding::utf8_percent_encode(next, percent_encoding::NON_ALPHANUMERIC)
        );
        return Redirect::to(&target).into_response();
    }
    let mut html = page(
        status,
        &ErrorPage {
            status: status.to_string(),
            message: &info.message,
        },
    );
    for name in [header::RETRY_AFTER, header::SET_COOKIE] {
        for value in response.headers().get_all(&name) {
            html.headers_mut().append(name.clone(), value.clone());
        }
    }
    html.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    html
}

pub(crate) async fn not_found() -> AppError {
    AppError::NotFound
}

pub(crate) async fn method_not_allowed() -> AppError {
    AppError::MethodNotAllowed
}
