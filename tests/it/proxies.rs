//! Forward-auth end to end, through the real proxies: nginx
//! (`auth_request`), Caddy (`forward_auth`) and Traefik (`forwardAuth`),
//! each started from its configuration file in `deploy/`, over TLS, in
//! front of latchkey (the portal, `auth.example.test`) and an app that
//! echoes what reaches it (`app.example.test`, and `admin.example.test`
//! for users with the role `admin`).
//!
//! Every behaviour is one function run once per proxy (`proxies::nginx::…`,
//! `proxies::caddy::…`, `proxies::traefik::…`); each failure names the
//! proxy and the step.

use std::collections::BTreeMap;

use reqwest::{Client, Response, StatusCode, header};
use serde_json::Value;

use crate::common::proxy::{ADMIN, APP, Deployment, PORTAL, Proxy};
use crate::common::{self, PASSWORD};

/// What a browser sends when a person opens a page.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// The identity headers latchkey gives the proxy for the app.
const IDENTITY: [&str; 4] = [
    "remote-user",
    "remote-groups",
    "remote-name",
    "remote-email",
];

/// A page opened by a person: top-level navigation asking for HTML.
async fn navigate(client: &Client, url: &str) -> Response {
    client
        .get(url)
        .header(header::ACCEPT, BROWSER_ACCEPT)
        .header("Sec-Fetch-Mode", "navigate")
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// A script or API client asking for JSON, with extra headers.
async fn api(client: &Client, url: &str, extra: &[(&str, &str)]) -> Response {
    let mut request = client.get(url).header(header::ACCEPT, "application/json");
    for (name, value) in extra {
        request = request.header(*name, *value);
    }
    request
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

fn location(r: &Response) -> Option<String> {
    r.headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_owned())
}

/// Text of an HTML page with its character references decoded (`&amp;`,
/// `&#38;`, `&#x26;` and the like).
fn html_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        let end = rest
            .find(';')
            .unwrap_or_else(|| panic!("a bare & in {text}"));
        let name = &rest[1..end];
        let c = match name {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = match name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                    Some(hex) => u32::from_str_radix(hex, 16),
                    None => name.strip_prefix('#').unwrap_or(name).parse(),
                };
                code.ok()
                    .and_then(char::from_u32)
                    .unwrap_or_else(|| panic!("unknown character reference &{name}; in {text}"))
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The headers the app received, lower-case name → values: from its JSON
/// echo, or from the page a browser gets, which shows the same JSON.
async fn headers_seen(what: &str, r: Response) -> BTreeMap<String, Vec<String>> {
    let status = r.status();
    let html = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    let text = r.text().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{what}: {text}");
    let json = if html {
        let start = text
            .find("<pre>")
            .unwrap_or_else(|| panic!("{what}: not the app's page: {text}"));
        let end = text.find("</pre>").unwrap();
        html_unescape(&text[start + 5..end])
    } else {
        text.clone()
    };
    let body: Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("{what}: not the app's echo ({e}): {text}"));
    serde_json::from_value(body["headers"].clone()).unwrap()
}

