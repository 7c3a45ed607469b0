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

/// A user-supplied name as a log field: as it is when it is one plain word,
/// quoted and escaped otherwise, so that no name can read as other fields
/// (`ann outcome=success`) or lines in the text log.
#[derive(Debug, Clone, Copy)]
pub struct InLog<'a>(pub &'a str);

impl std::fmt::Display for InLog<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plain = !self.0.is_empty()
            && self
                .0
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | '+'));
        if plain {
            f.write_str(self.0)
        } else {
            // Quoted, and every non-ASCII character as its code point, so that
            // a look-alike (`аdmin` with a Cyrillic а) reads differently too.
            write!(f, "\"{}\"", self.0.escape_default())
        }
    }
}

#[cfg(test)]
mod in_log_tests {
    use super::InLog;

    #[test]
    fn names_that_could_pass_for_other_fields_are_quoted() {
        assert_eq!(InLog("ann").to_string(), "ann");
        assert_eq!(InLog("ann.b-c_d@x").to_string(), "ann.b-c_d@x");
        assert_eq!(
            InLog("root outcome=success").to_string(),
            "\"root outcome=success\""
        );
        assert_eq!(InLog("a\nb").to_string(), "\"a\\nb\"");
        assert_eq!(InLog("x\"y").to_string(), "\"x\\\"y\"");
        assert_eq!(InLog("").to_string(), "\"\"");
        assert_eq!(InLog("e\u{202e}vil").to_string(), "\"e\\u{202e}vil\"");
        assert_eq!(InLog("\u{430}dmin").to_string(), "\"\\u{430}dmin\"");
    }
}
