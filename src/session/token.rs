//! Session tokens and the signature that lets forged cookies be refused without a store lookup.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use sha2::{Digest, Sha256};

use crate::secret::ServerSecret;
use crate::store::SessionKey;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// 256 random bits that identify a session. Only the client holds it; the
/// store knows its SHA-256 ([`SessionKey`]).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken([u8; 32]);

impl SessionToken {
    /// A fresh token from the operating system's random generator.
    #[must_use]
    pub fn generate() -> Self {
        Self(crate::random::random_bytes::<32>())
    }

    /// The key under which the store keeps this session.
    #[must_use]
    pub fn key(&self) -> SessionKey {
        SessionKey(Sha256::digest(self.0).into())
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

/// Signs tokens into cookie values and checks them: `base64url(token).base64url(hmac)`.
#[derive(Clone)]
pub struct CookieSigner {
    mac: HmacSha256,
    /// Keys of earlier secrets: their cookies still verify (and are
    /// re-signed), so that rotating the secret signs nobody out.
    previous: Vec<HmacSha256>,
}

impl std::fmt::Debug for CookieSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CookieSigner")
    }
}

/// Length of a signed cookie value: two 43-character base64url halves and a dot.
pub(crate) const SIGNED_LEN: usize = 87;

impl CookieSigner {
    /// A signer keyed from the server secret.
    #[must_use]
    pub fn new(secret: &ServerSecret) -> Self {
        Self::with_previous(secret, &[])
    }

    /// A signer that also accepts cookies signed with `previous` secrets.
    #[must_use]
    pub fn with_previous(secret: &ServerSecret, previous: &[ServerSecret]) -> Self {
        Self {
            mac: secret.derive("session cookie"),
            previous: previous
                .iter()
                .map(|s| s.derive("session cookie"))
                .collect(),
        }
    }

    /// The cookie value for a token.
    #[must_use]
    pub fn sign(&self, token: &SessionToken) -> String {
        let mut mac = self.mac.clone();
        mac.update(&token.0);
        let tag = mac.finalize().into_bytes();
        let mut out = String::with_capacity(SIGNED_LEN);
        URL_SAFE_NO_PAD.encode_string(token.0, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut out);
        out
    }

    /// The token in a cookie value, if the value is well-formed and the
    /// signature is ours (checked in constant time).
    #[must_use]
    pub fn verify(&self, value: &str) -> Option<SessionToken> {
        match self.verify_any(value)? {
            (token, Signed::Current) => Some(token),
            (_, Signed::Previous) => None,
        }
    }

    /// The token in a cookie value signed with the current secret or a
    /// previous one, and which. Previous secrets are tried only when the
    /// current one fails, so a valid cookie costs one HMAC as before.
    #[must_use]
    pub fn verify_any(&self, value: &str) -> Option<(SessionToken, Signed)> {
        if value.len() != SIGNED_LEN {
            return None;
        }
        let (token_b64, tag_b64) = value.split_once('.')?;
        let mut token = [0u8; 32];
        let mut tag = [0u8; 32];
        if URL_SAFE_NO_PAD.decode_slice(token_b64, &mut token).ok()? != 32
            || URL_SAFE_NO_PAD.decode_slice(tag_b64, &mut tag).ok()? != 32
        {
            return None;
        }
        let verifies = |key: &HmacSha256| {
            let mut mac = key.clone();
            mac.update(&token);
            mac.verify_slice(&tag).is_ok()
        };
        if verifies(&self.mac) {
            return Some((SessionToken(token), Signed::Current));
        }
        self.previous
            .iter()
            .any(verifies)
            .then_some((SessionToken(token), Signed::Previous))
    }
}

/// Which secret signed a cookie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// The current one.
    Current,
    /// One of the previous ones: the cookie should be signed anew.
    Previous,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(secret: &str) -> CookieSigner {
        CookieSigner::new(&ServerSecret::new(secret).expect("valid secret"))
    }

    #[test]
    fn cookies_of_a_previous_secret_verify_as_such() {
        let old = ServerSecret::new(&"old-secret-0123456789-abcdefghij".repeat(2)).expect("secret");
        let new = ServerSecret::new(&"new-secret-0123456789-abcdefghij".repeat(2)).expect("secret");
        let token = SessionToken::generate();
        let old_value = CookieSigner::new(&old).sign(&token);
        let rotated = CookieSigner::with_previous(&new, std::slice::from_ref(&old));
        let (verified, signed) = rotated.verify_any(&old_value).expect("verifies");
        assert_eq!((verified.key(), signed), (token.key(), Signed::Previous));
        assert!(
            rotated.verify(&old_value).is_none(),
            "not as a current cookie"
        );
        let new_value = rotated.sign(&token);
        assert_eq!(
            rotated.verify_any(&new_value).map(|v| v.1),
            Some(Signed::Current)
        );
        assert!(
            CookieSigner::new(&new).verify_any(&old_value).is_none(),
            "once retired, gone"
        );
    }

    #[test]
    fn a_signed_token_verifies_and_keeps_its_key() {
        let s = signer(&"a".repeat(40));
        let token = SessionToken::generate();
        let value = s.sign(&token);
        assert_eq!(value.len(), SIGNED_LEN);
        let back = s.verify(&value).expect("own signature verifies");
        assert_eq!(back.key(), token.key());
    }

    #[test]
    fn forged_or_foreign_cookies_are_refused() {
        let ours = signer(&"a".repeat(40));
        let theirs = signer(&"b".repeat(40));
        let token = SessionToken::generate();
        assert!(ours.verify(&theirs.sign(&token)).is_none());
        let mut value = ours.sign(&token);
        value.replace_range(0..1, if value.starts_with('A') { "B" } else { "A" });
        assert!(ours.verify(&value).is_none());
        assert!(ours.verify("garbage").is_none());
        assert!(ours.verify(&"x".repeat(SIGNED_LEN)).is_none());
        assert!(ours.verify("").is_none());
    }

    #[test]
    fn the_store_key_is_not_the_token() {
        let token = SessionToken::generate();
        assert_ne!(token.key().0, token.0);
    }
}
