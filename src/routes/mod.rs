//! The pages: sign-in and sign-out ([`Auth::routes`], feature `pages`),
//! error rendering ([`PageLayer`]), and the rest of the ready-made service
//! (setup, profile, admin, health: feature `server`).

#[cfg(feature = "server")]
mod admin;
mod assets;
mod errors;
#[cfg(feature = "server")]
mod forward;
#[cfg(feature = "server")]
mod health;
pub mod input;
mod login;
mod logout;
mod peer;
#[cfg(feature = "server")]
mod profile;
mod setup;
pub(crate) mod text;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, header};
use axum::routing::get;
#[cfg(feature = "server")]
use tower::Layer as _;

use crate::auth::Auth;
use crate::csrf::CsrfRefusal;
use crate::error::AppError;

pub use errors::{PageLayer, PageService};
#[cfg(feature = "server")]
pub(crate) use peer::WithPeer;
pub use setup::SetupToken;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The login.
    pub auth: Auth,
    /// The one-time first-admin link, while no user exists.
    pub setup: Arc<SetupToken>,
    /// The public URL is this very listener on loopback, so that visitors
    /// under another loopback name of the same port may be sent there.
    /// Never set when the public URL names another address: a redirect
    /// there could hand visitors (and a setup link) to whoever listens on it.
    pub public_url_is_this_listener: bool,
    /// Who forward-auth lets through to which URL.
    #[cfg(feature = "server")]
    pub access: Arc<crate::access::AccessRules>,
}

#[cfg(feature = "server")]
/// The whole service: every route, inside the two layers every request
/// passes (error pages, security headers and the request timeout outside,
/// the session inside).
pub type Service = errors::PageService<crate::layer::SessionService<Router>>;

/// The service's router with every route and layer; a request that takes
/// longer than `request_timeout` is answered 408. The layers wrap the
/// router once, not each route as `Router::layer` would: a request then clones
/// one boxed route rather than one per layer.
#[cfg(feature = "server")]
pub fn router(state: AppState, request_timeout: std::time::Duration) -> Service {
    let auth = state.auth.clone();
    let routes = Router::new()
        .route("/", get(profile::index))
        .route("/login", get(login::show).post(login::submit))
        .route("/logout", get(logout::page).post(logout::submit))
        .route("/profile", get(profile::profile))
        .route("/admin", get(admin::admin))
        .route("/setup", get(setup::page_get).post(setup::submit))
        .route("/healthz", get(health::healthz))
        .route("/auth/forward", get(forward::forward))
        .route("/auth/nginx", get(forward::nginx))
        .route("/static/latchkey.css", get(assets::stylesheet))
        .route("/static/latchkey.js", get(assets::script))
        .fallback(errors::not_found)
        .method_not_allowed_fallback(errors::method_not_allowed)
        .with_state(state);
    let pages = errors::PageLayer {
        hsts: auth.settings().cookies.is_secure(),
        request_timeout: Some(request_timeout),
        paths: auth.settings().paths,
        every_answer: true,
    };
    pages.layer(auth.layer().layer(routes))
}

