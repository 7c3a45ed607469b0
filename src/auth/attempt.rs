//! One sign-in attempt from counting to settling: the throttle's part of
//! [`Auth::login`].

use std::net::IpAddr;
use std::time::Duration;

use super::{
    AUDIT_TARGET, Auth, DEVICE_SEPARATOR, LoggedIn, LoginError, account_counter, device_account,
    wait,
};
use crate::cache::Change;
use crate::secret::Password;
use crate::session::SessionToken;
use crate::store::{Attempt, FailurePolicy, Millis, SessionKey, SessionRecord, UserRecord};
use crate::username::canonical_key;

/// How long an attempt waits for attempts in flight on the same counter
/// (each is one password check) before it gives up with "busy".
const IN_FLIGHT_PATIENCE: Duration = Duration::from_secs(5);

/// An attempt with everything it needs to run on its own task.
pub(super) struct LoginAttempt {
    pub(super) auth: Auth,
    pub(super) username: String,
    pub(super) password: Password,
    pub(super) client: IpAddr,
    pub(super) old_session: Option<SessionKey>,
    /// The request's device cookies (a few at most), checked once the user
    /// is known.
    pub(super) device_cookies: Vec<String>,
    /// The failure counters this attempt is held against, chosen once the
    /// user is known ([`LoginAttempt::choose_counters`]).
    pub(super) counters: Vec<Counter>,
    /// Whether it comes from a known device of the account: its password
    /// is then checked ahead of other sign-ins waiting for the hasher.
    pub(super) known_device: bool,
}

/// A user's one place in the hasher's priority lane, given back on drop.
struct FirstInLine<'a>(&'a Auth, i64);

impl<'a> FirstInLine<'a> {
    /// The place, unless the user already has a sign-in there.
    fn take(auth: &'a Auth, user: i64) -> Option<Self> {
        let mut waiting = auth
            .inner
            .first_in_line
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        waiting.insert(user).then_some(Self(auth, user))
    }
}

impl Drop for FirstInLine<'_> {
    fn drop(&mut self) {
        self.0
            .inner
            .first_in_line
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&self.1);
    }
}

/// A failure counter an attempt is held against.
pub(super) struct Counter {
    pub(super) key: String,
    pub(super) policy: FailurePolicy,
    /// A success wipes it (the account's or device's owner is here), or
    /// only takes back its own attempt (a client address, where others may
    /// have failed).
    pub(super) cleared_by_success: bool,
}

impl LoginAttempt {
    fn audit(&self, outcome: &str) {
        tracing::info!(target: AUDIT_TARGET, event = "login", outcome,
            username = %crate::username::InLog(&self.username), client_ip = %self.client);
    }

    pub(super) async fn run(mut self) -> Result<LoggedIn, LoginError> {
        let user = self.find_user().await?;
        (self.counters, self.known_device) = self.choose_counters(user.as_ref());
        if let Err(e) = self.count().await {
            let throttled = matches!(e, LoginError::Throttled { .. });
            self.audit(if throttled { "throttled" } else { "busy" });
            if throttled {
                // See `AuthSettings::refusal_delay`.
                tokio::time::sleep(self.auth.inner.settings.refusal_delay).await;
            }
            return Err(e);
        }
        match self.check(user).await {
            Ok(logged_in) => Ok(logged_in),
            Err(e) => {
                if !matches!(
                    e,
                    LoginError::InvalidCredentials | LoginError::InvalidCredentialsNowLocked { .. }
                ) {
                    // Nothing was decided: the attempt is not held against anyone.
                    self.forgive(self.counters.len()).await?;
                }
                Err(e)
            }
        }
    }

