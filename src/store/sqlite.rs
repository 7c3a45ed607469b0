//! The default store: one SQLite file in WAL mode, shared safely with the CLI
//! running in another process.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions as _, Connection as _};

use super::sql::{Sql, unavailable};
use super::{
    Attempt, FailurePolicy, FailureStore, Millis, NewUser, OpenError, SessionKey, SessionRecord,
    SessionStore, StoreError, StoreResult, UserId, UserRecord, UserStore, now_millis, sqlite_path,
};

/// The statements this store shares with PostgreSQL.
type Q = Sql<sqlx::Sqlite>;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use notify::Watcher as _;

use super::feed::{Change, ChangeFeed, FeedSink, Sending};

/// How long a write waits for the database: for another process's lock
/// (the CLI), and for this process's other writes.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Users, sessions and counters in one SQLite database.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// Reads.
    pool: SqlitePool,
    /// Every write: SQLite takes one writer at a time anyway, and a connection
    /// held here skips the pool's check on release, a round trip to the
    /// connection's thread after every statement.
    writer: Arc<tokio::sync::Mutex<SqliteConnection>>,
    path: Option<PathBuf>,
}

impl SqliteStore {
    /// Opens the database named by a `sqlite://PATH` URL, creating and
    /// migrating it if needed.
    ///
    /// # Errors
    /// When the file cannot be opened or migrated.
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(OpenError::connect)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // The CLI and the server write to the same file; wait for each other.
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            // A connection to a local file cannot go stale; the check before
            // every acquire would cost a round trip to its worker thread.
            .test_before_acquire(false)
            .connect_with(options.clone())
            .await
            .map_err(OpenError::connect)?;
        MIGRATOR.run(&pool).await.map_err(OpenError::migrate)?;
        let writer = options.connect().await.map_err(OpenError::connect)?;
        let path = sqlite_path(url);
        Ok(Self {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(writer)),
            path,
        })
    }

    /// Watches the database files, so that what another process (the CLI, a
    /// second server, someone with the `sqlite3` shell) deletes or changes
    /// leaves this process's session cache.
    #[must_use]
    pub fn change_feed(&self) -> Option<Arc<dyn ChangeFeed>> {
        let path = self.path.as_ref()?;
        let path = std::path::absolute(path).ok()?;
        Some(Arc::new(FileFeed {
            dir: path.parent()?.to_path_buf(),
            name: path.file_name()?.to_string_lossy().into_owned(),
            watcher: Mutex::new(None),
            // A connection of its own: with the readers' pool busy serving
            // requests, the feed would wait its turn while it looks healthy.
            pool: sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .connect_lazy_with((*self.pool.connect_options()).clone()),
            wake: Arc::new(tokio::sync::Notify::new()),
            beat: Arc::default(),
        }))
    }

    /// The write connection, waited for no longer than SQLite itself waits
    /// for another process's lock: a queue of writes behind a database locked
    /// for minutes fails each request in bounded time instead of in turn.
    async fn writer(&self) -> StoreResult<tokio::sync::MutexGuard<'_, SqliteConnection>> {
        tokio::time::timeout(BUSY_TIMEOUT, self.writer.lock())
            .await
            .map_err(StoreError::unavailable)
    }
}

#[async_trait]
impl UserStore for SqliteStore {
    async fn create_user(&self, user: NewUser) -> StoreResult<UserRecord> {
        Q::create_user(&mut *self.writer().await?, &user, now_millis()).await
    }

    async fn user_by_key(&self, username_key: &str) -> StoreResult<Option<UserRecord>> {
        Q::user_by_key(&self.pool, username_key).await
    }

    async fn user_by_id(&self, id: UserId) -> StoreResult<Option<UserRecord>> {
        Q::user_by_id(&self.pool, id).await
    }

    async fn list_users(&self) -> StoreResult<Vec<UserRecord>> {
        Q::list_users(&self.pool).await
    }

    async fn count_users(&self) -> StoreResult<u64> {
        Q::count_users(&self.pool).await
    }

