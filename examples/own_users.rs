//! An axum app that keeps its users in its own table (`members` in members.db) and lets
//! latchkey sign them in and keep their sessions. ANN_PASSWORD sets the password of the
//! member `ann`, made at the first start; ADDR the address (default 127.0.0.1:3000).
use axum::{Router, routing::get};
use latchkey::store::{AppUser, AppUsers, AppUsersError};
use latchkey::{Auth, AuthUser, Password, require_role};
use sqlx::SqlitePool;
use std::{env::var, net::SocketAddr};

/// The app's own user table.
struct Members(SqlitePool);

type Row = (i64, String, String, String, bool);

fn member((id, username, password_hash, roles, disabled): Row) -> AppUser {
    let roles = roles.split_whitespace().map(str::to_owned).collect();
    AppUser {
        id,
        username,
        password_hash,
        roles,
        disabled,
        display_name: None,
        email: None,
    }
}

#[async_trait::async_trait]
impl AppUsers for Members {
    async fn by_name(&self, key: &str) -> Result<Option<AppUser>, AppUsersError> {
        let sql =
            "SELECT id, name, password_hash, roles, disabled FROM members WHERE lower(name) = ?";
        let row: Option<Row> = sqlx::query_as(sql)
            .bind(key)
            .fetch_optional(&self.0)
            .await?;
        Ok(row.map(member))
    }

    async fn by_id(&self, id: i64) -> Result<Option<AppUser>, AppUsersError> {
        let sql = "SELECT id, name, password_hash, roles, disabled FROM members WHERE id = ?";
        let row: Option<Row> = sqlx::query_as(sql).bind(id).fetch_optional(&self.0).await?;
        Ok(row.map(member))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let members = SqlitePool::connect("sqlite://members.db?mode=rwc").await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS members (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,
         password_hash TEXT NOT NULL, roles TEXT NOT NULL DEFAULT '', disabled BOOL NOT NULL DEFAULT 0)",
    )
    .execute(&members)
    .await?;
    let listener =
        tokio::net::TcpListener::bind(var("ADDR").unwrap_or("127.0.0.1:3000".into())).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let auth = Auth::builder()
        .public_url(&url)
        .users(Members(members.clone()))
        .build()
        .await?;
    if let Ok(password) = var("ANN_PASSWORD") {
        // The app hashes its passwords with latchkey's hasher (argon2id).
        let hash = auth.hasher().hash(&Password::new(password)).await?;
        sqlx::query("INSERT OR IGNORE INTO members (name, password_hash) VALUES ('ann', ?)")
            .bind(hash)
            .execute(&members)
            .await?;
    }
    let app = Router::new()
        .route(
            "/",
            get(|user: AuthUser| async move { format!("hello {}", user.username) }),
        )
        .route(
            "/admin",
            get(|| async { "admins only" }).route_layer(require_role("admin")),
        )
        .merge(auth.routes())
        .layer(auth.layer())
        .layer(auth.pages());
    println!("listening on {url}");
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    Ok(axum::serve(listener, app).await?)
}
