//! Where to send a browser after login: only back into this site (see
//! [`crate::Paths::next_or_home`]).

/// Whether `next` is a same-site relative path a browser may be sent to.
///
/// Refused: anything not starting with a single `/` (schemes, `//host`,
/// `/\host`, which browsers read as `//host`), backslashes and control
/// characters anywhere (browsers drop tabs and newlines, which can turn
/// `/\t/host` into `//host`), and very long values.
pub(crate) fn is_safe(next: &str) -> bool {
    let bytes = next.as_bytes();
    next.len() <= 2048
        && bytes.first() == Some(&b'/')
        && !matches!(bytes.get(1), Some(b'/' | b'\\'))
        && !next
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
}

/// Where a browser may be sent back to by an absolute URL (forward-auth's
/// `rd`: the page a proxy sent it from): the public URL's host (any port),
/// and with a cookie domain every host under it.
#[derive(Debug, Clone)]
pub(crate) struct Returns {
    /// Plain http is followed only while the public URL is plain http on this machine.
    http_allowed: bool,
    /// The public URL's host, as `url` writes it (lower case, IPv6 in brackets).
    host: String,
    /// `LATCHKEY_COOKIE_DOMAIN`, lower case.
    domain: Option<String>,
}

impl Returns {
    pub(crate) fn new(public: &url::Url, domain: Option<&str>) -> Self {
        Self {
            http_allowed: public.scheme() == "http" && is_this_machine(public),
            host: public.host_str().unwrap_or_default().to_owned(),
            domain: domain.map(str::to_ascii_lowercase),
        }
    }

    /// Whether `url` may be followed after sign-in or sign-out: https
    /// (or plain http, see above), on an allowed host, no userinfo, and
    /// none of what [`is_safe`] refuses anywhere in it.
    #[cfg_attr(not(feature = "pages"), allow(dead_code))]
    pub(crate) fn allows(&self, url: &str) -> bool {
        if url.len() > 2048
            || url
                .chars()
                .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
        {
            return false;
        }
        let Ok(url) = url::Url::parse(url) else {
            return false;
        };
        let scheme = match url.scheme() {
            "https" => true,
            "http" => self.http_allowed,
            _ => false,
        };
        let host = match url.host() {
            Some(url::Host::Domain(name)) => self.reaches(name),
            Some(_) => url.host_str() == Some(self.host.as_str()),
            None => false,
        };
        scheme && host && url.username().is_empty() && url.password().is_none()
    }

    /// Whether the session cookie reaches `host` (lower case): the public
    /// URL's host, or a name under the cookie domain.
    #[cfg_attr(not(feature = "pages"), allow(dead_code))]
    pub(crate) fn reaches(&self, host: &str) -> bool {
        host == self.host
            || self
                .domain
                .as_deref()
                .is_some_and(|domain| crate::host_name::is_under(host, domain))
    }

    /// The page CSP's `form-action`: a sign-in form's answer may redirect
    /// (browsers hold form redirects to it) only where [`Returns::allows`]
    /// may send it.
    pub(crate) fn form_action(&self) -> String {
        let scheme = if self.http_allowed { "http" } else { "https" };
        let mut directive = format!("form-action 'self' {scheme}://{}:*", self.host);
        if let Some(domain) = &self.domain {
            directive.push_str(&format!(" https://{domain}:* https://*.{domain}:*"));
        }
        directive
    }
}

/// Whether a URL names this machine: a loopback address or `localhost`.
pub(crate) fn is_this_machine(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => std::net::IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => std::net::IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_allowed_return(url: &str, public: &str) -> bool {
        returns(public, None).allows(url)
    }

    fn returns(public: &str, domain: Option<&str>) -> Returns {
        Returns::new(&url::Url::parse(public).expect("a URL"), domain)
    }

    #[test]
    fn a_return_url_on_this_host_is_followed() {
        let public = "https://auth.example.com";
        for good in [
            "https://auth.example.com/x?y=1",
            "https://AUTH.example.com:8443/",
            "https://auth.example.com",
        ] {
            assert!(is_allowed_return(good, public), "{good:?}");
        }
        assert!(is_allowed_return(
            "http://127.0.0.1:9000/app",
            "http://127.0.0.1:8080"
        ));
    }

    #[test]
    fn a_return_url_anywhere_else_is_refused() {
        let public = "https://auth.example.com";
        for bad in [
            "http://auth.example.com/",
            "https://auth.example.com.evil.net/",
            "https://evilauth.example.com/",
            "https://example.com/",
            "https://auth.example.com@evil.net/",
            "https://user:pw@auth.example.com/",
            "https://evil.net\\@auth.example.com/",
            "https://auth.example.com/\t/x",
            "https://auth.example.com/ x",
            "javascript:alert(1)",
            "//auth.example.com/",
            "/relative",
            "ftp://auth.example.com/",
            "wss://auth.example.com/",
            "",
        ] {
            assert!(!is_allowed_return(bad, public), "{bad:?}");
        }
        let long = format!("https://auth.example.com/{}", "a".repeat(2048));
        assert!(!is_allowed_return(&long, public));
    }

    #[test]
    fn a_cookie_domain_allows_its_hosts_at_a_dot_boundary_only() {
        let r = returns("https://auth.example.com", Some("Example.com"));
        for good in [
            "https://app.example.com/x?y=1",
            "https://example.com/",
            "https://a.b.example.com:8443/",
            "https://APP.EXAMPLE.COM/",
            "https://auth.example.com/",
        ] {
            assert!(r.allows(good), "{good:?}");
        }
        for bad in [
            "https://example.com.evil.net/",
            "https://evilexample.com/",
            "https://app.example.com@evil.net/",
            "https://evil.net/?app.example.com",
            "https://evil.net#.example.com",
            "http://app.example.com/",
            "https://app.example.com\\@evil.net/",
            "https://com/",
            "https://127.0.0.1/",
        ] {
            assert!(!r.allows(bad), "{bad:?}");
        }
    }

    #[test]
    fn form_action_names_what_may_be_returned_to() {
        assert_eq!(
            returns("https://auth.example.com", Some("example.com")).form_action(),
            "form-action 'self' https://auth.example.com:* https://example.com:* https://*.example.com:*"
        );
        assert_eq!(
            returns("http://127.0.0.1:8080", None).form_action(),
            "form-action 'self' http://127.0.0.1:*"
        );
    }

    #[test]
    fn relative_paths_are_kept() {
        for good in ["/admin", "/a/b?c=d#e", "/"] {
            assert!(is_safe(good), "{good:?}");
        }
    }

    #[test]
    fn anything_leaving_the_site_is_refused() {
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https://evil.example",
            "javascript:alert(1)",
            "evil.example",
            "/\t/evil.example",
            "/%0a/x\n",
            "",
            " /x",
        ] {
            assert!(!is_safe(bad), "{bad:?}");
        }
    }
}
