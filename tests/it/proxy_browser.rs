//! A person's browser through a real proxy: headless Chromium opens the app
//! (`app.example.test`), is sent to sign in at the portal
//! (`auth.example.test`, latchkey), both under the cookie domain
//! `example.test`, and signs out from the app's own "Sign out" link, all
//! by typing and clicking, under the pages' real `Content-Security-Policy`.
//!
//! The proxy is started from its file in `deploy/` as in
//! `tests/it/proxies.rs`; Chromium finds both host names at the proxy's
//! loopback port and accepts the test's certificate by its key (see
//! [`Deployment::chromium_flags`]). Each step leaves a screenshot in
//! `target/browser-screenshots/proxy_browser_{proxy}_{step}.png`.

use reqwest::{StatusCode, header};
use serde_json::Value;
use url::Url;

use crate::common::PASSWORD;
use crate::common::browser::{Browser, BrowserCookie};
use crate::common::proxy::{APP, COOKIE_DOMAIN, Deployment, PORTAL, Proxy};

/// latchkey's session cookie over HTTPS.
const SESSION_COOKIE: &str = "__Secure-latchkey";

/// The values of `rd` in a URL's query.
fn rd(url: &Url) -> Vec<String> {
    url.query_pairs()
        .filter(|(k, _)| k == "rd")
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// Waits until the browser shows the portal's sign-in page, sent there to
/// come back to `original`, and returns its address.
async fn wait_for_sign_in(browser: &Browser, d: &Deployment, original: &str) -> Url {
    let login = browser
        .wait_for_url(
            &format!("the portal's sign-in page, to come back to {original}"),
            |url| {
                url.host_str() == Some(PORTAL)
                    && url.port() == Some(d.port)
                    && url.path() == "/login"
                    && rd(url) == [original]
            },
        )
        .await;
    assert!(
        browser.text().await.contains("Sign in"),
        "{}: the sign-in page at {login}",
        d.proxy
    );
    login
}

/// The text of the element with `id` on the page shown.
async fn text_of(browser: &Browser, id: &str) -> String {
    let text = browser
        .script(&format!(
            "const e = document.getElementById({}); return e ? e.textContent : null",
            Value::from(id)
        ))
        .await;
    match text {
        Value::String(text) => text,
        other => panic!("no element #{id} on the page: {other}"),
    }
}

/// What the app's own script gets from `fetch(path)` on one of its pages
/// (same origin, with the browser's cookies, asking for JSON as scripts
/// do): the status, and the body as JSON where it is JSON. Redirects are
/// not followed, so that a redirect is not mistaken for its target.
async fn fetch_from_page(browser: &Browser, path: &str) -> (u16, Value) {
    let answer = browser
        .script(&format!(
            "return fetch({}, {{ headers: {{ Accept: 'application/json' }}, redirect: 'manual' }})\
             .then(async (r) => ({{ status: r.status, body: await r.text() }}))",
            Value::from(path)
        ))
        .await;
    let status = answer["status"]
        .as_u64()
        .unwrap_or_else(|| panic!("fetch({path}) gave {answer}"));
    let body = answer["body"].as_str().unwrap_or_default();
    (
        u16::try_from(status).unwrap(),
        serde_json::from_str(body).unwrap_or(Value::Null),
    )
}

/// What the page's console said about the `Content-Security-Policy` since
/// the last look.
async fn csp_complaints(browser: &Browser) -> Vec<String> {
    browser
        .console()
        .await
        .into_iter()
        .filter(|line| line.contains("Content Security Policy") || line.contains("form-action"))
        .collect()
}

/// Checks the session cookie as the browser holds it after signing in: one
/// cookie for the whole domain, never sent in clear, out of scripts' reach.
fn assert_session_cookie(p: Proxy, cookies: &[BrowserCookie]) -> BrowserCookie {
    let sessions: Vec<&BrowserCookie> = cookies
        .iter()
        .filter(|c| c.name == SESSION_COOKIE)
        .collect();
    let [cookie] = sessions[..] else {
        panic!("{p}: one {SESSION_COOKIE} cookie, not {sessions:#?}")
    };
    let domain = cookie.domain.as_deref().unwrap_or("(host-only)");
    assert!(
        domain == format!(".{COOKIE_DOMAIN}") || domain == COOKIE_DOMAIN,
        "{p}: the session cookie's domain is {domain}, not {COOKIE_DOMAIN}"
    );
    assert!(cookie.secure, "{p}: the session cookie is Secure");
    assert!(cookie.http_only, "{p}: the session cookie is HttpOnly");
    assert!(!cookie.value.is_empty(), "{p}: the session cookie's value");
    cookie.clone()
}

/// A request made outside the browser, as a client that kept the cookie
/// would: the app's answer to `url` with only `cookie` on it.
async fn replay(d: &Deployment, url: &str, cookie: &BrowserCookie) -> reqwest::Response {
    d.bare_client()
        .get(url)
        .header(header::ACCEPT, "application/json")
        .header(header::COOKIE, format!("{}={}", cookie.name, cookie.value))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

async fn a_person_signs_in_at_the_portal_lands_back_on_the_app_and_signs_out_from_its_link(
    proxy: Proxy,
) {
    let Some(d) = Deployment::start(proxy).await else {
        return;
    };
    let flags = d.chromium_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let Some(browser) = Browser::start_with(&flags).await else {
        return;
    };
    let p = d.proxy;
    d.latchkey
        .add_user("ann", PASSWORD, &["editor", "ops"])
        .await;
    let name = |step: &str| format!("proxy_browser_{}_{step}", p.to_string().to_lowercase());
    let mut screenshots = Vec::new();
    let uri = "/some/page?x=1";
    let original = d.url(APP, uri);

    // The pages the browser is about to use hold their forms' answers to
    // latchkey's host and the hosts under the cookie domain: Chromium
    // enforces that on the redirect after signing in and out.
    let csp = d
        .bare_client()
        .get(d.portal("/login"))
        .send()
        .await
        .unwrap()
        .headers()
        .get(header::CONTENT_SECURITY_POLICY)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let form_action = format!(
        "form-action 'self' https://{PORTAL}:* https://{COOKIE_DOMAIN}:* https://*.{COOKIE_DOMAIN}:*"
    );
    assert!(
        csp.split(';')
            .any(|directive| directive.trim() == form_action),
        "{p}: the sign-in page's policy has {form_action}: {csp}"
    );

    // The app, opened anonymously: the portal's sign-in page, which
    // knows where to come back to.
    browser.goto(&original).await;
    wait_for_sign_in(&browser, &d, &original).await;
    assert!(!d.upstream.saw(uri), "{p}: nothing reached the app yet");
    screenshots.push(browser.screenshot(&name("1_sent_to_sign_in")).await);

    // Signing in, by typing and clicking: back on the very page first
    // opened, which the app now serves knowing who it is.
    browser.fill("#username", "ann").await;
    browser.fill("#password", PASSWORD).await;
    browser.submit("form[action='/login']").await;
    browser
        .wait_for_url(&format!("the original page {original}"), |url| {
            url.as_str() == original
        })
        .await;
    assert_eq!(
        csp_complaints(&browser).await,
        Vec::<String>::new(),
        "{p}: the sign-in page's form-action let its answer lead to the app"
    );
    assert!(d.upstream.saw(uri), "{p}: the app got {uri}");
    assert_eq!(
        text_of(&browser, "remote-user").await,
        "ann",
        "{p}: Remote-User"
    );
    let groups = text_of(&browser, "remote-groups").await;
    let mut groups: Vec<&str> = groups.split(',').map(str::trim).collect();
    groups.sort_unstable();
    assert_eq!(groups, ["editor", "ops"], "{p}: Remote-Groups");
    screenshots.push(browser.screenshot(&name("2_signed_in_on_the_app")).await);

    // The session cookie the browser holds, seen from the app (and below
    // from the portal): one cookie for the whole domain.
    let cookie = assert_session_cookie(p, &browser.cookies().await);
    // The app's own scripts reach it with the session too.
    let (status, body) = fetch_from_page(&browser, uri).await;
    assert_eq!(
        status, 200,
        "{p}: the app's fetch() while signed in: {body}"
    );
    assert_eq!(
        body["headers"]["remote-user"],
        serde_json::json!(["ann"]),
        "{p}: the app's fetch() while signed in"
    );
    // As does a client given the cookie's value (the control for the
    // replay after signing out).
    let r = replay(&d, &original, &cookie).await;
    assert_eq!(r.status(), StatusCode::OK, "{p}: the cookie, replayed");

    // Signing out from the app's link: the portal's sign-out page, its
    // button, and back to the app, which sends the browser to sign in.
    browser.click("#sign-out").await;
    let sign_out = browser
        .wait_for_url("the portal's sign-out page", |url| {
            url.host_str() == Some(PORTAL) && url.path() == "/logout"
        })
        .await;
    let app_root = d.url(APP, "/");
    assert_eq!(rd(&sign_out), [app_root.as_str()], "{p}: {sign_out}");
    assert_session_cookie(p, &browser.cookies().await);
    let text = browser.text().await;
    assert!(
        text.contains("You are signed in as ann"),
        "{p}: the sign-out page says who: {text}"
    );
    screenshots.push(browser.screenshot(&name("3_sign_out_page")).await);
    browser.submit("form[action='/logout']").await;
    // Back to the app's front page, which the proxy no longer lets
    // through: it sends the browser to sign in, to come back there.
    wait_for_sign_in(&browser, &d, &app_root).await;
    assert_eq!(
        csp_complaints(&browser).await,
        Vec::<String>::new(),
        "{p}: the sign-out page's form-action let its answer lead to the app"
    );
    assert_eq!(
        browser.cookie(SESSION_COOKIE).await,
        None,
        "{p}: the browser no longer holds a session cookie"
    );
    screenshots.push(
        browser
            .screenshot(&name("4_signed_out_sent_to_sign_in"))
            .await,
    );

    // The app refuses what comes next: the page opened again, its own
    // script's fetch(), and the old cookie replayed by another client.
    browser.goto(&original).await;
    wait_for_sign_in(&browser, &d, &original).await;
    screenshots.push(
        browser
            .screenshot(&name("5_app_again_sent_to_sign_in"))
            .await,
    );
    browser.goto(&d.url(APP, "/public/about")).await;
    assert_eq!(
        text_of(&browser, "remote-user").await,
        "(none)",
        "{p}: the app's public page, anonymous"
    );
    let (status, body) = fetch_from_page(&browser, uri).await;
    assert_eq!(
        status, 401,
        "{p}: the app's fetch() after signing out: {body}"
    );
    let r = replay(&d, &original, &cookie).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "{p}: the signed-out session's cookie, replayed"
    );
    screenshots.push(browser.finish(&name("6_public_page_fetch_refused")).await);
    for path in screenshots {
        eprintln!("screenshot: {}", path.display());
    }
}

mod nginx {
    use super::Proxy;

    #[tokio::test]
    async fn a_person_signs_in_at_the_portal_lands_back_on_the_app_and_signs_out_from_its_link() {
        super::a_person_signs_in_at_the_portal_lands_back_on_the_app_and_signs_out_from_its_link(
            Proxy::Nginx,
        )
        .await;
    }
}
