//! Randomness from the operating system: a primitive that tokens, secrets,
//! salts and nonces all use, and that knows nothing above it.

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
