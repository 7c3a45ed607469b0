//! The in-process session cache: a request whose session this instance has
//! seen recently is answered without a store round trip, for as long as every
//! source of changes from other processes is connected and has not reported
//! a change to that session or its user.
//!
//! Changes made through this process ([`crate::Auth`], [`crate::users::Accounts`])
//! invalidate synchronously; changes from elsewhere (the CLI, other instances)
//! arrive through [`ChangeFeed`]s: a file watcher for SQLite, `LISTEN/NOTIFY`
//! for PostgreSQL, pub/sub for Redis. While any feed is disconnected the cache
//! is bypassed, so a missed message can never keep a revoked session alive.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::session::ActiveSession;
use crate::store::feed::ChangeSink;
use crate::store::{Millis, SessionKey, UserId, UserRecord};

pub use crate::store::feed::{Change, ChangeFeed, FeedSink};

impl ChangeSink for SessionCache {
    fn changed(&self, change: &Change) {
        self.invalidate(change);
    }

    /// Turning unhealthy empties the cache; turning healthy again also does,
    /// since changes may have been missed.
    fn set_feed_health(&self, feed: usize, source: &'static str, healthy: bool) {
        let was = self.feed_health[feed].swap(healthy, Ordering::SeqCst);
        if was != healthy {
            if healthy {
                self.unhealthy_feeds.fetch_sub(1, Ordering::SeqCst);
            } else {
                self.unhealthy_feeds.fetch_add(1, Ordering::SeqCst);
            }
            self.invalidate(&Change::Everything);
            if healthy {
                tracing::info!("session cache: live updates from {source}");
            } else {
                tracing::warn!(
                    "session cache off: no live updates from {source}; every request asks the \
                     store until they return"
                );
            }
        }
    }
}

/// Hashes a [`SessionKey`] by its first eight bytes: the key is already a
/// SHA-256 output of a server-chosen token, so it is uniform and nobody can
/// aim collisions at it; SipHash would only cost time on every request.
#[derive(Default, Clone, Copy)]
pub(crate) struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8).take(1) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 ^= u64::from_le_bytes(word);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 ^= n as u64;
    }
}

type KeyMap<V> = DashMap<SessionKey, V, std::hash::BuildHasherDefault<KeyHasher>>;

/// One cached session.
#[derive(Debug)]
pub(crate) struct CachedSession {
    pub(crate) active: Arc<ActiveSession>,
    pub(crate) created_at: Millis,
    /// Latest activity this instance has seen.
    pub(crate) last_seen: AtomicI64,
    /// Latest activity written to the store.
    pub(crate) written: AtomicI64,
}

impl CachedSession {
    /// Whether the session is within both timeouts as far as this instance
    /// has seen. Only "still valid" is ever decided from the cache; anything
    /// that may have ended is decided on fresh data from the store.
    #[inline]
    pub(crate) fn alive(&self, now: Millis, idle: Millis, absolute: Millis) -> bool {
        now - self.created_at < absolute && now - self.last_seen.load(Ordering::Relaxed) < idle
    }

