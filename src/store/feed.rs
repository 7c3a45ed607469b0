//! How a store tells the rest of latchkey about changes made by other
//! processes (the CLI, other instances): a store's [`ChangeFeed`] delivers
//! [`Change`]s to a [`FeedSink`], behind which sits whatever keeps state
//! derived from the stores (the session cache, a [`ChangeSink`]). The store
//! layer defines this contract and knows nothing of who listens.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::{SessionKey, UserId};

/// How long a feed may stay silent by default: it sends itself a heartbeat
/// four times as often, and is trusted only while one has come back within
/// this long (see [`FeedSink`]).
pub const DEFAULT_LIVENESS: Duration = Duration::from_secs(1);

/// A heartbeat on its way (see [`ChangeFeed::send`]).
pub type Sending = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The first character of a heartbeat message; the rest is the sending
/// feed's random id.
const HEARTBEAT: char = 'h';

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
    /// Starts delivering changes to `sink` (normally by spawning a task;
    /// latchkey's own feeds run on a thread of their own).
    /// The feed must report itself unhealthy whenever it may be missing
    /// changes, and send [`Change::Everything`] when it recovers.
    fn start(self: Arc<Self>, sink: FeedSink);

    /// Where the changes come from, for people reading the log
    /// ("the database file", "PostgreSQL").
    fn source(&self) -> &'static str;

    /// Sends `message` (a heartbeat, from [`FeedSink::heartbeat`]) along
    /// the same path as changes (a `NOTIFY`, a `PUBLISH`, a file write), so
    /// that it comes back to [`FeedSink::received`] unless that path is
    /// stuck. Failures are not reported: a heartbeat that does not arrive
    /// says enough.
    fn send(self: Arc<Self>, message: String) -> Sending;
}

/// What listens to the feeds: implemented by the session cache.
pub trait ChangeSink: Send + Sync + 'static {
    /// Something changed.
    fn changed(&self, change: &Change);
    /// Feed number `feed` (from `source`) is connected, or no longer is.
    fn set_feed_health(&self, feed: usize, source: &'static str, healthy: bool);
}

/// A feed's handle on whatever listens. It also keeps the feed honest: a
/// connection that looks up but delivers nothing (a half-open socket, a
/// stopped server process) would otherwise keep the cache trusted forever,
/// so the feed is trusted only while its own heartbeats come back within
/// the liveness bound, as well as while it says it is connected.
#[derive(Clone)]
pub struct FeedSink {
    sink: Arc<dyn ChangeSink>,
    index: usize,
    source: &'static str,
    state: Arc<Liveness>,
}

struct Liveness {
    /// Tells this feed's heartbeats from other instances'.
    id: String,
    bound: Duration,
    started: Instant,
    connected: AtomicBool,
    /// When the last heartbeat came back, in milliseconds since `started`
    /// (`u64::MAX`: none yet on this connection).
    last_alive: AtomicU64,
}

impl std::fmt::Debug for FeedSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedSink")
            .field("index", &self.index)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl FeedSink {
    /// The handle of feed number `index`, from `source`, on `sink`, trusted
    /// while its heartbeats come back within `liveness`.
    #[must_use]
    pub fn new(
        sink: Arc<dyn ChangeSink>,
        index: usize,
        source: &'static str,
        liveness: Duration,
    ) -> Self {
        Self {
            sink,
            index,
            source,
            state: Arc::new(Liveness {
                id: hex::encode(crate::random::random_bytes::<8>()),
                bound: liveness,
                started: Instant::now(),
                connected: AtomicBool::new(false),
                last_alive: AtomicU64::new(u64::MAX),
            }),
        }
    }

    /// Reports a change.
    pub fn changed(&self, change: Change) {
        self.sink.changed(&change);
    }

    /// Handles a message from the feed's channel: a heartbeat, or a change
    /// in the format of [`Change::parse`].
    pub fn received(&self, payload: &str) {
        match payload.strip_prefix(HEARTBEAT) {
            Some(id) if id == self.state.id => {
                let now = self.elapsed_ms();
                self.state.last_alive.store(now, Ordering::SeqCst);
                self.report();
            }
            // Another instance's heartbeat: nothing changed.
            Some(_) => {}
            None => self.changed(Change::parse(payload)),
        }
    }

    /// Handles a message that can only be a heartbeat (read from a file
    /// another process may be writing: anything else is ignored, never
    /// taken for a change).
    pub fn heartbeat_received(&self, payload: &str) {
        if payload.starts_with(HEARTBEAT) {
            self.received(payload);
        }
    }

    /// The heartbeat message this feed sends itself (see [`ChangeFeed::send`]).
    #[must_use]
    pub fn heartbeat(&self) -> String {
        format!("{HEARTBEAT}{}", self.state.id)
    }

    /// Reports whether the feed is connected (and so whether what it has not
    /// reported can be trusted not to have happened). A new connection is
    /// trusted from its first heartbeat on.
    pub fn set_healthy(&self, connected: bool) {
        let was = self.state.connected.swap(connected, Ordering::SeqCst);
        if connected && !was {
            self.state.last_alive.store(u64::MAX, Ordering::SeqCst);
        }
        self.report();
    }

    /// Tells the listener whether the feed can be trusted right now.
    fn report(&self) {
        let last = self.state.last_alive.load(Ordering::SeqCst);
        let fresh = last != u64::MAX
            && self.elapsed_ms().saturating_sub(last)
                <= u64::try_from(self.state.bound.as_millis()).unwrap_or(u64::MAX);
        let healthy = self.state.connected.load(Ordering::SeqCst) && fresh;
        self.sink.set_feed_health(self.index, self.source, healthy);
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.state.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Starts `feed` and its heartbeat: a heartbeat goes out four times per
    /// liveness bound, and the feed's health is re-checked as often, so that
    /// one that falls silent is distrusted within the bound.
    pub fn start(self, feed: Arc<dyn ChangeFeed>) {
        feed.clone().start(self.clone());
        let period = (self.state.bound / 4).max(Duration::from_millis(10));
        spawn(async move {
            let mut ticks = tokio::time::interval(period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                // Sent on its own task: a send stuck on a frozen server must
                // not stop the checks.
                tokio::spawn(tokio::time::timeout(
                    self.state.bound,
                    feed.clone().send(self.heartbeat()),
                ));
                self.report();
            }
        });
    }
}

/// Runs a feed's task on the feeds' own thread, so that a change is
/// applied as soon as it arrives: on the server's runtime it would wait
/// for a worker to finish the requests ahead of it and to poll for I/O,
/// and meanwhile those requests would still be answered from the stale
/// cache. The task ends when the runtime that started it shuts down (a
/// test ends, the server exits), closing its connections as it would have
/// if it had run there.
pub(crate) fn spawn<F>(task: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    static FEEDS: OnceLock<Option<tokio::runtime::Handle>> = OnceLock::new();
    let feeds = FEEDS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| tracing::warn!(error = %e, "no thread for the change feeds"))
            .ok()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("latchkey-feeds".to_owned())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .map_err(|e| tracing::warn!(error = %e, "no thread for the change feeds"))
            .ok()?;
        Some(handle)
    });
    let Some(feeds) = feeds else {
        tokio::spawn(task);
        return;
    };
    let (keep, ended) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _keep = keep;
        std::future::pending::<()>().await;
    });
    feeds.spawn(async move {
        tokio::select! {
            _ = ended => {}
            () = task => {}
        }
    });
}
