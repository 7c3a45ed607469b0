//! Sessions: the token, its signed cookie, and the signed-in session a
//! request carries. The tower layer that recognises them on every request,
//! and the extractors handlers use, are [`crate::SessionLayer`] and [`crate::AuthUser`].

mod active;
mod cookie;
mod token;

pub use active::{ActiveSession, Session};

pub(crate) use cookie::cookie_values;
pub use cookie::{CookieSettings, SameSite};
pub use token::{CookieSigner, SessionToken, Signed};