/// The values of one header the app received (none when it got none).
fn values<'a>(seen: &'a BTreeMap<String, Vec<String>>, name: &str) -> Vec<&'a str> {
    seen.get(name)
        .map(|v| v.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

/// Checks that an anonymous visitor's request was sent to sign in with
/// `original` to come back to, and returns the sign-in URL.
fn assert_sent_to_sign_in(d: &Deployment, step: &str, r: &Response, original: &str) -> String {
    let p = d.proxy;
    assert_eq!(r.status(), StatusCode::FOUND, "{p}: {step}: status");
    let to = location(r).unwrap_or_else(|| panic!("{p}: {step}: no Location"));
    let url = url::Url::parse(&to).unwrap_or_else(|e| panic!("{p}: {step}: Location {to}: {e}"));
    assert_eq!(
        url.origin().ascii_serialization(),
        d.public_url(),
        "{p}: {step}: the sign-in page is the portal's ({to})"
    );
    assert_eq!(url.path(), "/login", "{p}: {step}: {to}");
    let rd: Vec<String> = url
        .query_pairs()
        .filter(|(k, _)| k == "rd")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(rd, [original], "{p}: {step}: rd is the original URL ({to})");
    to
}

/// Signs in as `name` through the portal's form, as a browser does after
/// being sent to `login` (the sign-in URL the proxy redirected to): the form
/// must carry `original` along, and the answer must lead back to it.
async fn sign_in_at(d: &Deployment, client: &Client, login: &str, name: &str, original: &str) {
    let p = d.proxy;
    let r = navigate(client, login).await;
    assert_eq!(r.status(), StatusCode::OK, "{p}: the sign-in page {login}");
    let page = r.text().await.unwrap();
    assert_eq!(
        html_unescape(&common::hidden_field(&page, "next")),
        original,
        "{p}: the sign-in form carries the original URL"
    );
    let r = client
        .post(d.portal("/login"))
        .header(header::ORIGIN, d.public_url())
        .header(header::ACCEPT, BROWSER_ACCEPT)
        .form(&[
            ("username", name),
            ("password", PASSWORD),
            ("csrf_token", &common::hidden_field(&page, "csrf_token")),
            ("next", original),
        ])
        .send()
        .await
        .unwrap();
    let status = r.status();
    let to = location(&r);
    assert_eq!(
        status,
        StatusCode::SEE_OTHER,
        "{p}: signing in as {name}: {}",
        r.text().await.unwrap()
    );
    assert_eq!(
        to.as_deref(),
        Some(original),
        "{p}: signing in as {name} lands on the original URL"
    );
}

/// Opens `original` anonymously, is sent to sign in, and signs in as
/// `name`: the whole round trip a person makes.
async fn sign_in_from(d: &Deployment, client: &Client, name: &str, original: &str) {
    let r = navigate(client, original).await;
    let login = assert_sent_to_sign_in(
        d,
        &format!("opening {original} before signing in"),
        &r,
        original,
    );
    sign_in_at(d, client, &login, name, original).await;
}

/// What the client's jar would send to the app: the shared session cookie.
fn cookies_for_app(d: &Deployment, jar: &reqwest::cookie::Jar) -> String {
    use reqwest::cookie::CookieStore as _;
    let url = d.url(APP, "/").parse().unwrap();
    let cookies = jar
        .cookies(&url)
        .unwrap_or_else(|| panic!("{}: no cookie for the app", d.proxy));
    cookies.to_str().unwrap().to_owned()
}

async fn an_anonymous_browser_is_sent_to_sign_in_and_an_api_client_gets_401(proxy: Proxy) {
    let Some(d) = Deployment::start(proxy).await else {
        return;
    };
    let p = d.proxy;
    let (client, _) = d.client();
    let uri = "/reports/1?tab=a%20b&x=1";
    let original = d.url(APP, uri);

    let r = navigate(&client, &original).await;
    assert_sent_to_sign_in(&d, "a browser opening the app", &r, &original);

    // A script on a page (fetch) and an API client: 401, not a page.
    for (what, headers) in [
        ("an API client", &[("Accept", "application/json")][..]),
        (
            "a fetch from a page",
            &[("Accept", "*/*"), ("Sec-Fetch-Mode", "cors")][..],
        ),
    ] {
        let request = headers
            .iter()
            .fold(client.get(&original), |r, (name, value)| {
                r.header(*name, *value)
            });
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{p}: {what}");
        assert!(
            r.headers().contains_key(header::WWW_AUTHENTICATE),
            "{p}: {what}: a 401 says how to authenticate"
        );
    }
    // The other host is protected the same way.
    let admin = d.url(ADMIN, "/");
    let r = navigate(&client, &admin).await;
    assert_sent_to_sign_in(&d, "a browser opening the admin app", &r, &admin);
    assert!(
        !d.upstream.saw(uri) && !d.upstream.saw("/"),
        "{p}: nothing reached the app"
    );
}

async fn signing_in_through_the_portal_lands_on_the_original_url_and_the_app_learns_who(
    proxy: Proxy,
) {
    let Some(d) = Deployment::start(proxy).await else {
        return;
    };
    let p = d.proxy;
    d.latchkey
        .add_user("ann", PASSWORD, &["editor", "ops"])
        .await;
    // A display name beyond ASCII: latchkey sends it as UTF-8 bytes, which
    // the proxy must pass on as they are.
    d.latchkey
        .cli_ok(
            &[
                "user",
                "set",
                "ann",
                "--name",
                "Ann Ånström",
                "--email",
                "ann@example.test",
            ],
            None,
        )
        .await;
    let (client, jar) = d.client();
    let uri = "/reports/7?tab=a%20b&sort=up";
    let original = d.url(APP, uri);
    sign_in_from(&d, &client, "ann", &original).await;
    let cookies = cookies_for_app(&d, &jar);
    assert!(
        cookies.contains("__Secure-latchkey="),
        "{p}: the session begun at the portal is the app's too: {cookies}"
    );

    // Following the redirect back: the app answers, and knows who it is.
    let seen = headers_seen(
        &format!("{p}: the original URL after signing in"),
        navigate(&client, &original).await,
    )
    .await;
    assert!(d.upstream.saw(uri), "{p}: the app got {uri}");
    assert_eq!(values(&seen, "remote-user"), ["ann"], "{p}: Remote-User");
    let groups = values(&seen, "remote-groups");
    assert_eq!(groups.len(), 1, "{p}: one Remote-Groups: {groups:?}");
    let mut groups: Vec<&str> = groups[0].split(',').collect();
    groups.sort_unstable();
    assert_eq!(groups, ["editor", "ops"], "{p}: Remote-Groups");
    assert_eq!(
        values(&seen, "remote-name"),
        ["Ann Ånström"],
        "{p}: Remote-Name"
    );
    assert_eq!(
        values(&seen, "remote-email"),
        ["ann@example.test"],
        "{p}: Remote-Email"
    );
    // An API call of the app's own page, with the same session.
    let seen = headers_seen(
        &format!("{p}: an API call after signing in"),
        api(&client, &d.url(APP, "/api/items"), &[]).await,
    )
    .await;
    assert_eq!(values(&seen, "remote-user"), ["ann"], "{p}: Remote-User");
}

async fn identity_headers_a_client_sends_never_reach_the_app(proxy: Proxy) {
    let Some(d) = Deployment::start(proxy).await else {
        return;
    };
    let p = d.proxy;
    let forged = [
        ("Remote-User", "admin"),
        ("Remote-Groups", "admin"),
        ("Remote-Name", "The Administrator"),
        ("Remote-Email", "admin@example.test"),
        // The same names as CGI-style servers (PHP, WSGI) read them: both
        // spellings are HTTP_REMOTE_USER to the app.
        ("Remote_User", "admin"),
        ("Remote_Groups", "admin"),
        ("Remote_Name", "The Administrator"),
        ("Remote_Email", "admin@example.test"),
        // And with dots, which such servers read so too.
        ("Remote.User", "admin"),
        ("Remote.Groups", "admin"),
    ];
    let (client, _) = d.client();

    // Anonymous, on a public path: the app sees no identity at all (or
    // empty values), never the client's.
    let seen = headers_seen(
        &format!("{p}: an anonymous request with forged headers to a public path"),
        api(&client, &d.url(APP, "/public/logo.png"), &forged).await,
    )
    .await;
    for name in IDENTITY {
        let v = values(&seen, name);
        assert!(
            v.iter().all(|v| v.is_empty()),
            "{p}: anonymous: the app got {name}: {v:?}"
        );
    }
    assert_no_underscore_spelling(p, "anonymous", &seen);

    // Signed in as a user who is not an admin: the app sees the real
    // values, once.
    d.latchkey.add_user("ann", PASSWORD, &["editor"]).await;
    d.latchkey
        .cli_ok(
            &[
                "user",
                "set",
                "ann",
                "--name",
                "Ann Example",
                "--email",
                "ann@example.test",
            ],
            None,
        )
        .await;
    let original = d.url(APP, "/");
    sign_in_from(&d, &client, "ann", &original).await;
    let seen = headers_seen(
        &format!("{p}: ann with forged headers"),
        api(&client, &d.url(APP, "/mine"), &forged).await,
    )
    .await;
    assert_eq!(values(&seen, "remote-user"), ["ann"], "{p}: Remote-User");
    assert_eq!(
        values(&seen, "remote-groups"),
        ["editor"],
        "{p}: Remote-Groups"
    );
    assert_eq!(
        values(&seen, "remote-name"),
        ["Ann Example"],
        "{p}: Remote-Name"
    );
    assert_eq!(
        values(&seen, "remote-email"),
        ["ann@example.test"],
        "{p}: Remote-Email"
    );
    assert_no_underscore_spelling(p, "ann", &seen);
    // Nor do forged headers open the admin app.
    let r = api(&client, &d.url(ADMIN, "/"), &forged).await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "{p}: ann with a forged Remote-Groups: admin on the admin app"
    );
}

