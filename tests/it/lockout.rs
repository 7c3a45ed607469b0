//! Lockouts that an attacker cannot turn against an account's owner: device
//! cookies, and attempts in flight that are not failures.

use crate::common;

use common::{OTHER_PASSWORD, PASSWORD, TestApp, cookie_named};
use reqwest::{Client, StatusCode, header};

/// A JSON sign-in from `client` (a browser of its own, with its own jar).
async fn login(app: &TestApp, client: &Client, name: &str, password: &str) -> StatusCode {
    common::json_login(client, app.url("/login"), name, password)
        .send()
        .await
        .unwrap()
        .status()
}

/// Fails `n` sign-ins for `name` from `client`.
async fn fail(app: &TestApp, client: &Client, name: &str, n: usize) {
    for _ in 0..n {
        assert_eq!(
            login(app, client, name, "wrong-password-here").await,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn an_attacker_who_locks_an_account_does_not_lock_out_its_owner_on_a_known_device() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    // Ann signs in once on her browser and signs out again.
    let token = app.sign_in("ann", PASSWORD).await;
    let device = cookie_named(&app.jar, &app.base, "latchkey-device").expect("a device cookie");
    let out = app.post_form("/logout", &[("csrf_token", &token)]).await;
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        cookie_named(&app.jar, &app.base, "latchkey-device").as_deref(),
        Some(device.as_str()),
        "signing out keeps the device cookie"
    );

    // Somebody else guesses until untrusted clients are locked out.
    let (attacker, _) = common::client();
    fail(&app, &attacker, "ann", 5).await;
    assert_eq!(
        login(&app, &attacker, "ann", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "untrusted clients are locked, even with the right password"
    );
    let (stranger, _) = common::client();
    assert_eq!(
        login(&app, &stranger, "ann", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Ann, on her known device, signs in at once.
    assert_eq!(
        login(&app, &app.client, "ann", PASSWORD).await,
        StatusCode::OK
    );
    assert_eq!(
        login(&app, &attacker, "ann", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "her success does not unlock the attacker"
    );
}

#[tokio::test]
async fn failures_on_a_known_device_lock_that_device_only() {
    let app = TestApp::spawn_with(&[("LATCHKEY_LOGIN_MAX_FAILURES", "3")]).await;
    app.add_user("ann", PASSWORD, &[]).await;
    let (laptop, _) = common::client();
    let (phone, _) = common::client();
    for device in [&laptop, &phone] {
        assert_eq!(login(&app, device, "ann", PASSWORD).await, StatusCode::OK);
    }
    // Someone at her laptop guesses: the laptop locks itself.
    fail(&app, &laptop, "ann", 3).await;
    let locked = common::json_login(&laptop, app.url("/login"), "ann", PASSWORD)
        .send()
        .await
        .unwrap();
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry = common::retry_after(&locked);
    assert!((890..=900).contains(&retry), "retry after {retry}");
    // Her phone and untrusted clients are not affected by the laptop's lock.
    assert_eq!(login(&app, &phone, "ann", PASSWORD).await, StatusCode::OK);
    let (stranger, _) = common::client();
    assert_eq!(
        login(&app, &stranger, "ann", PASSWORD).await,
        StatusCode::OK
    );
    // An administrator's unlock lifts the device's lock too.
    app.cli_ok(&["user", "unlock", "ann"], None).await;
    assert_eq!(login(&app, &laptop, "ann", PASSWORD).await, StatusCode::OK);
}

#[tokio::test]
async fn a_device_cookie_counts_only_for_its_own_account_and_cannot_be_forged() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    app.add_user("bob", OTHER_PASSWORD, &[]).await;
    let (attacker, _) = common::client();
    fail(&app, &attacker, "bob", 5).await;
    // Ann's device is known for ann, not for bob.
    assert_eq!(
        login(&app, &app.client, "ann", PASSWORD).await,
        StatusCode::OK
    );
    assert_eq!(
        login(&app, &app.client, "bob", OTHER_PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A made-up or altered device cookie is no device at all.
    let ann_device = cookie_named(&app.jar, &app.base, "latchkey-device").unwrap();
    let (id, mac) = ann_device.split_once('.').unwrap();
    for forged in [
        "forged.value".to_owned(),
        format!("{id}x.{mac}"),
        format!("{id}.{}", mac.replace(|c: char| c != 'A', "A")),
    ] {
        let status = common::json_login(&Client::new(), app.url("/login"), "bob", OTHER_PASSWORD)
            .header(header::COOKIE, format!("latchkey-device={forged}"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{forged}");
    }
}

#[tokio::test]
async fn the_device_cookie_is_long_lived_http_only_and_strict() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let r = app.login_json("ann", PASSWORD).await;
    let device = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("latchkey-device="))
        .expect("a device cookie");
    for attribute in ["Max-Age=15552000", "Path=/", "HttpOnly", "SameSite=Strict"] {
        assert!(device.contains(attribute), "{device}");
    }
}

/// Sends `n` correct JSON sign-ins for ann at once, each from a fresh
/// client; returns the statuses.
async fn burst_of_right_passwords(app: &TestApp, n: usize) -> Vec<StatusCode> {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..n {
        let client = common::client().0;
        let url = app.url("/login");
        let request = common::json_login(&client, url, "ann", PASSWORD);
        tasks.spawn(async move { request.send().await.unwrap().status() });
    }
    tasks.join_all().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_right_passwords_all_sign_in_and_leave_no_lock_behind() {
    // Fewer allowed address failures than parallel attempts: attempts in
    // flight fill both the account's and the address's counters.
    let app = TestApp::spawn_with(&[("LATCHKEY_LOGIN_IP_MAX_FAILURES", "10")]).await;
    app.add_user("ann", PASSWORD, &[]).await;
    let statuses = burst_of_right_passwords(&app, 32).await;
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "an attempt in flight is not a failure: {statuses:?}"
    );
    assert_eq!(
        app.login_json("ann", PASSWORD).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn every_spelling_of_a_name_counts_against_one_account() {
    let app = TestApp::spawn_with(&[("LATCHKEY_LOGIN_MAX_FAILURES", "2")]).await;
    app.add_user("ασ-ασ", PASSWORD, &[]).await;
    let (attacker, _) = common::client();
    // A capital sigma ends a word: plain lower-casing makes it a final
    // sigma, PRECIS a medial one (which finds the account). Every spelling
    // that finds the account counts against it, once.
    for spelling in ["ΑΣ-ασ", "ασ-ΑΣ"] {
        assert_eq!(
            login(&app, &attacker, spelling, "wrong-password-here").await,
            StatusCode::UNAUTHORIZED
        );
    }
    let (stranger, _) = common::client();
    assert_eq!(
        login(&app, &stranger, "ΑΣ-ΑΣ", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // And one unlock, whichever spelling the administrator types.
    app.cli_ok(&["user", "unlock", "ασ-ΑΣ"], None).await;
    assert_eq!(
        login(&app, &stranger, "ΑΣ-ασ", PASSWORD).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_password_change_forgets_every_known_device() {
    let app = TestApp::spawn().await;
    app.add_user("ann", PASSWORD, &[]).await;
    let (laptop, _) = common::client();
    assert_eq!(login(&app, &laptop, "ann", PASSWORD).await, StatusCode::OK);
    app.cli_ok(
        &["user", "passwd", "ann", "--password-stdin"],
        Some(OTHER_PASSWORD),
    )
    .await;
    // Untrusted clients get locked out again…
    let (attacker, _) = common::client();
    fail(&app, &attacker, "ann", 5).await;
    // …and the laptop's cookie, from before the change, no longer sets it
    // apart: whoever gathered device cookies while they knew the old
    // password gains nothing from them now.
    assert_eq!(
        login(&app, &laptop, "ann", OTHER_PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_name_with_a_final_sigma_is_one_account_however_it_is_typed() {
    let app = TestApp::spawn_with(&[("LATCHKEY_LOGIN_MAX_FAILURES", "2")]).await;
    app.add_user("Νίκος", PASSWORD, &[]).await;
    let (attacker, _) = common::client();
    // Typed in capitals, the last sigma is a medial one to PRECIS and a
    // final one to plain lower-casing: both find Νίκος, and count for him.
    for spelling in ["Νίκος", "ΝΊΚΟΣ"] {
        assert_eq!(
            login(&app, &attacker, spelling, "wrong-password-here").await,
            StatusCode::UNAUTHORIZED
        );
    }
    let (stranger, _) = common::client();
    for spelling in ["νίκος", "ΝΊΚΟΣ"] {
        assert_eq!(
            login(&app, &stranger, spelling, PASSWORD).await,
            StatusCode::TOO_MANY_REQUESTS,
            "{spelling}"
        );
    }
}

#[tokio::test]
async fn a_device_of_a_removed_user_is_no_device_of_a_new_one_with_the_same_name() {
    let app = TestApp::spawn().await;
    app.add_user("bob", PASSWORD, &[]).await;
    let (laptop, _) = common::client();
    assert_eq!(login(&app, &laptop, "bob", PASSWORD).await, StatusCode::OK);
    app.cli_ok(&["user", "remove", "bob"], None).await;
    app.add_user("bob", OTHER_PASSWORD, &[]).await;
    let (attacker, _) = common::client();
    fail(&app, &attacker, "bob", 5).await;
    assert_eq!(
        login(&app, &laptop, "bob", OTHER_PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the old bob's device cookie counts for nothing"
    );
}

#[tokio::test]
async fn a_refused_sign_in_is_answered_only_after_the_refusal_delay() {
    let app = TestApp::spawn_with(&[
        ("LATCHKEY_LOGIN_MAX_FAILURES", "1"),
        ("LATCHKEY_REFUSAL_DELAY", "300ms"),
    ])
    .await;
    app.add_user("ann", PASSWORD, &[]).await;
    let (attacker, _) = common::client();
    fail(&app, &attacker, "ann", 1).await;
    let started = std::time::Instant::now();
    assert_eq!(
        login(&app, &attacker, "ann", PASSWORD).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "a flood of refusals is slowed to one per connection per delay"
    );
}
