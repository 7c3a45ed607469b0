//! Cross-site request forgery defences: per-session tokens, a signed
//! double-submit token for the login form, and an Origin / Sec-Fetch-Site check.

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use subtle::ConstantTimeEq;

use crate::secret::ServerSecret;
use crate::store::SessionKey;

pub(crate) type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Name of the header that carries the token.
pub const HEADER: &str = "x-csrf-token";

/// Derives and checks CSRF tokens.
#[derive(Clone)]
pub struct CsrfKeys {
    session: HmacSha256,
    login: HmacSha256,
    /// Keys of earlier secrets: forms shown before a rotation still pass.
    previous: Vec<(HmacSha256, HmacSha256)>,
}

impl std::fmt::Debug for CsrfKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfKeys")
    }
}

impl CsrfKeys {
    /// Keys derived from the server secret.
    #[must_use]
    pub fn new(secret: &ServerSecret) -> Self {
        Self::with_previous(secret, &[])
    }

    /// Keys that also accept tokens made with `previous` secrets.
    #[must_use]
    pub fn with_previous(secret: &ServerSecret, previous: &[ServerSecret]) -> Self {
        Self {
            session: secret.derive("csrf session"),
            login: secret.derive("csrf login"),
            previous: previous
                .iter()
                .map(|s| (s.derive("csrf session"), s.derive("csrf login")))
                .collect(),
        }
    }

    /// Whether `token` is the session's token under a previous secret (a
    /// page shown before the secret was rotated).
    #[must_use]
    pub fn matches_previous_session_token(&self, key: &SessionKey, token: &str) -> bool {
        self.previous
            .iter()
            .any(|(session, _)| tokens_match(&mac_b64(session, &key.0), token))
    }

    /// The session's CSRF token: an HMAC of the session key, so it needs no
    /// storage, changes whenever the session token does, and cannot be
    /// computed without the server secret.
    #[must_use]
    pub fn session_token(&self, key: &SessionKey) -> String {
        mac_b64(&self.session, &key.0)
    }

    /// A token for a login form shown to someone without a session:
    /// `(cookie value, form value)`. The cookie carries the form value and its
    /// signature; a cross-site page can neither read the cookie nor forge one.
    #[must_use]
    pub fn issue_login_token(&self) -> (String, String) {
        let form = crate::random::random_base64::<32>();
        (format!("{form}.{}", self.sign_login(&form)), form)
    }

    /// Whether a login form's token matches its cookie.
    #[must_use]
    pub fn verify_login_token(&self, cookie: &str, form: &str) -> bool {
        let Some((value, sig)) = cookie.split_once('.') else {
            return false;
        };
        let signed = tokens_match(&self.sign_login(value), sig)
            || self
                .previous
                .iter()
                .any(|(_, login)| tokens_match(&mac_b64(login, value.as_bytes()), sig));
        signed && tokens_match(value, form)
    }

    /// The form value inside a valid login-token cookie (to show it again).
    #[must_use]
    pub fn login_form_value<'a>(&self, cookie: &'a str) -> Option<&'a str> {
        let (value, sig) = cookie.split_once('.')?;
        tokens_match(&self.sign_login(value), sig).then_some(value)
    }

    fn sign_login(&self, value: &str) -> String {
        mac_b64(&self.login, value.as_bytes())
    }
}

/// The HMAC of `data` under `key`, as base64url.
pub(crate) fn mac_b64(key: &HmacSha256, data: &[u8]) -> String {
    let mut mac = key.clone();
    mac.update(data);
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

/// Constant-time equality of two tokens (their lengths are not secret).
#[must_use]
pub fn tokens_match(expected: &str, provided: &str) -> bool {
    expected.len() == provided.len() && bool::from(expected.as_bytes().ct_eq(provided.as_bytes()))
}

/// Why a state-changing request was refused as a possible forgery. The
/// text names the reason for logs and API clients; it never holds a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsrfRefusal {
    /// The browser says the request came from another site.
    #[error("fetch-site {0}")]
    CrossSite(String),
    /// The `Origin` header names another origin.
    #[error("origin {origin} not allowed (expected {expected})")]
    OriginNotAllowed {
        /// The origin the request came from.
        origin: String,
        /// This site's origins.
        expected: String,
    },
    /// The form or header carried no token.
    #[error("token missing")]
    TokenMissing,
    /// The token does not belong to this session or form.
    #[error("token mismatch")]
    TokenMismatch,
}

