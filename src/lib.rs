//! latchkey: session-based login as a service and as an axum library.
//!
//! A person signs in with a username and password; the server keeps a
//! session for them and recognises every later request by one signed
//! cookie, until they sign out or the session times out.
//!
//! Embedding it in an axum app:
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use latchkey::{AuthUser, Config, startup::open_auth};
//!
//! async fn hello(user: AuthUser) -> String {
//!     format!("hello, {}", user.username)
//! }
//!
//! # async fn run() -> anyhow::Result<()> {
//! let config = Config::load(None)?;
//! let auth = open_auth(&config).await?;
//! let app: Router = Router::new().route("/hello", get(hello)).layer(auth.layer());
//! # Ok(()) }
//! ```

mod auth;
pub mod cache;
pub mod cli;
mod client_ip;
pub mod clock;
pub mod config;
mod connections;
pub mod csrf;
pub mod device;
pub mod error;
pub mod layer;
pub mod negotiate;
pub mod password;
pub(crate) mod random;
pub(crate) mod rate;
pub mod redirect;
pub mod routes;
mod secret;
pub mod session;
pub mod startup;
pub mod store;
pub mod username;
pub mod users;

pub use auth::{AUDIT_TARGET, Auth, AuthSettings, LoggedIn, LoggedOut, LoginError};
pub use client_ip::client_ip;
pub use config::Config;
pub use error::AppError;
pub use layer::{AuthUser, SessionLayer};
pub use secret::{MIN_SECRET_LEN, Password, SecretTooShort, ServerSecret};
pub use session::{ActiveSession, Session};
pub use startup::Application;
