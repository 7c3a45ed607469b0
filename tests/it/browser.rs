//! Headless Chromium against the real `latchkey` binary: first the harness
//! (`tests/it/common/browser.rs`) proves itself, then every page flow a person
//! uses is clicked through, each ending on a screenshot in
//! `target/browser-screenshots/`.

use crate::common;

use common::browser::{Browser, Latchkey, attacker_site};
use common::{OTHER_PASSWORD, PASSWORD, run_cli};
use serde_json::Value;

const PREFERS_DARK: &str = "return matchMedia('(prefers-color-scheme: dark)').matches";

#[tokio::test]
async fn the_login_page_renders_and_passes_the_accessibility_check() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let latchkey = Latchkey::start().await;
    browser.goto(&latchkey.url("/login")).await;
    assert!(browser.text().await.contains("Sign in"));
    assert_eq!(browser.script(PREFERS_DARK).await, Value::Bool(false));
    assert_eq!(browser.axe().await, []);
    browser.finish("login_page_light").await;
}

#[tokio::test]
async fn the_dark_theme_is_what_the_page_sees_and_it_passes_the_accessibility_check() {
    let Some(browser) = Browser::start_dark().await else {
        return;
    };
    let latchkey = Latchkey::start().await;
    browser.goto(&latchkey.url("/login")).await;
    assert_eq!(browser.script(PREFERS_DARK).await, Value::Bool(true));
    assert_eq!(browser.axe().await, []);
    browser.finish("login_page_dark").await;
}

#[tokio::test]
async fn the_accessibility_check_measures_contrast_against_the_dark_canvas() {
    let Some(browser) = Browser::start_dark().await else {
        return;
    };
    // Grey text that is plain to read on white but not on the dark canvas
    // the browser paints for a dark colour scheme.
    let (url, _site) = attacker_site(
        "<!doctype html><html lang=en><head><title>grey</title>\
         <style>:root { color-scheme: light dark } p { color: #555 }</style></head>\
         <body><main><h1>Grey</h1><p>Hard to read in the dark.</p></main></body></html>",
    )
    .await;
    browser.goto(&url).await;
    let violations = browser.axe().await;
    assert!(
        violations
            .iter()
            .any(|v| v.id == "color-contrast" && v.targets == ["p"]),
        "{violations:#?}"
    );
    browser.finish("contrast_on_the_dark_canvas").await;
}

#[tokio::test]
async fn cookies_the_browser_holds_report_their_attributes() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let latchkey = Latchkey::start().await;
    browser.goto(&latchkey.url("/login")).await;
    let csrf = browser.cookie("latchkey-csrf").await.unwrap();
    assert!(!csrf.value.is_empty());
    assert!(csrf.http_only);
    assert!(!csrf.secure, "plain http on loopback");
    assert_eq!(csrf.same_site.as_deref(), Some("Lax"));
    assert_eq!(csrf.path.as_deref(), Some("/"));
    browser.finish("login_cookies").await;
}

#[tokio::test]
async fn a_form_can_be_filled_submitted_and_gone_back_from() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (url, _site) = attacker_site(
        "<!doctype html><html lang=en><title>form</title>\
         <form action=/sent><label for=word>Word</label>\
         <input id=word name=word value=old><button>Send</button></form></html>",
    )
    .await;
    browser.goto(&url).await;
    browser.fill("#word", "hello").await;
    browser.submit("form").await;
    let sent = browser.wait_for_path("/sent").await;
    assert_eq!(sent.query(), Some("word=hello"));
    browser.back().await;
    assert_eq!(browser.current_url().await.path(), "/");
    browser.finish("form_filled_and_back").await;
}

#[tokio::test]
async fn submitting_waits_for_the_next_page_even_at_the_same_address() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    // The site answers a post with the same page at the same address, as
    // a form shown again with an error is: only a fresh field tells them apart.
    let (url, _site) = attacker_site(
        "<!doctype html><html lang=en><title>again</title>\
         <form method=post><label for=word>Word</label>\
         <input id=word name=word value=old><button>Send</button></form></html>",
    )
    .await;
    browser.goto(&url).await;
    browser.fill("#word", "typed").await;
    browser.submit("form").await;
    assert_eq!(browser.current_url().await.as_str(), url);
    let field = browser
        .script("return document.getElementById('word').value")
        .await;
    assert_eq!(field, Value::from("old"));
    browser.finish("same_address_submit").await;
}

