//! The storage boundary: one small trait per kind of record, one error type.
//!
//! latchkey keeps three kinds of records: users ([`UserStore`]), sessions
//! ([`SessionStore`]) and failed-login counters ([`FailureStore`]). Each store
//! implementation lives in its own module; nothing above this module knows
//! which one is in use. Every implementation must pass the shared conformance
//! suite in `tests/store_conformance.rs`.
//!
//! Times are milliseconds since the Unix epoch ([`Millis`]); session keys are
//! SHA-256 hashes of the session token, never the token itself.

mod app;
pub mod feed;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use feed::ChangeFeed;

pub(crate) use app::AppUserStore;
pub use app::{AppUser, AppUsers, AppUsersError};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

pub use crate::clock::{Millis, now_millis};

/// Result of a store operation.
pub type StoreResult<T> = Result<T, StoreError>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The record would break a uniqueness rule (a username or session key that already exists).
    #[error("record already exists")]
    Conflict,
    /// The backing server or file could not be reached or answered with an error.
    #[error("store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The store holds data this version cannot read.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

impl StoreError {
    /// Wraps any backend error as [`StoreError::Unavailable`].
    pub fn unavailable(err: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(err))
    }
}

/// A user's database id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub i64);

/// A user as stored.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Database id.
    pub id: UserId,
    /// The name as the user chose it (Unicode NFC), for display.
    pub username: String,
    /// The normalised, case-folded name that must be unique.
    pub username_key: String,
    /// A PHC string (argon2id normally) or a bcrypt hash.
    pub password_hash: String,
    /// Role names, sorted and without duplicates.
    pub roles: Vec<String>,
    /// What the user is called (see [`crate::Profile`]), if set.
    pub display_name: Option<String>,
    /// Their e-mail address, if set.
    pub email: Option<String>,
    /// A disabled user cannot sign in and has no valid sessions.
    pub disabled: bool,
    /// Bumped whenever the password changes or the user is disabled: sessions
    /// carrying an older value are dead.
    pub credential_epoch: i64,
    /// Bumped whenever the roles change: sessions carrying an older value get a
    /// new token (privilege change) at their next request.
    pub roles_epoch: i64,
    /// When the user was created.
    pub created_at: Millis,
    /// When the user was last changed.
    pub updated_at: Millis,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("password_hash", &"[redacted]")
            .field("roles", &self.roles)
            .field("disabled", &self.disabled)
            .field("credential_epoch", &self.credential_epoch)
            .field("roles_epoch", &self.roles_epoch)
            .finish_non_exhaustive()
    }
}

/// What [`UserStore::create_user`] needs.
#[derive(Clone)]
pub struct NewUser {
    /// Display name (NFC).
    pub username: String,
    /// Normalised unique key.
    pub username_key: String,
    /// Password hash.
    pub password_hash: String,
    /// Roles, sorted and deduplicated.
    pub roles: Vec<String>,
    /// Display name (checked by [`crate::Profile`]), if any.
    pub display_name: Option<String>,
    /// E-mail address (checked by [`crate::Profile`]), if any.
    pub email: Option<String>,
}

/// The SHA-256 hash of a session token: the only form in which a store sees it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionKey(pub [u8; 32]);

impl SessionKey {
    /// Lower-case hex, used by stores that key by string.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A short, non-secret label for logs and listings (the first 8 hex digits of the hash).
    #[must_use]
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SessionKey({}…)", self.short())
    }
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Hash of the token.
    pub key: SessionKey,
    /// Whose session it is.
    pub user_id: UserId,
    /// The user's `credential_epoch` when the session was made.
    pub credential_epoch: i64,
    /// The user's `roles_epoch` when the session was made or last rotated.
    pub roles_epoch: i64,
    /// When the user signed in; the absolute timeout counts from here and survives rotation.
    pub created_at: Millis,
    /// Last recorded activity; written at most once per touch interval.
    pub last_seen: Millis,
}

