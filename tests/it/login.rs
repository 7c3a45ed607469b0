//! Signing in: the form and the JSON API, fixation, login CSRF, open
//! redirects, enumeration, throttling and hash upgrades.

use crate::common;

use std::time::{Duration, Instant};

use common::{OTHER_PASSWORD, PASSWORD, TestApp};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

/// The login form's CSRF token, after loading the page like a browser.
async fn form_token(app: &TestApp) -> String {
    let page = app.get("/login").await.text().await.unwrap();
    let marker = "name=\"csrf_token\" value=\"";
    let start = page.find(marker).unwrap() + marker.len();
    page[start..].split('"').next().unwrap().to_owned()
}

async fn form_login(app: &TestApp, name: &str, password: &str, next: &str) -> reqwest::Response {
    let token = form_token(app).await;
    app.post_form(
        "/login",
        &[
            ("username", name),
            ("password", password),
            ("csrf_token", &token),
            ("next", next),
        ],
    )
    .await
}

#[tokio::test]
async fn the_login_page_is_an_accessible_form_that_needs_no_script() {
    let app = TestApp::spawn().await;
    let r = app.get("/login?next=/admin").await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let html = r.text().await.unwrap();
    for needle in [
        "<label for=\"username\">",
        "<label for=\"password\">",
        "autocomplete=\"username\"",
        "autocomplete=\"current-password\"",
        "name=\"csrf_token\"",
        "name=\"next\" value=\"/admin\"",
        "method=\"post\" action=\"/login\"",
    ] {
        assert!(html.contains(needle), "missing {needle}");
    }
    // The one script only reloads pages restored from the back/forward
    // cache; nothing inline, and the form works without it.
    let scripts: Vec<&str> = html
        .match_indices("<script")
        .map(|(i, _)| &html[i..])
        .collect();
    assert_eq!(scripts.len(), 1, "{html}");
    assert!(scripts[0].starts_with(r#"<script src="/static/latchkey.js"></script>"#));
}

#[tokio::test]
async fn a_form_login_redirects_to_next_with_a_fresh_http_only_cookie() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let r = form_login(&app, "ann", PASSWORD, "/admin?tab=users").await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/admin?tab=users");
    let set: Vec<_> = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set.iter().find(|c| c.starts_with("latchkey=")).unwrap();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Lax")
            && session.contains("Path=/")
    );
    assert!(
        !session.contains("Secure"),
        "plain http on loopback cannot use Secure"
    );
    assert!(
        set.iter().any(|c| c.starts_with("latchkey-csrf=;")),
        "the login CSRF cookie is cleared"
    );
    assert_eq!(app.profile_status().await, StatusCode::OK);
}

#[tokio::test]
async fn a_json_login_returns_the_user_roles_and_csrf_token() {
    let app = TestApp::spawn().await;
    app.add_user("Ann", PASSWORD, &["admin", "ops"]).await;
    let r = app.login_json("ANN", PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["username"], "Ann");
    assert_eq!(body["roles"], json!(["admin", "ops"]));
    assert_eq!(body["csrf_token"].as_str().unwrap().len(), 43);
    let profile: Value = app.get_json("/profile").await.json().await.unwrap();
    assert_eq!(profile["csrf_token"], body["csrf_token"]);
}

#[tokio::test]
async fn usernames_match_regardless_of_case_and_unicode_form() {
    let app = TestApp::spawn().await;
    app.add_user("Zoë", PASSWORD, &[]).await;
    assert_eq!(
        app.login_json("ZOE\u{0308}", PASSWORD).await.status(),
        StatusCode::OK
    );
    let dup = app
        .cli(
            &["user", "add", "zoë", "--password-stdin"],
            Some(OTHER_PASSWORD),
        )
        .await;
    assert!(!dup.status.success(), "a case variant is the same user");
}

