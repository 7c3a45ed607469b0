//! Secrets that never print: passwords from users and the server's signing key.

use std::fmt;

use hmac::{KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// A password as typed by a person. `Debug` shows `[redacted]`; the memory is
/// wiped on drop.
#[derive(Clone)]
pub struct Password(SecretString);

impl Password {
    /// Wraps a password.
    #[must_use]
    pub fn new(password: String) -> Self {
        Self(SecretString::from(password))
    }

    /// The password itself; call only where it is hashed or checked.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<String> for Password {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

impl<'de> serde::Deserialize<'de> for Password {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// The shortest server secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// The server secret: signs session cookies and derives CSRF tokens. At least
/// [`MIN_SECRET_LEN`] bytes.
#[derive(Clone)]
pub struct ServerSecret(SecretString);

impl ServerSecret {
    /// Accepts a secret of at least [`MIN_SECRET_LEN`] bytes (surrounding white space is dropped).
    ///
    /// # Errors
    /// When the secret is too short.
    pub fn new(secret: &str) -> Result<Self, SecretTooShort> {
        let secret = secret.trim();
        if secret.len() < MIN_SECRET_LEN {
            return Err(SecretTooShort(secret.len()));
        }
        Ok(Self(SecretString::from(secret.to_owned())))
    }

    /// A fresh random secret: 48 random bytes as base64url (64 characters).
    #[must_use]
    pub fn generate() -> String {
        crate::random::random_base64::<48>()
    }

    /// A key for one purpose, derived so that no two uses share key material.
    pub(crate) fn derive(&self, purpose: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(self.0.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
        mac.update(b"latchkey key derivation\0");
        mac.update(purpose.as_bytes());
        let key = mac.finalize().into_bytes();
        HmacSha256::new_from_slice(&key).unwrap_or_else(|_| unreachable!("32-byte key"))
    }
}

impl fmt::Debug for ServerSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerSecret([redacted])")
    }
}

/// A server secret shorter than [`MIN_SECRET_LEN`].
#[derive(Debug, thiserror::Error)]
#[error("the secret is {0} bytes long; it must be at least 32 bytes")]
pub struct SecretTooShort(pub usize);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let p = Password::new("hunter2-hunter2".into());
        assert!(!format!("{p:?}").contains("hunter2"));
        let s = ServerSecret::new("0123456789abcdef0123456789abcdef-more").expect("long enough");
        assert!(!format!("{s:?}").contains("0123"));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(ServerSecret::new("short").is_err());
        assert!(ServerSecret::new(&"x".repeat(32)).is_ok());
    }
}