/// No `Remote_User` (or the like) reached the app.
fn assert_no_underscore_spelling(p: Proxy, who: &str, seen: &BTreeMap<String, Vec<String>>) {
    for name in IDENTITY {
        for alias in [name.replace('-', "_"), name.replace('-', ".")] {
            assert_eq!(
                seen.get(&alias),
                None,
                "{p}: {who}: the app got the client's {alias}"
            );
        }
    }
}

async fn rewrite_headers_a_client_sends_never_reach_the_app_and_the_checks_are_closed_outside(
    proxy: Proxy,
) {
    let Some(d) = Deployment::start(proxy).await else {
        return;
    };
    let p = d.proxy;
    let (client, _) = d.client();
    // Apps that route by these would serve another page than the one
    // latchkey was asked about.
    let forged = [
        ("X-Original-URL", "/private/report"),
        ("X-Original-Method", "DELETE"),
        ("X-Rewrite-URL", "/private/report"),
        ("X-Forwarded-Uri", "/private/report"),
        ("X-Forwarded-Method", "DELETE"),
    ];
    let seen = headers_seen(
        &format!("{p}: an anonymous request with rewrite headers to a public path"),
        api(&client, &d.url(APP, "/public/logo.png"), &forged).await,
    )
    .await;
    for (name, _) in forged {
        let name = name.to_ascii_lowercase();
        assert_eq!(
            seen.get(&name),
            None,
            "{p}: the app got the client's {name}"
        );
    }
    // A Host header with more after its port (nginx routes by the name, and
    // once copied it into the URL latchkey judged, as `https://app:443?/…`:
    // every path read as `/`).
    let r = api(
        &client,
        &d.url(APP, "/private/odd-host"),
        &[("Host", &format!("{APP}:{}?", d.port))],
    )
    .await;
    assert_ne!(
        r.status(),
        StatusCode::OK,
        "{p}: a Host with a ? after its port"
    );
    assert!(
        !d.upstream.saw("/private/odd-host"),
        "{p}: the private path never reached the app"
    );
    // From outside, the portal does not answer checks: nobody can ask it
    // about any URL they like.
    for path in ["/auth/forward", "/auth/nginx"] {
        let r = api(
            &client,
            &d.url(PORTAL, path),
            &[
                ("X-Original-URL", &d.url(ADMIN, "/")),
                ("X-Original-Method", "GET"),
                ("X-Forwarded-Method", "GET"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", ADMIN),
                ("X-Forwarded-Uri", "/"),
            ],
        )
        .await;
        assert_eq!(
            r.status(),
            StatusCode::NOT_FOUND,
            "{p}: {path} at the portal"
        );
    }
}

async fn forwarded_headers_a_client_sends_cannot_choose_the_rule(proxy: Proxy) {
    let Some(d) = Deployment::start(proxy).await else {
        return;
    };
    let p = d.proxy;
    let (client, _) = d.client();
    let public = d.url(APP, "/public/x");
    // Every header a proxy tells latchkey the original request by, pointing
    // at the public path.
    let forged = [
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", APP),
        ("X-Forwarded-Uri", "/public/x"),
        ("X-Forwarded-Port", "443"),
        ("X-Original-URL", public.as_str()),
        ("X-Original-Method", "GET"),
        ("X-Original-URI", "/public/x"),
    ];
    let r = api(&client, &d.url(APP, "/private/report"), &forged).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "{p}: an anonymous request for a private path, with forwarded headers naming a public one"
    );
    assert!(
        !d.upstream.saw("/private/report"),
        "{p}: the private path never reached the app"
    );
    // Signed in without the role: naming the app's host does not open
    // the admin host.
    d.latchkey.add_user("ann", PASSWORD, &[]).await;
    sign_in_from(&d, &client, "ann", &d.url(APP, "/")).await;
    let r = api(
        &client,
        &d.url(ADMIN, "/users"),
        &[
            ("X-Forwarded-Host", APP),
            ("X-Original-URL", &d.url(APP, "/users")),
        ],
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "{p}: ann on the admin app, with forwarded headers naming the app"
    );
    assert!(
        !d.upstream.saw("/users"),
        "{p}: /users never reached the app"
    );
}

