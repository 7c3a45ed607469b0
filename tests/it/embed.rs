//! `examples/embed.rs`, the crate docs' app, run as a real process and used
//! over HTTP: an axum app protected by latchkey's builder, routes, page
//! layer, role guard and CSRF layer.

use std::process::Stdio;
use std::time::Duration;

use reqwest::{StatusCode, header};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::common::browser::{Browser, attacker_site};
use crate::common::{
    PASSWORD, client, cookie_named, hidden_field, page_text, run_cli, sign_in_by_form, stderr,
};

/// An example app from `examples/`, run in its own directory.
pub(crate) struct Example {
    _child: tokio::process::Child,
    pub(crate) base: String,
    pub(crate) dir: tempfile::TempDir,
}

/// Starts `examples/{name}` in `dir` with `env` (and `ADDR` for port 0),
/// once it says where it listens.
pub(crate) async fn start_example(
    name: &str,
    dir: tempfile::TempDir,
    env: &[(&str, &str)],
) -> Example {
    let example = std::path::Path::new(env!("CARGO_BIN_EXE_latchkey"))
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    let mut child = tokio::process::Command::new(&example)
        .current_dir(dir.path())
        .envs(env.iter().copied())
        .env("ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (`cargo test` builds the examples; or `cargo build --examples`)",
                example.display()
            )
        });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
        .await
        .expect("the example says where it listens")
        .unwrap()
        .expect("a line");
    let base = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Example {
        _child: child,
        base,
        dir,
    }
}

