//! Access rules for forward-auth: which visitor a proxy may let through to
//! which URL. The first rule whose hosts, paths and methods all match
//! decides; no rule matching leaves the default.
//!
//! Rules see the path in one spelling: percent-encoded unreserved
//! characters decoded, the rest encoded as browsers send it. A path that an
//! app might read differently from latchkey (dot segments, empty segments,
//! an encoded `/` or `\`, `;`, invalid percent-encoding) is refused
//! outright rather than resolved, so that `/secret/../public` cannot pick a
//! more lenient rule; restrictive rules match in any ASCII case (and `/x`
//! also as `/x/`), lenient ones only as written; methods must be upper case.

use std::fmt;

/// What a rule (or the default) asks of a visitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// Anyone passes, signed in or not.
    Public,
    /// Anyone signed in passes.
    SignedIn,
    /// Someone signed in with any of these roles passes.
    Roles(Vec<String>),
    /// Nobody passes.
    Deny,
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Public => f.write_str("public"),
            Self::SignedIn => f.write_str("signed_in"),
            Self::Roles(roles) => write!(f, "roles ({})", roles.join(", ")),
            Self::Deny => f.write_str("deny"),
        }
    }
}

/// A host a rule applies to: `grafana.example.com`, or `*.example.com` for
/// every name under it (not `example.com` itself).
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    /// The suffix with its leading dot: `.example.com`.
    Under(String),
}

impl HostPattern {
    fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim_end_matches('.').to_ascii_lowercase();
        let (under, name) = match lower.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, lower.as_str()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || !name.split('.').all(label_ok) {
            return Err(format!(
                "host {text:?} is not a host name like app.example.com or *.example.com"
            ));
        }
        Ok(if under {
            Self::Under(format!(".{name}"))
        } else {
            Self::Exact(name.to_owned())
        })
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(name) => host == name,
            // A dot boundary: `*.example.com` is not `evilexample.com`.
            Self::Under(suffix) => host.len() > suffix.len() && host.ends_with(suffix.as_str()),
        }
    }
}

/// A path a rule applies to: `/api/health` exactly, or `/public/*` for
/// `/public`, `/public/` and everything below it. Compared as written for
/// rules that let visitors through, and ignoring case for rules that
/// restrict (see [`Rule::matches`]).
#[derive(Debug, Clone, PartialEq, Eq)]
enum PathPattern {
    Exact(String),
    /// The prefix, ending in `/`.
    Below(String),
}

impl PathPattern {
    fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "path {text:?} is not a path like /api/health or /public/* (`*` only as the last segment)"
            )
        };
        let (below, path) = match text.strip_suffix("/*") {
            Some(rest) => (true, format!("{rest}/")),
            None => (false, text.to_owned()),
        };
        if path.contains('*') || !path.starts_with('/') {
            return Err(bad());
        }
        // Written as the app would see it, so that it can match at all.
        let normal = normalise_path(&path).map_err(|_| bad())?;
        if normal != path {
            return Err(format!(
                "path {text:?} is not in normal form (write {:?})",
                if below {
                    format!("{}*", normal)
                } else {
                    normal
                }
            ));
        }
        Ok(if below {
            Self::Below(path)
        } else {
            Self::Exact(path)
        })
    }

    /// Whether `path` is this one's; `any_case` ignores ASCII case.
    fn matches(&self, path: &str, any_case: bool) -> bool {
        let same = |a: &[u8], b: &[u8]| {
            if any_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        let path = path.as_bytes();
        match self {
            // A rule that restricts `/secret` covers `/secret/` too: many
            // apps serve both with one handler.
            Self::Exact(p) => {
                same(path, p.as_bytes())
                    || (any_case
                        && path
                            .strip_suffix(b"/")
                            .is_some_and(|trimmed| trimmed != b"" && same(trimmed, p.as_bytes())))
            }
            // `/admin/*` covers `/admin` too: a rule meant for a section
            // must not miss its first page.
            Self::Below(prefix) => {
                let prefix = prefix.as_bytes();
                path.get(..prefix.len())
                    .is_some_and(|head| same(head, prefix))
                    || same(path, &prefix[..prefix.len() - 1])
            }
        }
    }
}