    async fn each_password_hash(
        &self,
        each: &mut (dyn for<'h> FnMut(&'h str) + Send),
    ) -> StoreResult<()> {
        Q::each_password_hash(&self.pool, each).await
    }

    async fn set_password_hash(
        &self,
        id: UserId,
        password_hash: &str,
        end_sessions: bool,
    ) -> StoreResult<bool> {
        let mut writer = self.writer().await?;
        Q::set_password_hash(&mut *writer, id, password_hash, end_sessions, now_millis()).await
    }

    async fn set_roles(&self, id: UserId, roles: &[String]) -> StoreResult<bool> {
        Q::set_roles(&mut *self.writer().await?, id, roles, now_millis()).await
    }

    async fn set_profile(
        &self,
        id: UserId,
        display_name: Option<&str>,
        email: Option<&str>,
    ) -> StoreResult<bool> {
        Q::set_profile(
            &mut *self.writer().await?,
            id,
            display_name,
            email,
            now_millis(),
        )
        .await
    }

    async fn set_disabled(&self, id: UserId, disabled: bool) -> StoreResult<bool> {
        Q::set_disabled(&mut *self.writer().await?, id, disabled, now_millis()).await
    }

    async fn remove_user(&self, id: UserId) -> StoreResult<bool> {
        Q::remove_user(&mut *self.writer().await?, id).await
    }

    async fn ping(&self) -> StoreResult<()> {
        Q::ping(&self.pool).await
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create(&self, s: &SessionRecord) -> StoreResult<()> {
        Q::insert_session(&mut *self.writer().await?, s).await
    }

    async fn load(&self, key: &SessionKey) -> StoreResult<Option<SessionRecord>> {
        Q::load_session(&self.pool, key).await
    }

    async fn touch(&self, key: &SessionKey, last_seen: Millis) -> StoreResult<bool> {
        Q::touch_session(&mut *self.writer().await?, key, last_seen).await
    }

    async fn rotate(&self, old: &SessionKey, new: &SessionRecord) -> StoreResult<bool> {
        let mut writer = self.writer().await?;
        let mut tx = writer.begin().await.map_err(unavailable)?;
        if !Q::delete_session(&mut *tx, old).await? {
            tx.rollback().await.map_err(unavailable)?;
            return Ok(false);
        }
        Q::insert_session(&mut *tx, new).await?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn delete(&self, key: &SessionKey) -> StoreResult<bool> {
        Q::delete_session(&mut *self.writer().await?, key).await
    }

    async fn delete_user_sessions(&self, user: UserId) -> StoreResult<u64> {
        Q::delete_user_sessions(&mut *self.writer().await?, user).await
    }

    async fn list(&self, user: Option<UserId>) -> StoreResult<Vec<SessionRecord>> {
        Q::list_sessions(&self.pool, user).await
    }

    /// Also prunes the `changes` table, which only SQLite has.
    async fn delete_expired(
        &self,
        idle_before: Millis,
        created_before: Millis,
    ) -> StoreResult<u64> {
        let mut writer = self.writer().await?;
        let deleted = Q::delete_expired(&mut *writer, idle_before, created_before).await?;
        sqlx::query("DELETE FROM changes WHERE seq <= (SELECT max(seq) FROM changes) - ?")
            .bind(CHANGES_KEPT)
            .execute(&mut *writer)
            .await
            .map_err(unavailable)?;
        Ok(deleted)
    }

    async fn ping(&self) -> StoreResult<()> {
        Q::ping(&self.pool).await
    }
}

/// Every counter change goes through the writer: each is one statement
/// that reads and writes the row, and SQLite serialises writers anyway.
#[async_trait]
impl FailureStore for SqliteStore {
    async fn locked_until(&self, key: &str, now: Millis) -> StoreResult<Option<Millis>> {
        Q::locked_until(&self.pool, key, now).await
    }

    async fn begin_attempt(
        &self,
        key: &str,
        now: Millis,
        policy: FailurePolicy,
    ) -> StoreResult<Attempt> {
        Q::begin_attempt(&mut *self.writer().await?, key, now, policy).await
    }

    async fn fail(
        &self,
        key: &str,
        now: Millis,
        policy: FailurePolicy,
    ) -> StoreResult<Option<Millis>> {
        Q::fail(&mut *self.writer().await?, key, now, policy).await
    }

    async fn forgive(&self, key: &str, policy: FailurePolicy) -> StoreResult<()> {
        let mut writer = self.writer().await?;
        Q::forgive(&mut *writer, key, policy).await?;
        Q::drop_empty(&mut *writer, key).await
    }

    async fn clear(&self, key: &str) -> StoreResult<()> {
        Q::clear_failures(&mut *self.writer().await?, key).await
    }

    async fn clear_prefix(&self, prefix: &str) -> StoreResult<u64> {
        Q::clear_failures_prefix(&mut *self.writer().await?, prefix).await
    }

    async fn delete_stale(&self, now: Millis, window: Millis) -> StoreResult<u64> {
        Q::delete_stale_failures(&mut *self.writer().await?, now, window).await
    }
}

/// Watches the database's files; when they change, reads the `changes`
/// rows that other writers' triggers added (see the migration
/// `0003_changes.sql`) and reports each. inotify (or the platform's
/// equivalent) delivers events on the watcher's own thread, independent of
/// the async runtime, within microseconds of the other process's `write()`.
struct FileFeed {
    dir: PathBuf,
    name: String,
    watcher: Mutex<Option<notify::RecommendedWatcher>>,
    pool: SqlitePool,
    wake: Arc<tokio::sync::Notify>,
    /// The last heartbeat the watcher saw, reported once the changes table
    /// has been read after it.
    beat: Arc<Mutex<Option<String>>>,
}

/// How often the `changes` table is read even without a file event: a
/// safety net (see [`FileFeed::follow`]).
const CHANGES_POLL: Duration = Duration::from_millis(250);

/// After a file event, the table is read at once and again at these delays
/// after it: the `write()` that made the event comes before the writer
/// updates the WAL index in shared memory, which makes no event, and a busy
/// machine may pause the writer in between for a few milliseconds. The
/// reads are dense early, where the revocation window is decided, and each
/// costs a few microseconds.
const CHANGES_REREAD: [Duration; 10] = [
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(3),
    Duration::from_millis(5),
    Duration::from_millis(8),
    Duration::from_millis(12),
    Duration::from_millis(16),
    Duration::from_millis(24),
    Duration::from_millis(32),
    Duration::from_millis(64),
];

/// Rows kept in `changes`; an instance that falls further behind (it would
/// have to miss this many changes between two reads) empties its cache.
const CHANGES_KEPT: i64 = 100_000;

impl FileFeed {
    /// Reads the changes after `last`, reports them, and returns the new
    /// last sequence number. A gap (rows pruned before this instance read
    /// them) reports everything.
    async fn read_since(&self, last: i64, sink: &FeedSink) -> Result<i64, sqlx::Error> {
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT seq, payload FROM changes WHERE seq > ? ORDER BY seq")
                .bind(last)
                .fetch_all(&self.pool)
                .await?;
        if rows.first().is_some_and(|(seq, _)| *seq > last + 1) {
            sink.changed(Change::Everything);
        }
        for (_, payload) in &rows {
            sink.received(payload);
        }
        Ok(rows.last().map_or(last, |(seq, _)| *seq))
    }

    /// Follows the `changes` table: read at every file event, again
    /// [`CHANGES_REREAD`] after it, and every [`CHANGES_POLL`] regardless.
    async fn follow(self: Arc<Self>, sink: FeedSink) {
        let mut last = loop {
            match sqlx::query_scalar::<_, Option<i64>>("SELECT max(seq) FROM changes")
                .fetch_one(&self.pool)
                .await
            {
                Ok(max) => break max.unwrap_or(0),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the changes table");
                    tokio::time::sleep(CHANGES_POLL).await;
                }
            }
        };
        // Reads due again shortly after a file event (see above); a new
        // event is read at once, whatever is pending.
        let mut followups: Vec<tokio::time::Instant> = Vec::new();
        loop {
            let now = tokio::time::Instant::now();
            let next = followups
                .iter()
                .copied()
                .min()
                .unwrap_or(now + CHANGES_POLL);
            tokio::select! {
                () = self.wake.notified() => {
                    // The newest event's reads replace the older ones': from
                    // here on they are as dense. Kept, the schedules of
                    // events a few milliseconds apart (a busy writer) would
                    // interleave into a read every millisecond or less, which
                    // cost a login flood a tenth of the machine.
                    let now = tokio::time::Instant::now();
                    followups.clear();
                    followups.extend(CHANGES_REREAD.map(|after| now + after));
                }
                () = tokio::time::sleep_until(next) => {}
            }
            let now = tokio::time::Instant::now();
            followups.retain(|due| *due > now);
            match self.read_since(last, &sink).await {
                Ok(seq) => {
                    last = seq;
                    // Alive only once the table has been read after it.
                    let beat = self
                        .beat
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take();
                    if let Some(text) = beat {
                        sink.heartbeat_received(&text);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the changes table");
                    sink.changed(Change::Everything);
                }
            }
        }
    }

    /// The file every instance on this database touches as its heartbeat.
    /// Its name does not start with the database's, so writing it is not a
    /// change; its content is the last heartbeat written.
    fn heartbeat_file(&self) -> String {
        format!(".{}.alive", self.name)
    }
}

impl ChangeFeed for FileFeed {
    fn source(&self) -> &'static str {
        "the database file"
    }

    fn send(self: Arc<Self>, message: String) -> Sending {
        Box::pin(async move {
            let path = self.dir.join(self.heartbeat_file());
            if let Err(e) = tokio::fs::write(&path, message).await {
                tracing::debug!(error = %e, "change feed heartbeat not written");
            }
        })
    }

    fn start(self: Arc<Self>, sink: FeedSink) {
        let name = self.name.clone();
        let heartbeat_file = self.dir.join(self.heartbeat_file());
        let events = sink.clone();
        let wake = self.wake.clone();
        let beats = self.beat.clone();
        let handler = move |event: notify::Result<notify::Event>| match event {
            Ok(event) => {
                if event.paths.contains(&heartbeat_file) {
                    // Written by any instance on this database (they share
                    // the file): what matters is that the watcher delivers,
                    // and that the changes table is read (the heartbeat is
                    // reported after the next read, see `follow`).
                    if matches!(event.kind, notify::EventKind::Modify(_))
                        && let Ok(text) = std::fs::read_to_string(&heartbeat_file)
                    {
                        *beats
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(text);
                        wake.notify_one();
                    }
                    return;
                }
                let ours = event.paths.iter().any(|p| {
                    p.file_name()
                        .is_some_and(|f| f.to_string_lossy().starts_with(&name))
                });
                let writes = matches!(
                    event.kind,
                    notify::EventKind::Modify(_)
                        | notify::EventKind::Create(_)
                        | notify::EventKind::Remove(_)
                        | notify::EventKind::Any
                        | notify::EventKind::Other
                );
                if ours && writes {
                    wake.notify_one();
                }
                // A database file created or removed is another database.
                let replaced = matches!(
                    event.kind,
                    notify::EventKind::Create(_) | notify::EventKind::Remove(_)
                );
                if ours && replaced {
                    events.changed(Change::Everything);
                }
                // A queue overflow (or any event that names no file) may hide a
                // write: assume the worst.
                if event.paths.is_empty() || event.need_rescan() {
                    events.changed(Change::Everything);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "database file watcher failed; session cache disabled");
                events.set_healthy(false);
            }
        };
        let started = notify::recommended_watcher(handler).and_then(|mut w| {
            w.watch(&self.dir, notify::RecursiveMode::NonRecursive)?;
            Ok(w)
        });
        match started {
            Ok(watcher) => {
                *self
                    .watcher
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(watcher);
                sink.set_healthy(true);
                super::feed::spawn(self.clone().follow(sink));
            }
            Err(e) => tracing::warn!(error = %e, dir = %self.dir.display(),
                "cannot watch the database directory; every request will read the database"),
        }
    }
}
