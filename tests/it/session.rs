//! Sessions after sign-in: logout and replay, timeouts, forged cookies, and
//! administrative changes taking effect: at the very next request when made
//! through the instance, within the change feed's bound (`FEED_BOUND`) when
//! made by another process such as the CLI.

use crate::common;

use std::time::Duration;

use common::{OTHER_PASSWORD, PASSWORD, TestApp, with_cookie};
use reqwest::{Method, StatusCode, header};
use serde_json::Value;

#[tokio::test]
async fn the_profile_shows_the_signed_in_user_as_json_and_html() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &["ops"]).await;
    let token = app.sign_in("ann", PASSWORD).await;
    let r = app.get_json("/profile").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["username"], "ann");
    assert_eq!(body["roles"], serde_json::json!(["ops"]));
    assert_eq!(body["csrf_token"], token.as_str());
    let html = app.get("/profile").await.text().await.unwrap();
    assert!(html.contains("Signed in as ann"));
    assert!(
        html.contains(&format!("value=\"{token}\"")),
        "the sign-out form carries the token"
    );
}

#[tokio::test]
async fn anonymous_visitors_are_sent_to_login_or_told_401() {
    let app = TestApp::spawn().await;
    let browser = app.get("/profile").await;
    assert_eq!(browser.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        browser.headers()[header::LOCATION],
        "/login?next=%2Fprofile"
    );
    let api = app.get_json("/profile").await;
    assert_eq!(api.status(), StatusCode::UNAUTHORIZED);
    let body: Value = api.json().await.unwrap();
    assert_eq!(body["error"], "not_authenticated");
}

#[tokio::test]
async fn logout_ends_the_session_on_the_server_and_in_the_browser() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let token = app.sign_in("ann", PASSWORD).await;
    let old = app.session_cookie().unwrap();
    let other = TestApp::start(app.dir.clone(), app.env.clone()).await;
    assert_eq!(
        with_cookie(&other, "/profile", &old).await.status(),
        StatusCode::OK
    );
    app.warm_cache().await;
    let r = app.post_form("/logout", &[("csrf_token", &token)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/login?reason=signed_out");
    // The cache is cleared, not every cookie: the device cookie stays.
    assert_eq!(r.headers()["clear-site-data"], "\"cache\"");
    let cleared = r.headers().get_all(header::SET_COOKIE).iter().any(|v| {
        let v = v.to_str().unwrap();
        v.starts_with("latchkey=;") && v.contains("Max-Age=0")
    });
    assert!(cleared, "the cookie is expired");
    assert_eq!(app.profile_status().await, StatusCode::UNAUTHORIZED);
    let replay = with_cookie(&app, "/profile", &old).await;
    assert_eq!(
        replay.status(),
        StatusCode::UNAUTHORIZED,
        "the old cookie is dead on the server"
    );
}

#[tokio::test]
async fn a_json_logout_answers_200_and_needs_the_header_token() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let token = app.sign_in("ann", PASSWORD).await;
    let r = app
        .request(Method::POST, "/logout")
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "no token");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "csrf_failed");
    assert_eq!(
        app.profile_status().await,
        StatusCode::OK,
        "a refused logout changes nothing"
    );
    let r = app
        .request(Method::POST, "/logout")
        .header(header::ACCEPT, "application/json")
        .header("x-csrf-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.profile_status().await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn csrf_tokens_are_checked_per_session_and_origin() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.add_user("bob", OTHER_PASSWORD, &[]).await;
    let other = TestApp::start(app.dir.clone(), app.env.clone()).await;
    let bobs_token = other.sign_in("bob", OTHER_PASSWORD).await;
    let anns_token = app.sign_in("ann", PASSWORD).await;
    let r = app
        .post_form("/logout", &[("csrf_token", &bobs_token)])
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "another session's token");
    let r = app
        .request(Method::POST, "/logout")
        .header(header::ORIGIN, "https://evil.example")
        .form(&[("csrf_token", anns_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "right token, foreign origin"
    );
    assert_eq!(app.profile_status().await, StatusCode::OK);
}

#[tokio::test]
async fn get_logout_only_shows_a_button() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    let r = app.get("/logout").await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("method=\"post\" action=\"/logout\""));
    assert_eq!(app.profile_status().await, StatusCode::OK);
}