#[tokio::test]
async fn signing_in_replaces_any_existing_session_token() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.add_user("bob", OTHER_PASSWORD, &[]).await;
    app.sign_in("ann", PASSWORD).await;
    let first = app.session_cookie().unwrap();
    app.sign_in("bob", OTHER_PASSWORD).await;
    let second = app.session_cookie().unwrap();
    assert_ne!(first, second);
    let replay = common::with_cookie(&app, "/profile", &first).await;
    assert_eq!(
        replay.status(),
        StatusCode::UNAUTHORIZED,
        "the pre-login session is destroyed"
    );
}

#[tokio::test]
async fn a_planted_token_is_never_adopted() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    // Correctly signed (the attacker knows the secret in this worst case) but never issued.
    let signer = latchkey::internals::CookieSigner::new(
        &latchkey::ServerSecret::new(common::SECRET).unwrap(),
    );
    let planted = signer.sign(&latchkey::internals::SessionToken::generate());
    assert_eq!(
        common::with_cookie(&app, "/profile", &planted)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let r = app
        .request(Method::POST, "/login")
        .header(header::COOKIE, format!("latchkey={planted}"))
        .header(header::ACCEPT, "application/json")
        .json(&json!({"username": "ann", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let issued = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .find_map(|v| {
            v.to_str()
                .unwrap()
                .strip_prefix("latchkey=")
                .map(|s| s.split(';').next().unwrap().to_owned())
        })
        .unwrap();
    assert_ne!(issued, planted);
    assert_eq!(
        common::with_cookie(&app, "/profile", &planted)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        common::with_cookie(&app, "/profile", &issued)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_login_form_needs_its_csrf_token() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let _ = form_token(&app).await;
    let missing = app
        .post_form("/login", &[("username", "ann"), ("password", PASSWORD)])
        .await;
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    let wrong = app
        .post_form(
            "/login",
            &[
                ("username", "ann"),
                ("password", PASSWORD),
                ("csrf_token", "forged"),
            ],
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    // A token from another browser (no matching cookie) is refused too.
    let other = TestApp::start(app.dir.clone(), app.env.clone()).await;
    let foreign = form_token(&other).await;
    let r = app
        .post_form(
            "/login",
            &[
                ("username", "ann"),
                ("password", PASSWORD),
                ("csrf_token", &foreign),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.profile_status().await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cross_site_logins_are_refused() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let token = form_token(&app).await;
    let form = [
        ("username", "ann"),
        ("password", PASSWORD),
        ("csrf_token", token.as_str()),
    ];
    let r = app
        .request(Method::POST, "/login")
        .header(header::ORIGIN, "https://evil.example")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .request(Method::POST, "/login")
        .header("sec-fetch-site", "cross-site")
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .request(Method::POST, "/login")
        .header(header::ORIGIN, "https://evil.example")
        .json(&json!({"username": "ann", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.profile_status().await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_further_origin_of_the_site_is_accepted_and_named_when_another_is_refused() {
    let app = TestApp::spawn_with(&[("LATCHKEY_ALLOWED_ORIGINS", "https://www.example.com")]).await;
    app.add_user("ann", PASSWORD, &[]).await;
    let login = |origin: &'static str| {
        app.request(Method::POST, "/login")
            .header(header::ORIGIN, origin)
            .header("sec-fetch-site", "same-origin")
            .json(&json!({"username": "ann", "password": PASSWORD}))
            .send()
    };
    let r = login("https://evil.example").await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let message = r.json::<Value>().await.unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("https://evil.example")
            && message.contains(&app.base)
            && message.contains("https://www.example.com"),
        "{message}"
    );
    assert_eq!(app.profile_status().await, StatusCode::UNAUTHORIZED);
    let r = login("https://www.example.com").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(app.profile_status().await, StatusCode::OK);
}

#[tokio::test]
async fn next_only_accepts_paths_on_this_site() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    for bad in [
        "//evil.example/x",
        "/\\evil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "evil.example",
        "/\t/evil.example",
    ] {
        let r = form_login(&app, "ann", PASSWORD, bad).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{bad:?}");
        assert_eq!(r.headers()[header::LOCATION], "/profile", "{bad:?}");
        // Signed in, the login page offers only signing out: do that first.
        let profile: Value = app.get_json("/profile").await.json().await.unwrap();
        let out = app
            .request(Method::POST, "/logout")
            .header(header::ACCEPT, "application/json")
            .header("x-csrf-token", profile["csrf_token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), StatusCode::OK);
    }
    let page = app
        .get("/login?next=//evil.example")
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"next\" value=\"/profile\""));
}

#[tokio::test]
async fn unknown_users_and_wrong_passwords_get_the_same_answer() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let wrong = app.login_json("ann", "not-the-password-at-all").await;
    let unknown = app.login_json("nobody", "not-the-password-at-all").await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status(), StatusCode::UNAUTHORIZED);
    let (w, u): (Value, Value) = (wrong.json().await.unwrap(), unknown.json().await.unwrap());
    assert_eq!(w, u);
    assert_eq!(w["error"], "invalid_credentials");
    // A disabled account answers the same, even with the right password.
    app.add_user("dis", PASSWORD, &[]).await;
    assert!(
        app.cli(&["user", "disable", "dis"], None)
            .await
            .status
            .success()
    );
    let disabled: Value = app.login_json("dis", PASSWORD).await.json().await.unwrap();
    assert_eq!(disabled, w);
    // And the HTML pages differ only in the per-visitor CSRF token.
    let strip = |s: String| {
        s.split("csrf_token").next().unwrap().to_owned() + s.split("name=\"next\"").nth(1).unwrap()
    };
    let t = form_token(&app).await;
    let a = app
        .post_form(
            "/login",
            &[
                ("username", "ann"),
                ("password", "nope-nope-nope"),
                ("csrf_token", &t),
            ],
        )
        .await;
    let b = app
        .post_form(
            "/login",
            &[
                ("username", "ann"),
                ("password", "nope-nope-nope"),
                ("csrf_token", &t),
            ],
        )
        .await;
    assert_eq!(a.status(), StatusCode::UNAUTHORIZED);
    let c = app
        .post_form(
            "/login",
            &[
                ("username", "nobody2"),
                ("password", "nope-nope-nope"),
                ("csrf_token", &t),
            ],
        )
        .await;
    assert_eq!(c.status(), StatusCode::UNAUTHORIZED);
    let (a, b, c) = (
        strip(a.text().await.unwrap()),
        strip(b.text().await.unwrap()),
        strip(c.text().await.unwrap()),
    );
    assert_eq!(a, b);
    assert_eq!(a.replace("ann", "X"), c.replace("nobody2", "X"));
}

#[tokio::test]
async fn unknown_users_take_as_long_as_wrong_passwords() {
    // Production argon2 cost, so that a skipped hash would stand out.
    let app = TestApp::spawn_with(&[
        ("LATCHKEY_ARGON2_MEMORY_KIB", "19456"),
        ("LATCHKEY_ARGON2_ITERATIONS", "2"),
        ("LATCHKEY_LOGIN_MAX_FAILURES", "1000"),
        ("LATCHKEY_LOGIN_IP_MAX_FAILURES", "1000"),
    ])
    .await;
    app.add_user("ann", PASSWORD, &[]).await;
    // Paired: each unknown name is timed next to a known one, and the median
    // of their ratios is compared, so that the load of whatever else runs on
    // the machine falls on both sides of each pair alike. Each side of a
    // pair is the fastest of three tries, taken in turns: load only ever
    // adds time, so the fastest try is the one it disturbed least (a single
    // try per side put the median at 1.8 or 2.0 about one run in twenty
    // with builds running beside the suite). Which side goes first
    // alternates, so that a burst of load favours neither. A skipped hash
    // shows as a ratio near 0.05; a dummy hash dearer than the stored one
    // (parameters raised since) as 2 or more.
    const PAIRS: usize = 15;
    const TRIES: usize = 3;
    let known = || async {
        let t = Instant::now();
        assert_eq!(
            app.login_json("ann", "wrong-password-here").await.status(),
            StatusCode::UNAUTHORIZED
        );
        t.elapsed().as_secs_f64()
    };
    let unknown = |i: usize| {
        let app = &app;
        async move {
            let t = Instant::now();
            assert_eq!(
                app.login_json(&format!("ghost{i}"), "wrong-password-here")
                    .await
                    .status(),
                StatusCode::UNAUTHORIZED
            );
            t.elapsed().as_secs_f64()
        }
    };
    let mut ratios = Vec::new();
    for i in 0..PAIRS {
        let (mut k, mut u) = (f64::MAX, f64::MAX);
        for j in 0..TRIES {
            let name = i * TRIES + j;
            if (i + j) % 2 == 0 {
                k = k.min(known().await);
                u = u.min(unknown(name).await);
            } else {
                u = u.min(unknown(name).await);
                k = k.min(known().await);
            }
        }
        ratios.push(u / k);
    }
    ratios.sort_by(f64::total_cmp);
    let median = ratios[PAIRS / 2];
    assert!(
        median > 0.6 && median < 1.6,
        "unknown ÷ known, median of {PAIRS} pairs: {median:.2} (all: {ratios:.2?})"
    );
}

#[tokio::test]
async fn five_failures_lock_the_account_even_for_the_right_password() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    for _ in 0..5 {
        assert_eq!(
            app.login_json("ann", "wrong-password-here").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let locked = app.login_json("ann", PASSWORD).await;
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = common::retry_after(&locked);
    assert!((890..=900).contains(&retry), "retry after {retry}");
    let body: Value = locked.json().await.unwrap();
    assert_eq!(body["error"], "too_many_attempts");
    // Unknown accounts lock the same way: no enumeration through the lock.
    for _ in 0..5 {
        app.login_json("ghost", "wrong-password-here").await;
    }
    assert_eq!(
        app.login_json("ghost", "whatever-at-all").await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    // Other accounts are not affected.
    app.add_user("bob", OTHER_PASSWORD, &[]).await;
    assert_eq!(
        app.login_json("bob", OTHER_PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_browser_that_is_throttled_sees_the_form_again_with_retry_after() {
    let app = TestApp::spawn_with(&[("LATCHKEY_LOGIN_MAX_FAILURES", "2")]).await;
    app.add_user("ann", PASSWORD, &[]).await;
    let first = form_login(&app, "ann", "wrong-password-here", "/").await;
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    assert!(!first.headers().contains_key(header::RETRY_AFTER));
    // The failure that reaches the limit says at once that the account is
    // locked, and for how long.
    for (what, password) in [
        ("the failure that locks", "wrong-password-here"),
        ("the right password while locked", PASSWORD),
    ] {
        let r = form_login(&app, "ann", password, "/").await;
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS, "{what}");
        let retry = common::retry_after(&r);
        assert!((890..=900).contains(&retry), "{what}: retry after {retry}");
        let page = r.text().await.unwrap();
        assert!(
            page.contains("Sign-in is locked: try again in 15 minutes."),
            "{what}: {page}"
        );
        assert!(
            page.contains(r#"name="csrf_token""#),
            "{what}: the form is shown again"
        );
    }
    assert_eq!(app.session_cookie(), None, "no session was made");
}

#[tokio::test]
async fn a_success_resets_the_account_counter() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    for _ in 0..4 {
        app.login_json("ann", "wrong-password-here").await;
    }
    assert_eq!(
        app.login_json("ann", PASSWORD).await.status(),
        StatusCode::OK
    );
    for _ in 0..4 {
        assert_eq!(
            app.login_json("ann", "wrong-password-here").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.login_json("ann", PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_lock_ends_after_the_lockout() {
    let app = TestApp::spawn_with(&[
        ("LATCHKEY_LOGIN_MAX_FAILURES", "2"),
        ("LATCHKEY_LOGIN_LOCKOUT", "2s"),
    ])
    .await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.login_json("ann", "wrong-password-here").await;
    app.login_json("ann", "wrong-password-here").await;
    assert_eq!(
        app.login_json("ann", PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    app.clock.advance(Duration::from_millis(1_900));
    assert_eq!(
        app.login_json("ann", PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "not before the lockout has passed"
    );
    app.clock.advance(Duration::from_millis(200));
    assert_eq!(
        app.login_json("ann", PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn one_client_address_is_limited_across_accounts() {
    let app = TestApp::spawn_with(&[("LATCHKEY_LOGIN_IP_MAX_FAILURES", "3")]).await;
    app.add_user("ann", PASSWORD, &[]).await;
    for name in ["u1", "u2", "u3"] {
        assert_eq!(
            app.login_json(name, "wrong-password-here").await.status(),
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        app.login_json("ann", PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

async fn login_from(app: &TestApp, forwarded_for: &str, name: &str, password: &str) -> StatusCode {
    common::json_login(&app.client, app.url("/login"), name, password)
        .header("x-forwarded-for", forwarded_for)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_trusted_proxy_decides_the_client_address() {
    let app = TestApp::spawn_with(&[
        ("LATCHKEY_LOGIN_IP_MAX_FAILURES", "2"),
        ("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await;
    app.add_user("ann", PASSWORD, &[]).await;
    login_from(&app, "198.51.100.1", "u1", "wrong-password-here").await;
    login_from(&app, "198.51.100.1", "u2", "wrong-password-here").await;
    assert_eq!(
        login_from(&app, "198.51.100.1", "ann", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        login_from(&app, "198.51.100.2", "ann", PASSWORD).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn forwarded_for_is_ignored_without_a_trusted_proxy() {
    let app = TestApp::spawn_with(&[("LATCHKEY_LOGIN_IP_MAX_FAILURES", "2")]).await;
    app.add_user("ann", PASSWORD, &[]).await;
    login_from(&app, "198.51.100.1", "u1", "wrong-password-here").await;
    login_from(&app, "198.51.100.2", "u2", "wrong-password-here").await;
    assert_eq!(
        login_from(&app, "198.51.100.3", "ann", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

async fn stored_hash(app: &TestApp, name: &str) -> String {
    let stores = latchkey::store::Stores::open(&format!("sqlite://{}", app.db_path().display()))
        .await
        .unwrap();
    stores
        .users
        .user_by_key(name)
        .await
        .unwrap()
        .unwrap()
        .password_hash
}

#[tokio::test]
async fn bcrypt_and_older_argon2_hashes_are_upgraded_at_login() {
    let app = TestApp::spawn().await;
    let legacy = [
        ("bc", bcrypt::hash(PASSWORD, 4).unwrap()),
        (
            "old",
            "$argon2i$v=19$m=512,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$".to_owned() + &argon2_i_hash(),
        ),
    ];
    common::plant_users(&app.db_path(), &legacy).await;
    for (name, hash) in &legacy {
        assert_eq!(
            app.login_json(name, PASSWORD).await.status(),
            StatusCode::OK,
            "{name}"
        );
        let now = stored_hash(&app, name).await;
        assert_ne!(&now, hash);
        assert!(now.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{now}");
        assert_eq!(
            app.login_json(name, PASSWORD).await.status(),
            StatusCode::OK,
            "{name} after upgrade"
        );
    }
}

/// The hash part of an argon2i PHC string for [`PASSWORD`] with m=512, t=2.
fn argon2_i_hash() -> String {
    use argon2::{Algorithm, Argon2, Params, PasswordHasher as _, Version};
    let a = Argon2::new(
        Algorithm::Argon2i,
        Version::V0x13,
        Params::new(512, 2, 1, None).unwrap(),
    );
    let full = a
        .hash_password_with_salt(PASSWORD.as_bytes(), b"somesaltsomesalt")
        .unwrap()
        .to_string();
    full.rsplit('$').next().unwrap().to_owned()
}

/// Sends `n` JSON logins for ann at once, each from a fresh client, with
/// the password `password(i)`; returns the statuses.
async fn burst(app: &TestApp, n: usize, password: impl Fn(usize) -> String) -> Vec<StatusCode> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = common::client().0;
        let url = app.url("/login");
        let body = json!({"username": "ann", "password": password(i)});
        tasks.spawn(async move {
            let r = client
                .post(url)
                .header(header::ACCEPT, "application/json")
                .json(&body)
                .send();
            r.await.unwrap().status()
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = tasks.join_next().await {
        statuses.push(status.unwrap());
    }
    statuses
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_get_no_more_than_the_limit() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let mut checked = 0;
    for status in burst(&app, 30, |i| format!("guess-number-{i}")).await {
        match status {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(checked, 5, "only five guesses were checked");
    assert_eq!(
        app.login_json("ann", PASSWORD).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn an_administrator_can_lift_a_lock_and_a_new_password_or_enabling_lifts_it_too() {
    let app = TestApp::spawn_with(&[("LATCHKEY_LOGIN_MAX_FAILURES", "2")]).await;
    app.add_user("ann", PASSWORD, &[]).await;
    let lock = async || {
        for _ in 0..2 {
            app.login_json("ann", "wrong-password-here").await;
        }
        assert_eq!(
            app.login_json("ann", PASSWORD).await.status(),
            StatusCode::TOO_MANY_REQUESTS,
            "locked"
        );
    };
    lock().await;
    let out = app.cli_ok(&["user", "unlock", "ANN"], None).await;
    assert!(common::stdout(&out).contains("unlocked ANN"));
    assert_eq!(
        app.login_json("ann", PASSWORD).await.status(),
        StatusCode::OK
    );

    lock().await;
    let out = app
        .cli(
            &["user", "passwd", "ann", "--password-stdin"],
            Some(OTHER_PASSWORD),
        )
        .await;
    assert!(out.status.success());
    assert_eq!(
        app.login_json("ann", OTHER_PASSWORD).await.status(),
        StatusCode::OK,
        "a new password starts with a clean slate"
    );

    for _ in 0..2 {
        app.login_json("ann", "wrong-password-here").await;
    }
    assert!(
        app.cli(&["user", "disable", "ann"], None)
            .await
            .status
            .success()
    );
    assert!(
        app.cli(&["user", "enable", "ann"], None)
            .await
            .status
            .success()
    );
    assert_eq!(
        app.login_json("ann", OTHER_PASSWORD).await.status(),
        StatusCode::OK,
        "enabling lifts the lock"
    );

    let out = app.cli(&["user", "unlock", "nobody"], None).await;
    assert!(!out.status.success());
    assert!(common::stderr(&out).contains("no user named \"nobody\""));
}

/// How many failure counters the test server's SQLite file holds.
async fn counters(app: &TestApp) -> i64 {
    use sqlx::Connection as _;
    let mut db = sqlx::SqliteConnection::connect(&format!("sqlite://{}", app.db_path().display()))
        .await
        .unwrap();
    sqlx::query_scalar("SELECT COUNT(*) FROM login_failures")
        .fetch_one(&mut db)
        .await
        .unwrap()
}

/// Where a flood test's failure counters live: the SQLite file, or keys in
/// Redis under a fresh prefix.
enum Counters {
    Sqlite,
    Redis { url: String, prefix: String },
}

impl Counters {
    async fn count(&self, app: &TestApp) -> i64 {
        match self {
            Self::Sqlite => counters(app).await,
            Self::Redis { url, prefix } => crate::support::count_redis_keys(url, prefix).await,
        }
    }
}

async fn a_locked_address_flooding_invented_names_writes_nothing(store: Counters) {
    let mut env = vec![
        ("LATCHKEY_LOGIN_IP_MAX_FAILURES", "3".to_owned()),
        ("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1/32".to_owned()),
    ];
    if let Counters::Redis { url, prefix } = &store {
        env.push(("LATCHKEY_SESSION_STORE_URL", url.clone()));
        env.push(("LATCHKEY_SESSION_STORE_PREFIX", prefix.clone()));
    }
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = TestApp::spawn_with(&env).await;
    app.add_user("ann", PASSWORD, &[]).await;
    let attacker = "203.0.113.9";
    for name in ["u1", "u2", "u3"] {
        assert_eq!(
            login_from(&app, attacker, name, "wrong-password-here").await,
            StatusCode::UNAUTHORIZED
        );
    }
    let before = store.count(&app).await;
    if matches!(store, Counters::Sqlite) {
        assert_eq!(before, 4, "three accounts and one address");
    }
    for i in 0..200 {
        assert_eq!(
            login_from(&app, attacker, &format!("invented{i}"), "whatever-1").await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(
        store.count(&app).await,
        before,
        "refused attempts leave no counter"
    );
    // Everybody else signs in as usual.
    assert_eq!(
        login_from(&app, "198.51.100.7", "ann", PASSWORD).await,
        StatusCode::OK
    );
    if let Counters::Redis { url, prefix } = &store {
        crate::support::drop_redis_prefix(url, prefix).await;
    }
}

#[tokio::test]
async fn a_locked_address_flooding_invented_names_writes_no_sqlite_rows() {
    a_locked_address_flooding_invented_names_writes_nothing(Counters::Sqlite).await;
}

#[tokio::test]
async fn a_locked_address_flooding_invented_names_writes_no_redis_keys() {
    let Some(url) = crate::support::redis_url().await else {
        return;
    };
    let prefix = crate::support::fresh_prefix();
    a_locked_address_flooding_invented_names_writes_nothing(Counters::Redis { url, prefix }).await;
}

#[tokio::test]
async fn one_address_gets_its_share_of_sign_in_requests_per_minute_before_any_store_access() {
    let app = TestApp::spawn_with(&[
        ("LATCHKEY_LOGIN_RATE", "5"),
        ("LATCHKEY_TRUSTED_PROXIES", "127.0.0.1/32"),
    ])
    .await;
    app.add_user("ann", PASSWORD, &[]).await;
    let flood = "203.0.113.50";
    for i in 0..5 {
        assert_eq!(
            login_from(&app, flood, &format!("name{i}"), "wrong-password-1").await,
            StatusCode::UNAUTHORIZED
        );
    }
    let before = counters(&app).await;
    let r = common::json_login(&app.client, app.url("/login"), "name9", "wrong-password-1")
        .header("x-forwarded-for", flood)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = common::retry_after(&r);
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "too_many_requests", "not a failure count");
    assert_eq!(
        body["message"],
        "too many sign-in requests from your address; try again later"
    );
    assert_eq!(counters(&app).await, before, "refused before the store");
    // Other addresses are not held back, and the next minute is a new share.
    assert_eq!(
        login_from(&app, "198.51.100.8", "ann", PASSWORD).await,
        StatusCode::OK
    );
    app.clock.advance(Duration::from_secs(61));
    assert_eq!(
        login_from(&app, flood, "ann", PASSWORD).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_password_typed_decomposed_signs_in_like_the_composed_one() {
    let app = TestApp::spawn().await;
    let composed = "Gr\u{fc}\u{df}e-aus-K\u{f6}ln-77";
    let decomposed = "Gru\u{308}\u{df}e-aus-Ko\u{308}ln-77";
    app.add_user("ann", composed, &[]).await;
    assert_eq!(
        app.login_json("ann", decomposed).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login_json("ann", composed).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login_json("ann", "Gru\u{308}\u{df}e-aus-Ko\u{308}ln-78")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}
