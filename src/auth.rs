//! The login itself: recognising sessions, signing in and out, CSRF checks,
//! throttling and the audit trail. [`Auth`] is what an embedding app holds.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponseParts, ResponseParts};
use ipnet::IpNet;

mod attempt;

use attempt::LoginAttempt;

use crate::cache::{CachedSession, Change, SessionCache};
use crate::clock::{Clock, millis};
use crate::csrf::{self, CsrfKeys, CsrfRefusal};
use crate::error::AppError;
use crate::password::{HashError, MAX_PASSWORD_BYTES, PasswordHasher};
use crate::secret::{Password, ServerSecret};
use crate::session::{ActiveSession, CookieSettings, CookieSigner, Session, SessionToken, Signed};
use crate::store::{
    FailurePolicy, Millis, SessionKey, SessionRecord, StoreError, Stores, UserRecord,
};
use crate::username::MAX_USERNAME_BYTES;

/// Audit events go to this tracing target, one event per login attempt,
/// logout or revocation, with username, client address and outcome.
pub const AUDIT_TARGET: &str = "latchkey::audit";

/// Everything [`Auth`] needs to know besides its stores and secret, as
/// [`crate::AuthBuilder`] settles it.
#[derive(Debug, Clone)]
pub(crate) struct AuthSettings {
    /// The origins the site is reached at, as browsers send them in
    /// `Origin` (`https://example.com`), its public URL's first.
    pub origins: crate::csrf::Origins,
    /// Cookie names and attributes.
    pub cookies: CookieSettings,
    /// A session unused this long ends.
    pub idle_timeout: Duration,
    /// A session ends this long after sign-in, however busy.
    pub absolute_timeout: Duration,
    /// Failed logins per account before it is locked.
    pub account_failures: FailurePolicy,
    /// Failed logins per client address before it is locked.
    pub ip_failures: FailurePolicy,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// How long a refused sign-in waits before it is answered: a client
    /// that keeps trying a lock (or its address's share) gets at most one
    /// answer per connection this often, so a flood of refusals costs the
    /// server little more than idle connections, which are capped.
    pub refusal_delay: Duration,
    /// How long a change feed may stay silent before this instance stops
    /// trusting its session cache (see [`crate::store::feed::FeedSink`]).
    pub feed_liveness: Duration,
    /// Sign-in (and setup) requests per client address and minute, counted
    /// in memory; more are refused before any store access.
    pub login_rate: u32,
    /// What every decision by time asks: [`crate::clock::SystemClock`]
    /// outside tests.
    pub clock: Arc<dyn Clock>,
    /// Where the login pages are: browsers that must sign in are sent there.
    /// Read only by the pages (feature `pages`).
    #[cfg_attr(not(feature = "pages"), allow(dead_code))]
    pub paths: crate::paths::Paths,
    /// Where `rd` may send a browser after sign-in or sign-out.
    #[cfg_attr(not(feature = "pages"), allow(dead_code))]
    pub returns: crate::redirect::Returns,
    /// The sign-in and sign-out pages' Content-Security-Policy: the
    /// others' with a `form-action` that lets their forms' answers
    /// redirect to where `rd` may go.
    #[cfg_attr(not(feature = "pages"), allow(dead_code))]
    pub form_page_csp: axum::http::HeaderValue,
}

/// A handle on the login: cheap to clone, shared by the layer, the routes
/// and the CLI.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

