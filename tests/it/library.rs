//! The library as an app embeds it: `Auth::builder()`, the login pages
//! under a prefix, served by the app's own `axum::serve` (with and without
//! `ConnectInfo`), and the builder's refusals.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use latchkey::HashParams;
use latchkey::store::FailurePolicy;
use latchkey::{Auth, AuthUser, Password};
use reqwest::{StatusCode, header};

use crate::common::{PASSWORD, client, hidden_field, page_text, sign_in_by_form};

const CHEAP: HashParams = HashParams {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};

/// An app with latchkey's pages under `/auth`, on port 0; `connect_info`
/// says whether it serves with the client address.
async fn app_with_pages_under_auth(connect_info: bool) -> (String, Auth) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let auth = Auth::builder()
        .database_url("memory:")
        .public_url(&base)
        // Believed only from a peer known to be one: without ConnectInfo,
        // never.
        .trusted_proxies(vec!["127.0.0.0/8".parse().unwrap()])
        .pages_prefix("/auth")
        .home("/app")
        .hash_params(CHEAP)
        .refusal_delay(std::time::Duration::ZERO)
        // Few, so that a test can show what an unknown address does.
        .address_failures(FailurePolicy {
            max_failures: 2,
            window: 900_000,
            lockout: 900_000,
        })
        .build()
        .await
        .unwrap();
    auth.accounts()
        .create_user("ann", &Password::new(PASSWORD.into()), &[])
        .await
        .unwrap();
    let app = Router::new()
        .route(
            "/app",
            get(|user: AuthUser| async move { format!("app for {}", user.username) }),
        )
        .merge(auth.routes())
        .layer(auth.layer())
        .layer(auth.pages());
    tokio::spawn(async move {
        if connect_info {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        } else {
            axum::serve(listener, app).await
        }
        .unwrap();
    });
    (base, auth)
}

async fn sign_in_under_auth(base: &str) -> reqwest::Client {
    let (client, _) = client();
    let to_login = client
        .get(format!("{base}/app"))
        .header(header::ACCEPT, "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(to_login.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        to_login.headers()[header::LOCATION],
        "/auth/login?next=%2Fapp"
    );
    let page = page_text(&client, &format!("{base}/auth/login?next=%2Fapp")).await;
    for path in [
        "href=\"/auth/static/latchkey.css\"",
        "src=\"/auth/static/latchkey.js\"",
        "href=\"/app\"",
    ] {
        assert!(page.contains(path), "{path} in {page}");
    }
    sign_in_by_form(&client, base, "/auth/login", "ann", "/app").await;
    client
}

#[tokio::test]
async fn an_app_mounts_the_login_pages_under_its_own_prefix() {
    let (base, _auth) = app_with_pages_under_auth(true).await;
    let client = sign_in_under_auth(&base).await;
    let app = client.get(format!("{base}/app")).send().await.unwrap();
    assert_eq!(app.status(), StatusCode::OK);
    // A private page is not kept for Back after signing out.
    assert_eq!(app.headers()[header::CACHE_CONTROL], "no-store");
    assert_eq!(app.text().await.unwrap(), "app for ann");
    let css = client
        .get(format!("{base}/auth/static/latchkey.css"))
        .send()
        .await
        .unwrap();
    assert_eq!(css.status(), StatusCode::OK);
    // The pages are not also at the root.
    let root_login = client.get(format!("{base}/login")).send().await.unwrap();
    assert_eq!(root_login.status(), StatusCode::NOT_FOUND);

    let page = page_text(&client, &format!("{base}/auth/logout")).await;
    assert!(page.contains("action=\"/auth/logout\""), "{page}");
    let out = client
        .post(format!("{base}/auth/logout"))
        .header(header::ORIGIN, &base)
        .form(&[("csrf_token", hidden_field(&page, "csrf_token"))])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        out.headers()[header::LOCATION],
        "/auth/login?reason=signed_out"
    );
    let after = client
        .get(format!("{base}/app"))
        .header(header::ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_app_served_without_connect_info_still_signs_people_in() {
    let (base, _auth) = app_with_pages_under_auth(false).await;
    // Every client's address is unknown here (the peer is, so what it
    // says in X-Forwarded-For is not believed), so none is counted: more
    // failures than an address may have do not lock ann out, whatever
    // address the attacker claims.
    let (attacker, _) = client();
    for name in ["x1", "x2", "x3", "x4"] {
        let r = attacker
            .post(format!("{base}/auth/login"))
            .header("x-forwarded-for", "203.0.113.7")
            .json(&serde_json::json!({ "username": name, "password": "wrong-password-here" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name}");
    }
    let client = sign_in_under_auth(&base).await;
    let app = client.get(format!("{base}/app")).send().await.unwrap();
    assert_eq!(app.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_builder_says_what_to_change() {
    let refusal = |b: latchkey::AuthBuilder| async move {
        b.hash_params(CHEAP)
            .build()
            .await
            .expect_err("refused")
            .to_string()
    };
    let plain_http = refusal(
        Auth::builder()
            .database_url("memory:")
            .public_url("http://example.com"),
    )
    .await;
    assert!(
        plain_http.contains("plain http is only for this machine"),
        "{plain_http}"
    );
    let prefix = refusal(
        Auth::builder()
            .database_url("memory:")
            .pages_prefix("auth/"),
    )
    .await;
    assert!(prefix.contains("\"auth/\""), "{prefix}");
    let home = refusal(
        Auth::builder()
            .database_url("memory:")
            .home("https://evil.example/"),
    )
    .await;
    assert!(home.contains("must be a path on this site"), "{home}");
    let weak = refusal(
        Auth::builder()
            .database_url("memory:")
            .secret(latchkey::ServerSecret::new(&"ab".repeat(16)).unwrap()),
    )
    .await;
    assert!(weak.contains("only 2 different characters"), "{weak}");
    let origin = refusal(
        Auth::builder()
            .database_url("memory:")
            .allowed_origin("https://www.example.com/app"),
    )
    .await;
    assert!(
        origin.contains("https://www.example.com/app") && origin.contains("no path"),
        "{origin}"
    );
    let no_rate = refusal(Auth::builder().database_url("memory:").login_rate(0)).await;
    assert!(
        no_rate.contains("login_rate must be more than zero"),
        "{no_rate}"
    );
    let missing = refusal(
        Auth::builder()
            .database_url("memory:")
            .secret_file("/nonexistent/latchkey.secret"),
    )
    .await;
    assert!(
        missing.contains("/nonexistent/latchkey.secret"),
        "{missing}"
    );
    let no_secret = refusal(Auth::builder().database_url("postgres://nobody@127.0.0.1:1/x")).await;
    assert!(
        no_secret.contains(".secret(") && no_secret.contains("postgres://"),
        "{no_secret}"
    );
    let unknown = refusal(
        Auth::builder()
            .database_url("mysql://db/x")
            .secret(latchkey::ServerSecret::new(crate::common::SECRET).unwrap()),
    )
    .await;
    assert!(unknown.contains("mysql://db/x"), "{unknown}");
}

#[tokio::test]
async fn the_builder_keeps_a_generated_secret_beside_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let url = format!("sqlite://{}", db.display());
    let auth = Auth::builder()
        .database_url(&url)
        .hash_params(CHEAP)
        .build()
        .await
        .unwrap();
    let secret = dir.path().join("app.db.secret");
    let first = std::fs::read_to_string(&secret).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(auth);
    Auth::builder()
        .database_url(&url)
        .hash_params(CHEAP)
        .build()
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), first);
}
