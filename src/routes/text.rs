//! Words for people: waiting times and timestamps as a page shows them.

/// A wait in words, rounded up so that nobody retries too early:
/// "45 seconds", "1 minute", "14 minutes", "2 hours".
#[must_use]
pub(crate) fn wait_in_words(secs: u64) -> String {
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    match secs {
        0..=59 => plural(secs.max(1), "second"),
        60..=5_399 => plural(secs.div_ceil(60), "minute"),
        _ => plural(secs.div_ceil(3_600), "hour"),
    }
}

#[cfg(feature = "server")]
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// An RFC 3339 UTC timestamp (`2026-12-02T05:40:12Z`) as people read it:
/// "2 December 2026, 05:40 UTC". Anything else is shown unchanged.
#[must_use]
#[cfg(feature = "server")]
pub(crate) fn readable_time(rfc3339: &str) -> String {
    let parse = || -> Option<String> {
        let (date, time) = rfc3339.strip_suffix('Z')?.split_once('T')?;
        let mut parts = date.splitn(3, '-');
        let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
        let month = MONTHS.get(month.parse::<usize>().ok()?.checked_sub(1)?)?;
        let day: u32 = day.parse().ok()?;
        let hh_mm = time.get(..5)?;
        Some(format!("{day} {month} {year}, {hh_mm} UTC"))
    };
    parse().unwrap_or_else(|| rfc3339.to_owned())
}

/// How pages and the CLI show a list of roles, "none" when empty.
#[must_use]
#[cfg(feature = "server")]
pub fn roles_text(roles: &[String]) -> String {
    if roles.is_empty() {
        "none".to_owned()
    } else {
        roles.join(", ")
    }
}

/// A message as a sentence on a page: capital first letter, full stop.
#[must_use]
#[cfg(feature = "server")]
pub(crate) fn sentence(message: &str) -> String {
    let mut chars = message.chars();
    let mut out: String = chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default();
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_round_up_to_a_whole_unit() {
        assert_eq!(wait_in_words(0), "1 second");
        assert_eq!(wait_in_words(45), "45 seconds");
        assert_eq!(wait_in_words(60), "1 minute");
        assert_eq!(wait_in_words(61), "2 minutes");
        assert_eq!(wait_in_words(14 * 60 - 5), "14 minutes");
        assert_eq!(wait_in_words(15 * 60), "15 minutes");
        assert_eq!(wait_in_words(2 * 3_600), "2 hours");
    }

    #[cfg(feature = "server")]
    #[test]
    fn timestamps_read_as_a_date_and_a_time_with_the_zone() {
        assert_eq!(
            readable_time("2026-12-02T05:40:12Z"),
            "2 December 2026, 05:40 UTC"
        );
        assert_eq!(readable_time("garbage"), "garbage");
        assert_eq!(
            readable_time("2026-13-02T05:40:12Z"),
            "2026-13-02T05:40:12Z"
        );
    }

    #[cfg(feature = "server")]
    #[test]
    fn messages_become_sentences() {
        assert_eq!(
            sentence("the password is too easy to guess"),
            "The password is too easy to guess."
        );
        assert_eq!(sentence("done."), "Done.");
        assert_eq!(sentence(""), ".");
    }

    #[cfg(feature = "server")]
    #[test]
    fn no_roles_reads_none() {
        assert_eq!(roles_text(&[]), "none");
        assert_eq!(roles_text(&["a".into(), "b".into()]), "a, b");
    }
}
