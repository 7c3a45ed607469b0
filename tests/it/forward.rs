//! Forward-auth over HTTP: `/auth/forward` (X-Forwarded-*) and
//! `/auth/nginx` (X-Original-*) against the real service, one decision
//! behind both: method × Accept × session × rule, and every bad header.

use crate::common;

use common::{PASSWORD, TestApp};
use reqwest::{Method, Response, StatusCode, header};

/// The rules every test here runs under.
const RULES: &str = r#"
[access]
default = "signed_in"

[[access.rules]]
paths = ["/public/*", "/health"]
methods = ["GET", "HEAD"]
policy = "public"

[[access.rules]]
hosts = ["admin.example.test"]
policy = "roles"
roles = ["admin"]

[[access.rules]]
paths = ["/admin/*"]
policy = "deny"
"#;

async fn app() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.toml");
    std::fs::write(&file, RULES).unwrap();
    let app = TestApp::spawn_with(&[("LATCHKEY_CONFIG", file.to_str().unwrap())]).await;
    // The file must outlive the start-up only; keep it with the app anyway.
    std::mem::forget(dir);
    app
}

/// A check by the Traefik/Caddy contract for `https://{host}{uri}`.
async fn forward(
    app: &TestApp,
    method: &str,
    host: &str,
    uri: &str,
    extra: &[(&str, &str)],
) -> Response {
    let mut r = app
        .request(Method::GET, "/auth/forward")
        .header("X-Forwarded-Method", method)
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", host)
        .header("X-Forwarded-Uri", uri);
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

/// A check by the nginx contract.
async fn nginx(app: &TestApp, method: &str, url: &str, extra: &[(&str, &str)]) -> Response {
    let mut r = app
        .request(Method::GET, "/auth/nginx")
        .header("X-Original-Method", method)
        .header("X-Original-URL", url);
    for (k, v) in extra {
        r = r.header(*k, *v);
    }
    r.send().await.unwrap()
}

fn header_of<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers().get(name).and_then(|v| v.to_str().ok())
}

fn login_location(app: &TestApp, original: &str) -> String {
    let encoded: String =
        percent_encoding::utf8_percent_encode(original, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    format!("{}/login?rd={encoded}", app.base)
}

/// A check's method, its extra headers, and the status it must get.
type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], StatusCode);

const BROWSER: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

#[tokio::test]
async fn a_signed_in_user_passes_with_the_identity_headers() {
    let app = app().await;
    app.add_user("ann", PASSWORD, &["editor", "admin"]).await;
    app.sign_in("ann", PASSWORD).await;
    let r = forward(&app, "GET", "app.example.test", "/dashboard?x=1", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, "remote-user"), Some("ann"));
    let groups = header_of(&r, "remote-groups").unwrap();
    let mut groups: Vec<&str> = groups.split(',').collect();
    groups.sort_unstable();
    assert_eq!(groups, ["admin", "editor"]);
    assert_eq!(header_of(&r, "remote-name"), Some(""));
    assert_eq!(header_of(&r, "remote-email"), Some(""));
    assert_eq!(header_of(&r, "cache-control"), Some("no-store"));
    assert!(
        r.text().await.unwrap().is_empty(),
        "an allowed answer has no body"
    );
    let r = nginx(&app, "POST", "https://app.example.test/dashboard", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, "remote-user"), Some("ann"));
}

#[tokio::test]
async fn an_anonymous_browser_is_sent_to_sign_in_and_any_other_client_gets_401() {
    let app = app().await;
    let original = "https://app.example.test/reports/1?tab=a%20b";
    let location = login_location(&app, original);
    // method, headers, expected status
    let cases: [Case<'_>; 8] = [
        ("GET", &[("Accept", BROWSER)], StatusCode::FOUND),
        ("HEAD", &[("Accept", BROWSER)], StatusCode::FOUND),
        (
            "OPTIONS",
            &[("Sec-Fetch-Mode", "navigate")],
            StatusCode::FOUND,
        ),
        (
            "GET",
            &[("Sec-Fetch-Mode", "navigate"), ("Accept", "*/*")],
            StatusCode::FOUND,
        ),
        ("POST", &[("Accept", BROWSER)], StatusCode::SEE_OTHER),
        (
            "GET",
            &[("Accept", "application/json")],
            StatusCode::UNAUTHORIZED,
        ),
        (
            "GET",
            &[("Accept", "*/*"), ("Sec-Fetch-Mode", "cors")],
            StatusCode::UNAUTHORIZED,
        ),
        ("DELETE", &[], StatusCode::UNAUTHORIZED),
    ];
    for (method, headers, expected) in cases {
        let r = forward(
            &app,
            method,
            "app.example.test",
            "/reports/1?tab=a%20b",
            headers,
        )
        .await;
        assert_eq!(r.status(), expected, "{method} {headers:?}");
        assert_eq!(
            header_of(&r, "location"),
            Some(location.as_str()),
            "{method} {headers:?}"
        );
        assert_eq!(header_of(&r, "cache-control"), Some("no-store"));
        assert_eq!(
            r.headers().contains_key("www-authenticate"),
            expected == StatusCode::UNAUTHORIZED,
            "{method} {headers:?}"
        );
        assert!(!r.headers().contains_key("remote-user"));
    }
    // nginx accepts only 2xx, 401 and 403: always 401, with the Location.
    for headers in [
        &[("Accept", BROWSER)][..],
        &[("Accept", "application/json")][..],
    ] {
        let r = nginx(&app, "GET", original, headers).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(header_of(&r, "location"), Some(location.as_str()));
        assert!(r.headers().contains_key("www-authenticate"));
    }
}