async fn a_user_without_the_required_role_gets_403_and_one_with_it_passes(proxy: Proxy) {
    let Some(d) = Deployment::start(proxy).await else {
        return;
    };
    let p = d.proxy;
    d.latchkey.add_user("ann", PASSWORD, &["editor"]).await;
    d.latchkey.add_user("root", PASSWORD, &["admin"]).await;
    let original = d.url(ADMIN, "/settings?tab=users");

    let (ann, _) = d.client();
    sign_in_from(&d, &ann, "ann", &original).await;
    let r = navigate(&ann, &original).await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "{p}: ann (editor) on the admin app"
    );
    let r = api(&ann, &original, &[]).await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "{p}: ann's API call on the admin app"
    );
    assert!(
        !d.upstream.saw("/settings?tab=users"),
        "{p}: ann's requests never reached the app"
    );
    // The same session still opens the app, which needs no role.
    let r = api(&ann, &d.url(APP, "/"), &[]).await;
    assert_eq!(r.status(), StatusCode::OK, "{p}: ann on the app");

    let (root, _) = d.client();
    sign_in_from(&d, &root, "root", &original).await;
    let seen = headers_seen(
        &format!("{p}: root (admin) on the admin app"),
        navigate(&root, &original).await,
    )
    .await;
    assert_eq!(values(&seen, "remote-user"), ["root"], "{p}: Remote-User");
    assert_eq!(
        values(&seen, "remote-groups"),
        ["admin"],
        "{p}: Remote-Groups"
    );
}

