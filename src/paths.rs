//! Where the login's own pages live in a site, and where a sign-in goes when
//! it has nowhere better to go: `/login` and `/profile` for the service, a
//! prefix and the app's home page for an app that mounts the pages itself.

/// The paths of the login pages (under a prefix) and of the home page.
/// A copy is a reference: a site keeps one set of paths for its whole life,
/// so they are allocated once and never freed, and the layer every request
/// passes copies them without touching a shared reference count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paths(&'static Inner);

#[derive(Debug, PartialEq, Eq)]
struct Inner {
    prefix: String,
    home: String,
    login: String,
    logout: String,
    setup: String,
    stylesheet: String,
    script: String,
}

/// Why a prefix or home path was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The prefix is not `""` or `/word[/word…]`.
    #[error(
        "the pages' prefix {0:?} must be empty or a path like \"/auth\": it starts with `/`, \
         does not end with `/`, and holds only letters, digits, `-`, `_`, `.` and `/`"
    )]
    Prefix(String),
    /// The home page is not a path on this site.
    #[error("the home page {0:?} must be a path on this site, like \"/\" or \"/app\"")]
    Home(String),
}

impl Paths {
    /// The service's own: pages at the root, home at `/profile`.
    #[must_use]
    pub fn service() -> Self {
        static SERVICE: std::sync::LazyLock<Paths> =
            std::sync::LazyLock::new(|| Paths::build("", "/profile"));
        *SERVICE
    }

    /// The login pages under `prefix` (`""` for the root, or like `/auth`),
    /// and `home` where a sign-in goes when no page asked for it.
    ///
    /// # Errors
    /// When the prefix is not a plain path, or `home` is not a safe path on
    /// this site (a single `/` first, no backslash, control character or space).
    pub fn new(prefix: &str, home: &str) -> Result<Self, PathError> {
        let plain = prefix.is_empty()
            || prefix.starts_with('/')
                && !prefix.ends_with('/')
                && !prefix.contains("//")
                && prefix
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
                && !prefix.split('/').any(|s| s == "." || s == "..");
        if !plain {
            return Err(PathError::Prefix(prefix.to_owned()));
        }
        if !crate::redirect::is_safe(home) {
            return Err(PathError::Home(home.to_owned()));
        }
        Ok(Self::build(prefix, home))
    }

    fn build(prefix: &str, home: &str) -> Self {
        Self(Box::leak(Box::new(Inner {
            prefix: prefix.to_owned(),
            home: home.to_owned(),
            login: format!("{prefix}/login"),
            logout: format!("{prefix}/logout"),
            setup: format!("{prefix}/setup"),
            stylesheet: format!("{prefix}/static/latchkey.css"),
            script: format!("{prefix}/static/latchkey.js"),
        })))
    }

    /// The prefix (`""` or like `/auth`).
    #[must_use]
    pub fn prefix(&self) -> &'static str {
        &self.0.prefix
    }

    /// Where a sign-in goes by default, and the pages' "home" link.
    #[must_use]
    pub fn home(&self) -> &'static str {
        &self.0.home
    }

    /// The login page.
    #[must_use]
    pub fn login(&self) -> &'static str {
        &self.0.login
    }

    /// The sign-out page.
    #[must_use]
    pub fn logout(&self) -> &'static str {
        &self.0.logout
    }

    /// The first-admin page.
    #[must_use]
    pub fn setup(&self) -> &'static str {
        &self.0.setup
    }

    /// The pages' stylesheet.
    #[must_use]
    pub fn stylesheet(&self) -> &'static str {
        &self.0.stylesheet
    }

    /// The pages' one script.
    #[must_use]
    pub fn script(&self) -> &'static str {
        &self.0.script
    }

    /// `next` if it is a safe path on this site, else the home page.
    #[must_use]
    pub fn next_or_home<'a>(&'a self, next: Option<&'a str>) -> &'a str {
        match next {
            Some(n) if crate::redirect::is_safe(n) => n,
            _ => self.home(),
        }
    }
}

impl Default for Paths {
    fn default() -> Self {
        Self::service()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pages_sit_under_the_prefix() {
        let p = Paths::new("/auth", "/").expect("valid");
        assert_eq!(p.login(), "/auth/login");
        assert_eq!(p.logout(), "/auth/logout");
        assert_eq!(p.stylesheet(), "/auth/static/latchkey.css");
        assert_eq!(p.next_or_home(Some("//evil.example")), "/");
        assert_eq!(p.next_or_home(Some("/notes")), "/notes");
        assert_eq!(Paths::service().login(), "/login");
        assert_eq!(Paths::service().home(), "/profile");
    }

    #[test]
    fn prefixes_and_homes_that_are_not_plain_paths_are_refused() {
        for bad in [
            "auth", "/auth/", "//auth", "/a/../b", "/a b", "/a?x", "/%2e",
        ] {
            assert_eq!(
                Paths::new(bad, "/"),
                Err(PathError::Prefix(bad.into())),
                "{bad}"
            );
        }
        for bad in ["", "https://evil.example/", "//evil.example", "/\\evil"] {
            assert_eq!(
                Paths::new("", bad),
                Err(PathError::Home(bad.into())),
                "{bad}"
            );
        }
    }
}
