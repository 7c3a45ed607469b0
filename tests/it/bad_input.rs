//! Bad input gets a clear 4xx, never a 500, and never changes a session or a user.

use crate::common;

use common::{PASSWORD, TestApp};
use reqwest::{Method, StatusCode, header};
use serde_json::Value;

async fn signed_in() -> (TestApp, String) {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let token = app.sign_in("ann", PASSWORD).await;
    (app, token)
}

async fn still_fine(app: &TestApp) {
    assert_eq!(
        app.profile_status().await,
        StatusCode::OK,
        "the session survived"
    );
    let fresh = TestApp::start(app.dir.clone(), app.env.clone()).await;
    assert_eq!(
        fresh.login_json("ann", PASSWORD).await.status(),
        StatusCode::OK,
        "the user survived"
    );
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut r = app
        .request(Method::POST, path)
        .header(header::ACCEPT, "application/json")
        .body(body);
    if let Some(ct) = content_type {
        r = r.header(header::CONTENT_TYPE, ct);
    }
    r.send().await.unwrap()
}

#[tokio::test]
async fn malformed_bodies_get_400_415_413_or_422() {
    let (app, _) = signed_in().await;
    let cases: Vec<(&str, Option<&str>, Vec<u8>, StatusCode)> = vec![
        (
            "/login",
            Some("application/json"),
            b"{\"username\": ".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/login",
            Some("application/json"),
            b"[1,2,3]".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/login",
            Some("application/json"),
            b"{\"username\":\"ann\"}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/login",
            Some("application/json"),
            b"{\"username\":1,\"password\":2}".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/login",
            Some("application/json"),
            b"{\"username\":\"ann\",\"password\":\"\xff\xfe\"}".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/login",
            Some("application/x-www-form-urlencoded"),
            b"username=%FF%FE&password=x".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/login",
            Some("application/x-www-form-urlencoded"),
            b"username=a&username=b".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/login",
            Some("text/plain"),
            b"username=ann".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "/login",
            Some("multipart/form-data; boundary=x"),
            b"--x--".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "/login",
            None,
            b"username=ann".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "/login",
            Some("application/json"),
            vec![b' '; 64 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "/logout",
            Some("application/json"),
            b"{{{{".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/logout",
            Some("application/json"),
            vec![b'x'; 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (path, ct, body, expected) in cases {
        let shown = String::from_utf8_lossy(&body[..body.len().min(40)]).into_owned();
        let r = post_raw(&app, path, ct, body).await;
        assert_eq!(r.status(), expected, "{path} {ct:?} {shown}");
        let json: Value = r.json().await.unwrap();
        assert!(
            json["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty() && m.len() < 200)
        );
    }
    still_fine(&app).await;
}

#[tokio::test]
async fn a_password_of_the_wrong_type_is_refused_without_repeating_it() {
    let (app, _) = signed_in().await;
    let r = app
        .post_json(
            "/login",
            &serde_json::json!({ "username": "ann", "password": 12_345_678 }),
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    let message = body["message"].as_str().unwrap();
    assert_eq!(message, "invalid type: expected a string");
    assert!(!message.contains("12345678"), "{message}");
    still_fine(&app).await;
}

#[tokio::test]
async fn over_long_usernames_and_passwords_are_refused_before_hashing() {
    let (app, _) = signed_in().await;
    let long_name = "a".repeat(300);
    let r = app.login_json(&long_name, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let long_password = "p".repeat(2000);
    let r = app.login_json("ann", &long_password).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let out = app
        .cli(
            &["user", "add", &long_name, "--password-stdin"],
            Some(PASSWORD),
        )
        .await;
    assert!(!out.status.success());
    let out = app
        .cli(
            &["user", "passwd", "ann", "--password-stdin"],
            Some(&long_password),
        )
        .await;
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("1024 bytes"));
    still_fine(&app).await;
}

#[tokio::test]
async fn unknown_methods_get_405() {
    let (app, _) = signed_in().await;
    for (method, path) in [
        (Method::DELETE, "/login"),
        (Method::PUT, "/profile"),
        (Method::PATCH, "/logout"),
        (Method::POST, "/healthz"),
    ] {
        let r = app
            .request(method.clone(), path)
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
    }
    let r = app
        .request(Method::from_bytes(b"BREW").unwrap(), "/profile")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    still_fine(&app).await;
}

#[tokio::test]
async fn garbage_and_oversized_cookies_never_cause_a_server_error() {
    let (app, _) = signed_in().await;
    let huge = format!("latchkey={}", "x".repeat(20_000));
    let many = (0..300)
        .map(|i| format!("c{i}=v"))
        .collect::<Vec<_>>()
        .join("; ");
    let cookies: [&[u8]; 7] = [
        b"latchkey",
        b"latchkey=",
        b"=;=;=",
        b"latchkey=\xff\xfe\x80",
        b"latchkey=\"\"; latchkey=a.b",
        huge.as_bytes(),
        many.as_bytes(),
    ];
    for cookie in cookies {
        let r = reqwest::Client::new()
            .get(app.url("/profile"))
            .header(header::ACCEPT, "application/json")
            .header(
                header::COOKIE,
                header::HeaderValue::from_bytes(cookie).unwrap(),
            )
            .send()
            .await
            .unwrap();
        let shown = String::from_utf8_lossy(&cookie[..cookie.len().min(30)]).into_owned();
        assert!(r.status().is_client_error(), "{shown}: {}", r.status());
    }
    let enormous = "y".repeat(200_000);
    let r = app.get_json("/profile").await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = reqwest::Client::new()
        .get(app.url("/profile"))
        .header(header::COOKIE, format!("latchkey={enormous}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    still_fine(&app).await;
}

#[tokio::test]
async fn odd_query_strings_are_harmless() {
    let app = TestApp::spawn().await;
    for q in [
        "/login?next=%FF",
        "/login?next",
        "/login?&&&",
        "/login?next=%",
        "/setup?token=%ZZ",
    ] {
        let r = app.get(q).await;
        assert!(r.status().as_u16() < 500, "{q}: {}", r.status());
    }
}
