//! Forward-auth: a reverse proxy asks, before every request it would pass
//! to an app, whether this visitor may pass. `GET`/`HEAD /auth/forward`
//! reads the original request from `X-Forwarded-*` (Traefik, Caddy,
//! HAProxy); `/auth/nginx` from `X-Original-URL` and `X-Original-Method`
//! (nginx `auth_request`, whose subrequests are always `GET`). One decision
//! behind both: the first matching access rule's policy, applied to the
//! session the cookie names.
//!
//! The session comes from [`crate::Auth::layer`] like any other request's:
//! a check is activity without a store write per request, and a sign-out or
//! revocation holds at the next check.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::access::{self, Target, Verdict};
use crate::session::Session;

/// Which proxy contract a check came in by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contract {
    /// `X-Forwarded-*`; browsers are redirected, other clients get 401.
    Forward,
    /// `X-Original-*`; always 401 (nginx accepts only 2xx, 401 and 403, and
    /// its configuration turns the 401 into the redirect).
    Nginx,
}

/// The identity headers every allowed answer carries, empty for an
/// anonymous visitor: a proxy that deletes then copies them always
/// overwrites what a client sent.
const IDENTITY: [&str; 4] = [
    "remote-user",
    "remote-groups",
    "remote-name",
    "remote-email",
];

/// `GET /auth/forward`.
pub(crate) async fn forward(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Response {
    answer(&state, &session, &headers, Contract::Forward)
}

/// `GET /auth/nginx`.
pub(crate) async fn nginx(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
) -> Response {
    answer(&state, &session, &headers, Contract::Nginx)
}

/// Why a check could not be judged: the header, and what is wrong with it.
struct BadHeader(&'static str, String);

/// The one value of a header that must be there exactly once.
fn one<'a>(headers: &'a HeaderMap, name: &'static str) -> Result<&'a str, BadHeader> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Err(BadHeader(name, "missing".into())),
        (Some(_), Some(_)) => Err(BadHeader(name, "sent more than once".into())),
        (Some(value), None) => value
            .to_str()
            .map_err(|_| BadHeader(name, "not visible ASCII".into())),
    }
}

fn target(headers: &HeaderMap, contract: Contract) -> Result<Target, BadHeader> {
    let bad = |name: &'static str| move |e: access::TargetError| BadHeader(name, e.to_string());
    match contract {
        Contract::Forward => {
            let method = one(headers, "x-forwarded-method")?;
            let proto = one(headers, "x-forwarded-proto")?;
            let host = one(headers, "x-forwarded-host")?;
            let uri = one(headers, "x-forwarded-uri")?;
            access::target(method, proto, host, uri).map_err(|e| {
                let name = match e {
                    access::TargetError::Method => "x-forwarded-method",
                    access::TargetError::Scheme(_) => "x-forwarded-proto",
                    access::TargetError::Host | access::TargetError::NotAUrl => "x-forwarded-host",
                    access::TargetError::Path(_) => "x-forwarded-uri",
                };
                bad(name)(e)
            })
        }
        Contract::Nginx => {
            let url = one(headers, "x-original-url")?;
            let method = one(headers, "x-original-method")?;
            access::target_of_url(method, url).map_err(|e| match e {
                access::TargetError::Method => bad("x-original-method")(e),
                e => bad("x-original-url")(e),
            })
        }
    }
}

