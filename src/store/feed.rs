//! How a store tells the rest of latchkey about changes made by other
//! processes (the CLI, other instances): a store's [`ChangeFeed`] delivers
//! [`Change`]s to a [`FeedSink`], behind which sits whatever keeps state
//! derived from the stores (the session cache, a [`ChangeSink`]). The store
//! layer defines this contract and knows nothing of who listens.

use std::sync::Arc;

use super::{SessionKey, UserId};

/// A change reported by another process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// One session was deleted or replaced.
    Session(SessionKey),
    /// A user's password, roles or status changed, or the user was removed.
    User(UserId),
    /// Anything may have changed (a feed reconnected, or cannot say what changed).
    Everything,
}

impl Change {
    /// Reads the message format the stores publish: `s<hex key>` for a
    /// session, `u<id>` for a user; anything else means "everything".
    #[must_use]
    pub fn parse(payload: &str) -> Self {
        if let Some(hex_key) = payload.strip_prefix('s') {
            let mut key = [0u8; 32];
            if hex::decode_to_slice(hex_key, &mut key).is_ok() {
                return Self::Session(SessionKey(key));
            }
        }
        if let Some(id) = payload.strip_prefix('u').and_then(|id| id.parse().ok()) {
            return Self::User(UserId(id));
        }
        Self::Everything
    }
}

/// A source of changes made by other processes.
pub trait ChangeFeed: Send + Sync + 'static {
    /// Starts delivering changes to `sink` (normally by spawning a task).
    /// The feed must report itself unhealthy whenever it may be missing
    /// changes, and send [`Change::Everything`] when it recovers.
    fn start(self: Arc<Self>, sink: FeedSink);

    /// Where the changes come from, for people reading the log
    /// ("the database file", "PostgreSQL").
    fn source(&self) -> &'static str;
}

/// What listens to the feeds: implemented by the session cache.
pub trait ChangeSink: Send + Sync + 'static {
    /// Something changed.
    fn changed(&self, change: &Change);
    /// Feed number `feed` (from `source`) is connected, or no longer is.
    fn set_feed_health(&self, feed: usize, source: &'static str, healthy: bool);
}

/// A feed's handle on whatever listens.
#[derive(Clone)]
pub struct FeedSink {
    sink: Arc<dyn ChangeSink>,
    index: usize,
    source: &'static str,
}

impl std::fmt::Debug for FeedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedSink")
            .field("index", &self.index)
            .field("source", &self.source)
            .finish()
    }
}

impl FeedSink {
    /// The handle of feed number `index`, from `source`, on `sink`.
    #[must_use]
    pub fn new(sink: Arc<dyn ChangeSink>, index: usize, source: &'static str) -> Self {
        Self {
            sink,
            index,
            source,
        }
    }

    /// Reports a change.
    pub fn changed(&self, change: Change) {
        self.sink.changed(&change);
    }

    /// Reports whether the feed is connected (and so whether what it has not
    /// reported can be trusted not to have happened).
    pub fn set_healthy(&self, healthy: bool) {
        self.sink.set_feed_health(self.index, self.source, healthy);
    }
}