impl CsrfRefusal {
    /// Whether the request came from another site (rather than from one of
    /// this site's own pages whose token went stale).
    #[must_use]
    pub fn is_cross_site(&self) -> bool {
        matches!(self, Self::CrossSite(_) | Self::OriginNotAllowed { .. })
    }
}

/// Refuses requests that a browser marks as coming from another site:
/// `Sec-Fetch-Site` other than `same-origin` or `none`, or an `Origin` other
/// than this site's. Requests without either header (non-browser clients,
/// old browsers) pass here and rely on the token alone.
///
/// `Origin: null` passes only together with `Sec-Fetch-Site: same-origin`.
/// Browsers send `null` for a same-origin form post from a page whose
/// referrer policy is `no-referrer` (a page of this site served by an older
/// version, or a proxy that rewrites the policy); a sandboxed frame, a
/// `data:` URL or a file, the other sources of `null`, are cross-site to
/// `Sec-Fetch-Site`, which no page can set. The token is still required.
///
/// # Errors
/// The reason, when the request is cross-site.
pub fn check_origin(headers: &HeaderMap, origins: &Origins) -> Result<(), CsrfRefusal> {
    let site = headers.get("sec-fetch-site").map(HeaderValue::as_bytes);
    if let Some(site) = site
        && !matches!(site, b"same-origin" | b"none")
    {
        return Err(CsrfRefusal::CrossSite(shown(site)));
    }
    match headers.get(header::ORIGIN).map(HeaderValue::as_bytes) {
        None => Ok(()),
        Some(origin) if origins.contains(origin) => Ok(()),
        Some(b"null") if site == Some(b"same-origin") => Ok(()),
        Some(origin) => Err(CsrfRefusal::OriginNotAllowed {
            origin: shown(origin),
            expected: origins.to_string(),
        }),
    }
}

/// The origins this site is reached at, as browsers send them in `Origin`
/// (`https://login.example.com`): its public URL's, and any others it also
/// answers under (another host name, a second port). A page served under
/// any of them posts its forms as this site's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origins(Vec<String>);

impl Origins {
    /// The public URL's origin alone.
    pub fn new(public: impl Into<String>) -> Self {
        Self(vec![public.into()])
    }

    /// One more origin this site is reached at.
    #[must_use]
    pub fn also(mut self, origin: impl Into<String>) -> Self {
        let origin = origin.into();
        if !self.0.contains(&origin) {
            self.0.push(origin);
        }
        self
    }

    /// The public URL's origin: where links and redirects point.
    #[must_use]
    pub fn public(&self) -> &str {
        &self.0[0]
    }

    /// The origin of `url` as browsers send it: an http(s) URL with no
    /// path, query or fragment (`https://www.example.com`, with a port if it
    /// is not the scheme's).
    ///
    /// # Errors
    /// What is wrong with `url`.
    pub fn parse(url: &str) -> Result<String, &'static str> {
        let parsed = url::Url::parse(url.trim())
            .map_err(|_| "not an origin like https://www.example.com")?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("the scheme must be http or https");
        }
        if parsed.path() != "/" || parsed.query().is_some() || parsed.fragment().is_some() {
            return Err("an origin has no path, query or fragment");
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("an origin has no user name or password");
        }
        Ok(parsed.origin().ascii_serialization())
    }

    fn contains(&self, origin: &[u8]) -> bool {
        self.0.iter().any(|o| o.as_bytes() == origin)
    }
}

/// "`a` or `b`", for a refusal that says what was expected.
impl std::fmt::Display for Origins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" or "))
    }
}

