//! Usernames: new names follow RFC 8265's PRECIS `UsernameCaseMapped`
//! profile and refuse what makes one name look like another; every name,
//! old or new, is found by the same case-folded key as before.

use precis_profiles::precis_core::{CodepointInfo, Error as PrecisError, UnexpectedError};
use unicode_normalization::UnicodeNormalization;
use unicode_security::mixed_script::AugmentedScriptSet;

/// Most characters in a username.
pub const MAX_USERNAME_CHARS: usize = 64;
/// Most bytes accepted in a username field at all; longer input is refused
/// as malformed before any lookup.
pub const MAX_USERNAME_BYTES: usize = 256;

/// A valid new username: the display form (NFC) and the key that must be
/// unique (the PRECIS form, then NFKC and lower case as [`key_of`]), so
/// `Ann`, `ANN` and `ＡＮＮ` are one account.
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
    /// Contains a character that shows nothing: zero-width characters,
    /// text-direction controls and other format characters.
    #[error(
        "the username may not contain invisible characters such as zero-width or \
         text-direction marks (found {})",
        CodePoint(*.0)
    )]
    Invisible(char),
    /// Contains a character that PRECIS usernames do not allow (symbols,
    /// compatibility forms, unassigned code points…).
    #[error(
        "the username may not contain {}: use letters, digits and ASCII punctuation",
        CodePoint(*.0)
    )]
    Disallowed(char),
    /// Right-to-left text arranged so that it may display in another order
    /// (RFC 5893's bidi rule, as RFC 8265 requires).
    #[error(
        "the username mixes right-to-left and left-to-right text in a way that can \
         display as another name"
    )]
    Direction,
    /// Letters of several scripts, such as Latin with a Cyrillic `а`.
    #[error(
        "the username mixes letters of different scripts (such as Latin and Cyrillic), \
         so it can look like another name: write it in one script"
    )]
    MixedScripts,
    /// Looks like the name of an existing user (same Unicode skeleton,
    /// UTS #39), such as `rnary` beside `mary`.
    #[error("the username looks too much like the existing user {0:?}")]
    LooksLike(String),
}

/// A character as a message shows it: `'♥' (U+2665)`, or only the code
/// point for one that would show nothing.
struct CodePoint(char);

impl std::fmt::Display for CodePoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = self.0;
        if is_invisible(c) || c.is_control() {
            write!(f, "U+{:04X}", u32::from(c))
        } else {
            write!(f, "'{c}' (U+{:04X})", u32::from(c))
        }
    }
}

