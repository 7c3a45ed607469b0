//! The benchmark's ceiling: a bare axum server with no sessions, no
//! middleware and no store, answering `GET /profile` with the same JSON shape
//! latchkey returns to a signed-in client.
//!
//! ```text
//! cargo run --release --example bare -- 127.0.0.1:0    # or BIND=127.0.0.1:0
//! ```
//!
//! `GET /check` answers as an authentication server that lets everyone in
//! (the floor of the nginx forward-auth lines).
//!
//! It prints the bound address on standard output, then serves on tokio's
//! multi-threaded runtime (as latchkey does) until it is killed. Used by
//! `bench/run.sh`.

use anyhow::Context as _;
use axum::routing::get;
use axum::{Json, Router};
use tokio::net::TcpListener;

/// 43 characters, like a base64url HMAC-SHA256.
const CSRF_TOKEN: &str = "bench-csrf-token-0123456789abcdefghijklmnop";

/// Built per request, as latchkey builds its answer per request.
async fn profile() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "username": "bench",
        "roles": ["admin"],
        "csrf_token": CSRF_TOKEN,
        "signed_in_at": "2026-11-25T15:44:23Z",
    }))
}

/// The least an authentication server behind nginx's `auth_request` can
/// do: 200, no body, one identity header, without looking at anything.
/// The benchmark's floor for forward-auth through nginx.
async fn check() -> ([(&'static str, &'static str); 1], ()) {
    ([("remote-user", "bench")], ())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("BIND").ok())
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = TcpListener::bind(&bind)
        .await
        .with_context(|| format!("cannot listen on {bind}"))?;
    println!("{}", listener.local_addr()?);
    let app = Router::new()
        .route("/profile", get(profile))
        .route("/check", get(check))
        .route("/healthz", get(|| async { "ok" }));
    axum::serve(listener, app).await.context("serving")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_csrf_token_is_as_long_as_latchkeys() {
        assert_eq!(super::CSRF_TOKEN.len(), 43);
    }
}