/// `examples/embed.rs` over its own database, with `alice` (admin) and
/// `bob` made by the service's CLI.
async fn start_embed() -> Example {
    let dir = tempfile::tempdir().unwrap();
    // The example keeps its data in `latchkey.db` in its working directory,
    // the service's default; the CLI shares it and the secret beside it.
    let db = format!("sqlite://{}", dir.path().join("latchkey.db").display());
    let env: Vec<(String, String)> = [
        ("LATCHKEY_DATABASE_URL", db.as_str()),
        ("LATCHKEY_ARGON2_MEMORY_KIB", "1024"),
        ("LATCHKEY_ARGON2_ITERATIONS", "1"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (name, roles) in [("alice", &["--role", "admin"][..]), ("bob", &[][..])] {
        let mut args = vec!["user", "add", name, "--password-stdin"];
        args.extend(roles);
        let out = run_cli(&env, &args, Some(PASSWORD)).await;
        assert!(out.status.success(), "user add: {}", stderr(&out));
    }
    start_example("embed", dir, &[]).await
}

#[tokio::test]
async fn the_embed_example_sends_browsers_to_its_login_page_and_api_clients_a_401() {
    let app = start_embed().await;
    let (client, _) = client();
    let r = client
        .get(format!("{}/", app.base))
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/login?next=%2F");
    let r = client
        .get(format!("{}/", app.base))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "not_authenticated", "{body}");
}

#[tokio::test]
async fn a_user_signs_in_to_the_embed_example_and_sees_the_protected_page() {
    let app = start_embed().await;
    let (client, jar) = client();
    sign_in_by_form(&client, &app.base, "/login", "alice", "/").await;
    assert!(cookie_named(&jar, &app.base, "latchkey").is_some());
    let page = client.get(format!("{}/", app.base)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Hello, alice."));
    let admin = client
        .get(format!("{}/admin", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(admin.status(), StatusCode::OK);
    assert_eq!(admin.text().await.unwrap(), "admins only");
}

#[tokio::test]
async fn the_embed_examples_admin_page_refuses_a_user_without_the_role() {
    let app = start_embed().await;
    let (client, _) = client();
    sign_in_by_form(&client, &app.base, "/login", "bob", "/").await;
    let r = client
        .get(format!("{}/admin", app.base))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["error"], "forbidden", "{body}");
    let (anonymous, _) = crate::common::client();
    let r = anonymous
        .get(format!("{}/admin", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(r.headers()[header::LOCATION], "/login?next=%2Fadmin");
}

#[tokio::test]
async fn the_embed_examples_form_takes_its_own_post_and_refuses_one_from_another_origin() {
    let app = start_embed().await;
    let (client, _) = client();
    sign_in_by_form(&client, &app.base, "/login", "alice", "/").await;
    let page = page_text(&client, &format!("{}/", app.base)).await;
    let token = hidden_field(&page, "csrf_token");
    let own = client
        .post(format!("{}/", app.base))
        .header(header::ORIGIN, &app.base)
        .form(&[("csrf_token", token.as_str()), ("note", "milk")])
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    assert_eq!(own.text().await.unwrap(), "saved for alice: milk");

    // Another site's page posting the same form (its token even right):
    // refused before the handler, and the message names both origins.
    let forged = client
        .post(format!("{}/", app.base))
        .header(header::ORIGIN, "https://evil.example")
        .header(header::ACCEPT, "application/json")
        .form(&[("csrf_token", token.as_str()), ("note", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = forged.json().await.unwrap();
    assert_eq!(body["error"], "csrf_failed", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("https://evil.example") && message.contains(&app.base),
        "{message}"
    );

    // Nobody signed in: this site's form is asked to sign in, another
    // site's is refused as a forgery.
    let (anonymous, _) = crate::common::client();
    for (origin, status, code) in [
        (
            app.base.as_str(),
            StatusCode::UNAUTHORIZED,
            "not_authenticated",
        ),
        ("https://evil.example", StatusCode::FORBIDDEN, "csrf_failed"),
    ] {
        let r = anonymous
            .post(format!("{}/", app.base))
            .header(header::ORIGIN, origin)
            .header(header::ACCEPT, "application/json")
            .form(&[("note", "anonymous")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{origin}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], code, "{origin}: {body}");
    }

    // Without the token, from the right origin: refused too.
    let tokenless = client
        .post(format!("{}/", app.base))
        .header(header::ORIGIN, &app.base)
        .header(header::ACCEPT, "application/json")
        .form(&[("note", "no token")])
        .send()
        .await
        .unwrap();
    assert_eq!(tokenless.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = tokenless.json().await.unwrap();
    assert_eq!(body["error"], "csrf_failed", "{body}");
}

#[tokio::test]
async fn a_person_signs_in_to_the_embed_example_and_saves_a_note_by_clicking() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = start_embed().await;
    browser.goto(&format!("{}/", app.base)).await;
    browser.wait_for_path("/login").await;
    browser.fill("#username", "alice").await;
    browser.fill("#password", PASSWORD).await;
    browser.submit("form[action='/login']").await;
    browser.wait_for_path("/").await;
    assert!(browser.text().await.contains("Hello, alice."));
    browser.fill("input[name=note]", "milk").await;
    browser.submit("form").await;
    browser
        .wait_until("the saved note", async || {
            browser
                .text()
                .await
                .contains("saved for alice: milk")
                .then_some(())
        })
        .await;
    browser.finish("embed_note_saved").await;
}

#[tokio::test]
async fn another_sites_page_cannot_post_to_the_embed_examples_form() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let app = start_embed().await;
    browser.goto(&format!("{}/login", app.base)).await;
    browser.fill("#username", "alice").await;
    browser.fill("#password", PASSWORD).await;
    browser.submit("form[action='/login']").await;
    browser.wait_for_path("/").await;
    let (url, _site) = attacker_site(&format!(
        "<!doctype html><html lang=en><title>elsewhere</title><p>Another site.</p>\
         <form method=post action={}/><input type=hidden name=note value=forged>\
         <input type=hidden name=csrf_token value=guess><button>Win a prize</button></form></html>",
        app.base
    ))
    .await;
    browser.goto(&url).await;
    browser.submit("form").await;
    let page = browser
        .wait_until("the refusal", async || {
            let text = browser.text().await;
            text.contains("Request refused").then_some(text)
        })
        .await;
    assert!(page.contains("Nothing was changed."), "{page}");
    assert!(!page.contains("saved for"), "{page}");
    browser.finish("embed_cross_site_post").await;
}