/// One access rule, as written in the configuration file's
/// `[[access.rules]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Its place in the file, from 1: how messages and `access check` name it.
    pub number: usize,
    hosts: Vec<HostPattern>,
    paths: Vec<PathPattern>,
    methods: Vec<String>,
    /// What it asks of a visitor.
    pub policy: Policy,
}

/// A rule as written, before it is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleText {
    /// Host names (`*.example.com` for every name under it); empty: any.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Paths (`/public/*` for everything below); empty: any.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Methods (`GET`, `HEAD`, …); empty: any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// `public`, `signed_in`, `roles` or `deny`.
    pub policy: String,
    /// With `policy = "roles"`: any of these lets a user through.
    #[serde(default)]
    pub roles: Vec<String>,
}

impl Rule {
    /// Checks a rule as written; the message names the rule.
    ///
    /// # Errors
    /// When a host, path, method or the policy is not valid.
    pub fn parse(number: usize, text: &RuleText) -> Result<Self, String> {
        let named = |e: String| format!("access rule {number}: {e}");
        let hosts = text
            .hosts
            .iter()
            .map(|h| HostPattern::parse(h))
            .collect::<Result<_, _>>()
            .map_err(named)?;
        let paths = text
            .paths
            .iter()
            .map(|p| PathPattern::parse(p))
            .collect::<Result<_, _>>()
            .map_err(named)?;
        let methods = text
            .methods
            .iter()
            .map(|m| {
                let upper = m.to_ascii_uppercase();
                if !upper.is_empty() && upper.bytes().all(|b| b.is_ascii_uppercase()) {
                    Ok(upper)
                } else {
                    Err(named(format!("method {m:?} is not a method like GET")))
                }
            })
            .collect::<Result<_, _>>()?;
        let policy = match (text.policy.as_str(), text.roles.is_empty()) {
            ("roles", false) => Policy::Roles(text.roles.clone()),
            ("roles", true) => {
                return Err(named(
                    "policy \"roles\" needs roles = [\"…\"], the roles that may pass".into(),
                ));
            }
            (_, false) => {
                return Err(named(format!(
                    "roles are given but the policy is {:?}; use policy = \"roles\"",
                    text.policy
                )));
            }
            ("public", true) => Policy::Public,
            ("signed_in", true) => Policy::SignedIn,
            ("deny", true) => Policy::Deny,
            (other, true) => {
                return Err(named(format!(
                    "policy {other:?} is not one of public, signed_in, roles, deny"
                )));
            }
        };
        Ok(Self {
            number,
            hosts,
            paths,
            methods,
            policy,
        })
    }

    fn matches(&self, request: &Target) -> bool {
        (self.hosts.is_empty() || self.hosts.iter().any(|h| h.matches(&request.host)))
            && (self.paths.is_empty() || {
                // A rule that restricts matches whatever the case: an app
                // that routes `/Admin` as `/admin` (many do) must not slip
                // past it. One that lets through matches only as written:
                // to an app that tells cases apart, `/PUBLIC/x` is another page.
                let any_case = matches!(self.policy, Policy::Deny | Policy::Roles(_));
                self.paths
                    .iter()
                    .any(|p| p.matches(&request.path, any_case))
            })
            && (self.methods.is_empty() || self.methods.contains(&request.method))
    }
}

/// The rules and the default, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRules {
    /// What applies when no rule matches: [`Policy::SignedIn`] or
    /// [`Policy::Deny`].
    pub default: Policy,
    /// First match wins.
    pub rules: Vec<Rule>,
}

impl AccessRules {
    /// Every host name a rule names (for `*.example.com`, `example.com`),
    /// with the rule's number.
    pub fn named_hosts(&self) -> impl Iterator<Item = (usize, &str)> {
        self.rules.iter().flat_map(|rule| {
            rule.hosts.iter().map(move |host| match host {
                HostPattern::Exact(name) => (rule.number, name.as_str()),
                HostPattern::Under(suffix) => (rule.number, &suffix[1..]),
            })
        })
    }
}