struct Inner {
    settings: AuthSettings,
    stores: Stores,
    hasher: Arc<PasswordHasher>,
    signer: CookieSigner,
    csrf: CsrfKeys,
    devices: crate::device::DeviceKeys,
    /// Users with a sign-in from a known device in the hasher's priority
    /// lane: one each, so that an account holder cannot fill the lane.
    first_in_line: std::sync::Mutex<std::collections::HashSet<i64>>,
    cache: Arc<SessionCache>,
    rate: crate::rate::RateLimit,
    idle: Millis,
    absolute: Millis,
    touch_every: Millis,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// What the session layer can tell without waiting for anything.
pub(crate) enum Quick {
    /// No valid cookie: anonymous, decided without a store.
    Anonymous,
    /// A live session from the cache.
    Active(Arc<ActiveSession>),
    /// The store must be asked (cache miss, activity to record, or a
    /// session that may have ended).
    Store(SessionKey),
    /// A cookie signed with a previous secret: asked from the store like
    /// [`Quick::Store`], and, if the session lives, signed anew.
    Resign(SessionToken),
}

/// What the session layer found for a request.
pub(crate) enum Resolution {
    /// No session cookie, or one that is forged, unknown or ended.
    Anonymous,
    /// A live session.
    Active(Arc<ActiveSession>),
    /// A live session whose token was replaced (its roles changed); the
    /// response must carry the new cookie. The old key comes along so that
    /// a form shown before the change still passes its CSRF check.
    Rotated(Arc<ActiveSession>, HeaderValue, SessionKey),
}

/// Why a login did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown user, wrong password or disabled account: one answer for all.
    #[error("invalid username or password")]
    InvalidCredentials,
    /// As [`LoginError::InvalidCredentials`], and this failure reached the
    /// limit: the account or the client address is now locked for this
    /// long. API clients get the same answer as for any wrong password
    /// (the lock shows at their next attempt); pages say it at once.
    #[error("invalid username or password")]
    InvalidCredentialsNowLocked {
        /// How long until the lock ends.
        retry_after: Duration,
    },
    /// Input that cannot be a valid login (over-long fields).
    #[error("{0}")]
    InvalidInput(&'static str),
    /// Too many recent failures for the account or the client address.
    #[error("too many failed login attempts")]
    Throttled {
        /// How long until the lock ends.
        retry_after: Duration,
    },
    /// Too many sign-in requests from the client address this minute
    /// (refused before any store access).
    #[error("too many sign-in requests")]
    RateLimited {
        /// How long until the address's share is renewed.
        retry_after: Duration,
    },
    /// The hashing pool is saturated.
    #[error("password hashing is saturated")]
    Busy,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Hashing failed.
    #[error("password hashing failed")]
    Hash(#[source] HashError),
}

impl From<HashError> for LoginError {
    fn from(e: HashError) -> Self {
        match e {
            HashError::Busy => Self::Busy,
            other => Self::Hash(other),
        }
    }
}

impl From<LoginError> for AppError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::InvalidCredentials | LoginError::InvalidCredentialsNowLocked { .. } => {
                Self::InvalidCredentials
            }
            LoginError::InvalidInput(msg) => Self::Unprocessable(msg.into()),
            LoginError::Throttled { retry_after } => Self::Throttled {
                retry_after_secs: retry_after.as_secs().max(1),
            },
            LoginError::RateLimited { retry_after } => Self::RateLimited {
                retry_after_secs: retry_after.as_secs().max(1),
            },
            LoginError::Busy => Self::Busy,
            LoginError::Store(e) => e.into(),
            LoginError::Hash(e) => Self::Internal(e.into()),
        }
    }
}

/// A successful login: the new session, and the cookies to send (the
/// session cookie, removal of the login form's CSRF cookie, and a new
/// device cookie).
pub struct LoggedIn {
    /// The new session.
    pub session: Arc<ActiveSession>,
    cookies: [HeaderValue; 3],
}

impl std::fmt::Debug for LoggedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoggedIn")
            .field("session", &self.session)
            .field("cookies", &"[redacted]")
            .finish()
    }
}

impl IntoResponseParts for LoggedIn {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        for c in self.cookies {
            res.headers_mut().append(header::SET_COOKIE, c);
        }
        Ok(res)
    }
}

/// The headers of a logout: the cookie removed, and `Clear-Site-Data`.
#[derive(Debug)]
pub struct LoggedOut {
    clear: HeaderValue,
}

impl IntoResponseParts for LoggedOut {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        res.headers_mut().append(header::SET_COOKIE, self.clear);
        // Not `"cookies"`: that would also delete the device cookie (and
        // every other cookie of the origin); the session cookie is removed
        // by name above and ended on the server.
        res.headers_mut().insert(
            HeaderName::from_static("clear-site-data"),
            HeaderValue::from_static("\"cache\""),
        );
        Ok(res)
    }
}