    /// Records activity, to the second: a write per request to one shared
    /// cache line would make every core wait for the others.
    #[inline]
    pub(crate) fn seen(&self, now: Millis) {
        if now - self.last_seen.load(Ordering::Relaxed) >= 1_000 {
            self.last_seen.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// Whether activity is due to be written to the store.
    #[inline]
    pub(crate) fn write_due(&self, now: Millis, every: Millis) -> bool {
        now - self.written.load(Ordering::Relaxed) >= every
    }
}

/// Most sessions kept; past this the cache starts over (a crude bound that
/// keeps memory flat under floods of distinct sessions).
const MAX_ENTRIES: usize = 200_000;

/// This instance's copy of recently used sessions and their users, so that
/// a request with a known session costs no store round trip. It is emptied
/// or corrected by the stores' change feeds (a sign-out, revocation or
/// account change anywhere holds here at the next request), and bypassed
/// whenever a feed has been silent longer than its timeout. Requests that
/// may change state are always decided on the stores. [`crate::Auth::cache`]
/// exposes it for tests and metrics (its length); nothing needs to call it.
pub struct SessionCache {
    sessions: KeyMap<Arc<CachedSession>>,
    users: DashMap<UserId, Arc<UserRecord>>,
    /// Bumped by every invalidation; a lookup that raced one does not cache its result.
    seq: AtomicU64,
    enabled: bool,
    feed_health: Vec<AtomicBool>,
    unhealthy_feeds: AtomicUsize,
    /// Session look-ups that the cache could not answer. Counted on the miss
    /// path only, so the hit path writes no shared cache line.
    misses: AtomicU64,
}

impl std::fmt::Debug for SessionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCache")
            .field("sessions", &self.sessions.len())
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

impl SessionCache {
    /// A cache fed by `feeds`; `None` disables caching (no way to learn of
    /// changes from other processes). Feeds start unhealthy until they are
    /// connected and their first heartbeat has come back; a feed whose
    /// heartbeats stop for `liveness` is distrusted until they return.
    pub(crate) fn start(
        feeds: Option<&[Arc<dyn ChangeFeed>]>,
        liveness: std::time::Duration,
    ) -> Arc<Self> {
        let n = feeds.map_or(0, <[_]>::len);
        let cache = Arc::new(Self {
            sessions: KeyMap::default(),
            users: DashMap::new(),
            seq: AtomicU64::new(0),
            enabled: feeds.is_some(),
            feed_health: (0..n).map(|_| AtomicBool::new(false)).collect(),
            unhealthy_feeds: AtomicUsize::new(n),
            misses: AtomicU64::new(0),
        });
        for (index, feed) in feeds.unwrap_or_default().iter().enumerate() {
            let sink: Arc<dyn ChangeSink> = cache.clone();
            FeedSink::new(sink, index, feed.source(), liveness).start(feed.clone());
        }
        cache
    }

    /// Whether cached entries may be trusted right now.
    #[inline]
    pub(crate) fn usable(&self) -> bool {
        self.enabled && self.unhealthy_feeds.load(Ordering::SeqCst) == 0
    }

    /// The invalidation sequence number, read before a store lookup.
    #[inline]
    pub(crate) fn seq(&self) -> u64 {
        self.seq.load(Ordering::SeqCst)
    }

    #[inline]
    pub(crate) fn session(&self, key: &SessionKey) -> Option<Arc<CachedSession>> {
        if !self.usable() {
            return None;
        }
        self.sessions.get(key).map(|e| e.value().clone())
    }

    pub(crate) fn user(&self, id: UserId) -> Option<Arc<UserRecord>> {
        if !self.usable() {
            return None;
        }
        self.users.get(&id).map(|e| e.value().clone())
    }

    /// Caches a lookup made when the sequence number was `seq`, unless an
    /// invalidation has happened since.
    pub(crate) fn insert(&self, seq: u64, entry: CachedSession, user: Arc<UserRecord>) {
        if !self.usable() {
            return;
        }
        if self.sessions.len() >= MAX_ENTRIES {
            self.sessions.clear();
        }
        let key = entry.active.key;
        let user_id = user.id;
        self.sessions.insert(key, Arc::new(entry));
        self.users.insert(user_id, user);
        if self.seq() != seq {
            self.sessions.remove(&key);
            self.users.remove(&user_id);
        }
    }

    /// Forgets what a change makes stale.
    pub(crate) fn invalidate(&self, change: &Change) {
        self.seq.fetch_add(1, Ordering::SeqCst);
        match change {
            Change::Session(key) => {
                self.sessions.remove(key);
            }
            Change::User(id) => {
                self.users.remove(id);
                self.sessions.retain(|_, s| s.active.user_id != *id);
            }
            Change::Everything => {
                self.sessions.clear();
                self.users.clear();
            }
        }
        // Again after the removal: a lookup that read the sequence between the
        // first bump and the removal could otherwise have used the entry just
        // removed and still insert what it built from it.
        self.seq.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts a session look-up that went to the store although it could
    /// have been answered from the cache.
    pub(crate) fn missed(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// How many session look-ups went to the store since start (requests
    /// that must decide on fresh data are not counted): a measure of how
    /// well the cache serves, logged at shutdown.
    #[must_use]
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// How many sessions are cached.
    #[must_use]
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is cached.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }
}