impl Default for AccessRules {
    fn default() -> Self {
        Self {
            default: Policy::SignedIn,
            rules: Vec::new(),
        }
    }
}

/// The request a proxy asks about, normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Upper case: `GET`.
    pub method: String,
    /// `http`, `https`, `ws` or `wss`.
    pub scheme: String,
    /// Lower case, without port or trailing dot.
    pub host: String,
    /// The port, when the URL names one.
    pub port: Option<u16>,
    /// Normalised (see the module's documentation).
    pub path: String,
    /// The query as sent, without `?`.
    pub query: Option<String>,
}

impl Target {
    /// The original URL, as the browser should come back to it.
    #[must_use]
    pub fn url(&self) -> String {
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let query = self
            .query
            .as_deref()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        format!(
            "{}://{}{}{}{}",
            self.scheme, self.host, port, self.path, query
        )
    }
}

/// Which rule decided, and how.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Matched<'a> {
    /// The rule, or `None` for the default.
    pub rule: Option<&'a Rule>,
    /// Its policy.
    pub policy: &'a Policy,
}

impl AccessRules {
    /// Checks the rules as written and the default (`signed_in` or `deny`).
    ///
    /// # Errors
    /// The first invalid rule, named.
    pub fn parse(default: &str, rules: &[RuleText]) -> Result<Self, String> {
        let default = match default {
            "signed_in" => Policy::SignedIn,
            "deny" => Policy::Deny,
            other => {
                return Err(format!(
                    "default {other:?} (LATCHKEY_ACCESS_DEFAULT, or default in [access]) \
                     is not signed_in or deny"
                ));
            }
        };
        let rules = rules
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::parse(i + 1, r))
            .collect::<Result<_, _>>()?;
        Ok(Self { default, rules })
    }

    /// The rule that applies to `target` (first match), or the default.
    #[must_use]
    pub fn matching(&self, target: &Target) -> Matched<'_> {
        match self.rules.iter().find(|r| r.matches(target)) {
            Some(rule) => Matched {
                rule: Some(rule),
                policy: &rule.policy,
            },
            None => Matched {
                rule: None,
                policy: &self.default,
            },
        }
    }
}

/// What the policy says of a visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let through.
    Allow,
    /// Must sign in first.
    SignIn,
    /// Signed in (or not) and still not allowed.
    Forbidden,
}

impl Policy {
    /// The verdict for a visitor with these roles (`None`: not signed in).
    #[must_use]
    pub fn verdict(&self, roles: Option<&[String]>) -> Verdict {
        match (self, roles) {
            (Self::Public, _) => Verdict::Allow,
            (Self::Deny, _) => Verdict::Forbidden,
            (Self::SignedIn | Self::Roles(_), None) => Verdict::SignIn,
            (Self::SignedIn, Some(_)) => Verdict::Allow,
            (Self::Roles(wanted), Some(has)) => {
                if wanted.iter().any(|w| has.contains(w)) {
                    Verdict::Allow
                } else {
                    Verdict::Forbidden
                }
            }
        }
    }
}

/// Why a forwarded request cannot be judged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    /// The URL is not one.
    #[error("not an absolute http(s) URL")]
    NotAUrl,
    /// A scheme other than http, https, ws, wss.
    #[error("scheme {0:?} is not http, https, ws or wss")]
    Scheme(String),
    /// No host, or not a valid one.
    #[error("no valid host")]
    Host,
    /// A method that is not a token.
    #[error("not a method in upper case")]
    Method,
    /// The path cannot be read the same way by every app.
    #[error("{0}")]
    Path(&'static str),
}

/// The target of a request from its parts as a proxy forwards them.
///
/// # Errors
/// [`TargetError`]: anything missing or not as a browser would send it.
pub fn target(method: &str, scheme: &str, host: &str, uri: &str) -> Result<Target, TargetError> {
    // Upper case only: methods are case-sensitive, and an app that reads
    // `delete` as DELETE (many do) must not see it slip past a rule for DELETE.
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(TargetError::Method);
    }
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "http" | "https" | "ws" | "wss") {
        return Err(TargetError::Scheme(scheme));
    }
    let (host, port) = host_and_port(host)?;
    if !uri.starts_with('/') {
        return Err(TargetError::Path("the URI is not a path starting with /"));
    }
    if uri
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'#')
    {
        return Err(TargetError::Path(
            "the URI has a space, control character or fragment",
        ));
    }
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (uri, None),
    };
    Ok(Target {
        method: method.to_owned(),
        scheme,
        host,
        port,
        path: normalise_path(path).map_err(TargetError::Path)?,
        query,
    })
}

