//! The session cookie's name and attributes, and finding it in a request.

use axum::http::{HeaderMap, HeaderValue, header};

/// The cookie's `SameSite` attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SameSite {
    /// Sent on top-level navigations from other sites (links), not on their
    /// sub-requests or form posts. The default: following a link to a
    /// protected page keeps you signed in.
    #[default]
    Lax,
    /// Never sent on requests started by another site.
    Strict,
}

/// How the session cookie (and the login-form CSRF cookie) are written.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    session_name: &'static str,
    csrf_name: &'static str,
    device_name: &'static str,
    secure: bool,
    same_site: SameSite,
    domain: Option<String>,
    /// `; Path=/; …` as every session and CSRF cookie line ends, made once.
    attributes: String,
}

impl CookieSettings {
    /// Cookies for a site served over https (`secure`) or plain http on loopback.
    /// Over https the names carry the `__Host-` prefix, which browsers accept only
    /// with `Secure`, `Path=/` and no `Domain`: no sibling subdomain can set or
    /// shadow them.
    #[must_use]
    pub fn new(secure: bool, same_site: SameSite) -> Self {
        let (session_name, csrf_name, device_name) = if secure {
            (
                "__Host-latchkey",
                "__Host-latchkey-csrf",
                "__Host-latchkey-device",
            )
        } else {
            ("latchkey", "latchkey-csrf", "latchkey-device")
        };
        let mut settings = Self {
            session_name,
            csrf_name,
            device_name,
            secure,
            same_site,
            domain: None,
            attributes: String::new(),
        };
        settings.attributes = settings.attributes_line();
        settings
    }

    /// The same, shared with every host under `domain` (one sign-on for
    /// `auth.example.com` and `app.example.com`): the session and CSRF
    /// cookies carry `Domain={domain}` and the `__Secure-` prefix, since
    /// `__Host-` forbids a domain. The device cookie keeps `__Host-`: only
    /// the sign-in form on latchkey's own host needs it. Only for an https
    /// site (the builder checks that `domain` is a name the public URL is under).
    #[must_use]
    pub fn with_domain(mut self, domain: &str) -> Self {
        self.session_name = "__Secure-latchkey";
        self.csrf_name = "__Secure-latchkey-csrf";
        self.secure = true;
        self.domain = Some(domain.to_ascii_lowercase());
        self.attributes = self.attributes_line();
        self
    }

    fn attributes_line(&self) -> String {
        let mut line = String::from("; Path=/");
        if let Some(domain) = &self.domain {
            line.push_str("; Domain=");
            line.push_str(domain);
        }
        line.push_str("; HttpOnly");
        if self.secure {
            line.push_str("; Secure");
        }
        line.push_str(match self.same_site {
            SameSite::Lax => "; SameSite=Lax",
            SameSite::Strict => "; SameSite=Strict",
        });
        line
    }

    /// The domain the session cookie is shared under, if any.
    #[must_use]
    pub fn domain(&self) -> Option<&str> {
        self.domain.as_deref()
    }

    /// Whether cookies are `Secure` (the site is served over https).
    #[must_use]
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    /// The session cookie's name.
    #[must_use]
    pub fn session_name(&self) -> &'static str {
        self.session_name
    }

    /// The login-form CSRF cookie's name.
    #[must_use]
    pub fn csrf_name(&self) -> &'static str {
        self.csrf_name
    }

    /// The device cookie's name (OWASP's device cookies: a browser that signed in before).
    #[must_use]
    pub fn device_name(&self) -> &'static str {
        self.device_name
    }

    /// `Set-Cookie` for a device cookie: unlike the session, it outlives the
    /// browser and sign-out (that is its purpose), and it is `Strict`: only
    /// the site's own sign-in form needs it.
    #[must_use]
    pub fn set_device(&self, value: &str) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let line = format!(
            "{}={value}; Max-Age={}; Path=/; HttpOnly{secure}; SameSite=Strict",
            self.device_name,
            crate::device::DEVICE_COOKIE_MAX_AGE.as_secs()
        );
        let mut header =
            HeaderValue::try_from(line).unwrap_or_else(|_| HeaderValue::from_static(""));
        header.set_sensitive(true);
        header
    }

    /// `Set-Cookie` for a value of the named cookie. No `Max-Age`: the cookie
    /// ends with the browser; the server's timeouts decide how long it is good for.
    #[must_use]
    pub fn set(&self, name: &str, value: &str) -> HeaderValue {
        let line = format!("{name}={value}{}", self.attributes);
        let mut header =
            HeaderValue::try_from(line).unwrap_or_else(|_| HeaderValue::from_static(""));
        // Keeps it out of HTTP/2 header compression tables and debug output.
        header.set_sensitive(true);
        header
    }

    /// `Set-Cookie` that removes the named cookie.
    #[must_use]
    pub fn clear(&self, name: &str) -> HeaderValue {
        let line = format!(
            "{name}=; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT{}",
            self.attributes
        );
        HeaderValue::try_from(line).unwrap_or_else(|_| HeaderValue::from_static(""))
    }
}

/// Longest cookie value looked at; anything longer is garbage by definition.
const MAX_VALUE_LEN: usize = 256;

/// The values of every cookie called `name` in the request, in order. A
/// browser may send several when another path or domain set one too.
pub(crate) fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(move |pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k == name && v.len() <= MAX_VALUE_LEN).then_some(v.trim_matches('"'))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_cookies_use_the_host_prefix_and_secure() {
        let c = CookieSettings::new(true, SameSite::Lax);
        let v = c.set(c.session_name(), "abc");
        let v = v.to_str().expect("ascii");
        assert!(v.starts_with("__Host-latchkey=abc;"));
        assert!(v.contains("Secure") && v.contains("HttpOnly") && v.contains("SameSite=Lax"));
        assert!(v.contains("Path=/"));
    }

    #[test]
    fn a_shared_domain_uses_the_secure_prefix_and_names_the_domain() {
        let c = CookieSettings::new(true, SameSite::Lax).with_domain("Example.test");
        for name in [c.session_name(), c.csrf_name()] {
            let v = c.set(name, "abc");
            let v = v.to_str().expect("ascii");
            assert!(v.starts_with("__Secure-latchkey"), "{v}");
            assert!(
                v.contains("; Domain=example.test;") && v.contains("; Secure"),
                "{v}"
            );
            let gone = c.clear(name);
            assert!(
                gone.to_str()
                    .expect("ascii")
                    .contains("Domain=example.test")
            );
        }
        let device = c.set_device("d");
        let device = device.to_str().expect("ascii");
        assert!(device.starts_with("__Host-latchkey-device=") && !device.contains("Domain"));
    }

    #[test]
    fn http_cookies_have_no_secure_flag() {
        let c = CookieSettings::new(false, SameSite::Strict);
        let v = c.set(c.session_name(), "abc");
        let v = v.to_str().expect("ascii");
        assert!(v.starts_with("latchkey=abc;") && !v.contains("Secure"));
        assert!(v.contains("SameSite=Strict"));
    }

    #[test]
    fn cookies_are_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; latchkey=xyz; b=2"),
        );
        h.append(header::COOKIE, HeaderValue::from_static("latchkey=second"));
        let found: Vec<_> = cookie_values(&h, "latchkey").collect();
        assert_eq!(found, ["xyz", "second"]);
        assert_eq!(cookie_values(&h, "latchkey-csrf").count(), 0);
    }
}