/// The failure counter, for untrusted clients, of the account whose lookup
/// key is `key`: the stored `username_key` of a user that exists (so that
/// every spelling that finds the user is one account), the canonical key
/// of the name typed otherwise. A device's counter is this followed by
/// [`DEVICE_SEPARATOR`] and the device id, so that every counter of an
/// account starts with this key.
pub(crate) fn account_counter(key: &str) -> String {
    format!("account:{key}")
}

/// What a device cookie is bound to: the user itself (its id: a name
/// removed and made again is another account) and its key.
pub(crate) fn device_account(user: &UserRecord) -> String {
    format!("{}:{}", user.id.0, user.username_key)
}

/// Between an account's counter key and a device id. No user key holds it
/// (user names have no control characters).
pub(crate) const DEVICE_SEPARATOR: &str = "\u{1f}device:";

/// How long from `now` until `until` (nothing if it has passed).
fn wait(now: Millis, until: Millis) -> Duration {
    Duration::from_millis(u64::try_from(until - now).unwrap_or(0))
}

impl Auth {
    /// Puts the parts together ([`Auth::builder`] is the way in from
    /// outside). `hasher` runs argon2 on a bounded pool; see
    /// [`PasswordHasher::new`]. The stores' change feeds start here, so this
    /// must be called inside a tokio runtime. Before serving, call
    /// [`Auth::learn_hash_schemes`] (as the builder does), so that no login
    /// can be told from another by its time. Cookies and CSRF tokens made
    /// with `previous` secrets are accepted, and session cookies re-issued
    /// under `secret` at their next request: rotating the secret signs
    /// nobody out.
    pub(crate) fn from_parts(
        settings: AuthSettings,
        secret: &ServerSecret,
        previous: &[ServerSecret],
        stores: Stores,
        hasher: Arc<PasswordHasher>,
    ) -> Self {
        let idle = millis(settings.idle_timeout).max(1);
        let absolute = millis(settings.absolute_timeout).max(1);
        Self {
            inner: Arc::new(Inner {
                cache: SessionCache::start(stores.feeds.as_deref(), settings.feed_liveness),
                rate: crate::rate::RateLimit::new(settings.login_rate),
                signer: CookieSigner::with_previous(secret, previous),
                csrf: CsrfKeys::with_previous(secret, previous),
                devices: crate::device::DeviceKeys::new(secret, previous),
                first_in_line: std::sync::Mutex::default(),
                // Recording activity on every request would make every read a
                // write. Once per tenth of the idle timeout (at most a minute)
                // bounds the writes; a session may then end up to that much
                // before the full idle timeout, never after it.
                touch_every: (idle / 10).min(60_000),
                idle,
                absolute,
                settings,
                stores,
                hasher,
            }),
        }
    }

    /// The time now, by the configured clock.
    #[inline]
    fn now(&self) -> Millis {
        self.inner.settings.clock.now()
    }

    /// The settings.
    #[must_use]
    pub(crate) fn settings(&self) -> &AuthSettings {
        &self.inner.settings
    }

    /// The stores.
    #[must_use]
    pub fn stores(&self) -> &Stores {
        &self.inner.stores
    }

    /// The password hasher.
    #[must_use]
    pub fn hasher(&self) -> &Arc<PasswordHasher> {
        &self.inner.hasher
    }

    /// Adds every password hash scheme in the user store to those each
    /// login verifies (see [`PasswordHasher::verify`]), so that from the
    /// first request on no login takes longer or shorter for the scheme
    /// of the user's hash, or for a name that does not exist. A scheme met
    /// later (a hash written by another process) is added at its first
    /// login; one that no user has any more goes at the next start.
    /// [`crate::AuthBuilder::build`] calls this.
    ///
    /// # Errors
    /// When the store fails.
    pub(crate) async fn learn_hash_schemes(&self) -> Result<(), StoreError> {
        let mut one_of_each = std::collections::BTreeMap::new();
        self.inner
            .stores
            .users
            .each_password_hash(&mut |hash| {
                if let Some(scheme) = crate::password::HashScheme::of(hash) {
                    one_of_each.entry(scheme).or_insert_with(|| hash.to_owned());
                }
            })
            .await?;
        for (scheme, hash) in &one_of_each {
            // One scheme that cannot be added must not stop the server: its
            // users still sign in, and it is tried again at their login.
            if let Err(e) = self.inner.hasher.learn_scheme(hash).await {
                tracing::warn!(%scheme, error = %e, "cannot add a password hash scheme");
            }
        }
        Ok(())
    }