/// The target of a request from its whole URL (nginx's `X-Original-URL`).
///
/// # Errors
/// As [`target`].
pub fn target_of_url(method: &str, url: &str) -> Result<Target, TargetError> {
    let (scheme, rest) = url.split_once("://").ok_or(TargetError::NotAUrl)?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, uri) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(TargetError::Host);
    }
    // Only a path may follow the authority: nginx copies whatever a client
    // wrote after the port in its Host header (`Host: app:443?`) into
    // `$http_host`, while it routes by the name alone; a `?` there would make
    // every path of the host look like `/`.
    if !uri.starts_with('/') {
        return Err(TargetError::Path(
            "the URL has no path after its host (a ? or # straight after the host)",
        ));
    }
    target(method, scheme, authority, uri)
}

fn host_and_port(text: &str) -> Result<(String, Option<u16>), TargetError> {
    let (host, port) = match text.rsplit_once(':') {
        // An IPv6 literal has colons of its own: only a `]:port` is a port.
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
            (h, Some(p.parse::<u16>().map_err(|_| TargetError::Host)?))
        }
        _ => (text, None),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let valid = if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        inner.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            && !host.split('.').any(str::is_empty)
    };
    if valid {
        Ok((host, port))
    } else {
        Err(TargetError::Host)
    }
}

/// The path in one spelling: percent-encoded unreserved characters
/// decoded, other escapes' hex upper-cased, characters beyond ASCII
/// percent-encoded (as browsers send them).
///
/// Paths that apps read differently are refused rather than resolved:
/// dot segments (raw or encoded) and empty ones (`//`). Browsers resolve
/// dot segments before sending and never send an empty one, so only a
/// hand-made request has them; and an app that routes `/secret/../public`
/// as `/secret/<path>`, or merges `//..` differently, would be served a
/// page the rule for the resolved path never meant to open.
///
/// # Errors
/// An encoded `/` or `\`, a raw `\` or `;`, invalid percent-encoding, a
/// `.` or `..` segment, or an empty segment other than a trailing slash.
pub fn normalise_path(path: &str) -> Result<String, &'static str> {
    let bytes = path.as_bytes();
    let mut decoded = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) else {
                    return Err("invalid percent-encoding in the path");
                };
                let byte = u8::try_from(hi * 16 + lo).unwrap_or(0);
                match byte {
                    b'/' | b'\\' => return Err("an encoded / or \\ in the path"),
                    b if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') => {
                        decoded.push(char::from(b));
                    }
                    b => push_escape(&mut decoded, b),
                }
                i += 3;
            }
            b'\\' => return Err("a backslash in the path"),
            // Java servlet containers drop `;parameters` from each segment
            // (`/public/..;/admin` is `/admin` to Tomcat), others keep them:
            // no reading of such a path is safe for every app.
            b';' => return Err("a ; in the path"),
            b if b.is_ascii() => {
                decoded.push(char::from(b));
                i += 1;
            }
            _ => {
                // A character beyond ASCII, as its UTF-8 bytes escaped.
                let c = path[i..].chars().next().unwrap_or('\u{fffd}');
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    push_escape(&mut decoded, b);
                }
                i += c.len_utf8();
            }
        }
    }
    let segments: Vec<&str> = decoded.split('/').skip(1).collect();
    for (n, segment) in segments.iter().enumerate() {
        match *segment {
            "." | ".." => return Err("a . or .. segment in the path"),
            "" if n + 1 < segments.len() => return Err("an empty segment (//) in the path"),
            _ => {}
        }
    }
    Ok(decoded)
}