#[tokio::test]
async fn the_first_matching_rule_decides() {
    let app = app().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.add_user("root", PASSWORD, &["admin"]).await;
    let host = "app.example.test";

    // Anonymous: the public rule lets through, with empty identity headers
    // (a proxy that deletes then copies them overwrites a client's own).
    let r = forward(
        &app,
        "GET",
        host,
        "/public/logo.png",
        &[("Remote-User", "root")],
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    for name in [
        "remote-user",
        "remote-groups",
        "remote-name",
        "remote-email",
    ] {
        assert_eq!(header_of(&r, name), Some(""), "{name}");
    }
    assert_eq!(
        forward(&app, "HEAD", host, "/health", &[]).await.status(),
        StatusCode::OK
    );
    // The public rule is for GET and HEAD only.
    assert_eq!(
        forward(&app, "POST", host, "/public/form", &[])
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );

    app.sign_in("ann", PASSWORD).await;
    assert_eq!(
        forward(&app, "GET", host, "/anything", &[]).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        forward(&app, "GET", "admin.example.test", "/", &[])
            .await
            .status(),
        StatusCode::FORBIDDEN,
        "a user without the role"
    );
    assert_eq!(
        forward(&app, "GET", host, "/admin/users", &[])
            .await
            .status(),
        StatusCode::FORBIDDEN,
        "a deny rule"
    );

    app.sign_in("root", PASSWORD).await;
    let r = forward(&app, "GET", "Admin.Example.Test", "/", &[]).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "a user with the role (host case ignored)"
    );
    assert_eq!(header_of(&r, "remote-user"), Some("root"));
    assert_eq!(
        forward(&app, "GET", host, "/admin/users", &[])
            .await
            .status(),
        StatusCode::FORBIDDEN,
        "deny holds for an admin too"
    );
}

