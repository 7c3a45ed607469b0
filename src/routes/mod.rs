//! The ready-made service: pages, JSON API and error rendering, built only
//! on the library's public API.

mod admin;
mod assets;
mod errors;
mod health;
pub mod input;
mod login;
mod logout;
mod peer;
mod profile;
mod setup;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::get;
use tower::Layer as _;

use crate::auth::Auth;

pub(crate) use peer::MakeService;
pub use setup::SetupToken;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The login.
    pub auth: Auth,
    /// The one-time first-admin link, while no user exists.
    pub setup: Arc<SetupToken>,
}

/// Content-Security-Policy for every page: no script at all, styles only
/// from this origin, forms only to this origin, no framing.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The whole service: every route, inside the two layers every request
/// passes (error pages and security headers outside, the session inside).
pub type Service = errors::PageService<crate::session::SessionService<Router>>;

/// The service's router with every route and layer. The layers wrap the
/// router once, not each route as `Router::layer` would: a request then clones
/// one boxed route rather than one per layer.
pub fn router(state: AppState) -> Service {
    let auth = state.auth.clone();
    let routes = Router::new()
        .route("/", get(profile::index))
        .route("/login", get(login::show).post(login::submit))
        .route("/logout", get(logout::page).post(logout::submit))
        .route("/profile", get(profile::profile))
        .route("/admin", get(admin::admin))
        .route("/setup", get(setup::page_get).post(setup::submit))
        .route("/healthz", get(health::healthz))
        .route("/static/latchkey.css", get(assets::stylesheet))
        .fallback(errors::not_found)
        .method_not_allowed_fallback(errors::method_not_allowed)
        .with_state(state);
    let pages = errors::PageLayer {
        hsts: auth.settings().cookies.is_secure(),
    };
    pages.layer(auth.layer().layer(routes))
}

/// Security headers. HTML pages get the full set; other answers (JSON,
/// redirects, the stylesheet) get what applies to them, which keeps the
/// hot JSON path's response small.
pub(crate) fn security_headers(
    mut response: axum::response::Response,
    hsts: bool,
) -> axum::response::Response {
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let headers = response.headers_mut();
    if html {
        // Room for the page's six headers at once; a JSON answer's four
        // fit in the map it already has.
        headers.reserve(6);
    }
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if html {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        headers.insert(
            HeaderName::from_static("cross-origin-opener-policy"),
            HeaderValue::from_static("same-origin"),
        );
    } else if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    if hsts {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    response
}