    /// The CSRF keys (for login forms shown to anonymous visitors).
    #[must_use]
    pub fn csrf_keys(&self) -> &CsrfKeys {
        &self.inner.csrf
    }

    /// The client's address: the peer, or what a trusted proxy reports.
    #[must_use]
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        crate::client_ip::client_ip(peer, headers, &self.inner.settings.trusted_proxies)
    }

    /// Whether the stores answer.
    ///
    /// # Errors
    /// The first store that does not.
    pub async fn health(&self) -> Result<(), StoreError> {
        self.inner.stores.users.ping().await?;
        self.inner.stores.sessions.ping().await
    }

    /// Forgets cached state made stale by a change made through this process.
    pub(crate) fn invalidate(&self, change: &Change) {
        self.inner.cache.invalidate(change);
    }

    /// The session cache (for tests and metrics).
    #[must_use]
    pub fn cache(&self) -> &SessionCache {
        &self.inner.cache
    }

    /// The synchronous part of recognising a session: cookie, signature
    /// and cache. Forged or malformed cookies are refused here, before any
    /// store access; sessions this instance has seen are answered from the
    /// cache while it can be trusted, unless the request needs `fresh` data
    /// (it may change state: the cache may lag a change made elsewhere by
    /// the time a change feed takes, and a state change must not).
    #[inline]
    pub(crate) fn quick(&self, headers: &HeaderMap, fresh: bool) -> Quick {
        let inner = &*self.inner;
        let name = inner.settings.cookies.session_name();
        let Some((token, signed)) =
            crate::session::cookie_values(headers, name).find_map(|v| inner.signer.verify_any(v))
        else {
            return Quick::Anonymous;
        };
        if signed == Signed::Previous {
            return Quick::Resign(token);
        }
        let key = token.key();
        if fresh {
            return Quick::Store(key);
        }
        if let Some(cached) = inner.cache.session(&key) {
            let now = self.now();
            if cached.alive(now, inner.idle, inner.absolute)
                && !cached.write_due(now, inner.touch_every)
            {
                cached.seen(now);
                return Quick::Active(cached.active.clone());
            }
        }
        Quick::Store(key)
    }

    /// The store part: loads (or refreshes) the session named by `key`;
    /// with `fresh`, from the stores alone.
    pub(crate) async fn resolve(
        &self,
        key: SessionKey,
        fresh: bool,
    ) -> Result<Resolution, StoreError> {
        let inner = &*self.inner;
        if fresh {
            return self.resolve_from_store(key, true).await;
        }
        if let Some(cached) = inner.cache.session(&key) {
            let now = self.now();
            if cached.alive(now, inner.idle, inner.absolute) {
                cached.seen(now);
                if cached.write_due(now, inner.touch_every) {
                    cached
                        .written
                        .store(now, std::sync::atomic::Ordering::Relaxed);
                    if !inner.stores.sessions.touch(&key, now).await? {
                        inner.cache.invalidate(&Change::Session(key));
                        return Ok(Resolution::Anonymous);
                    }
                }
                return Ok(Resolution::Active(cached.active.clone()));
            }
        }
        self.resolve_from_store(key, false).await
    }

    async fn resolve_from_store(
        &self,
        key: SessionKey,
        fresh: bool,
    ) -> Result<Resolution, StoreError> {
        let inner = &*self.inner;
        if !fresh {
            inner.cache.missed();
        }
        let seq = inner.cache.seq();
        let Some(record) = inner.stores.sessions.load(&key).await? else {
            // Ended elsewhere, and maybe still cached here (a fresh check
            // can learn of it before the change feed does).
            inner.cache.invalidate(&Change::Session(key));
            return Ok(Resolution::Anonymous);
        };
        let cached_user = inner.cache.user(record.user_id);
        let user = match cached_user.clone().filter(|_| !fresh) {
            Some(user) => Some(user),
            None => inner
                .stores
                .users
                .user_by_id(record.user_id)
                .await?
                .map(Arc::new),
        };
        if let Some(cached) = cached_user
            && user.as_deref() != Some(&*cached)
        {
            // Changed elsewhere: this instance's other sessions of the user
            // must not wait for the change feed either.
            inner.cache.invalidate(&Change::User(record.user_id));
        }
        let now = self.now();
        let ended = match &user {
            None => Some("user removed"),
            Some(u) if u.disabled => Some("user disabled"),
            Some(u) if u.credential_epoch != record.credential_epoch => Some("password changed"),
            Some(_) if now - record.created_at >= inner.absolute => Some("absolute timeout"),
            Some(_) if now - record.last_seen >= inner.idle => Some("idle timeout"),
            Some(_) => None,
        };
        let Some(user) = user.filter(|_| ended.is_none()) else {
            tracing::debug!(session = %key.short(), reason = ended, "session ended");
            inner.stores.sessions.delete(&key).await?;
            inner.cache.invalidate(&Change::Session(key));
            return Ok(Resolution::Anonymous);
        };
        if user.roles_epoch != record.roles_epoch {
            // A privilege change: the session continues under a new token.
            let token = SessionToken::generate();
            let new = SessionRecord {
                key: token.key(),
                roles_epoch: user.roles_epoch,
                last_seen: now,
                ..record
            };
            let rotated = inner.stores.sessions.rotate(&key, &new).await?;
            inner.cache.invalidate(&Change::Session(key));
            if !rotated {
                return Ok(Resolution::Anonymous);
            }
            tracing::info!(target: AUDIT_TARGET, event = "session_rotated", username = %crate::username::InLog(&user.username),
                reason = "roles changed", session = %new.key.short());
            let cookie = self.session_cookie(&token);
            return Ok(Resolution::Rotated(self.active(&new, &user), cookie, key));
        }
        let mut written = record.last_seen;
        if now - record.last_seen >= inner.touch_every {
            if !inner.stores.sessions.touch(&key, now).await? {
                // Deleted between load and touch (a logout or revocation won).
                return Ok(Resolution::Anonymous);
            }
            written = now;
        }
        let active = self.active(&record, &user);
        inner.cache.insert(
            seq,
            CachedSession {
                active: active.clone(),
                created_at: record.created_at,
                last_seen: now.into(),
                written: written.into(),
            },
            user,
        );
        Ok(Resolution::Active(active))
    }

    fn active(&self, record: &SessionRecord, user: &UserRecord) -> Arc<ActiveSession> {
        Arc::new(ActiveSession {
            user_id: user.id,
            username: user.username.clone(),
            roles: user.roles.clone(),
            display_name: user.display_name.clone(),
            email: user.email.clone(),
            forward_headers: std::sync::OnceLock::new(),
            csrf_token: self.inner.csrf.session_token(&record.key),
            created_at: record.created_at,
            signed_in_at: crate::clock::rfc3339(record.created_at),
            key: record.key,
        })
    }

    pub(crate) fn session_cookie(&self, token: &SessionToken) -> HeaderValue {
        let cookies = &self.inner.settings.cookies;
        cookies.set(cookies.session_name(), &self.inner.signer.sign(token))
    }

    /// Counts a sign-in or setup request from `client` against its
    /// per-minute share; [`Auth::login`] does this itself.
    ///
    /// # Errors
    /// [`LoginError::RateLimited`] when the share is used up.
    pub fn admit(&self, client: IpAddr) -> Result<(), LoginError> {
        // No address (an app served without it): no share to count it against.
        if client.is_unspecified() {
            return Ok(());
        }
        let now = self.now();
        self.inner
            .rate
            .admit(crate::client_ip::throttle_key(client), now)
            .map_err(|until| LoginError::RateLimited {
                retry_after: wait(now, until),
            })
    }

    /// Signs a user in. Any session the request already had is destroyed and
    /// a new token issued (no session fixation). Unknown names cost what
    /// known ones cost (one verification per hash scheme in use, see
    /// [`PasswordHasher::verify`]) and fail the same way. `headers` are the
    /// request's: a device cookie in them (OWASP's device cookies) makes
    /// failures count against that device instead of against every
    /// untrusted client of the account and the client's address.
    ///
    /// The attempt runs to its end even if the caller stops waiting (the
    /// client went away), so that every counted attempt is settled.
    ///
    /// # Errors
    /// See [`LoginError`]; every failure is audited.
    #[tracing::instrument(skip_all)]
    pub async fn login(
        &self,
        current: &Session,
        username: &str,
        password: &Password,
        client: IpAddr,
        headers: &HeaderMap,
    ) -> Result<LoggedIn, LoginError> {
        let audit = |outcome: &str| {
            tracing::info!(target: AUDIT_TARGET, event = "login", outcome, username = %crate::username::InLog(username),
                client_ip = %client);
        };
        // The request share first: past it, nothing is done, not even a
        // log line per request (a flood must not fill the disk either).
        if let Err(e) = self.admit(client) {
            tokio::time::sleep(self.inner.settings.refusal_delay).await;
            return Err(e);
        }
        if username.len() > MAX_USERNAME_BYTES {
            audit("invalid_input");
            return Err(LoginError::InvalidInput("the username is too long"));
        }
        if password.expose().len() > MAX_PASSWORD_BYTES {
            audit("invalid_input");
            return Err(LoginError::InvalidInput("the password is too long"));
        }
        let cookies = &self.inner.settings.cookies;
        // Checked once the user is known (a cookie is bound to the user).
        let device_cookies = crate::session::cookie_values(headers, cookies.device_name())
            .take(4)
            .map(str::to_owned)
            .collect();
        let attempt = LoginAttempt {
            auth: self.clone(),
            username: username.to_owned(),
            password: password.clone(),
            client,
            old_session: current.active().map(|a| a.key),
            device_cookies,
            counters: Vec::new(),
            known_device: false,
        };
        let span = tracing::Span::current();
        tokio::spawn(tracing::Instrument::instrument(attempt.run(), span))
            .await
            .unwrap_or_else(|e| Err(LoginError::Hash(HashError::Failed(e.to_string()))))
    }

    /// Ends the request's session on the server and returns the headers that
    /// remove it from the browser.
    ///
    /// # Errors
    /// When the store fails (the session may then still exist).
    pub async fn logout(&self, session: &Session, client: IpAddr) -> Result<LoggedOut, StoreError> {
        if let Some(active) = session.active() {
            self.inner.stores.sessions.delete(&active.key).await?;
            self.inner.cache.invalidate(&Change::Session(active.key));
            tracing::info!(target: AUDIT_TARGET, event = "logout", outcome = "success",
                username = %crate::username::InLog(&active.username), client_ip = %client, session = %active.key.short());
        }
        let cookies = &self.inner.settings.cookies;
        Ok(LoggedOut {
            clear: cookies.clear(cookies.session_name()),
        })
    }

    /// Checks a state-changing request made with a session cookie: it must
    /// come from this site and carry the session's CSRF token, in the
    /// `X-CSRF-Token` header or the `csrf_token` form field. A refusal is
    /// not logged here; the caller knows the route (see [`CsrfRefusal`]).
    ///
    /// # Errors
    /// [`AppError::Csrf`] with the reason when either check fails or there
    /// is no session.
    pub fn check_csrf(
        &self,
        session: &Session,
        headers: &HeaderMap,
        form_token: Option<&str>,
    ) -> Result<(), AppError> {
        self.csrf_refusal(session, headers, form_token, false)
            .map_or(Ok(()), |r| Err(AppError::Csrf(r)))
    }

    /// [`Auth::check_csrf`] for signing out, which also accepts the token
    /// of the session's previous key when this very request rotated it (a
    /// role change): a "Sign out" button on a page shown before the change
    /// still signs out. Nothing else gets that allowance, since it would act
    /// under the new roles with a token issued for the old ones.
    ///
    /// # Errors
    /// As [`Auth::check_csrf`].
    pub fn check_logout_csrf(
        &self,
        session: &Session,
        headers: &HeaderMap,
        form_token: Option<&str>,
    ) -> Result<(), AppError> {
        self.csrf_refusal(session, headers, form_token, true)
            .map_or(Ok(()), |r| Err(AppError::Csrf(r)))
    }

    fn csrf_refusal(
        &self,
        session: &Session,
        headers: &HeaderMap,
        form_token: Option<&str>,
        accept_rotated: bool,
    ) -> Option<CsrfRefusal> {
        if let Err(r) = csrf::check_origin(headers, &self.inner.settings.origins) {
            return Some(r);
        }
        let provided = headers
            .get(csrf::HEADER)
            .and_then(|v| v.to_str().ok())
            .or(form_token)
            .filter(|t| !t.is_empty());
        let Some(token) = provided else {
            return Some(CsrfRefusal::TokenMissing);
        };
        let Some(active) = session.active() else {
            return Some(CsrfRefusal::TokenMismatch);
        };
        let matches = csrf::tokens_match(&active.csrf_token, token)
            || self
                .inner
                .csrf
                .matches_previous_session_token(&active.key, token)
            || accept_rotated
                && session.rotated_from().is_some_and(|old| {
                    csrf::tokens_match(&self.inner.csrf.session_token(old), token)
                });
        (!matches).then_some(CsrfRefusal::TokenMismatch)
    }

    /// Checks the login form's CSRF token against its cookie, and the origin.
    ///
    /// # Errors
    /// [`AppError::Csrf`] with the reason when either check fails.
    pub fn check_login_csrf(
        &self,
        headers: &HeaderMap,
        form_token: Option<&str>,
    ) -> Result<(), AppError> {
        csrf::check_origin(headers, &self.inner.settings.origins).map_err(AppError::Csrf)?;
        let name = self.inner.settings.cookies.csrf_name();
        let form = form_token
            .filter(|t| !t.is_empty())
            .ok_or(AppError::Csrf(CsrfRefusal::TokenMissing))?;
        if crate::session::cookie_values(headers, name)
            .any(|c| self.inner.csrf.verify_login_token(c, form))
        {
            Ok(())
        } else {
            Err(AppError::Csrf(CsrfRefusal::TokenMismatch))
        }
    }

    /// The login form's CSRF token for a visitor: the one in their cookie if
    /// valid, else a new one with the `Set-Cookie` that stores it.
    #[must_use]
    pub fn login_csrf(&self, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
        let cookies = &self.inner.settings.cookies;
        let keys = &self.inner.csrf;
        if let Some(existing) = crate::session::cookie_values(headers, cookies.csrf_name())
            .find_map(|c| keys.login_form_value(c))
        {
            return (existing.to_owned(), None);
        }
        let (cookie, form) = keys.issue_login_token();
        (form, Some(cookies.set(cookies.csrf_name(), &cookie)))
    }

    /// Deletes expired sessions and stale failure counters; returns how many sessions went.
    ///
    /// # Errors
    /// When the store fails.
    pub async fn delete_expired(&self) -> Result<u64, StoreError> {
        let inner = &*self.inner;
        let now = self.now();
        // In memory, so whatever the store does.
        inner.rate.prune(now);
        let n = inner
            .stores
            .sessions
            .delete_expired(now - inner.idle, now - inner.absolute)
            .await?;
        let window = inner
            .settings
            .account_failures
            .window
            .max(inner.settings.ip_failures.window);
        inner.stores.failures.delete_stale(now, window).await?;
        Ok(n)
    }

    /// Runs [`Auth::delete_expired`] in the background, every tenth of the
    /// idle timeout (between 1 s and 1 min).
    pub fn spawn_cleanup(&self) -> tokio::task::JoinHandle<()> {
        let auth = self.clone();
        let every = Duration::from_millis(
            u64::try_from((self.inner.idle / 10).clamp(1_000, 60_000)).unwrap_or(60_000),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                match auth.delete_expired().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(sessions = n, "expired sessions deleted"),
                    Err(e) => {
                        tracing::warn!(error = %crate::error::chain(&e), "session cleanup failed")
                    }
                }
            }
        })
    }
}