#[tokio::test]
async fn a_page_on_another_site_is_served_and_can_post_to_latchkey() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let latchkey = Latchkey::start().await;
    let (url, _site) = attacker_site(&format!(
        "<!doctype html><html lang=en><title>elsewhere</title><p>Another site.</p>\
         <form method=post action={}><input type=hidden name=username value=mallory>\
         <input type=hidden name=password value=guess><input type=hidden name=csrf_token value=forged>\
         <button>Win a prize</button></form></html>",
        latchkey.url("/login")
    ))
    .await;
    browser.goto(&url).await;
    assert_eq!(browser.current_url().await.host_str(), Some("127.0.0.2"));
    assert!(browser.text().await.contains("Another site."));
    browser.submit("form").await;
    let landed = browser.current_url().await;
    assert_eq!(landed.as_str(), latchkey.url("/login"));
    browser.finish("cross_site_post").await;
}

#[tokio::test]
async fn extra_flags_reach_chromium_so_a_site_can_have_a_name() {
    let Some(browser) =
        Browser::start_with(&["--host-resolver-rules=MAP evil.test 127.0.0.2"]).await
    else {
        return;
    };
    let (url, _site) = attacker_site("<!doctype html><title>named</title><p>Named.").await;
    let named = url.replace("127.0.0.2", "evil.test");
    browser.goto(&named).await;
    assert_eq!(browser.current_url().await.as_str(), named);
    assert_eq!(browser.text().await, "Named.");
    browser.finish("named_site").await;
}

#[tokio::test]
async fn two_browsers_in_one_test_do_not_share_cookies() {
    let (Some(alice), Some(bob)) = (Browser::start().await, Browser::start().await) else {
        return;
    };
    let latchkey = Latchkey::start().await;
    alice.goto(&latchkey.url("/login")).await;
    bob.goto(&latchkey.url("/login")).await;
    let alices = alice.cookie("latchkey-csrf").await.unwrap();
    let bobs = bob.cookie("latchkey-csrf").await.unwrap();
    assert_ne!(alices.value, bobs.value);
    alice.finish("two_browsers_alice").await;
    bob.finish("two_browsers_bob").await;
}

// ---------------------------------------------------------------------------
// The page flows a person uses, by clicking.

/// Signs in through the login page as a person does: the page must be the
/// login form, then the browser lands wherever the server sends it.
async fn sign_in_by_clicking(browser: &Browser, name: &str, password: &str) {
    browser.wait_for_path("/login").await;
    browser.fill("#username", name).await;
    browser.fill("#password", password).await;
    browser.submit("form[action='/login']").await;
}

/// A browser in which `ann` (no roles) has just signed in by clicking,
/// showing her profile; `None` when the browser tests are skipped.
async fn ann_signed_in() -> Option<(Browser, Latchkey)> {
    let browser = Browser::start().await?;
    let latchkey = Latchkey::start().await;
    latchkey.add_user("ann", PASSWORD, &[]).await;
    browser.goto(&latchkey.url("/login")).await;
    sign_in_by_clicking(&browser, "ann", PASSWORD).await;
    browser.wait_for_path("/profile").await;
    Some((browser, latchkey))
}

/// The first-admin link the server printed in its log at start-up.
fn setup_link(latchkey: &Latchkey) -> String {
    latchkey
        .process
        .seen
        .iter()
        .find_map(|line| {
            let start = line.find("http://")?;
            let link = &line[start..];
            let end = link.find(['"', ' ', '\\']).unwrap_or(link.len());
            link[..end]
                .contains("/setup?token=")
                .then(|| link[..end].to_owned())
        })
        .expect("an empty database prints a setup link")
}

async fn cli(latchkey: &Latchkey, args: &[&str]) {
    let out = run_cli(&latchkey.env, args, None).await;
    assert!(out.status.success(), "{args:?}: {}", common::stderr(&out));
}

