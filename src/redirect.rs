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

/// Whether `url`, an absolute URL (forward-auth's `rd`: the page a proxy
/// sent the browser from), may be followed after sign-in: https (plain http
/// only while `public_origin` is plain http on this machine), on the public
/// origin's host (any port), no userinfo, and none of what [`is_safe`]
/// refuses anywhere in it.
#[cfg(feature = "pages")]
pub(crate) fn is_allowed_return(url: &str, public_origin: &str) -> bool {
    if url.len() > 2048
        || url
            .chars()
            .any(|c| c == '\\' || c.is_control() || c.is_whitespace())
    {
        return false;
    }
    let (Ok(url), Ok(public)) = (url::Url::parse(url), url::Url::parse(public_origin)) else {
        return false;
    };
    let scheme = match url.scheme() {
        "https" => true,
        "http" => public.scheme() == "http" && is_this_machine(&public),
        _ => false,
    };
    scheme
        && url.username().is_empty()
        && url.password().is_none()
        && url.host_str().is_some()
        && url.host_str() == public.host_str()
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

    #[cfg(feature = "pages")]
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

    #[cfg(feature = "pages")]
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