impl Auth {
    /// The login pages for an app's own router: `GET`/`POST` `/login` and
    /// `/logout` under the prefix set by
    /// [`crate::AuthBuilder::pages_prefix`], and their stylesheet and
    /// script. Merge them into the app's router, inside [`Auth::layer`]
    /// and [`Auth::pages`]:
    ///
    /// ```no_run
    /// # use axum::Router;
    /// # async fn app() -> Result<(), latchkey::BuildError> {
    /// # let auth = latchkey::Auth::builder().database_url("memory:").build().await?;
    /// let app: Router = Router::new()
    ///     .merge(auth.routes())
    ///     .layer(auth.layer())
    ///     .layer(auth.pages());
    /// # Ok(()) }
    /// ```
    ///
    /// Serve the app with `into_make_service_with_connect_info::<SocketAddr>()`
    /// so that failed sign-ins are counted per client address (behind a
    /// proxy, name it with [`crate::AuthBuilder::trusted_proxies`]).
    pub fn routes<S: Clone + Send + Sync + 'static>(&self) -> Router<S> {
        let paths = self.settings().paths;
        let hsts = self.settings().cookies.is_secure();
        Router::new()
            .route(paths.login(), get(login::show).post(login::submit))
            .route(paths.logout(), get(logout::page).post(logout::submit))
            .route(paths.stylesheet(), get(assets::stylesheet))
            .route(paths.script(), get(assets::script))
            .layer(axum::middleware::map_response(
                move |response: axum::response::Response| async move {
                    security_headers(response, hsts)
                },
            ))
            .with_state(AppState {
                auth: self.clone(),
                setup: Arc::new(SetupToken::closed()),
                public_url_is_this_listener: false,
                #[cfg(feature = "server")]
                access: Arc::default(),
            })
    }

    /// The layer around an app that answers latchkey's refusals the way
    /// each client expects: a browser that must sign in is sent to the
    /// login page (and brought back afterwards), other refusals get a page;
    /// API clients keep the JSON answer (401 `not_authenticated`, …).
    /// Answers that say nothing about caching get `Cache-Control: no-store`,
    /// so that Back after signing out does not show a private page again
    /// (set `Cache-Control` on what may be kept, such as static files).
    /// Put it outside [`Auth::layer`], so that the session layer's own
    /// refusals (a store that does not answer) are answered so too.
    #[must_use]
    pub fn pages(&self) -> PageLayer {
        PageLayer {
            hsts: self.settings().cookies.is_secure(),
            request_timeout: None,
            paths: self.settings().paths,
            every_answer: false,
        }
    }
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
    errors::no_store_unless_said(headers);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if html {
        // The sign-in and sign-out pages bring their own (see
        // `AuthSettings::form_page_csp`).
        if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
            headers.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(crate::defaults::PAGE_CSP),
            );
        }
        headers.insert(
            header::REFERRER_POLICY,
            // Referrers stay on this site (a `next` path in a page's URL
            // never reaches another one), while same-origin form posts keep
            // a real `Origin`: under `no-referrer` browsers send `Origin: null`.
            HeaderValue::from_static("same-origin"),
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

/// Logs a refused cross-site request check: one line at `warn` with the
/// route and the reason (never the token). Refusals come before any
/// per-address share is counted (a cross-site page must not use up a
/// visitor's), so the lines are what is bounded: at most
/// [`REFUSALS_LOGGED_PER_SECOND`] a second, and then one line saying how
/// many were left out.
fn log_refusal(route: &'static str, refusal: &CsrfRefusal) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static WINDOW: AtomicU64 = AtomicU64::new(0);
    static IN_WINDOW: AtomicU64 = AtomicU64::new(0);
    let second = u64::try_from(crate::clock::now_millis() / 1000).unwrap_or(0);
    let previous = WINDOW.swap(second, Ordering::Relaxed);
    if previous != second {
        let left_out = IN_WINDOW
            .swap(0, Ordering::Relaxed)
            .saturating_sub(REFUSALS_LOGGED_PER_SECOND);
        if left_out > 0 {
            tracing::warn!(
                left_out,
                "more cross-site request refusals, not logged one by one"
            );
        }
    }
    if IN_WINDOW.fetch_add(1, Ordering::Relaxed) < REFUSALS_LOGGED_PER_SECOND {
        tracing::warn!(route, reason = %refusal, "request refused by the cross-site request check");
    }
}

/// See [`log_refusal`].
const REFUSALS_LOGGED_PER_SECOND: u64 = 20;

/// What a form handler does after its cross-site request check, every
/// refusal logged: `Ok(false)` when the check passed; `Ok(true)` when one of
/// this site's own forms came back with a stale token (the handler shows it
/// again, fresh); the refusal itself for a cross-site request or an API client.
pub(crate) fn stale_form(
    route: &'static str,
    checked: Result<(), AppError>,
    format: crate::negotiate::Format,
) -> Result<bool, AppError> {
    match checked {
        Ok(()) => Ok(false),
        Err(AppError::Csrf(refusal)) => {
            log_refusal(route, &refusal);
            if refusal.is_cross_site() || format == crate::negotiate::Format::Json {
                Err(AppError::Csrf(refusal))
            } else {
                Ok(true)
            }
        }
        Err(other) => Err(other),
    }
}

/// Where a sign-in goes: `wanted` when it is a safe path on this site, or
/// an absolute URL on this host or under the cookie domain (forward-auth's
/// `rd`, see [`crate::redirect::Returns`]); the home page otherwise.
pub(crate) fn destination<'a>(auth: &'a Auth, wanted: Option<&'a str>) -> &'a str {
    match wanted {
        Some(w) if auth.settings().returns.allows(w) => w,
        w => auth.settings().paths.next_or_home(w),
    }
}

/// A query parameter, percent-decoded (`+` as a space).
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            let v = v.replace('+', " ");
            percent_encoding::percent_decode_str(&v)
                .decode_utf8()
                .map(|s| s.into_owned())
                .ok()
        })?
    })
}

/// Where a browser that opened this site under another loopback name of
/// the same port (`localhost` for `127.0.0.1`, or the reverse) should go:
/// the public URL's host. Cookies and the origin check belong to one host
/// name, so a form shown under the other would always be refused.
pub(crate) fn canonical_redirect(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    path: &str,
    query: Option<&str>,
) -> Option<axum::response::Response> {
    use axum::response::IntoResponse as _;
    if !state.public_url_is_this_listener {
        return None;
    }
    let origin = state.auth.settings().origins.public();
    let authority = origin.split_once("://")?.1;
    let host = headers.get(header::HOST)?.to_str().ok()?;
    if host.eq_ignore_ascii_case(authority) {
        return None;
    }
    let (public_host, public_port) = split_authority(authority, origin.starts_with("https"))?;
    let (host_name, port) = split_authority(host, origin.starts_with("https"))?;
    (port == public_port && is_loopback(public_host) && is_loopback(host_name)).then(|| {
        let query = query.map_or(String::new(), |q| format!("?{q}"));
        axum::response::Redirect::to(&format!("{origin}{path}{query}")).into_response()
    })
}

fn split_authority(authority: &str, https: bool) -> Option<(&str, u16)> {
    let default = if https { 443 } else { 80 };
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default,
            None => return None,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, port.parse().ok()?)),
        None => Some((authority, default)),
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(
            split_authority("localhost:8080", false),
            Some(("localhost", 8080))
        );
        assert_eq!(split_authority("[::1]:8080", false), Some(("::1", 8080)));
        assert_eq!(split_authority("[::1]", true), Some(("::1", 443)));
        assert_eq!(
            split_authority("example.com", false),
            Some(("example.com", 80))
        );
        assert_eq!(split_authority("example.com:x", false), None);
        assert!(is_loopback("LOCALHOST") && is_loopback("127.0.0.2") && is_loopback("::1"));
        assert!(!is_loopback("example.com") && !is_loopback("10.0.0.1"));
    }
}
