//! Pages and the HTTP surface: security headers, content negotiation, the
//! admin page, health, and the first-run setup link.

use crate::common;

use common::{OTHER_PASSWORD, PASSWORD, TestApp};
use reqwest::{Method, StatusCode, header};
use serde_json::Value;

fn assert_page_headers(r: &reqwest::Response, what: &str) {
    let h = r.headers();
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(
        !csp.contains("unsafe-") && !csp.contains("data:"),
        "{what}: nothing inline, no eval: {csp}"
    );
    let scripts: Vec<&str> = csp
        .split(';')
        .map(str::trim)
        .filter(|d| d.starts_with("script-src"))
        .collect();
    assert_eq!(
        scripts,
        ["script-src 'self'"],
        "{what}: scripts only as this site's files"
    );
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY", "{what}");
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff", "{what}");
    assert!(h.contains_key(header::REFERRER_POLICY), "{what}");
}

#[tokio::test]
async fn every_page_sends_the_security_headers() {
    let app = TestApp::spawn().await;
    app.add_user("root", PASSWORD, &["admin"]).await;
    for path in ["/login", "/logout", "/nope"] {
        let r = app.get(path).await;
        assert_page_headers(&r, path);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store", "{path}");
    }
    app.sign_in("root", PASSWORD).await;
    for path in ["/profile", "/admin", "/logout"] {
        let r = app.get(path).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert_page_headers(&r, path);
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store", "{path}");
        assert!(
            r.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
    }
    let json = app.get_json("/profile").await;
    assert_eq!(json.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(json.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(
        json.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    assert!(
        !json
            .headers()
            .contains_key(header::STRICT_TRANSPORT_SECURITY),
        "no HSTS over plain http"
    );
    let js = app.get("/static/latchkey.js").await;
    assert_eq!(js.status(), StatusCode::OK);
    assert!(
        js.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let css = app.get("/static/latchkey.css").await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(
        css.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
}

#[tokio::test]
async fn json_clients_and_browsers_each_get_their_format() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    let browser = app
        .request(Method::GET, "/profile")
        .header(
            header::ACCEPT,
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        )
        .send()
        .await
        .unwrap();
    assert!(
        browser.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let api = app.get_json("/profile").await;
    assert!(
        api.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let missing = app.get_json("/nope").await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.json::<Value>().await.unwrap()["error"], "not_found");
}

#[tokio::test]
async fn the_admin_page_is_for_admins_only() {
    let app = TestApp::spawn().await;
    app.add_user("root", PASSWORD, &["admin"]).await;
    app.add_user("ann", OTHER_PASSWORD, &[]).await;
    let anon = app.get("/admin").await;
    assert_eq!(anon.status(), StatusCode::SEE_OTHER);
    assert_eq!(anon.headers()[header::LOCATION], "/login?next=%2Fadmin");
    assert_eq!(
        app.get_json("/admin").await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.sign_in("ann", OTHER_PASSWORD).await;
    let r = app.get("/admin").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("do not have access"));
    assert_eq!(app.get_json("/admin").await.status(), StatusCode::FORBIDDEN);
    app.sign_in("root", PASSWORD).await;
    let r = app.get_json("/admin").await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    let names: Vec<_> = body["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ann", "root"]);
    assert!(
        !body.to_string().contains("argon2"),
        "no hashes leave the server"
    );
    let html = app.get("/admin").await.text().await.unwrap();
    assert!(html.contains("<td>ann</td>"));
}

#[tokio::test]
async fn health_reports_ok_when_the_store_answers() {
    let app = TestApp::spawn().await;
    let r = app.get("/healthz").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "ok");
}

#[tokio::test]
async fn the_first_run_link_creates_the_first_admin_once() {
    let app = TestApp::spawn().await;
    let link = app
        .setup_link
        .clone()
        .expect("an empty database offers a setup link");
    let path = &link[link.find("/setup").unwrap()..];
    assert!(link.starts_with(&app.base), "{link} names the real address");
    let login = app.get("/login").await.text().await.unwrap();
    assert!(
        login.contains("No account exists yet"),
        "the login page points a first visitor to the setup link"
    );
    let wrong = app.get("/setup?token=wrong").await;
    assert_eq!(wrong.status(), StatusCode::NOT_FOUND);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("Use the complete link that the server printed in its log"),
        "a wrong link says where the right one is"
    );
    let page = app.get(path).await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).unwrap() + marker.len();
    let csrf = html[start..].split('"').next().unwrap().to_owned();
    let token = path.trim_start_matches("/setup?token=");
    let weak = app
        .post_form(
            "/setup",
            &[
                ("token", token),
                ("csrf_token", &csrf),
                ("username", "boss"),
                ("password", "password1"),
                ("password_confirm", "password1"),
            ],
        )
        .await;
    assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(weak.text().await.unwrap().contains("too easy to guess"));
    let r = app
        .post_form(
            "/setup",
            &[
                ("token", token),
                ("csrf_token", &csrf),
                ("username", "boss"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/profile");
    let me: Value = app.get_json("/profile").await.json().await.unwrap();
    assert_eq!(me["username"], "boss");
    assert_eq!(me["roles"], serde_json::json!(["admin"]));
    let used = app.get(path).await;
    assert_eq!(used.status(), StatusCode::GONE, "the link works once");
    let (stranger, _) = common::client();
    let login = stranger.get(app.url("/login")).send().await.unwrap();
    assert!(
        !login
            .text()
            .await
            .unwrap()
            .contains("No account exists yet")
    );
    let used = used.text().await.unwrap();
    assert!(
        used.contains("Setup is complete") && used.contains(r#"href="/login""#),
        "a used link says so and leads to the login page: {used}"
    );
    let again = app
        .post_form(
            "/setup",
            &[
                ("token", token),
                ("csrf_token", &csrf),
                ("username", "evil"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(again.status(), StatusCode::GONE);
    let users = app.auth.accounts().list_users().await.unwrap();
    assert_eq!(users.len(), 1, "nothing was created: {users:?}");
}

#[tokio::test]
async fn no_setup_link_is_offered_once_a_user_exists() {
    let app = TestApp::spawn().await;
    app.add_user("root", PASSWORD, &["admin"]).await;
    let restarted = TestApp::start(app.dir.clone(), app.env.clone()).await;
    assert!(restarted.setup_link.is_none());
    // The first instance's link closes as soon as it sees a user.
    let link = app.setup_link.clone().unwrap();
    assert_eq!(
        app.get(&link[link.find("/setup").unwrap()..])
            .await
            .status(),
        StatusCode::GONE
    );
}

/// The hidden `csrf_token` of the form posting to `action` in a page.
fn form_csrf(html: &str, action: &str) -> String {
    let form = &html[html
        .find(&format!("action=\"{action}\""))
        .unwrap_or_else(|| panic!("no form to {action}: {html}"))..];
    let marker = "name=\"csrf_token\" value=\"";
    let start = form.find(marker).unwrap() + marker.len();
    form[start..].split('"').next().unwrap().to_owned()
}

/// A form post with the headers Chromium sends from one of the site's pages
/// (`Origin` as given, `Sec-Fetch-Site` as given).
async fn browser_form(
    client: &reqwest::Client,
    url: &str,
    origin: &str,
    fetch_site: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client
        .post(url)
        .header(header::ORIGIN, origin)
        .header("sec-fetch-site", fetch_site)
        .header("sec-fetch-mode", "navigate")
        .header(header::ACCEPT, "text/html")
        .form(form)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn pages_keep_referrers_on_this_site_and_their_forms_pass_with_origin_null() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let page = app.get("/login").await;
    assert_eq!(page.headers()[header::REFERRER_POLICY], "same-origin");
    let token = form_csrf(&page.text().await.unwrap(), "/login");
    let form = [
        ("username", "ann"),
        ("password", PASSWORD),
        ("csrf_token", token.as_str()),
    ];
    // A browser that posts from a no-referrer page sends `Origin: null`;
    // without its word that the post is same-origin, that is refused.
    let refused = browser_form(&app.client, &app.url("/login"), "null", "cross-site", &form).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.session_cookie(), None);
    let r = browser_form(
        &app.client,
        &app.url("/login"),
        "null",
        "same-origin",
        &form,
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(app.session_cookie().is_some());
    // The real origin passes too (the server on port 0 knows its own port).
    let html = app.get("/logout").await.text().await.unwrap();
    let token = form_csrf(&html, "/logout");
    let r = browser_form(
        &app.client,
        &app.url("/logout"),
        &app.base,
        "same-origin",
        &[("csrf_token", &token)],
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.profile_status().await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn forged_and_stale_forms_get_a_clear_page_change_nothing_and_log_one_line_each() {
    let dir = tempfile::tempdir().unwrap();
    let env = common::base_env(&dir);
    common::add_user(&env, "ann", PASSWORD, &[]).await;
    let mut server = common::process::ServerProcess::start(dir.path(), &env).await;
    let (client, jar) = common::client();
    assert!(
        server
            .seen
            .iter()
            .any(|l| l.contains("below OWASP's minimum")),
        "the tests' cheap argon2 is warned about: {:#?}",
        server.seen
    );
    let get = |path: &str| {
        client
            .get(server.url(path))
            .header(header::ACCEPT, "text/html")
            .send()
    };
    let login_page = get("/login").await.unwrap().text().await.unwrap();
    let login_token = form_csrf(&login_page, "/login");
    let login_url = server.url("/login");
    let creds = |token: &str| {
        [
            ("username", "ann".to_owned()),
            ("password", PASSWORD.to_owned()),
            ("csrf_token", token.to_owned()),
        ]
    };
    let post = |url: String, origin: &str, site: &str, form: Vec<(&'static str, String)>| {
        let client = client.clone();
        let origin = origin.to_owned();
        let site = site.to_owned();
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            browser_form(&client, &url, &origin, &site, &form).await
        }
    };
    // Cross-site login (login CSRF): refused with a page in plain words.
    let r = post(
        login_url.clone(),
        "http://127.0.0.2:9999",
        "cross-site",
        creds(&login_token).to_vec(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("Request refused") && page.contains("Nothing was changed"),
        "{page}"
    );
    assert!(!page.contains("CSRF"), "no jargon: {page}");
    assert!(common::cookie_named(&jar, &server.base, "latchkey").is_none());
    // The same with an origin the browser does not call cross-site.
    let r = post(
        login_url.clone(),
        "http://localhost:1",
        "same-origin",
        creds(&login_token).to_vec(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let page = r.text().await.unwrap();
    assert!(
        page.contains(&format!("this site is at {}", server.base)),
        "{page}"
    );
    // A login form without its token, or with one that is not its own: a
    // fresh form that says it had expired, with a new token.
    for (what, token) in [("missing", ""), ("mismatch", "not-the-token")] {
        let r = post(
            login_url.clone(),
            &server.base,
            "same-origin",
            creds(token).to_vec(),
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{what}");
        let page = r.text().await.unwrap();
        assert!(
            page.contains("This sign-in form had expired"),
            "{what}: {page}"
        );
        assert!(
            !form_csrf(&page, "/login").is_empty(),
            "{what}: a fresh form"
        );
        assert!(
            common::cookie_named(&jar, &server.base, "latchkey").is_none(),
            "{what}"
        );
    }
    // Signed in; then a cross-site sign-out and a stale sign-out form.
    let r = post(
        login_url.clone(),
        &server.base,
        "same-origin",
        creds(&login_token).to_vec(),
    )
    .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let profile = get("/profile").await.unwrap().text().await.unwrap();
    let session_token = form_csrf(&profile, "/logout");
    let logout_url = server.url("/logout");
    let r = post(
        logout_url.clone(),
        "http://127.0.0.2:9999",
        "cross-site",
        vec![("csrf_token", session_token.clone())],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = post(
        logout_url.clone(),
        &server.base,
        "same-origin",
        vec![("csrf_token", "stale".into())],
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("This page was out of date, so you are still signed in"),
        "{page}"
    );
    let fresh = form_csrf(&page, "/logout");
    assert_eq!(
        fresh, session_token,
        "the page offers the session's current token"
    );
    assert_eq!(
        get("/profile").await.unwrap().status(),
        StatusCode::OK,
        "still signed in"
    );
    // Each refusal is one warning line with the route and the reason.
    for _ in 0..6 {
        server.wait_for("cross-site request check").await;
    }
    let lines = server.drain().await;
    let refusals: Vec<Value> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("cross-site request check"))
        })
        .collect();
    let seen: Vec<(String, String, String)> = refusals
        .iter()
        .map(|v| {
            (
                v["level"].as_str().unwrap().to_owned(),
                v["fields"]["route"].as_str().unwrap().to_owned(),
                v["fields"]["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("POST /login", "fetch-site cross-site".to_owned()),
        (
            "POST /login",
            format!(
                "origin http://localhost:1 not allowed (expected {})",
                server.base
            ),
        ),
        ("POST /login", "token missing".to_owned()),
        ("POST /login", "token mismatch".to_owned()),
        ("POST /logout", "fetch-site cross-site".to_owned()),
        ("POST /logout", "token mismatch".to_owned()),
    ];
    assert_eq!(
        seen,
        expected
            .iter()
            .map(|(r, why)| ("WARN".to_owned(), (*r).to_owned(), why.clone()))
            .collect::<Vec<_>>()
    );
    let all = lines.join("\n");
    assert!(
        !all.contains(&session_token) && !all.contains(&login_token),
        "no token is logged"
    );
}

#[tokio::test]
async fn a_page_opened_under_another_loopback_name_goes_to_the_public_address() {
    let app = TestApp::spawn().await;
    let port = app.addr.port();
    for (path, host) in [
        ("/login?next=%2Fadmin", format!("localhost:{port}")),
        ("/logout", format!("[::1]:{port}")),
        ("/setup?token=x", format!("LOCALHOST:{port}")),
    ] {
        let r = app
            .request(Method::GET, path)
            .header(header::HOST, &host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{host}{path}");
        assert_eq!(
            r.headers()[header::LOCATION],
            format!("http://127.0.0.1:{port}{path}").as_str()
        );
    }
    // Another port or another name is not this server's alias: no redirect.
    for host in [
        format!("localhost:{}", port.wrapping_add(1)),
        format!("example.com:{port}"),
    ] {
        let r = app
            .request(Method::GET, "/login")
            .header(header::HOST, &host)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{host}");
    }
}

#[tokio::test]
async fn pages_say_what_happened_after_sign_out_and_when_a_session_ended() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    // Signed in, the login page says who, and offers the way on or out.
    let html = app.get("/login").await.text().await.unwrap();
    assert!(
        html.contains("You are signed in as <strong>ann</strong>"),
        "{html}"
    );
    assert!(html.contains("action=\"/logout\"") && !html.contains("action=\"/login\""));
    // Sent to sign in for a page while signed in: straight on to it.
    let r = app.get("/login?next=%2Fprofile%3Ftab%3D1").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/profile?tab=1");
    let r = app.get("/login?next=%2F%2Fevil.example").await;
    assert_eq!(
        r.headers()[header::LOCATION],
        "/profile",
        "only paths on this site"
    );
    // The session is revoked elsewhere: the next page says so.
    let out = app.cli(&["session", "revoke", "--user", "ann"], None).await;
    assert!(out.status.success());
    common::within_the_feed_bound(
        "revoked by the CLI",
        StatusCode::OK,
        StatusCode::SEE_OTHER,
        || async { app.get("/profile").await.status() },
    )
    .await;
    let r = app.get("/profile").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let to = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert_eq!(to, "/login?next=%2Fprofile&reason=ended");
    let html = app.get(&to).await.text().await.unwrap();
    assert!(
        html.contains("Your session ended. Please sign in again."),
        "{html}"
    );
    // Merely not signed in is not "ended".
    let (stranger, _) = common::client();
    let r = stranger.get(app.url("/profile")).send().await.unwrap();
    assert_eq!(r.headers()[header::LOCATION], "/login?next=%2Fprofile");
    // Signing out lands on a page that says so.
    let token = app.sign_in("ann", PASSWORD).await;
    let r = app.post_form("/logout", &[("csrf_token", &token)]).await;
    let to = r.headers()[header::LOCATION].to_str().unwrap().to_owned();
    let html = app.get(&to).await.text().await.unwrap();
    assert!(html.contains("You have been signed out."), "{html}");
}

#[tokio::test]
async fn a_sign_out_form_shown_before_a_role_change_still_signs_out() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    let html = app.get("/profile").await.text().await.unwrap();
    let old_token = form_csrf(&html, "/logout");
    let out = app
        .cli(&["user", "roles", "ann", "--add", "ops"], None)
        .await;
    assert!(out.status.success());
    // The sign-out request is the first after the change: it rotates the
    // session and still accepts the token of the page shown before.
    let r = app
        .post_form("/logout", &[("csrf_token", &old_token)])
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(app.profile_status().await, StatusCode::UNAUTHORIZED);
    // That old token is good for nothing else once the rotation is done.
    app.sign_in("ann", PASSWORD).await;
    let html = app.get("/profile").await.text().await.unwrap();
    let token = form_csrf(&html, "/logout");
    let before = app.session_cookie().unwrap();
    assert!(
        app.cli(&["user", "roles", "ann", "--remove", "ops"], None)
            .await
            .status
            .success()
    );
    common::eventually(common::FEED_BOUND, "rotated here", || async {
        assert_eq!(app.profile_status().await, StatusCode::OK);
        app.session_cookie().unwrap() != before
    })
    .await;
    let r = app.post_form("/logout", &[("csrf_token", &token)]).await;
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "a token from before an earlier rotation"
    );
    assert_eq!(app.profile_status().await, StatusCode::OK);
}

#[tokio::test]
async fn a_double_submitted_form_does_its_work_once_and_lands_where_the_first_did() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let html = app.get("/login?next=%2Fadmin").await.text().await.unwrap();
    let token = form_csrf(&html, "/login");
    let form = [
        ("username", "ann"),
        ("password", PASSWORD),
        ("csrf_token", token.as_str()),
        ("next", "/profile"),
    ];
    let first = app.post_form("/login", &form).await;
    assert_eq!(first.status(), StatusCode::SEE_OTHER);
    let session = app.session_cookie().unwrap();
    // The second click arrives after the first answer replaced the cookies.
    let second = app.post_form("/login", &form).await;
    assert_eq!(second.status(), StatusCode::SEE_OTHER);
    assert_eq!(second.headers()[header::LOCATION], "/profile");
    assert!(second.headers().get(header::SET_COOKIE).is_none());
    assert_eq!(app.session_cookie().unwrap(), session, "no second session");
    let sessions = app.cli(&["session", "list", "--user", "ann"], None).await;
    assert_eq!(
        common::stdout(&sessions).lines().count(),
        2,
        "a header and one session"
    );
    // Signing out twice: the second finds nobody to sign out and says so.
    let profile = app.get("/profile").await.text().await.unwrap();
    let token = form_csrf(&profile, "/logout");
    for _ in 0..2 {
        let r = app.post_form("/logout", &[("csrf_token", &token)]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[header::LOCATION], "/login?reason=signed_out");
    }
    assert_eq!(app.profile_status().await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn on_port_zero_the_public_url_names_the_address_really_listened_on() {
    let app = TestApp::spawn_with(&[("LATCHKEY_BIND", "127.0.0.2:0")]).await;
    let link = app.setup_link.clone().unwrap();
    let port = app.addr.port();
    assert!(
        link.starts_with(&format!("http://127.0.0.2:{port}/setup?token=")),
        "the setup link leads to this server, not to 127.0.0.1: {link}"
    );
    let r = app
        .request(Method::GET, "/login")
        .header(header::HOST, format!("localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()[header::LOCATION],
        format!("http://127.0.0.2:{port}/login").as_str()
    );
}

#[tokio::test]
async fn visitors_are_never_redirected_to_a_public_url_another_program_may_hold() {
    // A public URL on a port this server does not listen on (say, a proxy's,
    // or a port anyone on the machine could take).
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let app = TestApp::spawn_with(&[
        ("LATCHKEY_BIND", &format!("127.0.0.1:{port}")),
        (
            "LATCHKEY_PUBLIC_URL",
            &format!("http://127.0.0.1:{}", port.wrapping_add(1)),
        ),
    ])
    .await;
    let r = app
        .request(Method::GET, "/login")
        .header(header::HOST, format!("localhost:{port}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "no redirect to another listener"
    );
}

#[tokio::test]
async fn cross_site_setup_posts_do_not_use_up_a_visitors_sign_in_share() {
    let app = TestApp::spawn_with(&[("LATCHKEY_LOGIN_RATE", "3")]).await;
    for _ in 0..5 {
        let r = browser_form(
            &app.client,
            &app.url("/setup"),
            "https://evil.example",
            "cross-site",
            &[
                ("token", "x"),
                ("username", "mallory"),
                ("password", "p"),
                ("password_confirm", "p"),
            ],
        )
        .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
    app.add_user("ann", PASSWORD, &[]).await;
    assert_eq!(
        app.login_json("ann", PASSWORD).await.status(),
        StatusCode::OK
    );
}
