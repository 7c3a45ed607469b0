//! Where to send a browser after login: only back into this site.

/// Where a login goes when `next` is missing or unsafe.
pub const DEFAULT_NEXT: &str = "/profile";

/// `next` if it is a same-site relative path, otherwise [`DEFAULT_NEXT`].
///
/// Refused: anything not starting with a single `/` (schemes, `//host`,
/// `/\host`, which browsers read as `//host`), backslashes and control
/// characters anywhere (browsers drop tabs and newlines, which can turn
/// `/\t/host` into `//host`), and very long values.
#[must_use]
pub fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(n) if is_safe(n) => n,
        _ => DEFAULT_NEXT,
    }
}

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
        assert_eq!(safe_next(Some("/admin")), "/admin");
        assert_eq!(safe_next(Some("/a/b?c=d#e")), "/a/b?c=d#e");
        assert_eq!(safe_next(Some("/")), "/");
    }

    #[test]
    fn anything_leaving_the_site_falls_back_to_the_profile() {
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
            assert_eq!(safe_next(Some(bad)), DEFAULT_NEXT, "{bad:?}");
        }
        assert_eq!(safe_next(None), DEFAULT_NEXT);
    }
}