#[tokio::test]
async fn a_path_that_normalises_elsewhere_cannot_choose_a_more_lenient_rule() {
    let app = app().await;
    app.add_user("root", PASSWORD, &["admin"]).await;
    app.sign_in("root", PASSWORD).await;
    let host = "app.example.test";
    // Spellings of /admin, and its case (many apps route /Admin as /admin):
    // a rule that restricts matches them all.
    for uri in ["/%61dmin/x", "/admin", "/Admin/x", "/ADMIN"] {
        assert_eq!(
            forward(&app, "GET", host, uri, &[]).await.status(),
            StatusCode::FORBIDDEN,
            "{uri} is under /admin"
        );
    }
    // Paths an app may read otherwise than latchkey would: refused, never
    // resolved (an app that routes /secret/../public as /secret/<path>
    // would be served /secret by the public rule).
    for uri in [
        "/public/../admin/x",
        "/admin/../public/x",
        "//admin/x",
        "/public/%2e%2e/admin/x",
        "/public/.%2E/admin/x",
        "/./admin/x",
        "/admin//../public/x",
        "/public/x/.",
        "/public/%2F..%2Fadmin",
        "/public/..%5cadmin",
        "/public\\..\\admin",
        "/..",
        "/public/%zz",
        "/public/..;/admin",
        "/admin;jsessionid=1",
    ] {
        let r = forward(&app, "GET", host, uri, &[]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(r.text().await.unwrap().contains("x-forwarded-uri"), "{uri}");
    }
}

#[tokio::test]
async fn forwarded_headers_missing_repeated_or_odd_are_refused_never_allowed() {
    let app = app().await;
    app.add_user("root", PASSWORD, &["admin"]).await;
    app.sign_in("root", PASSWORD).await;
    let all = [
        ("X-Forwarded-Method", "GET"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "app.example.test"),
        ("X-Forwarded-Uri", "/public/x"),
    ];
    // Each header missing, then each sent twice: even a public path with a
    // signed-in admin is refused, and the refusal names the header.
    for skip in 0..all.len() {
        for twice in [false, true] {
            let mut r = app.request(Method::GET, "/auth/forward");
            for (i, (k, v)) in all.iter().enumerate() {
                if i != skip {
                    r = r.header(*k, *v);
                } else if twice {
                    r = r.header(*k, *v).header(*k, *v);
                }
            }
            let r = r.send().await.unwrap();
            let name = all[skip].0.to_ascii_lowercase();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name} twice: {twice}");
            assert!(!r.headers().contains_key("remote-user"));
            assert!(r.text().await.unwrap().contains(&name), "{name}");
        }
    }
    let odd = [
        ("X-Forwarded-Proto", "ftp"),
        ("X-Forwarded-Proto", ""),
        ("X-Forwarded-Host", "a b.example.test"),
        ("X-Forwarded-Host", "app.example.test:99999"),
        ("X-Forwarded-Host", ""),
        ("X-Forwarded-Method", "G ET"),
        ("X-Forwarded-Uri", "public/x"),
        ("X-Forwarded-Uri", "/public/x#frag"),
    ];
    for (name, value) in odd {
        let mut r = app.request(Method::GET, "/auth/forward");
        for (k, v) in all {
            r = r.header(k, if k == name { value } else { v });
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{name}: {value:?}");
        assert!(
            r.text().await.unwrap().contains(&name.to_ascii_lowercase()),
            "{name}: {value:?}"
        );
    }
    for url in [
        "app.example.test/public/x",
        "https://root@app.example.test/public/x",
        "gopher://app.example.test/public/x",
        "https:///public/x",
        "https://app.example.test/public/%2f",
        // What nginx sends for `Host: app.example.test:443?` and any path.
        "https://app.example.test:443?/admin/x",
        "https://app.example.test?/admin/x",
        "https://app.example.test/public/../admin",
    ] {
        let r = nginx(&app, "GET", url, &[]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{url}");
        assert!(r.text().await.unwrap().contains("x-original-url"), "{url}");
    }
    let r = app
        .request(Method::GET, "/auth/nginx")
        .header("X-Original-URL", "https://app.example.test/public/x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST, "no X-Original-Method");
}

#[tokio::test]
async fn a_signed_out_session_is_refused_at_the_next_check() {
    let app = app().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let csrf = app.sign_in("ann", PASSWORD).await;
    let cookie = format!("latchkey={}", app.session_cookie().unwrap());
    let host = "app.example.test";
    let with_cookie = [("Cookie", cookie.as_str())];
    let (stranger, _) = common::client();
    let check = || {
        stranger
            .get(app.url("/auth/forward"))
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", host)
            .header("X-Forwarded-Uri", "/x")
            .header(with_cookie[0].0, with_cookie[0].1)
            .send()
    };
    assert_eq!(check().await.unwrap().status(), StatusCode::OK);
    let r = app
        .request(Method::POST, "/logout")
        .header(header::ACCEPT, "application/json")
        .header("X-CSRF-Token", csrf)
        .header(header::ORIGIN, app.base.as_str())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "logout: {}", r.status());
    // The same cookie, as a client that kept it would still send it.
    assert_eq!(check().await.unwrap().status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_method_not_in_upper_case_is_refused() {
    let app = app().await;
    // Apps differ on whether `delete` is DELETE: refused, it can neither
    // pass a rule for GET nor slip past one for DELETE.
    for method in ["get", "Get", "gET", "delete"] {
        let r = forward(&app, method, "app.example.test", "/public/x", &[]).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{method}");
        assert!(r.text().await.unwrap().contains("x-forwarded-method"));
    }
    let r = forward(&app, "GET", "app.example.test", "/public/x", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn an_access_default_of_deny_refuses_what_no_rule_allows() {
    let app = TestApp::spawn_with(&[("LATCHKEY_ACCESS_DEFAULT", "deny")]).await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    assert_eq!(
        forward(&app, "GET", "app.example.test", "/", &[])
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
}

#[tokio::test]
async fn signing_in_from_the_forward_auth_redirect_lands_on_the_original_url() {
    let app = app().await;
    app.add_user("ann", PASSWORD, &[]).await;
    // An app on another port of latchkey's own host (plain http: loopback).
    let original = format!("http://{}:9/reports?id=7", app.addr.ip());
    let uri = "/reports?id=7";
    let r = app
        .request(Method::GET, "/auth/forward")
        .header("X-Forwarded-Method", "GET")
        .header("X-Forwarded-Proto", "http")
        .header("X-Forwarded-Host", format!("{}:9", app.addr.ip()))
        .header("X-Forwarded-Uri", uri)
        .header("Accept", BROWSER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FOUND);
    let location = header_of(&r, "location").unwrap().to_owned();
    assert_eq!(location, login_location(&app, &original));
    let page = common::page_text(&app.client, &location).await;
    assert_eq!(
        common::hidden_field(&page, "next"),
        original.replace('&', "&amp;")
    );
    let r = app
        .request(Method::POST, "/login")
        .header(header::ORIGIN, app.base.as_str())
        .form(&[
            ("username", "ann"),
            ("password", PASSWORD),
            ("next", original.as_str()),
            ("csrf_token", &common::hidden_field(&page, "csrf_token")),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(header_of(&r, "location"), Some(original.as_str()));
}

#[tokio::test]
async fn a_return_url_off_this_host_is_not_followed() {
    let app = app().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let ip = app.addr.ip();
    for rd in [
        "https://evil.example/".to_owned(),
        format!("http://{ip}.evil.example/"),
        format!("http://evil.example@{ip}/"),
        format!("http://{ip}\\@evil.example/"),
        "javascript:alert(1)".to_owned(),
        "//evil.example/".to_owned(),
    ] {
        let (client, _) = common::client();
        let encoded =
            percent_encoding::utf8_percent_encode(&rd, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let page = common::page_text(&client, &app.url(&format!("/login?rd={encoded}"))).await;
        assert_eq!(common::hidden_field(&page, "next"), "/profile", "{rd}");
        let r = client
            .post(app.url("/login"))
            .header(header::ORIGIN, app.base.as_str())
            .form(&[
                ("username", "ann"),
                ("password", PASSWORD),
                ("next", rd.as_str()),
                ("csrf_token", &common::hidden_field(&page, "csrf_token")),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{rd}");
        assert_eq!(header_of(&r, "location"), Some("/profile"), "{rd}");
    }
}

#[tokio::test]
async fn access_check_names_the_rule_and_the_verdict() {
    let app = app().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.add_user("root", PASSWORD, &["admin"]).await;
    let check = |args: Vec<&'static str>| async {
        let mut all = vec!["access", "check"];
        all.extend(args);
        common::stdout(&app.cli_ok(&all, None).await)
    };
    let out = check(vec!["https://app.example.test/%61dmin/x"]).await;
    assert!(
        out.contains("GET https://app.example.test/admin/x"),
        "{out}"
    );
    assert!(out.contains("rule 3: deny"), "{out}");
    assert!(out.contains("not signed in: forbidden (403)"), "{out}");
    let out = check(vec!["https://admin.example.test/", "--user", "ann"]).await;
    assert!(out.contains("rule 2: roles (admin)"), "{out}");
    assert!(out.contains("ann (roles: "), "{out}");
    assert!(out.contains("forbidden (403)"), "{out}");
    let out = check(vec!["https://admin.example.test/", "--user", "root"]).await;
    assert!(out.contains("root (roles: admin): allowed (200)"), "{out}");
    let out = check(vec!["https://app.example.test/x", "--method", "post"]).await;
    assert!(out.contains("POST https://app.example.test/x"), "{out}");
    assert!(
        out.contains("no rule matches: the default, signed_in"),
        "{out}"
    );
    assert!(out.contains("not signed in: must sign in"), "{out}");
    for url in [
        "https://app.example.test/a%2fb",
        "https://app.example.test/public/../admin/x",
    ] {
        let bad = app.cli(&["access", "check", url], None).await;
        assert!(!bad.status.success());
        assert!(
            common::stderr(&bad).contains("would get 400"),
            "{}",
            common::stderr(&bad)
        );
    }
    // Without the file that has the rules, it says so.
    let out = common::run_cli(
        &common::base_env(&tempfile::tempdir().unwrap()),
        &["access", "check", "https://app.example.test/x"],
        None,
    )
    .await;
    assert!(
        common::stdout(&out).contains("no access rules are configured"),
        "{}",
        common::stdout(&out)
    );
}

/// A portal at `https://auth.example.test` sharing its session with every
/// host under `example.test` (TLS ends at a proxy in front; the test talks
/// to the listener directly, so it carries the `Secure` cookies by hand).
async fn portal() -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.toml");
    std::fs::write(&file, RULES).unwrap();
    let app = TestApp::spawn_with(&[
        ("LATCHKEY_CONFIG", file.to_str().unwrap()),
        ("LATCHKEY_PUBLIC_URL", "https://auth.example.test"),
        ("LATCHKEY_COOKIE_DOMAIN", "example.test"),
    ])
    .await;
    std::mem::forget(dir);
    app
}

const PORTAL: &str = "https://auth.example.test";

/// `name=value` of the cookie `name` that a response sets.
fn set_cookie(r: &Response, name: &str) -> Option<(String, String)> {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|line| {
            let pair = line.split(';').next().unwrap_or_default().to_owned();
            (pair, line.to_owned())
        })
}

fn encoded(url: &str) -> String {
    percent_encoding::utf8_percent_encode(url, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Signs in through the portal's form with `next` = `rd`; the answer.
async fn sign_in_at_portal(app: &TestApp, rd: &str) -> Response {
    let page = app.get(&format!("/login?rd={}", encoded(rd))).await;
    assert_eq!(page.status(), StatusCode::OK);
    let (csrf_cookie, _) = set_cookie(&page, "__Secure-latchkey-csrf").expect("a CSRF cookie");
    let html = page.text().await.unwrap();
    app.request(Method::POST, "/login")
        .header(header::ORIGIN, PORTAL)
        .header(header::COOKIE, csrf_cookie)
        .form(&[
            ("username", "ann"),
            ("password", PASSWORD),
            ("next", common::hidden_field(&html, "next").as_str()),
            ("csrf_token", &common::hidden_field(&html, "csrf_token")),
        ])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_cookie_domain_shares_the_session_with_every_host_under_it() {
    let app = portal().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let rd = "https://app.example.test/reports?id=7";
    let page = app.get(&format!("/login?rd={}", encoded(rd))).await;
    let (_, line) = set_cookie(&page, "__Secure-latchkey-csrf").expect("a CSRF cookie");
    assert!(
        line.contains("; Domain=example.test;") && line.contains("; Secure"),
        "{line}"
    );
    let csp = header_of(&page, "content-security-policy")
        .unwrap()
        .to_owned();
    // The form's answer redirects to the app's host: browsers hold form
    // redirects to `form-action`.
    assert!(
        csp.contains("form-action 'self' https://auth.example.test:* https://example.test:* https://*.example.test:*"),
        "{csp}"
    );
    assert_eq!(
        common::hidden_field(&page.text().await.unwrap(), "next"),
        rd.replace('&', "&amp;")
    );

    let r = sign_in_at_portal(&app, rd).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(header_of(&r, "location"), Some(rd));
    let (session, line) = set_cookie(&r, "__Secure-latchkey").expect("a session cookie");
    assert!(
        line.contains("; Domain=example.test;") && line.contains("HttpOnly"),
        "{line}"
    );

    // The app's host sends the same cookie: the check lets it through.
    let r = check_with(&app, "/reports?id=7", &session).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header_of(&r, "remote-user"), Some("ann"));
}

#[tokio::test]
async fn a_return_url_outside_the_cookie_domain_is_not_followed() {
    let app = portal().await;
    app.add_user("ann", PASSWORD, &[]).await;
    for rd in [
        "https://example.test.evil.net/",
        "https://evilexample.test/",
        "https://app.example.test@evil.net/",
        "https://evil.net/?https://app.example.test/",
        "http://app.example.test/",
        "https://app.example.test\\@evil.net/",
        "https://test/",
    ] {
        let page = app.get(&format!("/login?rd={}", encoded(rd))).await;
        let html = page.text().await.unwrap();
        assert_eq!(common::hidden_field(&html, "next"), "/profile", "{rd}");
        let r = sign_in_at_portal(&app, rd).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{rd}");
        assert_eq!(header_of(&r, "location"), Some("/profile"), "{rd}");
    }
}

/// A check of `https://app.example.test{uri}` carrying the session cookie.
async fn check_with(app: &TestApp, uri: &str, session: &str) -> Response {
    forward(app, "GET", "app.example.test", uri, &[("Cookie", session)]).await
}

/// `GET path` with the session cookie.
async fn get_with(app: &TestApp, path: &str, session: &str) -> Response {
    app.request(Method::GET, path)
        .header(header::COOKIE, session)
        .send()
        .await
        .unwrap()
}

/// Signs out through the portal's form, with `rd` in it; the answer.
async fn sign_out_at_portal(app: &TestApp, session: &str, rd: &str) -> Response {
    let html = get_with(app, "/logout", session)
        .await
        .text()
        .await
        .unwrap();
    let token = common::hidden_field(&html, "csrf_token");
    app.request(Method::POST, "/logout")
        .header(header::ORIGIN, PORTAL)
        .header(header::COOKIE, session)
        .form(&[("csrf_token", token.as_str()), ("rd", rd)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn signing_out_with_rd_returns_to_the_app_and_ends_the_session_everywhere() {
    let app = portal().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let rd = "https://app.example.test/";
    let r = sign_in_at_portal(&app, rd).await;
    let (session, _) = set_cookie(&r, "__Secure-latchkey").unwrap();

    let page = get_with(&app, &format!("/logout?rd={}", encoded(rd)), &session).await;
    let csp = header_of(&page, "content-security-policy").unwrap();
    assert!(csp.contains("https://*.example.test:*"), "{csp}");
    assert_eq!(common::hidden_field(&page.text().await.unwrap(), "rd"), rd);
    // A return URL elsewhere is not even put in the form.
    let elsewhere = get_with(&app, "/logout?rd=https%3A%2F%2Fevil.net%2F", &session).await;
    let elsewhere = elsewhere.text().await.unwrap();
    assert!(
        !elsewhere.contains("name=\"rd\"") && !elsewhere.contains("evil.net"),
        "{elsewhere}"
    );

    let r = sign_out_at_portal(&app, &session, rd).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(header_of(&r, "location"), Some(rd));
    let (_, cleared) = set_cookie(&r, "__Secure-latchkey").expect("the cookie removed");
    assert!(
        cleared.contains("Max-Age=0") && cleared.contains("Domain=example.test"),
        "{cleared}"
    );
    let r = check_with(&app, "/", &session).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn signing_out_with_a_foreign_rd_lands_on_the_sign_in_page() {
    let app = portal().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let r = sign_in_at_portal(&app, "https://app.example.test/").await;
    let (session, _) = set_cookie(&r, "__Secure-latchkey").unwrap();
    let r = sign_out_at_portal(&app, &session, "https://evilexample.test/").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(header_of(&r, "location"), Some("/login?reason=signed_out"));
    let r = check_with(&app, "/", &session).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_cookie_domain_the_public_url_is_not_under_is_refused_at_start() {
    for (public, domain, says) in [
        (
            "https://auth.example.test",
            "other.test",
            "the public URL's host must be this domain or under it",
        ),
        (
            "https://auth.example.test",
            "xample.test",
            "the public URL's host must be this domain or under it",
        ),
        ("http://127.0.0.1:0", "example.test", "must be https"),
        ("https://auth.example.test", "test", "two labels or more"),
        (
            "https://auth.example.test",
            "exa mple.test",
            "not a host name",
        ),
        ("https://127.0.0.1", "0.0.1", "not a host name"),
        ("https://auth.example.co.uk", "co.uk", "a public suffix"),
        ("https://me.github.io", "github.io", "a public suffix"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut env = common::base_env(&dir);
        env.push(("LATCHKEY_PUBLIC_URL".into(), public.into()));
        env.push(("LATCHKEY_COOKIE_DOMAIN".into(), domain.into()));
        let config = latchkey::Config::load_from(None, env).unwrap();
        let Err(e) = latchkey::Application::build(config).await else {
            panic!("{public} with {domain} was accepted");
        };
        let message = format!("{e:#}");
        assert!(
            message.contains(&format!("cookie domain {domain:?}")),
            "{message}"
        );
        assert!(message.contains(says), "{domain}: {message}");
    }
}

/// `Remote-Name` and `Remote-Email` of a check of `https://app.example.test/`.
async fn name_and_email(app: &TestApp) -> (String, String) {
    let r = forward(app, "GET", "app.example.test", "/", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let text = |name| String::from_utf8(r.headers()[name].as_bytes().to_vec()).unwrap();
    (text("remote-name"), text("remote-email"))
}

#[tokio::test]
async fn display_names_and_emails_are_kept_listed_and_sent_to_apps() {
    let app = app().await;
    app.cli_ok(
        &[
            "user",
            "add",
            "zoe",
            "--name",
            " Zoë Ōkubo ",
            "--email",
            "zoe@Example.com",
            "--password-stdin",
        ],
        Some(PASSWORD),
    )
    .await;
    let list = common::stdout(&app.cli_ok(&["user", "list"], None).await);
    assert!(list.contains("NAME") && list.contains("EMAIL"), "{list}");
    assert!(
        list.contains("Zoë Ōkubo") && list.contains("zoe@example.com"),
        "{list}"
    );
    let json: serde_json::Value = serde_json::from_str(&common::stdout(
        &app.cli_ok(&["user", "list", "--json"], None).await,
    ))
    .unwrap();
    assert_eq!(json[0]["display_name"], "Zoë Ōkubo");
    assert_eq!(json[0]["email"], "zoe@example.com");

    app.sign_in("zoe", PASSWORD).await;
    assert_eq!(
        name_and_email(&app).await,
        ("Zoë Ōkubo".to_owned(), "zoe@example.com".to_owned())
    );
    let profile: serde_json::Value = app.get_json("/profile").await.json().await.unwrap();
    assert_eq!(profile["display_name"], "Zoë Ōkubo");

    // Changed by another process: the next checks see it within the feed's bound.
    let out = app
        .cli_ok(&["user", "set", "zoe", "--email", ""], None)
        .await;
    assert!(
        common::stdout(&out).contains("e-mail (none)"),
        "{}",
        common::stdout(&out)
    );
    common::eventually(common::FEED_BOUND, "the e-mail cleared", || async {
        name_and_email(&app).await == ("Zoë Ōkubo".to_owned(), String::new())
    })
    .await;
    app.cli_ok(&["user", "set", "zoe", "--name", "Zoe"], None)
        .await;
    common::eventually(common::FEED_BOUND, "the new name", || async {
        name_and_email(&app).await.0 == "Zoe"
    })
    .await;
    assert_eq!(
        app.profile_status().await,
        StatusCode::OK,
        "a new name ends no session"
    );
}

#[tokio::test]
async fn a_display_name_or_email_that_could_forge_a_header_is_refused_and_changes_nothing() {
    let app = app().await;
    app.cli_ok(
        &[
            "user",
            "add",
            "zoe",
            "--name",
            "Zoe",
            "--email",
            "zoe@example.com",
            "--password-stdin",
        ],
        Some(PASSWORD),
    )
    .await;
    let before = common::stdout(&app.cli_ok(&["user", "list", "--json"], None).await);
    for (args, says) in [
        (
            vec!["user", "set", "zoe", "--name", "Zoe\r\nRemote-User: admin"],
            "control characters",
        ),
        (
            vec!["user", "set", "zoe", "--name", "Zoe\u{202E}nimda"],
            "invisible characters",
        ),
        (
            vec![
                "user",
                "set",
                "zoe",
                "--email",
                "zoe@example.com\r\nRemote-User: admin",
            ],
            "e-mail address",
        ),
        (
            vec!["user", "set", "zoe", "--email", "admin, zoe@example.com"],
            "e-mail address",
        ),
        (vec!["user", "set", "zoe"], "nothing to change"),
        (
            vec!["user", "set", "nobody", "--name", "X"],
            "no user named \"nobody\"",
        ),
    ] {
        let out = app.cli(&args, None).await;
        assert!(!out.status.success(), "{args:?}");
        let err = common::stderr(&out);
        assert!(err.contains(says), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
    let out = app
        .cli(
            &["user", "add", "bob", "--email", "bob", "--password-stdin"],
            Some(PASSWORD),
        )
        .await;
    assert!(!out.status.success());
    assert!(
        common::stderr(&out).contains("e-mail address"),
        "{}",
        common::stderr(&out)
    );
    let after = common::stdout(&app.cli_ok(&["user", "list", "--json"], None).await);
    assert_eq!(before, after, "nothing changed");
}

#[tokio::test]
async fn a_signed_in_users_refused_check_is_audited_and_nothing_else_is() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.toml");
    std::fs::write(&file, RULES).unwrap();
    let mut env = common::base_env(&dir);
    env.push(("LATCHKEY_CONFIG".into(), file.display().to_string()));
    common::add_user(&env, "ann", PASSWORD, &[]).await;
    let mut server = common::process::ServerProcess::start(dir.path(), &env).await;
    let (client, jar) = common::client();
    let r = client
        .post(server.url("/login"))
        .header(header::ACCEPT, "application/json")
        .json(&serde_json::json!({"username": "ann", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let cookie = format!(
        "latchkey={}",
        common::cookie_named(&jar, &server.base, "latchkey").unwrap()
    );
    // Without a cookie jar: the cookie goes only where it is given.
    let bare = reqwest::Client::new();
    let check = |uri: &'static str, cookie: Option<String>| {
        let mut r = bare
            .get(server.url("/auth/forward"))
            .header("X-Forwarded-Method", "GET")
            .header("X-Forwarded-Proto", "https")
            .header("X-Forwarded-Host", "app.example.test")
            .header("X-Forwarded-Uri", uri);
        if let Some(cookie) = cookie {
            r = r.header(header::COOKIE, cookie);
        }
        async move { r.send().await.unwrap().status() }
    };
    assert_eq!(
        check("/reports", Some(cookie.clone())).await,
        StatusCode::OK
    );
    assert_eq!(check("/admin/anonymous", None).await, StatusCode::FORBIDDEN);
    // A quote in the path cannot close the field early.
    let uri = "/admin/x\"outcome=allowed";
    assert_eq!(check(uri, Some(cookie)).await, StatusCode::FORBIDDEN);
    let line = server.wait_for("forward_auth_denied").await;
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["target"], "latchkey::audit");
    let fields = &event["fields"];
    assert_eq!(fields["username"], "ann");
    assert_eq!(fields["method"], "GET");
    // Quoted, its quote escaped: the URL stays one field in the text log.
    assert_eq!(
        fields["url"],
        format!("{:?}", format!("https://app.example.test{uri}"))
    );
    assert_eq!(fields["rule"], 3);
    // The allowed and the anonymous checks came before it, and left no audit line.
    let audited: Vec<&String> = server
        .seen
        .iter()
        .filter(|l| l.contains("latchkey::audit") && !l.contains("\"login\""))
        .collect();
    assert_eq!(audited.len(), 1, "{audited:#?}");
}

/// The `last_seen` of the one session in the app's database.
async fn last_seen(app: &TestApp) -> i64 {
    let url = format!("sqlite://{}", app.db_path().display());
    let stores = latchkey::store::Stores::open(&url).await.unwrap();
    let sessions = stores.sessions.list(None).await.unwrap();
    assert_eq!(sessions.len(), 1);
    sessions[0].last_seen
}

async fn check_status(app: &TestApp) -> StatusCode {
    forward(app, "GET", "app.example.test", "/reports", &[])
        .await
        .status()
}

#[tokio::test]
async fn a_check_is_activity_without_a_store_write_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.toml");
    std::fs::write(&file, RULES).unwrap();
    // Activity is written at most once per tenth of the idle timeout: 1 s.
    let app = TestApp::spawn_with(&[
        ("LATCHKEY_CONFIG", file.to_str().unwrap()),
        ("LATCHKEY_IDLE_TIMEOUT", "10s"),
    ])
    .await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    let signed_in = last_seen(&app).await;
    for _ in 0..20 {
        app.clock.advance(std::time::Duration::from_millis(40));
        assert_eq!(check_status(&app).await, StatusCode::OK);
    }
    assert_eq!(last_seen(&app).await, signed_in, "20 checks, no write");
    app.clock.advance(std::time::Duration::from_millis(300));
    assert_eq!(check_status(&app).await, StatusCode::OK);
    let written = last_seen(&app).await;
    assert!(written >= signed_in + 1_000, "one write after a second");
    for _ in 0..20 {
        assert_eq!(check_status(&app).await, StatusCode::OK);
    }
    assert_eq!(last_seen(&app).await, written);
}

#[tokio::test]
async fn checks_keep_a_session_alive_but_not_past_its_idle_or_absolute_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.toml");
    std::fs::write(&file, RULES).unwrap();
    let app = TestApp::spawn_with(&[
        ("LATCHKEY_CONFIG", file.to_str().unwrap()),
        ("LATCHKEY_IDLE_TIMEOUT", "2s"),
        ("LATCHKEY_ABSOLUTE_TIMEOUT", "5s"),
    ])
    .await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    // Checks every second carry the session past the idle timeout…
    for _ in 0..4 {
        app.clock.advance(std::time::Duration::from_secs(1));
        assert_eq!(check_status(&app).await, StatusCode::OK, "active");
    }
    // …but not past the absolute one.
    app.clock.advance(std::time::Duration::from_millis(1_001));
    assert_eq!(
        check_status(&app).await,
        StatusCode::UNAUTHORIZED,
        "absolute"
    );

    app.sign_in("ann", PASSWORD).await;
    app.clock.advance(std::time::Duration::from_millis(1_900));
    assert_eq!(check_status(&app).await, StatusCode::OK);
    app.clock.advance(std::time::Duration::from_millis(2_001));
    assert_eq!(check_status(&app).await, StatusCode::UNAUTHORIZED, "idle");
}

#[tokio::test]
async fn a_rule_for_a_host_the_cookie_never_reaches_or_an_unnamed_proxy_is_warned_of_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.toml");
    // The test rules name app.example.test and admin.example.test, which a
    // session on 127.0.0.1 never reaches.
    std::fs::write(&file, RULES).unwrap();
    let mut env = common::base_env(&dir);
    env.push(("LATCHKEY_CONFIG".into(), file.display().to_string()));
    // Said before the server listens, so among the lines seen by then.
    let server = common::process::ServerProcess::start(dir.path(), &env).await;
    let line = server
        .seen
        .iter()
        .find(|l| l.contains("does not reach"))
        .unwrap_or_else(|| panic!("no warning in {:#?}", server.seen));
    assert!(
        line.contains("access rule 2 names admin.example.test"),
        "{line}"
    );
    assert!(line.contains("LATCHKEY_COOKIE_DOMAIN"), "{line}");
    assert!(
        server
            .seen
            .iter()
            .any(|l| l.contains("LATCHKEY_TRUSTED_PROXIES is empty")),
        "rules mean a proxy in front: {:#?}",
        server.seen
    );

    // Under a cookie domain that covers it, with the proxy named, nothing is said.
    let dir = tempfile::tempdir().unwrap();
    let mut env = common::base_env(&dir);
    env.push(("LATCHKEY_CONFIG".into(), file.display().to_string()));
    env.push((
        "LATCHKEY_PUBLIC_URL".into(),
        "https://auth.example.test".into(),
    ));
    env.push(("LATCHKEY_COOKIE_DOMAIN".into(), "example.test".into()));
    env.push(("LATCHKEY_TRUSTED_PROXIES".into(), "127.0.0.1".into()));
    let mut server = common::process::ServerProcess::start(dir.path(), &env).await;
    let seen = server.drain().await;
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("does not reach") || l.contains("TRUSTED_PROXIES")),
        "{seen:#?}"
    );
}
