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

/// What a valid device cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The device's random id.
    pub id: String,
    /// The account's credential epoch when the cookie was issued: a
    /// password change (which moves the epoch on) forgets every device,
    /// so cookies gathered while the password was known buy nothing after.
    pub epoch: i64,
}

impl DeviceKeys {
    /// Keys derived from the server secret and any previous ones.
    #[must_use]
    pub fn new(secret: &ServerSecret, previous: &[ServerSecret]) -> Self {
        Self {
            current: secret.derive(PURPOSE),
            previous: previous.iter().map(|s| s.derive(PURPOSE)).collect(),
        }
    }

    /// A new cookie value for a device that has just signed in, at `now`
    /// (seconds), to the account whose key is `account` and whose
    /// credential epoch is `epoch`.
    #[must_use]
    pub fn issue(&self, account: &str, epoch: i64, now: i64) -> String {
        let id = crate::random::random_base64::<16>();
        let mac = mac_b64(&self.current, &signed_data(account, &id, now, epoch));
        format!("{id}.{now}.{epoch}.{mac}")
    }

    /// What `value` says, if it is a device cookie for `account` issued
    /// within [`DEVICE_COOKIE_MAX_AGE`] before `now` (seconds): the server
    /// holds a device to the age the browser was told, whatever the browser
    /// does.
    #[must_use]
    pub fn verify(&self, value: &str, account: &str, now: i64) -> Option<Device> {
        let mut parts = value.splitn(4, '.');
        let (id, issued, epoch, mac) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let (issued, epoch): (i64, i64) = (issued.parse().ok()?, epoch.parse().ok()?);
        let max_age = i64::try_from(DEVICE_COOKIE_MAX_AGE.as_secs()).unwrap_or(i64::MAX);
        if !(0..=max_age).contains(&(now - issued)) {
            return None;
        }
        let data = signed_data(account, id, issued, epoch);
        std::iter::once(&self.current)
            .chain(&self.previous)
            .any(|key| tokens_match(&mac_b64(key, &data), mac))
            .then(|| Device {
                id: id.to_owned(),
                epoch,
            })
    }
}

/// The account key, the device id, the issue time and the epoch, separated
/// by a byte no key holds.
fn signed_data(account: &str, id: &str, issued: i64, epoch: i64) -> Vec<u8> {
    format!("{account}\0{id}\0{issued}\0{epoch}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(secret: &str) -> DeviceKeys {
        DeviceKeys::new(&ServerSecret::new(secret).expect("long enough"), &[])
    }

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_device_cookie_is_good_only_for_its_account_and_secret() {
        let k = keys("0123456789abcdef0123456789abcdef-a");
        let cookie = k.issue("alice", 3, NOW);
        let device = k.verify(&cookie, "alice", NOW).expect("valid for alice");
        assert!(cookie.starts_with(&device.id));
        assert_eq!(device.epoch, 3);
        assert_eq!(k.verify(&cookie, "bob", NOW), None);
        assert_eq!(k.verify(&cookie, "alic", NOW), None);
        assert_eq!(
            keys("0123456789abcdef0123456789abcdef-b").verify(&cookie, "alice", NOW),
            None
        );
        assert_eq!(k.verify("garbage", "alice", NOW), None);
        assert_ne!(
            k.issue("alice", 3, NOW),
            cookie,
            "every sign-in gets a new id"
        );
        // Its time and epoch are signed too.
        let (id, rest) = cookie.split_once('.').expect("id");
        let (_, rest) = rest.split_once('.').expect("time");
        assert_eq!(
            k.verify(&format!("{id}.{NOW}.{rest}"), "alice", NOW)
                .map(|d| d.id),
            Some(id.to_owned())
        );
        let (_, mac) = rest.split_once('.').expect("epoch");
        assert_eq!(
            k.verify(&format!("{id}.{}.3.{mac}", NOW + 1), "alice", NOW + 1),
            None
        );
        assert_eq!(k.verify(&format!("{id}.{NOW}.4.{mac}"), "alice", NOW), None);
    }

    #[test]
    fn a_device_cookie_expires_on_the_server_as_in_the_browser() {
        let k = keys("0123456789abcdef0123456789abcdef-a");
        let cookie = k.issue("alice", 0, NOW);
        let max = i64::try_from(DEVICE_COOKIE_MAX_AGE.as_secs()).expect("fits");
        assert!(k.verify(&cookie, "alice", NOW + max).is_some());
        assert_eq!(k.verify(&cookie, "alice", NOW + max + 1), None);
        assert_eq!(
            k.verify(&cookie, "alice", NOW - 1),
            None,
            "not from the future"
        );
    }

    #[test]
    fn devices_are_remembered_across_a_secret_rotation() {
        let old = ServerSecret::new("0123456789abcdef0123456789abcdef-old").expect("long");
        let new = ServerSecret::new("0123456789abcdef0123456789abcdef-new").expect("long");
        let cookie = DeviceKeys::new(&old, &[]).issue("alice", 0, NOW);
        assert!(
            DeviceKeys::new(&new, &[old])
                .verify(&cookie, "alice", NOW)
                .is_some()
        );
    }
}
