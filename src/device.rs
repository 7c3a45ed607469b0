//! Device cookies (OWASP's "Slow Down Online Guessing Attacks with Device
//! Cookies"): a browser that has signed in to an account before holds a
//! signed cookie naming that account and a random device id. Failed sign-ins
//! from such a device count against the device alone; everyone else's count
//! against "untrusted clients of the account". An attacker who locks the
//! account therefore locks only untrusted clients, and the owner on a known
//! device still signs in.
//!
//! The cookie does not carry the user name: its signature covers the
//! account's lookup key, so it is checked against the name being tried and
//! is worth nothing for any other account.

use crate::csrf::{HmacSha256, mac_b64, tokens_match};
use crate::secret::ServerSecret;

/// How long a device stays known without signing in again (each sign-in
/// issues a new cookie): long enough for a monthly visitor, short enough
/// that a stolen cookie does not last forever.
pub const DEVICE_COOKIE_MAX_AGE: std::time::Duration =
    std::time::Duration::from_secs(180 * 24 * 3600);

/// Issues and checks device cookies.
#[derive(Clone)]
pub struct DeviceKeys {
    current: HmacSha256,
    /// Keys of earlier secrets: rotating the secret forgets no device.
    previous: Vec<HmacSha256>,
}

impl std::fmt::Debug for DeviceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceKeys")
    }
}

const PURPOSE: &str = "device cookie";

impl DeviceKeys {
    /// Keys derived from the server secret and any previous ones.
    #[must_use]
    pub fn new(secret: &ServerSecret, previous: &[ServerSecret]) -> Self {
        Self {
            current: secret.derive(PURPOSE),
            previous: previous.iter().map(|s| s.derive(PURPOSE)).collect(),
        }
    }

    /// A new cookie value for a device that has just signed in to the
    /// account whose lookup key is `account`.
    #[must_use]
    pub fn issue(&self, account: &str) -> String {
        let id = crate::random::random_base64::<16>();
        let mac = mac_b64(&self.current, &signed_data(account, &id));
        format!("{id}.{mac}")
    }

    /// The device id in `value` if it is a device cookie for `account`.
    #[must_use]
    pub fn verify<'a>(&self, value: &'a str, account: &str) -> Option<&'a str> {
        let (id, mac) = value.split_once('.')?;
        let data = signed_data(account, id);
        std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|key| tokens_match(&mac_b64(key, &data), mac))
            .then_some(id)
    }
}

/// The account key and the device id, separated by a byte no key holds.
fn signed_data(account: &str, id: &str) -> Vec<u8> {
    [account.as_bytes(), b"\0", id.as_bytes()].concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> DeviceKeys {
        DeviceKeys::new(&ServerSecret::new(secret).expect("long enough"), &[])
    }

    #[test]
    fn a_device_cookie_is_good_only_for_its_account_and_secret() {
        let k = keys("0123456789abcdef0123456789abcdef-a");
        let cookie = k.issue("alice");
        let id = k.verify(&cookie, "alice").expect("valid for alice");
        assert!(cookie.starts_with(id));
        assert_eq!(k.verify(&cookie, "bob"), None);
        assert_eq!(k.verify(&cookie, "alic"), None);
        assert_eq!(
            keys("0123456789abcdef0123456789abcdef-b").verify(&cookie, "alice"),
            None
        );
        assert_eq!(k.verify("garbage", "alice"), None);
        assert_ne!(k.issue("alice"), cookie, "every sign-in gets a new id");
    }

    #[test]
    fn devices_are_remembered_across_a_secret_rotation() {
        let old = ServerSecret::new("0123456789abcdef0123456789abcdef-old").expect("long");
        let new = ServerSecret::new("0123456789abcdef0123456789abcdef-new").expect("long");
        let cookie = DeviceKeys::new(&old, &[]).issue("alice");
        assert!(
            DeviceKeys::new(&new, &[old])
                .verify(&cookie, "alice")
                .is_some()
        );
    }
}
