//! What a user is called and where to write to them, both optional: shown
//! by `user list` and sent to the apps behind forward-auth as
//! `Remote-Name` and `Remote-Email`. Both end up in HTTP headers, so
//! nothing that could end a header line or hide in one is accepted.

use unicode_normalization::UnicodeNormalization;

/// Most characters in a display name.
pub const MAX_DISPLAY_NAME_CHARS: usize = 128;
/// Most bytes in an e-mail address (RFC 5321's path limit less `<>`).
pub const MAX_EMAIL_BYTES: usize = 254;

/// A user's display name and e-mail address, each checked (see
/// [`Profile::new`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Profile {
    display_name: Option<String>,
    email: Option<String>,
}

/// Why a display name or an e-mail address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileRejected {
    /// Over 128 characters.
    #[error("the display name must be at most 128 characters")]
    NameTooLong,
    /// A control character (a line break, say) or one that shows nothing.
    #[error(
        "the display name may not contain control characters, line breaks or invisible \
         characters such as zero-width or text-direction marks"
    )]
    NameCharacter,
    /// Not an address like `ann@example.com`.
    #[error("the e-mail address must look like name@example.com, without spaces")]
    Email,
}

impl Profile {
    /// A profile from what an administrator typed: `None` or an empty
    /// (or all-space) value means none. A display name is trimmed and
    /// NFC-normalised, and may not hold control or invisible characters; an
    /// e-mail address is an ASCII `local@domain` whose domain is a host
    /// name (international names in their `xn--` form).
    ///
    /// # Errors
    /// [`ProfileRejected`] for the first value that breaks a rule.
    pub fn new(display_name: Option<&str>, email: Option<&str>) -> Result<Self, ProfileRejected> {
        Ok(Self {
            display_name: display_name.map(parse_name).transpose()?.flatten(),
            email: email.map(parse_email).transpose()?.flatten(),
        })
    }

    /// The display name, if any.
    #[must_use]
    pub fn display_name(&self) -> Option<&str> {
        self.display_name.as_deref()
    }

    /// The e-mail address, if any.
    #[must_use]
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// A profile as stored (checked when it was written).
    #[must_use]
    pub(crate) fn from_stored(display_name: Option<String>, email: Option<String>) -> Self {
        Self {
            display_name,
            email,
        }
    }
}

fn parse_name(raw: &str) -> Result<Option<String>, ProfileRejected> {
    let name: String = raw.trim().nfc().collect();
    if name.is_empty() {
        return Ok(None);
    }
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(ProfileRejected::NameTooLong);
    }
    if name
        .chars()
        .any(|c| c.is_control() || crate::username::is_invisible(c) || is_line_break(c))
    {
        return Err(ProfileRejected::NameCharacter);
    }
    Ok(Some(name))
}

/// Line and paragraph separators, which are neither control characters nor invisible.
fn is_line_break(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}')
}

fn parse_email(raw: &str) -> Result<Option<String>, ProfileRejected> {
    let email = raw.trim();
    if email.is_empty() {
        return Ok(None);
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(ProfileRejected::Email);
    };
    // Printable ASCII, without what would need quoting in an address or
    // could split a header's list of values.
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local.bytes().all(|b| {
            b.is_ascii_graphic()
                && !matches!(
                    b,
                    b'(' | b')'
                        | b'<'
                        | b'>'
                        | b'['
                        | b']'
                        | b':'
                        | b';'
                        | b'@'
                        | b'\\'
                        | b','
                        | b'"'
                )
        });
    let domain_ok = crate::host_name::is_host_name(domain);
    if email.len() > MAX_EMAIL_BYTES || !local_ok || !domain_ok {
        return Err(ProfileRejected::Email);
    }
    Ok(Some(format!("{local}@{}", domain.to_ascii_lowercase())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_normalised_and_empty_means_none() {
        let p = Profile::new(Some("  Ann Lee "), Some(" ann@Example.COM ")).expect("valid");
        assert_eq!(p.display_name(), Some("Ann Lee"));
        assert_eq!(p.email(), Some("ann@example.com"));
        let nfd = "Jose\u{301}";
        assert_eq!(
            Profile::new(Some(nfd), None).expect("valid").display_name(),
            Some("Jos\u{e9}")
        );
        assert_eq!(Profile::new(Some("  "), Some("")), Ok(Profile::default()));
        assert_eq!(
            Profile::new(Some("Zoë Ōkubo 山田"), None).map(|p| p.display_name().is_some()),
            Ok(true)
        );
    }

    #[test]
    fn names_that_could_break_a_header_or_hide_text_are_refused() {
        for bad in [
            "Ann\r\nRemote-User: admin",
            "Ann\nLee",
            "Ann\u{0}",
            "e\u{202E}vil",
            "Ann\u{200B}",
            "Ann\u{2028}Lee",
        ] {
            assert_eq!(
                Profile::new(Some(bad), None),
                Err(ProfileRejected::NameCharacter),
                "{bad:?}"
            );
        }
        let long = "a".repeat(MAX_DISPLAY_NAME_CHARS + 1);
        assert_eq!(
            Profile::new(Some(&long), None),
            Err(ProfileRejected::NameTooLong)
        );
    }

    #[test]
    fn addresses_must_look_like_addresses() {
        for good in [
            "a@b.co",
            "ann.lee+tag@mail.example.com",
            "x_y-z@xn--bcher-kva.example",
        ] {
            assert!(Profile::new(None, Some(good)).is_ok(), "{good:?}");
        }
        for bad in [
            "ann",
            "@example.com",
            "ann@",
            "ann@localhost",
            "ann lee@example.com",
            "ann@exa mple.com",
            "ann@example.com\r\nX: y",
            "ann@-example.com",
            "ann@example..com",
            ".ann@example.com",
            "a..b@example.com",
            "ann,bob@example.com",
            "\"ann\"@example.com",
            "ann@bücher.example",
            "änn@example.com",
        ] {
            assert_eq!(
                Profile::new(None, Some(bad)),
                Err(ProfileRejected::Email),
                "{bad:?}"
            );
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(Profile::new(None, Some(&long)), Err(ProfileRejected::Email));
    }
}