fn answer(
    state: &AppState,
    session: &Session,
    headers: &HeaderMap,
    contract: Contract,
) -> Response {
    let target = match target(headers, contract) {
        Ok(target) => target,
        Err(BadHeader(name, reason)) => {
            // Never 200: a check that cannot be read is a misconfigured
            // proxy or a forged request, and either must fail closed.
            tracing::warn!(header = name, reason = %reason, "forward-auth check refused: bad forwarded header");
            // With a body even for nginx (which answers its client 500
            // anyway): whoever tries the check by hand learns what is wrong.
            return plain(
                Contract::Forward,
                StatusCode::BAD_REQUEST,
                &format!("bad forwarded request: {name}: {reason}"),
            );
        }
    };
    let matched = state.access.matching(&target);
    let roles = session.active.as_ref().map(|a| a.roles.as_slice());
    let verdict = matched.policy.verdict(roles);
    tracing::debug!(
        url = %target.url(),
        method = %target.method,
        rule = matched.rule.map(|r| r.number),
        verdict = ?verdict,
        "forward-auth check"
    );
    match verdict {
        Verdict::Allow => allowed(session),
        Verdict::Forbidden => {
            // Audited when someone signed in was refused: what they tried
            // is worth an administrator's eye. (Anonymous refusals are not:
            // anyone can make them, as many as they like.)
            if let Some(active) = session.active() {
                tracing::info!(
                    target: crate::auth::AUDIT_TARGET,
                    event = "forward_auth_denied",
                    username = %crate::username::InLog(&active.username),
                    session = %active.label(),
                    method = %target.method,
                    url = %UrlInLog(&target.url()),
                    rule = matched.rule.map(|r| r.number),
                );
            }
            plain(contract, StatusCode::FORBIDDEN, "forbidden")
        }
        Verdict::SignIn => sign_in(state, headers, &target, contract),
    }
}

fn allowed(session: &Session) -> Response {
    // Names may be Unicode: sent as UTF-8 bytes, which HTTP allows. What
    // could end a header line was refused when the value was stored.
    let value = |text: Option<&str>| {
        HeaderValue::from_bytes(text.unwrap_or_default().as_bytes())
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    };
    let values = match session.active.as_deref() {
        Some(a) => a
            .forward_headers
            .get_or_init(|| {
                [
                    value(Some(&a.username)),
                    value(Some(&a.roles.join(","))),
                    value(a.display_name.as_deref()),
                    value(a.email.as_deref()),
                ]
            })
            .clone(),
        None => std::array::from_fn(|_| HeaderValue::from_static("")),
    };
    let mut response = StatusCode::OK.into_response();
    let out = response.headers_mut();
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for (name, value) in IDENTITY.iter().zip(values) {
        out.insert(HeaderName::from_static(name), value);
    }
    response
}

/// Not signed in: where to sign in, and back to the original URL after.
fn sign_in(state: &AppState, headers: &HeaderMap, target: &Target, contract: Contract) -> Response {
    let login = format!(
        "{}{}?rd={}",
        state.auth.settings().origins.public(),
        state.auth.settings().paths.login(),
        percent_encoding::utf8_percent_encode(&target.url(), percent_encoding::NON_ALPHANUMERIC)
    );
    let navigating = headers
        .get("sec-fetch-mode")
        .is_some_and(|v| v.as_bytes() == b"navigate")
        || crate::negotiate::prefers_html(headers);
    let status = match contract {
        Contract::Forward if navigating => {
            if matches!(target.method.as_str(), "GET" | "HEAD" | "OPTIONS") {
                StatusCode::FOUND
            } else {
                StatusCode::SEE_OTHER
            }
        }
        _ => StatusCode::UNAUTHORIZED,
    };
    let mut response = plain(contract, status, "sign-in required");
    let out = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&login) {
        out.insert(header::LOCATION, location);
    }
    if status == StatusCode::UNAUTHORIZED {
        out.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Cookie realm=\"latchkey\""),
        );
    }
    response
}

/// A refusal: with a short text for Traefik and Caddy, which show the check's
/// answer to the visitor; empty for nginx, which never reads a check's body
/// and so closes the connection to latchkey after one that has one (every
/// refused request would then cost a new connection).
fn plain(contract: Contract, status: StatusCode, text: &str) -> Response {
    let mut response = match contract {
        Contract::Forward => (status, text.to_owned()).into_response(),
        Contract::Nginx => status.into_response(),
    };
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A checked URL as a log field: as it is, or quoted and escaped when it
/// holds a `"`, `\` or `=` (it holds no space or control character: those
/// are refused), so that no URL can read as further fields (`x?a="b"rule=1`).
struct UrlInLog<'a>(&'a str);

impl std::fmt::Display for UrlInLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.contains(['"', '\\', '=']) {
            write!(f, "{:?}", self.0)
        } else {
            f.write_str(self.0)
        }
    }
}
