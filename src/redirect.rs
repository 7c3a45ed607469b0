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

#[cfg(test)]
mod tests {
    use super::*;

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