async fn assert_accessible(browser: &Browser, page: &str) {
    let violations = browser.axe().await;
    assert!(violations.is_empty(), "{page}: {violations:#?}");
}

#[tokio::test]
async fn the_setup_link_creates_the_first_admin_who_lands_signed_in() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let latchkey = Latchkey::start().await;
    let link = setup_link(&latchkey);
    browser.goto(&link).await;
    assert!(
        browser
            .text()
            .await
            .contains("Create the first administrator")
    );
    assert_accessible(&browser, "setup").await;
    // A mistake first: the two passwords differ. The field in error says so.
    browser.fill("#username", "boss").await;
    browser.fill("#password", PASSWORD).await;
    browser.fill("#password_confirm", OTHER_PASSWORD).await;
    browser.submit("form[action='/setup']").await;
    assert!(browser.text().await.contains("The two passwords differ."));
    // Focus is on the field in error (once Chromium applies `autofocus`).
    browser
        .wait_until("the field in error has the focus", async || {
            let focused = browser.script("return document.activeElement.id").await;
            (focused == "password_confirm").then_some(())
        })
        .await;
    let invalid = browser
        .script("return document.getElementById('password_confirm').getAttribute('aria-invalid')")
        .await;
    assert_eq!(invalid, "true");
    assert_accessible(&browser, "setup with an error").await;
    browser.fill("#password", PASSWORD).await;
    browser.fill("#password_confirm", PASSWORD).await;
    browser.submit("form[action='/setup']").await;
    browser.wait_for_path("/profile").await;
    let text = browser.text().await;
    assert!(
        text.contains("Signed in as boss") && text.contains("admin"),
        "{text}"
    );
    // The link has done its work: it says so and leads to sign-in.
    browser.goto(&link).await;
    assert!(browser.text().await.contains("Setup is complete"));
    assert_accessible(&browser, "setup complete").await;
    browser.click("a[href='/login']").await;
    browser.wait_for_path("/login").await;
    assert!(browser.text().await.contains("You are signed in as boss"));
    browser.finish("setup_creates_the_first_admin").await;
}

#[tokio::test]
async fn a_protected_page_sends_a_visitor_to_sign_in_and_back_with_a_safe_cookie() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let latchkey = Latchkey::start().await;
    latchkey.add_user("root", PASSWORD, &["admin"]).await;
    browser.goto(&latchkey.url("/admin")).await;
    let login = browser.wait_for_path("/login").await;
    assert_eq!(login.query(), Some("next=%2Fadmin"));
    sign_in_by_clicking(&browser, "root", PASSWORD).await;
    browser.wait_for_path("/admin").await;
    let text = browser.text().await;
    assert!(text.contains("Users") && text.contains("root"), "{text}");
    assert!(text.contains("UTC"), "times name their zone: {text}");
    assert_accessible(&browser, "admin").await;
    let cookie = browser.cookie("latchkey").await.expect("a session cookie");
    assert!(cookie.http_only, "{cookie:?}");
    assert_eq!(cookie.same_site.as_deref(), Some("Lax"), "{cookie:?}");
    assert!(text.contains("You are signed in as root"), "{text}");
    browser.screenshot("protected_page_after_sign_in").await;
    // The admin page signs out too.
    browser.submit("form[action='/logout']").await;
    browser.wait_for_path("/login").await;
    assert!(browser.text().await.contains("You have been signed out."));
    browser.finish("signed_out_from_admin").await;
}

#[tokio::test]
async fn a_wrong_password_shows_an_error_on_the_field_and_makes_no_session() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let latchkey = Latchkey::start().await;
    latchkey.add_user("ann", PASSWORD, &[]).await;
    browser.goto(&latchkey.url("/profile")).await;
    sign_in_by_clicking(&browser, "ann", "not-the-password-1").await;
    browser.wait_for_path("/login").await;
    let text = browser.text().await;
    assert!(
        text.contains("The username or password is not right"),
        "{text}"
    );
    assert!(browser.cookie("latchkey").await.is_none(), "no session");
    // Chromium moves the focus (`autofocus`) once the page has loaded.
    browser
        .wait_until("the password field has the focus", async || {
            let focused = browser.script("return document.activeElement.id").await;
            (focused == "password").then_some(())
        })
        .await;
    let described = browser
        .script("return document.getElementById('password').getAttribute('aria-describedby')")
        .await;
    assert_eq!(described, "form-error");
    assert_accessible(&browser, "login with an error").await;
    // The form still works: the right password now signs in, to the page
    // first asked for.
    browser.fill("#password", PASSWORD).await;
    browser.submit("form[action='/login']").await;
    browser.wait_for_path("/profile").await;
    browser.finish("wrong_password_then_right").await;
}