/// A request header's value as a refusal may show it in a log line or a
/// page: printable ASCII without spaces, quotes, backslashes or `=`, at most
/// 100 bytes, else `(unreadable)`. Genuine `Origin` and `Sec-Fetch-Site`
/// values always pass; a crafted one cannot imitate another log field.
fn shown(value: &[u8]) -> String {
    let plain = value.len() <= 100
        && value
            .iter()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\\' | b'='));
    if plain {
        String::from_utf8_lossy(value).into_owned()
    } else {
        "(unreadable)".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn keys() -> CsrfKeys {
        CsrfKeys::new(&ServerSecret::new(&"k".repeat(32)).expect("secret"))
    }

    #[test]
    fn session_tokens_differ_per_session_and_are_stable() {
        let k = keys();
        let a = k.session_token(&SessionKey([1; 32]));
        assert_eq!(a, k.session_token(&SessionKey([1; 32])));
        assert_ne!(a, k.session_token(&SessionKey([2; 32])));
    }

    #[test]
    fn login_tokens_need_the_matching_signed_cookie() {
        let k = keys();
        let (cookie, form) = k.issue_login_token();
        assert!(k.verify_login_token(&cookie, &form));
        assert!(!k.verify_login_token(&cookie, "other"));
        let (_, other_form) = k.issue_login_token();
        assert!(!k.verify_login_token(&format!("{other_form}.forged"), &other_form));
        assert_eq!(k.login_form_value(&cookie), Some(form.as_str()));
    }

    #[test]
    fn every_origin_the_site_is_reached_at_is_its_own() {
        let origins = Origins::new("https://login.example.com").also("https://www.example.com");
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        for allowed in ["https://login.example.com", "https://www.example.com"] {
            h.insert(header::ORIGIN, HeaderValue::from_static(allowed));
            assert!(check_origin(&h, &origins).is_ok(), "{allowed}");
        }
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        let refusal = check_origin(&h, &origins).expect_err("another origin");
        assert_eq!(
            refusal.to_string(),
            "origin https://evil.example not allowed (expected https://login.example.com or \
             https://www.example.com)"
        );
        assert_eq!(origins.public(), "https://login.example.com");
    }

    #[test]
    fn origins_are_read_as_browsers_send_them() {
        assert_eq!(
            Origins::parse("https://WWW.Example.com:443/").as_deref(),
            Ok("https://www.example.com")
        );
        assert_eq!(
            Origins::parse("http://127.0.0.1:3000").as_deref(),
            Ok("http://127.0.0.1:3000")
        );
        for bad in [
            "www.example.com",
            "ftp://example.com",
            "https://example.com/app",
            "https://example.com/?a",
            "https://u:p@example.com",
        ] {
            assert!(Origins::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cross_site_requests_are_recognised() {
        let origin = "http://127.0.0.1:8080";
        let mut h = HeaderMap::new();
        assert!(check_origin(&h, &Origins::new(origin)).is_ok());
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(check_origin(&h, &Origins::new(origin)).is_err());
        h.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(check_origin(&h, &Origins::new(origin)).is_err());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(check_origin(&h, &Origins::new(origin)).is_ok());
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(
            check_origin(&h, &Origins::new(origin)).is_ok(),
            "a same-origin post from a no-referrer page"
        );
        h.remove("sec-fetch-site");
        assert_eq!(
            check_origin(&h, &Origins::new(origin)),
            Err(CsrfRefusal::OriginNotAllowed {
                origin: "null".into(),
                expected: origin.into()
            }),
            "null without the browser's word that it is same-origin"
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert_eq!(
            check_origin(&h, &Origins::new(origin)),
            Err(CsrfRefusal::CrossSite("cross-site".into()))
        );
        h.insert("sec-fetch-site", HeaderValue::from_static("same-site"));
        assert!(
            check_origin(&h, &Origins::new(origin)).is_err(),
            "a sibling subdomain is another origin"
        );
    }

    #[test]
    fn crafted_header_values_cannot_imitate_log_fields() {
        let mut h = HeaderMap::new();
        h.insert(
            "sec-fetch-site",
            HeaderValue::from_static("x route=\"GET /admin\" reason=ok"),
        );
        assert_eq!(
            check_origin(&h, &Origins::new("http://a")),
            Err(CsrfRefusal::CrossSite("(unreadable)".into()))
        );
        h.remove("sec-fetch-site");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_bytes("http://e\u{202e}vil".as_bytes()).expect("header"),
        );
        assert!(matches!(
            check_origin(&h, &Origins::new("http://a")),
            Err(CsrfRefusal::OriginNotAllowed { origin, .. }) if origin == "(unreadable)"
        ));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_str(&"a".repeat(101)).expect("header"),
        );
        assert!(matches!(
            check_origin(&h, &Origins::new("http://a")),
            Err(CsrfRefusal::OriginNotAllowed { origin, .. }) if origin == "(unreadable)"
        ));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://[::1]:8080"),
        );
        assert!(matches!(
            check_origin(&h, &Origins::new("http://a")),
            Err(CsrfRefusal::OriginNotAllowed { origin, .. }) if origin == "http://[::1]:8080"
        ));
    }

    #[test]
    fn refusals_name_their_reason_and_never_a_token() {
        assert_eq!(CsrfRefusal::TokenMissing.to_string(), "token missing");
        assert_eq!(CsrfRefusal::TokenMismatch.to_string(), "token mismatch");
        assert_eq!(
            CsrfRefusal::CrossSite("cross-site".into()).to_string(),
            "fetch-site cross-site"
        );
        assert!(CsrfRefusal::CrossSite("cross-site".into()).is_cross_site());
        assert!(!CsrfRefusal::TokenMismatch.is_cross_site());
    }
}
