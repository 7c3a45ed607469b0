//! Usernames: Unicode-normalised for display, case-folded for uniqueness.

use unicode_normalization::UnicodeNormalization;

/// Most characters in a username.
pub const MAX_USERNAME_CHARS: usize = 64;
/// Most bytes accepted in a username field at all; longer input is refused
/// as malformed before any lookup.
pub const MAX_USERNAME_BYTES: usize = 256;

/// A valid username: the display form (NFC) and the key that must be unique
/// (NFKC, lower-cased), so `Ann`, `ANN` and `ａｎｎ` are one account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username {
    display: String,
    key: String,
}

/// Why a username was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsernameRejected {
    /// Empty after trimming.
    #[error("the username is empty")]
    Empty,
    /// Over [`MAX_USERNAME_CHARS`] characters.
    #[error("the username must be at most 64 characters")]
    TooLong,
    /// Contains white space or control characters.
    #[error("the username may not contain spaces or control characters")]
    BadCharacter,
}

impl Username {
    /// Validates and normalises a username.
    ///
    /// # Errors
    /// When it is empty, too long, or holds white space or control characters.
    pub fn parse(raw: &str) -> Result<Self, UsernameRejected> {
        if raw.len() > MAX_USERNAME_BYTES {
            return Err(UsernameRejected::TooLong);
        }
        let display: String = raw.trim().nfc().collect();
        if display.is_empty() {
            return Err(UsernameRejected::Empty);
        }
        if display.chars().count() > MAX_USERNAME_CHARS {
            return Err(UsernameRejected::TooLong);
        }
        if display
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\u{FFFD}')
        {
            return Err(UsernameRejected::BadCharacter);
        }
        Ok(Self {
            key: key_of(&display),
            display,
        })
    }

    /// The name as the user wrote it (NFC).
    #[must_use]
    pub fn display(&self) -> &str {
        &self.display
    }

    /// The unique, case-insensitive key.
    #[must_use]
    pub fn key(&self) -> &str {
        &self.key
    }
}

/// The case-folded key of a name: NFKC, lower case, NFKC again (lower-casing
/// can produce sequences that are not normalised).
#[must_use]
pub fn key_of(name: &str) -> String {
    let lowered: String = name.trim().nfkc().collect::<String>().to_lowercase();
    lowered.nfkc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_differing_in_case_or_width_share_a_key() {
        let a = Username::parse("Ann").expect("valid");
        let b = Username::parse("ＡＮＮ").expect("valid");
        assert_eq!(a.key(), b.key());
        assert_eq!(a.display(), "Ann");
    }

    #[test]
    fn composed_and_decomposed_forms_are_one_name() {
        let composed = Username::parse("Zoë").expect("valid");
        let decomposed = Username::parse("Zoe\u{0308}").expect("valid");
        assert_eq!(composed, decomposed);
    }

    #[test]
    fn bad_names_are_refused() {
        assert_eq!(Username::parse("  "), Err(UsernameRejected::Empty));
        assert_eq!(Username::parse("a b"), Err(UsernameRejected::BadCharacter));
        assert_eq!(
            Username::parse("a\u{7}"),
            Err(UsernameRejected::BadCharacter)
        );
        assert_eq!(
            Username::parse(&"x".repeat(65)),
            Err(UsernameRejected::TooLong)
        );
        assert!(Username::parse(&"x".repeat(64)).is_ok());
    }
}