#[tokio::test]
async fn five_wrong_passwords_lock_the_account_and_the_page_says_for_how_long() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let latchkey = Latchkey::start().await;
    latchkey.add_user("ann", PASSWORD, &[]).await;
    browser.goto(&latchkey.url("/login")).await;
    for i in 1..=5 {
        sign_in_by_clicking(&browser, "ann", &format!("wrong-guess-{i}")).await;
    }
    let text = browser.text().await;
    assert!(
        text.contains("Sign-in is locked: try again in 15 minutes."),
        "{text}"
    );
    // The owner's right password is refused while the lock lasts.
    sign_in_by_clicking(&browser, "ann", PASSWORD).await;
    let text = browser.text().await;
    assert!(text.contains("try again in 15 minutes"), "{text}");
    assert!(browser.cookie("latchkey").await.is_none());
    // The lock is about the account, not what was typed: no field is marked wrong.
    let invalid = browser
        .script("return document.querySelectorAll('[aria-invalid]').length")
        .await;
    assert_eq!(invalid, 0);
    assert_accessible(&browser, "locked").await;
    browser.finish("lockout_says_how_long").await;
}

#[tokio::test]
async fn an_owner_on_a_known_browser_signs_in_while_an_attacker_has_locked_the_account() {
    let (Some(owner), Some(attacker)) = (Browser::start().await, Browser::start().await) else {
        return;
    };
    let latchkey = Latchkey::start().await;
    latchkey.add_user("ann", PASSWORD, &[]).await;
    // Ann signs in on her browser and signs out again.
    owner.goto(&latchkey.url("/login")).await;
    sign_in_by_clicking(&owner, "ann", PASSWORD).await;
    owner.wait_for_path("/profile").await;
    let device = owner
        .cookie("latchkey-device")
        .await
        .expect("device cookie");
    assert!(device.http_only);
    owner.submit("form[action='/logout']").await;
    owner.wait_for_path("/login").await;
    assert!(owner.cookie("latchkey").await.is_none());
    assert_eq!(
        owner.cookie("latchkey-device").await.map(|c| c.value),
        Some(device.value),
        "the device cookie survives signing out"
    );
    // Another browser guesses until the account is locked for it.
    attacker.goto(&latchkey.url("/login")).await;
    for i in 1..=5 {
        sign_in_by_clicking(&attacker, "ann", &format!("wrong-guess-{i}")).await;
    }
    sign_in_by_clicking(&attacker, "ann", PASSWORD).await;
    let text = attacker.text().await;
    assert!(text.contains("try again in 15 minutes"), "{text}");
    assert!(
        !text.contains("No account exists yet"),
        "an account made with the CLI closes the setup hint: {text}"
    );
    // Ann, on her known browser, signs in all the same.
    sign_in_by_clicking(&owner, "ann", PASSWORD).await;
    owner.wait_for_path("/profile").await;
    assert!(owner.text().await.contains("Signed in as ann"));
    attacker.finish("lockout_attacker_locked").await;
    owner.finish("lockout_owner_signs_in_on_known_device").await;
}

