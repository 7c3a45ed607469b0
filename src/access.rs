//! Access rules for forward-auth: which visitor a proxy may let through to
//! which URL. The first rule whose hosts, paths and methods all match
//! decides; no rule matching leaves the default.
//!
//! Rules see the request as the protected app will: the path with its dot
//! segments resolved, repeated slashes merged and percent-encoded unreserved
//! characters decoded. A path that an app might read differently from
//! latchkey (an encoded `/` or `\`, invalid percent-encoding, a `..` above
//! the root) is refused outright, so that `/admin/../public` or `/%61dmin`
//! cannot pick a more lenient rule.

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
/// `/public`, `/public/` and everything below it. Paths are compared
/// case-sensitively, as most apps route.
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

    fn matches(&self, path: &str) -> bool {
        match self {
            Self::Exact(p) => path == p,
            // `/admin/*` covers `/admin` too: a rule meant for a section
            // must not miss its first page.
            Self::Below(prefix) => {
                path.starts_with(prefix.as_str()) || path == &prefix[..prefix.len() - 1]
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
            && (self.paths.is_empty() || self.paths.iter().any(|p| p.matches(&request.path)))
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
    #[error("not a method")]
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
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
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
        method: method.to_ascii_uppercase(),
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
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, uri) = rest.split_at(authority_end);
    if authority.contains('@') {
        return Err(TargetError::Host);
    }
    let uri = match uri {
        "" => "/".to_owned(),
        u if u.starts_with('?') => format!("/{u}"),
        u => u.to_owned(),
    };
    target(method, scheme, authority, &uri)
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

/// The path as every app reads it: percent-encoded unreserved characters
/// decoded (and other escapes' hex upper-cased), dot segments resolved,
/// repeated slashes merged.
///
/// # Errors
/// An encoded `/` or `\`, a raw `\`, invalid percent-encoding, or `..`
/// above the root.
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
                    b => decoded.push_str(&format!("%{b:02X}")),
                }
                i += 3;
            }
            b'\\' => return Err("a backslash in the path"),
            // Java servlet containers drop `;parameters` from each segment
            // (`/public/..;/admin` is `/admin` to Tomcat), others keep them:
            // no reading of such a path is safe for every app.
            b';' => return Err("a ; in the path"),
            _ => {
                // Not '%' or '\\': copy the whole UTF-8 character.
                let rest = &path[i..];
                let c = rest.chars().next().unwrap_or('\u{fffd}');
                decoded.push(c);
                i += c.len_utf8();
            }
        }
    }
    let mut segments: Vec<&str> = Vec::new();
    let trailing = decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for segment in decoded.split('/').skip(1) {
        match segment {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err("the path climbs above the root");
                }
            }
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing || out.is_empty() {
        out.push('/');
    }
    Ok(out)
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
    fn paths_are_read_as_an_app_reads_them() {
        for (given, normal) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/b/", "/a/b/"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/admin/../public/x", "/public/x"),
            ("/%61dmin", "/admin"),
            ("/x/%2e%2e/y", "/y"),
            ("//admin", "/admin"),
            ("/a//b", "/a/b"),
            ("/a%20b", "/a%20b"),
            ("/a%2ab", "/a%2Ab"),
            ("/x/.", "/x/"),
            ("/café", "/café"),
        ] {
            assert_eq!(normalise_path(given).as_deref(), Ok(normal), "{given}");
        }
    }

    #[test]
    fn paths_that_apps_could_read_otherwise_are_refused() {
        for bad in [
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
            number(&t("GET", "a.example.com", "/admin/../public/a")),
            Some(1)
        );
        assert_eq!(
            rules.matching(&t("GET", "a.example.com", "/x")).policy,
            &Policy::SignedIn
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
            (rule(&[], &["/a/../b"], &[], "public"), "not in normal form"),
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
        let t = target_of_url("get", "HTTPS://A.com:8443/x/../y?q=1").expect("valid");
        assert_eq!(t.url(), "https://a.com:8443/y?q=1");
        assert_eq!(t.method, "GET");
        let v6 = target("GET", "http", "[::1]:8080", "/").expect("valid");
        assert_eq!((v6.host.as_str(), v6.port), ("[::1]", Some(8080)));
    }
}