/// Users.
#[async_trait]
pub trait UserStore: Send + Sync + 'static {
    /// Inserts a user. Fails with [`StoreError::Conflict`] when the key is taken.
    async fn create_user(&self, user: NewUser) -> StoreResult<UserRecord>;
    /// Looks a user up by normalised key.
    async fn user_by_key(&self, username_key: &str) -> StoreResult<Option<UserRecord>>;
    /// Looks a user up by id.
    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<UserRecord>>;
    /// All users, ordered by key.
    async fn list_users(&self) -> StoreResult<Vec<UserRecord>>;
    /// How many users exist.
    async fn count_users(&self) -> StoreResult<u64>;
    /// Calls `each` with every stored password hash, in no particular
    /// order, one row at a time (never all users in memory at once). This
    /// is how a server learns at start-up which hash schemes are in use,
    /// so that every login costs the same whichever scheme a user's hash
    /// has (see [`crate::password::PasswordHasher::learn_scheme`]).
    async fn each_password_hash(
        &self,
        each: &mut (dyn for<'h> FnMut(&'h str) + Send),
    ) -> StoreResult<()>;
    /// Replaces the password hash. With `end_sessions` the credential epoch is
    /// bumped (a real password change); without, it is kept (a rehash of the
    /// same password to new parameters). Returns false if the user is gone.
    async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        end_sessions: bool,
    ) -> StoreResult<bool>;
    /// Replaces the roles and bumps the roles epoch. Returns false if the user is gone.
    async fn set_roles(&self, id: UserId, roles: &[String]) -> StoreResult<bool>;
    /// Replaces the display name and e-mail address (`None` clears one);
    /// sessions see them at their next request. Returns false if the user is gone.
    async fn set_profile(
        &self,
        id: UserId,
        display_name: Option<&str>,
        email: Option<&str>,
    ) -> StoreResult<bool>;
    /// Disables or enables; disabling bumps the credential epoch. Returns false if the user is gone.
    async fn set_disabled(&self, id: UserId, disabled: bool) -> StoreResult<bool>;
    /// Deletes a user. Returns false if there was none.
    async fn remove_user(&self, id: UserId) -> StoreResult<bool>;
    /// Cheap liveness check.
    async fn ping(&self) -> StoreResult<()>;
}

/// Sessions. No method may bring back a session that was deleted: only
/// [`SessionStore::create`] and [`SessionStore::rotate`] insert, and `rotate`
/// inserts only while the old session still exists.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Inserts a new session. Fails with [`StoreError::Conflict`] if the key exists.
    async fn create(&self, session: &SessionRecord) -> StoreResult<()>;
    /// Loads a session by key.
    async fn load(&self, key: &SessionKey) -> StoreResult<Option<SessionRecord>>;
    /// Records activity on an existing session; never creates one. Returns
    /// false if the session no longer exists.
    async fn touch(&self, key: &SessionKey, last_seen: Millis) -> StoreResult<bool>;
    /// Atomically replaces `old` by `new` if `old` still exists. Returns false,
    /// and inserts nothing, if `old` is gone.
    async fn rotate(&self, old: &SessionKey, new: &SessionRecord) -> StoreResult<bool>;
    /// Deletes one session. Returns false if there was none.
    async fn delete(&self, key: &SessionKey) -> StoreResult<bool>;
    /// Deletes every session of a user; returns how many.
    async fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64>;
    /// Lists sessions, of one user or of all, oldest first.
    async fn list(&self, user: Option<UserId>) -> StoreResult<Vec<SessionRecord>>;
    /// Deletes sessions idle since before `idle_before` or created before
    /// `created_before`; returns how many.
    async fn delete_expired(&self, idle_before: Millis, created_before: Millis)
    -> StoreResult<u64>;
    /// Cheap liveness check.
    async fn ping(&self) -> StoreResult<()>;
}

/// How failures turn into a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    /// Failures within `window` that lock the key.
    pub max_failures: u32,
    /// How far back failures count, in milliseconds.
    pub window: Millis,
    /// How long a lock lasts, in milliseconds.
    pub lockout: Millis,
}

/// What [`FailureStore::begin_attempt`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Counted: check the password, then settle the attempt with
    /// [`FailureStore::fail`] or [`FailureStore::forgive`].
    Allowed,
    /// Not counted: as many attempts as the limit allows are already
    /// counted and not all of them have failed (some are still being
    /// checked). Ask again shortly; an attempt in flight is not a failure.
    Busy,
    /// Locked until then: refuse without checking.
    Locked(Millis),
}