#[tokio::test]
async fn signing_out_ends_the_session_and_back_shows_no_private_page() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let latchkey = Latchkey::start().await;
    latchkey.add_user("ann", PASSWORD, &[]).await;
    browser.goto(&latchkey.url("/profile")).await;
    sign_in_by_clicking(&browser, "ann", PASSWORD).await;
    browser.wait_for_path("/profile").await;
    assert!(browser.text().await.contains("Signed in as ann"));
    assert_accessible(&browser, "profile").await;
    browser.submit("form[action='/logout']").await;
    browser.wait_for_path("/login").await;
    assert!(browser.text().await.contains("You have been signed out."));
    assert!(browser.cookie("latchkey").await.is_none());
    // Back to where the profile was: the server is asked again, and the
    // browser ends on the login page, not on a kept copy of the profile.
    browser.back().await;
    browser.wait_for_path("/login").await;
    let text = browser.text().await;
    assert!(
        !text.contains("Signed in as"),
        "back shows no private page: {text}"
    );
    browser.goto(&latchkey.url("/profile")).await;
    browser.wait_for_path("/login").await;
    browser.finish("signed_out_then_back").await;
}

#[tokio::test]
async fn sign_out_on_a_page_opened_before_a_role_change_still_signs_out() {
    let Some((browser, latchkey)) = ann_signed_in().await else {
        return;
    };
    assert!(browser.text().await.contains("Roles\nnone"));
    cli(&latchkey, &["user", "roles", "ann", "--add", "ops"]).await;
    browser.submit("form[action='/logout']").await;
    browser.wait_for_path("/login").await;
    assert!(browser.text().await.contains("You have been signed out."));
    browser.goto(&latchkey.url("/profile")).await;
    browser.wait_for_path("/login").await;
    browser.finish("sign_out_after_role_change").await;
}

#[tokio::test]
async fn a_revoked_session_meets_a_page_that_says_it_ended() {
    let Some((browser, latchkey)) = ann_signed_in().await else {
        return;
    };
    let cookie = browser.cookie("latchkey").await.unwrap().value;
    cli(&latchkey, &["session", "revoke", "--user", "ann"]).await;
    // Reading pages may be answered from the cache until the change feed
    // has told the server (within its bound); then the browser goes on.
    common::eventually(
        common::FEED_BOUND,
        "revocation reached the server",
        || async {
            let status = reqwest::Client::new()
                .get(latchkey.url("/profile"))
                .header("accept", "application/json")
                .header("cookie", format!("latchkey={cookie}"))
                .send()
                .await
                .unwrap()
                .status();
            status == reqwest::StatusCode::UNAUTHORIZED
        },
    )
    .await;
    browser.goto(&latchkey.url("/profile")).await;
    browser.wait_for_path("/login").await;
    let text = browser.text().await;
    assert!(
        text.contains("Your session ended. Please sign in again."),
        "{text}"
    );
    sign_in_by_clicking(&browser, "ann", PASSWORD).await;
    browser.wait_for_path("/profile").await;
    browser.finish("session_ended").await;
}

#[tokio::test]
async fn a_page_on_another_site_can_neither_sign_out_nor_sign_in_the_visitor() {
    let Some((browser, latchkey)) = ann_signed_in().await else {
        return;
    };
    latchkey.add_user("mallory", OTHER_PASSWORD, &[]).await;
    let session = browser.cookie("latchkey").await.unwrap().value;
    let auto_submit = |action: &str, fields: &str| {
        format!(
            "<!doctype html><html lang=en><title>prize</title><body>\
             <form id=f method=post action={action}>{fields}</form>\
             <script>document.getElementById('f').submit()</script></body></html>"
        )
    };
    // Forged sign-out, then a forged sign-in as the attacker (login CSRF).
    let logout = auto_submit(
        &latchkey.url("/logout"),
        "<input type=hidden name=csrf_token value=x>",
    );
    let login = auto_submit(
        &latchkey.url("/login"),
        &format!(
            "<input type=hidden name=username value=mallory>\
             <input type=hidden name=password value={OTHER_PASSWORD}>\
             <input type=hidden name=csrf_token value=x>"
        ),
    );
    for (what, page) in [("sign-out", logout), ("sign-in", login)] {
        let (url, _site) = attacker_site(&page).await;
        browser.goto(&url).await;
        let landed = browser
            .wait_for_url("latchkey's answer", |u| u.host_str() == Some("127.0.0.1"))
            .await;
        let text = browser
            .wait_until("the refusal page", async || {
                let t = browser.text().await;
                t.contains("Request refused").then_some(t)
            })
            .await;
        assert!(
            text.contains("Nothing was changed"),
            "{what}: {landed} {text}"
        );
        assert_accessible(&browser, &format!("cross-site {what} refused")).await;
        browser
            .screenshot(&format!("cross_site_{what}_refused"))
            .await;
        browser.goto(&latchkey.url("/profile")).await;
        let text = browser.text().await;
        assert!(
            text.contains("Signed in as ann"),
            "{what} changed nothing: {text}"
        );
        assert_eq!(
            browser.cookie("latchkey").await.unwrap().value,
            session,
            "{what}"
        );
    }
    browser.finish("cross_site_forms_change_nothing").await;
}