impl Username {
    /// Validates and normalises a *new* username (to create an account).
    /// Besides the length and the absence of spaces and control
    /// characters, the name must pass RFC 8265's `UsernameCaseMapped`
    /// profile, hold no invisible character (zero-width joiners included,
    /// which PRECIS allows in some scripts), and be written in one script
    /// (UTS #39 "highly restrictive": Latin may go with Han, Kana and
    /// Hangul, which do not look like it).
    ///
    /// Names that were stored before these rules keep working whatever
    /// they hold: sign-in looks names up with [`lookup_keys`], never this.
    ///
    /// # Errors
    /// With the first rule the name breaks.
    pub fn parse(raw: &str) -> Result<Self, UsernameRejected> {
        let display = basic_form(raw)?;
        if let Some(c) = display.chars().find(|&c| is_invisible(c)) {
            return Err(UsernameRejected::Invisible(c));
        }
        let enforced = precis_form(&display).map_err(|e| match e {
            PrecisError::Invalid => UsernameRejected::Direction,
            PrecisError::BadCodepoint(info)
            | PrecisError::Unexpected(
                UnexpectedError::ContextRuleNotApplicable(info)
                | UnexpectedError::MissingContextRule(info),
            ) => refused(&info),
            PrecisError::Unexpected(_) => UsernameRejected::BadCharacter,
        })?;
        if !in_one_script(&display) {
            return Err(UsernameRejected::MixedScripts);
        }
        Ok(Self {
            key: key_of(&enforced),
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

    /// The UTS #39 skeletons of the name as it may be shown: as written,
    /// in lower and in upper case. Two names that share one and have
    /// different keys look alike (`rnary` and `mary`, `aIice` with a
    /// capital I and `alice`, `b0b` and `BOB`, `paypal` in Latin and in
    /// Cyrillic letters).
    #[must_use]
    pub fn skeletons(&self) -> [String; 3] {
        skeletons_of(&self.display)
    }
}

/// The skeletons of a stored name (see [`Username::skeletons`]).
#[must_use]
pub fn skeletons_of(name: &str) -> [String; 3] {
    // UTS #39 maps `rn` to `m` but has no `vv` for `w` or `cl` for `d`,
    // which are as close in most sans-serif fonts.
    // Punctuation is easy to miss in a list of names (`alice.`, `_alice`,
    // `john.doe` and `john_doe`): it is left out of the comparison.
    let skeleton = |s: &str| {
        let s: String = unicode_security::skeleton(s)
            .filter(|c| !c.is_ascii_punctuation())
            .collect();
        s.replace("vv", "w").replace("VV", "W").replace("cl", "d")
    };
    [
        skeleton(name),
        skeleton(&name.to_lowercase()),
        skeleton(&name.to_uppercase()),
    ]
}

/// The rules every name ever accepted met: trimmed, NFC, not empty, not
/// too long, no spaces or control characters.
fn basic_form(raw: &str) -> Result<String, UsernameRejected> {
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
    Ok(display)
}

/// RFC 8265 `UsernameCaseMapped` enforcement: width mapping, lower case
/// (code point by code point), NFC, and the bidi rule.
fn precis_form(display: &str) -> Result<String, PrecisError> {
    use precis_profiles::precis_core::profile::PrecisFastInvocation as _;
    precis_profiles::UsernameCaseMapped::enforce(display).map(std::borrow::Cow::into_owned)
}

/// The keys to look a name up by at sign-in (and in administrative
/// commands), in order: the key a new account of that name gets (from its
/// PRECIS form), then, where it differs, the key of the rules before PRECIS
/// ([`key_of`] of the name). Every stored name is found by one of them,
/// even one that today's rules would refuse, and no stored key changes.
/// The two differ only where PRECIS lower-cases differently: `ΣΑΣ` was
/// stored as `σας` (final sigma), a new `ΣΑΣ` is `σασ`. Empty for input
/// that no name ever stored can match (spaces, control characters, too
/// long).
#[must_use]
pub fn lookup_keys(raw: &str) -> Vec<String> {
    let Ok(display) = basic_form(raw) else {
        return Vec::new();
    };
    let old = key_of(&display);
    match precis_form(&display).map(|p| key_of(&p)) {
        Ok(new) if new != old => vec![new, old],
        _ => vec![old],
    }
}

/// The one key that stands for an account in counters and signatures,
/// whichever way its name was typed: the first of [`lookup_keys`] (so `ΣΑΣ`
/// typed with a final or a medial sigma is one account, as it is at
/// sign-in), or [`key_of`] for input no stored name can match.
#[must_use]
pub fn canonical_key(raw: &str) -> String {
    lookup_keys(raw)
        .into_iter()
        .next()
        .unwrap_or_else(|| key_of(raw))
}

fn refused(info: &CodepointInfo) -> UsernameRejected {
    match char::from_u32(info.cp) {
        Some(c) if is_invisible(c) => UsernameRejected::Invisible(c),
        Some(c) => UsernameRejected::Disallowed(c),
        None => UsernameRejected::BadCharacter,
    }
}

/// Unicode's Default_Ignorable_Code_Point set (DerivedCoreProperties):
/// zero-width space and joiners, the text-direction marks and controls,
/// soft hyphen, variation selectors, Hangul fillers, tags…
const INVISIBLE: [(char, char); 17] = [
    ('\u{00AD}', '\u{00AD}'),
    ('\u{034F}', '\u{034F}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{206F}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF0}', '\u{FFF8}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0000}', '\u{E0FFF}'),
];

/// Whether a character shows nothing by itself (see [`INVISIBLE`]).
pub(crate) fn is_invisible(c: char) -> bool {
    INVISIBLE
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// Whether a name's letters belong to one script (digits and punctuation
/// go with any), allowing Latin beside Han, Kana or Hangul: UTS #39's
/// "highly restrictive" level. Computed here rather than with
/// `unicode_security`'s level detection, which ranks any character outside
/// its identifier profile (`@`, `+`, common in user names) as unrestricted.
fn in_one_script(name: &str) -> bool {
    if AugmentedScriptSet::for_str(name).is_empty() {
        let mut without_latin = AugmentedScriptSet::default();
        for c in name.chars() {
            let set = AugmentedScriptSet::for_char(c);
            if !set.base.contains_script(unicode_script::Script::Latin) {
                without_latin.intersect_with(set);
            }
        }
        without_latin.hanb || without_latin.jpan || without_latin.kore
    } else {
        true
    }
}

/// The case-folded key of a name: NFKC, lower case, NFKC again (lower-casing
/// can produce sequences that are not normalised). Unchanged since the
/// first release, so that every stored key still finds its user; a new
/// name's key is this of its PRECIS form (`Username::key`), the same but
/// for Greek final sigma.
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

    #[test]
    fn names_that_can_pass_for_others_are_refused() {
        use UsernameRejected::{Direction, Disallowed, Invisible, MixedScripts};
        let cases = [
            ("\u{430}lice", MixedScripts),
            ("p\u{430}yp\u{430}l", MixedScripts),
            ("adm\u{456}n", MixedScripts),
            ("ali\u{200B}ce", Invisible('\u{200B}')),
            ("ali\u{200D}ce", Invisible('\u{200D}')),
            ("ali\u{200C}ce", Invisible('\u{200C}')),
            ("ali\u{2060}ce", Invisible('\u{2060}')),
            ("alice\u{FE0F}", Invisible('\u{FE0F}')),
            ("e\u{202E}vil", Invisible('\u{202E}')),
            ("admin\u{2066}", Invisible('\u{2066}')),
            ("\u{200F}admin", Invisible('\u{200F}')),
            ("\u{2665}love", Disallowed('\u{2665}')),
            ("\u{FB01}nance", Disallowed('\u{FB01}')),
            ("a\u{5D0}", Direction),
        ];
        for (name, why) in cases {
            assert_eq!(Username::parse(name), Err(why.clone()), "{name:?}");
            assert!(!why.to_string().is_empty());
        }
        assert_eq!(
            UsernameRejected::Invisible('\u{200B}').to_string(),
            "the username may not contain invisible characters such as zero-width or \
             text-direction marks (found U+200B)"
        );
        assert_eq!(
            UsernameRejected::Disallowed('\u{2665}').to_string(),
            "the username may not contain '\u{2665}' (U+2665): use letters, digits and ASCII punctuation"
        );
    }

    #[test]
    fn names_in_one_script_with_ascii_punctuation_are_welcome() {
        for name in [
            "ann",
            "Zo\u{eb}",
            "ivan.petrov@example.com",
            "ann+work",
            "ann_b-c.d",
            "\u{438}\u{432}\u{430}\u{43d}",
            "\u{39f}\u{3bb}\u{3c5}\u{3bc}\u{3c0}\u{3af}\u{3b1}",
            "\u{5c71}\u{7530}taro",
            "\u{7530}\u{4e2d}\u{305f}\u{308d}\u{3046}",
            "\u{ae40}\u{bbfc}\u{c218}",
            "\u{645}\u{631}\u{6cc}\u{645}",
            "\u{5d3}\u{5e0}\u{5d4}2",
        ] {
            assert!(
                Username::parse(name).is_ok(),
                "{name:?}: {:?}",
                Username::parse(name)
            );
        }
    }

    #[test]
    fn look_alike_names_share_a_skeleton() {
        let alike = |a: &str, b: &str| {
            let (a, b) = (
                Username::parse(a).expect(a).skeletons(),
                Username::parse(b).expect(b).skeletons(),
            );
            a.iter().any(|s| b.contains(s))
        };
        assert!(alike("rnary", "mary"));
        // All Cyrillic, so one script, but the same skeleton as Latin "popa".
        assert!(alike("\u{440}\u{43e}\u{440}\u{430}", "popa"));
        assert!(alike("Ann", "ann"));
        // A capital I or a zero among lower-case letters, as shown.
        assert!(alike("aIice", "alice"));
        assert!(alike("cIara", "clara"));
        assert!(alike("b0b", "bob"));
        assert!(alike("vvill", "will"));
        assert!(alike("clave", "dave"));
        assert!(alike("alice.", "alice"));
        assert!(alike("john.doe", "john_doe"));
        assert!(!alike("ann", "anna"));
        assert!(!alike("bob", "rob"));
    }

    #[test]
    fn names_precis_calls_the_same_share_a_key() {
        let pairs = [
            ("Ann", "ANN"),
            ("\u{ff21}\u{ff2e}\u{ff2e}", "ann"),
            ("Zo\u{eb}", "ZOE\u{308}"),
            ("\u{3a3}\u{391}\u{3a3}", "\u{3c3}\u{3b1}\u{3c3}"),
            ("STRASSE", "strasse"),
        ];
        for (a, b) in pairs {
            assert_eq!(
                precis_form(a).expect(a),
                precis_form(b).expect(b),
                "{a:?} {b:?}"
            );
            let key = |n: &str| Username::parse(n).expect(n).key().to_owned();
            assert_eq!(key(a), key(b), "{a:?} and {b:?}");
            assert_eq!(lookup_keys(a)[0], key(a), "sign-in tries the new key first");
        }
        // Where the old key differs (final sigma), sign-in tries it second.
        assert_eq!(
            lookup_keys("\u{3a3}\u{391}\u{3a3}"),
            ["\u{3c3}\u{3b1}\u{3c3}", "\u{3c3}\u{3b1}\u{3c2}"]
        );
        assert_eq!(lookup_keys("Ann"), ["ann"], "one lookup where they agree");
    }

    #[test]
    fn names_stored_before_the_precis_rules_keep_their_key() {
        // Each was accepted before and is refused for a new account now;
        // sign-in must still find it by the key it was stored under.
        for old in [
            "\u{430}lice",
            "ali\u{200B}ce",
            "\u{2665}love",
            "\u{FB01}nance",
        ] {
            assert!(Username::parse(old).is_err(), "{old:?}");
            assert_eq!(lookup_keys(old), [key_of(old)], "{old:?}");
        }
        assert!(lookup_keys("a b").is_empty());
        assert!(lookup_keys(" ").is_empty());
        assert_eq!(lookup_keys(" Ann "), ["ann"]);
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
        // A log line per request must not be a way to fill the disk: what
        // is shown of a name is bounded (names are at most 64 characters;
        // input can be longer).
        const SHOWN: usize = 64;
        let long = self.0.chars().count() > SHOWN;
        if plain && !long {
            f.write_str(self.0)
        } else {
            // Quoted, and every non-ASCII character as its code point, so that
            // a look-alike (`аdmin` with a Cyrillic а) reads differently too.
            let head: String = self.0.chars().take(SHOWN).collect();
            write!(f, "\"{}", head.escape_default())?;
            if long {
                write!(f, "…({} bytes)", self.0.len())?;
            }
            f.write_str("\"")
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

    #[test]
    fn what_the_log_shows_of_a_name_is_bounded() {
        let shown = InLog(&"\u{1}".repeat(2600)).to_string();
        assert!(shown.len() < 64 * 6 + 32, "{} bytes", shown.len());
        assert!(shown.ends_with("…(2600 bytes)\""), "{shown}");
        let long = "a".repeat(100);
        assert_eq!(
            InLog(&long).to_string(),
            format!("\"{}…(100 bytes)\"", "a".repeat(64))
        );
    }
}