/// Login-attempt counters, keyed by an opaque string (an account, a client
/// address or a device). Attempts are counted *before* their password is
/// checked, so that parallel attempts cannot all slip past a check made
/// before any of them was counted; each counted attempt is then settled:
/// a failure may lock the key ([`FailureStore::fail`]), a success is taken
/// back ([`FailureStore::forgive`], [`FailureStore::clear`]). Only failures
/// lock: attempts still in flight make others wait ([`Attempt::Busy`]),
/// never fail. An attempt that is never settled (its process died) holds
/// its place until the window passes.
#[async_trait]
pub trait FailureStore: Send + Sync + 'static {
    /// Until when the key is locked, if it is locked at `now`.
    async fn locked_until(&self, key: &str, now: Millis) -> StoreResult<Option<Millis>>;
    /// Counts one attempt at `now`, unless the key is locked or
    /// `max_failures` attempts are already counted in the window. Attempts
    /// older than the window, and an expired lock, are forgotten first.
    async fn begin_attempt(
        &self,
        key: &str,
        now: Millis,
        policy: FailurePolicy,
    ) -> StoreResult<Attempt>;
    /// Settles a counted attempt as a failure: once the counted attempts
    /// reach `max_failures`, the key is locked for `lockout` from `now`.
    /// Returns the lock's end if the key is (now) locked.
    async fn fail(
        &self,
        key: &str,
        now: Millis,
        policy: FailurePolicy,
    ) -> StoreResult<Option<Millis>>;
    /// Takes back one counted attempt that turned out to be a success (or
    /// was never checked), and unlocks the key if it falls below the limit.
    async fn forgive(&self, key: &str, policy: FailurePolicy) -> StoreResult<()>;
    /// Forgets all attempts of the key (an account after a successful login).
    async fn clear(&self, key: &str) -> StoreResult<()>;
    /// Forgets every key that starts with `prefix` (all counters of an
    /// account, its devices' included). For administration: it may scan.
    async fn clear_prefix(&self, prefix: &str) -> StoreResult<u64>;
    /// Deletes counters whose window and lock have both passed.
    async fn delete_stale(&self, now: Millis, window: Millis) -> StoreResult<u64>;
}

/// The three stores a latchkey instance uses.
#[derive(Clone)]
pub struct Stores {
    /// Users.
    pub users: Arc<dyn UserStore>,
    /// Sessions.
    pub sessions: Arc<dyn SessionStore>,
    /// Failed-login counters.
    pub failures: Arc<dyn FailureStore>,
    /// How this instance learns of changes made by other processes, which
    /// is what makes its session cache safe. `None`: it cannot, and does not
    /// cache. `Some(empty)`: no other process can write (memory store).
    pub feeds: Option<Vec<Arc<dyn ChangeFeed>>>,
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Stores")
    }
}

impl Stores {
    /// All three stores backed by one object, without a change feed (so
    /// without caching).
    pub fn single<S>(store: S) -> Self
    where
        S: UserStore + SessionStore + FailureStore,
    {
        let store = Arc::new(store);
        Self {
            users: store.clone(),
            sessions: store.clone(),
            failures: store,
            feeds: None,
        }
    }

    /// A memory store: nothing outside this process can change it, so
    /// sessions are cached with no feed.
    #[must_use]
    pub fn memory() -> Self {
        Self {
            feeds: Some(Vec::new()),
            ..Self::single(MemoryStore::default())
        }
    }

    /// The same stores without change feeds (for short-lived administrative
    /// commands, which never look sessions up).
    #[must_use]
    pub fn without_feeds(self) -> Self {
        Self {
            feeds: None,
            ..self
        }
    }

    /// Opens (creating and migrating as needed) the stores named by a database URL:
    /// `sqlite://PATH`, `postgres://…` or `memory:`.
    ///
    /// # Errors
    /// When the URL is not understood or the database cannot be opened or migrated.
    pub async fn open(database_url: &str) -> Result<Self, OpenError> {
        if database_url == "memory:" || database_url == "memory://" {
            return Ok(Self::memory());
        }
        if database_url.starts_with("sqlite:") {
            #[cfg(feature = "sqlite")]
            {
                let store = SqliteStore::open(database_url).await?;
                let feed = store.change_feed();
                return Ok(Self {
                    feeds: feed.map(|f| vec![f]),
                    ..Self::single(store)
                });
            }
            #[cfg(not(feature = "sqlite"))]
            return Err(OpenError::Unsupported(
                "this build has no SQLite support (feature `sqlite`)".into(),
            ));
        }
        if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                let store = PostgresStore::open(database_url).await?;
                return Ok(Self {
                    feeds: Some(vec![Arc::new(postgres::ListenFeed::new(
                        database_url,
                        &store,
                    ))]),
                    ..Self::single(store)
                });
            }
            #[cfg(not(feature = "postgres"))]
            return Err(OpenError::Unsupported(
                "this build has no PostgreSQL support (feature `postgres`)".into(),
            ));
        }
        Err(OpenError::Unsupported(format!(
            "unknown database URL scheme (expected sqlite://, postgres:// or memory:): {}",
            redact_url(database_url)
        )))
    }
}

