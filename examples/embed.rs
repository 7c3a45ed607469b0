//! latchkey in an axum app: `cargo run -- user add alice --role admin; cargo run --example embed`
use axum::{Form, Router, response::Html, routing::get};
use latchkey::{Auth, AuthUser, require_role};
use std::{collections::HashMap, env::var, net::SocketAddr};

async fn home(user: AuthUser) -> Html<String> {
    let (name, token) = (user.username.replace('<', "&lt;"), &user.csrf_token);
    Html(format!(
        r#"<p>Hello, {name}.</p><form method="post"><input name="note"><input type="hidden" name="csrf_token" value="{token}"><button>Save</button></form>"#
    ))
}
async fn save(user: AuthUser, Form(form): Form<HashMap<String, String>>) -> String {
    let note = form.get("note").map_or("", |n| n);
    format!("saved for {}: {note}", user.username)
}
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = var("ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let auth = Auth::builder().public_url(&url).build().await?;
    let admin = get(|| async { "admins only" }).route_layer(require_role("admin"));
    let app = Router::new().route("/", get(home).post(save).route_layer(auth.csrf()));
    let app = app.route("/admin", admin).merge(auth.routes());
    let app = app.layer(auth.layer()).layer(auth.pages());
    println!("listening on {url}");
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    Ok(axum::serve(listener, app).await?)
}
