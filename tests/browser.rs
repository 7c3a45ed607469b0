//! Smoke tests of the browser harness (`tests/common/browser.rs`): headless
//! Chromium against the real `latchkey` binary.
#![allow(clippy::unwrap_used)]

mod common;

use common::browser::{Browser, Latchkey, attacker_site};

#[tokio::test]
async fn the_login_page_renders_and_passes_the_accessibility_check() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let latchkey = Latchkey::start().await;
    browser.goto(&latchkey.url("/login")).await;
    assert!(browser.text().await.contains("Sign in"));
    let violations = browser.axe().await;
    eprintln!("{violations:#?}");
    browser.finish("login_light").await;
}

#[tokio::test]
async fn the_dark_theme_is_what_the_page_sees() {
    let Some(browser) = Browser::start_dark().await else {
        return;
    };
    let latchkey = Latchkey::start().await;
    browser.goto(&latchkey.url("/login")).await;
    let dark = browser
        .script("return matchMedia('(prefers-color-scheme: dark)').matches")
        .await;
    assert_eq!(dark, serde_json::Value::Bool(true));
    let violations = browser.axe().await;
    eprintln!("{violations:#?}");
    browser.finish("login_dark").await;
}

#[tokio::test]
async fn cookies_the_browser_holds_report_their_attributes() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let latchkey = Latchkey::start().await;
    browser.goto(&latchkey.url("/login")).await;
    eprintln!("{:#?}", browser.cookies().await);
    browser.finish("cookies").await;
}

#[tokio::test]
async fn a_page_on_another_origin_can_be_served() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let (url, _site) = attacker_site("<!doctype html><title>elsewhere</title><p>another site").await;
    browser.goto(&url).await;
    assert_eq!(browser.text().await, "another site");
    browser.finish("attacker").await;
}
