//! Sessions: the token and its signed cookie, the tower layer that recognises
//! them on every request, and the extractors handlers use.

mod cookie;
mod layer;
mod token;

pub(crate) use cookie::cookie_values;
pub use cookie::{CookieSettings, SameSite};
pub use layer::{ActiveSession, AuthUser, Session, SessionLayer, SessionService};
pub use token::{CookieSigner, SessionToken, Signed};