/// Where the stores live, for [`Stores::open_with`].
#[derive(Debug, Clone)]
pub struct StoreOptions<'a> {
    /// Users (and, without `session_store_url`, sessions and counters).
    pub database_url: &'a str,
    /// A Redis URL for sessions and failure counters.
    pub session_store_url: Option<&'a str>,
    /// Namespace of every Redis key.
    pub key_prefix: &'a str,
    /// For Redis expiry.
    pub idle_timeout: std::time::Duration,
    /// For Redis expiry.
    pub absolute_timeout: std::time::Duration,
}

impl Stores {
    /// Opens the database and, if given, the Redis session store.
    ///
    /// # Errors
    /// When a store cannot be reached, opened or migrated.
    pub async fn open_with(options: &StoreOptions<'_>) -> Result<Self, OpenError> {
        let stores = Self::open(options.database_url).await?;
        let Some(url) = options.session_store_url else {
            return Ok(stores);
        };
        #[cfg(feature = "redis")]
        {
            let store = RedisStore::open(
                url,
                options.key_prefix,
                options.idle_timeout,
                options.absolute_timeout,
            )
            .await
            .map_err(|e| {
                OpenError::Redis(format!("{}: {}", redact_url(url), redis::describe(&e)))
            })?;
            let feed = store.change_feed();
            let store = Arc::new(store);
            Ok(Self {
                sessions: store.clone(),
                failures: store,
                feeds: stores.feeds.map(|mut feeds| {
                    feeds.push(feed);
                    feeds
                }),
                users: stores.users,
            })
        }
        #[cfg(not(feature = "redis"))]
        {
            let _ = (url, stores);
            Err(OpenError::Unsupported(
                "this build has no Redis support (feature `redis`)".into(),
            ))
        }
    }
}

/// Why [`Stores::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL names a backend this build does not have.
    #[error("{0}")]
    Unsupported(String),
    /// The database could not be reached or opened.
    #[error("cannot open the database")]
    Connect(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Migrations failed.
    #[error("cannot migrate the database")]
    Migrate(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The Redis session store could not be reached.
    #[error("cannot open the Redis session store: {0}")]
    Redis(String),
}

/// The file path in a `sqlite://` URL, if it names a file.
#[must_use]
pub fn sqlite_path(database_url: &str) -> Option<std::path::PathBuf> {
    let rest = database_url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or("");
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

impl OpenError {
    /// [`OpenError::Connect`] of a backend's error, whose type stays private.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn connect(e: sqlx::Error) -> Self {
        Self::Connect(Box::new(e))
    }

    /// [`OpenError::Migrate`] of a backend's error, whose type stays private.
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    pub(crate) fn migrate(e: sqlx::migrate::MigrateError) -> Self {
        Self::Migrate(Box::new(e))
    }
}

/// A URL with any password replaced, for messages.
#[must_use]
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("redacted"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// An attempt counter: (attempts in the window, window start, lock end).
pub(crate) type FailureRow = (i64, Millis, Option<Millis>);

/// The counter update of [`FailureStore::begin_attempt`], for stores that
/// compute it in Rust: the new row and the decision.
pub(crate) fn next_attempt_state(
    current: Option<FailureRow>,
    now: Millis,
    policy: FailurePolicy,
) -> (FailureRow, Attempt) {
    let max = i64::from(policy.max_failures);
    match current {
        Some((count, start, Some(until))) if until > now => {
            ((count, start, Some(until)), Attempt::Locked(until))
        }
        // A lock that has run out starts a fresh window (the `_` arm).
        Some((count, start, None)) if now - start < policy.window => {
            if count >= max {
                ((count, start, None), Attempt::Busy)
            } else {
                ((count + 1, start, None), Attempt::Allowed)
            }
        }
        _ => ((1, now, None), Attempt::Allowed),
    }
}

/// The counter update of [`FailureStore::fail`].
pub(crate) fn failed_state(row: FailureRow, now: Millis, policy: FailurePolicy) -> FailureRow {
    let (count, start, until) = row;
    let until = match until {
        Some(until) if until > now => Some(until),
        _ => (count >= i64::from(policy.max_failures)).then_some(now + policy.lockout),
    };
    (count, start, until)
}

/// The counter update of [`FailureStore::forgive`].
pub(crate) fn forgiven_state(row: FailureRow, policy: FailurePolicy) -> FailureRow {
    let (count, start, until) = row;
    let count = (count - 1).max(0);
    (
        count,
        start,
        until.filter(|_| count >= i64::from(policy.max_failures)),
    )
}
