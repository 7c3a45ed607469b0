//! Sessions: the token and its signed cookie, the tower layer that recognises
//! them on every request, and the extractors handlers use.

mod cookie;
mod layer;
mod token;

pub(crate) use cookie::cookie_values;
pub use cookie::{CookieSettings, SameSite};
pub use layer::{ActiveSession, AuthUser, Session, SessionLayer, SessionService};
pub use token::{CookieSigner, SessionToken, Signed};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// `N` bytes from the operating system's random generator.
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    // Without an OS random generator no secret in this program would be safe;
    // there is nothing sensible to fall back to.
    if let Err(e) = getrandom::fill(&mut buf) {
        panic!("the operating system's random generator failed: {e}");
    }
    buf
}

/// `N` random bytes as base64url without padding.
pub(crate) fn random_base64<const N: usize>() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<N>())
}