#[tokio::test]
async fn forged_and_garbage_cookies_are_simply_anonymous() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    let real = app.session_cookie().unwrap();
    let mut tampered = real.clone().into_bytes();
    tampered[5] = if tampered[5] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let long = "A".repeat(5000);
    for value in [
        tampered.as_str(),
        "garbage",
        "",
        "%%%;;;",
        long.as_str(),
        &real[..40],
    ] {
        let r = with_cookie(&app, "/profile", value).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{value:.20}");
    }
    assert_eq!(
        with_cookie(&app, "/profile", &real).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn activity_keeps_a_session_alive_until_the_idle_timeout() {
    let app = TestApp::spawn_with(&[("LATCHKEY_IDLE_TIMEOUT", "2s")]).await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    for _ in 0..8 {
        app.clock.advance(Duration::from_millis(500));
        assert_eq!(
            app.profile_status().await,
            StatusCode::OK,
            "active sessions stay alive"
        );
    }
    app.clock.advance(Duration::from_millis(1_900));
    assert_eq!(
        app.profile_status().await,
        StatusCode::OK,
        "not yet idle for the whole timeout"
    );
    app.clock.advance(Duration::from_millis(2_001));
    assert_eq!(
        app.profile_status().await,
        StatusCode::UNAUTHORIZED,
        "idle too long"
    );
}

#[tokio::test]
async fn the_absolute_timeout_ends_even_a_busy_session() {
    let app = TestApp::spawn_with(&[
        ("LATCHKEY_IDLE_TIMEOUT", "1m"),
        ("LATCHKEY_ABSOLUTE_TIMEOUT", "2s"),
    ])
    .await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    for _ in 0..7 {
        assert_eq!(
            app.profile_status().await,
            StatusCode::OK,
            "valid before the absolute timeout"
        );
        app.clock.advance(Duration::from_millis(250));
    }
    app.clock.advance(Duration::from_millis(300));
    assert_eq!(
        app.profile_status().await,
        StatusCode::UNAUTHORIZED,
        "however busy, not after the absolute timeout"
    );
}

#[tokio::test]
async fn expired_sessions_are_deleted_in_the_background() {
    let app = TestApp::spawn_with(&[("LATCHKEY_IDLE_TIMEOUT", "1s")]).await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    let listed = app.cli(&["session", "list"], None).await;
    assert!(common::stdout(&listed).contains("ann"));
    // No request touches the session: only the cleanup task, which runs
    // every second, can delete it once the server's clock is past its end.
    app.clock.advance(Duration::from_secs(5));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let listed = common::stdout(&app.cli(&["session", "list"], None).await);
        if !listed.contains("ann") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never deleted: {listed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_password_change_from_the_cli_ends_sessions_at_once() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    app.cli_ok(
        &["user", "passwd", "ann", "--password-stdin"],
        Some(OTHER_PASSWORD),
    )
    .await;
    app.signed_out_within_the_feed_bound("after passwd").await;
    assert_eq!(
        app.login_json("ann", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login_json("ann", OTHER_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn disabling_or_removing_a_user_ends_their_sessions_at_once() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    assert!(
        app.cli(&["user", "disable", "ann"], None)
            .await
            .status
            .success()
    );
    app.signed_out_within_the_feed_bound("after disable").await;
    assert!(
        app.cli(&["user", "enable", "ann"], None)
            .await
            .status
            .success()
    );
    assert_eq!(
        app.profile_status().await,
        StatusCode::UNAUTHORIZED,
        "enabling does not revive sessions"
    );
    app.sign_in("ann", PASSWORD).await;
    assert!(
        app.cli(&["user", "remove", "ann"], None)
            .await
            .status
            .success()
    );
    app.signed_out_within_the_feed_bound("after remove").await;
}

#[tokio::test]
async fn a_revocation_from_the_cli_ends_every_session_of_the_user() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.add_user("bob", OTHER_PASSWORD, &[]).await;
    let second = TestApp::start(app.dir.clone(), app.env.clone()).await;
    app.sign_in("ann", PASSWORD).await;
    second.sign_in("ann", PASSWORD).await;
    let bob = TestApp::start(app.dir.clone(), app.env.clone()).await;
    bob.sign_in("bob", OTHER_PASSWORD).await;
    app.warm_cache().await;
    second.warm_cache().await;
    bob.warm_cache().await;
    let out = app.cli(&["session", "revoke", "--user", "ann"], None).await;
    assert!(out.status.success());
    assert!(
        common::stdout(&out).contains("revoked 2"),
        "{}",
        common::stdout(&out)
    );
    app.signed_out_within_the_feed_bound("first instance").await;
    second
        .signed_out_within_the_feed_bound("second instance")
        .await;
    assert_eq!(
        bob.profile_status().await,
        StatusCode::OK,
        "other users keep theirs"
    );
}

#[tokio::test]
async fn a_role_change_takes_effect_at_once_under_a_new_token() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    app.warm_cache().await;
    assert_eq!(app.get_json("/admin").await.status(), StatusCode::FORBIDDEN);
    let before = app.session_cookie().unwrap();
    assert!(
        app.cli(&["user", "roles", "ann", "--add", "admin"], None)
            .await
            .status
            .success()
    );
    common::within_the_feed_bound(
        "role added",
        StatusCode::FORBIDDEN,
        StatusCode::OK,
        || async { app.get_json("/admin").await.status() },
    )
    .await;
    let after = app.session_cookie().unwrap();
    assert_ne!(before, after, "a privilege change issues a new token");
    assert_eq!(
        with_cookie(&app, "/profile", &before).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert!(
        app.cli(&["user", "roles", "ann", "--remove", "admin"], None)
            .await
            .status
            .success()
    );
    common::within_the_feed_bound(
        "role removed",
        StatusCode::OK,
        StatusCode::FORBIDDEN,
        || async { app.get_json("/admin").await.status() },
    )
    .await;
    let body: Value = app.get_json("/profile").await.json().await.unwrap();
    assert_eq!(body["roles"], serde_json::json!([]));
}

#[tokio::test]
async fn a_session_survives_a_server_restart() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    let cookie = app.session_cookie().unwrap();
    let restarted = TestApp::start(app.dir.clone(), app.env.clone()).await;
    drop(app);
    assert_eq!(
        with_cookie(&restarted, "/profile", &cookie).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn reading_pages_does_not_write_the_store_on_every_request() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    let stores = latchkey::store::Stores::open(&format!("sqlite://{}", app.db_path().display()))
        .await
        .unwrap();
    let before = stores.sessions.list(None).await.unwrap();
    for _ in 0..20 {
        assert_eq!(app.profile_status().await, StatusCode::OK);
    }
    let after = stores.sessions.list(None).await.unwrap();
    assert_eq!(before, after, "activity within a minute is not written");
}

#[tokio::test]
async fn https_deployments_get_host_prefixed_secure_cookies() {
    let app = TestApp::spawn_with(&[
        ("LATCHKEY_PUBLIC_URL", "https://login.example.com"),
        ("LATCHKEY_SAME_SITE", "strict"),
    ])
    .await;
    app.add_user("ann", PASSWORD, &[]).await;
    let r = app.login_json("ann", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()[header::STRICT_TRANSPORT_SECURITY]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
    let set = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(set.starts_with("__Host-latchkey="), "{set}");
    assert!(
        set.contains("; Secure") && set.contains("SameSite=Strict") && set.contains("Path=/"),
        "{set}"
    );
    assert!(!set.contains("Domain"), "{set}");
    let value = set
        .trim_start_matches("__Host-latchkey=")
        .split(';')
        .next()
        .unwrap();
    let ok = reqwest::Client::new()
        .get(app.url("/profile"))
        .header(header::ACCEPT, "application/json")
        .header(header::COOKIE, format!("__Host-latchkey={value}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        ok.status(),
        StatusCode::OK,
        "behind a TLS proxy the prefixed cookie is read"
    );
    let wrong_name = with_cookie(&app, "/profile", value).await;
    assert_eq!(
        wrong_name.status(),
        StatusCode::UNAUTHORIZED,
        "the unprefixed name is not accepted"
    );
}

#[tokio::test]
async fn rotating_the_secret_signs_nobody_out_and_reissues_their_cookies() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let csrf = app.sign_in("ann", PASSWORD).await;
    let old_cookie = app.session_cookie().unwrap();
    // A login form shown before the rotation, too.
    let (visitor, visitor_jar) = common::client();
    let form = visitor
        .get(app.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = form.find(marker).unwrap() + marker.len();
    let form_token = form[start..].split('"').next().unwrap().to_owned();

    let new_secret = "rotated-secret-9876543210-ZYXWVUTSRQ-abcdefghij";
    let rotated_env = |previous: Option<&str>| {
        let mut env = app.env.clone();
        env.retain(|(k, _)| k != "LATCHKEY_SECRET");
        env.push(("LATCHKEY_SECRET".into(), new_secret.into()));
        if let Some(p) = previous {
            env.push(("LATCHKEY_PREVIOUS_SECRETS".into(), p.into()));
        }
        env
    };
    let rotated = TestApp::start(app.dir.clone(), rotated_env(Some(common::SECRET))).await;
    // Even a cacheable answer that carries the re-signed cookie is not to be kept.
    let css = with_cookie(&rotated, "/static/latchkey.css", &old_cookie).await;
    assert!(css.headers().get(header::SET_COOKIE).is_some());
    assert_eq!(css.headers()[header::CACHE_CONTROL], "no-store");
    let r = with_cookie(&rotated, "/profile", &old_cookie).await;
    assert_eq!(r.status(), StatusCode::OK, "still signed in");
    let reissued = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .find_map(|v| {
            let v = v.to_str().unwrap();
            v.strip_prefix("latchkey=")
                .map(|rest| rest.split(';').next().unwrap().to_owned())
        })
        .expect("the cookie is signed anew");
    assert_ne!(reissued, old_cookie);
    assert_eq!(
        with_cookie(&rotated, "/profile", &reissued).await.status(),
        StatusCode::OK
    );
    // A page shown before the rotation still signs out.
    let out = reqwest::Client::new()
        .post(rotated.url("/logout"))
        .header(header::ACCEPT, "application/json")
        .header(header::COOKIE, format!("latchkey={reissued}"))
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::OK);
    assert_eq!(
        with_cookie(&rotated, "/profile", &reissued).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A login form from before the rotation still signs in.
    let cookies = reqwest::cookie::CookieStore::cookies(&*visitor_jar, &app.base.parse().unwrap())
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(rotated.url("/login"))
        .header(header::COOKIE, cookies)
        .form(&[
            ("username", "ann"),
            ("password", PASSWORD),
            ("csrf_token", &form_token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    drop(rotated);
    // Once the old secret is retired, its cookies are simply unknown.
    let retired = TestApp::start(app.dir.clone(), rotated_env(None)).await;
    let fresh = app.sign_in("ann", PASSWORD).await;
    assert!(!fresh.is_empty());
    let old = app.session_cookie().unwrap();
    assert_eq!(
        with_cookie(&retired, "/profile", &old).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
