//! Pages and the HTTP surface: security headers, content negotiation, the
//! admin page, health, and the first-run setup link.
#![allow(clippy::unwrap_used)]

mod common;

use common::{OTHER_PASSWORD, PASSWORD, TestApp};
use reqwest::{Method, StatusCode, header};
use serde_json::Value;

fn assert_page_headers(r: &reqwest::Response, what: &str) {
    let h = r.headers();
    let csp = h[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{what}: {csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{what}: {csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("script-src"),
        "{what}: no script allowed: {csp}"
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
