//! Smoke tests of the browser harness (`tests/common/browser.rs`): headless
//! Chromium against the real `latchkey` binary. They prove the harness;
//! the page flows have tests of their own.
#![allow(clippy::unwrap_used)]

mod common;

use common::browser::{Browser, Latchkey, attacker_site};
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