    /// Counts the attempt on every counter, or on none. A refused attempt
    /// writes nothing: a client whose address, account or device is locked
    /// learns so from reads alone, so that a locked client flooding invented
    /// names cannot fill the store. Attempts still being checked are not
    /// failures: when they fill the limit, this one waits for them.
    async fn count(&self) -> Result<(), LoginError> {
        let failures = &self.auth.inner.stores.failures;
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            let now = self.auth.now();
            let mut locked = None;
            for c in &self.counters {
                locked = locked.max(failures.locked_until(&c.key, now).await?);
            }
            if let Some(until) = locked {
                return Err(LoginError::Throttled {
                    retry_after: wait(now, until),
                });
            }
            let mut busy = false;
            for (counted, c) in self.counters.iter().enumerate() {
                match failures.begin_attempt(&c.key, now, c.policy).await? {
                    Attempt::Allowed => continue,
                    Attempt::Locked(until) => {
                        self.forgive(counted).await?;
                        return Err(LoginError::Throttled {
                            retry_after: wait(now, until),
                        });
                    }
                    Attempt::Busy => {
                        self.forgive(counted).await?;
                        busy = true;
                        break;
                    }
                }
            }
            if !busy {
                return Ok(());
            }
            if started.elapsed() > IN_FLIGHT_PATIENCE {
                return Err(LoginError::Busy);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    /// Takes back the attempt on the first `n` counters.
    async fn forgive(&self, n: usize) -> Result<(), LoginError> {
        for c in &self.counters[..n] {
            self.auth
                .inner
                .stores
                .failures
                .forgive(&c.key, c.policy)
                .await?;
        }
        Ok(())
    }

    /// The user the name stands for, if any. Looked up by the key names
    /// have always had, not by today's rules for new names: a name stored
    /// before them still signs in. Every key is asked, found or not, so
    /// that the number of lookups says nothing of which one found a user.
    async fn find_user(&self) -> Result<Option<UserRecord>, LoginError> {
        let mut user = None;
        for key in crate::username::lookup_keys(&self.username) {
            let found = self.auth.inner.stores.users.user_by_key(&key).await?;
            user = user.or(found);
        }
        Ok(user)
    }

    /// A known device of this very account, issued since its password last
    /// changed, is held to its own counter; anyone else to the address's
    /// and the account's counters for untrusted clients.
    fn choose_counters(&self, user: Option<&UserRecord>) -> (Vec<Counter>, bool) {
        let settings = &self.auth.inner.settings;
        let account = account_counter(
            &user.map_or_else(|| canonical_key(&self.username), |u| u.username_key.clone()),
        );
        let now = self.auth.now() / 1000;
        let known = user.and_then(|u| {
            let bound_to = device_account(u);
            self.device_cookies.iter().find_map(|v| {
                self.auth
                    .inner
                    .devices
                    .verify(v, &bound_to, now)
                    .filter(|d| d.epoch == u.credential_epoch)
            })
        });
        match known {
            Some(device) => (
                vec![Counter {
                    key: format!("{account}{DEVICE_SEPARATOR}{}", device.id),
                    policy: settings.account_failures,
                    cleared_by_success: true,
                }],
                true,
            ),
            None => {
                let mut counters = Vec::with_capacity(2);
                // An unknown address (an app served without the client's
                // address) is no address: one counter for every client
                // would let anyone lock everyone out.
                if !self.client.is_unspecified() {
                    counters.push(Counter {
                        key: format!("ip:{}", crate::client_ip::throttle_key(self.client)),
                        policy: settings.ip_failures,
                        cleared_by_success: false,
                    });
                }
                counters.push(Counter {
                    key: account,
                    policy: settings.account_failures,
                    cleared_by_success: true,
                });
                (counters, false)
            }
        }
    }

    /// Checks the password of a counted attempt and settles it.
    async fn check(&self, user: Option<UserRecord>) -> Result<LoggedIn, LoginError> {
        let inner = &*self.auth.inner;
        let failures = &inner.stores.failures;
        let stored = user.as_ref().map(|u| u.password_hash.as_str());
        let first = self
            .known_device
            .then(|| {
                user.as_ref()
                    .and_then(|u| FirstInLine::take(&self.auth, u.id.0))
            })
            .flatten();
        let verified = if first.is_some() {
            inner.hasher.verify_first(&self.password, stored).await?
        } else {
            inner.hasher.verify(&self.password, stored).await?
        };
        drop(first);
        let user = match user {
            Some(u) if verified.matches && !u.disabled => u,
            _ => {
                self.audit("failure");
                let now = self.auth.now();
                let mut locked = None;
                for c in &self.counters {
                    locked = locked.max(failures.fail(&c.key, now, c.policy).await?);
                }
                // The failure that reaches the limit says so at once, not
                // only at the next attempt.
                return Err(match locked {
                    Some(until) => LoginError::InvalidCredentialsNowLocked {
                        retry_after: wait(now, until),
                    },
                    None => LoginError::InvalidCredentials,
                });
            }
        };
        for c in &self.counters {
            if c.cleared_by_success {
                failures.clear(&c.key).await?;
            } else {
                failures.forgive(&c.key, c.policy).await?;
            }
        }
        if verified.needs_rehash {
            match inner.hasher.hash(&self.password).await {
                Ok(hash) => {
                    inner
                        .stores
                        .users
                        .set_password_hash(user.id, &hash, false)
                        .await?;
                    tracing::info!(username = %crate::username::InLog(&user.username), "password hash upgraded to current parameters");
                }
                Err(e) => tracing::warn!(error = %e, "password rehash skipped"),
            }
        }
        if let Some(old) = self.old_session {
            inner.stores.sessions.delete(&old).await?;
            inner.cache.invalidate(&Change::Session(old));
        }
        let token = SessionToken::generate();
        let now: Millis = self.auth.now();
        let record = SessionRecord {
            key: token.key(),
            user_id: user.id,
            credential_epoch: user.credential_epoch,
            roles_epoch: user.roles_epoch,
            created_at: now,
            last_seen: now,
        };
        inner.stores.sessions.create(&record).await?;
        tracing::info!(target: AUDIT_TARGET, event = "login", outcome = "success",
            username = %crate::username::InLog(&self.username), client_ip = %self.client, session = %record.key.short());
        let cookies = &inner.settings.cookies;
        Ok(LoggedIn {
            cookies: [
                self.auth.session_cookie(&token),
                cookies.clear(cookies.csrf_name()),
                cookies.set_device(&inner.devices.issue(
                    &device_account(&user),
                    user.credential_epoch,
                    now / 1000,
                )),
            ],
            session: self.auth.active(&record, &user),
        })
    }
}