async fn a_public_path_passes_without_sign_in_for_reading_only(proxy: Proxy) {
    let Some(d) = Deployment::start(proxy).await else {
        return;
    };
    let p = d.proxy;
    let (client, _) = d.client();
    for (what, r) in [
        (
            "a browser",
            navigate(&client, &d.url(APP, "/public/about")).await,
        ),
        (
            "an API client",
            api(&client, &d.url(APP, "/public/logo.png?v=2"), &[]).await,
        ),
    ] {
        assert_eq!(r.status(), StatusCode::OK, "{p}: {what} on a public path");
    }
    assert!(
        d.upstream.saw("/public/about") && d.upstream.saw("/public/logo.png?v=2"),
        "{p}: the public pages reached the app"
    );
    let r = client
        .head(d.url(APP, "/public/logo.png"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{p}: HEAD on a public path");
    // The rule is for GET and HEAD: the proxy tells latchkey the method.
    let r = client
        .post(d.url(APP, "/public/form"))
        .header(header::ACCEPT, "application/json")
        .form(&[("a", "b")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "{p}: POST on a public path needs a sign-in"
    );
    assert!(
        !d.upstream.saw("/public/form"),
        "{p}: the POST never reached the app"
    );
    // The public rule is the app's only: the admin host has none.
    let r = api(&client, &d.url(ADMIN, "/public/about"), &[]).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "{p}: /public/ on the admin app"
    );
}

async fn after_signing_out_the_next_request_is_refused(proxy: Proxy) {
    let Some(d) = Deployment::start(proxy).await else {
        return;
    };
    let p = d.proxy;
    d.latchkey.add_user("ann", PASSWORD, &[]).await;
    let (client, jar) = d.client();
    let original = d.url(APP, "/inbox");
    sign_in_from(&d, &client, "ann", &original).await;
    let r = api(&client, &original, &[]).await;
    assert_eq!(r.status(), StatusCode::OK, "{p}: signed in");
    let cookies = cookies_for_app(&d, &jar);

    // Signing out as a person does, from the app's "Sign out" link: the
    // portal's sign-out page, its form, and back to the app.
    let link = format!(
        "{}?rd={}",
        d.portal("/logout"),
        percent_encoding::utf8_percent_encode(&original, percent_encoding::NON_ALPHANUMERIC)
    );
    let r = navigate(&client, &link).await;
    assert_eq!(r.status(), StatusCode::OK, "{p}: the sign-out page");
    let page = r.text().await.unwrap();
    let rd = html_unescape(&common::hidden_field(&page, "rd"));
    assert_eq!(rd, original, "{p}: the sign-out form carries the app's URL");
    let r = client
        .post(d.portal("/logout"))
        .header(header::ORIGIN, d.public_url())
        .header(header::ACCEPT, BROWSER_ACCEPT)
        .form(&[
            ("csrf_token", common::hidden_field(&page, "csrf_token")),
            ("rd", rd),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER, "{p}: signing out");
    assert_eq!(
        location(&r).as_deref(),
        Some(original.as_str()),
        "{p}: signing out goes back to the app"
    );

    let r = api(&client, &original, &[]).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "{p}: the next request after signing out"
    );
    let r = navigate(&client, &original).await;
    assert_sent_to_sign_in(&d, "the next page after signing out", &r, &original);
    // The cookie a client might have kept is worth nothing either.
    let r = d
        .bare_client()
        .get(&original)
        .header(header::ACCEPT, "application/json")
        .header(header::COOKIE, &cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "{p}: the signed-out session's cookie, replayed"
    );
}

async fn after_the_session_is_revoked_the_next_request_is_refused(proxy: Proxy) {
    let Some(d) = Deployment::start(proxy).await else {
        return;
    };
    let p = d.proxy;
    d.latchkey.add_user("ann", PASSWORD, &[]).await;
    let (client, _) = d.client();
    let original = d.url(APP, "/inbox");
    sign_in_from(&d, &client, "ann", &original).await;
    let status = || async { api(&client, &original, &[]).await.status() };
    assert_eq!(status().await, StatusCode::OK, "{p}: signed in");

    d.latchkey
        .cli_ok(&["session", "revoke", "--user", "ann"], None)
        .await;
    // The CLI is another process: its change reaches the running server
    // through the store's change feed, within the feed's bound.
    common::within_the_feed_bound(
        &format!("{p}: the next request after `latchkey session revoke`"),
        StatusCode::OK,
        StatusCode::UNAUTHORIZED,
        status,
    )
    .await;
}

async fn the_portal_counts_failed_sign_ins_against_the_clients_address_not_the_proxys(
    proxy: Proxy,
) {
    let Some(d) = Deployment::start_with(proxy, &[("LATCHKEY_LOGIN_IP_MAX_FAILURES", "2")]).await
    else {
        return;
    };
    let p = d.proxy;
    d.latchkey.add_user("ann", PASSWORD, &[]).await;
    let sign_in = |client: Client, name: &'static str, password: &'static str| {
        let url = d.portal("/login");
        async move {
            common::json_login(&client, url, name, password)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // Two addresses on this machine, neither the proxy's 127.0.0.1.
    let guesser = d.client_from([127, 0, 0, 2].into());
    let owner = d.client_from([127, 0, 0, 3].into());
    for name in ["nobody", "noone"] {
        assert_eq!(
            sign_in(guesser.clone(), name, "wrong-guess-12-wrong").await,
            StatusCode::UNAUTHORIZED,
            "{p}: a failed sign-in from 127.0.0.2"
        );
    }
    assert_eq!(
        sign_in(guesser, "ann", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "{p}: 127.0.0.2 is locked after its failures"
    );
    // Were the proxy's address taken for the client's, this would be locked
    // too.
    assert_eq!(
        sign_in(owner, "ann", PASSWORD).await,
        StatusCode::OK,
        "{p}: ann signs in from 127.0.0.3"
    );
}

/// The TCP connections on this machine to `port` (in every state but
/// listening, so also those closed and waiting out TIME_WAIT), each named by
/// its other end's port, from `/proc/net/tcp`.
fn connections_to(port: u16) -> std::collections::BTreeSet<u16> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let port_of = |field: &str| u16::from_str_radix(field.rsplit(':').next()?, 16).ok();
            let (local, remote) = (port_of(fields[1])?, port_of(fields[2])?);
            // Both ends of a loopback connection are rows: either names it.
            match (fields[3] == "0A", local == port, remote == port) {
                (false, true, false) => Some(remote),
                (false, false, true) => Some(local),
                _ => None,
            }
        })
        .collect()
}

/// Asks `n` times for `path` on `host`, each answered `expected`, and
/// returns how many new connections the proxy opened to latchkey meanwhile.
async fn connections_for_checks(
    d: &Deployment,
    client: &Client,
    host: &str,
    path: &str,
    expected: StatusCode,
) -> usize {
    let latchkey = d.latchkey.addr.port();
    let before = connections_to(latchkey);
    for i in 0..30 {
        let r = api(client, &d.url(host, &format!("{path}{i}")), &[]).await;
        assert_eq!(r.status(), expected, "{}: {host}{path}{i}", d.proxy);
    }
    connections_to(latchkey).difference(&before).count()
}

async fn allowed_checks_reuse_the_proxys_connections_to_latchkey(proxy: Proxy) {
    let Some(d) = Deployment::start(proxy).await else {
        return;
    };
    let p = d.proxy;
    let (client, _) = d.client();
    let opened = connections_for_checks(&d, &client, APP, "/public/", StatusCode::OK).await;
    assert!(
        opened <= 2,
        "{p}: 30 allowed checks opened {opened} connections to latchkey"
    );
}

async fn refused_checks_reuse_the_proxys_connections_to_latchkey(proxy: Proxy) {
    let Some(d) = Deployment::start(proxy).await else {
        return;
    };
    let p = d.proxy;
    let (client, _) = d.client();
    let opened =
        connections_for_checks(&d, &client, APP, "/private/", StatusCode::UNAUTHORIZED).await;
    assert!(
        opened <= 2,
        "{p}: 30 checks answered 401 opened {opened} connections to latchkey"
    );
    d.latchkey.add_user("ann", PASSWORD, &[]).await;
    sign_in_from(&d, &client, "ann", &d.url(APP, "/")).await;
    let opened = connections_for_checks(&d, &client, ADMIN, "/", StatusCode::FORBIDDEN).await;
    assert!(
        opened <= 2,
        "{p}: 30 checks answered 403 opened {opened} connections to latchkey"
    );
}

/// One module per proxy, with every behaviour above as a test of its own.
macro_rules! behind {
    ($proxy:ident, $module:ident) => {
        mod $module {
            use super::Proxy;

            #[tokio::test]
            async fn an_anonymous_browser_is_sent_to_sign_in_and_an_api_client_gets_401() {
                super::an_anonymous_browser_is_sent_to_sign_in_and_an_api_client_gets_401(
                    Proxy::$proxy,
                )
                .await;
            }

            #[tokio::test]
            async fn signing_in_through_the_portal_lands_on_the_original_url_and_the_app_learns_who()
             {
                super::signing_in_through_the_portal_lands_on_the_original_url_and_the_app_learns_who(
                    Proxy::$proxy,
                )
                .await;
            }

            #[tokio::test]
            async fn identity_headers_a_client_sends_never_reach_the_app() {
                super::identity_headers_a_client_sends_never_reach_the_app(Proxy::$proxy).await;
            }

            #[tokio::test]
            async fn rewrite_headers_a_client_sends_never_reach_the_app_and_the_checks_are_closed_outside() {
                super::rewrite_headers_a_client_sends_never_reach_the_app_and_the_checks_are_closed_outside(
                    Proxy::$proxy,
                )
                .await;
            }

            #[tokio::test]
            async fn forwarded_headers_a_client_sends_cannot_choose_the_rule() {
                super::forwarded_headers_a_client_sends_cannot_choose_the_rule(Proxy::$proxy)
                    .await;
            }

            #[tokio::test]
            async fn a_user_without_the_required_role_gets_403_and_one_with_it_passes() {
                super::a_user_without_the_required_role_gets_403_and_one_with_it_passes(
                    Proxy::$proxy,
                )
                .await;
            }

            #[tokio::test]
            async fn a_public_path_passes_without_sign_in_for_reading_only() {
                super::a_public_path_passes_without_sign_in_for_reading_only(Proxy::$proxy).await;
            }

            #[tokio::test]
            async fn after_signing_out_the_next_request_is_refused() {
                super::after_signing_out_the_next_request_is_refused(Proxy::$proxy).await;
            }

            #[tokio::test]
            async fn the_portal_counts_failed_sign_ins_against_the_clients_address_not_the_proxys()
             {
                super::the_portal_counts_failed_sign_ins_against_the_clients_address_not_the_proxys(
                    Proxy::$proxy,
                )
                .await;
            }

            #[tokio::test]
            async fn allowed_checks_reuse_the_proxys_connections_to_latchkey() {
                super::allowed_checks_reuse_the_proxys_connections_to_latchkey(Proxy::$proxy)
                    .await;
            }

            #[tokio::test]
            async fn refused_checks_reuse_the_proxys_connections_to_latchkey() {
                super::refused_checks_reuse_the_proxys_connections_to_latchkey(Proxy::$proxy)
                    .await;
            }

            #[tokio::test]
            async fn after_the_session_is_revoked_the_next_request_is_refused() {
                super::after_the_session_is_revoked_the_next_request_is_refused(Proxy::$proxy)
                    .await;
            }
        }
    };
}

behind!(Nginx, nginx);
behind!(Caddy, caddy);
behind!(Traefik, traefik);

/// The README shows each tested configuration file whole: after a line
/// `<!-- path -->`, the first fenced block is the file as it is.
#[test]
fn the_readme_shows_the_tested_configuration_files_as_they_are() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    for path in [
        "deploy/access.toml",
        "deploy/nginx/latchkey.conf",
        "deploy/caddy/Caddyfile",
        "deploy/traefik/traefik.yml",
        "deploy/traefik/dynamic.yml",
    ] {
        let file = std::fs::read_to_string(root.join(path)).unwrap();
        let marker = format!("<!-- {path} -->");
        let after = &readme[readme
            .find(&marker)
            .unwrap_or_else(|| panic!("the README does not show {path}"))..];
        let fence = after.find("```").unwrap();
        let body = &after[fence..];
        let body = &body[body.find('\n').unwrap() + 1..];
        let body = &body[..body.find("```").unwrap()];
        assert_eq!(
            body.trim_end(),
            file.trim_end(),
            "the README's copy of {path} differs from the file"
        );
    }
}