#[tokio::test]
async fn a_visitor_at_localhost_is_sent_to_the_public_address_and_can_sign_in() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let latchkey = Latchkey::start().await;
    latchkey.add_user("ann", PASSWORD, &[]).await;
    let alias = latchkey.url("/profile").replace("127.0.0.1", "localhost");
    browser.goto(&alias).await;
    let login = browser.wait_for_path("/login").await;
    assert_eq!(login.host_str(), Some("127.0.0.1"));
    sign_in_by_clicking(&browser, "ann", PASSWORD).await;
    let profile = browser.wait_for_path("/profile").await;
    assert_eq!(profile.host_str(), Some("127.0.0.1"));
    // Signed in, another page asked for under the alias comes straight up.
    browser
        .goto(&latchkey.url("/logout").replace("127.0.0.1", "localhost"))
        .await;
    let page = browser.wait_for_path("/logout").await;
    assert_eq!(page.host_str(), Some("127.0.0.1"));
    browser.goto(&alias).await;
    let page = browser.wait_for_path("/profile").await;
    assert_eq!(page.host_str(), Some("127.0.0.1"));
    assert!(browser.text().await.contains("Signed in as ann"));
    browser.finish("localhost_alias").await;
}

/// Visits every page, in every state a person meets it, with axe.
async fn every_page_is_accessible(browser: Browser, theme: &str) {
    let latchkey = Latchkey::start().await;
    let link = setup_link(&latchkey);
    browser.goto(&link).await;
    assert_accessible(&browser, &format!("setup, {theme}")).await;
    browser.goto(&latchkey.url("/setup?token=wrong")).await;
    assert_accessible(&browser, &format!("wrong setup link, {theme}")).await;
    browser.goto(&latchkey.url("/login")).await;
    assert_accessible(&browser, &format!("login before setup, {theme}")).await;
    latchkey.add_user("root", PASSWORD, &["admin"]).await;
    browser.goto(&link).await;
    assert_accessible(&browser, &format!("setup complete, {theme}")).await;
    browser.goto(&latchkey.url("/login")).await;
    assert_accessible(&browser, &format!("login, {theme}")).await;
    sign_in_by_clicking(&browser, "root", "wrong-password-1").await;
    assert_accessible(&browser, &format!("login error, {theme}")).await;
    browser.screenshot(&format!("login_error_{theme}")).await;
    sign_in_by_clicking(&browser, "root", PASSWORD).await;
    browser.wait_for_path("/profile").await;
    for path in ["/profile", "/admin", "/logout", "/login", "/no-such-page"] {
        browser.goto(&latchkey.url(path)).await;
        assert_accessible(&browser, &format!("{path}, {theme}")).await;
    }
    browser
        .goto(&latchkey.url("/login?reason=signed_out"))
        .await;
    browser.goto(&latchkey.url("/profile")).await;
    browser.submit("form[action='/logout']").await;
    browser.wait_for_path("/login").await;
    assert_accessible(&browser, &format!("signed out, {theme}")).await;
    browser.goto(&latchkey.url("/login?reason=ended")).await;
    assert_accessible(&browser, &format!("session ended, {theme}")).await;
    browser.finish(&format!("signed_out_{theme}")).await;
}

#[tokio::test]
async fn every_page_passes_the_accessibility_check_in_the_light_theme() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    every_page_is_accessible(browser, "light").await;
}

#[tokio::test]
async fn every_page_passes_the_accessibility_check_in_the_dark_theme() {
    let Some(browser) = Browser::start_dark().await else {
        return;
    };
    every_page_is_accessible(browser, "dark").await;
}
