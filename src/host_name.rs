//! DNS host names, as a cookie domain or an e-mail address's domain must be.

/// Whether `name` is a host name of two labels or more (`example.com`):
/// letters, digits and inner hyphens, labels of at most 63 characters, at
/// most 253 in all, and a last label that is not all digits (that would be
/// an address). International names in their `xn--` form.
pub(crate) fn is_host_name(name: &str) -> bool {
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|top| top.bytes().all(|b| b.is_ascii_digit()));
    name.len() <= 253 && name.contains('.') && !numeric && name.split('.').all(label_ok)
}

/// Whether the host name `host` is `domain` or under it at a dot boundary
/// (`app.example.com` is under `example.com`; `evilexample.com` and
/// `example.com.evil.net` are not). Both in lower case.
pub(crate) fn is_under(host: &str, domain: &str) -> bool {
    host.strip_suffix(domain)
        .is_some_and(|rest| rest.is_empty() || rest.ends_with('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_have_two_labels_of_letters_digits_and_inner_hyphens() {
        for good in [
            "example.com",
            "a-b.example.test",
            "xn--bcher-kva.example",
            "a.b.c.d",
        ] {
            assert!(is_host_name(good), "{good:?}");
        }
        for bad in [
            "com",
            "",
            "-a.example",
            "a-.example",
            "a..example",
            ".example.com",
            "exa mple.com",
            "bücher.example",
            "10.0.0.1",
            "0.0.1",
            "a_b.example",
        ] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
        assert!(!is_host_name(&format!("{}.com", "a".repeat(64))));
    }

    #[test]
    fn under_means_at_a_dot_boundary() {
        assert!(is_under("example.com", "example.com"));
        assert!(is_under("a.b.example.com", "example.com"));
        assert!(!is_under("evilexample.com", "example.com"));
        assert!(!is_under("example.com.evil.net", "example.com"));
    }
}
