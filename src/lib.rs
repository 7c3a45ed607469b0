//! latchkey: session-based login as a service and as an axum library.
//!
//! A person signs in with a username and password; the server keeps a
//! session for them and recognises every later request by one signed
//! cookie, until they sign out or the session times out.
//!
//! An axum app behind latchkey's login, with a page only admins see and a
//! form that refuses cross-site posts (this is `examples/embed.rs`, which the
//! tests run):
//!
//! ```no_run
#![doc = include_str!("../examples/embed.rs")]
//! ```
//!
//! - [`Auth::builder`] opens the stores (SQLite by default; PostgreSQL and
//!   Redis with their features), reads or creates the secret and starts the
//!   cleanup of expired sessions.
//! - [`Auth::layer`] recognises the session cookie on every request;
//!   handlers take [`AuthUser`] (signed in, or refused) or [`Session`].
//! - [`Auth::routes`] are the sign-in and sign-out pages, under a prefix of
//!   your choice ([`AuthBuilder::pages_prefix`]); [`Auth::pages`] sends
//!   browsers that must sign in there, while API clients get a JSON 401.
//! - [`require_role`] and [`login_required`] guard routes; [`Auth::csrf`]
//!   refuses forged state-changing requests (the token is
//!   [`ActiveSession::csrf_token`]).
//! - Serve with `into_make_service_with_connect_info::<SocketAddr>()` so
//!   that failed sign-ins are counted per client address (without it they
//!   are limited per account only).
//! - A sign-out button is a form posting to `{prefix}/logout` with the
//!   `csrf_token` field; `auth.accounts()` creates and administers users
//!   ([`Accounts::create_user`]), or the service's CLI does on the same
//!   database; an app that keeps its own user table implements
//!   [`store::AppUsers`] (see `examples/own_users.rs`).
//! - latchkey reports through `tracing` (the audit trail of sign-ins,
//!   refused requests, misconfiguration): install a subscriber to see it.
//! - A client that does not prefer `application/json` in `Accept` (a
//!   browser, or curl's `*/*`) is answered as a browser: redirects and
//!   pages rather than JSON.
//!
//! The app's `Cargo.toml` (the example also uses `anyhow`). Password
//! hashing is slow on purpose, and unoptimised it takes seconds: a debug
//! build needs the hashing crates optimised, or every sign-in (and the
//! start, which calibrates) takes that long.
//!
//! ```toml
//! [dependencies]
//! latchkey = { version = "0.1", default-features = false, features = ["sqlite", "pages"] }
//! axum = "0.8"
//! tokio = { version = "1", features = ["full"] }
//! anyhow = "1"
//!
//! [profile.dev.package.argon2]
//! opt-level = 3
//! [profile.dev.package.blake2]
//! opt-level = 3
//! ```
//!
//! A first user made at start-up, once (the second start finds it there):
//!
//! ```no_run
//! # async fn run(auth: latchkey::Auth) -> anyhow::Result<()> {
//! use latchkey::{AccountError, Password};
//!
//! let password = Password::new(std::env::var("ADMIN_PASSWORD")?);
//! match auth
//!     .accounts()
//!     .create_user("alice", &password, &["admin".to_owned()])
//!     .await
//! {
//!     Ok(_) | Err(AccountError::Exists(_)) => {}
//!     Err(e) => return Err(e.into()),
//! }
//! # Ok(()) }
//! ```

// The library's surface is the types re-exported at the root, `store` (the
// storage boundary, for a store or user table of one's own) and `clock`
// (time as a dependency, for tests). The modules hidden from the docs are
// the service's (feature `server`, which builds its `Auth` through
// `Auth::builder` as any app does) and `internals`, what latchkey's own
// benchmarks and tests reach into; neither is the library's API.
#[cfg(feature = "server")]
mod access;
mod auth;
mod builder;
mod cache;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod cli;
mod client_ip;
pub mod clock;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod config;
#[cfg(feature = "server")]
mod connections;
mod csrf;
mod defaults;
mod device;
mod error;
mod guard;
mod host_name;
mod layer;
mod negotiate;
mod password;
mod paths;
mod profile;
pub(crate) mod random;
pub(crate) mod rate;
mod redirect;
#[cfg(feature = "pages")]
mod routes;
mod secret;
mod session;
#[cfg(feature = "server")]
#[doc(hidden)]
pub mod startup;
pub mod store;
mod username;
mod users;

pub use auth::{AUDIT_TARGET, Auth, LoggedIn, LoggedOut, LoginError};
pub use builder::{AuthBuilder, BuildError};
pub use cache::SessionCache;
pub use client_ip::client_ip;
#[cfg(feature = "server")]
#[doc(hidden)]
pub use config::Config;
pub use csrf::{CsrfRefusal, Origins};
pub use error::{AppError, ErrorInfo};
pub use guard::{
    CsrfLayer, CsrfService, MAX_FORM_BYTES, RequireRole, RequireRoleService, login_required,
    require_role,
};
pub use layer::{AuthUser, SessionLayer, SessionService};
pub use password::{HashParams, HashScheme, PasswordHasher};
pub use paths::{PathError, Paths};
pub use profile::{Profile, ProfileRejected};
#[cfg(feature = "pages")]
pub use routes::{PageLayer, PageService};
pub use secret::{MIN_SECRET_LEN, Password, SecretTooShort, ServerSecret};
pub use session::{ActiveSession, CookieSettings, SameSite, Session};
#[cfg(feature = "server")]
#[doc(hidden)]
pub use startup::Application;
pub use users::{AccountError, Accounts, SessionSummary, UserSummary};

/// What latchkey's own benchmarks and tests reach into: the cookie signer,
/// CSRF keys and user-name keys. Not the library's API; it may change.
#[doc(hidden)]
pub mod internals {
    pub use crate::csrf::{CsrfKeys, tokens_match};
    pub use crate::session::{CookieSigner, SessionToken};
    pub use crate::username::key_of;
}