fn push_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(byte >> 4)]));
    out.push(char::from(HEX[usize::from(byte & 15)]));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml_rules: &[RuleText]) -> AccessRules {
        AccessRules::parse("signed_in", toml_rules).expect("valid")
    }

    fn rule(hosts: &[&str], paths: &[&str], methods: &[&str], policy: &str) -> RuleText {
        RuleText {
            hosts: hosts.iter().map(|s| (*s).to_owned()).collect(),
            paths: paths.iter().map(|s| (*s).to_owned()).collect(),
            methods: methods.iter().map(|s| (*s).to_owned()).collect(),
            policy: policy.to_owned(),
            roles: Vec::new(),
        }
    }

    #[test]
    fn paths_are_written_one_way() {
        for (given, normal) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/%61dmin", "/admin"),
            ("/a%20b", "/a%20b"),
            ("/a%2ab", "/a%2Ab"),
            ("/café", "/caf%C3%A9"),
            ("/caf%c3%a9", "/caf%C3%A9"),
            ("/a.b/.c/..d", "/a.b/.c/..d"),
        ] {
            assert_eq!(normalise_path(given).as_deref(), Ok(normal), "{given}");
        }
    }

    #[test]
    fn paths_that_apps_could_read_otherwise_are_refused() {
        for bad in [
            "/a/./b",
            "/a/../b",
            "/admin/../public/x",
            "/secret/../public/x",
            "/x/%2e%2e/y",
            "/x/.%2e/y",
            "/x/%2E/y",
            "/x/.",
            "/x/..",
            "//admin",
            "/a//b",
            "/secret//../public/x",
            "/..",
            "/a/../..",
            "/%2e%2e",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a\\b",
            "/%zz",
            "/%4",
            "/%",
            "/public/..;/admin",
            "/public/%2e%2e;/admin",
            "/admin;jsessionid=1",
        ] {
            assert!(normalise_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_match_exactly_or_below_a_dot() {
        let under = HostPattern::parse("*.example.com").expect("valid");
        assert!(under.matches("a.example.com"));
        assert!(under.matches("a.b.example.com"));
        assert!(!under.matches("example.com"));
        assert!(!under.matches("evilexample.com"));
        assert!(!under.matches("example.com.evil.net"));
        let exact = HostPattern::parse("Grafana.Example.com.").expect("valid");
        assert!(exact.matches("grafana.example.com"));
        assert!(!exact.matches("x.grafana.example.com"));
    }

    #[test]
    fn the_first_matching_rule_decides() {
        let rules = rules(&[
            rule(&[], &["/public/*"], &["GET", "HEAD"], "public"),
            rule(&["*.tools.example.com"], &[], &[], "deny"),
            rule(&[], &["/api/health"], &[], "public"),
        ]);
        let t = |m: &str, host: &str, uri: &str| target(m, "https", host, uri).expect("valid");
        let number = |t: &Target| rules.matching(t).rule.map(|r| r.number);
        assert_eq!(number(&t("GET", "a.example.com", "/public/x")), Some(1));
        assert_eq!(number(&t("GET", "a.example.com", "/public")), Some(1));
        assert_eq!(number(&t("GET", "a.example.com", "/publicity")), None);
        assert_eq!(number(&t("POST", "a.example.com", "/public/x")), None);
        assert_eq!(
            number(&t("GET", "x.tools.example.com", "/api/health")),
            Some(2)
        );
        assert_eq!(number(&t("GET", "a.example.com", "/api/health")), Some(3));
        assert_eq!(
            rules.matching(&t("GET", "a.example.com", "/x")).policy,
            &Policy::SignedIn
        );
    }

    #[test]
    fn rules_that_restrict_match_in_any_case_and_rules_that_let_through_as_written() {
        let rules = rules(&[
            rule(&[], &["/admin/*"], &[], "deny"),
            RuleText {
                roles: vec!["ops".into()],
                ..rule(&[], &["/ops"], &[], "roles")
            },
            rule(&[], &["/public/*"], &[], "public"),
        ]);
        let t = |uri: &str| target("GET", "https", "a.example.com", uri).expect("valid");
        let number = |uri: &str| rules.matching(&t(uri)).rule.map(|r| r.number);
        assert_eq!(number("/Admin/users"), Some(1));
        assert_eq!(number("/ADMIN"), Some(1));
        assert_eq!(number("/OPS"), Some(2));
        assert_eq!(
            number("/ops/"),
            Some(2),
            "an exact restrictive path covers its /"
        );
        assert_eq!(number("/opsx"), None);
        assert_eq!(number("/public/x"), Some(3));
        assert_eq!(
            number("/PUBLIC/x"),
            None,
            "another page to an app that tells cases apart"
        );
    }

    #[test]
    fn roles_let_through_only_their_holders() {
        let policy = Policy::Roles(vec!["admin".into()]);
        assert_eq!(policy.verdict(None), Verdict::SignIn);
        assert_eq!(policy.verdict(Some(&["user".into()])), Verdict::Forbidden);
        assert_eq!(
            policy.verdict(Some(&["user".into(), "admin".into()])),
            Verdict::Allow
        );
        assert_eq!(
            Policy::Deny.verdict(Some(&["admin".into()])),
            Verdict::Forbidden
        );
        assert_eq!(Policy::Public.verdict(None), Verdict::Allow);
    }

    #[test]
    fn invalid_rules_are_refused_by_number() {
        let roles_without = rule(&[], &[], &[], "roles");
        let cases = [
            (
                rule(&["exa mple.com"], &[], &[], "public"),
                "access rule 1: host",
            ),
            (
                rule(&[], &["public/*"], &[], "public"),
                "access rule 1: path",
            ),
            (rule(&[], &["/a/*/b"], &[], "public"), "access rule 1: path"),
            (
                rule(&[], &["/a/../b"], &[], "public"),
                "access rule 1: path",
            ),
            (
                rule(&[], &["/café/*"], &[], "public"),
                "write \"/caf%C3%A9/*\"",
            ),
            (rule(&[], &[], &["G ET"], "public"), "access rule 1: method"),
            (rule(&[], &[], &[], "open"), "is not one of"),
            (roles_without, "needs roles"),
        ];
        for (text, expected) in cases {
            let err = AccessRules::parse("signed_in", &[text]).expect_err("refused");
            assert!(err.contains(expected), "{err}");
        }
        assert!(
            AccessRules::parse("public", &[])
                .expect_err("refused")
                .contains("signed_in or deny")
        );
    }

    #[test]
    fn forwarded_parts_that_are_missing_or_odd_are_refused() {
        assert_eq!(
            target("GET", "ftp", "a.com", "/"),
            Err(TargetError::Scheme("ftp".into()))
        );
        assert_eq!(target("GET", "https", "", "/"), Err(TargetError::Host));
        assert_eq!(
            target("GET", "https", "a..com", "/"),
            Err(TargetError::Host)
        );
        assert_eq!(
            target("GET", "https", "a.com:99999", "/"),
            Err(TargetError::Host)
        );
        assert_eq!(target("", "https", "a.com", "/"), Err(TargetError::Method));
        assert!(target("GET", "https", "a.com", "x").is_err());
        assert!(target("GET", "https", "a.com", "/a b").is_err());
        assert!(target_of_url("GET", "https://user@a.com/").is_err());
        assert!(target_of_url("GET", "/relative").is_err());
        let t = target_of_url("GET", "HTTPS://A.com:8443/x/y?q=1").expect("valid");
        assert_eq!(t.url(), "https://a.com:8443/x/y?q=1");
        for lower in ["get", "Get", "dELETE"] {
            assert_eq!(
                target(lower, "https", "a.com", "/"),
                Err(TargetError::Method)
            );
        }
        for only_a_path_after_the_host in [
            "https://a.com:443?/secret",
            "https://a.com?/secret",
            "https://a.com#/x",
            "https://a.com",
        ] {
            assert!(
                target_of_url("GET", only_a_path_after_the_host).is_err(),
                "{only_a_path_after_the_host}"
            );
        }
        let v6 = target("GET", "http", "[::1]:8080", "/").expect("valid");
        assert_eq!((v6.host.as_str(), v6.port), ("[::1]", Some(8080)));
    }
}
